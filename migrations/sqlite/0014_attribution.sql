-- Attribution within an account (SPEC 3.1): the workspace that served the
-- call, the API key id that made it, the end user, and tags (key → value,
-- at most 20 a record). Tags live in their own table, one row per tag,
-- written in the same transaction as their record.
alter table records add column workspace text;
alter table records add column api_key_id text;
alter table records add column end_user text;

create table record_tags (
    seq    integer not null,
    key    text    not null,
    value  text    not null,
    primary key (seq, key)
) strict;

create index record_tags_by_key on record_tags (key, value);
