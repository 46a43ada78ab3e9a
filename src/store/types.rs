//! The values the store takes and returns.

use serde::Serialize;

use crate::record::{NewRecord, NewRejection};
use crate::time::Micros;

/// What one transaction writes.
/// A record this large (ingest's chunk size, at which a chunk is cut
/// anyway) is committed alone, before the next line is read, and the
/// memory its write took is let go of at once.
pub const LARGE_RECORD_BYTES: usize = 16 << 20;

#[derive(Debug, Default)]
pub struct WriteBatch {
    pub records: Vec<NewRecord>,
    pub rejections: Vec<NewRejection>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.rejections.is_empty()
    }

    pub fn len(&self) -> usize {
        self.records.len() + self.rejections.len()
    }

    /// The input text the batch holds (each line as kept).
    pub fn held_bytes(&self) -> usize {
        let records: usize = self.records.iter().map(|r| r.raw.len()).sum();
        let rejections: usize = self.rejections.iter().map(|r| r.raw.len()).sum();
        records + rejections
    }

    /// Whether the batch holds a record of [`LARGE_RECORD_BYTES`] or more.
    pub fn holds_large_record(&self) -> bool {
        self.largest_line() >= LARGE_RECORD_BYTES
    }

    /// The longest line the batch holds, as kept.
    pub fn largest_line(&self) -> usize {
        let records = self.records.iter().map(|r| r.raw.len());
        let rejections = self.rejections.iter().map(|r| r.raw.len());
        records.chain(rejections).max().unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RecordOutcome {
    Recorded,
    Duplicate,
    Conflict { message: String, rejected_id: i64 },
}

/// Per-record outcomes (same order as `WriteBatch::records`) and the ids the
/// rejected lines got (same order as `WriteBatch::rejections`).
#[derive(Debug, Default)]
pub struct WriteOutcome {
    pub records: Vec<RecordOutcome>,
    pub rejections: Vec<i64>,
}

/// A rejected line as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    pub id: i64,
    /// When it was first rejected (RFC 3339).
    pub time: String,
    pub last_seen: String,
    pub occurrences: i64,
    /// `open`, or `retried` once a retry recorded it.
    pub status: String,
    pub reason: String,
    pub error: String,
    pub line: Option<i64>,
    pub column: Option<i64>,
    pub field: Option<String>,
    pub source: String,
    pub account_default: Option<String>,
    pub recorded_at_default: Option<String>,
    /// The raw bytes as text (invalid UTF-8 is shown with U+FFFD).
    pub raw: String,
    #[serde(skip)]
    pub raw_bytes: Vec<u8>,
}

/// A record as stored, for inspection and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct StoredRecord {
    pub seq: i64,
    #[sqlx(rename = "record_key")]
    pub key: String,
    pub account: String,
    pub kind: String,
    pub model: Option<String>,
    pub recorded_at: Micros,
    pub started_at: Option<Micros>,
    pub batch: bool,
    pub files_preloaded: bool,
    pub uses_code_execution: bool,
    pub web_tools_20260209: bool,
    pub container_id: Option<String>,
    #[sqlx(flatten)]
    pub usage: crate::record::Usage,
    /// `full` or `billing`: what `raw` keeps of the line.
    pub retention: String,
    /// Entries of `usage.iterations[]` billed on top.
    pub iterations: i64,
    pub raw: String,
}

/// What to aggregate: records with `from <= recorded_at < to`, of one
/// account or all, bucketed by how many of `thresholds` their total input
/// (input + cache writes + cache reads) exceeds.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    pub account: Option<String>,
    pub from: Micros,
    pub to: Micros,
    /// Only records with `seq <= max_seq` (the ledger as it stood then).
    pub max_seq: i64,
    pub thresholds: Vec<i64>,
    /// May the answer come from the usage roll-up (the ledger as it is now,
    /// ignoring `max_seq`)? Only when every threshold is a roll-up size class.
    pub use_rollup: bool,
    /// Split each group further by these (at most [`crate::record::MAX_DIMENSIONS`]).
    pub dims: Vec<crate::record::Dimension>,
}

/// Total-input sizes the usage roll-up separates (a record's size class is
/// how many of them its total input exceeds). Price-book tiers at other
/// thresholds are computed from the records instead.
pub const SIZE_BOUNDARIES: [i64; 8] = [
    32_000, 64_000, 100_000, 128_000, 200_000, 256_000, 500_000, 1_000_000,
];

pub fn size_class(total_input: i64) -> i64 {
    SIZE_BOUNDARIES.iter().filter(|&&b| total_input > b).count() as i64
}

/// Can a query with these tier thresholds be answered from the roll-up?
pub fn rollup_covers(thresholds: &[i64]) -> bool {
    thresholds.iter().all(|t| SIZE_BOUNDARIES.contains(t))
}

/// A size class as the query's bucket: how many of `thresholds` it exceeds.
pub fn bucket_of_class(class: i64, thresholds: &[i64]) -> i64 {
    thresholds
        .iter()
        .filter(|t| {
            SIZE_BOUNDARIES
                .iter()
                .position(|b| b == *t)
                .is_some_and(|i| (i as i64) < class)
        })
        .count() as i64
}

/// Key of a usage roll-up row (see migration 0005).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RollupKey {
    pub account: String,
    pub day: i64,
    pub model: String,
    /// 0 message usage, 1 extra iterations, 2 never-charged records.
    pub kind: i64,
    pub batch: i64,
    pub fast: i64,
    pub us: i64,
    pub size_class: i64,
    /// A refusal before output ([`crate::record::Refusal::column`]; `""`: none).
    pub refusal: String,
    /// For `usage_dim_rollup`: the dimension (`workspace`, `api_key_id`,
    /// `user`, `tag:KEY`) and the records' value of it; `""` for `usage_rollup`.
    pub dim: String,
    pub value: String,
}

/// Summed usage of the records that share every billing-relevant trait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageGroup {
    pub account: String,
    /// What decides the group's rates (model, day, batch, fast, US-only,
    /// size bucket against the query's thresholds).
    pub rate: crate::record::RateKey,
    pub records: i64,
    pub usage: crate::record::Usage,
    /// The group's value of each of the query's dimensions (`None`: records without it).
    pub values: Vec<Option<String>>,
}

/// A record that may make its container billable (it used code execution or
/// preloaded files), as the container-time rules read it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ContainerRecord {
    pub container_id: String,
    /// Orders records of one `recorded_at` (the first billable record is
    /// the earliest, then the lowest seq).
    pub seq: i64,
    pub account: String,
    pub recorded_at: Micros,
    pub started_at: Option<Micros>,
    pub web_tools_20260209: bool,
    /// [`crate::record::Refusal::column`] of the record (`""`: not a refusal).
    pub refusal: String,
    /// The record's value of each dimension asked for (none unless asked).
    #[sqlx(skip)]
    pub values: Vec<Option<String>>,
}

/// Exact containers first used by one account on one UTC day (day number),
/// from the container roll-up.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ContainerDayRow {
    pub account: String,
    pub day: i64,
    pub containers: i64,
    pub execution_seconds: i64,
    /// Containers under [`containers::ROLLUP_MINIMUM_SECONDS`], and their seconds.
    pub short_containers: i64,
    pub short_seconds: i64,
}

/// The same sums over the exact containers whose first record has one
/// value of a dimension (from `container_dim_days`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ContainerDimDayRow {
    pub dim_value: String,
    #[sqlx(flatten)]
    pub sums: ContainerDayRow,
}

/// An account API key as listed (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: i64,
    pub account: String,
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A proxy key mapping as listed: the key's id (the first 12 hex digits of
/// its SHA-256), never the key or its whole hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyKey {
    pub api_key_id: String,
    pub account: String,
    pub created_at: String,
}

/// What a period's figures depend on besides time: the newest record, how
/// many invoices were finalized (anywhere: late usage of one becomes an
/// adjustment in another), the price book in force, the newest plan, and
/// the newest credit grant with how many were voided, and the newest
/// billing details (0 where there is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FiguresVersion {
    pub max_seq: i64,
    pub finalized: i64,
    pub price_book: i64,
    pub plans: i64,
    pub credit: (i64, i64),
    /// The newest billing details row.
    pub details: i64,
}

/// A party's billing details as set (JSON).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredDetails {
    pub party: String,
    pub details: String,
    pub set_at: i64,
}

/// A grant of prepaid credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditGrant {
    pub id: i64,
    pub account: String,
    pub usd: rust_decimal::Decimal,
    /// UTC microseconds.
    pub granted_at: i64,
    /// The last day it may be drawn by (a period that starts by then).
    pub expires_on: Option<chrono::NaiveDate>,
    pub note: Option<String>,
    pub voided_at: Option<i64>,
}

/// What one invoice drew on one grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditDraw {
    pub account: String,
    pub period: String,
    pub grant_id: i64,
    pub usd: rust_decimal::Decimal,
}

/// A low-balance alert: the account's balance fell below its threshold
/// while `funded_usd` had been granted in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditAlert {
    pub account: String,
    pub funded_usd: rust_decimal::Decimal,
    pub threshold_usd: rust_decimal::Decimal,
    pub balance_usd: rust_decimal::Decimal,
    pub crossed_at: i64,
    pub delivered_at: Option<i64>,
}

/// An account's plan as set: its TOML text, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredPlan {
    pub id: i64,
    pub account: String,
    pub toml: String,
    pub set_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FinalizedInvoice {
    pub number: String,
    pub account: String,
    pub period: String,
    pub cutoff_seq: i64,
    pub json: String,
    pub csv: String,
    /// The documents (absent for invoices finalized before tally kept
    /// them: [`crate::billing::finalize`] renders those once from `json`).
    pub html: Option<String>,
    pub pdf: Option<Vec<u8>>,
}

/// What finalizing freezes of an invoice, rendered with its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrozenDocuments {
    pub json: String,
    pub csv: String,
    pub html: String,
    pub pdf: Vec<u8>,
}

/// A budget threshold crossed by an account's month-to-date spend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetAlert {
    pub account: String,
    pub period: String,
    /// Percent of the budget: 50, 80 or 100.
    pub threshold: i64,
    pub spend_usd: rust_decimal::Decimal,
    pub budget_usd: rust_decimal::Decimal,
    /// UTC microseconds.
    pub crossed_at: i64,
    pub delivered_at: Option<i64>,
}

/// Counts over the whole ledger (health, metrics, tests).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LedgerCounts {
    pub records: i64,
    pub containers: i64,
    pub rejected_open: i64,
}

/// A finalized invoice of a period, without its documents.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FinalizedRef {
    pub account: String,
    pub number: String,
    pub cutoff_seq: i64,
    /// UTC microseconds.
    pub finalized_at: i64,
}

/// An account's monthly budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub account: String,
    pub monthly_usd: rust_decimal::Decimal,
}

/// An imported price book as stored (validated when it was imported).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredPriceBook {
    pub id: i64,
    pub name: String,
    pub toml: String,
}
