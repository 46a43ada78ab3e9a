//! Monthly budgets, run-rate forecasts and threshold alerts (docs/finance.md).
//!
//! - Month-to-date spend is the account's usage and adjustments on its invoice
//!   for the period, at its prices (not a minimum commitment; the
//!   same figure as `GET …/invoices/{period}`).
//! - The month-end forecast extrapolates the spend so far at the current
//!   run-rate: spend × (length of the month ÷ time elapsed). A past month's
//!   forecast is its spend; a future month's is zero.
//! - Crossing 50 %, 80 % or 100 % of the budget records one alert per
//!   account, period and threshold (the database's primary key makes that
//!   hold across several `tally serve` processes). Alerts are POSTed to the
//!   webhook as JSON; one that could not be delivered is retried at the next
//!   check, so a webhook sees each alert at least once.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::webhook::Webhook;
use crate::billing::daily::PeriodCosts;
use crate::billing::{Period, cents};
use crate::store::{BudgetAlert, Store, StoreError};
use crate::time::to_micros;

pub const THRESHOLDS: [i64; 3] = [50, 80, 100];

/// What `GET /v1/accounts/{account}/budget` answers.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetStatus {
    pub account: String,
    pub period: String,
    pub monthly_budget_usd: Option<Decimal>,
    pub month_to_date_usd: Decimal,
    pub forecast_usd: Decimal,
    /// Month-to-date spend ÷ budget, 4 decimals (0.5 = half used).
    pub share_used: Option<Decimal>,
    pub alerts: Vec<AlertView>,
}

/// An alert as listed and as POSTed to the webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertView {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub account: String,
    pub period: String,
    pub threshold_percent: i64,
    pub spend_usd: Decimal,
    pub budget_usd: Decimal,
    pub crossed_at: String,
    pub delivered: bool,
}

impl From<&BudgetAlert> for AlertView {
    fn from(a: &BudgetAlert) -> Self {
        AlertView {
            kind: "budget_threshold_crossed",
            account: a.account.clone(),
            period: a.period.clone(),
            threshold_percent: a.threshold,
            spend_usd: a.spend_usd,
            budget_usd: a.budget_usd,
            crossed_at: crate::time::rfc3339(a.crossed_at),
            delivered: a.delivered_at.is_some(),
        }
    }
}

/// Spend × month length ÷ elapsed time, to cents.
pub fn forecast(spend: Decimal, period: Period, now: DateTime<Utc>) -> Decimal {
    let (start, end) = period.bounds();
    let now = to_micros(now);
    if now >= end {
        return spend;
    }
    if now <= start {
        return Decimal::ZERO;
    }
    cents(spend * Decimal::from(end - start) / Decimal::from(now - start))
}

/// The budget status of every account with a budget or spend in the period.
pub async fn statuses(
    store: &dyn Store,
    costs: &PeriodCosts,
    now: DateTime<Utc>,
) -> Result<Vec<BudgetStatus>, StoreError> {
    let budgets = store.budgets().await?;
    let alerts = store.alerts(Some(&costs.period.to_string()), false).await?;
    let mut accounts: Vec<String> = costs
        .accounts
        .iter()
        .map(|a| a.invoice.account.clone())
        .chain(budgets.iter().map(|b| b.account.clone()))
        .collect();
    accounts.sort();
    accounts.dedup();
    Ok(accounts
        .into_iter()
        .map(|account| {
            let budget = budgets
                .iter()
                .find(|b| b.account == account)
                .map(|b| b.monthly_usd);
            let spend = costs
                .account(&account)
                .map_or(Decimal::ZERO, |a| a.invoice.spend());
            status(&account, costs.period, budget, spend, &alerts, now)
        })
        .collect())
}

fn status(
    account: &str,
    period: Period,
    budget: Option<Decimal>,
    spend: Decimal,
    alerts: &[BudgetAlert],
    now: DateTime<Utc>,
) -> BudgetStatus {
    let spend = cents(spend);
    BudgetStatus {
        account: account.to_owned(),
        period: period.to_string(),
        monthly_budget_usd: budget.map(cents),
        month_to_date_usd: spend,
        forecast_usd: forecast(spend, period, now),
        share_used: budget
            .filter(|b| !b.is_zero())
            .map(|b| (spend / b).round_dp(4).normalize()),
        alerts: alerts
            .iter()
            .filter(|a| a.account == account)
            .map(AlertView::from)
            .collect(),
    }
}

/// Record the alerts the period's spend has crossed; returns the ones this
/// call recorded (never one already recorded).
pub async fn check(
    store: &dyn Store,
    costs: &PeriodCosts,
    now: DateTime<Utc>,
) -> Result<Vec<AlertView>, StoreError> {
    let mut new = Vec::new();
    for crate::store::Budget {
        account,
        monthly_usd: budget,
    } in store.budgets().await?
    {
        if budget <= Decimal::ZERO {
            continue;
        }
        let spend = costs
            .account(&account)
            .map_or(Decimal::ZERO, |a| a.invoice.spend());
        for threshold in THRESHOLDS {
            if spend * Decimal::ONE_HUNDRED < budget * Decimal::from(threshold) {
                continue;
            }
            let alert = BudgetAlert {
                account: account.clone(),
                period: costs.period.to_string(),
                threshold,
                spend_usd: cents(spend),
                budget_usd: cents(budget),
                crossed_at: to_micros(now),
                delivered_at: None,
            };
            if store.record_alert(&alert).await? {
                tracing::info!(
                    account,
                    threshold,
                    spend = %alert.spend_usd,
                    budget = %alert.budget_usd,
                    "budget alert"
                );
                new.push(AlertView::from(&alert));
            }
        }
    }
    Ok(new)
}

/// POST every undelivered alert to the webhook; returns how many were delivered.
pub async fn deliver(store: &dyn Store, webhook: &Webhook) -> Result<usize, StoreError> {
    let mut delivered = 0;
    for alert in store.alerts(None, true).await? {
        if webhook.post(&AlertView::from(&alert)).await {
            store
                .mark_alert_delivered(&alert.account, &alert.period, alert.threshold)
                .await?;
            delivered += 1;
        }
    }
    Ok(delivered)
}

/// Parse a budget amount: a non-negative USD decimal.
pub fn parse_amount(text: &str) -> Result<Decimal, String> {
    let amount: Decimal = text.trim().parse().map_err(|_| {
        format!("monthly budget {text:?} is not a USD amount (e.g. 500 or 1234.50)")
    })?;
    if amount.is_sign_negative() {
        return Err(format!("monthly budget {text} is negative"));
    }
    // Far above any real budget, and far from Decimal's limits in the
    // threshold arithmetic.
    if amount > Decimal::from(1_000_000_000_000_000i64) {
        return Err(format!(
            "monthly budget {text} is over the largest allowed, 10^15 USD"
        ));
    }
    Ok(amount.normalize())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn forecast_extrapolates_the_run_rate() {
        let may = Period::parse("2025-05").unwrap_or_else(|e| panic!("{e}"));
        let at = |d, h| {
            Utc.with_ymd_and_hms(2025, 5, d, h, 0, 0)
                .single()
                .unwrap_or_default()
        };
        // $100 after 10 of 31 days → $310.
        assert_eq!(
            forecast(Decimal::from(100), may, at(11, 0)),
            Decimal::from(310)
        );
        // After the month: the spend itself.
        let june = Utc
            .with_ymd_and_hms(2025, 6, 2, 0, 0, 0)
            .single()
            .unwrap_or_default();
        assert_eq!(forecast(Decimal::from(100), may, june), Decimal::from(100));
        // 12 hours in: $1 → $62.
        assert_eq!(forecast(Decimal::ONE, may, at(1, 12)), Decimal::from(62));
    }

    #[test]
    fn amounts_are_checked() {
        assert!(parse_amount("-5").is_err());
        assert!(parse_amount("five").is_err());
        assert!(parse_amount("79228162514264337593543950335").is_err());
        assert_eq!(
            parse_amount("500.50"),
            Ok("500.5".parse().unwrap_or_default())
        );
    }
}
