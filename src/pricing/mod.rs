//! The price book: versioned prices and billing policies (docs/billing.md).
//!
//! Policy:
//! - every amount is a `Decimal` read from a TOML *string* (a TOML float would
//!   already have lost exactness, so it is refused);
//! - each version is complete in itself; the version in force on a UTC date
//!   is the latest whose `effective_from` is on or before it;
//! - models match by exact id first, then by alias (never by prefix:
//!   `claude-opus-5` is a prefix of `claude-opus-5-5`);
//! - a file that breaks a rule is refused whole, with the line and the reason.

use std::collections::HashMap;
use std::fmt;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use toml::Spanned;

pub mod import;
mod in_force;
pub use in_force::{StoredBookError, book_in_force, current_book};

/// The book shipped with tally (`fixtures/prices.toml`), used until another is imported.
pub const SHIPPED: &str = include_str!("../../fixtures/prices.toml");

/// USD per million tokens for the five token classes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    #[serde(with = "exact_str")]
    pub input: Decimal,
    #[serde(with = "exact_str")]
    pub output: Decimal,
    #[serde(with = "exact_str")]
    pub cache_write_5m: Decimal,
    #[serde(with = "exact_str")]
    pub cache_write_1h: Decimal,
    #[serde(with = "exact_str")]
    pub cache_read: Decimal,
}

impl Rates {
    fn all(&self) -> [Decimal; 5] {
        [
            self.input,
            self.output,
            self.cache_write_5m,
            self.cache_write_1h,
            self.cache_read,
        ]
    }
}

/// A prompt-size tier: above `above_input_tokens` total input, these rates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tier {
    pub above_input_tokens: i64,
    #[serde(flatten)]
    pub rates: Rates,
}

/// The five rates as they stand in a model or tier table (flattening is not
/// used so that unknown keys are still refused).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TierFile {
    above_input_tokens: i64,
    #[serde(deserialize_with = "exact")]
    input: Decimal,
    #[serde(deserialize_with = "exact")]
    output: Decimal,
    #[serde(deserialize_with = "exact")]
    cache_write_5m: Decimal,
    #[serde(deserialize_with = "exact")]
    cache_write_1h: Decimal,
    #[serde(deserialize_with = "exact")]
    cache_read: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelPrice {
    pub id: String,
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(flatten)]
    pub rates: Rates,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<Tier>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::str_option"
    )]
    pub us_multiplier: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fast: Option<Rates>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllowancePeriod {
    Day,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllowanceScope {
    Organization,
    Account,
}

/// Whether a refusal before any output is charged (docs/billing.md). A refusal
/// with partial content is always charged like any response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum RefusalPolicy {
    /// Charged like any response (Anthropic until 2026-06-01).
    Charged,
    /// Not charged, except refusals whose `stop_details.category` is one of
    /// `billed_categories` (none from 2026-06-02; `bio`, `frontier_llm` and
    /// `reasoning_extraction` from 2026-09-24).
    FreeBeforeOutput { billed_categories: Vec<String> },
}

impl RefusalPolicy {
    /// Whether this refusal before output is charged.
    pub fn charges(&self, refusal: &crate::record::Refusal) -> bool {
        match self {
            RefusalPolicy::Charged => true,
            RefusalPolicy::FreeBeforeOutput { billed_categories } => refusal
                .category()
                .is_some_and(|c| billed_categories.iter().any(|b| b == c)),
        }
    }

    /// The policy in words, as `tally prices` shows it.
    pub fn describe(&self) -> String {
        match self {
            RefusalPolicy::Charged => "refusals are charged like any response".to_owned(),
            RefusalPolicy::FreeBeforeOutput { billed_categories }
                if billed_categories.is_empty() =>
            {
                "a refusal before any output is not charged".to_owned()
            }
            RefusalPolicy::FreeBeforeOutput { billed_categories } => format!(
                "a refusal before any output is not charged, except in the categories {}",
                billed_categories.join(", ")
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RefusalPolicyName {
    Charged,
    FreeBeforeOutput,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PriceVersion {
    pub effective_from: NaiveDate,
    pub summary: Option<String>,
    pub source: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub batch_discount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub web_search_per_request: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub container_hour: Decimal,
    pub container_minimum_seconds: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub free_container_hours: Decimal,
    pub free_allowance_period: AllowancePeriod,
    pub free_allowance_scope: AllowanceScope,
    pub web_tools_make_code_execution_free: bool,
    pub refusal_policy: RefusalPolicy,
    pub models: Vec<ModelPrice>,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

impl PriceVersion {
    /// The model's prices: exact id first, then aliases.
    pub fn model(&self, id: &str) -> Option<&ModelPrice> {
        self.index.get(id).and_then(|&i| self.models.get(i))
    }

    /// `effective_from` as the invoices print it.
    pub fn label(&self) -> String {
        // Display is `%Y-%m-%d`, without parsing a format string per call.
        self.effective_from.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceBook {
    versions: Vec<PriceVersion>,
}

/// Why a file of dated versions (a price book, a plan) was refused, and
/// at which line when one is to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub line: Option<usize>,
    pub message: String,
}

/// Why a price book was refused.
pub type BookError = FileError;

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for BookError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BookFile {
    version: Vec<Spanned<VersionFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionFile {
    effective_from: String,
    summary: Option<String>,
    source: String,
    #[serde(deserialize_with = "exact")]
    batch_discount: Decimal,
    #[serde(deserialize_with = "exact")]
    web_search_per_request: Decimal,
    #[serde(deserialize_with = "exact")]
    container_hour: Decimal,
    container_minimum_seconds: i64,
    #[serde(deserialize_with = "exact")]
    free_container_hours: Decimal,
    free_allowance_period: AllowancePeriod,
    free_allowance_scope: AllowanceScope,
    web_tools_make_code_execution_free: bool,
    /// Absent: `charged` (books written before refusal policies existed).
    refusal_policy: Option<RefusalPolicyName>,
    #[serde(default)]
    refusal_billed_categories: Vec<String>,
    #[serde(default)]
    model: Vec<Spanned<ModelFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    id: String,
    #[serde(default)]
    aliases: Vec<String>,
    note: Option<String>,
    #[serde(deserialize_with = "exact")]
    input: Decimal,
    #[serde(deserialize_with = "exact")]
    output: Decimal,
    #[serde(deserialize_with = "exact")]
    cache_write_5m: Decimal,
    #[serde(deserialize_with = "exact")]
    cache_write_1h: Decimal,
    #[serde(deserialize_with = "exact")]
    cache_read: Decimal,
    #[serde(default)]
    tiers: Vec<TierFile>,
    #[serde(default, deserialize_with = "exact_option")]
    us_multiplier: Option<Decimal>,
    fast: Option<Rates>,
}

/// A price must be a TOML string holding a decimal: a TOML float has already
/// lost exactness by the time it reaches us, so it is refused.
fn exact<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    use serde::de::Error;
    let text = String::deserialize(d).map_err(|e| {
        D::Error::custom(format!(
            "{e}: write amounts as strings, e.g. \"3.75\", so they stay exact"
        ))
    })?;
    Decimal::from_str_exact(text.trim())
        .map_err(|e| D::Error::custom(format!("{text:?} is not a decimal number ({e})")))
}

/// An exact amount both ways: read as [`exact`], written as a string.
mod exact_str {
    pub use rust_decimal::serde::str::serialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<rust_decimal::Decimal, D::Error> {
        super::exact(d)
    }
}

pub(crate) fn exact_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Decimal>, D::Error> {
    exact(d).map(Some)
}

/// A TOML file (a price book, a plan) read into `T`; a syntax or shape
/// error with its line.
pub(crate) fn read_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, BookError> {
    toml::from_str(text).map_err(|e| BookError {
        line: e.span().map(|s| line_of(text, s.start)),
        message: e.message().trim().to_owned(),
    })
}

/// A version's `effective_from` (`YYYY-MM-DD`), which must come after the
/// previous version's.
pub(crate) fn effective_from(text: &str, previous: Option<NaiveDate>) -> Result<NaiveDate, String> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("effective_from {text:?} is not a date (YYYY-MM-DD)"))?;
    match previous {
        Some(prev) if prev >= date => Err(format!(
            "versions must be in increasing effective_from order: {date} follows {prev}"
        )),
        _ => Ok(date),
    }
}

/// The `[[version]]` tables of a file (a price book, a plan) in order: each
/// one's `effective_from` must come after the previous one's, then `read`
/// checks and builds the rest of it. An error of `read` without a line is
/// the version's, and gets the version's line.
pub(crate) fn dated_versions<V: Dated, T>(
    text: &str,
    what: &str,
    versions: Vec<toml::Spanned<V>>,
    mut read: impl FnMut(V, NaiveDate) -> Result<T, FileError>,
) -> Result<Vec<T>, FileError> {
    if versions.is_empty() {
        return Err(FileError {
            line: None,
            message: format!("the {what} has no [[version]]"),
        });
    }
    let mut read_versions = Vec::with_capacity(versions.len());
    let mut previous = None;
    for spanned in versions {
        let line = line_of(text, spanned.span().start);
        let v = spanned.into_inner();
        let at_version = |e: FileError| FileError {
            line: e.line.or(Some(line)),
            message: e.message,
        };
        let date = effective_from(v.effective_from(), previous).map_err(|message| {
            at_version(FileError {
                line: None,
                message,
            })
        })?;
        previous = Some(date);
        read_versions.push(read(v, date).map_err(at_version)?);
    }
    Ok(read_versions)
}

/// A `[[version]]` table as written: it starts on its `effective_from`.
pub(crate) trait Dated {
    fn effective_from(&self) -> &str;
}

impl Dated for VersionFile {
    fn effective_from(&self) -> &str {
        &self.effective_from
    }
}

/// A version's own error (its line is filled in by [`dated_versions`]).
pub(crate) fn version_error(message: String) -> FileError {
    FileError {
        line: None,
        message,
    }
}

/// The 1-based line of a byte offset in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |head| head.bytes().filter(|&b| b == b'\n').count() + 1)
}

impl PriceBook {
    /// The shipped book. It is checked by the test suite, so failing here is a build defect.
    pub fn shipped() -> PriceBook {
        PriceBook::parse(SHIPPED).unwrap_or_else(|e| panic!("fixtures/prices.toml is invalid: {e}"))
    }

    pub fn versions(&self) -> &[PriceVersion] {
        &self.versions
    }

    /// A book holding only the version in force on `date`, in force on
    /// every day (estimates price a whole projection at one date; a monthly
    /// allowance looked up on the 1st finds it too). Its lines carry the
    /// earliest date as version label: callers report the original label.
    pub fn pinned_at(&self, date: NaiveDate) -> Option<PriceBook> {
        self.version_at(date).map(|v| PriceBook {
            versions: vec![PriceVersion {
                effective_from: NaiveDate::MIN,
                ..v.clone()
            }],
        })
    }

    /// The same book with every version's free container-hours set to
    /// `hours` (estimates prorate a monthly allowance over part of a month).
    pub fn with_free_container_hours(&self, hours: Decimal) -> PriceBook {
        let mut book = self.clone();
        for v in &mut book.versions {
            v.free_container_hours = hours;
        }
        book
    }

    /// The version in force on `date`, if any.
    pub fn version_at(&self, date: NaiveDate) -> Option<&PriceVersion> {
        let i = self.versions.partition_point(|v| v.effective_from <= date);
        i.checked_sub(1).and_then(|i| self.versions.get(i))
    }

    /// Every tier threshold in the book, ascending and unique (the SQL
    /// aggregation buckets records by how many of them they exceed).
    pub fn thresholds(&self) -> Vec<i64> {
        let mut t: Vec<i64> = self
            .versions
            .iter()
            .flat_map(|v| v.models.iter())
            .flat_map(|m| m.tiers.iter().map(|t| t.above_input_tokens))
            .collect();
        t.sort_unstable();
        t.dedup();
        t
    }

    pub fn parse(text: &str) -> Result<PriceBook, BookError> {
        let file: BookFile = read_toml(text)?;
        let versions = dated_versions(text, "book", file.version, |v, effective_from| {
            let err = version_error;
            if v.batch_discount < Decimal::ZERO || v.batch_discount > Decimal::ONE {
                return Err(err("batch_discount must be between 0 and 1".into()));
            }
            for (name, value) in [
                ("web_search_per_request", v.web_search_per_request),
                ("container_hour", v.container_hour),
                ("free_container_hours", v.free_container_hours),
            ] {
                if value < Decimal::ZERO {
                    return Err(err(format!("{name} must not be negative")));
                }
            }
            if v.container_minimum_seconds < 0 {
                return Err(err("container_minimum_seconds must not be negative".into()));
            }
            let refusal_policy = match v.refusal_policy {
                None | Some(RefusalPolicyName::Charged)
                    if !v.refusal_billed_categories.is_empty() =>
                {
                    return Err(err(
                        "refusal_billed_categories needs refusal_policy = \"free_before_output\""
                            .into(),
                    ));
                }
                None | Some(RefusalPolicyName::Charged) => RefusalPolicy::Charged,
                Some(RefusalPolicyName::FreeBeforeOutput) => {
                    if let Some(bad) = v
                        .refusal_billed_categories
                        .iter()
                        .find(|c| c.is_empty() || c.contains(char::is_whitespace))
                    {
                        return Err(err(format!(
                            "refusal_billed_categories: {bad:?} is not a category (a stop_details.category value such as \"bio\")"
                        )));
                    }
                    RefusalPolicy::FreeBeforeOutput {
                        billed_categories: v.refusal_billed_categories,
                    }
                }
            };
            let mut models = Vec::with_capacity(v.model.len());
            let mut index = HashMap::new();
            for spanned in v.model {
                let mline = line_of(text, spanned.span().start);
                let m = spanned.into_inner();
                let rates = Rates {
                    input: m.input,
                    output: m.output,
                    cache_write_5m: m.cache_write_5m,
                    cache_write_1h: m.cache_write_1h,
                    cache_read: m.cache_read,
                };
                let tiers: Vec<Tier> = m
                    .tiers
                    .iter()
                    .map(|t| Tier {
                        above_input_tokens: t.above_input_tokens,
                        rates: Rates {
                            input: t.input,
                            output: t.output,
                            cache_write_5m: t.cache_write_5m,
                            cache_write_1h: t.cache_write_1h,
                            cache_read: t.cache_read,
                        },
                    })
                    .collect();
                let merr = |message: String| BookError {
                    line: Some(mline),
                    message: format!("model {:?}: {message}", m.id),
                };
                let mut rate_sets = vec![&rates];
                rate_sets.extend(m.fast.iter());
                rate_sets.extend(tiers.iter().map(|t| &t.rates));
                if rate_sets
                    .iter()
                    .any(|r| r.all().iter().any(|x| *x < Decimal::ZERO))
                {
                    return Err(merr("rates must not be negative".into()));
                }
                if tiers.windows(2).any(|w| {
                    w.first().map(|a| a.above_input_tokens)
                        >= w.get(1).map(|b| b.above_input_tokens)
                }) || tiers.iter().any(|t| t.above_input_tokens <= 0)
                {
                    return Err(merr(
                        "tiers must have positive, increasing above_input_tokens".into(),
                    ));
                }
                if m.us_multiplier.is_some_and(|x| x <= Decimal::ZERO) {
                    return Err(merr("us_multiplier must be positive".into()));
                }
                for name in std::iter::once(&m.id).chain(m.aliases.iter()) {
                    if index.insert(name.clone(), models.len()).is_some() {
                        return Err(merr(format!("{name:?} is named twice in this version")));
                    }
                }
                models.push(ModelPrice {
                    id: m.id,
                    aliases: m.aliases,
                    note: m.note,
                    rates,
                    tiers,
                    us_multiplier: m.us_multiplier,
                    fast: m.fast,
                });
            }
            // Aliases must not shadow another model's exact id.
            for (i, m) in models.iter().enumerate() {
                if index.get(&m.id) != Some(&i) {
                    return Err(err(format!(
                        "model id {:?} is also another model's alias",
                        m.id
                    )));
                }
            }
            Ok(PriceVersion {
                effective_from,
                summary: v.summary,
                source: v.source,
                batch_discount: v.batch_discount,
                web_search_per_request: v.web_search_per_request,
                container_hour: v.container_hour,
                container_minimum_seconds: v.container_minimum_seconds,
                free_container_hours: v.free_container_hours,
                free_allowance_period: v.free_allowance_period,
                free_allowance_scope: v.free_allowance_scope,
                web_tools_make_code_execution_free: v.web_tools_make_code_execution_free,
                refusal_policy,
                models,
                index,
            })
        })?;
        Ok(PriceBook { versions })
    }
}
