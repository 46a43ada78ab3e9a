//! The billing core: ledger usage → priced invoice lines (SPEC 4 and 6).
//!
//! Every figure tally shows (invoices, and later the cost report, the
//! dashboard and estimates) comes from here. Policy:
//! - usage is summed in the database ([`crate::store::Store::usage_groups`]);
//!   this module never loads records one by one;
//! - money is `Decimal` throughout: unit prices are exact (rate per MTok ×
//!   modifiers ÷ 10⁶), each line keeps `amount_exact` and rounds `amount` to
//!   cents half away from zero, and the total is the sum of rounded lines;
//! - a model the price book does not know is *unpriced*: listed, never $0.

pub mod containers;
pub mod daily;
pub mod render;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{Datelike, Months, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use crate::pricing::{ModelPrice, PriceBook, PriceVersion, Rates};
use crate::record::Usage;
use crate::store::{Store, StoreError, UsageGroup, UsageQuery};
use crate::time::{Micros, to_micros};
use containers::{CONTAINER_LIFETIME_MICROS, ContainerBill, bill_containers};

/// A calendar month in UTC, written `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    first: NaiveDate,
}

impl Period {
    pub fn parse(s: &str) -> Result<Period, String> {
        NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
            .ok()
            .filter(|_| s.len() == 7)
            .map(|first| Period { first })
            .ok_or_else(|| format!("{s:?} is not a period: expected YYYY-MM, e.g. 2025-05"))
    }

    pub fn of_day(day: NaiveDate) -> Period {
        Period {
            first: day.with_day(1).unwrap_or(day),
        }
    }

    pub fn first_day(&self) -> NaiveDate {
        self.first
    }

    /// The first day of the next period.
    pub fn end_day(&self) -> NaiveDate {
        self.first
            .checked_add_months(Months::new(1))
            .unwrap_or(NaiveDate::MAX)
    }

    pub fn next(&self) -> Period {
        Period {
            first: self.end_day(),
        }
    }

    pub fn contains(&self, day: NaiveDate) -> bool {
        day >= self.first && day < self.end_day()
    }

    /// `[start, end)` in microseconds.
    pub fn bounds(&self) -> (Micros, Micros) {
        let at = |d: NaiveDate| to_micros(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
        (at(self.first), at(self.end_day()))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.first.year(), self.first.month())
    }
}

/// What a line charges for; the order is the order of lines within a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Charge {
    InputTokens,
    OutputTokens,
    #[serde(rename = "cache_write_5m_tokens")]
    CacheWrite5mTokens,
    #[serde(rename = "cache_write_1h_tokens")]
    CacheWrite1hTokens,
    CacheReadTokens,
    WebSearchRequests,
    ContainerHours,
    ContainerFreeHours,
    Adjustment,
}

impl Charge {
    pub fn as_str(self) -> &'static str {
        match self {
            Charge::InputTokens => "input_tokens",
            Charge::OutputTokens => "output_tokens",
            Charge::CacheWrite5mTokens => "cache_write_5m_tokens",
            Charge::CacheWrite1hTokens => "cache_write_1h_tokens",
            Charge::CacheReadTokens => "cache_read_tokens",
            Charge::WebSearchRequests => "web_search_requests",
            Charge::ContainerHours => "container_hours",
            Charge::ContainerFreeHours => "container_free_hours",
            Charge::Adjustment => "adjustment",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Charge::InputTokens => "input tokens",
            Charge::OutputTokens => "output tokens",
            Charge::CacheWrite5mTokens => "5-minute cache write tokens",
            Charge::CacheWrite1hTokens => "1-hour cache write tokens",
            Charge::CacheReadTokens => "cache read tokens",
            Charge::WebSearchRequests => "web search requests",
            Charge::ContainerHours => "code execution container hours",
            Charge::ContainerFreeHours => "code execution free container hours",
            Charge::Adjustment => "adjustment",
        }
    }

    pub fn category(self) -> Category {
        match self {
            Charge::WebSearchRequests => Category::WebSearch,
            Charge::ContainerHours | Charge::ContainerFreeHours => Category::CodeExecution,
            Charge::Adjustment => Category::Adjustment,
            _ => Category::Tokens,
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Charge::WebSearchRequests => "request",
            Charge::ContainerHours | Charge::ContainerFreeHours => "hour",
            Charge::Adjustment => "usd",
            _ => "token",
        }
    }
}

/// Invoice sections, in the order lines are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Tokens,
    WebSearch,
    CodeExecution,
    Adjustment,
}

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
    pub unit_price: Decimal,
}

impl LineKey {
    fn description(&self) -> String {
        let mut d = match &self.model {
            Some(m) => format!("{m} {}", self.charge.words()),
            None => self.charge.words().to_owned(),
        };
        for (on, label) in [
            (self.batch, " (batch)"),
            (self.long_context, " (long context)"),
            (self.us_inference, " (US-only inference)"),
            (self.fast, " (fast mode)"),
        ] {
            if on {
                d.push_str(label);
            }
        }
        d
    }
}

/// One invoice line, as rendered.
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
}

/// Round to cents, half away from zero (SPEC 4.3).
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

/// Lines being collected, keyed so that equal charges add up.
#[derive(Debug, Default)]
pub struct LineBook {
    lines: BTreeMap<LineKey, Decimal>,
    unpriced: BTreeMap<String, Unpriced>,
}

impl LineBook {
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

    /// Price one group of summed token usage (SPEC 4.1).
    pub fn add_tokens(
        &mut self,
        book: &PriceBook,
        thresholds: &[i64],
        g: &UsageGroup,
        count_records: bool,
    ) {
        let u = &g.usage;
        let quantities = TokenQuantities {
            input: Decimal::from(u.input_tokens),
            output: Decimal::from(u.output_tokens),
            cache_write_5m: Decimal::from(u.cache_write_5m_tokens),
            cache_write_1h: Decimal::from(u.cache_write_1h_tokens),
            cache_read: Decimal::from(u.cache_read_tokens),
            web_searches: Decimal::from(u.web_search_requests),
        };
        self.add_token_quantities(book, thresholds, g, &quantities, count_records);
    }

    /// Price token quantities with the traits of `g` (model, day, batch,
    /// fast, US-only, size bucket); `g.usage` is only reported when the
    /// model has no price. Estimates pass exact fractional quantities here.
    pub fn add_token_quantities(
        &mut self,
        book: &PriceBook,
        thresholds: &[i64],
        g: &UsageGroup,
        q: &TokenQuantities,
        count_records: bool,
    ) {
        let model = g.model.as_deref().unwrap_or("(no model)");
        let day = NaiveDate::from_num_days_from_ce_opt(719_163 + i32::try_from(g.day).unwrap_or(0));
        let version = day.and_then(|d| book.version_at(d));
        let records = if count_records { g.records } else { 0 };
        let Some(version) = version else {
            self.add_unpriced(model, records, &g.usage);
            return;
        };
        // Web searches do not depend on the model, and are never batch-discounted.
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
            },
            q.web_searches,
        );
        let Some(price) = version.model(model) else {
            let tokens_only = Usage {
                web_search_requests: 0,
                ..g.usage.clone()
            };
            self.add_unpriced(model, records, &tokens_only);
            return;
        };
        let (rates, long_context, fast) = pick_rates(price, thresholds, g);
        let mut factor = Decimal::ONE;
        let us = g.us && price.us_multiplier.is_some();
        if let (true, Some(m)) = (g.us, price.us_multiplier) {
            factor *= m;
        }
        if g.batch {
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
            self.add(
                LineKey {
                    category: Category::Tokens,
                    model: Some(price.id.clone()),
                    charge,
                    batch: g.batch,
                    long_context,
                    us_inference: us,
                    fast,
                    price_version: version.label(),
                    unit_price: (rate * factor / MTOK).normalize(),
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
        let parts = bill
            .containers
            .iter()
            .filter(|c| keep(&c.account))
            .map(|c| {
                (
                    Charge::ContainerHours,
                    c.price_version.as_str(),
                    c.hour_price,
                    c.billed_seconds,
                )
            })
            .chain(bill.credits.iter().filter(|f| keep(&f.account)).map(|f| {
                (
                    Charge::ContainerFreeHours,
                    f.price_version.as_str(),
                    f.hour_price,
                    -f.seconds,
                )
            }));
        // Summed per (charge, version, price) first: a period may hold
        // hundreds of thousands of containers but only a few lines.
        let mut sums: BTreeMap<(Charge, &str, Decimal), i64> = BTreeMap::new();
        for (charge, price_version, unit_price, seconds) in parts {
            *sums.entry((charge, price_version, unit_price)).or_default() += seconds;
        }
        for ((charge, price_version, unit_price), seconds) in sums {
            self.add_container_seconds(charge, price_version, unit_price, seconds);
        }
    }

    /// Whole seconds of container time (or free credit, negative) on the
    /// code-execution line of that charge, version and hour price.
    fn add_container_seconds(
        &mut self,
        charge: Charge,
        price_version: &str,
        unit_price: Decimal,
        seconds: i64,
    ) {
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
            },
            Decimal::from(seconds),
        );
    }

    pub fn finish(self) -> (Vec<Line>, Vec<Unpriced>) {
        let lines = self
            .lines
            .into_iter()
            .map(|(key, quantity)| line_of(key, quantity))
            .collect();
        (lines, self.unpriced.into_values().collect())
    }
}

/// The rendered line of a key and its summed quantity. Container lines hold
/// whole seconds until here: quantity = s / 3600 hours and amount =
/// s × price / 3600 (SPEC 4.2).
fn line_of(key: LineKey, quantity: Decimal) -> Line {
    let (quantity, amount_exact) = match key.charge {
        Charge::ContainerHours | Charge::ContainerFreeHours => (
            quantity / HOUR_SECONDS,
            quantity * key.unit_price / HOUR_SECONDS,
        ),
        _ => (quantity, quantity * key.unit_price),
    };
    Line {
        description: key.description(),
        charge: key.charge,
        batch: key.batch,
        long_context: key.long_context,
        quantity: quantity.normalize(),
        unit: key.charge.unit(),
        unit_price: key.unit_price.normalize(),
        price_version: key.price_version,
        amount_exact: amount_exact.normalize(),
        amount: cents(amount_exact),
        model: key.model,
    }
}

/// The rate set for a group: fast-mode prices when the response ran fast and
/// the model has them; else the highest prompt-size tier the total input
/// passed; else the base rates. Returns (rates, long_context, fast).
fn pick_rates<'a>(
    price: &'a ModelPrice,
    thresholds: &[i64],
    g: &UsageGroup,
) -> (&'a Rates, bool, bool) {
    if g.fast
        && let Some(fast) = &price.fast
    {
        return (fast, false, true);
    }
    let passed = price.tiers.iter().rev().find(|t| {
        thresholds
            .iter()
            .position(|&x| x == t.above_input_tokens)
            .is_some_and(|i| g.bucket > i as i64)
    });
    match passed {
        Some(t) => (&t.rates, true, false),
        None => (&price.rates, false, false),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

/// The price book in force: the newest imported one, else the shipped one.
pub async fn current_book(store: &dyn Store) -> Result<PriceBook, BillingError> {
    Ok(book_in_force(store).await?.1)
}

/// The price book in force with its id (0 = the shipped one).
pub async fn book_in_force(store: &dyn Store) -> Result<(i64, PriceBook), BillingError> {
    match store.price_book().await? {
        Some(stored) => PriceBook::parse(&stored.toml)
            .map(|book| (stored.id, book))
            .map_err(|e| {
                BillingError::Invalid(format!(
                    "imported price book #{} ({}) no longer parses: {e}",
                    stored.id, stored.name
                ))
            }),
        None => Ok((0, PriceBook::shipped())),
    }
}

/// The invoice of `account` for `period`: the frozen one when finalized,
/// else a draft from the ledger as it is now (with adjustments for late
/// records of earlier finalized periods).
pub async fn invoice(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
) -> Result<Rendered, BillingError> {
    if let Some(f) = store
        .finalized_invoice(account, &period.to_string())
        .await?
    {
        return Ok(Rendered {
            json: f.json,
            csv: f.csv,
            invoice: None,
            number: Some(f.number),
        });
    }
    let draft = draft_invoice(store, book, account, period).await?;
    Ok(Rendered {
        json: render::json(&draft),
        csv: render::csv(&draft),
        number: None,
        invoice: Some(draft),
    })
}

/// An invoice as served: the exact bytes of both formats.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub json: String,
    pub csv: String,
    pub number: Option<String>,
    /// The structured draft (absent for a finalized invoice, whose bytes are the truth).
    pub invoice: Option<Invoice>,
}

/// The draft invoice of `account` for `period`, from the ledger as it is now.
pub async fn draft_invoice(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
) -> Result<Invoice, BillingError> {
    let max_seq = store.max_seq().await?;
    draft_as_of(store, book, account, period, Ledger::Now(max_seq)).await
}

/// The draft from the given state of the ledger, adjustments included.
pub async fn draft_as_of(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
    ledger: Ledger,
) -> Result<Invoice, BillingError> {
    let mut invoice = charges(store, book, account, period, ledger).await?;
    let adjustments = adjustments_for(store, book, account, period, ledger.seq()).await?;
    if !adjustments.is_empty() {
        invoice.lines.extend(adjustments);
        invoice.total = cents(invoice.lines.iter().map(|l| l.amount).sum());
    }
    Ok(invoice)
}

/// Draft invoices of every account with usage (or containers) in `period`,
/// sorted by account. Usage is read in one pass for all accounts.
pub async fn draft_invoices(
    store: &dyn Store,
    book: &PriceBook,
    period: Period,
) -> Result<Vec<Invoice>, BillingError> {
    let max_seq = store.max_seq().await?;
    let data = PeriodData::load(store, book, period, max_seq, None, true).await?;
    let accounts = data.accounts(store, period).await?;
    let mut invoices = Vec::with_capacity(accounts.len());
    for account in accounts {
        let mut invoice = data.charges(book, &account, period);
        let adjustments = adjustments_for(store, book, &account, period, max_seq).await?;
        if adjustments.is_empty() && !data.has_usage(&account) {
            continue;
        }
        if !adjustments.is_empty() {
            invoice.lines.extend(adjustments);
            invoice.total = cents(invoice.lines.iter().map(|l| l.amount).sum());
        }
        invoices.push(invoice);
    }
    Ok(invoices)
}

/// Every account's invoice for a period, as served: finalized invoices as
/// frozen, the others as drafts (computed in one pass), sorted by account.
pub async fn period_invoices(
    store: &dyn Store,
    book: &PriceBook,
    period: Period,
) -> Result<Vec<Rendered>, BillingError> {
    let mut out = Vec::new();
    for draft in draft_invoices(store, book, period).await? {
        out.push(
            match store
                .finalized_invoice(&draft.account, &period.to_string())
                .await?
            {
                Some(f) => Rendered {
                    json: f.json,
                    csv: f.csv,
                    number: Some(f.number),
                    invoice: None,
                },
                None => Rendered {
                    json: render::json(&draft),
                    csv: render::csv(&draft),
                    number: None,
                    invoice: Some(draft),
                },
            },
        );
    }
    Ok(out)
}

/// Invoices' CSV documents joined into one (the header once).
pub fn joined_csv<'a>(documents: impl IntoIterator<Item = &'a Rendered>) -> String {
    let mut out = render::csv_document(std::iter::empty());
    for r in documents {
        if let Some((_, rows)) = r.csv.split_once("\r\n") {
            out.push_str(rows);
        }
    }
    out
}

/// Every account's invoice for a period as one CSV document.
pub async fn period_csv(
    store: &dyn Store,
    book: &PriceBook,
    period: Period,
) -> Result<String, BillingError> {
    Ok(joined_csv(&period_invoices(store, book, period).await?))
}

/// Which state of the ledger to bill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ledger {
    /// As it is now (`seq` is the newest record when the computation began;
    /// roll-ups may include a few records committed since).
    Now(i64),
    /// Exactly the records with `seq <=` this: what a finalized invoice saw.
    AsOf(i64),
}

impl Ledger {
    fn seq(self) -> i64 {
        match self {
            Ledger::Now(s) | Ledger::AsOf(s) => s,
        }
    }
}

/// What one period's invoices are computed from: usage summed by the
/// database, record counts, and the org-wide container bill split per
/// account (so one account's charges never scan every container).
struct PeriodData {
    usage: BTreeMap<String, Vec<UsageGroup>>,
    iterations: BTreeMap<String, Vec<UsageGroup>>,
    counts: BTreeMap<String, i64>,
    bills: BTreeMap<String, ContainerBill>,
    allowance: Vec<containers::AllowanceUse>,
}

impl PeriodData {
    async fn load(
        store: &dyn Store,
        book: &PriceBook,
        period: Period,
        max_seq: i64,
        account: Option<&str>,
        use_rollup: bool,
    ) -> Result<PeriodData, BillingError> {
        let (from, to) = period.bounds();
        let query = UsageQuery {
            account: account.map(str::to_owned),
            from,
            to,
            max_seq,
            thresholds: book.thresholds(),
            use_rollup,
        };
        let by_account = |groups: Vec<UsageGroup>| {
            let mut map: BTreeMap<String, Vec<UsageGroup>> = BTreeMap::new();
            for g in groups {
                map.entry(g.account.clone()).or_default().push(g);
            }
            map
        };
        let mut bill = container_bill(store, book, period, max_seq, use_rollup).await?;
        let allowance = std::mem::take(&mut bill.allowance);
        Ok(PeriodData {
            bills: bill.by_account(),
            allowance,
            usage: by_account(store.usage_groups(&query).await?),
            iterations: by_account(store.iteration_groups(&query).await?),
            counts: store
                .record_counts(account, from, to, max_seq, use_rollup)
                .await?
                .into_iter()
                .collect(),
        })
    }

    /// Accounts that may have an invoice in the period: those with usage or
    /// containers in it, and those with an earlier finalized invoice (late
    /// usage of it is billed here as an adjustment, even without usage now).
    async fn accounts(
        &self,
        store: &dyn Store,
        period: Period,
    ) -> Result<Vec<String>, BillingError> {
        let mut accounts: Vec<String> = self.counts.keys().cloned().collect();
        accounts.extend(self.bills.keys().cloned());
        accounts.extend(store.finalized_accounts_before(&period.to_string()).await?);
        accounts.sort();
        accounts.dedup();
        Ok(accounts)
    }

    /// Whether the account has records or containers in the period.
    fn has_usage(&self, account: &str) -> bool {
        self.counts.contains_key(account) || self.bills.contains_key(account)
    }

    fn charges(&self, book: &PriceBook, account: &str, period: Period) -> Invoice {
        let thresholds = book.thresholds();
        let mut lines = LineBook::default();
        for g in self.usage.get(account).into_iter().flatten() {
            lines.add_tokens(book, &thresholds, g, true);
        }
        for g in self.iterations.get(account).into_iter().flatten() {
            lines.add_tokens(book, &thresholds, g, false);
        }
        let bill = self.bills.get(account);
        if let Some(bill) = bill {
            lines.add_containers_where(bill, |_| true);
        }
        let records = self.counts.get(account).copied().unwrap_or(0);
        let containers = bill.map_or(0, ContainerBill::container_count);
        assemble(account, period, lines, records, containers)
    }
}

/// The charges of one account in one period. `Ledger::AsOf` reads the
/// records up to a sequence number (for finalizing and adjustments);
/// `Ledger::Now` may read the roll-up.
async fn charges(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
    ledger: Ledger,
) -> Result<Invoice, BillingError> {
    let (max_seq, use_rollup) = match ledger {
        Ledger::Now(seq) => (seq, true),
        Ledger::AsOf(seq) => (seq, false),
    };
    let data = PeriodData::load(store, book, period, max_seq, Some(account), use_rollup).await?;
    Ok(data.charges(book, account, period))
}

/// Container charges of every account in a period (the free allowance is
/// shared org-wide). With `use_rollup`, from the container roll-up (the
/// ledger as it is now; see `store::containers`), else from the records up
/// to `max_seq`.
pub async fn container_bill(
    store: &dyn Store,
    book: &PriceBook,
    period: Period,
    max_seq: i64,
    use_rollup: bool,
) -> Result<ContainerBill, BillingError> {
    let (from, to) = period.bounds();
    if use_rollup {
        let day = crate::time::day_number;
        let days = store.container_days(day(from), day(to)).await?;
        let inexact = store
            .inexact_container_records(from - CONTAINER_LIFETIME_MICROS, to)
            .await?;
        if let Some(bill) = containers::bill_from_rollup(book, &days, &inexact, &period) {
            return Ok(bill);
        }
    }
    let records = store
        .container_records(
            from - CONTAINER_LIFETIME_MICROS,
            to + CONTAINER_LIFETIME_MICROS,
            max_seq,
        )
        .await?;
    Ok(bill_containers(book, &records, &period))
}

/// Adjustment lines on `period` for earlier finalized periods of the account
/// whose next open period this is: what the ledger up to `max_seq` bills for
/// them, minus what was already billed (as of the last finalization that
/// covered them).
async fn adjustments_for(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
    max_seq: i64,
) -> Result<Vec<Line>, BillingError> {
    let finalized: Vec<(Period, i64)> = store
        .finalized_periods(account)
        .await?
        .into_iter()
        .filter_map(|(p, cutoff)| Period::parse(&p).ok().map(|p| (p, cutoff)))
        .collect();
    let is_final = |p: Period| finalized.iter().any(|(f, _)| *f == p);
    if is_final(period) {
        return Ok(Vec::new());
    }
    let mut lines = Vec::new();
    for &(late, _) in finalized.iter().filter(|(p, _)| *p < period) {
        // This period must be the first open one after `late`.
        let mut next = late.next();
        while next < period && is_final(next) {
            next = next.next();
        }
        if next != period {
            continue;
        }
        // Billed so far for `late`: up to the newest cutoff among the finalized
        // invoices from `late` up to (not including) this period.
        let billed_to = finalized
            .iter()
            .filter(|(p, _)| *p >= late && *p < period)
            .map(|(_, c)| *c)
            .max()
            .unwrap_or(0);
        if billed_to >= max_seq {
            continue;
        }
        // Nothing recorded for that period (or for containers reaching into
        // the next month) since: no adjustment, and no need to read records.
        let (from, to) = late.bounds();
        let first_day = crate::time::day_number(from);
        let end_day = crate::time::day_number(to + containers::CONTAINER_LIFETIME_MICROS);
        if store.newest_seq_in_days(first_day, end_day).await? <= billed_to {
            continue;
        }
        let before = charges_total(store, book, account, late, billed_to).await?;
        let now = charges_total(store, book, account, late, max_seq).await?;
        let (exact, amount) = (now.0 - before.0, now.1 - before.1);
        if exact.is_zero() && amount.is_zero() {
            continue;
        }
        lines.push(Line {
            description: format!(
                "adjustment for {late}: usage recorded after its invoice was finalized"
            ),
            model: None,
            charge: Charge::Adjustment,
            batch: false,
            long_context: false,
            quantity: Decimal::ONE,
            unit: Charge::Adjustment.unit(),
            unit_price: amount,
            price_version: late.to_string(),
            amount_exact: exact.normalize(),
            amount,
        });
    }
    Ok(lines)
}

/// (exact, rounded) total of one account's charges in a period as of `max_seq`.
async fn charges_total(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
    max_seq: i64,
) -> Result<(Decimal, Decimal), BillingError> {
    let inv = charges(store, book, account, period, Ledger::AsOf(max_seq)).await?;
    Ok((inv.lines.iter().map(|l| l.amount_exact).sum(), inv.total))
}

/// Why an invoice could not be finalized.
#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    #[error(
        "the invoice has unpriced usage ({0}); add prices first, or finalize with --allow-unpriced"
    )]
    Unpriced(String),
    #[error(transparent)]
    Billing(#[from] BillingError),
}

/// Freeze the invoice of `account` for `period` (idempotent: a finalized
/// invoice is returned as it was frozen).
pub async fn finalize(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
    allow_unpriced: bool,
) -> Result<crate::store::FinalizedInvoice, FinalizeError> {
    let label = period.to_string();
    if let Some(f) = store
        .finalized_invoice(account, &label)
        .await
        .map_err(BillingError::from)?
    {
        return Ok(f);
    }
    let cutoff = store.cutoff_seq().await.map_err(BillingError::from)?;
    let draft = draft_as_of(store, book, account, period, Ledger::AsOf(cutoff)).await?;
    if !draft.unpriced.is_empty() && !allow_unpriced {
        let models: Vec<&str> = draft.unpriced.iter().map(|u| u.model.as_str()).collect();
        return Err(FinalizeError::Unpriced(models.join(", ")));
    }
    let render = move |number: &str| {
        let mut frozen = draft.clone();
        frozen.number = Some(number.to_owned());
        frozen.status = "finalized";
        (render::json(&frozen), render::csv(&frozen))
    };
    Ok(store
        .finalize(account, &label, cutoff, &render)
        .await
        .map_err(BillingError::from)?)
}

pub(crate) fn assemble(
    account: &str,
    period: Period,
    book: LineBook,
    records: i64,
    containers: i64,
) -> Invoice {
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
    }
}

/// The version a date is priced with, for `tally prices`.
pub fn version_for(book: &PriceBook, day: NaiveDate) -> Option<&PriceVersion> {
    book.version_at(day)
}
