-- Attribution within an account (SPEC 3.1): the workspace that served the
-- call, the API key id that made it, the end user, and tags (key → value,
-- at most 20 a record). Tags are kept twice, written in the same
-- transaction as their record: one row per tag in record_tags (grouping by
-- one key), and the whole set as canonical JSON in records.tags (grouping by
-- the set, as FOCUS's Tags column does; null when there are none).
alter table records add column workspace text;
alter table records add column api_key_id text;
alter table records add column end_user text;
alter table records add column tags text;

create table record_tags (
    seq    integer not null,
    key    text    not null,
    value  text    not null,
    primary key (seq, key)
) strict;

create index record_tags_by_key on record_tags (key, value);

-- Usage summed per account, UTC day, dimension value and the roll-up's
-- billing traits (as usage_rollup, migration 5), kept in the same transaction
-- as every ingested record: one row key per dimension a record has
-- (dim: 'workspace', 'api_key_id', 'user' or 'tag:KEY'), so a split by one
-- dimension reads a few thousand rows; records without it are the
-- difference from usage_rollup. Nothing to backfill: no record had them.
create table usage_dim_rollup (
    account                      text   not null,
    day                          integer not null,
    dim                          text   not null,
    value                        text   not null,
    model                        text   not null,
    kind                         integer not null,
    batch                        integer not null,
    fast                         integer not null,
    us                           integer not null,
    size_class                   integer not null,
    refusal                      text   not null,
    shard                        integer not null,
    records                      integer not null,
    input_tokens                 integer not null,
    output_tokens                integer not null,
    cache_creation_input_tokens  integer not null,
    cache_write_5m_tokens        integer not null,
    cache_write_1h_tokens        integer not null,
    cache_read_tokens            integer not null,
    web_search_requests          integer not null,
    web_fetch_requests           integer not null,
    code_execution_requests      integer not null,
    max_seq                      integer not null,
    primary key (account, day, dim, value, model, kind, batch, fast, us, size_class, refusal, shard)
) strict;

create index usage_dim_rollup_by_dim on usage_dim_rollup (dim, day);
