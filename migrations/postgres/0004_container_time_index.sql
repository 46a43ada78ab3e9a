-- Container-time billing reads container records by time: index them by
-- time (only rows that name a container), instead of by container id.
drop index records_container;
create index records_container_time on records (recorded_at) where container_id is not null;
