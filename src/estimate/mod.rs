//! Pre-deploy cost estimates and what-if repricing (docs/estimates.md), computed by the
//! billing core of the invoices: token lines through
//! [`LineBook::add_token_quantities`], container time as per-day
//! [`ChargedContainers`] whose free allowance is shared by the same code as
//! an invoice's, and subtotals rounded by the same assembly. So a workload
//! that mirrors a recorded month gives that month's invoice figures.
//!
//! Each workload is priced alone for its gross figures; the top-level
//! figures are one invoice holding every workload, with one free allowance
//! deducted from their container time together.

pub mod text;
pub mod workload;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Datelike, Days, NaiveDate};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;

use crate::billing::containers::{
    AllowanceUse, ChargedContainers, ContainerBill, FreeCredit, share_allowance,
};
use crate::billing::{
    BillingError, Charge, LineBook, Period, RateKey, Subtotals, TokenQuantities, assemble,
    container_bill,
};
use crate::plans::Plan;
use crate::pricing::{AllowancePeriod, PriceBook, PriceVersion};
use crate::record::Usage;
use crate::store::{Store, UsageQuery};
pub use workload::{Workload, WorkloadError, WorkloadFile};

/// Most workloads in one document (each is simulated day by day).
pub const MAX_WORKLOADS: usize = 100;

/// Most models in one comparison.
pub const MAX_COMPARED: usize = 10;

/// Most container seconds a workload may bill per day, so that sums over
/// every day and workload stay far inside an i64.
const MAX_SECONDS_PER_DAY: i64 = 1_000_000_000_000;

/// The estimate document of docs/estimates.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Estimate {
    /// The account whose plan priced the workloads (absent: at cost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub days: i64,
    pub at: NaiveDate,
    pub workloads: Vec<WorkloadCost>,
    /// Free container-hours deducted over the projection.
    #[serde(with = "rust_decimal::serde::str")]
    pub free_container_hours: Decimal,
    pub subtotals: Subtotals,
    pub total: Decimal,
    /// For the text view: the price version used and the allowance available.
    #[serde(skip)]
    pub price_version: String,
    #[serde(skip)]
    pub allowance_hours: Decimal,
    /// The free-hours lines' amount (0 or negative).
    #[serde(skip)]
    pub free_amount: Decimal,
}

/// One workload's gross cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadCost {
    pub name: String,
    pub model: String,
    pub subtotals: Subtotals,
    #[serde(with = "rust_decimal::serde::str")]
    pub container_hours: Decimal,
    pub total: Decimal,
}

/// The same workloads on several models, side by side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comparison {
    pub days: i64,
    pub at: NaiveDate,
    pub models: Vec<ModelCost>,
    /// The model with the lowest total (the first listed on a tie).
    pub cheapest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelCost {
    pub model: String,
    pub subtotals: Subtotals,
    pub total: Decimal,
}

const HOUR: Decimal = Decimal::from_parts(3600, 0, 0, false, 0);
const MINUTE: Decimal = Decimal::from_parts(60, 0, 0, false, 0);

/// Usage of one workload (or one repriced model) to put through the billing core.
struct Part {
    name: String,
    model: String,
    /// Token groups to price, with their exact quantities and the usage to
    /// list should the model have no price (see [`LineBook::add_token_quantities`]).
    tokens: Vec<(RateKey, TokenQuantities, Usage)>,
    /// Billed container seconds per day.
    container_days: Vec<(NaiveDate, i64)>,
}

/// `YYYY-MM-DD` (or an RFC 3339 time, whose UTC date is taken).
pub fn parse_day(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .or_else(|_| {
            chrono::DateTime::parse_from_rfc3339(s.trim())
                .map(|t| t.with_timezone(&chrono::Utc).date_naive())
        })
        .map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD)"))
}

/// Project `file` with the price-book version in force on `at`, at cost.
pub fn estimate(
    book: &PriceBook,
    at: NaiveDate,
    file: &WorkloadFile,
) -> Result<Estimate, WorkloadError> {
    estimate_for(book, None, at, file)
}

/// Project `file` with the price-book version in force on `at`, priced by
/// an account's plan (its version in force on each projected day; a
/// monthly minimum is no part of a projection), or at cost without one.
pub fn estimate_for(
    book: &PriceBook,
    plan: Option<Arc<Plan>>,
    at: NaiveDate,
    file: &WorkloadFile,
) -> Result<Estimate, WorkloadError> {
    file.validate()?;
    if file.workload.len() > MAX_WORKLOADS {
        return Err(WorkloadError::invalid(
            "workload",
            format!(
                "{} workloads; at most {MAX_WORKLOADS} per document",
                file.workload.len()
            ),
        ));
    }
    let (Some(version), Some(pinned)) = (book.version_at(at), book.pinned_at(at)) else {
        return Err(WorkloadError::invalid(
            "at",
            format!("no price-book version is in force on {at}"),
        ));
    };
    let label = version.label();
    let thresholds = pinned.thresholds();
    let mut parts = Vec::with_capacity(file.workload.len());
    for (i, w) in file.workload.iter().enumerate() {
        parts.push(workload_part(
            &pinned,
            &label,
            &thresholds,
            at,
            file.days,
            w,
            i,
        )?);
    }
    price(&pinned, plan, label, at, file.days, parts)
}

/// The same document on each of `models` (every workload moved to it),
/// priced by `plan` when given.
pub fn compare_models(
    book: &PriceBook,
    plan: Option<Arc<Plan>>,
    at: NaiveDate,
    file: &WorkloadFile,
    models: &[String],
) -> Result<Comparison, WorkloadError> {
    if models.is_empty() || models.len() > MAX_COMPARED {
        return Err(WorkloadError::invalid(
            "--compare-models",
            format!("name from 1 to {MAX_COMPARED} models"),
        ));
    }
    // The document is checked as it stands too: the comparison replaces its
    // models, but a misspelt one is still a mistake in it.
    estimate_for(book, plan.clone(), at, file)?;
    let mut out = Vec::with_capacity(models.len());
    for m in models {
        let mut moved = file.clone();
        for w in &mut moved.workload {
            w.model = m.clone();
        }
        let e = estimate_for(book, plan.clone(), at, &moved).map_err(|e| match e {
            WorkloadError::Invalid { field, message } if field.ends_with(".model") => {
                WorkloadError::invalid("--compare-models", message)
            }
            other => other,
        })?;
        out.push(ModelCost {
            model: m.clone(),
            subtotals: e.subtotals,
            total: e.total,
        });
    }
    let cheapest = out
        .iter()
        .min_by(|a, b| a.total.cmp(&b.total))
        .map(|m| m.model.clone())
        .unwrap_or_default();
    Ok(Comparison {
        days: file.days,
        at,
        models: out,
        cheapest,
    })
}

/// How many of the book's thresholds an average total input exceeds (the
/// size bucket the invoices compute per record).
fn bucket(thresholds: &[i64], total_input: Decimal) -> i64 {
    thresholds
        .iter()
        .filter(|&&t| total_input > Decimal::from(t))
        .count() as i64
}

fn workload_part(
    book: &PriceBook,
    label: &str,
    thresholds: &[i64],
    at: NaiveDate,
    days: i64,
    w: &Workload,
    index: usize,
) -> Result<Part, WorkloadError> {
    let field = |name: &str| format!("workload[{index}].{name}");
    let version = book
        .version_at(at)
        .ok_or_else(|| WorkloadError::invalid("at", format!("no price-book version on {at}")))?;
    if version.model(&w.model).is_none() {
        return Err(WorkloadError::invalid(
            field("model"),
            format!(
                "unknown model {:?}: the price-book version {label} (in force on {at}) has no price for it",
                w.model,
            ),
        ));
    }
    let requests = w.requests_per_day * Decimal::from(days);
    let total_input =
        w.input_tokens + w.cache_write_5m_tokens + w.cache_write_1h_tokens + w.cache_read_tokens;
    let mut tokens = Vec::new();
    for (batch, share) in [(false, Decimal::ONE - w.batch_share), (true, w.batch_share)] {
        let n = requests * share;
        if n.is_zero() {
            continue;
        }
        let key = RateKey {
            model: Some(w.model.clone()),
            day: crate::time::day_number_of_date(at),
            batch,
            fast: false,
            us: false,
            bucket: bucket(thresholds, total_input),
            refusal: None,
        };
        let q = TokenQuantities {
            input: n * w.input_tokens,
            output: n * w.output_tokens,
            cache_write_5m: n * w.cache_write_5m_tokens,
            cache_write_1h: n * w.cache_write_1h_tokens,
            cache_read: n * w.cache_read_tokens,
            web_searches: n * w.web_searches,
        };
        tokens.push((key, q, Usage::default()));
    }
    // Each code-running request has a container of its own, billed at
    // least the minimum; each files-only container the minimum.
    let minimum = Decimal::from(version.container_minimum_seconds.max(0));
    // Each container's time is rounded up to whole seconds, as on invoices.
    let per_code = (w.container_minutes * MINUTE).ceil().max(minimum);
    let seconds = (w.requests_per_day * w.code_execution_share * per_code
        + w.requests_per_day * w.files_preloaded_share * minimum)
        .ceil()
        .to_i64()
        .filter(|s| *s <= MAX_SECONDS_PER_DAY)
        .ok_or_else(|| {
            WorkloadError::invalid(
                field("requests_per_day"),
                "container time per day is too large",
            )
        })?;
    let container_days = if seconds > 0 {
        projection_days(at, days).map(|d| (d, seconds)).collect()
    } else {
        Vec::new()
    };
    Ok(Part {
        name: w.name.clone(),
        model: w.model.clone(),
        tokens,
        container_days,
    })
}

fn projection_days(at: NaiveDate, days: i64) -> impl Iterator<Item = NaiveDate> {
    (0..u64::try_from(days).unwrap_or(0)).filter_map(move |n| at.checked_add_days(Days::new(n)))
}

/// Price the parts as invoices would: each part alone (gross), and all
/// together as one invoice with the free allowance.
fn price(
    book: &PriceBook,
    plan: Option<Arc<Plan>>,
    label: String,
    at: NaiveDate,
    days: i64,
    parts: Vec<Part>,
) -> Result<Estimate, WorkloadError> {
    let thresholds = book.thresholds();
    let period = Period::of_day(at);
    let version = book
        .version_at(at)
        .ok_or_else(|| WorkloadError::invalid("at", format!("no price-book version on {at}")))?;
    // Container time as the billing core holds it, per account and day:
    // one account for the allowance (workloads share it, whatever its
    // scope), and each part alone for its gross figures.
    let charged = |account: &str, p: &Part| -> Vec<ChargedContainers> {
        p.container_days
            .iter()
            .map(|&(day, seconds)| {
                let v = book.version_at(day).unwrap_or(version);
                ChargedContainers {
                    account: account.to_owned(),
                    day,
                    containers: 0,
                    execution_seconds: seconds,
                    billed_seconds: seconds,
                    price_version: v.label(),
                    hour_price: v.container_hour,
                }
            })
            .collect()
    };
    let all_containers: Vec<ChargedContainers> =
        parts.iter().flat_map(|p| charged("all", p)).collect();
    let (credits, allowance) = allowance(book, version, at, days, &all_containers);
    let all = ContainerBill {
        containers: all_containers,
        credits,
        allowance,
    };

    let mut everything = LineBook::priced_by(plan.clone());
    let mut workloads = Vec::with_capacity(parts.len());
    for p in &parts {
        let mut own = LineBook::priced_by(plan.clone());
        for (g, q, unpriced) in &p.tokens {
            own.add_token_quantities(book, &thresholds, g, q, unpriced);
            everything.add_token_quantities(book, &thresholds, g, q, unpriced);
        }
        let gross = ContainerBill {
            containers: charged("one", p),
            ..ContainerBill::default()
        };
        own.add_containers_where(&gross, |_| true);
        let seconds: i64 = p.container_days.iter().map(|(_, s)| s).sum();
        let invoice = assemble(&p.name, period, own, 0, 0);
        workloads.push(WorkloadCost {
            name: p.name.clone(),
            model: p.model.clone(),
            total: invoice.total,
            subtotals: invoice.subtotals,
            container_hours: (Decimal::from(seconds) / HOUR).normalize(),
        });
    }
    everything.add_containers_where(&all, |_| true);
    let free: i64 = all.credits.iter().map(|c| c.seconds).sum();
    let available: i64 = all.allowance.iter().map(|u| u.allowance_seconds).sum();
    let invoice = assemble("estimate", period, everything, 0, 0);
    let free_amount = invoice
        .lines
        .iter()
        .filter(|l| l.charge == Charge::ContainerFreeHours)
        .map(|l| l.amount)
        .sum();
    Ok(Estimate {
        account: None,
        free_amount,
        days,
        at,
        workloads,
        free_container_hours: (Decimal::from(free) / HOUR).normalize(),
        subtotals: invoice.subtotals,
        total: invoice.total,
        price_version: label,
        allowance_hours: (Decimal::from(available) / HOUR).normalize(),
    })
}

/// The free allowance, shared by the invoices' code. A monthly allowance is
/// prorated for a calendar month the projection covers in part (k of its n
/// days: k/n of the allowance), so 30 days from mid-month get about one
/// month's allowance, not two; a whole month gets exactly the invoice's.
fn allowance(
    book: &PriceBook,
    version: &PriceVersion,
    at: NaiveDate,
    days: i64,
    containers: &[ChargedContainers],
) -> (Vec<FreeCredit>, Vec<AllowanceUse>) {
    if version.free_allowance_period == AllowancePeriod::Day {
        return share_allowance(book, containers);
    }
    let mut months: BTreeMap<NaiveDate, (i64, Vec<ChargedContainers>)> = BTreeMap::new();
    for day in projection_days(at, days) {
        months.entry(first_of_month(day)).or_default().0 += 1;
    }
    for c in containers {
        if let Some(m) = months.get_mut(&first_of_month(c.day)) {
            m.1.push(c.clone());
        }
    }
    let mut credits = Vec::new();
    let mut uses = Vec::new();
    for (first, (covered, charged)) in months {
        let length = (next_month(first) - first).num_days();
        let (c, u) = if covered >= length {
            share_allowance(book, &charged)
        } else {
            let hours =
                version.free_container_hours * Decimal::from(covered) / Decimal::from(length);
            share_allowance(&book.with_free_container_hours(hours), &charged)
        };
        credits.extend(c);
        uses.extend(u);
    }
    (credits, uses)
}

fn first_of_month(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

fn next_month(first: NaiveDate) -> NaiveDate {
    first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first)
}

/// What `account`'s recorded usage in `period` would have cost on `model`,
/// at `scale` times the volume: one workload per original model (each
/// record's tokens, tier and batch kept, priced on `model` with the version
/// of its day), plus one for the period's container time, which no model
/// owns. The free allowance is applied as if the account were the whole
/// organization.
pub async fn reprice(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
    model: &str,
    scale: Decimal,
) -> Result<Estimate, RepriceError> {
    if scale.is_sign_negative() || scale > Decimal::from(1_000_000) {
        return Err(
            WorkloadError::invalid("--scale", format!("{scale} is outside [0, 1000000]")).into(),
        );
    }
    let (from, to) = period.bounds();
    let thresholds = book.thresholds();
    let query = UsageQuery {
        account: Some(account.to_owned()),
        from,
        to,
        max_seq: i64::MAX,
        thresholds: thresholds.clone(),
        use_rollup: true,
        dims: Vec::new(),
    };
    let mut groups = store
        .usage_groups(&query)
        .await
        .map_err(BillingError::from)?;
    groups.extend(
        store
            .iteration_groups(&query)
            .await
            .map_err(BillingError::from)?,
    );
    let at = period.first_day();
    let days = (next_month(at) - at).num_days();
    let version = book.version_at(at);
    if version.is_some_and(|v| v.model(model).is_none()) {
        return Err(unknown_model(model, version).into());
    }
    let mut parts: Vec<Part> = Vec::new();
    for g in groups {
        let original = g.rate.model.clone().unwrap_or_else(|| "(no model)".into());
        let day = crate::time::date_of_day_number(g.rate.day);
        let version = day.and_then(|d| book.version_at(d));
        if version.is_some_and(|v| v.model(model).is_none()) {
            return Err(unknown_model(model, version).into());
        }
        let scaled = |n: i64| Decimal::from(n) * scale;
        let u = &g.usage;
        let q = TokenQuantities {
            input: scaled(u.input_tokens),
            output: scaled(u.output_tokens),
            cache_write_5m: scaled(u.cache_write_5m_tokens),
            cache_write_1h: scaled(u.cache_write_1h_tokens),
            cache_read: scaled(u.cache_read_tokens),
            web_searches: scaled(u.web_search_requests),
        };
        let moved = RateKey {
            model: Some(model.to_owned()),
            ..g.rate.clone()
        };
        match parts.iter_mut().find(|p| p.name == original) {
            Some(p) => p.tokens.push((moved, q, g.usage.clone())),
            None => parts.push(Part {
                name: original,
                model: model.to_owned(),
                tokens: vec![(moved, q, g.usage.clone())],
                container_days: Vec::new(),
            }),
        }
    }
    let bill = container_bill(store, book, period, crate::billing::Cutoff::Now(i64::MAX)).await?;
    let mut container_days: Vec<(NaiveDate, i64)> = Vec::new();
    for c in bill.containers.iter().filter(|c| c.account == account) {
        let seconds = (Decimal::from(c.billed_seconds) * scale)
            .ceil()
            .to_i64()
            .filter(|s| *s <= MAX_SECONDS_PER_DAY)
            .ok_or_else(|| {
                WorkloadError::invalid("--scale", "container time per day would be too large")
            })?;
        if seconds > 0 {
            container_days.push((c.day, seconds));
        }
    }
    if !container_days.is_empty() {
        parts.push(Part {
            name: "code execution containers".into(),
            model: model.to_owned(),
            tokens: Vec::new(),
            container_days,
        });
    }
    if parts.is_empty() {
        // Nothing to reprice: most likely a misspelt account or period.
        return Err(WorkloadError::invalid(
            "--account",
            format!("no usage of account {account:?} is recorded in {period}"),
        )
        .into());
    }
    let label = version.map(PriceVersion::label).unwrap_or_default();
    Ok(price(book, None, label, at, days, parts)?)
}

fn unknown_model(model: &str, version: Option<&PriceVersion>) -> WorkloadError {
    WorkloadError::invalid(
        "--model",
        format!(
            "unknown model {model:?}: the price-book version {} has no price for it",
            version.map(PriceVersion::label).unwrap_or_default()
        ),
    )
}

/// Why a repricing failed: a bad argument, or the ledger could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RepriceError {
    #[error(transparent)]
    Invalid(#[from] WorkloadError),
    #[error(transparent)]
    Billing(#[from] BillingError),
}

impl From<crate::store::StoreError> for RepriceError {
    fn from(e: crate::store::StoreError) -> Self {
        RepriceError::Billing(e.into())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn one(text: &str, at: &str, book: &PriceBook) -> Estimate {
        let file = WorkloadFile::parse(text).unwrap();
        estimate(
            book,
            NaiveDate::parse_from_str(at, "%Y-%m-%d").unwrap(),
            &file,
        )
        .unwrap()
    }

    const CODE: &str = r#"
days = 1
[[workload]]
name = "a"
model = "claude-sonnet-4-20250514"
requests_per_day = 100
code_execution_share = 1
container_minutes = 60
[[workload]]
name = "b"
model = "claude-sonnet-4-20250514"
requests_per_day = 100
code_execution_share = 1
container_minutes = 60
"#;

    /// A version that takes effect on the 30th still brings its monthly
    /// allowance (1,550 h prorated to 1 day of 30).
    #[test]
    fn a_version_starting_late_in_the_month_keeps_its_allowance() {
        let e = one(CODE, "2026-06-30", &PriceBook::shipped());
        assert_eq!(e.price_version, "2026-06-30");
        assert_eq!(e.free_container_hours.round_dp(2).to_string(), "51.67");
    }

    /// Workloads share one allowance, whatever its scope: two workloads of
    /// 100 h a day under a 50 h daily allowance given per account get 50 h.
    #[test]
    fn workloads_share_the_allowance_even_with_account_scope() {
        let text = crate::pricing::SHIPPED.replace(
            "free_allowance_scope = \"organization\"",
            "free_allowance_scope = \"account\"",
        );
        assert_ne!(text, crate::pricing::SHIPPED);
        let book = PriceBook::parse(&text).unwrap();
        let e = one(CODE, "2025-06-15", &book);
        assert_eq!(e.free_container_hours, Decimal::from(50));
    }

    /// Each container's time is rounded up to a whole second before the
    /// day is summed: 10 runs of 5.01 minutes (300.6 s) bill 10 × 301 s.
    #[test]
    fn container_time_rounds_per_container() {
        let text = "days = 1\n[[workload]]\nname = \"x\"\nmodel = \"claude-sonnet-4-20250514\"\n\
                    requests_per_day = 10\ncode_execution_share = 1\ncontainer_minutes = 5.01\n";
        let e = one(text, "2025-06-15", &PriceBook::shipped());
        assert_eq!(e.workloads[0].container_hours * HOUR, Decimal::from(3010));
    }

    /// The largest document the limits allow is priced without overflow.
    #[test]
    fn the_largest_workloads_do_not_overflow() {
        let big = Decimal::from(1_000_000_000);
        let w = Workload {
            name: "big".into(),
            model: "claude-opus-4-20250514".into(),
            requests_per_day: big,
            input_tokens: big,
            output_tokens: big,
            cache_write_5m_tokens: big,
            cache_write_1h_tokens: big,
            cache_read_tokens: big,
            web_searches: big,
            batch_share: Decimal::new(5, 1),
            code_execution_share: Decimal::new(1, 3),
            container_minutes: Decimal::from(16_000),
            files_preloaded_share: Decimal::ZERO,
        };
        let file = WorkloadFile {
            days: workload::MAX_DAYS,
            workload: vec![w; MAX_WORKLOADS],
        };
        let day = NaiveDate::from_ymd_opt(2025, 6, 15).unwrap();
        let e = estimate(&PriceBook::shipped(), day, &file).unwrap();
        assert!(e.total > Decimal::ZERO);
        // Past the container-time limit: an error, not a panic.
        let mut over = file.clone();
        over.workload.truncate(1);
        over.workload[0].code_execution_share = Decimal::ONE;
        over.workload[0].container_minutes = big;
        let err = estimate(&PriceBook::shipped(), day, &over).unwrap_err();
        assert_eq!(err.field(), Some("workload[0].requests_per_day"));
    }
}
