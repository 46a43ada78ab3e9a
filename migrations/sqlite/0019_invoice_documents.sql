-- Invoice documents and per-period numbers (SPEC 12).
-- `html` and `pdf` are a finalized invoice's documents, frozen with its JSON
-- and CSV (null for invoices finalized before this version: they are
-- rendered from the frozen JSON once, on first request, and kept).
-- `seq` numbers a period's invoices 1, 2, 3, … in finalization order,
-- without gaps: it is taken in the finalizing transaction, so a
-- finalization that rolls back takes no number. Invoices finalized before
-- keep the numbers they were issued with; they are counted in the period's
-- sequence in the order they were finalized.
alter table invoices add column html text;
alter table invoices add column pdf blob;
alter table invoices add column seq integer;

update invoices set seq = (
    select count(*) from invoices earlier
    where earlier.period = invoices.period and earlier.id <= invoices.id
);

create unique index invoices_period_seq on invoices (period, seq);
