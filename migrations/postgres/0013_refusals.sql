-- Refusals before any output (stop_reason "refusal" and no content): whether
-- they are charged is the price book's refusal policy, by date and category,
-- so each record keeps what it was and the roll-up keeps such records apart,
-- and a re-imported book decides again.
-- refusal: '' not a refusal before output; 'refusal' one without a category;
-- 'refusal:CATEGORY' one with stop_details.category CATEGORY.
-- Records ingested before this migration are kept as not refusals.
alter table records add column refusal text not null default '';

alter table usage_rollup add column refusal text not null default '';
alter table usage_rollup drop constraint usage_rollup_pkey;
alter table usage_rollup add primary key (account, day, model, kind, batch, fast, us, size_class, refusal, shard);

-- Container billing reads each record's refusal too: keep it index-only.
drop index records_container_cover;
create index records_container_cover on records (recorded_at)
    include (container_id, account, started_at, seq, kind,
             uses_code_execution, files_preloaded, web_tools_20260209, refusal)
    where container_id is not null;
