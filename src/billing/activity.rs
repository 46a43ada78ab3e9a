//! Where the ledger has data: which accounts have records in which periods
//! (`tally accounts`, `tally periods`, the dashboard's period picker), and
//! the known account closest to a name that has none (a typo's warning).
//!
//! Counts come from the usage roll-up (sums per account, day, model and
//! trait), never from the records themselves.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;

use super::period::Period;
use super::{BillingError, period_invoices};
use crate::pricing::PriceBook;
use crate::store::Store;
use crate::time::date_of_day_number;

/// Records of one account in one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountPeriod {
    pub account: String,
    pub period: Period,
    pub records: i64,
}

/// Records per account and period, sorted by account then period.
pub async fn account_periods(store: &dyn Store) -> Result<Vec<AccountPeriod>, BillingError> {
    let mut counts: BTreeMap<(String, Period), i64> = BTreeMap::new();
    for (account, day, records) in store.account_days().await? {
        let Some(date) = date_of_day_number(day) else {
            continue;
        };
        *counts.entry((account, Period::of_day(date))).or_default() += records;
    }
    Ok(counts
        .into_iter()
        .filter(|(_, records)| *records > 0)
        .map(|((account, period), records)| AccountPeriod {
            account,
            period,
            records,
        })
        .collect())
}

/// One period that holds records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeriodSummary {
    #[serde(serialize_with = "as_text")]
    pub period: Period,
    pub records: i64,
    pub accounts: i64,
}

fn as_text<S: serde::Serializer>(p: &Period, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(p)
}

/// The periods that hold records, oldest first.
pub async fn periods(store: &dyn Store) -> Result<Vec<PeriodSummary>, BillingError> {
    let mut by_period: BTreeMap<Period, PeriodSummary> = BTreeMap::new();
    for ap in account_periods(store).await? {
        let e = by_period.entry(ap.period).or_insert(PeriodSummary {
            period: ap.period,
            records: 0,
            accounts: 0,
        });
        e.records += ap.records;
        e.accounts += 1;
    }
    Ok(by_period.into_values().collect())
}

/// An account's figures in one period, for `tally accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountTotal {
    #[serde(serialize_with = "as_text")]
    pub period: Period,
    pub records: i64,
    /// The invoice's total (what is due), as its JSON has it.
    pub total_usd: Decimal,
    /// `draft` or `finalized`.
    pub status: String,
}

/// An account with records, and its periods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountSummary {
    pub account: String,
    pub periods: Vec<AccountTotal>,
}

/// The accounts with records (in `only` when given), each with its
/// periods' record counts and invoice totals, and the accounts invoiced in
/// those periods without records of their own (adjustments only). One pass
/// over each period's invoices, which are computed together.
pub async fn accounts(
    store: &dyn Store,
    book: &PriceBook,
    only: Option<Period>,
) -> Result<Vec<AccountSummary>, BillingError> {
    let mut rows: Vec<AccountPeriod> = account_periods(store)
        .await?
        .into_iter()
        .filter(|ap| only.is_none_or(|p| p == ap.period))
        .collect();
    let mut wanted: Vec<Period> = rows.iter().map(|ap| ap.period).chain(only).collect();
    wanted.sort();
    wanted.dedup();
    // (account, period) → (total, status), from each period's invoices.
    let mut figures: BTreeMap<(String, Period), (Decimal, String)> = BTreeMap::new();
    for period in wanted {
        for rendered in period_invoices(store, book, period).await? {
            let (account, total, status) = invoice_figures(&rendered.json)?;
            figures.insert((account, period), (total, status));
        }
    }
    // An invoice without records of its own month (late usage of a
    // finalized one, billed as an adjustment) is listed too.
    for (account, period) in figures.keys() {
        if !rows
            .iter()
            .any(|r| r.account == *account && r.period == *period)
        {
            rows.push(AccountPeriod {
                account: account.clone(),
                period: *period,
                records: 0,
            });
        }
    }
    rows.sort_by(|a, b| (&a.account, a.period).cmp(&(&b.account, b.period)));
    let mut out: Vec<AccountSummary> = Vec::new();
    for ap in rows {
        let (total_usd, status) = figures
            .remove(&(ap.account.clone(), ap.period))
            .unwrap_or_else(|| (Decimal::ZERO, "draft".to_owned()));
        let line = AccountTotal {
            period: ap.period,
            records: ap.records,
            total_usd,
            status,
        };
        match out.last_mut() {
            Some(a) if a.account == ap.account => a.periods.push(line),
            _ => out.push(AccountSummary {
                account: ap.account,
                periods: vec![line],
            }),
        }
    }
    Ok(out)
}

/// Account, total and status of an invoice's JSON.
fn invoice_figures(json: &str) -> Result<(String, Decimal, String), BillingError> {
    #[derive(serde::Deserialize)]
    struct Figures {
        account: String,
        total: Decimal,
        status: String,
    }
    let f: Figures = serde_json::from_str(json).map_err(|e| {
        crate::store::StoreError::Invalid(format!("an invoice's JSON does not read: {e}"))
    })?;
    Ok((f.account, f.total, f.status))
}

/// An account with no records at all, as `tally invoice` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoRecords {
    /// The account with records whose name is closest (a likely typo), if
    /// any is close enough to suggest.
    pub closest: Option<String>,
    /// It has a plan, billing details, prepaid credit or a budget: a real
    /// account that may owe its minimum commitment, not a typo.
    pub known: bool,
}

/// `None` when `account` has records; otherwise what there is to say about
/// it. The suggestion (a scan of the roll-up's accounts) is only looked for
/// when there are no records.
pub async fn no_records(
    store: &dyn Store,
    account: &str,
) -> Result<Option<NoRecords>, BillingError> {
    if store.has_records(account).await? {
        return Ok(None);
    }
    let known = store.plan(account).await?.is_some()
        || store.details_as_of(account, i64::MAX).await?.is_some()
        || !store.credit_grants(Some(account)).await?.is_empty()
        || store.budgets().await?.iter().any(|b| b.account == account);
    let mut names: Vec<String> = store
        .account_days()
        .await?
        .into_iter()
        .map(|(a, _, _)| a)
        .collect();
    names.dedup();
    Ok(Some(NoRecords {
        closest: closest(account, names.iter().map(String::as_str)).map(str::to_owned),
        known,
    }))
}

/// The name in `known` closest to `name` by edit distance (case-blind),
/// when it is close enough to be a slip: at most a third of the longer
/// name's characters differ (at least one edit allowed).
pub fn closest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    known
        .into_iter()
        .map(|k| (strsim::levenshtein(&lower, &k.to_lowercase()), k))
        .filter(|(d, k)| *d <= (name.chars().count().max(k.chars().count()) / 3).max(1))
        .min_by(|(da, ka), (db, kb)| da.cmp(db).then(ka.cmp(kb)))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn suggests_only_near_names() {
        let known = ["acme", "globex", "initech"];
        assert_eq!(closest("acmee", known), Some("acme"));
        assert_eq!(closest("ACME", known), Some("acme"));
        assert_eq!(closest("glbex", known), Some("globex"));
        assert_eq!(closest("initec", known), Some("initech"));
        assert_eq!(closest("zzz", known), None);
        assert_eq!(closest("umbrella", known), None);
        assert_eq!(closest("x", []), None);
    }
}
