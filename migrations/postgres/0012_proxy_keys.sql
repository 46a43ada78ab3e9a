-- The proxy's account mappings: the SHA-256 (hex) of an Anthropic API key
-- and the account its calls are billed to. The key itself is never stored.
create table proxy_keys (
    key_sha256 text primary key,
    account text not null,
    created_at bigint not null
);
