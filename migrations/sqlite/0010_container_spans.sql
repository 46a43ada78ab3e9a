-- Container spans: each container keeps the union of its billable records'
-- intervals as a set of disjoint spans ("start:end" pairs in microseconds,
-- comma-separated, ascending), so a record that arrives out of time order is
-- merged into it instead of sending billing back to the records. Only
-- containers with a web-tools record, or with more than 128 spans, stay
-- inexact (exact = 0, spans empty).
--
-- Every container is recomputed from its records (the 0009 state kept the
-- closed part of the union as a sum only), and the day sums with it.
alter table containers add column spans text not null default '';

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
    where started_at is not null and recorded_at > started_at
), marked as (
    select container_id, s, e,
           sum(case when prev_end is null or s > prev_end then 1 else 0 end)
               over (partition by container_id order by s, e, seq
                     rows between unbounded preceding and current row) as island
    from iv
), islands as (
    select container_id, island, min(s) as s, max(e) as e from marked group by container_id, island
), unions as (
    select container_id, count(*) as n, cast(sum(e - s) as bigint) as micros, group_concat(cast(s as text) || ':' || cast(e as text), ',' order by s) as spans
    from islands group by container_id
), firsts as (
    select container_id, min(recorded_at) as first_at, max(web) as web
    from candidates group by container_id
)
select f.container_id, f.first_at,
       case when f.web = 1 or coalesce(u.n, 0) > 128 then 0 else 1 end as exact,
       case when f.web = 1 or coalesce(u.n, 0) > 128 then '' else coalesce(u.spans, '') end as spans,
       (coalesce(u.micros, 0) + 999999) / 1000000 as seconds
from firsts f left join unions u on u.container_id = f.container_id;

create unique index container_backfill_id on container_backfill (container_id);

update containers set
    first_at = (select b.first_at from container_backfill b where b.container_id = containers.container_id),
    exact = (select b.exact from container_backfill b where b.container_id = containers.container_id),
    spans = (select b.spans from container_backfill b where b.container_id = containers.container_id)
where container_id in (select container_id from container_backfill);

delete from container_days;
insert into container_days (account, day, shard, containers, execution_seconds, short_containers, short_seconds)
select c.account, b.first_at / 86400000000, 0, count(*), sum(b.seconds),
       sum(case when b.seconds < 300 then 1 else 0 end), sum(case when b.seconds < 300 then b.seconds else 0 end)
from container_backfill b join containers c on c.container_id = b.container_id
where b.exact = 1
group by c.account, b.first_at / 86400000000;

drop table container_backfill;

alter table containers drop column open_start;
alter table containers drop column open_end;
alter table containers drop column closed_micros;
