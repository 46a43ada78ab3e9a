-- What each record's stored line keeps: 'full' (the line verbatim) or
-- 'billing' (ids, model, usage, container, stop reason, block types and tool
-- names; no prompt or completion). Records before this migration kept it all.
alter table records add column retention text not null default 'full';
