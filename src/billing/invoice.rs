//! An invoice as assembled from rated lines: lines, subtotals per
//! category, total. Rendering to JSON and CSV is in [`super::render`].

use rust_decimal::Decimal;
use serde::Serialize;

use super::period::Period;
use super::rating::{Category, Line, LineBook, Unpriced, cents};

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
    pub lines: Vec<Line>,
    pub subtotals: Subtotals,
    pub total: Decimal,
    pub records: i64,
    pub containers: i64,
    pub unpriced: Vec<Unpriced>,
    /// Records that were refusals before any output and not charged (SPEC 4.1).
    pub unbilled_refusals: i64,
}

pub fn assemble(
    account: &str,
    period: Period,
    book: LineBook,
    records: i64,
    containers: i64,
) -> Invoice {
    let unbilled_refusals = book.unbilled_refusals();
    let (lines, unpriced) = book.finish();
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
        lines,
        subtotals,
        total,
        records,
        containers,
        unpriced,
        unbilled_refusals,
    }
}
