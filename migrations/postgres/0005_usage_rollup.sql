-- Usage summed per account, UTC day and billing-relevant traits, kept up to
-- date in the same transaction as every ingested record, so invoices read a
-- few thousand rows instead of scanning millions of records.
-- kind: 0 = message usage, 1 = usage.iterations billed on top, 2 = records
-- that are never charged (batch results without a message; counted only).
-- size_class: how many of 32K, 64K, 100K, 128K, 200K, 256K, 500K, 1M the total
-- input (input + cache writes + cache reads) exceeds; price-book tiers at
-- these thresholds are answered from here, others from the records.
-- shard: concurrent writers (PostgreSQL) add to different rows of the same
-- key instead of queueing on one; readers sum the shards.
-- max_seq: the newest record summed into the row, so a finalized period can
-- tell cheaply whether records arrived after its cutoff.
create table usage_rollup (
    account                      text   not null,
    day                          bigint not null,
    model                        text   not null,
    kind                         bigint not null,
    batch                        bigint not null,
    fast                         bigint not null,
    us                           bigint not null,
    size_class                   bigint not null,
    shard                        bigint not null,
    records                      bigint not null,
    input_tokens                 bigint not null,
    output_tokens                bigint not null,
    cache_creation_input_tokens  bigint not null,
    cache_write_5m_tokens        bigint not null,
    cache_write_1h_tokens        bigint not null,
    cache_read_tokens            bigint not null,
    web_search_requests          bigint not null,
    web_fetch_requests           bigint not null,
    code_execution_requests      bigint not null,
    max_seq                      bigint not null,
    primary key (account, day, model, kind, batch, fast, us, size_class, shard)
);

-- Backfill from the ledger as it is.
insert into usage_rollup
select r.account, r.recorded_at / 86400000000, r.model, 0, cast(case when r.batch then 1 else 0 end as bigint), cast(case when r.speed = 'fast' then 1 else 0 end as bigint), cast(case when r.inference_geo = 'us' then 1 else 0 end as bigint), (case when r.input_tokens + r.cache_creation_input_tokens + r.cache_read_tokens > 32000 then 1 else 0 end) + (case when r.input_tokens + r.cache_creation_input_tokens + r.cache_read_tokens > 64000 then 1 else 0 end) + (case when r.input_tokens + r.cache_creation_input_tokens + r.cache_read_tokens > 100000 then 1 else 0 end) + (case when r.input_tokens + r.cache_creation_input_tokens + r.cache_read_tokens > 128000 then 1 else 0 end) + (case when r.input_tokens + r.cache_creation_input_tokens + r.cache_read_tokens > 200000 then 1 else 0 end) + (case when r.input_tokens + r.cache_creation_input_tokens + r.cache_read_tokens > 256000 then 1 else 0 end) + (case when r.input_tokens + r.cache_creation_input_tokens + r.cache_read_tokens > 500000 then 1 else 0 end) + (case when r.input_tokens + r.cache_creation_input_tokens + r.cache_read_tokens > 1000000 then 1 else 0 end), 0,
       count(*), sum(r.input_tokens), sum(r.output_tokens), sum(r.cache_creation_input_tokens), sum(r.cache_write_5m_tokens), sum(r.cache_write_1h_tokens), sum(r.cache_read_tokens), sum(r.web_search_requests), sum(r.web_fetch_requests), sum(r.code_execution_requests), max(r.seq)
from records r where r.kind = 'message'
group by 1, 2, 3, 4, 5, 6, 7, 8;

insert into usage_rollup
select r.account, r.recorded_at / 86400000000, coalesce(i.model, r.model), 1, cast(case when r.batch then 1 else 0 end as bigint), cast(case when r.speed = 'fast' then 1 else 0 end as bigint), cast(case when r.inference_geo = 'us' then 1 else 0 end as bigint), (case when i.input_tokens + i.cache_creation_input_tokens + i.cache_read_tokens > 32000 then 1 else 0 end) + (case when i.input_tokens + i.cache_creation_input_tokens + i.cache_read_tokens > 64000 then 1 else 0 end) + (case when i.input_tokens + i.cache_creation_input_tokens + i.cache_read_tokens > 100000 then 1 else 0 end) + (case when i.input_tokens + i.cache_creation_input_tokens + i.cache_read_tokens > 128000 then 1 else 0 end) + (case when i.input_tokens + i.cache_creation_input_tokens + i.cache_read_tokens > 200000 then 1 else 0 end) + (case when i.input_tokens + i.cache_creation_input_tokens + i.cache_read_tokens > 256000 then 1 else 0 end) + (case when i.input_tokens + i.cache_creation_input_tokens + i.cache_read_tokens > 500000 then 1 else 0 end) + (case when i.input_tokens + i.cache_creation_input_tokens + i.cache_read_tokens > 1000000 then 1 else 0 end), 0,
       count(*), sum(i.input_tokens), sum(i.output_tokens), sum(i.cache_creation_input_tokens), sum(i.cache_write_5m_tokens), sum(i.cache_write_1h_tokens), sum(i.cache_read_tokens), sum(i.web_search_requests), 0, 0, max(r.seq)
from record_iterations i join records r on r.seq = i.seq
group by 1, 2, 3, 4, 5, 6, 7, 8;

insert into usage_rollup
select r.account, r.recorded_at / 86400000000, '', 2, 0, 0, 0, 0, 0, count(*), 0, 0, 0, 0, 0, 0, 0, 0, 0, max(r.seq)
from records r where r.kind <> 'message'
group by 1, 2;
