//! Credit balances, the spend gate for gateways, and low-balance alerts
//! (docs/plans.md), over [`crate::billing::credits`].
//!
//! - An account's **balance** is what its grants have left after the draws
//!   of its finalized invoices and what its open invoices would draw now (in
//!   period order), less what expired or was voided undrawn.
//! - `GET …/balance` says whether the account may keep spending: a
//!   prepaid account (one that was ever granted credit) while its balance
//!   is above zero, and any account while its month-to-date spend is under
//!   its budget (when it has one). Its figures come from the periods' costs
//!   the server keeps current (see [`super::FinanceCache`]), so it answers
//!   in a few queries of small tables, never by recomputing a month.
//! - A **low-balance alert** fires once when the balance is under the
//!   account's threshold, per funding level (the total granted then): a
//!   new grant re-arms it. Delivered like budget alerts: recorded once, then
//!   POSTed to the webhook until it answers 2xx.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::FinanceCache;
use super::webhook::Webhook;
use crate::billing::credits::{CreditBook, CreditStatus};
use crate::billing::daily::period_costs;
use crate::billing::{BillingError, Period, cents};
use crate::pricing::PriceBook;
use crate::store::{CreditAlert, FiguresVersion, Store, StoreError};
use crate::time::{rfc3339, to_micros};

/// Where a period's figures come from: a server's cache (at the ledger's
/// version read once for the request), or computed now.
pub enum Figures<'a> {
    Cached(&'a FinanceCache, FiguresVersion),
    Fresh(&'a PriceBook),
}

impl<'a> Figures<'a> {
    /// The cache's figures as of the ledger now.
    pub async fn cached(
        cache: &'a FinanceCache,
        store: &dyn Store,
    ) -> Result<Figures<'a>, BillingError> {
        Ok(Figures::Cached(cache, store.figures_version().await?))
    }

    /// The account's invoice in `period`: (total before credit, spend).
    async fn of(
        &self,
        store: &dyn Store,
        period: Period,
        account: &str,
    ) -> Result<(Decimal, Decimal), BillingError> {
        let of = |costs: &crate::billing::daily::PeriodCosts| {
            costs
                .account(account)
                .map_or((Decimal::ZERO, Decimal::ZERO), |a| {
                    (a.invoice.total_before_credit(), a.invoice.spend())
                })
        };
        Ok(match self {
            Figures::Cached(cache, version) => {
                of(&cache.costs_at(store, period, *version).await?.costs)
            }
            Figures::Fresh(book) => {
                of(&period_costs(store, book, period, Some(account), &[]).await?)
            }
        })
    }
}

/// The account's credit as of `now`: grants, draws and balance.
pub async fn status(
    store: &dyn Store,
    figures: &Figures<'_>,
    account: &str,
    now: DateTime<Utc>,
) -> Result<CreditStatus, BillingError> {
    let book = CreditBook::load(store, Some(account)).await?;
    status_of(store, figures, &book, account, now).await
}

async fn status_of(
    store: &dyn Store,
    figures: &Figures<'_>,
    book: &CreditBook,
    account: &str,
    now: DateTime<Utc>,
) -> Result<CreditStatus, BillingError> {
    let finalized: Vec<Period> = store
        .finalized_periods(account)
        .await?
        .into_iter()
        .filter_map(|(p, _)| Period::parse(&p).ok())
        .collect();
    let current = Period::of_day(now.date_naive());
    let mut open = Vec::new();
    for p in book.open_periods(account, &finalized, current) {
        let (total, spend) = figures.of(store, p, account).await?;
        // The month under way owes what it spent so far: its minimum
        // commitment is owed only once the month is over.
        open.push((p, if p == current { spend } else { total }));
    }
    Ok(book.status(account, &open, now.date_naive()))
}

/// What `GET /v1/accounts/{account}/balance` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Balance {
    pub account: String,
    /// What is left of its prepaid credit (null: never granted any).
    pub balance_usd: Option<Decimal>,
    /// This month's usage and adjustments at its prices (as its budget counts it).
    pub month_to_date_usd: Decimal,
    pub budget_usd: Option<Decimal>,
    /// Whether it may keep spending: credit left (when prepaid) and spend
    /// under budget (when it has one).
    pub allowed: bool,
}

pub async fn balance(
    store: &dyn Store,
    figures: &Figures<'_>,
    account: &str,
    now: DateTime<Utc>,
) -> Result<Balance, BillingError> {
    let book = CreditBook::load(store, Some(account)).await?;
    let balance = if book.is_empty() {
        None
    } else {
        Some(
            status_of(store, figures, &book, account, now)
                .await?
                .balance_usd,
        )
    };
    let (_, spend) = figures
        .of(store, Period::of_day(now.date_naive()), account)
        .await?;
    let budget = store
        .budgets()
        .await?
        .into_iter()
        .find(|b| b.account == account)
        .map(|b| b.monthly_usd);
    let allowed = balance.is_none_or(|b| b > Decimal::ZERO) && budget.is_none_or(|b| spend < b);
    Ok(Balance {
        account: account.to_owned(),
        balance_usd: balance.map(cents),
        month_to_date_usd: cents(spend),
        budget_usd: budget,
        allowed,
    })
}

/// A low-balance alert as listed and as POSTed to the webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreditAlertView {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub account: String,
    pub balance_usd: Decimal,
    pub threshold_usd: Decimal,
    /// The total granted when the balance fell below the threshold.
    pub funded_usd: Decimal,
    pub crossed_at: String,
    pub delivered: bool,
}

impl From<&CreditAlert> for CreditAlertView {
    fn from(a: &CreditAlert) -> Self {
        CreditAlertView {
            kind: "credit_balance_low",
            account: a.account.clone(),
            balance_usd: a.balance_usd,
            threshold_usd: a.threshold_usd,
            funded_usd: a.funded_usd,
            crossed_at: rfc3339(a.crossed_at),
            delivered: a.delivered_at.is_some(),
        }
    }
}

/// Record an alert for each account whose balance is under its threshold
/// (once per funding level); returns the new ones.
pub async fn check(
    store: &dyn Store,
    figures: &Figures<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<CreditAlertView>, BillingError> {
    let mut new = Vec::new();
    for (account, threshold) in store.low_balance_thresholds().await? {
        let book = CreditBook::load(store, Some(&account)).await?;
        if book.is_empty() {
            continue;
        }
        let status = status_of(store, figures, &book, &account, now).await?;
        if status.balance_usd >= threshold {
            continue;
        }
        let alert = CreditAlert {
            account: account.clone(),
            funded_usd: status.granted_usd,
            threshold_usd: threshold,
            balance_usd: cents(status.balance_usd),
            crossed_at: to_micros(now),
            delivered_at: None,
        };
        if store.record_credit_alert(&alert).await? {
            tracing::info!(account, balance = %alert.balance_usd, threshold = %threshold, "low credit balance");
            new.push(CreditAlertView::from(&alert));
        }
    }
    Ok(new)
}

/// POST every undelivered low-balance alert to the webhook; how many were delivered.
pub async fn deliver(store: &dyn Store, webhook: &Webhook) -> Result<usize, StoreError> {
    let mut delivered = 0;
    for alert in store.credit_alerts(true).await? {
        if webhook.post(&CreditAlertView::from(&alert)).await {
            store
                .mark_credit_alert_delivered(&alert.account, &alert.funded_usd.to_string())
                .await?;
            delivered += 1;
        }
    }
    Ok(delivered)
}

/// A credit amount: positive USD with at most cents.
pub fn parse_grant(text: &str) -> Result<Decimal, String> {
    let amount: Decimal = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a USD amount (e.g. 100 or 49.99)"))?;
    if amount <= Decimal::ZERO {
        return Err(format!("{text} must be more than zero"));
    }
    if amount.normalize().scale() > 2 {
        return Err(format!("{text} has fractions of a cent"));
    }
    if amount > Decimal::from(1_000_000_000_000i64) {
        return Err(format!("{text} is over the largest allowed, 10^12 USD"));
    }
    Ok(amount.normalize())
}
