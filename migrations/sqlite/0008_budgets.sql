-- Monthly budgets per account (USD as exact decimal text), and the alerts
-- raised when month-to-date spend crosses 50, 80 and 100 percent of one:
-- the primary key makes each alert happen once per account and period.
create table budgets (
    account      text    not null primary key,
    monthly_usd  text    not null,
    updated_at   integer not null
) strict;

create table budget_alerts (
    account       text    not null,
    period        text    not null,
    threshold     integer not null,
    spend_usd     text    not null,
    budget_usd    text    not null,
    crossed_at    integer not null,
    delivered_at  integer,
    primary key (account, period, threshold)
) strict;
