//! API keys, written once for both backends: tally's own account keys (only
//! their hash is stored), and the proxy's mappings from the SHA-256 of an
//! Anthropic API key to an account (the key itself is never seen here).

use async_trait::async_trait;

use super::pool::{Pooled, on_pool};
use super::{ApiKey, ApiKeys, ProxyKey, ProxyKeys, Result};
use crate::time::{now_micros, rfc3339};

// ---- account API keys ----------------------------------------------------

#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    id: i64,
    account: String,
    prefix: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl From<ApiKeyRow> for ApiKey {
    fn from(r: ApiKeyRow) -> Self {
        ApiKey {
            id: r.id,
            account: r.account,
            prefix: r.prefix,
            created_at: rfc3339(r.created_at),
            revoked_at: r.revoked_at.map(rfc3339),
        }
    }
}

#[async_trait]
impl<S: Pooled> ApiKeys for S {
    async fn create_key(&self, account: &str, prefix: &str, key_hash: &str) -> Result<i64> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_scalar(
                "insert into api_keys (account, prefix, key_hash, created_at) \
                 values ($1, $2, $3, $4) returning id",
            )
            .bind(account)
            .bind(prefix)
            .bind(key_hash)
            .bind(now_micros())
            .fetch_one(p)
            .await?
        }))
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>> {
        let rows: Vec<ApiKeyRow> = on_pool!(self.pool(), |p| {
            sqlx::query_as(
                "select id, account, prefix, created_at, revoked_at from api_keys order by id desc",
            )
            .fetch_all(p)
            .await?
        });
        Ok(rows.into_iter().map(ApiKey::from).collect())
    }

    async fn revoke_key(&self, id: i64) -> Result<bool> {
        let done = on_pool!(self.pool(), |p| {
            sqlx::query("update api_keys set revoked_at = $1 where id = $2 and revoked_at is null")
                .bind(now_micros())
                .bind(id)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    async fn key_account(&self, key_hash: &str) -> Result<Option<String>> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_scalar(
                "select account from api_keys where key_hash = $1 and revoked_at is null",
            )
            .bind(key_hash)
            .fetch_optional(p)
            .await?
        }))
    }
}

// ---- the proxy's key mappings ---------------------------------------------

#[derive(sqlx::FromRow)]
struct ProxyKeyRow {
    key_sha256: String,
    account: String,
    created_at: i64,
}

impl From<ProxyKeyRow> for ProxyKey {
    fn from(r: ProxyKeyRow) -> Self {
        ProxyKey {
            api_key_id: crate::auth::api_key_id(&r.key_sha256).to_owned(),
            account: r.account,
            created_at: rfc3339(r.created_at),
        }
    }
}

#[async_trait]
impl<S: Pooled> ProxyKeys for S {
    async fn map_proxy_key(&self, key_sha256: &str, account: &str) -> Result<()> {
        on_pool!(self.pool(), |p| {
            sqlx::query(
                "insert into proxy_keys (key_sha256, account, created_at) values ($1, $2, $3) \
                 on conflict (key_sha256) do update set account = excluded.account",
            )
            .bind(key_sha256)
            .bind(account)
            .bind(now_micros())
            .execute(p)
            .await?;
        });
        Ok(())
    }

    async fn proxy_keys(&self) -> Result<Vec<ProxyKey>> {
        let rows: Vec<ProxyKeyRow> = on_pool!(self.pool(), |p| {
            sqlx::query_as(
                "select key_sha256, account, created_at from proxy_keys order by account, key_sha256",
            )
            .fetch_all(p)
            .await?
        });
        Ok(rows.into_iter().map(ProxyKey::from).collect())
    }

    async fn unmap_proxy_key(&self, key_sha256: &str) -> Result<bool> {
        let done = on_pool!(self.pool(), |p| {
            sqlx::query("delete from proxy_keys where key_sha256 = $1")
                .bind(key_sha256)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    async fn proxy_key_account(&self, key_sha256: &str) -> Result<Option<String>> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_scalar("select account from proxy_keys where key_sha256 = $1")
                .bind(key_sha256)
                .fetch_optional(p)
                .await?
        }))
    }
}
