//! Prepaid credit, written once for both backends: grants, the permanent
//! draws of finalized invoices (written by [`super::Invoices::finalize`]
//! in the invoice's own transaction), low-balance thresholds and alerts.
//! Amounts are exact decimal text, as everywhere in the ledger.

use async_trait::async_trait;
use chrono::NaiveDate;

use super::pool::{Pooled, on_pool};
use super::shared::money;
use super::{CreditAlert, CreditDraw, CreditGrant, Credits, Result, StoreError};
use crate::time::now_micros;

#[derive(sqlx::FromRow)]
struct GrantRow {
    id: i64,
    account: String,
    usd: String,
    granted_at: i64,
    expires_on: Option<String>,
    note: Option<String>,
    voided_at: Option<i64>,
}

impl TryFrom<GrantRow> for CreditGrant {
    type Error = StoreError;

    fn try_from(r: GrantRow) -> Result<Self> {
        let expires_on = match r.expires_on {
            Some(d) => Some(NaiveDate::parse_from_str(&d, "%Y-%m-%d").map_err(|e| {
                StoreError::Invalid(format!("credit grant #{} expires_on {d:?}: {e}", r.id))
            })?),
            None => None,
        };
        Ok(CreditGrant {
            usd: money(&r.usd, "credit grant")?,
            id: r.id,
            account: r.account,
            granted_at: r.granted_at,
            expires_on,
            note: r.note,
            voided_at: r.voided_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct DrawRow {
    account: String,
    period: String,
    grant_id: i64,
    usd: String,
}

impl TryFrom<DrawRow> for CreditDraw {
    type Error = StoreError;

    fn try_from(r: DrawRow) -> Result<Self> {
        Ok(CreditDraw {
            usd: money(&r.usd, "credit draw")?,
            account: r.account,
            period: r.period,
            grant_id: r.grant_id,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AlertRow {
    account: String,
    funded_usd: String,
    threshold_usd: String,
    balance_usd: String,
    crossed_at: i64,
    delivered_at: Option<i64>,
}

impl TryFrom<AlertRow> for CreditAlert {
    type Error = StoreError;

    fn try_from(r: AlertRow) -> Result<Self> {
        Ok(CreditAlert {
            funded_usd: money(&r.funded_usd, "credit alert")?,
            threshold_usd: money(&r.threshold_usd, "credit alert")?,
            balance_usd: money(&r.balance_usd, "credit alert")?,
            account: r.account,
            crossed_at: r.crossed_at,
            delivered_at: r.delivered_at,
        })
    }
}

const GRANT_COLUMNS: &str = "id, account, usd, granted_at, expires_on, note, voided_at";

#[async_trait]
impl<S: Pooled> Credits for S {
    async fn grant_credit(
        &self,
        account: &str,
        usd: rust_decimal::Decimal,
        expires_on: Option<NaiveDate>,
        note: Option<&str>,
    ) -> Result<CreditGrant> {
        let row: GrantRow = on_pool!(self.pool(), |p| {
            sqlx::query_as(
                "insert into credit_grants (account, usd, granted_at, expires_on, note) \
                 values ($1, $2, $3, $4, $5) \
                 returning id, account, usd, granted_at, expires_on, note, voided_at",
            )
            .bind(account)
            .bind(usd.to_string())
            .bind(now_micros())
            .bind(expires_on.map(|d| d.to_string()))
            .bind(note)
            .fetch_one(p)
            .await?
        });
        row.try_into()
    }

    async fn credit_grants(&self, account: Option<&str>) -> Result<Vec<CreditGrant>> {
        let rows: Vec<GrantRow> = on_pool!(self.pool(), |p| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "select {GRANT_COLUMNS} from credit_grants \
                 where (cast($1 as text) is null or account = $1) order by account, id"
            )))
            .bind(account)
            .fetch_all(p)
            .await?
        });
        rows.into_iter().map(CreditGrant::try_from).collect()
    }

    async fn void_credit(&self, id: i64) -> Result<Option<CreditGrant>> {
        let row: Option<GrantRow> = on_pool!(self.pool(), |p| {
            sqlx::query_as(
                "update credit_grants set voided_at = $1 where id = $2 and voided_at is null \
                 returning id, account, usd, granted_at, expires_on, note, voided_at",
            )
            .bind(now_micros())
            .bind(id)
            .fetch_optional(p)
            .await?
        });
        row.map(CreditGrant::try_from).transpose()
    }

    async fn credit_draws(&self, account: Option<&str>) -> Result<Vec<CreditDraw>> {
        let rows: Vec<DrawRow> = on_pool!(self.pool(), |p| {
            sqlx::query_as(
                "select account, period, grant_id, usd from credit_draws \
                 where (cast($1 as text) is null or account = $1) \
                 order by account, period, grant_id",
            )
            .bind(account)
            .fetch_all(p)
            .await?
        });
        rows.into_iter().map(CreditDraw::try_from).collect()
    }

    async fn set_low_balance(&self, account: &str, usd: rust_decimal::Decimal) -> Result<()> {
        on_pool!(self.pool(), |p| {
            sqlx::query(
                "insert into credit_settings (account, low_balance_usd, updated_at) \
                 values ($1, $2, $3) on conflict (account) do update set \
                 low_balance_usd = excluded.low_balance_usd, updated_at = excluded.updated_at",
            )
            .bind(account)
            .bind(usd.to_string())
            .bind(now_micros())
            .execute(p)
            .await?;
        });
        Ok(())
    }

    async fn low_balance_thresholds(&self) -> Result<Vec<(String, rust_decimal::Decimal)>> {
        let rows: Vec<(String, String)> = on_pool!(self.pool(), |p| {
            sqlx::query_as("select account, low_balance_usd from credit_settings order by account")
                .fetch_all(p)
                .await?
        });
        rows.into_iter()
            .map(|(a, t)| Ok((a, money(&t, "low-balance threshold")?)))
            .collect()
    }

    async fn record_credit_alert(&self, alert: &CreditAlert) -> Result<bool> {
        let done = on_pool!(self.pool(), |p| {
            sqlx::query(
                "insert into credit_alerts \
                 (account, funded_usd, threshold_usd, balance_usd, crossed_at) \
                 values ($1, $2, $3, $4, $5) on conflict (account, funded_usd) do nothing",
            )
            .bind(&alert.account)
            .bind(alert.funded_usd.to_string())
            .bind(alert.threshold_usd.to_string())
            .bind(alert.balance_usd.to_string())
            .bind(alert.crossed_at)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    async fn credit_alerts(&self, undelivered_only: bool) -> Result<Vec<CreditAlert>> {
        let rows: Vec<AlertRow> = on_pool!(self.pool(), |p| {
            sqlx::query_as(
                "select account, funded_usd, threshold_usd, balance_usd, crossed_at, delivered_at \
                 from credit_alerts where (not $1 or delivered_at is null) \
                 order by crossed_at, account",
            )
            .bind(undelivered_only)
            .fetch_all(p)
            .await?
        });
        rows.into_iter().map(CreditAlert::try_from).collect()
    }

    async fn mark_credit_alert_delivered(&self, account: &str, funded_usd: &str) -> Result<()> {
        on_pool!(self.pool(), |p| {
            sqlx::query(
                "update credit_alerts set delivered_at = $1 where account = $2 and funded_usd = $3",
            )
            .bind(now_micros())
            .bind(account)
            .bind(funded_usd)
            .execute(p)
            .await?;
        });
        Ok(())
    }
}
