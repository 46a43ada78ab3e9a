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
