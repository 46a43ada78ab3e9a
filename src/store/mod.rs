//! Storage: one [`Store`] trait, one implementation per backend, picked from
//! the database URL (`sqlite:` by default, `postgres://` to scale out).
//!
//! Policy:
//! - identity and idempotency are enforced by the database (unique keys and
//!   `on conflict do nothing`), never only in memory, so concurrent writers —
//!   tasks or whole processes sharing one PostgreSQL — store each record once;
//! - a [`WriteBatch`] commits in one transaction: its records, its rejected
//!   lines and its conflicts land together or not at all, and nothing is
//!   acknowledged before the commit;
//! - the batch algorithm lives once, in [`write`], over the small [`write::WriteTx`]
//!   surface each backend implements, so the backends cannot drift apart.

pub mod containers;
mod postgres;
mod reads;
pub(crate) mod sql;
mod sqlite;
mod write;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::ingest::parse::{LineError, RejectReason};
use crate::record::{Defaults, NewRecord, Origin};
use crate::time::Micros;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A line that will not be recorded, with everything needed to show it and
/// to retry it later.
#[derive(Debug, Clone)]
pub struct NewRejection {
    pub raw: Vec<u8>,
    pub error: LineError,
    pub origin: Origin,
    pub defaults: Defaults,
}

/// What one transaction writes.
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredRecord {
    pub seq: i64,
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
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_creation_input_tokens: i64,
    pub cache_write_5m_tokens: i64,
    pub cache_write_1h_tokens: i64,
    pub cache_read_tokens: i64,
    pub web_search_requests: i64,
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

/// A roll-up delta: key, sums, number of records, newest record seq.
pub type RollupRow = (RollupKey, crate::record::Usage, i64, i64);

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
}

/// Summed usage of the records that share every billing-relevant trait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageGroup {
    pub account: String,
    pub model: Option<String>,
    /// UTC day number (days since 1970-01-01).
    pub day: i64,
    pub batch: bool,
    pub fast: bool,
    pub us: bool,
    /// How many of the query's thresholds the records' total input exceeds.
    pub bucket: i64,
    pub records: i64,
    pub usage: crate::record::Usage,
}

/// A record that may make its container billable (it used code execution or
/// preloaded files), as the container-time rules read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRecord {
    pub container_id: String,
    pub account: String,
    pub recorded_at: Micros,
    pub started_at: Option<Micros>,
    pub web_tools_20260209: bool,
}

/// Exact containers first used by one account on one UTC day (day number),
/// from the container roll-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDayRow {
    pub account: String,
    pub day: i64,
    pub containers: i64,
    pub execution_seconds: i64,
    /// Containers under [`containers::ROLLUP_MINIMUM_SECONDS`], and their seconds.
    pub short_containers: i64,
    pub short_seconds: i64,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalizedInvoice {
    pub number: String,
    pub account: String,
    pub period: String,
    pub cutoff_seq: i64,
    pub json: String,
    pub csv: String,
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LedgerCounts {
    pub records: i64,
    pub containers: i64,
    pub rejected_open: i64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// How many [`Store::write`] calls may usefully run at once (SQLite has
    /// one writer; PostgreSQL takes several).
    fn max_parallel_writes(&self) -> usize {
        1
    }

    /// Lines per write transaction that suit this backend.
    fn chunk_lines(&self) -> usize {
        crate::ingest::CHUNK_LINES
    }

    /// Apply pending migrations (safe to run from several processes at once).
    async fn migrate(&self) -> Result<()>;

    /// Write one batch in one transaction (see the module policy).
    async fn write(&self, batch: &WriteBatch) -> Result<WriteOutcome>;

    /// Rejected lines, newest first; `all` includes retried ones.
    async fn rejected_list(&self, all: bool, limit: i64) -> Result<Vec<Rejected>>;

    async fn rejected_get(&self, id: i64) -> Result<Option<Rejected>>;

    /// Mark a rejected line as retried (it was recorded, or found a duplicate).
    async fn rejected_mark_retried(&self, id: i64) -> Result<()>;

    async fn record(&self, key: &str) -> Result<Option<StoredRecord>>;

    async fn counts(&self) -> Result<LedgerCounts>;

    /// Token usage of message records, summed in the database.
    async fn usage_groups(&self, q: &UsageQuery) -> Result<Vec<UsageGroup>>;

    /// Usage of `usage.iterations[]` entries billed on top (priced at their own model).
    async fn iteration_groups(&self, q: &UsageQuery) -> Result<Vec<UsageGroup>>;

    /// Code-execution and file-preload records with a container, all accounts,
    /// `from <= recorded_at < to`, ordered by container then time.
    async fn container_records(
        &self,
        from: Micros,
        to: Micros,
        max_seq: i64,
    ) -> Result<Vec<ContainerRecord>>;

    /// The container roll-up: sums of exact containers per account and UTC
    /// day number in `[from_day, to_day)`.
    async fn container_days(&self, from_day: i64, to_day: i64) -> Result<Vec<ContainerDayRow>>;

    /// Records (as [`Store::container_records`]) of the containers the
    /// roll-up could not keep exactly, first used in `[from, to)`.
    async fn inexact_container_records(
        &self,
        from: Micros,
        to: Micros,
    ) -> Result<Vec<ContainerRecord>>;

    /// Records (of every kind) per account in `[from, to)` with `seq <= max_seq`,
    /// for one account or all, sorted by account.
    /// With `use_rollup`, counts come from the roll-up (ignoring `max_seq`).
    async fn record_counts(
        &self,
        account: Option<&str>,
        from: Micros,
        to: Micros,
        max_seq: i64,
        use_rollup: bool,
    ) -> Result<Vec<(String, i64)>>;

    /// The newest record seq summed into the roll-up for days `[first_day, end_day)`
    /// (all accounts), or 0: tells whether anything arrived after a cutoff.
    async fn newest_seq_in_days(&self, first_day: i64, end_day: i64) -> Result<i64>;

    /// The newest ledger sequence number (0 when empty).
    async fn max_seq(&self) -> Result<i64>;

    /// A cutoff for finalizing: the newest sequence number such that no
    /// record at or below it can still be committed later. With concurrent
    /// writers (PostgreSQL) a transaction holding a lower number may commit
    /// after a higher one; a finalized invoice would miss that record for good.
    async fn cutoff_seq(&self) -> Result<i64> {
        self.max_seq().await
    }

    /// Finalized invoices of an account: `(period, cutoff_seq)`, by period.
    async fn finalized_periods(&self, account: &str) -> Result<Vec<(String, i64)>>;

    /// Set (or replace) an account's monthly budget in USD.
    async fn set_budget(&self, account: &str, monthly_usd: rust_decimal::Decimal) -> Result<()>;

    /// Every budget, by account.
    async fn budgets(&self) -> Result<Vec<(String, rust_decimal::Decimal)>>;

    /// Record an alert unless that (account, period, threshold) already has
    /// one; true when this call recorded it.
    async fn record_alert(&self, alert: &BudgetAlert) -> Result<bool>;

    /// Alerts of a period (or all; or only those not yet delivered), by
    /// period, account and threshold.
    async fn alerts(
        &self,
        period: Option<&str>,
        undelivered_only: bool,
    ) -> Result<Vec<BudgetAlert>>;

    /// Note that an alert reached the webhook.
    async fn mark_alert_delivered(&self, account: &str, period: &str, threshold: i64)
    -> Result<()>;

    /// Accounts with a finalized invoice before `period` (they may owe an
    /// adjustment on it even without usage in it).
    async fn finalized_accounts_before(&self, period: &str) -> Result<Vec<String>>;

    /// Every finalized invoice of a period: (account, number, cutoff seq), by account.
    async fn finalized_in_period(&self, period: &str) -> Result<Vec<(String, String, i64)>>;

    /// How many invoices have been finalized, in every period.
    async fn finalized_count(&self) -> Result<i64>;

    /// A finalized invoice as frozen.
    async fn finalized_invoice(
        &self,
        account: &str,
        period: &str,
    ) -> Result<Option<FinalizedInvoice>>;

    /// Freeze an invoice: a number is assigned (from the row id) and `render`
    /// turns it into the JSON and CSV kept forever. If the invoice was
    /// finalized meanwhile, the existing one is returned.
    async fn finalize(
        &self,
        account: &str,
        period: &str,
        cutoff_seq: i64,
        render: &(dyn for<'a> Fn(&'a str) -> (String, String) + Send + Sync),
    ) -> Result<FinalizedInvoice>;

    /// The id of the newest imported price book, if any (cheap: no text).
    async fn price_book_id(&self) -> Result<Option<i64>>;

    /// The newest imported price book: `(id, name, toml)`.
    async fn price_book(&self) -> Result<Option<(i64, String, String)>>;

    /// Store a validated price book; it is in force from now on.
    async fn import_price_book(&self, name: &str, toml: &str) -> Result<i64>;

    /// Store a new account key by its hash; returns its id.
    async fn create_key(&self, account: &str, prefix: &str, key_hash: &str) -> Result<i64>;

    /// Every key, newest first.
    async fn list_keys(&self) -> Result<Vec<ApiKey>>;

    /// Revoke a key; false when no active key has that id.
    async fn revoke_key(&self, id: i64) -> Result<bool>;

    /// The account an active key (by hash) belongs to.
    async fn key_account(&self, key_hash: &str) -> Result<Option<String>>;

    /// A cheap round trip, for `/healthz`.
    async fn ping(&self) -> Result<()>;
}

/// Open the store a URL names: `sqlite:PATH` / `sqlite://PATH` (created on
/// first use), `postgres://…` / `postgresql://…`, or a bare file path (SQLite).
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else if url.contains("://") && !url.starts_with("sqlite:") {
        Err(StoreError::Invalid(format!(
            "unsupported database URL {url:?}: use sqlite://FILE or postgres://…"
        )))
    } else {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    }
}

/// Whether `url` names a SQLite file that does not exist yet (commands
/// that only read may then answer without creating it).
pub fn sqlite_file_missing(url: &str) -> bool {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return false;
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    !path.is_empty() && path != ":memory:" && !std::path::Path::new(path).exists()
}

/// Connect and migrate: what every command does first.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    let store = connect(url).await?;
    store.migrate().await?;
    Ok(store)
}

/// The reason stored for a conflict.
pub(crate) fn conflict_error(message: String, origin: &Origin) -> LineError {
    LineError {
        reason: RejectReason::Conflict,
        message,
        line: Some(origin.line),
        column: None,
        field: None,
    }
}
