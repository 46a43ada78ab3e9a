-- The ledger: one row per ingested record, the columns billing reads, and the
-- raw line kept verbatim in its own table so scans over records stay narrow.
-- record_bodies and record_iterations are written in the same transaction as
-- their record (keyed by its seq); no foreign key, to keep bulk ingest cheap.
-- Times are microseconds since the Unix epoch (UTC), as in the SQLite schema.

create table records (
    seq                          bigint generated always as identity primary key,
    record_key                   text    not null unique,
    account                      text    not null,
    kind                         text    not null,
    message_id                   text,
    custom_id                    text,
    model                        text,
    recorded_at                  bigint not null,
    started_at                   bigint,
    batch                        boolean not null,
    files_preloaded              boolean not null,
    uses_code_execution          boolean not null,
    web_tools_20260209           boolean not null,
    container_id                 text,
    input_tokens                 bigint not null,
    output_tokens                bigint not null,
    cache_creation_input_tokens  bigint not null,
    cache_write_5m_tokens        bigint not null,
    cache_write_1h_tokens        bigint not null,
    cache_read_tokens            bigint not null,
    web_search_requests          bigint not null,
    web_fetch_requests           bigint not null,
    code_execution_requests      bigint not null,
    service_tier                 text,
    inference_geo                text,
    speed                        text,
    content_hash                 text    not null,
    source                       text    not null,
    source_line                  bigint not null,
    ingested_at                  bigint not null
);

create index records_account_time on records (account, recorded_at);
create index records_container on records (container_id) where container_id is not null;

create table record_bodies (
    seq  bigint primary key,
    raw  text not null
);

-- usage.iterations[] entries billed on top of the top-level counters.
create table record_iterations (
    seq                          bigint not null,
    position                     bigint not null,
    kind                         text    not null,
    model                        text,
    input_tokens                 bigint not null,
    output_tokens                bigint not null,
    cache_creation_input_tokens  bigint not null,
    cache_write_5m_tokens        bigint not null,
    cache_write_1h_tokens        bigint not null,
    cache_read_tokens            bigint not null,
    web_search_requests          bigint not null,
    primary key (seq, position)
);

-- Each code-execution container belongs to the account that first used it.
create table containers (
    container_id  text primary key,
    account       text not null
);

-- Lines that were not recorded (bad input, conflicts), kept byte for byte.
create table rejected (
    id                   bigint generated always as identity primary key,
    raw_hash             text    not null unique,
    raw                  bytea   not null,
    reason               text    not null,
    message              text    not null,
    line_number          bigint,
    column_number        bigint,
    field                text,
    source               text    not null,
    account_default      text,
    recorded_at_default  bigint,
    first_seen           bigint not null,
    last_seen            bigint not null,
    occurrences          bigint not null,
    status               text    not null,
    resolved_at          bigint
);

create index rejected_status on rejected (status, id);
