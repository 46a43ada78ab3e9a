-- Account plans (what an account pays for its usage, from what it costs):
-- every `plan set` adds a row, the newest per account is in force, so the
-- plans an account was billed under stay on record. The plan is kept as the
-- TOML text it was set with (validated before it is stored).
create table account_plans (
    id       bigserial primary key,
    account  text   not null,
    toml     text   not null,
    set_at   bigint not null
);

create index account_plans_account on account_plans (account, id);
