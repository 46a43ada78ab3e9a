//! Accounting exports (docs/invoices.md): a period's finalized invoices in the
//! invoice-import CSV layouts of QuickBooks Online and Xero, one row per
//! invoice line, so a finance team imports tally's invoices instead of
//! typing them in. Drafts are never exported: an export holds only what
//! can no longer change.
//!
//! Choices both layouts share (the README says why):
//! - each row's quantity is 1 and its rate the line's amount in cents: both
//!   products keep at most 4 decimals of a unit price, and a token costs
//!   $0.000003, so exporting tokens × price per token would not add up; the
//!   description carries the quantity and the unit price as the invoice
//!   shows them, and every imported invoice totals exactly what tally billed;
//! - minimum commitment, credit (negative) and tax are lines of their own,
//!   as on the invoice, and every line is exported with no tax code of the
//!   product's own (tally's tax line is the tax), so the product adds none;
//! - text cells go through the same formula guard as every tally CSV.

use chrono::NaiveDate;
use serde::Deserialize;

use crate::billing::Period;
use crate::billing::details::Party;
use crate::billing::render::text_cell;
use crate::charge::{Category, Charge};
use crate::documents::{self, FrozenLine};
use crate::store::{Store, StoreError};

/// The products whose import layouts tally writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    QuickBooks,
    Xero,
}

/// How dates are written: each product reads the date format of the
/// company's region (QuickBooks Online in the US: month first; Xero in the
/// UK, Australia and New Zealand: day first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DateFormat {
    /// MM/DD/YYYY
    Mdy,
    /// DD/MM/YYYY
    Dmy,
    /// YYYY-MM-DD
    Iso,
}

impl DateFormat {
    fn write(self, d: NaiveDate) -> String {
        d.format(match self {
            DateFormat::Mdy => "%m/%d/%Y",
            DateFormat::Dmy => "%d/%m/%Y",
            DateFormat::Iso => "%Y-%m-%d",
        })
        .to_string()
    }
}

/// What a product needs beyond the invoices.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub dates: DateFormat,
    /// Xero: the revenue account code of every line (`*AccountCode`).
    pub account_code: String,
    /// Xero: the tax rate's display name of every line (`*TaxType`); a
    /// zero rate, since tally's tax is a line of its own.
    pub tax_type: String,
}

impl ExportOptions {
    /// Each product's usual settings: QuickBooks Online US dates; Xero day-first
    /// dates, its default Sales account (200) and its zero rate.
    pub fn defaults(product: Product) -> ExportOptions {
        ExportOptions {
            dates: match product {
                Product::QuickBooks => DateFormat::Mdy,
                Product::Xero => DateFormat::Dmy,
            },
            account_code: "200".to_owned(),
            tax_type: "Tax Exempt".to_owned(),
        }
    }
}

/// QuickBooks Online's invoice import columns.
pub const QUICKBOOKS_HEADER: [&str; 16] = [
    "InvoiceNo",
    "Customer",
    "InvoiceDate",
    "DueDate",
    "Terms",
    "Location",
    "Memo",
    "Item(Product/Service)",
    "ItemDescription",
    "ItemQuantity",
    "ItemRate",
    "ItemAmount",
    "ItemTaxCode",
    "ItemTaxAmount",
    "Currency",
    "Service Date",
];

/// Xero's sales invoice import columns (its SalesInvoiceTemplate.csv; a
/// leading `*` marks the ones Xero requires).
pub const XERO_HEADER: [&str; 29] = [
    "*ContactName",
    "EmailAddress",
    "POAddressLine1",
    "POAddressLine2",
    "POAddressLine3",
    "POAddressLine4",
    "POCity",
    "PORegion",
    "POPostalCode",
    "POCountry",
    "*InvoiceNumber",
    "Reference",
    "*InvoiceDate",
    "*DueDate",
    "Total",
    "InventoryItemCode",
    "*Description",
    "*Quantity",
    "*UnitAmount",
    "Discount",
    "*AccountCode",
    "*TaxType",
    "TaxAmount",
    "TrackingName1",
    "TrackingOption1",
    "TrackingName2",
    "TrackingOption2",
    "Currency",
    "BrandingTheme",
];

/// The frozen invoice JSON's fields an export reads.
#[derive(Deserialize)]
struct Frozen {
    number: String,
    account: String,
    currency: String,
    #[serde(default)]
    bill_to: Option<Party>,
    issued_at: Option<NaiveDate>,
    due_at: Option<NaiveDate>,
    lines: Vec<FrozenLine>,
}

/// The product or service a line is sold as (QuickBooks' item column).
fn item(charge: Charge) -> &'static str {
    match charge.category() {
        Category::Tokens => "Tokens",
        Category::WebSearch => "Web search",
        Category::CodeExecution => "Code execution",
        Category::Adjustment => "Adjustment",
        Category::Commitment => "Minimum commitment",
        Category::Credit => "Prepaid credit",
        Category::Tax => "Tax",
    }
}

/// The line's description with its quantity and unit price as the
/// invoice document shows them: "… input tokens: 402 tokens at $15.00 / MTok".
fn description(l: &FrozenLine) -> String {
    match l.unit.as_str() {
        "token" | "request" | "hour" => format!(
            "{}: {} {} at {}",
            l.description,
            documents::quantity(l.quantity, &l.unit),
            documents::unit_words(&l.unit, l.quantity),
            documents::unit_price(l.unit_price, &l.unit)
        ),
        _ => l.description.clone(),
    }
}

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("finalized invoice {number}: {message}")]
    Frozen { number: String, message: String },
}

/// The export of every finalized invoice of `period` (of `only` that
/// account when given), and how many invoices it holds.
pub async fn export(
    store: &dyn Store,
    product: Product,
    period: Period,
    only: Option<&str>,
    options: &ExportOptions,
) -> Result<(String, usize), ExportError> {
    let label = period.to_string();
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let header: &[&str] = match product {
        Product::QuickBooks => &QUICKBOOKS_HEADER,
        Product::Xero => &XERO_HEADER,
    };
    let written = |e: csv::Error| StoreError::Invalid(format!("writing CSV: {e}"));
    w.write_record(header).map_err(written)?;
    let mut count = 0;
    for r in store.finalized_in_period(&label).await? {
        if only.is_some_and(|a| a != r.account) {
            continue;
        }
        let Some(f) = store.finalized_invoice(&r.account, &label).await? else {
            continue;
        };
        let inv: Frozen = serde_json::from_str(&f.json).map_err(|e| ExportError::Frozen {
            number: f.number.clone(),
            message: e.to_string(),
        })?;
        let rows = match product {
            Product::QuickBooks => quickbooks_rows(&inv, period, options),
            Product::Xero => xero_rows(&inv, options),
        };
        for row in rows {
            w.write_record(&row).map_err(written)?;
        }
        count += 1;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| StoreError::Invalid(format!("writing CSV: {e}")))?;
    Ok((String::from_utf8_lossy(&bytes).into_owned(), count))
}

fn customer(inv: &Frozen) -> String {
    inv.bill_to
        .as_ref()
        .and_then(|p| p.name.clone())
        .unwrap_or_else(|| inv.account.clone())
}

fn date(d: Option<NaiveDate>, f: DateFormat) -> String {
    d.map(|d| f.write(d)).unwrap_or_default()
}

fn quickbooks_rows(inv: &Frozen, period: Period, o: &ExportOptions) -> Vec<Vec<String>> {
    let memo = format!(
        "Claude API usage, {} (account {})",
        period.first_day().format("%B %Y"),
        inv.account
    );
    inv.lines
        .iter()
        .map(|l| {
            vec![
                text_cell(&inv.number),
                text_cell(&customer(inv)),
                date(inv.issued_at, o.dates),
                date(inv.due_at, o.dates),
                // Terms and Location name records of the company's own;
                // the due date says when payment is due.
                String::new(),
                String::new(),
                text_cell(&memo),
                item(l.charge).to_owned(),
                text_cell(&description(l)),
                "1".to_owned(),
                l.amount.to_string(),
                l.amount.to_string(),
                String::new(),
                String::new(),
                inv.currency.clone(),
                o.dates.write(period.last_day()),
            ]
        })
        .collect()
}

fn xero_rows(inv: &Frozen, o: &ExportOptions) -> Vec<Vec<String>> {
    let party = inv.bill_to.clone().unwrap_or_default();
    let mut address: Vec<String> = party
        .address
        .as_deref()
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    // Xero has four address lines; the rest joins the fourth.
    if address.len() > 4 {
        let rest = address.split_off(3).join(", ");
        address.push(rest);
    }
    address.resize(4, String::new());
    inv.lines
        .iter()
        .map(|l| {
            let mut row = vec![
                text_cell(&customer(inv)),
                text_cell(party.email.as_deref().unwrap_or_default()),
            ];
            row.extend(address.iter().map(|a| text_cell(a)));
            row.extend([
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                text_cell(&inv.number),
                text_cell(&format!("tally {}", inv.account)),
                date(inv.issued_at, o.dates),
                date(inv.due_at, o.dates),
                String::new(),
                String::new(),
                text_cell(&description(l)),
                "1".to_owned(),
                l.amount.to_string(),
                String::new(),
                text_cell(&o.account_code),
                text_cell(&o.tax_type),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                inv.currency.clone(),
                String::new(),
            ]);
            row
        })
        .collect()
}
