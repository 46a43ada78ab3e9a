//! The ledger's record: one ingested Messages API response, reduced to the
//! columns billing needs, plus the raw line it came from.
//!
//! Invariants upheld by the parser (and relied on by the stores):
//! - every counter is a non-negative integer (`null` and absent are 0);
//! - `account` matches `[A-Za-z0-9._:-]{1,128}`;
//! - `started_at <= recorded_at` when `started_at` is known;
//! - `key` identifies the record: the response id for messages, a content hash
//!   for batch results that carry no message (see [`RecordKind`]).

use serde::Serialize;

use crate::time::Micros;

mod rejection;
pub use rejection::{LineError, NewRejection, RejectReason, conflict_error};

impl Usage {
    /// The nine counters in the order of the ledger's columns (input,
    /// output, cache creation, 5-minute and 1-hour writes, cache reads, web
    /// searches, web fetches, code-execution requests).
    pub fn counters(&self) -> [i64; 9] {
        self.clone().counters_mut().map(|c| *c)
    }

    /// The nine counters, in the same order, to update in place.
    fn counters_mut(&mut self) -> [&mut i64; 9] {
        [
            &mut self.input_tokens,
            &mut self.output_tokens,
            &mut self.cache_creation_input_tokens,
            &mut self.cache_write_5m_tokens,
            &mut self.cache_write_1h_tokens,
            &mut self.cache_read_tokens,
            &mut self.web_search_requests,
            &mut self.web_fetch_requests,
            &mut self.code_execution_requests,
        ]
    }
}

impl std::ops::SubAssign<&Usage> for Usage {
    fn sub_assign(&mut self, u: &Usage) {
        for (sum, count) in self.counters_mut().into_iter().zip(u.counters()) {
            *sum -= count;
        }
    }
}

impl std::ops::AddAssign<&Usage> for Usage {
    fn add_assign(&mut self, u: &Usage) {
        for (sum, count) in self.counters_mut().into_iter().zip(u.counters()) {
            *sum += count;
        }
    }
}

/// A refusal before any output (docs/billing.md): `stop_reason: "refusal"` with no
/// content. Whether it is charged is the price book's call (its refusal
/// policy, by date and category), so the ledger keeps what it was, not the
/// verdict: a re-imported book decides again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Refusal {
    /// As the ledger's `refusal` columns hold it: `refusal` for one without
    /// a category, `refusal:CATEGORY` for one with (`""` there means none).
    column: String,
}

impl Refusal {
    /// A refusal before output, with its `stop_details.category` if any.
    pub fn new(category: Option<&str>) -> Refusal {
        let column = match category {
            None => "refusal".to_owned(),
            Some(c) => format!("refusal:{c}"),
        };
        Refusal { column }
    }

    pub fn category(&self) -> Option<&str> {
        self.column.strip_prefix("refusal:")
    }

    /// The column value of `refusal` (`""` for no refusal before output).
    pub fn column(refusal: Option<&Refusal>) -> &str {
        refusal.map_or("", |r| r.column.as_str())
    }

    /// The inverse of [`Refusal::column`].
    pub fn from_column(text: &str) -> Option<Refusal> {
        match text.strip_prefix("refusal") {
            Some("") => Some(Refusal::new(None)),
            Some(rest) => rest.strip_prefix(':').map(|c| Refusal::new(Some(c))),
            None => None,
        }
    }
}

/// Everything that decides which rates apply to a quantity of tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateKey {
    pub model: Option<String>,
    /// UTC day number: picks the price-book version.
    pub day: i64,
    pub batch: bool,
    pub fast: bool,
    /// US-only inference.
    pub us: bool,
    /// How many of the price book's tier thresholds the total input exceeds
    /// (relative to the thresholds of the query that summed the usage).
    pub bucket: i64,
    /// A refusal before any output: charged or not as the book in force says.
    pub refusal: Option<Refusal>,
}

/// What kind of ledger record this is. Only `Message` records carry usage;
/// the three batch outcomes are counted and kept but never charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Message,
    BatchErrored,
    BatchCanceled,
    BatchExpired,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Message => "message",
            RecordKind::BatchErrored => "batch_errored",
            RecordKind::BatchCanceled => "batch_canceled",
            RecordKind::BatchExpired => "batch_expired",
        }
    }
}

/// Token and request counters of one response, as billing reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Usage {
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// `usage.cache_creation_input_tokens` as reported (the total of writes).
    pub cache_creation_input_tokens: i64,
    /// 5-minute writes: the breakdown's figure, or all cache writes when the
    /// response has no `cache_creation` breakdown (docs/billing.md).
    pub cache_write_5m_tokens: i64,
    pub cache_write_1h_tokens: i64,
    pub cache_read_tokens: i64,
    pub web_search_requests: i64,
    pub web_fetch_requests: i64,
    pub code_execution_requests: i64,
}

/// A `usage.iterations[]` entry that is billed on top of the top-level
/// counters (every type but `message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtraIteration {
    pub kind: String,
    /// The model the iteration names, if any; billing falls back to the response's model.
    pub model: Option<String>,
    pub usage: Usage,
}

/// What is kept of each line (`--retain`; see `ingest::retention`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// The line verbatim.
    #[default]
    Full,
    /// What billing and audit need; no prompt, completion or tool input.
    Billing,
}

impl Retention {
    pub fn as_str(self) -> &'static str {
        match self {
            Retention::Full => "full",
            Retention::Billing => "billing",
        }
    }
}

/// A parsed record, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    pub key: String,
    pub account: String,
    pub kind: RecordKind,
    pub message_id: Option<String>,
    pub custom_id: Option<String>,
    pub model: Option<String>,
    pub recorded_at: Micros,
    pub started_at: Option<Micros>,
    pub batch: bool,
    pub files_preloaded: bool,
    pub uses_code_execution: bool,
    /// The request declared a web search or web fetch tool of version
    /// 20260209 or later, which makes code execution free from 2026-02-17.
    pub web_tools_20260209: bool,
    pub container_id: Option<String>,
    pub usage: Usage,
    pub service_tier: Option<String>,
    pub inference_geo: Option<String>,
    pub speed: Option<String>,
    pub iterations: Vec<ExtraIteration>,
    /// A refusal before any output (its iterations share its fate).
    pub refusal: Option<Refusal>,
    /// Workspace, API key id, user and tags.
    pub attribution: Attribution,
    /// SHA-256 (hex) of the response compared as a JSON value (keys sorted, no
    /// white space): equal hashes mean "the same response body" (whatever
    /// `raw` retains).
    pub content_hash: String,
    /// Which of the line `raw` holds.
    pub retention: Retention,
    /// The input line exactly as received.
    pub raw: String,
    /// Where it came from, for error reports and quarantine.
    pub origin: Origin,
}

/// Where a line came from: a file name (or `http`, `stdin`) and a 1-based line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub source: String,
    pub line: u64,
}

/// Values given out of band for lines that lack them (`--account`,
/// `--recorded-at`, an account-bound API key). Kept with rejected lines so a
/// retry parses them the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defaults {
    pub account: Option<String>,
    pub recorded_at: Option<Micros>,
    /// The oldest `recorded_at` accepted (`--oldest`; None:
    /// [`crate::time::EARLIEST`]). Not kept with a rejected line: a retry
    /// takes its own.
    pub oldest: Option<Micros>,
}

/// Account names: 1–128 characters of `[A-Za-z0-9._:-]`.
pub fn validate_account(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 128 {
        return Err(format!(
            "is {} characters long; at most 128 are allowed",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(format!(
            "contains {bad:?}; only letters, digits and . _ : - are allowed"
        ));
    }
    Ok(())
}

/// Whom a record's cost is attributed to within its account (docs/input.md):
/// finance splits one account's bill by these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    /// The Anthropic workspace that served the call.
    pub workspace: Option<String>,
    /// Which API key made the call (an id or a label, never the key).
    pub api_key_id: Option<String>,
    /// The end user (`request.metadata.user_id` when the envelope has none).
    pub user: Option<String>,
    /// Key → value, keys sorted.
    pub tags: std::collections::BTreeMap<String, String>,
}

impl Attribution {
    /// Each dimension the record has, with its value, as the dimension roll-up
    /// keys them: `workspace`, `api_key_id`, `user`, `tag:KEY`.
    pub fn pairs(&self) -> Vec<(String, &str)> {
        let mut pairs = Vec::with_capacity(3 + self.tags.len());
        for (dim, value) in [
            ("workspace", &self.workspace),
            ("api_key_id", &self.api_key_id),
            ("user", &self.user),
        ] {
            if let Some(v) = value {
                pairs.push((dim.to_owned(), v.as_str()));
            }
        }
        for (key, value) in &self.tags {
            pairs.push((format!("tag:{key}"), value.as_str()));
        }
        pairs
    }

    /// The tags as canonical JSON (keys sorted, no white space); none: `None`.
    pub fn tags_json(&self) -> Option<String> {
        (!self.tags.is_empty()).then(|| serde_json::to_string(&self.tags).unwrap_or_default())
    }
}

/// A way to split an account's costs (docs/invoices.md, docs/finance.md): by the workspace, the
/// API key id, the end user, one tag's value, or the whole set of tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    Workspace,
    ApiKeyId,
    User,
    Tag(String),
    /// Every tag of the record at once (as canonical JSON): FOCUS's `Tags`.
    Tags,
}

/// Most dimensions one query splits by at once.
pub const MAX_DIMENSIONS: usize = 4;

impl Dimension {
    /// `workspace` (or `workspace_id`), `api_key_id`, `user` or `tag:KEY`.
    pub fn parse(text: &str) -> Result<Dimension, String> {
        match text {
            "workspace" | "workspace_id" => Ok(Dimension::Workspace),
            "api_key_id" => Ok(Dimension::ApiKeyId),
            "user" => Ok(Dimension::User),
            _ => match text.strip_prefix("tag:") {
                Some(key) => {
                    validate_tag_key(key)?;
                    Ok(Dimension::Tag(key.to_owned()))
                }
                None => Err(format!(
                    "{text:?} is not a dimension: expected workspace, api_key_id, user or tag:KEY"
                )),
            },
        }
    }

    /// The name it is written with (`workspace_id` as the cost report has it).
    pub fn name(&self) -> String {
        match self {
            Dimension::Workspace => "workspace_id".into(),
            Dimension::ApiKeyId => "api_key_id".into(),
            Dimension::User => "user".into(),
            Dimension::Tag(key) => format!("tag:{key}"),
            Dimension::Tags => "tags".into(),
        }
    }

    /// Its name in the dimension roll-up (`usage_dim_rollup.dim`), if it has one there.
    pub fn rollup_name(&self) -> Option<String> {
        match self {
            Dimension::Workspace => Some("workspace".into()),
            Dimension::ApiKeyId => Some("api_key_id".into()),
            Dimension::User => Some("user".into()),
            Dimension::Tag(key) => Some(format!("tag:{key}")),
            Dimension::Tags => None,
        }
    }

    /// Its value for a record `r` of the ledger, in SQL. A tag key is
    /// written into the statement: [`validate_tag_key`] allows no quote.
    pub fn sql(&self) -> String {
        match self {
            Dimension::Workspace => "r.workspace".into(),
            Dimension::ApiKeyId => "r.api_key_id".into(),
            Dimension::User => "r.end_user".into(),
            Dimension::Tag(key) if validate_tag_key(key).is_ok() => format!(
                "(select t.value from record_tags t where t.seq = r.seq and t.key = '{key}')"
            ),
            Dimension::Tag(_) => "cast(null as text)".into(),
            Dimension::Tags => "r.tags".into(),
        }
    }
}

/// Most tags a record may carry.
pub const MAX_TAGS: usize = 20;
/// Longest tag value, and longest workspace, API key id or user, in characters.
pub const MAX_LABEL_CHARS: usize = 256;

/// Tag keys: 1–64 characters of `[a-z0-9_.:-]`.
pub fn validate_tag_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 64 {
        return Err(format!("tag key {key:?} must be 1 to 64 characters long"));
    }
    if let Some(bad) = key.chars().find(|c| {
        !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | ':' | '-'))
    }) {
        return Err(format!(
            "tag key {key:?} contains {bad:?}; only lowercase letters, digits and _ . : - are allowed"
        ));
    }
    Ok(())
}

/// A workspace, API key id, user or tag value: at most [`MAX_LABEL_CHARS`] characters.
pub fn validate_label(value: &str) -> Result<(), String> {
    let n = value.chars().count();
    if n > MAX_LABEL_CHARS {
        return Err(format!(
            "is {n} characters long; at most {MAX_LABEL_CHARS} are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_keys_and_labels() {
        assert!(validate_tag_key("cost_centre.eu:1-a").is_ok());
        assert!(validate_tag_key(&"k".repeat(64)).is_ok());
        for bad in ["", "Project", "a b", "é"] {
            assert!(validate_tag_key(bad).is_err(), "{bad:?}");
        }
        assert!(validate_tag_key(&"k".repeat(65)).is_err());
        assert!(validate_label(&"é".repeat(256)).is_ok());
        assert!(validate_label(&"v".repeat(257)).is_err());
    }

    #[test]
    fn account_rules() {
        assert!(validate_account("acme").is_ok());
        assert!(validate_account("team.a_b:c-1").is_ok());
        assert!(validate_account(&"a".repeat(128)).is_ok());
        assert!(validate_account(&"a".repeat(129)).is_err());
        assert!(validate_account("").is_err());
        assert!(validate_account("a b").is_err());
        assert!(validate_account("ünï").is_err());
    }
}
