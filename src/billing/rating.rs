//! Rating: usage quantities → priced line items. Pure (no I/O): what a
//! charge is, which rates apply to a group of usage, and how quantities add
//! up to lines rounded to the cent (docs/billing.md).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use super::containers::ContainerBill;
pub use crate::charge::{Category, Charge};
use crate::plans::{OverridePrice, Plan};
use crate::pricing::{ModelPrice, PriceBook, Rates};
use crate::record::{RateKey, Usage};
use crate::store::UsageGroup;

/// Everything that makes two charges separate lines. The derived order is
/// the order of lines on the invoice.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LineKey {
    pub category: Category,
    pub model: Option<String>,
    pub charge: Charge,
    pub batch: bool,
    pub long_context: bool,
    pub us_inference: bool,
    pub fast: bool,
    pub price_version: String,
    /// Cost per unit (the price book's).
    pub unit_price: Decimal,
    /// The `effective_from` of the account's plan version that prices this
    /// line (none without a plan: price = cost).
    pub plan_version: Option<NaiveDate>,
}

impl LineKey {
    fn description(&self) -> String {
        let mut d = match &self.model {
            Some(m) => format!("{m} {}", self.charge.words()),
            None => self.charge.words().to_owned(),
        };
        for q in self.qualifiers() {
            d.push_str(&format!(" ({})", q.words()));
        }
        d
    }

    /// What sets this line's price apart beside its model and charge, in
    /// the order descriptions and SKUs list them.
    pub fn qualifiers(&self) -> impl Iterator<Item = Qualifier> {
        [
            (self.batch, Qualifier::Batch),
            (self.long_context, Qualifier::LongContext),
            (self.us_inference, Qualifier::UsInference),
            (self.fast, Qualifier::Fast),
        ]
        .into_iter()
        .filter_map(|(on, q)| on.then_some(q))
    }
}

/// A trait of a line that changes its unit price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    Batch,
    LongContext,
    UsInference,
    Fast,
}

impl Qualifier {
    /// As an invoice line's description says it.
    pub fn words(self) -> &'static str {
        match self {
            Qualifier::Batch => "batch",
            Qualifier::LongContext => "long context",
            Qualifier::UsInference => "US-only inference",
            Qualifier::Fast => "fast mode",
        }
    }

    /// As a FOCUS SKU's segment.
    pub fn sku_segment(self) -> &'static str {
        match self {
            Qualifier::Batch => "batch",
            Qualifier::LongContext => "long-context",
            Qualifier::UsInference => "us",
            Qualifier::Fast => "fast",
        }
    }
}

/// One invoice line, as rendered. `unit_price` and the amounts are what
/// the account pays (its plan's price; the cost without a plan); what the
/// line costs is kept beside them for the admin's views, never rendered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub description: String,
    pub model: Option<String>,
    pub charge: Charge,
    pub batch: bool,
    pub long_context: bool,
    pub quantity: Decimal,
    pub unit: &'static str,
    pub unit_price: Decimal,
    pub price_version: String,
    /// The plan version that priced the line (absent without a plan).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_version: Option<String>,
    pub amount_exact: Decimal,
    pub amount: Decimal,
    #[serde(skip)]
    pub cost: LineCost,
}

impl Line {
    /// A line of one `amount` that is not usage (a credit, a commitment, an
    /// adjustment, tax): quantity one at that price, no model, no cost.
    /// Callers change what differs with struct update syntax.
    pub fn flat(
        charge: Charge,
        description: String,
        price_version: String,
        amount: Decimal,
    ) -> Line {
        Line {
            description,
            model: None,
            charge,
            batch: false,
            long_context: false,
            quantity: Decimal::ONE,
            unit: charge.unit(),
            unit_price: amount,
            price_version,
            plan_version: None,
            amount_exact: amount,
            amount,
            cost: LineCost::default(),
        }
    }
}

/// What a line costs (the price book's figures), whatever the account pays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineCost {
    pub unit_price: Decimal,
    pub amount_exact: Decimal,
    pub amount: Decimal,
}

/// Usage of a model the price book has no price for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unpriced {
    pub model: String,
    pub records: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_write_5m_tokens: i64,
    pub cache_write_1h_tokens: i64,
    pub cache_read_tokens: i64,
    pub web_search_requests: i64,
}

/// Round to cents, half away from zero (docs/billing.md).
pub fn cents(amount: Decimal) -> Decimal {
    let mut r = amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(2);
    if r.is_zero() {
        r.set_sign_positive(true); // never "-0.00"
    }
    r
}

const MTOK: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);
const HOUR_SECONDS: Decimal = Decimal::from_parts(3600, 0, 0, false, 0);

/// Token and web-search quantities to price, as exact decimals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenQuantities {
    pub input: Decimal,
    pub output: Decimal,
    pub cache_write_5m: Decimal,
    pub cache_write_1h: Decimal,
    pub cache_read: Decimal,
    pub web_searches: Decimal,
}

impl TokenQuantities {
    pub fn of(u: &Usage) -> TokenQuantities {
        TokenQuantities {
            input: Decimal::from(u.input_tokens),
            output: Decimal::from(u.output_tokens),
            cache_write_5m: Decimal::from(u.cache_write_5m_tokens),
            cache_write_1h: Decimal::from(u.cache_write_1h_tokens),
            cache_read: Decimal::from(u.cache_read_tokens),
            web_searches: Decimal::from(u.web_search_requests),
        }
    }
}

/// Lines being collected, keyed so that equal charges add up.
#[derive(Debug, Default)]
pub struct LineBook {
    pub(super) lines: BTreeMap<LineKey, Decimal>,
    unpriced: BTreeMap<String, Unpriced>,
    /// Records that were refusals before output the book does not charge.
    unbilled_refusals: i64,
    /// The account's plan: lines are keyed by its version in force on the
    /// day of their usage, and priced by it.
    plan: Option<Arc<Plan>>,
}

impl LineBook {
    /// A book whose lines the account's plan prices (at cost without one).
    pub fn priced_by(plan: Option<Arc<Plan>>) -> LineBook {
        LineBook {
            plan,
            ..LineBook::default()
        }
    }

    /// The plan version in force on `day`, as lines are keyed by it.
    fn plan_version_on(&self, day: NaiveDate) -> Option<NaiveDate> {
        self.plan
            .as_ref()
            .and_then(|p| p.version_at(day))
            .map(|v| v.effective_from)
    }

    fn add(&mut self, key: LineKey, quantity: Decimal) {
        if !quantity.is_zero() {
            *self.lines.entry(key).or_default() += quantity;
        }
    }

    fn add_unpriced(&mut self, model: &str, records: i64, u: &Usage) {
        let e = self
            .unpriced
            .entry(model.to_owned())
            .or_insert_with(|| Unpriced {
                model: model.to_owned(),
                ..Default::default()
            });
        e.records += records;
        e.input_tokens += u.input_tokens;
        e.output_tokens += u.output_tokens;
        e.cache_write_5m_tokens += u.cache_write_5m_tokens;
        e.cache_write_1h_tokens += u.cache_write_1h_tokens;
        e.cache_read_tokens += u.cache_read_tokens;
        e.web_search_requests += u.web_search_requests;
    }

    /// Price one group of summed token usage (docs/billing.md).
    pub fn add_tokens(
        &mut self,
        book: &PriceBook,
        thresholds: &[i64],
        g: &UsageGroup,
        count_records: bool,
    ) {
        let records = if count_records { g.records } else { 0 };
        let quantities = TokenQuantities::of(&g.usage);
        self.rate_tokens(book, thresholds, &g.rate, &quantities, (records, &g.usage));
    }

    /// Price exact (possibly fractional) token quantities under a rate key;
    /// estimates price their workloads here. `unpriced` is the usage to list
    /// when the model has no price on that day (a repriced group's recorded
    /// usage; nothing for a workload).
    pub fn add_token_quantities(
        &mut self,
        book: &PriceBook,
        thresholds: &[i64],
        key: &RateKey,
        q: &TokenQuantities,
        unpriced: &Usage,
    ) {
        self.rate_tokens(book, thresholds, key, q, (0, unpriced));
    }

    /// `unpriced` is what to report (records, usage) when the model has no
    /// price on that day.
    fn rate_tokens(
        &mut self,
        book: &PriceBook,
        thresholds: &[i64],
        key: &RateKey,
        q: &TokenQuantities,
        (records, usage): (i64, &Usage),
    ) {
        let model = key.model.as_deref().unwrap_or("(no model)");
        let date = crate::time::date_of_day_number(key.day);
        let plan_version = date.and_then(|d| self.plan_version_on(d));
        let version = date.and_then(|d| book.version_at(d));
        let Some(version) = version else {
            self.add_unpriced(model, records, usage);
            return;
        };
        if let Some(refusal) = &key.refusal
            && !version.refusal_policy.charges(refusal)
        {
            // Nothing at all: no tokens, no web searches (docs/billing.md).
            self.unbilled_refusals += records;
            return;
        }
        // Web searches do not depend on the model, and are never batch-discounted.
        // (Keys are built only for quantities there are: most groups have
        // few of the six, and a key costs allocations and a division.)
        if !q.web_searches.is_zero() {
            self.add(
                LineKey {
                    category: Category::WebSearch,
                    model: None,
                    charge: Charge::WebSearchRequests,
                    batch: false,
                    long_context: false,
                    us_inference: false,
                    fast: false,
                    price_version: version.label(),
                    unit_price: version.web_search_per_request,
                    plan_version,
                },
                q.web_searches,
            );
        }
        let Some(price) = version.model(model) else {
            let tokens_only = Usage {
                web_search_requests: 0,
                ..usage.clone()
            };
            self.add_unpriced(model, records, &tokens_only);
            return;
        };
        let (rates, long_context, fast) = pick_rates(price, thresholds, key);
        let mut factor = Decimal::ONE;
        let us = key.us && price.us_multiplier.is_some();
        if let (true, Some(m)) = (key.us, price.us_multiplier) {
            factor *= m;
        }
        if key.batch {
            factor *= Decimal::ONE - version.batch_discount;
        }
        for (charge, quantity, rate) in [
            (Charge::InputTokens, q.input, rates.input),
            (Charge::OutputTokens, q.output, rates.output),
            (
                Charge::CacheWrite5mTokens,
                q.cache_write_5m,
                rates.cache_write_5m,
            ),
            (
                Charge::CacheWrite1hTokens,
                q.cache_write_1h,
                rates.cache_write_1h,
            ),
            (Charge::CacheReadTokens, q.cache_read, rates.cache_read),
        ] {
            if quantity.is_zero() {
                continue;
            }
            self.add(
                LineKey {
                    category: Category::Tokens,
                    model: Some(price.id.clone()),
                    charge,
                    batch: key.batch,
                    long_context,
                    us_inference: us,
                    fast,
                    price_version: version.label(),
                    unit_price: (rate * factor / MTOK).normalize(),
                    plan_version,
                },
                quantity,
            );
        }
    }

    /// Container hours and free-allowance credits of one account.
    pub fn add_containers(&mut self, bill: &ContainerBill, account: &str) {
        self.add_containers_where(bill, |c| c == account);
    }

    /// Container hours and free-allowance credits of the accounts the filter
    /// keeps, in whole seconds until [`LineBook::finish`].
    pub(crate) fn add_containers_where(
        &mut self,
        bill: &ContainerBill,
        keep: impl Fn(&str) -> bool,
    ) {
        // Summed per (charge, version, price) first: a period may hold
        // hundreds of thousands of containers but only a few lines.
        type Sum<'a> = (Charge, &'a str, Decimal, Option<NaiveDate>);
        let mut sums: BTreeMap<Sum, (NaiveDate, i64)> = BTreeMap::new();
        for l in bill.line_seconds().filter(|l| keep(l.account)) {
            let key = (
                l.charge,
                l.price_version,
                l.hour_price,
                self.plan_version_on(l.day),
            );
            let e = sums.entry(key).or_insert((l.day, 0));
            e.1 += l.seconds;
        }
        for ((charge, price_version, unit_price, _), (day, seconds)) in sums {
            self.add_container_seconds(charge, price_version, unit_price, day, seconds);
        }
    }

    /// Whole seconds of container time (or free credit, negative) charged on
    /// `day`, on the code-execution line of that charge, version and hour
    /// price (and plan version).
    pub(super) fn add_container_seconds(
        &mut self,
        charge: Charge,
        price_version: &str,
        unit_price: Decimal,
        day: NaiveDate,
        seconds: i64,
    ) {
        let plan_version = self.plan_version_on(day);
        self.add(
            LineKey {
                category: Category::CodeExecution,
                model: None,
                charge,
                batch: false,
                long_context: false,
                us_inference: false,
                fast: false,
                price_version: price_version.to_owned(),
                unit_price,
                plan_version,
            },
            Decimal::from(seconds),
        );
    }

    /// Refusals before output that the book in force did not charge.
    pub fn unbilled_refusals(&self) -> i64 {
        self.unbilled_refusals
    }

    /// The plan the lines are priced by.
    pub fn plan(&self) -> Option<&Plan> {
        self.plan.as_deref()
    }

    pub fn finish(self) -> (Vec<Line>, Vec<Unpriced>) {
        let plan = self.plan.as_deref();
        let lines = self
            .lines
            .into_iter()
            .map(|(key, quantity)| line_of(key, quantity, plan))
            .collect();
        (lines, self.unpriced.into_values().collect())
    }
}

/// A line's quantity in its unit, with what it costs and what it is priced
/// at (exact): the plan version in the key prices it, else price = cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priced {
    pub quantity: Decimal,
    pub cost_exact: Decimal,
    pub unit_price: Decimal,
    pub price_exact: Decimal,
}

/// Price `quantity` (as a [`LineBook`] keeps it) of a line key.
pub(crate) fn priced(key: &LineKey, quantity: Decimal, plan: Option<&Plan>) -> Priced {
    let kept = quantity;
    let (quantity, cost_exact) = quantity_and_amount(key, quantity);
    let version = key
        .plan_version
        .and_then(|d| plan.and_then(|p| p.version_at(d)));
    let model = key.model.as_deref();
    let (unit_price, price_exact) = match version {
        Some(v) => match v.override_for(model, key.charge).map(|o| o.price) {
            // Container time at a fixed hour price: from the whole seconds,
            // as its cost is (s × price ÷ 3600, docs/billing.md).
            Some(OverridePrice::UnitPrice(p))
                if matches!(
                    key.charge,
                    Charge::ContainerHours | Charge::ContainerFreeHours
                ) =>
            {
                (p, kept * p / HOUR_SECONDS)
            }
            _ => v.price(model, key.charge, quantity, key.unit_price, cost_exact),
        },
        None => (key.unit_price, cost_exact),
    };
    Priced {
        quantity,
        cost_exact,
        unit_price,
        price_exact,
    }
}

/// The rendered line of a key and its summed quantity. Container lines hold
/// whole seconds until here: quantity = s / 3600 hours and amount =
/// s × price / 3600 (docs/billing.md). The plan (the one the key's plan version
/// belongs to) prices it.
pub(super) fn line_of(key: LineKey, quantity: Decimal, plan: Option<&Plan>) -> Line {
    let p = priced(&key, quantity, plan);
    Line {
        description: key.description(),
        charge: key.charge,
        batch: key.batch,
        long_context: key.long_context,
        quantity: p.quantity.normalize(),
        unit: key.charge.unit(),
        unit_price: p.unit_price.normalize(),
        price_version: key.price_version,
        plan_version: key.plan_version.map(|d| d.to_string()),
        amount_exact: p.price_exact.normalize(),
        amount: cents(p.price_exact),
        cost: LineCost {
            unit_price: key.unit_price.normalize(),
            amount_exact: p.cost_exact.normalize(),
            amount: cents(p.cost_exact),
        },
        model: key.model,
    }
}

/// A line's quantity in its unit (container seconds become hours) and its
/// exact amount, for `quantity` as a [`LineBook`] keeps it.
pub(super) fn quantity_and_amount(key: &LineKey, quantity: Decimal) -> (Decimal, Decimal) {
    if key.charge.is_container_time() {
        (
            quantity / HOUR_SECONDS,
            quantity * key.unit_price / HOUR_SECONDS,
        )
    } else {
        (quantity, quantity * key.unit_price)
    }
}

/// The rate set for a group: fast-mode prices when the response ran fast and
/// the model has them; else the highest prompt-size tier the total input
/// passed; else the base rates. Returns (rates, long_context, fast).
fn pick_rates<'a>(
    price: &'a ModelPrice,
    thresholds: &[i64],
    key: &RateKey,
) -> (&'a Rates, bool, bool) {
    if key.fast
        && let Some(fast) = &price.fast
    {
        return (fast, false, true);
    }
    let passed = price.tiers.iter().rev().find(|t| {
        thresholds
            .iter()
            .position(|&x| x == t.above_input_tokens)
            .is_some_and(|i| key.bucket > i as i64)
    });
    match passed {
        Some(t) => (&t.rates, true, false),
        None => (&price.rates, false, false),
    }
}
