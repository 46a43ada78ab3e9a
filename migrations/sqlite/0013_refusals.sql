-- Refusals before any output (stop_reason "refusal" and no content): whether
-- they are charged is the price book's refusal policy, by date and category,
-- so each record keeps what it was and the roll-up keeps such records apart,
-- and a re-imported book decides again.
-- refusal: '' not a refusal before output; 'refusal' one without a category;
-- 'refusal:CATEGORY' one with stop_details.category CATEGORY.
-- Records ingested before this migration are kept as not refusals.
alter table records add column refusal text not null default '';

create table usage_rollup_next (
    account                      text   not null,
    day                          integer not null,
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
    primary key (account, day, model, kind, batch, fast, us, size_class, refusal, shard)
) strict;

insert into usage_rollup_next (account, day, model, kind, batch, fast, us, size_class, shard, records, input_tokens, output_tokens, cache_creation_input_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, web_search_requests, web_fetch_requests, code_execution_requests, max_seq, refusal)
select account, day, model, kind, batch, fast, us, size_class, shard, records, input_tokens, output_tokens, cache_creation_input_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, web_search_requests, web_fetch_requests, code_execution_requests, max_seq, '' from usage_rollup;

drop table usage_rollup;
alter table usage_rollup_next rename to usage_rollup;

-- Container billing reads each record's refusal too: keep it index-only.
drop index records_container_cover;
create index records_container_cover on records (
    recorded_at, container_id, account, started_at, seq, kind,
    uses_code_execution, files_preloaded, web_tools_20260209, refusal
) where container_id is not null;
