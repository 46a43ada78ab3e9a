//! Budgets and their alerts.

use super::*;

#[derive(sqlx::FromRow)]
struct BudgetAlertRow {
    account: String,
    period: String,
    threshold: i64,
    spend_usd: String,
    budget_usd: String,
    crossed_at: i64,
    delivered_at: Option<i64>,
}

impl TryFrom<BudgetAlertRow> for BudgetAlert {
    type Error = StoreError;

    fn try_from(r: BudgetAlertRow) -> Result<Self> {
        Ok(BudgetAlert {
            spend_usd: money(&r.spend_usd, "amount in budget_alerts")?,
            budget_usd: money(&r.budget_usd, "amount in budget_alerts")?,
            account: r.account,
            period: r.period,
            threshold: r.threshold,
            crossed_at: r.crossed_at,
            delivered_at: r.delivered_at,
        })
    }
}

#[async_trait]
impl<S: Pooled> Budgets for S {
    async fn set_budget(&self, account: &str, monthly_usd: Decimal) -> Result<()> {
        on_pool!(self.pool(), |p| {
            sqlx::query(
                "insert into budgets (account, monthly_usd, updated_at) values ($1, $2, $3) \
                 on conflict (account) do update set monthly_usd = excluded.monthly_usd, \
                 updated_at = excluded.updated_at",
            )
            .bind(account)
            .bind(monthly_usd.to_string())
            .bind(now_micros())
            .execute(p)
            .await?;
        });
        Ok(())
    }

    async fn budgets(&self) -> Result<Vec<Budget>> {
        let rows: Vec<(String, String)> = on_pool!(self.pool(), |p| {
            sqlx::query_as("select account, monthly_usd from budgets order by account")
                .fetch_all(p)
                .await?
        });
        rows.into_iter()
            .map(|(account, amount)| {
                Ok(Budget {
                    monthly_usd: money(&amount, "budget")?,
                    account,
                })
            })
            .collect()
    }

    async fn record_alert(&self, alert: &BudgetAlert) -> Result<bool> {
        let done = on_pool!(self.pool(), |p| {
            sqlx::query(
                "insert into budget_alerts (account, period, threshold, spend_usd, budget_usd, crossed_at) \
                 values ($1, $2, $3, $4, $5, $6) on conflict (account, period, threshold) do nothing",
            )
            .bind(&alert.account)
            .bind(&alert.period)
            .bind(alert.threshold)
            .bind(alert.spend_usd.to_string())
            .bind(alert.budget_usd.to_string())
            .bind(alert.crossed_at)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    async fn alerts(
        &self,
        period: Option<&str>,
        undelivered_only: bool,
    ) -> Result<Vec<BudgetAlert>> {
        let rows: Vec<BudgetAlertRow> = on_pool!(self.pool(), |p| {
            sqlx::query_as(
                "select account, period, threshold, spend_usd, budget_usd, crossed_at, delivered_at \
                 from budget_alerts where (cast($1 as text) is null or period = $1) \
                 and (not $2 or delivered_at is null) \
                 order by period, account, threshold",
            )
            .bind(period)
            .bind(undelivered_only)
            .fetch_all(p)
            .await?
        });
        rows.into_iter().map(BudgetAlert::try_from).collect()
    }

    async fn mark_alert_delivered(
        &self,
        account: &str,
        period: &str,
        threshold: i64,
    ) -> Result<()> {
        on_pool!(self.pool(), |p| {
            sqlx::query(
                "update budget_alerts set delivered_at = $1 \
                 where account = $2 and period = $3 and threshold = $4",
            )
            .bind(now_micros())
            .bind(account)
            .bind(period)
            .bind(threshold)
            .execute(p)
            .await?;
        });
        Ok(())
    }
}
