//! PostgreSQL backend: for several `tally serve` processes sharing one ledger.
//!
//! Rows go in as one `insert … select from unnest(arrays)` per chunk: one
//! round trip and one prepared plan whatever the chunk size. Uniqueness is
//! enforced by the table's keys, so concurrent writers in other processes are
//! safe; a transaction that loses a deadlock or serialization race is retried
//! whole (nothing of it was committed).

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode, Postgres};
use sqlx::{AssertSqlSafe, PgPool, Transaction};

use super::containers::ContainerStateRow;
use super::containers::{ContainerDayDelta, ContainerDayKey, ContainerDimKey, ContainerState};
use super::pool::{PoolRef, Pooled};
use super::row::{Returned, TableRow, Value, insert_sql};
use super::write::{WriteTx, write_batch};
use super::{Backend, Result, StoreError, WriteBatch, WriteOutcome, Writes};

const ROWS_PER_STATEMENT: usize = 2000;
const WRITE_ATTEMPTS: usize = 5;
/// Concurrent write transactions per process: enough to keep the server busy
/// while the client parses the next chunk.
const PARALLEL_WRITES: usize = 4;

pub struct PostgresStore {
    pool: PgPool,
    /// Roll-up shard of the next transaction: concurrent writers add to
    /// different roll-up rows instead of queueing on one.
    next_shard: std::sync::atomic::AtomicI64,
}

/// The advisory lock every write transaction holds shared, and a finalizing
/// cutoff exclusively (see [`Store::cutoff_seq`]).
const WRITERS_LOCK: i64 = 0x7461_6c6c_7900;

/// Roll-up shards per key (a few more than the writers in flight).
const ROLLUP_SHARDS: i64 = 8;

/// Memory a connection's sorts and hashes may use before spilling to disk:
/// a month split by a dimension groups tens of thousands of roll-up rows,
/// which PostgreSQL's default (4 MB) sorts on disk. Set once a connection is
/// open (a startup option would be refused by poolers such as PgBouncer),
/// unless the URL's `options` set it.
const WORK_MEM: &str = "set work_mem = '32MB'";

impl PostgresStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let options = connect_options(url)?;
        let set_work_mem = !options
            .get_options()
            .is_some_and(|o| o.contains("work_mem"));
        let pool = PgPoolOptions::new()
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if set_work_mem {
                        sqlx::query(WORK_MEM).execute(conn).await?;
                    }
                    Ok(())
                })
            })
            .max_connections(8)
            // Writers in flight from the start: a new connection costs tens
            // of milliseconds, which the first requests should not wait for.
            .min_connections(PARALLEL_WRITES as u32)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        Ok(PostgresStore {
            pool,
            next_shard: std::sync::atomic::AtomicI64::new(0),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The URL's options, with one default of tally's own: no TLS to a server on
/// this machine unless the URL (or `PGSSLMODE`) asks for it.
///
/// TLS on loopback protects nothing and costs every byte twice; worse, sqlx
/// 0.9 leaves Nagle's algorithm on and hands each 16 KiB TLS record to the
/// kernel as its own write, so a statement of more than one record waited
/// for the server's delayed ACK (40 ms) before its last record went out.
/// Plain TCP sends a statement in one write. `sslmode=require` (or `prefer`)
/// in the URL keeps TLS.
fn connect_options(url: &str) -> Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url)?;
    let says_ssl = url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|p| p.starts_with("sslmode=") || p.starts_with("ssl-mode="))
    }) || std::env::var_os("PGSSLMODE").is_some_and(|v| !v.is_empty());
    let host = options
        .get_host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    Ok(if loopback && !says_ssl {
        options.ssl_mode(PgSslMode::Disable)
    } else {
        options
    })
}

struct Tx<'a>(&'a mut Transaction<'static, Postgres>, i64);

/// `$1::text[], $2::bigint[], …`: one array parameter per column of `rows`.
fn unnest_parameters(rows: &[TableRow<'_>]) -> String {
    let arrays: Vec<String> = rows
        .first()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, (_, value))| {
            let kind = match value {
                Value::Text(_) => "text",
                Value::Int(_) => "bigint",
                Value::Bool(_) => "bool",
                Value::Bytes(_) => "bytea",
            };
            format!("${}::{kind}[]", i + 1)
        })
        .collect();
    arrays.join(", ")
}

type InsertQuery<'q> =
    sqlx::query::QueryAs<'q, Postgres, (String, i64), sqlx::postgres::PgArguments>;

/// Column `i` of `rows` as one typed array, bound for `unnest`.
fn bind_column<'q>(query: InsertQuery<'q>, rows: &[TableRow<'q>], i: usize) -> InsertQuery<'q> {
    let column = rows.iter().filter_map(|row| row.get(i).map(|(_, v)| *v));
    match rows.first().and_then(|row| row.get(i)) {
        Some((_, Value::Bool(_))) => query.bind(column.map(Value::flag).collect::<Vec<_>>()),
        Some((_, Value::Int(_))) => query.bind(column.map(Value::int).collect::<Vec<_>>()),
        Some((_, Value::Bytes(_))) => query.bind(column.map(Value::bytes).collect::<Vec<_>>()),
        _ => query.bind(column.map(Value::text).collect::<Vec<_>>()),
    }
}

#[async_trait]
impl WriteTx for Tx<'_> {
    const ROWS_PER_STATEMENT: usize = ROWS_PER_STATEMENT;

    // Not COPY: sqlx (0.9) leaves Nagle's algorithm on, and COPY sends its
    // data and its end as two writes with no answer between them, so the
    // second waits for the server's delayed ACK — 40 ms per transaction.
    // One `insert … unnest` is a single write and costs about the same.
    async fn insert(&mut self, table: &str, rows: &[TableRow<'_>], then: &str) -> Result<Returned> {
        let columns = rows.first().map_or(0, Vec::len);
        let values = format!("select * from unnest({})", unnest_parameters(rows));
        let mut q = sqlx::query_as(AssertSqlSafe(insert_sql(table, rows, &values, then)));
        for i in 0..columns {
            q = bind_column(q, rows, i);
        }
        Ok(q.fetch_all(&mut **self.0).await?)
    }

    fn rollup_shard(&self) -> i64 {
        self.1
    }

    async fn container_owners(&mut self, ids: &[&str]) -> Result<HashMap<String, String>> {
        let sql = "select container_id, account from containers where container_id = any($1)";
        let owners: Vec<(String, String)> = sqlx::query_as(sql)
            .bind(ids)
            .fetch_all(&mut **self.0)
            .await?;
        Ok(owners.into_iter().collect())
    }

    async fn lock_containers(
        &mut self,
        claims: &[(&str, &str)],
    ) -> Result<BTreeMap<String, ContainerState>> {
        // The upsert claims what is unclaimed, waits for a concurrent
        // claimer to commit, and locks every row (in id order, as every
        // writer does: no deadlock between them) until this commit.
        let (ids, accounts): (Vec<&str>, Vec<&str>) = claims.iter().copied().unzip();
        let sql = format!(
            "insert into containers (container_id, account) select * from unnest($1::text[], $2::text[]) {}",
            super::sql::CONTAINER_CLAIM_RETURNING
        );
        let rows = sqlx::query_as::<_, ContainerStateRow>(AssertSqlSafe(sql))
            .bind(ids)
            .bind(accounts)
            .fetch_all(&mut **self.0)
            .await?;
        rows.into_iter()
            .map(ContainerStateRow::into_state)
            .collect()
    }

    async fn delete_records(&mut self, seqs: &[i64]) -> Result<()> {
        for table in super::row::RECORD_TABLES {
            sqlx::query(AssertSqlSafe(format!(
                "delete from {table} where seq = any($1)"
            )))
            .bind(seqs)
            .execute(&mut **self.0)
            .await?;
        }
        Ok(())
    }

    async fn existing(&mut self, keys: &[&str]) -> Result<HashMap<String, (String, String)>> {
        let sql =
            "select record_key, account, content_hash from records where record_key = any($1)";
        let found: Vec<(String, String, String)> = sqlx::query_as(sql)
            .bind(keys)
            .fetch_all(&mut **self.0)
            .await?;
        Ok(found.into_iter().map(|(k, a, h)| (k, (a, h))).collect())
    }

    async fn save_containers(
        &mut self,
        states: &[(&str, &ContainerState)],
        days: &[(ContainerDayKey, ContainerDayDelta)],
        dims: &[(ContainerDimKey, ContainerDayDelta)],
    ) -> Result<()> {
        // One statement for all three: the states and the per-dimension sums
        // as writable CTEs.
        let ids: Vec<&str> = states.iter().map(|(id, _)| *id).collect();
        let owners: Vec<&str> = states.iter().map(|(_, c)| c.account.as_str()).collect();
        let first: Vec<Option<i64>> = states.iter().map(|(_, c)| c.first_at).collect();
        let first_seq: Vec<Option<i64>> = states.iter().map(|(_, c)| c.first_seq).collect();
        let attribution: Vec<String> = states
            .iter()
            .map(|(_, c)| super::containers::encode_attribution(&c.attribution))
            .collect();
        let spans: Vec<String> = states
            .iter()
            .map(|(_, c)| super::containers::encode_spans(&c.spans))
            .collect();
        let exact: Vec<i64> = states.iter().map(|(_, c)| i64::from(c.exact)).collect();
        let accounts: Vec<&str> = days.iter().map(|((a, _), _)| a.as_str()).collect();
        let day: Vec<i64> = days.iter().map(|((_, d), _)| *d).collect();
        let sums = |rows: Vec<&ContainerDayDelta>| {
            (
                rows.iter().map(|d| d.containers).collect::<Vec<i64>>(),
                rows.iter()
                    .map(|d| d.execution_seconds)
                    .collect::<Vec<i64>>(),
                rows.iter()
                    .map(|d| d.short_containers)
                    .collect::<Vec<i64>>(),
                rows.iter().map(|d| d.short_seconds).collect::<Vec<i64>>(),
            )
        };
        let (n, secs, short, short_secs) = sums(days.iter().map(|(_, d)| d).collect());
        let dim_names: Vec<&str> = dims.iter().map(|((dim, ..), _)| dim.as_str()).collect();
        let dim_days: Vec<i64> = dims.iter().map(|((_, d, ..), _)| *d).collect();
        let dim_accounts: Vec<&str> = dims.iter().map(|((_, _, a, _), _)| a.as_str()).collect();
        let dim_values: Vec<&str> = dims.iter().map(|((.., v), _)| v.as_str()).collect();
        let (dim_n, dim_secs, dim_short, dim_short_secs) =
            sums(dims.iter().map(|(_, d)| d).collect());
        let sql = format!(
            "with states as (insert into containers ({}) \
             select * from unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], \
             $6::text[], $7::bigint[]) {}), \
             by_dim as (insert into container_dim_days ({}) select d, dd, a, v, $8::bigint, n, s, sn, ss \
             from unnest($9::text[], $10::bigint[], $11::text[], $12::text[], $13::bigint[], \
             $14::bigint[], $15::bigint[], $16::bigint[]) as t(d, dd, a, v, n, s, sn, ss) {}) \
             insert into container_days (account, day, shard, containers, execution_seconds, \
             short_containers, short_seconds) select a, dd, $8::bigint, n, s, sn, ss from \
             unnest($17::text[], $18::bigint[], $19::bigint[], $20::bigint[], $21::bigint[], \
             $22::bigint[]) as t(a, dd, n, s, sn, ss) {}",
            super::sql::CONTAINER_STATE_COLUMNS,
            super::sql::CONTAINER_STATE_UPSERT,
            super::sql::CONTAINER_DIM_DAYS_COLUMNS,
            super::sql::CONTAINER_DIM_DAYS_ADD,
            super::sql::CONTAINER_DAYS_ADD
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(ids)
            .bind(owners)
            .bind(first)
            .bind(first_seq)
            .bind(attribution)
            .bind(spans)
            .bind(exact)
            .bind(self.1)
            .bind(dim_names)
            .bind(dim_days)
            .bind(dim_accounts)
            .bind(dim_values)
            .bind(dim_n)
            .bind(dim_secs)
            .bind(dim_short)
            .bind(dim_short_secs)
            .bind(accounts)
            .bind(day)
            .bind(n)
            .bind(secs)
            .bind(short)
            .bind(short_secs)
            .execute(&mut **self.0)
            .await?;
        Ok(())
    }
}

/// Deadlocks and serialization failures: the whole transaction may be retried.
fn is_retryable(e: &StoreError) -> bool {
    match e {
        StoreError::Database(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("40P01") | Some("40001"))
        }
        _ => false,
    }
}

impl PostgresStore {
    async fn write_once(&self, batch: &WriteBatch) -> Result<WriteOutcome> {
        let now = crate::time::now_micros();
        let mut tx = self.pool.begin().await?;
        // Held until commit: a finalizing cutoff waits for this write.
        sqlx::query("select pg_advisory_xact_lock_shared($1)")
            .bind(WRITERS_LOCK)
            .execute(&mut *tx)
            .await?;
        let shard = self
            .next_shard
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .rem_euclid(ROLLUP_SHARDS);
        let outcome = write_batch(&mut Tx(&mut tx, shard), batch, now).await?;
        if batch.holds_large_record() {
            // The connection's buffers grew to the record's size: give that
            // back, so each pooled connection does not keep it.
            sqlx::Connection::shrink_buffers(&mut *tx);
        }
        tx.commit().await?;
        Ok(outcome)
    }
}

impl Pooled for PostgresStore {
    fn pool(&self) -> PoolRef<'_> {
        PoolRef::Postgres(&self.pool)
    }
}

#[async_trait]
impl Writes for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn max_parallel_writes(&self) -> usize {
        PARALLEL_WRITES
    }

    async fn migrate(&self) -> Result<()> {
        super::migrations::postgres().run(&self.pool).await?;
        Ok(())
    }

    async fn write(&self, batch: &WriteBatch) -> Result<WriteOutcome> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.write_once(batch).await {
                Err(e) if attempt < WRITE_ATTEMPTS && is_retryable(&e) => {
                    tracing::debug!(attempt, "retrying a write that lost a lock race: {e}");
                    tokio::time::sleep(Duration::from_millis(10 * attempt as u64)).await;
                }
                other => return other,
            }
        }
    }

    async fn compact_rollups(&self) -> Result<()> {
        for table in super::sql::rollup_tables() {
            let fold = super::sql::fold_shards_sql(&table);
            let days: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
                "select distinct day from {} where shard <> {}",
                table.name,
                super::sql::FOLDED_SHARD
            )))
            .fetch_all(&self.pool)
            .await?;
            if days.is_empty() {
                continue; // nothing to fold, nothing to vacuum
            }
            for day in days {
                // Two servers folding the same day may deadlock on the
                // folded rows: one of them tries again.
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let folded = sqlx::query(AssertSqlSafe(fold.clone()))
                        .bind(day)
                        .execute(&self.pool)
                        .await
                        .map_err(StoreError::from);
                    match folded {
                        Err(e) if attempt < WRITE_ATTEMPTS && is_retryable(&e) => {
                            tokio::time::sleep(Duration::from_millis(10 * attempt as u64)).await;
                        }
                        other => {
                            other?;
                            break;
                        }
                    }
                }
            }
            // The deleted rows' space back, and statistics for the planner.
            sqlx::query(AssertSqlSafe(format!("vacuum (analyze) {}", table.name)))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    async fn cutoff_seq(&self) -> Result<i64> {
        // Every writer holds the shared lock for its whole transaction (and
        // takes its sequence numbers under it): the exclusive lock waits
        // for those in flight, and writers after it number above the cutoff.
        let mut tx = self.pool.begin().await?;
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(WRITERS_LOCK)
            .execute(&mut *tx)
            .await?;
        let seq: i64 = sqlx::query_scalar(super::sql::MAX_SEQ)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(url: &str) -> PgSslMode {
        connect_options(url)
            .map(|o| o.get_ssl_mode())
            .unwrap_or(PgSslMode::Prefer)
    }

    #[test]
    fn no_tls_to_loopback_unless_asked() {
        if std::env::var_os("PGSSLMODE").is_some() {
            return; // the environment decides then
        }
        for url in [
            "postgres://u@127.0.0.1:5432/db",
            "postgres://u@localhost/db",
            "postgres://u@[::1]:5432/db",
        ] {
            assert!(matches!(mode(url), PgSslMode::Disable), "{url}");
        }
        assert!(matches!(
            mode("postgres://u@127.0.0.1/db?sslmode=require"),
            PgSslMode::Require
        ));
        assert!(matches!(
            mode("postgres://u@db.example.com/db"),
            PgSslMode::Prefer
        ));
    }
}
