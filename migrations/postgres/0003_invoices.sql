-- Finalized invoices, frozen byte for byte. `cutoff_seq` is the last ledger
-- record the invoice saw: records after it become adjustments on the
-- account's next open period.
create table invoices (
    id            bigint generated always as identity primary key,
    account       text   not null,
    period        text   not null,
    number        text   not null,
    cutoff_seq    bigint not null,
    finalized_at  bigint not null,
    json          text   not null,
    csv           text   not null,
    unique (account, period)
);
