//! SQLite backend: the zero-setup default.
//!
//! Tuning: WAL journal, `synchronous=FULL` (a commit is on disk before it is
//! acknowledged), a busy timeout so several processes can share the file,
//! `BEGIN IMMEDIATE` for writes (the write lock is taken up front, so a write
//! never fails half-way on lock upgrade), and one writer at a time inside the
//! process. Inserts are multi-row statements of [`ROWS_PER_STATEMENT`] rows.
//!
//! Records arriving out of time order (a backfill of several log files)
//! insert into every index at random places, so each commit rewrites most
//! index pages into the WAL. Three settings keep that affordable: 16 KiB
//! pages for new ledgers (a quarter of the writes of 4 KiB pages for the same
//! bytes), transactions of 10,000 lines, and a checkpoint every 64 MiB of WAL
//! (a page rewritten by several commits is copied back once).

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, Sqlite, SqlitePool, Transaction};

use super::containers::ContainerStateRow;
use super::containers::{ContainerDayDelta, ContainerDayKey, ContainerDimKey, ContainerState};
use super::pool::{PoolRef, Pooled};
use super::row::{Returned, TableRow, Value, insert_sql};
use super::write::{WriteTx, write_batch};
use super::{Backend, Result, WriteBatch, WriteOutcome, Writes};

/// 30 columns × 200 rows stays far below SQLite's 32,766 bound parameters.
const ROWS_PER_STATEMENT: usize = 200;

pub struct SqliteStore {
    pool: SqlitePool,
    writer: tokio::sync::Mutex<()>,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let url = if url.starts_with("sqlite:") {
            url.to_owned()
        } else {
            format!("sqlite://{url}")
        };
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            .page_size(16384)
            .pragma("cache_size", "-65536")
            .pragma("wal_autocheckpoint", "4096");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Ok(SqliteStore {
            pool,
            writer: tokio::sync::Mutex::new(()),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// A write transaction. SQLite has one writer at a time (`BEGIN IMMEDIATE`),
/// so the container states read with their owners cannot change before the
/// transaction writes them back: they are kept here instead of read twice.
struct Tx<'a, 'c>(
    &'a mut Transaction<'c, Sqlite>,
    BTreeMap<String, ContainerState>,
);

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>;

/// Execute `statement(n)` (a statement for `n` rows) once per `per_statement`
/// rows, binding each row with `bind`: multi-row statements are the cheap
/// way into SQLite.
async fn execute_chunked<'r, T: Sync>(
    conn: &mut sqlx::SqliteConnection,
    rows: &'r [T],
    per_statement: usize,
    statement: impl Fn(usize) -> String + Send + Sync,
    bind: impl Fn(SqliteQuery<'r>, &'r T) -> SqliteQuery<'r> + Send + Sync,
) -> Result<()> {
    for chunk in rows.chunks(per_statement) {
        let mut query = sqlx::query(AssertSqlSafe(statement(chunk.len())));
        for row in chunk {
            query = bind(query, row);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// `?, ?, …` for an `in (…)` list of `n` values.
fn list(n: usize) -> String {
    vec!["?"; n].join(",")
}

fn placeholders(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(","));
    vec![row; rows].join(",")
}

#[async_trait]
impl WriteTx for Tx<'_, '_> {
    const ROWS_PER_STATEMENT: usize = ROWS_PER_STATEMENT;

    async fn insert(&mut self, table: &str, rows: &[TableRow<'_>], then: &str) -> Result<Returned> {
        let columns = rows.first().map_or(0, Vec::len);
        let values = format!("values {}", placeholders(rows.len(), columns));
        let mut q = sqlx::query_as(AssertSqlSafe(insert_sql(table, rows, &values, then)));
        for (_, value) in rows.iter().flatten() {
            q = match *value {
                Value::Text(t) => q.bind(t),
                Value::Int(i) => q.bind(i),
                Value::Bool(b) => q.bind(b),
                Value::Bytes(b) => q.bind(b),
            };
        }
        Ok(q.fetch_all(&mut **self.0).await?)
    }

    fn rollup_shard(&self) -> i64 {
        0 // one writer: one shard
    }

    async fn container_owners(&mut self, ids: &[&str]) -> Result<HashMap<String, String>> {
        self.1.clear(); // a round reads afresh what earlier rounds wrote
        let mut owners = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "{} where container_id in ({})",
                super::sql::CONTAINER_STATES,
                list(chunk.len())
            );
            let mut q = sqlx::query_as::<_, ContainerStateRow>(AssertSqlSafe(sql));
            for c in chunk {
                q = q.bind(*c);
            }
            for row in q.fetch_all(&mut **self.0).await? {
                let (id, state) = row.into_state()?;
                owners.insert(id.clone(), state.account.clone());
                self.1.insert(id, state);
            }
        }
        Ok(owners)
    }

    async fn lock_containers(
        &mut self,
        claims: &[(&str, &str)],
    ) -> Result<BTreeMap<String, ContainerState>> {
        // The writer holds the database: states read with the owners are
        // current. Only the unclaimed are written here (a record that adds no
        // container time still makes its account the owner).
        let new: Vec<(&str, &str)> = claims
            .iter()
            .copied()
            .filter(|(c, _)| !self.1.contains_key(*c))
            .collect();
        execute_chunked(
            self.0,
            &new,
            ROWS_PER_STATEMENT,
            |n| {
                format!(
                    "insert into containers (container_id, account) values {}",
                    placeholders(n, 2)
                )
            },
            |q, (c, a)| q.bind(*c).bind(*a),
        )
        .await?;
        Ok(claims
            .iter()
            .map(|(c, a)| {
                let state = self
                    .1
                    .get(*c)
                    .cloned()
                    .unwrap_or_else(|| ContainerState::new(a));
                ((*c).to_owned(), state)
            })
            .collect())
    }

    async fn delete_records(&mut self, seqs: &[i64]) -> Result<()> {
        // Only a concurrent claimer calls for this, and SQLite has one
        // writer; complete all the same.
        for table in super::row::RECORD_TABLES {
            let statement = |n| format!("delete from {table} where seq in ({})", list(n));
            execute_chunked(self.0, seqs, ROWS_PER_STATEMENT, statement, |q, seq| {
                q.bind(*seq)
            })
            .await?;
        }
        Ok(())
    }

    async fn existing(&mut self, keys: &[&str]) -> Result<HashMap<String, (String, String)>> {
        let mut found = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "select record_key, account, content_hash from records where record_key in ({})",
                list(chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for k in chunk {
                q = q.bind(*k);
            }
            for row in q.fetch_all(&mut **self.0).await? {
                found.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
            }
        }
        Ok(found)
    }

    async fn save_containers(
        &mut self,
        states: &[(&str, &ContainerState)],
        days: &[(ContainerDayKey, ContainerDayDelta)],
        dims: &[(ContainerDimKey, ContainerDayDelta)],
    ) -> Result<()> {
        let statement = |n| {
            format!(
                "insert into containers ({}) values {} {}",
                super::sql::CONTAINER_STATE_COLUMNS,
                placeholders(n, 7),
                super::sql::CONTAINER_STATE_UPSERT
            )
        };
        execute_chunked(
            self.0,
            states,
            ROWS_PER_STATEMENT / 2,
            statement,
            |q, (id, c)| {
                q.bind(*id)
                    .bind(c.account.as_str())
                    .bind(c.first_at)
                    .bind(c.first_seq)
                    .bind(super::containers::encode_attribution(&c.attribution))
                    .bind(super::containers::encode_spans(&c.spans))
                    .bind(i64::from(c.exact))
            },
        )
        .await?;
        let statement = |n| {
            format!(
                "insert into container_days (account, day, shard, containers, execution_seconds, \
                 short_containers, short_seconds) values {} {}",
                placeholders(n, 7),
                super::sql::CONTAINER_DAYS_ADD
            )
        };
        execute_chunked(
            self.0,
            days,
            ROWS_PER_STATEMENT / 2,
            statement,
            |q, ((account, day), d)| {
                q.bind(account.as_str())
                    .bind(*day)
                    .bind(0i64) // one writer: one shard
                    .bind(d.containers)
                    .bind(d.execution_seconds)
                    .bind(d.short_containers)
                    .bind(d.short_seconds)
            },
        )
        .await?;
        let statement = |n| {
            format!(
                "insert into container_dim_days ({}) values {} {}",
                super::sql::CONTAINER_DIM_DAYS_COLUMNS,
                placeholders(n, 9),
                super::sql::CONTAINER_DIM_DAYS_ADD
            )
        };
        execute_chunked(
            self.0,
            dims,
            ROWS_PER_STATEMENT / 2,
            statement,
            |q, ((dim, day, account, value), d)| {
                q.bind(dim.as_str())
                    .bind(*day)
                    .bind(account.as_str())
                    .bind(value.as_str())
                    .bind(0i64)
                    .bind(d.containers)
                    .bind(d.execution_seconds)
                    .bind(d.short_containers)
                    .bind(d.short_seconds)
            },
        )
        .await
    }
}

impl Pooled for SqliteStore {
    fn pool(&self) -> PoolRef<'_> {
        PoolRef::Sqlite(&self.pool)
    }

    fn writer_lock(&self) -> Option<&tokio::sync::Mutex<()>> {
        Some(&self.writer)
    }
}

#[async_trait]
impl Writes for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    /// One writer, one fsync per commit: bigger transactions pay off.
    fn chunk_lines(&self) -> usize {
        10000
    }

    async fn migrate(&self) -> Result<()> {
        super::migrations::sqlite().run(&self.pool).await?;
        Ok(())
    }

    async fn write(&self, batch: &WriteBatch) -> Result<WriteOutcome> {
        let _one_writer = self.writer.lock().await;
        let now = crate::time::now_micros();
        let mut conn = self.pool.acquire().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
        let outcome = write_batch(&mut Tx(&mut tx, BTreeMap::new()), batch, now).await?;
        tx.commit().await?;
        if batch.holds_large_record() {
            // The page cache now holds the record's pages: let them go, so
            // each connection does not keep a large record's worth.
            sqlx::query("PRAGMA shrink_memory")
                .execute(&mut *conn)
                .await?;
        }
        Ok(outcome)
    }

    /// One writer: every record at or below the newest is committed.
    async fn cutoff_seq(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(super::sql::MAX_SEQ)
            .fetch_one(&self.pool)
            .await?)
    }
}
