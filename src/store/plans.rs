//! Account plans, written once for both backends: each `plan set` adds a
//! row (the plan's TOML text, validated by [`crate::plans`] before it gets
//! here); the newest row of an account is its plan in force.

use async_trait::async_trait;

use super::pool::{Pooled, on_pool};
use super::{Plans, Result, StoredPlan};
use crate::time::{now_micros, rfc3339};

#[derive(sqlx::FromRow)]
struct PlanRow {
    id: i64,
    account: String,
    toml: String,
    set_at: i64,
}

impl From<PlanRow> for StoredPlan {
    fn from(r: PlanRow) -> Self {
        StoredPlan {
            id: r.id,
            account: r.account,
            toml: r.toml,
            set_at: rfc3339(r.set_at),
        }
    }
}

#[async_trait]
impl<S: Pooled> Plans for S {
    async fn set_plan(&self, account: &str, toml: &str) -> Result<StoredPlan> {
        let row: PlanRow = on_pool!(self.pool(), |p| {
            sqlx::query_as(
                "insert into account_plans (account, toml, set_at) values ($1, $2, $3) \
                 returning id, account, toml, set_at",
            )
            .bind(account)
            .bind(toml)
            .bind(now_micros())
            .fetch_one(p)
            .await?
        });
        Ok(row.into())
    }

    async fn plan(&self, account: &str) -> Result<Option<StoredPlan>> {
        let row: Option<PlanRow> = on_pool!(self.pool(), |p| {
            sqlx::query_as(
                "select id, account, toml, set_at from account_plans where account = $1 \
                 order by id desc limit 1",
            )
            .bind(account)
            .fetch_optional(p)
            .await?
        });
        Ok(row.map(StoredPlan::from))
    }

    async fn plan_as_of(&self, account: &str, at: i64) -> Result<Option<StoredPlan>> {
        let row: Option<PlanRow> = on_pool!(self.pool(), |p| {
            sqlx::query_as(
                "select id, account, toml, set_at from account_plans \
                 where account = $1 and set_at <= $2 order by id desc limit 1",
            )
            .bind(account)
            .bind(at)
            .fetch_optional(p)
            .await?
        });
        Ok(row.map(StoredPlan::from))
    }

    async fn plans(&self) -> Result<Vec<StoredPlan>> {
        let rows: Vec<PlanRow> = on_pool!(self.pool(), |p| {
            // The newest row of each account.
            sqlx::query_as(
                "select id, account, toml, set_at from account_plans p \
                 where id = (select max(id) from account_plans q where q.account = p.account) \
                 order by account",
            )
            .fetch_all(p)
            .await?
        });
        Ok(rows.into_iter().map(StoredPlan::from).collect())
    }

    async fn plans_id(&self) -> Result<i64> {
        let id: Option<i64> = on_pool!(self.pool(), |p| {
            sqlx::query_scalar("select max(id) from account_plans")
                .fetch_one(p)
                .await?
        });
        Ok(id.unwrap_or(0))
    }
}
