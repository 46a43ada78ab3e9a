//! An invoice's usage split by one dimension (docs/invoices.md, `--breakdown DIM`):
//! by workspace, API key id, end user or one tag's value.
//!
//! The split is the daily computation's ([`super::daily`]) with the
//! dimension added to each part: every usage line's rounded amount is split
//! across (day, value) parts by the largest-remainder method in whole cents,
//! weighted by the part's quantity (tokens, requests, seconds). So the parts
//! of a breakdown add up to the invoice's usage lines to the cent. Records
//! without the dimension are the part whose value is `null`. Container time
//! goes to the value of each container's first billable record.
//! Adjustment lines (late usage of an earlier period) are not split.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;

use super::daily::period_costs;
use super::invoice::Subtotals;
use super::{BillingError, Category, Period, cents};
use crate::pricing::PriceBook;
use crate::record::Dimension;
use crate::store::Store;

/// One value's share of an invoice's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakdownPart {
    pub value: Option<String>,
    pub subtotals: Subtotals,
    pub total: Decimal,
}

/// The usage of `account`'s invoice for `period` (the draft, or the
/// finalized invoice as of its cutoff) split by `dim`: the largest parts
/// first, records without the dimension last.
pub async fn breakdown(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
    dim: &Dimension,
) -> Result<Vec<BreakdownPart>, BillingError> {
    let costs = period_costs(
        store,
        book,
        period,
        Some(account),
        std::slice::from_ref(dim),
    )
    .await?;
    let mut by_value: BTreeMap<Option<String>, [Decimal; 3]> = BTreeMap::new();
    for day in costs.days() {
        let slot = match day.key.charge.category() {
            Category::Tokens => 0,
            Category::WebSearch => 1,
            Category::CodeExecution => 2,
            Category::Adjustment | Category::Commitment | Category::Credit | Category::Tax => {
                continue;
            }
        };
        let value = day.values.first().cloned().flatten();
        if let Some(sum) = by_value.entry(value).or_default().get_mut(slot) {
            *sum += day.amount;
        }
    }
    let mut parts: Vec<BreakdownPart> = by_value
        .into_iter()
        .map(
            |(value, [tokens, web_search, code_execution])| BreakdownPart {
                value,
                total: cents(tokens + web_search + code_execution),
                subtotals: Subtotals {
                    tokens: cents(tokens),
                    web_search: cents(web_search),
                    code_execution: cents(code_execution),
                },
            },
        )
        .collect();
    parts.sort_by(|a, b| {
        (a.value.is_none(), std::cmp::Reverse(a.total), &a.value).cmp(&(
            b.value.is_none(),
            std::cmp::Reverse(b.total),
            &b.value,
        ))
    });
    Ok(parts)
}

/// An invoice's JSON document with `breakdown` added as its last member
/// (the document's own bytes, a finalized invoice's frozen ones included,
/// are kept as they are before it).
pub fn with_breakdown(json: &str, parts: &[BreakdownPart]) -> String {
    let listed = serde_json::to_string_pretty(parts).unwrap_or_else(|_| "[]".into());
    let listed = listed.replace('\n', "\n  ");
    let body = json.trim_end();
    match body.strip_suffix('}') {
        Some(head) => format!("{},\n  \"breakdown\": {listed}\n}}\n", head.trim_end()),
        None => json.to_owned(),
    }
}
