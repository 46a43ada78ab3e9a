//! Account plans (docs/plans.md): what an account pays for its usage, from what
//! that usage costs.
//!
//! Every amount of the billing core is a *cost* (Anthropic's prices). A plan
//! turns a cost line into a *price* line with the same quantity:
//! - a fixed `unit_price` (an override's), priced `unit_price × quantity`;
//! - else the cost amount `× (1 + markup) × (1 − discount)`, with the
//!   override's markup if one matches, else the version's.
//!
//! The discount applies to every line priced by a markup, not to a fixed
//! unit price (which is already the price agreed). Overrides are tried in
//! file order; the first whose `model` and `charge` (each when given) match
//! the line wins. A plan file is TOML, amounts as strings (as in the price
//! book); a file that breaks a rule is refused whole, with the line and the
//! reason. A version is in force from its `effective_from` (a UTC day) until
//! the next one.

mod in_force;

pub use in_force::{StoredPlanError, as_json, in_force, plan_as_of, plan_of};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::charge::Charge;
use crate::pricing::{Dated, dated_versions, exact_option, line_of, read_toml, version_error};

/// A plan file that cannot be used, and where.
pub type PlanError = crate::pricing::FileError;

/// An account's plan: its versions, by `effective_from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    versions: Vec<PlanVersion>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanVersion {
    pub effective_from: NaiveDate,
    pub markup_percent: Decimal,
    pub discount_percent: Decimal,
    /// The period's usage is topped up to this (a `minimum_commitment` line).
    pub minimum_monthly_usd: Option<Decimal>,
    pub overrides: Vec<Override>,
}

/// A price for the lines of one model and/or one charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Override {
    pub model: Option<String>,
    /// The charge (one of [`Charge::PRICED_BY_PLANS`]).
    pub charge: Option<Charge>,
    #[serde(flatten)]
    pub price: OverridePrice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OverridePrice {
    /// Its own markup, in percent (the version's discount still applies).
    MarkupPercent(Decimal),
    /// A fixed price per unit (token, request, hour).
    UnitPrice(Decimal),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    #[serde(default)]
    version: Vec<Spanned<VersionFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionFile {
    effective_from: String,
    #[serde(default, deserialize_with = "exact_option")]
    markup_percent: Option<Decimal>,
    #[serde(default, deserialize_with = "exact_option")]
    discount_percent: Option<Decimal>,
    #[serde(default, deserialize_with = "exact_option")]
    minimum_monthly_usd: Option<Decimal>,
    #[serde(default, rename = "override")]
    overrides: Vec<Spanned<OverrideFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideFile {
    model: Option<String>,
    charge: Option<String>,
    #[serde(default, deserialize_with = "exact_option")]
    markup_percent: Option<Decimal>,
    #[serde(default, deserialize_with = "exact_option")]
    unit_price: Option<Decimal>,
}

impl Dated for VersionFile {
    fn effective_from(&self) -> &str {
        &self.effective_from
    }
}

impl Plan {
    /// Read and check a plan file.
    pub fn parse(text: &str) -> Result<Plan, PlanError> {
        let file: PlanFile = read_toml(text)?;
        let versions = dated_versions(text, "plan", file.version, |v, effective_from| {
            let err = version_error;
            let markup_percent = v.markup_percent.unwrap_or_default();
            check_markup("markup_percent", markup_percent).map_err(err)?;
            let discount_percent = v.discount_percent.unwrap_or_default();
            if discount_percent < Decimal::ZERO || discount_percent > Decimal::ONE_HUNDRED {
                return Err(err(format!(
                    "discount_percent {discount_percent} must be between 0 and 100"
                )));
            }
            if let Some(m) = v.minimum_monthly_usd
                && !(Decimal::ZERO..=MAX_MINIMUM_USD).contains(&m)
            {
                return Err(err(format!(
                    "minimum_monthly_usd {m} must be from 0 to {MAX_MINIMUM_USD}"
                )));
            }
            let mut overrides = Vec::with_capacity(v.overrides.len());
            for spanned in v.overrides {
                let line = line_of(text, spanned.span().start);
                let o = spanned.into_inner();
                overrides.push(check_override(o).map_err(|message| PlanError {
                    line: Some(line),
                    message,
                })?);
            }
            Ok(PlanVersion {
                effective_from,
                markup_percent,
                discount_percent,
                minimum_monthly_usd: v.minimum_monthly_usd,
                overrides,
            })
        })?;
        Ok(Plan { versions })
    }

    pub fn versions(&self) -> &[PlanVersion] {
        &self.versions
    }

    /// The version in force on `date` (none before the first).
    pub fn version_at(&self, date: NaiveDate) -> Option<&PlanVersion> {
        let i = self.versions.partition_point(|v| v.effective_from <= date);
        i.checked_sub(1).and_then(|i| self.versions.get(i))
    }
}

/// The largest markup (1,000 times the cost), fixed unit price and monthly
/// minimum a plan may state: far above any real price, and far from where
/// exact arithmetic on a month's amounts could overflow.
const MAX_MARKUP_PERCENT: Decimal = Decimal::from_parts(100_000, 0, 0, false, 0);
const MAX_UNIT_PRICE: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);
const MAX_MINIMUM_USD: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0); // 10^12

fn check_markup(field: &str, markup: Decimal) -> Result<(), String> {
    if markup < Decimal::ZERO {
        return Err(format!(
            "{field} {markup} must not be negative (a discount is discount_percent)"
        ));
    }
    if markup > MAX_MARKUP_PERCENT {
        return Err(format!(
            "{field} {markup} is over the largest allowed, {MAX_MARKUP_PERCENT}"
        ));
    }
    Ok(())
}

fn check_override(o: OverrideFile) -> Result<Override, String> {
    let charge = match &o.charge {
        Some(name) => Some(
            Charge::named(name, &Charge::PRICED_BY_PLANS).ok_or_else(|| {
                let names: Vec<&str> = Charge::PRICED_BY_PLANS.iter().map(|c| c.as_str()).collect();
                format!(
                    "override charge {name:?} is not one of {}",
                    names.join(", ")
                )
            })?,
        ),
        None => None,
    };
    if o.model.is_none() && charge.is_none() {
        return Err("an override needs a model, a charge, or both".into());
    }
    if o.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
        return Err("override model must not be empty".into());
    }
    let price = match (o.markup_percent, o.unit_price) {
        (Some(m), None) => {
            check_markup("override markup_percent", m)?;
            OverridePrice::MarkupPercent(m)
        }
        (None, Some(p)) if p > MAX_UNIT_PRICE => {
            return Err(format!(
                "override unit_price {p} is over the largest allowed, {MAX_UNIT_PRICE}"
            ));
        }
        (None, Some(p)) if p >= Decimal::ZERO => OverridePrice::UnitPrice(p),
        (None, Some(p)) => return Err(format!("override unit_price {p} must not be negative")),
        _ => {
            return Err("an override sets exactly one of markup_percent and unit_price".into());
        }
    };
    Ok(Override {
        model: o.model,
        charge,
        price,
    })
}

impl PlanVersion {
    /// The first override for a line of `model` and `charge`, if any. Free
    /// container hours without an override of their own take the container
    /// hours' one: the credit is worth what the time it offsets is priced at,
    /// so an allowance that covers all the time still nets to zero (an
    /// override of `container_free_hours` with `unit_price = "0"` keeps the
    /// allowance from the account).
    pub fn override_for(&self, model: Option<&str>, charge: Charge) -> Option<&Override> {
        let find = |charge: Charge| {
            self.overrides.iter().find(|o| {
                o.model.as_deref().is_none_or(|m| Some(m) == model)
                    && o.charge.is_none_or(|c| c == charge)
            })
        };
        find(charge).or_else(|| {
            (charge == Charge::ContainerFreeHours)
                .then(|| find(Charge::ContainerHours))
                .flatten()
        })
    }

    /// The price of a cost line: `(unit_price, amount_exact)` for `quantity`
    /// units that cost `cost_unit_price` each (`cost_exact` in all).
    pub fn price(
        &self,
        model: Option<&str>,
        charge: Charge,
        quantity: Decimal,
        cost_unit_price: Decimal,
        cost_exact: Decimal,
    ) -> (Decimal, Decimal) {
        let markup = match self.override_for(model, charge).map(|o| o.price) {
            Some(OverridePrice::UnitPrice(p)) => return (p, p * quantity),
            Some(OverridePrice::MarkupPercent(m)) => m,
            None => self.markup_percent,
        };
        let factor = (Decimal::ONE + markup / Decimal::ONE_HUNDRED)
            * (Decimal::ONE - self.discount_percent / Decimal::ONE_HUNDRED);
        (cost_unit_price * factor, cost_exact * factor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    const PLAN: &str = r#"
[[version]]
effective_from = "2025-01-01"
markup_percent = "20"
minimum_monthly_usd = "12"

[[version.override]]
model = "claude-opus-4-20250514"
charge = "output_tokens"
unit_price = "0.0001"

[[version.override]]
charge = "container_hours"
markup_percent = "50"

[[version]]
effective_from = "2025-06-01"
markup_percent = "10"
discount_percent = "5"
"#;

    #[test]
    fn versions_overrides_and_prices() {
        let plan = Plan::parse(PLAN).unwrap();
        let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert!(plan.version_at(date("2024-12-31")).is_none());
        let may = plan.version_at(date("2025-05-31")).unwrap();
        assert_eq!(may.minimum_monthly_usd, Some(d("12")));
        // 1,000 output tokens of Opus 4 at the fixed price: $0.1.
        let opus = Some("claude-opus-4-20250514");
        assert_eq!(
            may.price(
                opus,
                Charge::OutputTokens,
                d("1000"),
                d("0.000075"),
                d("0.075")
            ),
            (d("0.0001"), d("0.1"))
        );
        // Its input tokens: the version's 20 % markup.
        let (unit, amount) = may.price(
            opus,
            Charge::InputTokens,
            d("1000"),
            d("0.000015"),
            d("0.015"),
        );
        assert_eq!((unit, amount), (d("0.000018"), d("0.018")));
        // Container hours of any model: their own 50 %.
        let (_, amount) = may.price(None, Charge::ContainerHours, d("2"), d("0.05"), d("0.1"));
        assert_eq!(amount, d("0.15"));
        // Free hours follow the container hours' override.
        let (unit, _) = may.price(
            None,
            Charge::ContainerFreeHours,
            d("-2"),
            d("0.05"),
            d("-0.1"),
        );
        assert_eq!(unit, d("0.075"));
        // June: 10 % up, then 5 % off: × 1.045, and no overrides.
        let june = plan.version_at(date("2025-06-01")).unwrap();
        let (_, amount) = june.price(
            opus,
            Charge::OutputTokens,
            d("1000"),
            d("0.000075"),
            d("0.075"),
        );
        assert_eq!(amount, d("0.078375"));
        assert_eq!(june.minimum_monthly_usd, None);
    }

    #[test]
    fn an_empty_plan_prices_at_cost() {
        let plan = Plan::parse("[[version]]\neffective_from = \"2025-01-01\"\n").unwrap();
        let v = &plan.versions()[0];
        assert_eq!(
            v.price(
                None,
                Charge::WebSearchRequests,
                d("3"),
                d("0.01"),
                d("0.03")
            ),
            (d("0.01"), d("0.03"))
        );
    }

    #[test]
    fn bad_plans_are_refused_with_the_line() {
        let refused = |text: &str| Plan::parse(text).unwrap_err().to_string();
        let v = "[[version]]\neffective_from = \"2025-01-01\"\n";
        for (text, expected) in [
            ("", "no [[version]]"),
            (
                "[[version]]\neffective_from = \"2025-13-01\"\n",
                "line 1: effective_from \"2025-13-01\" is not a date",
            ),
            (
                &format!("{v}markup_percent = 20\n"),
                "line 3: invalid type: integer `20`, expected a string",
            ),
            (
                &format!("{v}markup_percent = \"-5\"\n"),
                "line 1: markup_percent -5 must not be negative",
            ),
            (
                &format!("{v}discount_percent = \"101\"\n"),
                "between 0 and 100",
            ),
            (
                &format!("{v}minimum_monthly_usd = \"-1\"\n"),
                "must be from 0 to 1000000000000",
            ),
            (
                &format!("{v}markup_percent = \"100001\"\n"),
                "line 1: markup_percent 100001 is over the largest allowed, 100000",
            ),
            (
                &format!(
                    "{v}[[version.override]]\ncharge = \"output_tokens\"\nunit_price = \"1000001\"\n"
                ),
                "unit_price 1000001 is over the largest allowed",
            ),
            (&format!("{v}tier = \"gold\"\n"), "unknown field `tier`"),
            (
                &format!("{v}{v}"),
                "line 3: versions must be in increasing effective_from order",
            ),
            (
                &format!("{v}[[version.override]]\nmarkup_percent = \"5\"\n"),
                "line 3: an override needs a model, a charge, or both",
            ),
            (
                &format!("{v}[[version.override]]\ncharge = \"output\"\nunit_price = \"1\"\n"),
                "line 3: override charge \"output\" is not one of input_tokens",
            ),
            (
                &format!(
                    "{v}[[version.override]]\ncharge = \"output_tokens\"\nunit_price = \"1\"\nmarkup_percent = \"2\"\n"
                ),
                "exactly one of markup_percent and unit_price",
            ),
            (
                &format!(
                    "{v}[[version.override]]\ncharge = \"output_tokens\"\nunit_price = \"-1\"\n"
                ),
                "unit_price -1 must not be negative",
            ),
        ] {
            let message = refused(text);
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }
}
