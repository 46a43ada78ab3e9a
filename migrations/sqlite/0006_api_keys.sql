-- Account API keys: only a SHA-256 of each key is kept; `prefix` (the first
-- characters) lets people tell keys apart in listings.
create table api_keys (
    id          integer primary key,
    account     text    not null,
    prefix      text    not null,
    key_hash    text    not null unique,
    created_at  integer not null,
    revoked_at  integer
) strict;
