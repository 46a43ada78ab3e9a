//! Invoice documents (docs/invoices.md): the invoice a finance team sends, as one
//! self-contained HTML page ([`html`]) and as a PDF ([`pdf`]).
//!
//! Policy:
//! - a document is rendered from the invoice's JSON, the same bytes the API
//!   serves, so it can never show a figure the JSON does not; a finalized
//!   invoice's documents are rendered once, when it is finalized, and kept
//!   as bytes like its JSON and CSV;
//! - [`Document`] is what both renderers print: the parties, the number and
//!   dates, the lines grouped by category with subtotals, then the minimum
//!   commitment, credits and tax, the total and the amount due, and the
//!   notes (reverse charge, unpriced usage, how code execution is billed);
//! - amounts read like `$1,234.56`; token quantities like `1,234,567`;
//!   container hours with at most 6 decimal places (the exact figure is in
//!   the JSON).

pub mod html;
pub mod pdf;
pub mod text;

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::charge::{Category, Charge};
use crate::pricing::{AllowancePeriod, PriceBook};

/// What an invoice's document prints of a party.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_id: Option<String>,
}

/// The paper a PDF is laid out on (the seller's choice: `tally org set
/// --paper`). The HTML document fits either.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Paper {
    #[default]
    A4,
    Letter,
}

impl Paper {
    /// Width and height in PDF points (1/72 inch).
    pub fn size(self) -> (f32, f32) {
        match self {
            Paper::A4 => (595.28, 841.89),
            Paper::Letter => (612.0, 792.0),
        }
    }
}

/// How code execution was billed in the period, for the document's note:
/// the price book's container minimum and free allowance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeExecutionTerms {
    pub minimum_seconds: i64,
    pub free_hours: Decimal,
    pub free_period: AllowancePeriod,
    pub hour_price: Decimal,
}

impl CodeExecutionTerms {
    /// The terms of the price-book version in force on the period's last day.
    pub fn of(book: &PriceBook, last_day: NaiveDate) -> Option<CodeExecutionTerms> {
        let v = book.version_at(last_day)?;
        Some(CodeExecutionTerms {
            minimum_seconds: v.container_minimum_seconds,
            free_hours: v.free_container_hours,
            free_period: v.free_allowance_period,
            hour_price: v.container_hour,
        })
    }

    /// The note itself, one paragraph.
    pub fn explanation(&self) -> String {
        let minimum = if self.minimum_seconds.rem_euclid(60) == 0 {
            let m = self.minimum_seconds / 60;
            format!("{m} minute{}", if m == 1 { "" } else { "s" })
        } else {
            format!("{} seconds", self.minimum_seconds)
        };
        let mut s = format!(
            "How code execution is billed: each code-execution container is billed for its \
             execution time, with a minimum of {minimum} per container (not per request), at {} \
             per container-hour. A request that preloads files into a container is billed for \
             container time even when no code runs.",
            usd(self.hour_price)
        );
        if !self.free_hours.is_zero() {
            let per = match self.free_period {
                AllowancePeriod::Day => "UTC day",
                AllowancePeriod::Month => "calendar month",
            };
            s.push_str(&format!(
                " The first {} container-hours of each {per} are free, shared among accounts in \
                 proportion to their use; they appear as a negative line.",
                quantity(self.free_hours, "hour")
            ));
        }
        s
    }
}

/// What a document prints, read from the invoice's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub number: Option<String>,
    pub account: String,
    pub period: String,
    pub finalized: bool,
    pub currency: String,
    pub seller: Option<Party>,
    pub bill_to: Option<Party>,
    pub issued_at: Option<NaiveDate>,
    pub due_at: Option<NaiveDate>,
    /// Usage (and adjustments) by category, each with its subtotal.
    pub sections: Vec<Section>,
    /// The sum of the sections' lines.
    pub usage_total: Decimal,
    /// Minimum commitment, credits and tax, in invoice order.
    pub after_usage: Vec<SummaryLine>,
    pub total: Decimal,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub title: &'static str,
    pub lines: Vec<DocLine>,
    pub subtotal: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocLine {
    pub description: String,
    pub quantity: String,
    pub unit: String,
    pub unit_price: String,
    pub amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryLine {
    pub label: String,
    pub amount: Decimal,
}

/// The invoice JSON's fields a document reads.
#[derive(Deserialize)]
struct InvoiceJson {
    number: Option<String>,
    account: String,
    period: String,
    status: String,
    currency: String,
    #[serde(default)]
    seller: Option<Party>,
    #[serde(default)]
    bill_to: Option<Party>,
    #[serde(default)]
    issued_at: Option<NaiveDate>,
    #[serde(default)]
    due_at: Option<NaiveDate>,
    lines: Vec<FrozenLine>,
    total: Decimal,
    #[serde(default)]
    unpriced: Vec<UnpricedJson>,
    #[serde(default)]
    unbilled_refusals: i64,
    #[serde(default)]
    notes: Vec<String>,
}

/// An invoice line as its JSON states it: what a document or an export
/// reads back from a frozen invoice.
#[derive(Debug, Deserialize)]
pub struct FrozenLine {
    pub description: String,
    pub charge: Charge,
    pub quantity: Decimal,
    pub unit: String,
    pub unit_price: Decimal,
    pub amount: Decimal,
}

#[derive(Deserialize)]
struct UnpricedJson {
    model: String,
    records: i64,
}

/// The section a charge is listed under (`None`: after the usage).
fn section_of(charge: Charge) -> Option<&'static str> {
    match charge.category() {
        Category::Tokens => Some("Tokens"),
        Category::WebSearch => Some("Web search"),
        Category::CodeExecution => Some("Code execution"),
        Category::Adjustment => Some("Adjustments for earlier periods"),
        Category::Commitment | Category::Credit | Category::Tax => None,
    }
}

impl Document {
    /// Read an invoice's JSON; `terms` adds the code-execution note when the
    /// invoice bills container time.
    pub fn from_json(json: &str, terms: Option<&CodeExecutionTerms>) -> Result<Document, String> {
        let inv: InvoiceJson =
            serde_json::from_str(json).map_err(|e| format!("the invoice's JSON: {e}"))?;
        let mut sections: Vec<Section> = Vec::new();
        let mut after_usage = Vec::new();
        let mut bills_containers = false;
        for l in &inv.lines {
            let Some(title) = section_of(l.charge) else {
                let label = match l.charge {
                    Charge::MinimumCommitment => "Minimum monthly commitment".to_owned(),
                    Charge::Credit => capitalized(&l.description),
                    _ => l.description.clone(),
                };
                after_usage.push(SummaryLine {
                    label,
                    amount: l.amount,
                });
                continue;
            };
            bills_containers |= l.charge.is_container_time();
            let line = DocLine {
                description: l.description.clone(),
                quantity: quantity(l.quantity, &l.unit),
                unit: unit_words(&l.unit, l.quantity).to_owned(),
                unit_price: unit_price(l.unit_price, &l.unit),
                amount: l.amount,
            };
            match sections.iter_mut().find(|s| s.title == title) {
                Some(s) => {
                    s.subtotal += l.amount;
                    s.lines.push(line);
                }
                None => sections.push(Section {
                    title,
                    subtotal: l.amount,
                    lines: vec![line],
                }),
            }
        }
        let usage_total = sections.iter().map(|s| s.subtotal).sum();
        let mut notes = inv.notes.clone();
        if !inv.unpriced.is_empty() {
            let models: Vec<String> = inv
                .unpriced
                .iter()
                .map(|u| format!("{} ({} records)", u.model, u.records))
                .collect();
            notes.push(format!(
                "Not billed here: usage of models without a price yet: {}.",
                models.join(", ")
            ));
        }
        if inv.unbilled_refusals > 0 {
            notes.push(format!(
                "{} refused request{} not charged.",
                inv.unbilled_refusals,
                if inv.unbilled_refusals == 1 {
                    " was"
                } else {
                    "s were"
                }
            ));
        }
        if let (true, Some(t)) = (bills_containers, terms) {
            notes.push(t.explanation());
        }
        Ok(Document {
            number: inv.number,
            account: inv.account,
            period: inv.period,
            finalized: inv.status == "finalized",
            currency: inv.currency,
            seller: inv.seller,
            bill_to: inv.bill_to,
            issued_at: inv.issued_at,
            due_at: inv.due_at,
            sections,
            usage_total,
            after_usage,
            total: inv.total,
            notes,
        })
    }

    /// "Invoice INV-2025-05-0001", or "Draft invoice" before finalizing.
    pub fn title(&self) -> String {
        match (&self.number, self.finalized) {
            (Some(n), true) => format!("Invoice {n}"),
            _ => "Draft invoice".to_owned(),
        }
    }

    /// The period as words: "May 2025".
    pub fn period_words(&self) -> String {
        NaiveDate::parse_from_str(&format!("{}-01", self.period), "%Y-%m-%d")
            .map(|d| d.format("%B %Y").to_string())
            .unwrap_or_else(|_| self.period.clone())
    }

    /// The bill-to party's lines: its name (else the account), address
    /// lines, email, tax id.
    pub fn bill_to_lines(&self) -> Vec<String> {
        let mut lines = party_lines(self.bill_to.as_ref());
        if self
            .bill_to
            .as_ref()
            .and_then(|p| p.name.as_ref())
            .is_none()
        {
            lines.insert(0, self.account.clone());
        }
        lines.push(format!("Account: {}", self.account));
        lines
    }

    pub fn seller_lines(&self) -> Vec<String> {
        party_lines(self.seller.as_ref())
    }

    /// (label, value) pairs of the document's header: number, dates, period.
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        let mut facts = vec![(
            "Invoice number",
            self.number
                .clone()
                .filter(|_| self.finalized)
                .unwrap_or_else(|| "none (draft)".to_owned()),
        )];
        if let Some(d) = self.issued_at {
            facts.push(("Issue date", date_words(d)));
        }
        if let Some(d) = self.due_at {
            facts.push(("Due date", date_words(d)));
        }
        facts.push(("Period", self.period_words()));
        facts
    }
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn party_lines(p: Option<&Party>) -> Vec<String> {
    let Some(p) = p else { return Vec::new() };
    let mut lines = Vec::new();
    lines.extend(p.name.clone());
    if let Some(a) = &p.address {
        lines.extend(
            a.lines()
                .map(str::to_owned)
                .filter(|l| !l.trim().is_empty()),
        );
    }
    lines.extend(p.email.clone());
    if let Some(t) = &p.tax_id {
        lines.push(format!("Tax ID: {t}"));
    }
    lines
}

/// "14 July 2025": no reader mistakes the day for the month.
pub fn date_words(d: NaiveDate) -> String {
    d.format("%-d %B %Y").to_string()
}

/// `$1,234.56`, `-$0.40`.
pub fn usd(amount: Decimal) -> String {
    let cents = amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    let sign = if cents.is_sign_negative() && !cents.is_zero() {
        "-"
    } else {
        ""
    };
    let text = format!("{:.2}", cents.abs());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, "00"));
    format!("{sign}${}.{fraction}", group_thousands(whole))
}

fn group_thousands(digits: &str) -> String {
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A quantity as a reader wants it: whole units grouped by thousands,
/// hours to at most 6 decimal places.
pub fn quantity(q: Decimal, unit: &str) -> String {
    let q = if unit == "hour" {
        q.round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero)
    } else {
        q
    }
    .normalize();
    let text = q.abs().to_string();
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w.to_owned(), format!(".{f}")),
        None => (text.clone(), String::new()),
    };
    let sign = if q.is_sign_negative() && !q.is_zero() {
        "-"
    } else {
        ""
    };
    format!("{sign}{}{fraction}", group_thousands(&whole))
}

pub fn unit_words(unit: &str, q: Decimal) -> &'static str {
    let one = q.abs() == Decimal::ONE;
    match (unit, one) {
        ("token", true) => "token",
        ("token", false) => "tokens",
        ("request", true) => "request",
        ("request", false) => "requests",
        ("hour", true) => "hour",
        ("hour", false) => "hours",
        _ => "USD",
    }
}

/// Token prices per million tokens (per-token prices are unreadably
/// small), others per unit; never fewer than 2 decimals.
pub fn unit_price(p: Decimal, unit: &str) -> String {
    let at_least_cents = |d: Decimal| {
        let mut d = d.normalize();
        if d.scale() < 2 {
            d.rescale(2);
        }
        d
    };
    match unit {
        "token" => format!(
            "${} / MTok",
            at_least_cents(p * Decimal::from(1_000_000)).abs()
        ),
        "request" => format!("${} / request", at_least_cents(p).abs()),
        "hour" => format!("${} / hour", at_least_cents(p).abs()),
        _ => String::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_quantities_read_plainly() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(usd(d("1234.5")), "$1,234.50");
        assert_eq!(usd(d("-0.4")), "-$0.40");
        assert_eq!(usd(d("0")), "$0.00");
        assert_eq!(usd(d("1000000")), "$1,000,000.00");
        assert_eq!(quantity(d("1234567"), "token"), "1,234,567");
        assert_eq!(quantity(d("0.0833333333333333"), "hour"), "0.083333");
        assert_eq!(quantity(d("-0.5000"), "hour"), "-0.5");
        assert_eq!(unit_price(d("0.000003"), "token"), "$3.00 / MTok");
        assert_eq!(unit_price(d("0.0000003"), "token"), "$0.30 / MTok");
        assert_eq!(unit_price(d("0.00000375"), "token"), "$3.75 / MTok");
        assert_eq!(unit_price(d("0.05"), "hour"), "$0.05 / hour");
    }
}
