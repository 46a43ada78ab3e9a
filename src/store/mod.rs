//! Storage: role traits that say what the ledger asks of a database, one
//! implementation per backend, picked from the database URL (`sqlite:` by
//! default, `postgres://` to scale out).
//!
//! Policy:
//! - identity and idempotency are enforced by the database (unique keys and
//!   `on conflict do nothing`), never only in memory, so concurrent writers —
//!   tasks or whole processes sharing one PostgreSQL — store each record once;
//! - a [`WriteBatch`] commits in one transaction: its records, its rejected
//!   lines and its conflicts land together or not at all, and nothing is
//!   acknowledged before the commit;
//! - the batch algorithm lives once, in [`write`], over the small
//!   [`write::WriteTx`] surface each backend implements, so the backends
//!   cannot drift apart;
//! - SQL that is the same on both backends is written once ([`shared`], over
//!   the [`pool::Pooled`] handle); a backend's own file holds only what
//!   differs (connecting, migrating, the write path).
//!
//! Layout: [`types`] the values in and out; [`sql`] the shared SQL text;
//! [`containers`] container-time bookkeeping; [`migrations`] the schema.

pub mod containers;
mod credits;
mod details;
mod keys;
pub mod migrations;
mod plans;
mod pool;
mod postgres;
mod row;
mod shared;
pub(crate) mod sql;
mod sqlite;
mod types;
mod write;

use std::sync::Arc;

use async_trait::async_trait;
use rust_decimal::Decimal;

use crate::time::Micros;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use types::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Invalid(String),
    /// What a write was computed from changed under it (another process
    /// drew on the same credit, or voided it): compute again and retry.
    #[error("{0}")]
    Changed(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Default lines per write transaction: large enough to amortise the commit
/// (an fsync on SQLite), small enough to keep memory flat and
/// acknowledgements prompt. A backend may prefer another size
/// ([`Writes::chunk_lines`]).
pub const CHUNK_LINES: usize = 2000;

/// Declares `Store`, every role in one name, and gives it to whatever
/// has them all: the list of roles is written once.
macro_rules! all_roles {
    ($($role:ident),+ $(,)?) => {
        /// Everything tally asks of a database, in one name: `Arc<dyn Store>` is
        /// what the rest of the program holds.
        pub trait Store: $($role +)+ {}

        impl<T: $($role +)+> Store for T {}
    };
}

all_roles!(
    Writes,
    UsageReads,
    RejectedLines,
    Invoices,
    Budgets,
    PriceBooks,
    ApiKeys,
    ProxyKeys,
    Plans,
    Credits,
    BillingDetailsStore,
);

/// Writing the ledger: each backend has its own write path.
#[async_trait]
pub trait Writes: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// How many [`Writes::write`] calls may usefully run at once (SQLite has
    /// one writer; PostgreSQL takes several).
    fn max_parallel_writes(&self) -> usize {
        1
    }

    /// Lines per write transaction that suit this backend.
    fn chunk_lines(&self) -> usize {
        CHUNK_LINES
    }

    /// Apply pending migrations (safe to run from several processes at once).
    async fn migrate(&self) -> Result<()>;

    /// Write one batch in one transaction (see the module policy).
    async fn write(&self, batch: &WriteBatch) -> Result<WriteOutcome>;

    /// Fold the roll-ups' per-writer shards into one row per key, and bring
    /// the planner's statistics up to date: what a bulk load leaves (several
    /// rows per key, spread over the table) makes later reads slow. Sums are
    /// unchanged, so it may run while others write; SQLite (one writer, one
    /// shard) has nothing to fold.
    async fn compact_rollups(&self) -> Result<()> {
        Ok(())
    }

    /// A cutoff for finalizing: the newest sequence number such that no
    /// record at or below it can still be committed later. With concurrent
    /// writers (PostgreSQL) a transaction holding a lower number may commit
    /// after a higher one; a finalized invoice would miss that record for good.
    async fn cutoff_seq(&self) -> Result<i64>;
}

/// Reading the ledger's usage: what billing, the dashboard and reports sum.
#[async_trait]
pub trait UsageReads: Send + Sync {
    async fn record(&self, key: &str) -> Result<Option<StoredRecord>>;

    async fn counts(&self) -> Result<LedgerCounts>;

    /// Token usage of message records, summed in the database.
    async fn usage_groups(&self, q: &UsageQuery) -> Result<Vec<UsageGroup>>;

    /// Usage of `usage.iterations[]` entries billed on top (priced at their own model).
    async fn iteration_groups(&self, q: &UsageQuery) -> Result<Vec<UsageGroup>>;

    /// Code-execution and file-preload records with a container, all accounts,
    /// `from <= recorded_at < to`, ordered by container then time.
    /// Each record carries its value of each of `dims`.
    async fn container_records(
        &self,
        from: Micros,
        to: Micros,
        max_seq: i64,
        dims: &[crate::record::Dimension],
    ) -> Result<Vec<ContainerRecord>>;

    /// The container roll-up: sums of exact containers per account and UTC
    /// day number in `[from_day, to_day)`.
    async fn container_days(&self, from_day: i64, to_day: i64) -> Result<Vec<ContainerDayRow>>;

    /// The same sums per value of one dimension (`dim` as the dimension
    /// roll-up names it): exact containers whose first record has it.
    async fn container_dim_days(
        &self,
        dim: &str,
        from_day: i64,
        to_day: i64,
    ) -> Result<Vec<ContainerDimDayRow>>;

    /// Records (as [`UsageReads::container_records`], with their values of
    /// `dims`) of the containers the roll-up could not keep exactly, first
    /// used in `[from, to)`.
    async fn inexact_container_records(
        &self,
        from: Micros,
        to: Micros,
        dims: &[crate::record::Dimension],
    ) -> Result<Vec<ContainerRecord>>;

    /// Records (of every kind) per account that `q` selects (its
    /// thresholds aside), sorted by account. With `q.use_rollup`, counts come
    /// from the roll-up (ignoring `max_seq`).
    async fn record_counts(&self, q: &UsageQuery) -> Result<Vec<(String, i64)>>;

    /// Whether `account` has any record (one indexed look-up in the roll-up,
    /// whose key starts with the account).
    async fn has_records(&self, account: &str) -> Result<bool>;

    /// Records per account and UTC day number, from the roll-up (what
    /// `tally accounts`, `tally periods` and the dashboard's period picker
    /// list), sorted by account then day.
    async fn account_days(&self) -> Result<Vec<(String, i64, i64)>>;

    /// The newest record seq summed into the roll-up for days `[first_day, end_day)`
    /// (all accounts), or 0: tells whether anything arrived after a cutoff.
    async fn newest_seq_in_days(&self, first_day: i64, end_day: i64) -> Result<i64>;

    /// The newest ledger sequence number (0 when empty).
    async fn max_seq(&self) -> Result<i64>;

    /// What every figure depends on besides time, in one round trip (see
    /// [`FiguresVersion`]).
    async fn figures_version(&self) -> Result<FiguresVersion>;

    /// Whether any record carries tags (a FOCUS export splits by them then).
    async fn any_tags(&self) -> Result<bool>;

    /// A cheap round trip, for `/healthz`.
    async fn ping(&self) -> Result<()>;
}

/// The rejected store: lines that were not recorded, kept for retry.
#[async_trait]
pub trait RejectedLines: Send + Sync {
    /// Rejected lines, newest first; `all` includes retried ones.
    async fn rejected_list(&self, all: bool, limit: i64) -> Result<Vec<Rejected>>;

    async fn rejected_get(&self, id: i64) -> Result<Option<Rejected>>;

    /// Mark a rejected line as retried (it was recorded, or found a duplicate).
    async fn rejected_mark_retried(&self, id: i64) -> Result<()>;
}

/// Finalized invoices: frozen once, numbered without gaps.
#[async_trait]
pub trait Invoices: Send + Sync {
    /// Finalized invoices of an account: `(period, cutoff_seq)`, by period.
    async fn finalized_periods(&self, account: &str) -> Result<Vec<(String, i64)>>;

    /// Accounts with a finalized invoice before `period` (they may owe an
    /// adjustment on it even without usage in it).
    async fn finalized_accounts_before(&self, period: &str) -> Result<Vec<String>>;

    /// Every finalized invoice of a period, by account.
    async fn finalized_in_period(&self, period: &str) -> Result<Vec<FinalizedRef>>;

    /// `invoice.finalized` events not delivered yet: (account, period), oldest first.
    async fn undelivered_invoice_events(&self) -> Result<Vec<(String, String)>>;

    /// Claim an undelivered event for `for_micros` under `token` (when no
    /// one else's claim runs): true when this caller may send it now.
    async fn claim_invoice_event(
        &self,
        account: &str,
        period: &str,
        token: &str,
        for_micros: i64,
    ) -> Result<bool>;

    /// Release the claim `token` holds: delivered (for good), or to be tried again.
    async fn settle_invoice_event(
        &self,
        account: &str,
        period: &str,
        token: &str,
        delivered: bool,
    ) -> Result<()>;

    /// How many invoices have been finalized, in every period.
    async fn finalized_count(&self) -> Result<i64>;

    /// A finalized invoice as frozen.
    async fn finalized_invoice(
        &self,
        account: &str,
        period: &str,
    ) -> Result<Option<FinalizedInvoice>>;

    /// Keep the documents of an invoice finalized before tally froze them
    /// (only where none are kept yet: the first rendering stands).
    async fn keep_documents(
        &self,
        account: &str,
        period: &str,
        html: &str,
        pdf: &[u8],
    ) -> Result<()>;

    /// Freeze an invoice: the period's next number is assigned (gapless:
    /// taken in this transaction, under a lock every finalization takes)
    /// and `render` turns it into the documents kept forever, and its credit `draws`
    /// become permanent, in one transaction. A draw that no longer fits its
    /// grant (drawn or voided meanwhile) fails it with
    /// [`StoreError::Changed`], and nothing is written. If the invoice was
    /// finalized meanwhile, the existing one is returned.
    async fn finalize(
        &self,
        account: &str,
        period: &str,
        cutoff_seq: i64,
        draws: &[CreditDraw],
        render: &(dyn for<'a> Fn(&'a str) -> FrozenDocuments + Send + Sync),
    ) -> Result<FinalizedInvoice>;
}

/// Monthly budgets and the alerts their thresholds raise.
#[async_trait]
pub trait Budgets: Send + Sync {
    /// Set (or replace) an account's monthly budget in USD.
    async fn set_budget(&self, account: &str, monthly_usd: Decimal) -> Result<()>;

    /// Every budget, by account.
    async fn budgets(&self) -> Result<Vec<Budget>>;

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
}

/// Imported price books; the newest is in force.
#[async_trait]
pub trait PriceBooks: Send + Sync {
    /// The id of the newest imported price book, if any (cheap: no text).
    async fn price_book_id(&self) -> Result<Option<i64>>;

    /// The newest imported price book.
    async fn price_book(&self) -> Result<Option<StoredPriceBook>>;

    /// Store a validated price book; it is in force from now on.
    async fn import_price_book(&self, name: &str, toml: &str) -> Result<i64>;
}

/// Account API keys, kept by hash only.
#[async_trait]
pub trait ApiKeys: Send + Sync {
    /// Store a new account key by its hash; returns its id.
    async fn create_key(&self, account: &str, prefix: &str, key_hash: &str) -> Result<i64>;

    /// Every key, newest first.
    async fn list_keys(&self) -> Result<Vec<ApiKey>>;

    /// Revoke a key; false when no active key has that id.
    async fn revoke_key(&self, id: i64) -> Result<bool>;

    /// The account an active key (by hash) belongs to.
    async fn key_account(&self, key_hash: &str) -> Result<Option<String>>;
}

/// The proxy's mappings from the SHA-256 of an Anthropic API key (hex,
/// lowercase) to the account its calls are billed to.
#[async_trait]
pub trait ProxyKeys: Send + Sync {
    /// Bind a key's hash to an account (replacing an earlier binding).
    async fn map_proxy_key(&self, key_sha256: &str, account: &str) -> Result<()>;

    /// Every mapping, by account.
    async fn proxy_keys(&self) -> Result<Vec<ProxyKey>>;

    /// Remove a mapping; false when there was none.
    async fn unmap_proxy_key(&self, key_sha256: &str) -> Result<bool>;

    /// The account a key's hash is bound to.
    async fn proxy_key_account(&self, key_sha256: &str) -> Result<Option<String>>;
}

/// Account plans (docs/plans.md), kept as set: the newest per account is in force.
#[async_trait]
pub trait Plans: Send + Sync {
    /// Store a validated plan; it is the account's plan from now on.
    async fn set_plan(&self, account: &str, toml: &str) -> Result<StoredPlan>;

    /// The account's plan in force, if it has one.
    async fn plan(&self, account: &str) -> Result<Option<StoredPlan>>;

    /// The account's plan as it was at `at` (UTC microseconds): what priced
    /// an invoice finalized then.
    async fn plan_as_of(&self, account: &str, at: i64) -> Result<Option<StoredPlan>>;

    /// Every account's plan in force, by account.
    async fn plans(&self) -> Result<Vec<StoredPlan>>;

    /// The newest plan row's id (0 when none): changes whenever a plan is set.
    async fn plans_id(&self) -> Result<i64>;
}

/// Prepaid credit (docs/plans.md): grants, the draws finalized invoices made on
/// them, low-balance thresholds and their alerts.
#[async_trait]
pub trait Credits: Send + Sync {
    async fn grant_credit(
        &self,
        account: &str,
        usd: Decimal,
        expires_on: Option<chrono::NaiveDate>,
        note: Option<&str>,
    ) -> Result<CreditGrant>;

    /// Every grant (voided ones too) of one account or all, by account and id.
    async fn credit_grants(&self, account: Option<&str>) -> Result<Vec<CreditGrant>>;

    /// Void a grant: what is left of it can no longer be drawn (draws made
    /// stand). None when no unvoided grant has that id.
    async fn void_credit(&self, id: i64) -> Result<Option<CreditGrant>>;

    /// The draws of finalized invoices, by account, period and grant.
    async fn credit_draws(&self, account: Option<&str>) -> Result<Vec<CreditDraw>>;

    /// Set the balance under which an account's low-balance alert fires.
    async fn set_low_balance(&self, account: &str, usd: Decimal) -> Result<()>;

    async fn low_balance_thresholds(&self) -> Result<Vec<(String, Decimal)>>;

    /// Record an alert unless that (account, funding level) has one; true
    /// when this call recorded it.
    async fn record_credit_alert(&self, alert: &CreditAlert) -> Result<bool>;

    async fn credit_alerts(&self, undelivered_only: bool) -> Result<Vec<CreditAlert>>;

    async fn mark_credit_alert_delivered(&self, account: &str, funded_usd: &str) -> Result<()>;
}

/// Billing details of the seller (party `""`) and of each account, kept as
/// set: the newest per party is in force.
#[async_trait]
pub trait BillingDetailsStore: Send + Sync {
    /// Store a party's details (JSON, validated); in force from now on.
    async fn set_details(&self, party: &str, json: &str) -> Result<()>;

    /// The party's details as they were at `at` (UTC microseconds; the
    /// current ones with `i64::MAX`).
    async fn details_as_of(&self, party: &str, at: i64) -> Result<Option<StoredDetails>>;
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
