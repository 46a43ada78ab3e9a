-- Finalized invoices, frozen byte for byte. `cutoff_seq` is the last ledger
-- record the invoice saw: records after it become adjustments on the
-- account's next open period.
create table invoices (
    id            integer primary key,
    account       text    not null,
    period        text    not null,
    number        text    not null,
    cutoff_seq    integer not null,
    finalized_at  integer not null,
    json          text    not null,
    csv           text    not null,
    unique (account, period)
) strict;
