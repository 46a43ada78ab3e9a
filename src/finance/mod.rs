//! Finance views over the billing core: the cost report (Anthropic's Admin
//! API shape), budgets and alerts, the FOCUS export and reconciliation.
//! Every figure comes from [`crate::billing::daily::PeriodCosts`], so these
//! views and the invoices never disagree by a cent.
//!
//! [`FinanceCache`] holds what a server keeps between requests: the parsed price
//! book (re-read only when a new one is imported) and each period's costs,
//! reused while the ledger has not changed, or for at most `max_age` while
//! records keep arriving (a 5,000,000-record month takes seconds to compute;
//! the dashboard must answer in milliseconds).

pub mod accounting;
pub mod budget;
pub mod cost_report;
pub mod credits;
pub mod events;
pub mod focus;
pub mod margins;
pub mod reconcile;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::billing::daily::{PeriodCosts, period_costs};
use crate::billing::{BillingError, Period};
use crate::pricing::PriceBook;
use crate::store::{FiguresVersion, Store};

/// A period's costs as computed at one moment.
#[derive(Debug)]
pub struct Snapshot {
    pub costs: PeriodCosts,
    pub computed_at: DateTime<Utc>,
    /// What the figures were computed from.
    version: FiguresVersion,
    taken: Instant,
}

/// Caches shared by the requests of one server.
#[derive(Debug)]
pub struct FinanceCache {
    book: tokio::sync::Mutex<Option<(i64, Arc<PriceBook>)>>,
    periods: tokio::sync::Mutex<HashMap<Period, Arc<Snapshot>>>,
    max_age: Duration,
}

impl FinanceCache {
    pub fn new(max_age: Duration) -> Self {
        FinanceCache {
            book: tokio::sync::Mutex::new(None),
            periods: tokio::sync::Mutex::new(HashMap::new()),
            max_age,
        }
    }

    /// The price book in force (0 = the shipped one), parsed once per import.
    pub async fn book(&self, store: &dyn Store) -> Result<(i64, Arc<PriceBook>), BillingError> {
        let id = store.price_book_id().await?.unwrap_or(0);
        let mut cached = self.book.lock().await;
        if let Some((cached_id, book)) = cached.as_ref()
            && *cached_id == id
        {
            return Ok((id, book.clone()));
        }
        // The id remembered is the one of the book parsed (a newer import
        // between the two reads is picked up by the next call).
        let (id, book) = crate::pricing::book_in_force(store).await?;
        let book = Arc::new(book);
        *cached = Some((id, book.clone()));
        Ok((id, book))
    }

    /// Every account's costs in `period`: reused when nothing they depend on
    /// changed, or when younger than `max_age`; else computed again.
    pub async fn costs(
        &self,
        store: &dyn Store,
        period: Period,
    ) -> Result<Arc<Snapshot>, BillingError> {
        let version = store.figures_version().await?;
        self.costs_at(store, period, version).await
    }

    /// [`FinanceCache::costs`] with the ledger's version already read (one
    /// read serves a request that needs several periods).
    pub async fn costs_at(
        &self,
        store: &dyn Store,
        period: Period,
        version: FiguresVersion,
    ) -> Result<Arc<Snapshot>, BillingError> {
        // Finalizing an invoice (of this period, or of an earlier one whose
        // late usage becomes adjustments here) changes the figures without
        // a new record: any finalization anywhere refreshes them. So do a
        // new price book, a new plan and a credit granted or voided; new
        // records only after `max_age`.
        let same_but_records = |v: &FiguresVersion| {
            v.finalized == version.finalized
                && v.price_book == version.price_book
                && v.plans == version.plans
                && v.credit == version.credit
                && v.details == version.details
        };
        // One computation at a time: concurrent requests wait for it and reuse it.
        let mut periods = self.periods.lock().await;
        if let Some(s) = periods.get(&period)
            && (s.version == version
                || (same_but_records(&s.version) && s.taken.elapsed() < self.max_age))
        {
            return Ok(s.clone());
        }
        let (_, book) = self.book(store).await?;
        let costs = period_costs(store, &book, period, None, &[]).await?;
        let snapshot = Arc::new(Snapshot {
            computed_at: Utc::now(),
            version: FiguresVersion {
                max_seq: costs.max_seq,
                ..version
            },
            taken: Instant::now(),
            costs,
        });
        periods.insert(period, snapshot.clone());
        Ok(snapshot)
    }
}

/// Money as finance reads it: `$1,234.56` (negative: `-$1,234.56`).
pub fn usd(amount: rust_decimal::Decimal) -> String {
    let rounded = crate::billing::cents(amount);
    let text = rounded.abs().to_string();
    let (whole, frac) = text.split_once('.').unwrap_or((&text, "00"));
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if rounded.is_sign_negative() && !rounded.is_zero() {
        "-"
    } else {
        ""
    };
    format!("{sign}${grouped}.{frac}")
}

/// Send every undelivered event of every kind to `webhook`, each kind on
/// its own (one that fails, and is logged, holds back none of the others);
/// how many were delivered.
pub async fn deliver_events(store: &dyn crate::store::Store, webhook: &webhook::Webhook) -> usize {
    let kinds = [
        ("budget alerts", budget::deliver(store, webhook).await),
        ("low-balance alerts", credits::deliver(store, webhook).await),
        (
            "invoice.finalized events",
            events::deliver(store, webhook).await,
        ),
    ];
    let mut delivered = 0;
    for (kind, sent) in kinds {
        match sent {
            Ok(n) => delivered += n,
            Err(e) => tracing::warn!("delivering {kind} failed: {e}"),
        }
    }
    delivered
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    #[test]
    fn usd_groups_thousands_and_keeps_cents() {
        let d = |s: &str| s.parse::<Decimal>().unwrap_or_default();
        assert_eq!(usd(d("1234.56")), "$1,234.56");
        assert_eq!(usd(d("0")), "$0.00");
        assert_eq!(usd(d("999.999")), "$1,000.00");
        assert_eq!(usd(d("-12.3")), "-$12.30");
        assert_eq!(usd(d("1234567")), "$1,234,567.00");
    }
}
