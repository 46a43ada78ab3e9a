-- Billing details of the seller (party '') and of each account (party =
-- the account): name, email, address, tax id, tax rate and label, reverse
-- charge, payment terms, as a JSON object. Every change adds a row and the
-- newest per party is in force, so what an invoice was finalized with can
-- be read again (finalizing also snapshots it into the invoice itself).
create table billing_details (
    id       integer not null primary key autoincrement,
    party    text    not null,
    details  text    not null,
    set_at   integer not null
) strict;

create index billing_details_party on billing_details (party, id);

-- One invoice.finalized event per finalized invoice, written in the
-- finalizing transaction; delivered to the webhook at least once. A sender
-- claims an event (claimed_by, a token of its own, until claimed_until)
-- before it POSTs it, so several servers never send one at the same time.
create table invoice_events (
    account        text    not null,
    period         text    not null,
    created_at     integer not null,
    claimed_by     text,
    claimed_until  integer,
    delivered_at   integer,
    primary key (account, period)
) strict;
