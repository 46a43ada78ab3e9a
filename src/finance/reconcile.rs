//! `tally reconcile`: tally's figures against a cost report exported from
//! Anthropic's Admin API, by UTC day and cost type.
//!
//! The file holds the report's JSON pages: one page object, an array of
//! pages, or pages one after another (as a script appending each `GET`
//! answer writes them). Anthropic's amounts are cents as decimal strings;
//! they are summed per day and `cost_type` over every result (whatever the
//! report was grouped by). A result without a `cost_type` makes that day
//! compared as one `total`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::billing::Period;
use crate::billing::daily::PeriodCosts;

#[derive(Debug, Deserialize)]
struct Page {
    data: Vec<PageBucket>,
}

#[derive(Debug, Deserialize)]
struct PageBucket {
    starting_at: String,
    results: Vec<PageResult>,
}

#[derive(Debug, Deserialize)]
struct PageResult {
    amount: String,
    cost_type: Option<String>,
    currency: Option<String>,
}

/// USD per (day, cost type) from Anthropic's pages.
pub type Figures = BTreeMap<(NaiveDate, String), Decimal>;

/// Read the pages of an exported cost report; errors name the page and field.
pub fn read_pages(text: &str) -> Result<Figures, String> {
    let mut figures = Figures::new();
    let mut totals_only: BTreeSet<NaiveDate> = BTreeSet::new();
    let mut pages = Vec::new();
    let stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    for (i, value) in stream.enumerate() {
        let value = value
            .map_err(|e| format!("cost report: JSON value {} is not valid JSON: {e}", i + 1))?;
        match value {
            serde_json::Value::Array(items) => pages.extend(items),
            other => pages.push(other),
        }
    }
    if pages.is_empty() {
        return Err("cost report: the file holds no pages".into());
    }
    for (n, page) in pages.into_iter().enumerate() {
        let page: Page = serde_path_to_error::deserialize(page).map_err(|e| {
            format!(
                "cost report page {}: field {}: {}",
                n + 1,
                e.path(),
                e.inner()
            )
        })?;
        for bucket in page.data {
            let day = chrono::DateTime::parse_from_rfc3339(&bucket.starting_at)
                .map_err(|e| {
                    format!(
                        "cost report page {}: starting_at {:?}: {e}",
                        n + 1,
                        bucket.starting_at
                    )
                })?
                .date_naive();
            for r in bucket.results {
                if let Some(c) = r.currency.as_deref().filter(|c| *c != "USD") {
                    return Err(format!(
                        "cost report page {}: currency {c:?}: only USD reports can be reconciled",
                        n + 1
                    ));
                }
                let cents: Decimal = r.amount.parse().map_err(|_| {
                    format!(
                        "cost report page {}: amount {:?} on {day} is not a decimal string",
                        n + 1,
                        r.amount
                    )
                })?;
                let kind = match r.cost_type {
                    Some(k) => k,
                    None => {
                        totals_only.insert(day);
                        "total".to_owned()
                    }
                };
                let sum = figures.entry((day, kind)).or_default();
                *sum = sum
                    .checked_add(cents / Decimal::ONE_HUNDRED)
                    .ok_or_else(|| {
                        format!(
                            "cost report page {}: amounts on {day} add up beyond any real bill",
                            n + 1
                        )
                    })?;
            }
        }
    }
    Ok(collapse(figures, &totals_only))
}

/// On days compared as a total, add every cost type into `total`.
fn collapse(figures: Figures, totals_only: &BTreeSet<NaiveDate>) -> Figures {
    let mut out = Figures::new();
    for ((day, kind), amount) in figures {
        let kind = if totals_only.contains(&day) {
            "total".to_owned()
        } else {
            kind
        };
        *out.entry((day, kind)).or_default() += amount;
    }
    out
}

/// tally's figures for the period, in the same keys: what the usage cost
/// (Anthropic's prices; never what a plan charges the account).
pub fn tally_figures(costs: &PeriodCosts) -> Figures {
    let mut figures = Figures::new();
    for cost in costs.days() {
        let kind = super::cost_report::cost_type(cost.key.charge).to_owned();
        *figures.entry((cost.day, kind)).or_default() += cost.cost;
    }
    figures
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub day: NaiveDate,
    pub cost_type: String,
    pub tally_usd: Decimal,
    pub anthropic_usd: Decimal,
    pub difference_usd: Decimal,
    pub within_tolerance: bool,
}

/// Compare per day and cost type within `period`; rows where both are zero are left out.
pub fn compare(
    period: Period,
    tally: &Figures,
    anthropic: &Figures,
    tolerance: Decimal,
) -> Vec<Row> {
    let totals_only: BTreeSet<NaiveDate> = anthropic
        .keys()
        .filter(|(_, k)| k == "total")
        .map(|(d, _)| *d)
        .collect();
    let tally = collapse(tally.clone(), &totals_only);
    let keys: BTreeSet<&(NaiveDate, String)> = tally
        .keys()
        .chain(anthropic.keys())
        .filter(|(d, _)| period.contains(*d))
        .collect();
    keys.into_iter()
        .filter_map(|key| {
            let t = tally.get(key).copied().unwrap_or_default();
            let a = anthropic.get(key).copied().unwrap_or_default();
            if t.is_zero() && a.is_zero() {
                return None;
            }
            let diff = (t - a).normalize();
            Some(Row {
                day: key.0,
                cost_type: key.1.clone(),
                tally_usd: t.normalize(),
                anthropic_usd: a.normalize(),
                difference_usd: diff,
                within_tolerance: diff.abs() <= tolerance,
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pages_in_any_layout_sum_by_day_and_type() {
        let page = r#"{"data":[{"starting_at":"2025-05-01T00:00:00Z","ending_at":"2025-05-02T00:00:00Z",
            "results":[{"amount":"150.5","currency":"USD","cost_type":"tokens"},
                       {"amount":"49.5","currency":"USD","cost_type":"tokens"},
                       {"amount":"25","currency":"USD","cost_type":"code_execution"}]}],
            "has_more":false,"next_page":null}"#;
        let f = read_pages(&format!("{page}\n{page}")).unwrap_or_else(|e| panic!("{e}"));
        let day = NaiveDate::from_ymd_opt(2025, 5, 1).unwrap_or_default();
        assert_eq!(f.get(&(day, "tokens".into())), Some(&Decimal::new(4, 0)));
        assert_eq!(
            f.get(&(day, "code_execution".into())),
            Some(&Decimal::new(50, 2))
        );
        let big = r#"{"amount":"79228162514264337593543950335"}"#;
        let huge = format!(
            r#"{{"data":[{{"starting_at":"2025-05-01T00:00:00Z","results":[{}]}}]}}"#,
            vec![big; 150].join(",")
        );
        assert!(read_pages(&huge).unwrap_err().contains("add up"));
        let bad = read_pages(
            r#"{"data":[{"starting_at":"2025-05-01T00:00:00Z","results":[{"amount":7}]}]}"#,
        );
        assert!(bad.unwrap_err().contains("amount"));
    }
}
