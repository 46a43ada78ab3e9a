//! Billing details and tax (docs/invoices.md).
//!
//! - The seller (`tally org set`) and each account (`tally accounts set`)
//!   have details: name, email, address, tax id; an account also its tax
//!   rate and label, reverse charge, and payment terms in days (default 30).
//! - An invoice shows them as `seller` and `bill_to`. Finalizing snapshots
//!   them with `issued_at` (the day it was finalized) and `due_at` (that
//!   day plus the terms): later edits never change a finalized invoice.
//! - Tax: one `tax` line on the total after the minimum commitment and
//!   credit: quantity the amount taxed, unit price the rate (0.2 for 20 %),
//!   amount rounded to cents half away from zero. With reverse charge there
//!   is no tax line; the invoice says `reverse_charge: true` and carries the
//!   reverse-charge note.

use chrono::{Days, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::BillingError;
use super::invoice::Invoice;
use super::period::Period;
use super::rating::{Charge, Line, cents};
use crate::store::{BillingDetailsStore, StoreError};

/// What a document prints of a party: the documents' own vocabulary.
pub use crate::documents::Party;

/// The seller's party name in the store.
pub const SELLER: &str = "";

/// Payment terms when an account sets none.
pub const DEFAULT_TERMS_DAYS: u32 = 30;

/// A party's billing details as set (the seller uses the [`Party`] fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Details {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_id: Option<String>,
    /// Percent, e.g. `"20"` (as a string, like every amount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_rate_percent: Option<Decimal>,
    /// What the tax is called on the invoice (default "Tax").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_label: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reverse_charge: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::optional"
    )]
    pub terms_days: Option<u32>,
    /// The seller's paper for PDF documents (`a4`, the default, or `letter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paper: Option<crate::documents::Paper>,
}

/// The note a reverse-charge invoice carries.
pub const REVERSE_CHARGE_NOTE: &str =
    "Reverse charge: no tax is charged on this invoice; the customer accounts for it.";

impl Details {
    /// Check every field: the first one at fault, named.
    pub fn validate(&self) -> Result<(), String> {
        // Only an address has lines; other fields land in one line or cell.
        let text = |field: &str, v: &Option<String>, max: usize| match v {
            Some(s) if s.trim().is_empty() => {
                Err(format!("{field} is empty (leave it out instead)"))
            }
            Some(s) if s.chars().count() > max => {
                Err(format!("{field} is longer than {max} characters"))
            }
            Some(s)
                if s.chars()
                    .any(|c| c.is_control() && !(c == '\n' && field == "address")) =>
            {
                Err(format!(
                    "{field} holds a control character (a line break is for address only)"
                ))
            }
            _ => Ok(()),
        };
        text("name", &self.name, 200)?;
        text("address", &self.address, 1000)?;
        text("tax_id", &self.tax_id, 64)?;
        text("tax_label", &self.tax_label, 32)?;
        text("email", &self.email, 254)?;
        if let Some(e) = &self.email
            && (e.contains(char::is_whitespace) || !e.contains('@'))
        {
            return Err(format!("email {e:?} is not an email address"));
        }
        if let Some(r) = self.tax_rate_percent
            && (r < Decimal::ZERO || r > Decimal::ONE_HUNDRED || r.normalize().scale() > 4)
        {
            return Err(format!(
                "tax_rate_percent {r} must be from 0 to 100, with at most 4 decimals"
            ));
        }
        if let Some(t) = self.terms_days
            && t > 365
        {
            return Err(format!("terms_days {t} must be from 0 to 365"));
        }
        Ok(())
    }

    /// Whether it sets what only an account's details may (the seller's
    /// tax and terms would never be read).
    pub fn has_account_terms(&self) -> bool {
        self.tax_rate_percent.is_some()
            || self.tax_label.is_some()
            || self.reverse_charge
            || self.terms_days.is_some()
    }

    /// Whether it sets what only the seller's details may.
    pub fn has_seller_settings(&self) -> bool {
        self.paper.is_some()
    }

    /// What a document prints of this party.
    pub fn party(&self) -> Party {
        Party {
            name: self.name.clone(),
            email: self.email.clone(),
            address: self.address.clone(),
            tax_id: self.tax_id.clone(),
        }
    }

    /// Parse stored details (validated when they were set).
    pub fn from_stored(json: &str) -> Result<Details, StoreError> {
        serde_json::from_str(json)
            .map_err(|e| StoreError::Invalid(format!("billing details in the database: {e}")))
    }
}

/// The seller's and the account's details as they were at `at` (UTC
/// microseconds; `i64::MAX` for the ones in force).
pub async fn details_at(
    store: &dyn BillingDetailsStore,
    account: &str,
    at: i64,
) -> Result<(Option<Details>, Option<Details>), BillingError> {
    let read = |party: &str| {
        let party = party.to_owned();
        async move {
            match store.details_as_of(&party, at).await? {
                Some(s) => Ok::<_, BillingError>(Some(Details::from_stored(&s.details)?)),
                None => Ok(None),
            }
        }
    };
    Ok((read(SELLER).await?, read(account).await?))
}

/// Put the parties on the invoice, and its tax (or the reverse-charge
/// note), after every other line. `issued` (the day it is finalized) sets
/// `issued_at` and `due_at`.
pub fn apply(
    invoice: &mut Invoice,
    period: Period,
    seller: Option<&Details>,
    bill_to: Option<&Details>,
    issued: Option<NaiveDate>,
) {
    invoice.seller = seller.map(Details::party);
    invoice.bill_to = bill_to.map(Details::party);
    if let Some(day) = issued {
        let terms = bill_to
            .and_then(|d| d.terms_days)
            .unwrap_or(DEFAULT_TERMS_DAYS);
        invoice.issued_at = Some(day);
        invoice.due_at = day.checked_add_days(Days::new(u64::from(terms)));
    }
    let Some(details) = bill_to else { return };
    if details.reverse_charge {
        invoice.reverse_charge = true;
        invoice.notes.push(REVERSE_CHARGE_NOTE.to_owned());
        return;
    }
    let Some(rate) = details.tax_rate_percent.filter(|r| !r.is_zero()) else {
        return;
    };
    let base = invoice.total;
    if base.is_zero() {
        return; // nothing to tax: no line
    }
    let unit_price = (rate / Decimal::ONE_HUNDRED).normalize();
    let exact = base * unit_price;
    let label = details.tax_label.as_deref().unwrap_or("Tax");
    let description = format!("{label} {}% on {}", rate.normalize(), base);
    invoice.lines.push(Line {
        quantity: base,
        unit_price,
        amount_exact: exact.normalize(),
        ..Line::flat(Charge::Tax, description, period.to_string(), cents(exact))
    });
    invoice.total = cents(invoice.lines.iter().map(|l| l.amount).sum());
}

/// Put a frozen invoice's parties, dates, reverse charge and tax lines (from
/// its JSON document) on the invoice recomputed for the finance views.
pub fn apply_frozen(invoice: &mut Invoice, json: &str) -> Result<(), StoreError> {
    let bad = |e: String| StoreError::Invalid(format!("a finalized invoice's document: {e}"));
    let doc: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    let party = |k: &str| -> Result<Option<Party>, StoreError> {
        match doc.get(k) {
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| bad(e.to_string())),
            None => Ok(None),
        }
    };
    let date = |k: &str| {
        doc.get(k)
            .and_then(|v| v.as_str())
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
    };
    invoice.seller = party("seller")?;
    invoice.bill_to = party("bill_to")?;
    invoice.issued_at = date("issued_at");
    invoice.due_at = date("due_at");
    invoice.reverse_charge = doc.get("reverse_charge").and_then(|v| v.as_bool()) == Some(true);
    invoice.notes = doc
        .get("notes")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let lines = doc
        .get("lines")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    for l in lines.iter().filter(|l| l["charge"] == "tax") {
        let text = |k: &str| {
            l.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let number = |k: &str| -> Result<Decimal, StoreError> {
            text(k)
                .parse()
                .map_err(|_| bad(format!("tax line {k} {:?}", text(k))))
        };
        invoice.lines.push(Line {
            quantity: number("quantity")?,
            unit_price: number("unit_price")?,
            amount_exact: number("amount_exact")?,
            ..Line::flat(
                Charge::Tax,
                text("description"),
                text("price_version"),
                number("amount")?,
            )
        });
    }
    invoice.total = cents(invoice.lines.iter().map(|l| l.amount).sum());
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn details_are_checked_field_by_field() {
        let d = |json: &str| serde_json::from_str::<Details>(json).unwrap().validate();
        assert!(d(r#"{"name": "Acme GmbH", "tax_rate_percent": "19", "terms_days": 14}"#).is_ok());
        for (json, message) in [
            (
                r#"{"email": "nobody"}"#,
                "email \"nobody\" is not an email address",
            ),
            (
                r#"{"tax_rate_percent": "101"}"#,
                "tax_rate_percent 101 must be from 0 to 100",
            ),
            (r#"{"tax_rate_percent": "7.12345"}"#, "at most 4 decimals"),
            (r#"{"terms_days": 400}"#, "terms_days 400"),
            (r#"{"name": "  "}"#, "name is empty"),
        ] {
            let err = d(json).unwrap_err();
            assert!(err.contains(message), "{json}: {err}");
        }
        assert!(serde_json::from_str::<Details>(r#"{"vat": "1"}"#).is_err());
    }
}
