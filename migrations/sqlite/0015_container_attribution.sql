-- Container time by attribution (SPEC 6 and 7): a container's time goes to
-- the workspace, API key id, user and tags of its first billable record, so
-- each container keeps that record (first_seq: the earliest by recorded_at,
-- then seq) and its attribution (attribution: a JSON array of [dim, value]
-- pairs, dim as in usage_dim_rollup; '' when it has none), and the roll-up
-- keeps per account, UTC day, dimension and value the same sums as
-- container_days over exact containers. A split by one dimension reads a few
-- hundred rows instead of the month's container records; containers without
-- the dimension are the difference from container_days.
alter table containers add column first_seq integer;
alter table containers add column attribution text not null default '';

create table container_dim_days (
    dim                text    not null,
    day                integer not null,
    account            text    not null,
    value              text    not null,
    shard              integer not null,
    containers         integer not null,
    execution_seconds  integer not null,
    short_containers   integer not null,
    short_seconds      integer not null,
    primary key (dim, day, account, value, shard)
) strict;

-- Backfill: each container's first record, its attribution, and (for exact
-- containers with attribution) its execution time from its records' union.
create table container_firsts as
select container_id, seq from (
    select container_id, seq,
           row_number() over (partition by container_id order by recorded_at, seq) as rn
    from records
    where container_id is not null and kind = 'message' and (uses_code_execution or files_preloaded)
) where rn = 1;
create unique index container_firsts_id on container_firsts (container_id);

update containers set first_seq = (
    select f.seq from container_firsts f where f.container_id = containers.container_id
) where container_id in (select container_id from container_firsts);

create table container_pairs as
select f.container_id, 'workspace' as dim, r.workspace as value
  from container_firsts f join records r on r.seq = f.seq where r.workspace is not null
union all
select f.container_id, 'api_key_id', r.api_key_id
  from container_firsts f join records r on r.seq = f.seq where r.api_key_id is not null
union all
select f.container_id, 'user', r.end_user
  from container_firsts f join records r on r.seq = f.seq where r.end_user is not null
union all
select f.container_id, 'tag:' || t.key, t.value
  from container_firsts f join record_tags t on t.seq = f.seq;
create index container_pairs_id on container_pairs (container_id);

update containers set attribution = (
    select json_group_array(json_array(p.dim, p.value)) from container_pairs p
    where p.container_id = containers.container_id
) where container_id in (select container_id from container_pairs);

create table container_seconds as
with iv as (
    select r.container_id, r.seq, r.started_at as s, r.recorded_at as e,
           max(r.recorded_at) over (partition by r.container_id order by r.started_at, r.recorded_at, r.seq
                                    rows between unbounded preceding and 1 preceding) as prev_end
    from records r join containers c on c.container_id = r.container_id
    where c.exact = 1 and c.attribution <> ''
      and r.container_id is not null and r.kind = 'message' and (r.uses_code_execution or r.files_preloaded)
      and r.started_at is not null and r.recorded_at > r.started_at
), marked as (
    select container_id, s, e,
           sum(case when prev_end is null or s > prev_end then 1 else 0 end)
               over (partition by container_id order by s, e, seq
                     rows between unbounded preceding and current row) as island
    from iv
), islands as (
    select container_id, island, min(s) as s, max(e) as e from marked group by container_id, island
)
select container_id, (cast(sum(e - s) as integer) + 999999) / 1000000 as seconds
from islands group by container_id;
create unique index container_seconds_id on container_seconds (container_id);

insert into container_dim_days (dim, day, account, value, shard, containers, execution_seconds,
                                short_containers, short_seconds)
select p.dim, c.first_at / 86400000000, c.account, p.value, 0, count(*), sum(coalesce(s.seconds, 0)),
       sum(case when coalesce(s.seconds, 0) < 300 then 1 else 0 end),
       sum(case when coalesce(s.seconds, 0) < 300 then coalesce(s.seconds, 0) else 0 end)
from containers c
join container_pairs p on p.container_id = c.container_id
left join container_seconds s on s.container_id = c.container_id
where c.exact = 1 and c.first_at is not null
group by p.dim, c.first_at / 86400000000, c.account, p.value;

drop table container_seconds;
drop table container_pairs;
drop table container_firsts;
