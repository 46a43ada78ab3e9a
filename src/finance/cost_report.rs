//! `GET /v1/cost_report`: the shape of Anthropic's Admin API cost report
//! (daily buckets of results, amounts in cents as decimal strings), with
//! tally's own `account` grouping.
//!
//! Choices where Anthropic's contract is loose:
//! - results are always split by `cost_type`; `group_by[]=description` adds
//!   `token_type`, `description`, `model`, `service_tier`, `context_window`
//!   and `inference_geo`; `group_by[]=model` adds `model` alone;
//!   `group_by[]=account` adds `account`; `workspace_id`, `api_key_id`,
//!   `user` and `tag:KEY` split by the records' attribution (docs/input.md), each
//!   result then carrying `workspace_id`, `api_key_id`, `user` and
//!   `tags: {KEY: value}` (records without it under `null`); without
//!   `workspace_id`, `workspace_id` is `null` as Anthropic's unsplit report has it;
//! - amounts are the invoice lines' cents split across days (see
//!   [`crate::billing::daily`]), so a month of buckets sums to the invoices
//!   exactly; adjustment lines for late usage are not usage of any day and
//!   are left out;
//! - code execution is net of the free allowance, as Anthropic bills it;
//! - `limit` counts buckets (default 7, at most 31); `page` is the opaque
//!   `next_page` of the previous answer;
//! - `view=price` (the default) reports what accounts pay (their plans'
//!   prices; the cost for accounts without a plan), so the report adds up to
//!   the invoices; `view=cost` what the usage cost (Anthropic's prices) and
//!   `view=margin` price minus cost, each line's cents split by day alike.
//!   Only the admin may ask for cost or margin (the caller checks).

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::billing::daily::{Amount, DayCost};
use crate::billing::{Category, Charge};
use crate::record::{Dimension, MAX_DIMENSIONS};

/// A parsed, validated cost-report request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostReportQuery {
    pub first_day: NaiveDate,
    /// Exclusive.
    pub end_day: NaiveDate,
    pub group_by: Vec<GroupBy>,
    pub limit: u32,
    /// First bucket of this page.
    pub page_start: NaiveDate,
    pub view: CostView,
}

/// Which figure the report's amounts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CostView {
    /// What the accounts pay (their plans' prices).
    #[default]
    Price,
    /// What the usage cost (the price book's).
    Cost,
    /// Price minus cost.
    Margin,
}

impl CostView {
    pub fn parse(value: &str) -> Result<CostView, String> {
        match value {
            "price" => Ok(CostView::Price),
            "cost" => Ok(CostView::Cost),
            "margin" => Ok(CostView::Margin),
            other => Err(format!("view={other:?}: expected price, cost or margin")),
        }
    }

    /// This view's figure of one day's part of a line.
    pub fn of(self, day: &DayCost) -> Decimal {
        match self {
            CostView::Price => day.cents(Amount::Price),
            CostView::Cost => day.cents(Amount::Cost),
            CostView::Margin => day.cents(Amount::Price) - day.cents(Amount::Cost),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupBy {
    Account,
    Description,
    Model,
    /// A split by the records' attribution (workspace, API key, user, tag).
    Dimension(Dimension),
}

const DEFAULT_LIMIT: u32 = 7;
const MAX_LIMIT: u32 = 31;

fn parse_time(field: &str, value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("{field}={value:?} is not an RFC 3339 time (e.g. 2025-05-01T00:00:00Z): {e}")
        })
}

impl CostReportQuery {
    /// From the query string's pairs (`group_by[]` may repeat). `today` is
    /// the default end: buckets up to and including the current UTC day.
    pub fn parse(pairs: &[(String, String)], today: NaiveDate) -> Result<Self, String> {
        let mut starting_at = None;
        let mut ending_at = None;
        let mut group_by = Vec::new();
        let mut limit = DEFAULT_LIMIT;
        let mut page = None;
        let mut view = CostView::default();
        for (key, value) in pairs {
            match key.as_str() {
                "starting_at" => starting_at = Some(parse_time(key, value)?),
                "ending_at" => ending_at = Some(parse_time(key, value)?),
                "bucket_width" if value == "1d" => {}
                "bucket_width" => {
                    return Err(format!(
                        "bucket_width={value:?}: the cost report has daily buckets only (1d)"
                    ));
                }
                "group_by[]" | "group_by" => group_by.push(match value.as_str() {
                    "account" => GroupBy::Account,
                    "description" => GroupBy::Description,
                    "model" => GroupBy::Model,
                    "workspace_id" | "api_key_id" | "user" => {
                        GroupBy::Dimension(Dimension::parse(value)?)
                    }
                    other if other.starts_with("tag:") => GroupBy::Dimension(
                        Dimension::parse(other).map_err(|m| format!("group_by[]: {m}"))?,
                    ),
                    other => {
                        return Err(format!(
                            "group_by[]={other:?}: expected account, description, model, workspace_id, api_key_id, user or tag:KEY"
                        ));
                    }
                }),
                "limit" => {
                    limit = value
                        .parse()
                        .ok()
                        .filter(|l| (1..=MAX_LIMIT).contains(l))
                        .ok_or_else(|| {
                            format!("limit={value:?}: expected a number of daily buckets from 1 to {MAX_LIMIT}")
                        })?;
                }
                "page" => {
                    page = Some(
                        NaiveDate::parse_from_str(value, "%Y-%m-%d")
                            .map_err(|_| format!("page={value:?} is not a page token from next_page"))?,
                    );
                }
                "view" => view = CostView::parse(value)?,
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}: expected starting_at, ending_at, bucket_width, group_by[], limit, page or view"
                    ));
                }
            }
        }
        let starting_at =
            starting_at.ok_or("starting_at is required (RFC 3339, e.g. 2025-05-01T00:00:00Z)")?;
        let first_day = starting_at.date_naive();
        let end_day = match ending_at {
            // A bucket is included when it starts before ending_at.
            Some(t) => {
                let d = t.date_naive();
                if t.time() == chrono::NaiveTime::MIN {
                    d
                } else {
                    d + Days::new(1)
                }
            }
            None => today + Days::new(1),
        };
        if end_day <= first_day {
            return Err("ending_at must be after starting_at".into());
        }
        let page_start = page.unwrap_or(first_day);
        if page_start < first_day || page_start >= end_day {
            return Err(format!(
                "page={page_start} is outside starting_at..ending_at"
            ));
        }
        group_by.sort();
        group_by.dedup();
        let dims = group_by
            .iter()
            .filter(|g| matches!(g, GroupBy::Dimension(_)))
            .count();
        if dims > MAX_DIMENSIONS {
            return Err(format!(
                "group_by[]: at most {MAX_DIMENSIONS} of workspace_id, api_key_id, user and tag:KEY at once"
            ));
        }
        Ok(CostReportQuery {
            first_day,
            end_day,
            group_by,
            limit,
            page_start,
            view,
        })
    }

    /// Days of this page's buckets, and the next page's first day if any.
    pub fn page_days(&self) -> (Vec<NaiveDate>, Option<NaiveDate>) {
        let mut days = Vec::new();
        let mut day = self.page_start;
        while day < self.end_day && days.len() < self.limit as usize {
            days.push(day);
            day = day + Days::new(1);
        }
        (days, (day < self.end_day).then_some(day))
    }

    fn grouped(&self, g: GroupBy) -> bool {
        self.group_by.contains(&g)
    }

    /// The attribution dimensions to split by, in the order of each
    /// [`DayCost::values`] the report is built from.
    pub fn dimensions(&self) -> Vec<Dimension> {
        self.group_by
            .iter()
            .filter_map(|g| match g {
                GroupBy::Dimension(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct CostResult {
    /// Cents, as a decimal string.
    pub amount: String,
    pub currency: &'static str,
    pub cost_type: &'static str,
    pub token_type: Option<&'static str>,
    pub description: Option<String>,
    pub model: Option<String>,
    pub service_tier: Option<&'static str>,
    pub context_window: Option<&'static str>,
    pub inference_geo: Option<&'static str>,
    pub workspace_id: Option<String>,
    /// Present when grouped by it (its value or `null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<Option<String>>,
    /// The tag keys grouped by, each with its value or `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, Option<String>>>,
    pub account: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    pub starting_at: String,
    pub ending_at: String,
    pub results: Vec<CostResult>,
    /// tally's own: requests of the bucket that were refusals before any
    /// output and not charged (they are in no result's amount).
    pub unbilled_refusals: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    pub data: Vec<Bucket>,
    pub has_more: bool,
    pub next_page: Option<String>,
}

pub fn cost_type(charge: Charge) -> &'static str {
    match charge.category() {
        Category::Tokens => "tokens",
        Category::WebSearch => "web_search",
        Category::CodeExecution => "code_execution",
        Category::Adjustment => "adjustment",
        Category::Commitment => "minimum_commitment",
        Category::Credit => "credit",
        Category::Tax => "tax",
    }
}

/// A token charge's names: its `token_type`, and its kind in a
/// description ("Input Tokens"); none for other charges.
fn token_names(charge: Charge) -> Option<(&'static str, &'static str)> {
    Some(match charge {
        Charge::InputTokens => ("uncached_input_tokens", "Input Tokens"),
        Charge::OutputTokens => ("output_tokens", "Output Tokens"),
        Charge::CacheReadTokens => ("cache_read_input_tokens", "Cache Read"),
        Charge::CacheWrite5mTokens => (
            "cache_creation.ephemeral_5m_input_tokens",
            "Cache Write (5m)",
        ),
        Charge::CacheWrite1hTokens => (
            "cache_creation.ephemeral_1h_input_tokens",
            "Cache Write (1h)",
        ),
        Charge::WebSearchRequests
        | Charge::ContainerHours
        | Charge::ContainerFreeHours
        | Charge::Adjustment
        | Charge::MinimumCommitment
        | Charge::Credit
        | Charge::Tax => return None,
    })
}

fn token_type(charge: Charge) -> Option<&'static str> {
    token_names(charge).map(|(token_type, _)| token_type)
}

/// "claude-sonnet-4-5-20250929" → "Claude Sonnet 4.5"; "claude-3-5-haiku-…" → "Claude 3.5 Haiku".
pub fn model_name(id: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut number = false;
    for part in id.split('-') {
        // A trailing date snapshot is not part of the name.
        if part.len() == 8 && part.bytes().all(|b| b.is_ascii_digit()) {
            break;
        }
        let digits = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        match words.last_mut() {
            Some(last) if digits && number => {
                last.push('.');
                last.push_str(part);
            }
            _ => {
                let mut chars = part.chars();
                let word = chars
                    .next()
                    .map(|c| c.to_uppercase().chain(chars).collect())
                    .unwrap_or_default();
                words.push(word);
            }
        }
        number = digits;
    }
    words.join(" ")
}

/// The description Anthropic's cost report gives a charge.
pub fn description(cost: &DayCost) -> String {
    let k = &cost.key;
    match (k.charge.category(), &k.model) {
        (Category::WebSearch, _) => "Web Search Usage".into(),
        (Category::CodeExecution, _) => "Code Execution Usage".into(),
        (_, Some(model)) => {
            let kind = token_names(k.charge).map_or("Other", |(_, kind)| kind);
            let fast = if k.fast { " - Fast Mode" } else { "" };
            format!("{} Usage - {kind}{fast}", model_name(model))
        }
        (_, None) => "Adjustment".into(),
    }
}

/// Build one page of the report from daily costs and unbilled refusals
/// (`(account, day, count)`), both already restricted to what the caller may see.
pub fn build<'a>(
    query: &CostReportQuery,
    days: impl Iterator<Item = &'a DayCost>,
    refusals: impl Iterator<Item = (&'a str, NaiveDate, i64)>,
) -> CostReport {
    let (page, next) = query.page_days();
    let mut unbilled: BTreeMap<NaiveDate, i64> = BTreeMap::new();
    for (_, day, n) in refusals {
        *unbilled.entry(day).or_default() += n;
    }
    let mut buckets: BTreeMap<NaiveDate, BTreeMap<CostResult, Decimal>> =
        page.iter().map(|d| (*d, BTreeMap::new())).collect();
    let by_description = query.grouped(GroupBy::Description);
    let dims = query.dimensions();
    for cost in days {
        if cost.key.charge == Charge::Adjustment {
            continue;
        }
        let Some(bucket) = buckets.get_mut(&cost.day) else {
            continue;
        };
        let k = &cost.key;
        let tokens = k.charge.category() == Category::Tokens;
        let detail = by_description && tokens;
        let key = CostResult {
            amount: String::new(),
            currency: "USD",
            cost_type: cost_type(k.charge),
            token_type: if detail { token_type(k.charge) } else { None },
            description: by_description.then(|| description(cost)),
            model: if tokens && (detail || query.grouped(GroupBy::Model)) {
                k.model.clone()
            } else {
                None
            },
            service_tier: detail.then_some(if k.batch { "batch" } else { "standard" }),
            context_window: detail.then_some(if k.long_context { "200k-1M" } else { "0-200k" }),
            inference_geo: detail.then_some(if k.us_inference { "us" } else { "global" }),
            workspace_id: None,
            api_key_id: None,
            user: None,
            tags: None,
            account: query
                .grouped(GroupBy::Account)
                .then(|| cost.account.clone()),
        };
        let mut key = key;
        for (dim, value) in dims.iter().zip(&cost.values) {
            match dim {
                Dimension::Workspace => key.workspace_id = value.clone(),
                Dimension::ApiKeyId => key.api_key_id = Some(value.clone()),
                Dimension::User => key.user = Some(value.clone()),
                Dimension::Tag(k) => {
                    key.tags
                        .get_or_insert_with(BTreeMap::new)
                        .insert(k.clone(), value.clone());
                }
                Dimension::Tags => {}
            }
        }
        *bucket.entry(key).or_default() += query.view.of(cost);
    }
    let stamp = |d: NaiveDate| format!("{d}T00:00:00Z");
    CostReport {
        data: buckets
            .into_iter()
            .map(|(day, results)| Bucket {
                starting_at: stamp(day),
                ending_at: stamp(day + Days::new(1)),
                unbilled_refusals: unbilled.get(&day).copied().unwrap_or(0),
                results: results
                    .into_iter()
                    .map(|(mut r, amount)| {
                        r.amount = (amount * Decimal::ONE_HUNDRED).normalize().to_string();
                        r
                    })
                    .collect(),
            })
            .collect(),
        has_more: next.is_some(),
        next_page: next.map(|d| d.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn model_names_read_like_anthropic_descriptions() {
        assert_eq!(model_name("claude-sonnet-4-20250514"), "Claude Sonnet 4");
        assert_eq!(
            model_name("claude-sonnet-4-5-20250929"),
            "Claude Sonnet 4.5"
        );
        assert_eq!(model_name("claude-3-5-haiku-20241022"), "Claude 3.5 Haiku");
        assert_eq!(model_name("claude-opus-4-1"), "Claude Opus 4.1");
    }

    #[test]
    fn queries_are_validated_with_the_field_named() {
        let today = NaiveDate::from_ymd_opt(2025, 6, 10).unwrap_or_default();
        let p = |q: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = q
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            CostReportQuery::parse(&pairs, today)
        };
        let ok = p(&[
            ("starting_at", "2025-05-01T00:00:00Z"),
            ("ending_at", "2025-06-01T00:00:00Z"),
            ("limit", "31"),
        ]);
        let ok = ok.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.page_days().0.len(), 31);
        assert_eq!(ok.page_days().1, None);
        assert!(p(&[]).unwrap_err().contains("starting_at"));
        assert!(
            p(&[("starting_at", "yesterday")])
                .unwrap_err()
                .contains("starting_at")
        );
        assert!(
            p(&[
                ("starting_at", "2025-05-01T00:00:00Z"),
                ("bucket_width", "1h")
            ])
            .unwrap_err()
            .contains("bucket_width")
        );
        assert!(
            p(&[
                ("starting_at", "2025-05-01T00:00:00Z"),
                ("group_by[]", "cost_centre")
            ])
            .unwrap_err()
            .contains("cost_centre")
        );
        assert!(
            p(&[("starting_at", "2025-05-01T00:00:00Z"), ("limit", "32")])
                .unwrap_err()
                .contains("limit")
        );
        assert!(
            p(&[("starting_at", "2025-05-01T00:00:00Z"), ("colour", "red")])
                .unwrap_err()
                .contains("colour")
        );
    }
}
