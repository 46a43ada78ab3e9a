-- Container-time billing reads every container record of a period (org-wide,
-- for the free allowance): make that an index-only scan, in time order.
drop index records_container_time;
create index records_container_cover on records (
    recorded_at, container_id, account, started_at, seq, kind,
    uses_code_execution, files_preloaded, web_tools_20260209
) where container_id is not null;
