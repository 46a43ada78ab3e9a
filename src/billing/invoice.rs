//! An invoice as assembled from rated lines: lines, subtotals per
//! category, total. Rendering to JSON and CSV is in [`super::render`].

use rust_decimal::Decimal;
use serde::Serialize;

use super::period::Period;
use super::rating::{Category, Charge, Line, LineBook, Unpriced, cents};
use crate::documents::Party;
use crate::plans::Plan;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subtotals {
    pub tokens: Decimal,
    pub web_search: Decimal,
    pub code_execution: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invoice {
    pub number: Option<String>,
    pub account: String,
    pub period: String,
    pub status: &'static str,
    pub currency: &'static str,
    /// Who bills (the seller's details) and who is billed (docs/invoices.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seller: Option<Party>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bill_to: Option<Party>,
    /// The day it was finalized, and the day payment is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<chrono::NaiveDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<chrono::NaiveDate>,
    pub lines: Vec<Line>,
    pub subtotals: Subtotals,
    pub total: Decimal,
    pub records: i64,
    pub containers: i64,
    pub unpriced: Vec<Unpriced>,
    /// Records that were refusals before any output and not charged (docs/billing.md).
    pub unbilled_refusals: i64,
    /// No tax is charged: the customer accounts for it (docs/invoices.md).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reverse_charge: bool,
    /// Notes the document prints (the reverse-charge note).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The credit its `credit` lines draw, by grant (what finalizing makes
    /// permanent).
    #[serde(skip)]
    pub draws: Vec<crate::store::CreditDraw>,
}

pub fn assemble(
    account: &str,
    period: Period,
    book: LineBook,
    records: i64,
    containers: i64,
) -> Invoice {
    let unbilled_refusals = book.unbilled_refusals();
    let (mut lines, unpriced) = book.finish();
    tell_versions_apart(&mut lines);
    let sum = |cat: Category| -> Decimal {
        lines
            .iter()
            .filter(|l| l.charge.category() == cat)
            .map(|l| l.amount)
            .sum()
    };
    let subtotals = Subtotals {
        tokens: cents(sum(Category::Tokens)),
        web_search: cents(sum(Category::WebSearch)),
        code_execution: cents(sum(Category::CodeExecution)),
    };
    let total = cents(lines.iter().map(|l| l.amount).sum());
    Invoice {
        number: None,
        account: account.to_owned(),
        period: period.to_string(),
        status: "draft",
        currency: "USD",
        seller: None,
        bill_to: None,
        issued_at: None,
        due_at: None,
        lines,
        subtotals,
        total,
        records,
        containers,
        unpriced,
        unbilled_refusals,
        reverse_charge: false,
        notes: Vec::new(),
        draws: Vec::new(),
    }
}

/// Lines that differ only by the price-book (or plan) version they were
/// rated with (a new version took effect within the month) would read the
/// same on every document and export: say the version on each of them.
fn tell_versions_apart(lines: &mut [Line]) {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for l in lines.iter() {
        *seen.entry(l.description.clone()).or_default() += 1;
    }
    for l in lines.iter_mut() {
        if seen.get(&l.description).is_some_and(|n| *n > 1) {
            let version = match &l.plan_version {
                Some(plan) if *plan != l.price_version => {
                    format!("price version {}, plan version {plan}", l.price_version)
                }
                _ => format!("price version {}", l.price_version),
            };
            l.description = format!("{} ({version})", l.description);
        }
    }
}

/// The plan's monthly minimum for `period`: that of the version in force on
/// its first day (a version that starts within a month changes prices from
/// its first day, and the minimum from the next month). With its version.
fn minimum_commitment(plan: &Plan, period: Period) -> Option<(String, Decimal)> {
    let version = plan.version_at(period.first_day())?;
    let minimum = version.minimum_monthly_usd?;
    Some((version.effective_from.to_string(), cents(minimum)))
}

/// The line that tops a period's usage up to the plan's minimum: a price
/// without a cost.
fn commitment_line(version: String, top_up: Decimal) -> Line {
    let description = format!("minimum monthly commitment (usage topped up by {top_up})");
    Line {
        plan_version: Some(version.clone()),
        ..Line::flat(Charge::MinimumCommitment, description, version, top_up)
    }
}

impl Invoice {
    /// Top the period's usage up to the plan's monthly minimum, as the last
    /// line so far (before credits and tax).
    pub fn add_minimum_commitment(&mut self, plan: Option<&Plan>, period: Period) {
        let Some((version, minimum)) = plan.and_then(|p| minimum_commitment(p, period)) else {
            return;
        };
        let usage: Decimal = self.usage_lines().map(|l| l.amount).sum();
        if usage < minimum {
            self.lines.push(commitment_line(version, minimum - usage));
            self.total = cents(self.lines.iter().map(|l| l.amount).sum());
        }
    }

    /// Add adjustment lines (late usage of earlier periods) after the usage
    /// lines and before the minimum commitment (which they do not count
    /// towards: they are another period's usage), and total again.
    pub fn add_adjustments(&mut self, adjustments: Vec<Line>) {
        if adjustments.is_empty() {
            return;
        }
        let at = self
            .lines
            .iter()
            .position(|l| l.charge.category() > Category::Adjustment)
            .unwrap_or(self.lines.len());
        self.lines.splice(at..at, adjustments);
        self.total = cents(self.lines.iter().map(|l| l.amount).sum());
    }

    /// What the account spent in the period at its prices: its usage and
    /// adjustment lines (not the minimum commitment, which is no spend).
    pub fn spend(&self) -> Decimal {
        cents(
            self.lines
                .iter()
                .filter(|l| l.charge.category() <= Category::Adjustment)
                .map(|l| l.amount)
                .sum(),
        )
    }

    /// The usage lines (tokens, web search, code execution): what a plan
    /// prices and margins are taken on.
    pub fn usage_lines(&self) -> impl Iterator<Item = &Line> {
        self.lines
            .iter()
            .filter(|l| l.charge.category() < Category::Adjustment)
    }
}
