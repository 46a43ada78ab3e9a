-- Container roll-up, kept up to date in the same transaction as every
-- ingested record, so container time of a period is billed from a few
-- hundred rows instead of every container record (SPEC 4.2).
--
-- Per container (on its claim row):
--   first_at        earliest code-execution / file-preload record (null: none yet)
--   open_start/end  the last interval of the union of [started_at, recorded_at]
--   closed_micros   the length of every earlier, closed interval of the union
--   exact           1 while the state equals what the records give: records
--                   arrived in order of started_at and none declared web
--                   tools (whose billing depends on the price book); 0 sends
--                   billing back to the container's records.
-- Per account and UTC day of first_at, over exact containers only:
--   containers, execution_seconds (sum, each rounded up to whole seconds),
--   short_containers / short_seconds: those under 300 s, so billed time at
--   a 300 s minimum is execution + 300 × short_containers − short_seconds.
-- shard: as in usage_rollup, concurrent writers add to different rows.
alter table containers add column first_at bigint;
alter table containers add column open_start bigint;
alter table containers add column open_end bigint;
alter table containers add column closed_micros bigint not null default 0;
alter table containers add column exact bigint not null default 1;

create table container_days (
    account            text   not null,
    day                bigint not null,
    shard              bigint not null,
    containers         bigint not null,
    execution_seconds  bigint not null,
    short_containers   bigint not null,
    short_seconds      bigint not null,
    primary key (account, day, shard)
);

create index containers_inexact on containers (first_at) where exact = 0;
-- The records of those containers, found by id.
create index records_by_container on records (container_id) where container_id is not null;

-- Backfill from the ledger as it is, one row per container in a scratch
-- table (indexed, so the update below looks each container up once): its
-- first record, whether any record declared web tools, and the union of its
-- intervals as islands (a new island starts where an interval begins after
-- every earlier one ended), the last island left open. Both windows order
-- rows the same way (seq breaks ties), so each row's island is the one it
-- opened.
create table container_backfill as
with candidates as (
    select container_id, seq, started_at, recorded_at,
           case when web_tools_20260209 then 1 else 0 end as web
    from records
    where container_id is not null and kind = 'message' and (uses_code_execution or files_preloaded)
), iv as (
    select container_id, seq, started_at as s, recorded_at as e,
           max(recorded_at) over (partition by container_id order by started_at, recorded_at, seq
                                  rows between unbounded preceding and 1 preceding) as prev_end
    from candidates
    where started_at is not null
), marked as (
    select container_id, s, e,
           sum(case when prev_end is null or s > prev_end then 1 else 0 end)
               over (partition by container_id order by s, e, seq
                     rows between unbounded preceding and current row) as island
    from iv
), islands as (
    select container_id, island, min(s) as s, max(e) as e from marked group by container_id, island
), ranked as (
    select container_id, s, e, row_number() over (partition by container_id order by island desc) as rn
    from islands
), spans as (
    select container_id,
           sum(case when rn > 1 then e - s else 0 end) as closed_micros,
           max(case when rn = 1 then s end) as open_start,
           max(case when rn = 1 then e end) as open_end
    from ranked group by container_id
), firsts as (
    select container_id, min(recorded_at) as first_at, max(web) as web
    from candidates group by container_id
)
select f.container_id, f.first_at, f.web, coalesce(s.closed_micros, 0) as closed_micros,
       s.open_start, s.open_end
from firsts f left join spans s on s.container_id = f.container_id;

create unique index container_backfill_id on container_backfill (container_id);

update containers set
    first_at = (select b.first_at from container_backfill b where b.container_id = containers.container_id),
    exact = (select 1 - b.web from container_backfill b where b.container_id = containers.container_id),
    closed_micros = (select b.closed_micros from container_backfill b where b.container_id = containers.container_id),
    open_start = (select b.open_start from container_backfill b where b.container_id = containers.container_id),
    open_end = (select b.open_end from container_backfill b where b.container_id = containers.container_id)
where container_id in (select container_id from container_backfill);

drop table container_backfill;

insert into container_days (account, day, shard, containers, execution_seconds, short_containers, short_seconds)
select account, first_at / 86400000000, 0, count(*), sum(x),
       sum(case when x < 300 then 1 else 0 end), sum(case when x < 300 then x else 0 end)
from (select account, first_at,
             (closed_micros + coalesce(open_end - open_start, 0) + 999999) / 1000000 as x
      from containers where exact = 1 and first_at is not null) t
group by account, first_at / 86400000000;
