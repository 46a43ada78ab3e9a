-- Prepaid credit: grants (an amount, an optional last day of use, a note;
-- voiding ends what is left of one), the draws finalized invoices made on
-- them (permanent: one row per invoice and grant, written in the same
-- transaction as the frozen invoice), each account's low-balance threshold,
-- and the low-balance alerts it raised: one per account and funding level
-- (the total granted when the balance fell below the threshold), so a
-- crossing alerts once and a new grant re-arms it.
create table credit_grants (
    id          integer not null primary key autoincrement,
    account     text    not null,
    usd         text    not null,
    granted_at  integer not null,
    expires_on  text,
    note        text,
    voided_at   integer
) strict;

create index credit_grants_account on credit_grants (account, id);

create table credit_draws (
    account   text    not null,
    period    text    not null,
    grant_id  integer not null,
    usd       text    not null,
    primary key (account, period, grant_id)
) strict;

create index credit_draws_grant on credit_draws (grant_id);

create table credit_settings (
    account          text    not null primary key,
    low_balance_usd  text    not null,
    updated_at       integer not null
) strict;

create table credit_alerts (
    account        text    not null,
    funded_usd     text    not null,
    threshold_usd  text    not null,
    balance_usd    text    not null,
    crossed_at     integer not null,
    delivered_at   integer,
    primary key (account, funded_usd)
) strict;
