//! FinOps FOCUS cost-and-usage export (docs/finance.md): one row per account, UTC
//! day and invoice line key (model × charge, and batch / long context / US
//! inference / fast mode / price version where those change the price, so
//! every row has one list unit price), plus the period's adjustment lines.
//!
//! `BilledCost` is each day's share of the invoice line's rounded amount
//! (see [`crate::billing::daily`]), so BilledCost sums to the invoices'
//! totals exactly: what the account pays, at its plan's prices. `ListCost`,
//! `ContractedCost` and `EffectiveCost` are what the usage cost (the price
//! book's prices; equal to `BilledCost` for an account without a plan; the
//! batch discount is a list price of its own SKU), and `ListUnitPrice` /
//! `ContractedUnitPrice` the cost per unit. An account's own export (an
//! account key's) never shows cost: there every cost column is its price.
//! Free container hours are `Credit` rows; late usage billed on this period
//! is an `Adjustment` row whose charge period is the month it corrects; a
//! plan's minimum commitment is a `Purchase` row for the month (no cost),
//! prepaid credit drawn a `Credit` row and tax a `Tax` row for the month
//! (no cost).
//! Columns tally adds beyond FOCUS start with `x_`.

use std::io::Write;

use chrono::{Days, NaiveDate};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::billing::daily::{DayCost, PeriodCosts};
use crate::billing::rating::priced;
use crate::billing::render::text_cell;
use crate::billing::{Category, Charge, Period};

/// One FOCUS row. Field names are the FOCUS column names (serde writes the
/// header); text an account or price book supplies goes through the CSV
/// formula guard, numbers are plain decimals, absent values empty cells.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Row<'a> {
    billed_cost: Decimal,
    billing_account_id: &'a str,
    billing_account_name: &'a str,
    billing_currency: &'static str,
    billing_period_end: &'a str,
    billing_period_start: &'a str,
    charge_category: &'static str,
    charge_class: &'static str,
    charge_description: String,
    charge_frequency: &'static str,
    charge_period_end: String,
    charge_period_start: String,
    consumed_quantity: Option<Decimal>,
    consumed_unit: &'static str,
    contracted_cost: Decimal,
    contracted_unit_price: Option<Decimal>,
    effective_cost: Decimal,
    invoice_id: &'a str,
    invoice_issuer_name: &'static str,
    list_cost: Decimal,
    list_unit_price: Option<Decimal>,
    pricing_category: &'static str,
    pricing_quantity: Option<Decimal>,
    pricing_unit: &'static str,
    provider_name: &'static str,
    publisher_name: &'static str,
    region_id: &'static str,
    region_name: &'static str,
    resource_id: &'static str,
    resource_name: &'static str,
    resource_type: &'static str,
    service_category: &'static str,
    service_name: &'static str,
    sku_id: String,
    sku_price_id: String,
    sub_account_id: &'a str,
    sub_account_name: &'a str,
    /// The row's tags as a JSON object (empty: none).
    tags: String,
    #[serde(rename = "x_AmountExact")]
    amount_exact: Decimal,
    #[serde(rename = "x_Charge")]
    charge: &'static str,
    #[serde(rename = "x_PriceVersion")]
    price_version: String,
}

impl<'a> Row<'a> {
    /// The columns every row of an account shares; the rest is per charge.
    fn base(
        account: &'a str,
        invoice_id: &'a str,
        period: &'a (String, String),
        amount: Decimal,
    ) -> Self {
        Row {
            billed_cost: amount,
            billing_account_id: account,
            billing_account_name: account,
            billing_currency: "USD",
            billing_period_end: &period.1,
            billing_period_start: &period.0,
            charge_category: "Usage",
            charge_class: "",
            charge_description: String::new(),
            charge_frequency: "Usage-Based",
            charge_period_end: String::new(),
            charge_period_start: String::new(),
            consumed_quantity: None,
            consumed_unit: "",
            contracted_cost: amount,
            contracted_unit_price: None,
            effective_cost: amount,
            invoice_id,
            invoice_issuer_name: "tally",
            list_cost: amount,
            list_unit_price: None,
            pricing_category: "Standard",
            pricing_quantity: None,
            pricing_unit: "",
            provider_name: "Anthropic",
            publisher_name: "Anthropic",
            region_id: "",
            region_name: "",
            resource_id: "",
            resource_name: "",
            resource_type: "",
            service_category: "AI and Machine Learning",
            service_name: "Claude API",
            sku_id: String::new(),
            sku_price_id: String::new(),
            sub_account_id: account,
            tags: String::new(),
            sub_account_name: account,
            amount_exact: amount,
            charge: "",
            price_version: String::new(),
        }
    }
}

fn stamp(day: NaiveDate) -> String {
    format!("{day}T00:00:00Z")
}

fn unit(charge: Charge) -> &'static str {
    match charge.category() {
        Category::Tokens => "Tokens",
        Category::WebSearch => "Requests",
        Category::CodeExecution => "Hours",
        Category::Adjustment | Category::Commitment | Category::Credit | Category::Tax => "",
    }
}

fn sku(cost: &DayCost) -> String {
    let k = &cost.key;
    let mut sku = format!(
        "{}/{}",
        k.model.as_deref().unwrap_or("claude-api"),
        k.charge.as_str()
    );
    for q in k.qualifiers() {
        sku.push('/');
        sku.push_str(q.sku_segment());
    }
    text_cell(&sku)
}

/// Write the period's FOCUS rows (every account, or only `only`) as CSV.
/// When `costs` are split by [`crate::record::Dimension::Tags`] (see
/// [`costs_for_export`]), each row carries its records' tags.
pub fn write(costs: &PeriodCosts, only: Option<&str>, out: impl Write) -> csv::Result<()> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    let period = costs.period;
    let billing_period = (stamp(period.first_day()), stamp(period.end_day()));
    let mut wrote = false;
    // The admin's export shows costs; an account's own, its prices only.
    let show_cost = only.is_none();
    for account in costs
        .accounts
        .iter()
        .filter(|a| only.is_none_or(|o| o == a.invoice.account))
    {
        let invoice_id = text_cell(account.number.as_deref().unwrap_or_default());
        let name = text_cell(&account.invoice.account);
        for cost in &account.days {
            let k = &cost.key;
            let credit = k.charge == Charge::ContainerFreeHours;
            let sku = sku(cost);
            let (list_cost, list_unit_price) = if show_cost {
                (cost.cost, k.unit_price)
            } else {
                let unit = priced(k, Decimal::ZERO, account.plan.as_deref()).unit_price;
                (cost.amount, unit.normalize())
            };
            // Container hours to at most 6 decimals, as on the invoice CSV.
            let quantity = if k.charge.is_container_time() {
                crate::billing::render::readable_hours(cost.quantity)
            } else {
                cost.quantity
            };
            w.serialize(Row {
                charge_category: if credit { "Credit" } else { "Usage" },
                charge_description: text_cell(&super::cost_report::description(cost)),
                charge_period_end: stamp(cost.day + Days::new(1)),
                charge_period_start: stamp(cost.day),
                consumed_quantity: (!credit).then_some(quantity),
                consumed_unit: if credit { "" } else { unit(k.charge) },
                contracted_unit_price: Some(list_unit_price),
                list_unit_price: Some(list_unit_price),
                pricing_quantity: Some(quantity),
                pricing_unit: unit(k.charge),
                region_id: if k.us_inference { "us" } else { "" },
                region_name: if k.us_inference { "United States" } else { "" },
                sku_price_id: format!("{sku}@{}", text_cell(&k.price_version)),
                sku_id: sku,
                amount_exact: cost.amount_exact,
                charge: k.charge.as_str(),
                price_version: text_cell(&k.price_version),
                tags: cost.values.first().cloned().flatten().unwrap_or_default(),
                list_cost,
                contracted_cost: list_cost,
                effective_cost: list_cost,
                ..Row::base(&name, &invoice_id, &billing_period, cost.amount)
            })?;
            wrote = true;
        }
        // Lines that are no day's usage: adjustments, the minimum commitment,
        // credit, tax. An adjustment corrects the period its price_version names.
        for line in &account.invoice.lines {
            let (category, class, frequency, sku, covered) = match line.charge.category() {
                Category::Tokens | Category::WebSearch | Category::CodeExecution => continue,
                Category::Tax => ("Tax", "", "One-Time", "tax", period),
                Category::Credit => ("Credit", "", "One-Time", "prepaid-credit", period),
                Category::Commitment => ("Purchase", "", "Recurring", "minimum-commitment", period),
                Category::Adjustment => (
                    "Adjustment",
                    "Correction",
                    "One-Time",
                    "adjustment",
                    Period::parse(&line.price_version).unwrap_or(period),
                ),
            };
            let cost = if show_cost {
                line.cost.amount
            } else {
                line.amount
            };
            let row = Row {
                charge_category: category,
                charge_class: class,
                charge_frequency: frequency,
                charge_period_end: stamp(covered.end_day()),
                charge_period_start: stamp(covered.first_day()),
                sku_id: format!("claude-api/{sku}"),
                ..Row::base(&name, &invoice_id, &billing_period, line.amount)
            };
            w.serialize(Row {
                charge_description: text_cell(&line.description),
                sku_price_id: row.sku_id.clone(),
                amount_exact: line.amount_exact,
                charge: line.charge.as_str(),
                price_version: line.price_version.clone(),
                list_cost: cost,
                contracted_cost: cost,
                effective_cost: cost,
                ..row
            })?;
            wrote = true;
        }
    }
    if !wrote {
        // serde writes the header with the first row: an empty period still gets one.
        w.write_record(COLUMNS)?;
    }
    w.flush()?;
    Ok(())
}

/// A period's costs as the export needs them: split by the records' tag
/// sets when any record has tags (rows then differ by `Tags`), else as they are.
pub async fn costs_for_export(
    store: &dyn crate::store::Store,
    book: &crate::pricing::PriceBook,
    period: Period,
    only: Option<&str>,
) -> Result<PeriodCosts, crate::billing::BillingError> {
    let dims = if store.any_tags().await? {
        vec![crate::record::Dimension::Tags]
    } else {
        Vec::new()
    };
    crate::billing::daily::period_costs(store, book, period, only, &dims).await
}

/// The header, for a period without rows.
const COLUMNS: [&str; 41] = [
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
    "x_AmountExact",
    "x_Charge",
    "x_PriceVersion",
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_header_matches_the_serialized_one() {
        let period = ("a".to_owned(), "b".to_owned());
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(Row::base("x", "", &period, Decimal::ZERO))
            .unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(text.lines().next().unwrap(), COLUMNS.join(","));
    }
}
