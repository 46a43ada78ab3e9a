-- The ledger: one row per ingested record, the columns billing reads, and the
-- raw line kept verbatim in its own table so scans over records stay narrow.
-- record_bodies and record_iterations are written in the same transaction as
-- their record (keyed by its seq); no foreign key, to keep bulk ingest cheap.
-- Times are microseconds since the Unix epoch (UTC); booleans are 0/1.

create table records (
    seq                          integer primary key,
    record_key                   text    not null unique,
    account                      text    not null,
    kind                         text    not null,
    message_id                   text,
    custom_id                    text,
    model                        text,
    recorded_at                  integer not null,
    started_at                   integer,
    batch                        integer not null,
    files_preloaded              integer not null,
    uses_code_execution          integer not null,
    web_tools_20260209           integer not null,
    container_id                 text,
    input_tokens                 integer not null,
    output_tokens                integer not null,
    cache_creation_input_tokens  integer not null,
    cache_write_5m_tokens        integer not null,
    cache_write_1h_tokens        integer not null,
    cache_read_tokens            integer not null,
    web_search_requests          integer not null,
    web_fetch_requests           integer not null,
    code_execution_requests      integer not null,
    service_tier                 text,
    inference_geo                text,
    speed                        text,
    content_hash                 text    not null,
    source                       text    not null,
    source_line                  integer not null,
    ingested_at                  integer not null
) strict;

create index records_account_time on records (account, recorded_at);
create index records_container on records (container_id) where container_id is not null;

create table record_bodies (
    seq  integer primary key,
    raw  text not null
) strict;

-- usage.iterations[] entries billed on top of the top-level counters.
create table record_iterations (
    seq                          integer not null,
    position                     integer not null,
    kind                         text    not null,
    model                        text,
    input_tokens                 integer not null,
    output_tokens                integer not null,
    cache_creation_input_tokens  integer not null,
    cache_write_5m_tokens        integer not null,
    cache_write_1h_tokens        integer not null,
    cache_read_tokens            integer not null,
    web_search_requests          integer not null,
    primary key (seq, position)
) strict;

-- Each code-execution container belongs to the account that first used it.
create table containers (
    container_id  text primary key,
    account       text not null
) strict;

-- Lines that were not recorded (bad input, conflicts), kept byte for byte.
create table rejected (
    id                   integer primary key,
    raw_hash             text    not null unique,
    raw                  blob    not null,
    reason               text    not null,
    message              text    not null,
    line_number          integer,
    column_number        integer,
    field                text,
    source               text    not null,
    account_default      text,
    recorded_at_default  integer,
    first_seen           integer not null,
    last_seen            integer not null,
    occurrences          integer not null,
    status               text    not null,
    resolved_at          integer
) strict;

create index rejected_status on rejected (status, id);
