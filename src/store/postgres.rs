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
use sqlx::{AssertSqlSafe, PgPool, Row, Transaction};

use super::containers::ContainerStateRow;
use super::containers::{ContainerDayDelta, ContainerDayKey, ContainerState};
use super::pool::{PoolRef, Pooled};
use super::sql::bind_rejection;
use super::write::{WriteTx, write_batch};
use super::{Backend, Result, RollupRow, StoreError, WriteBatch, WriteOutcome, Writes};
use crate::record::NewRejection;
use crate::record::{ExtraIteration, NewRecord};
use crate::time::Micros;

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

impl PostgresStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            // Writers in flight from the start: a new connection costs tens
            // of milliseconds, which the first requests should not wait for.
            .min_connections(PARALLEL_WRITES as u32)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(connect_options(url)?)
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

const INSERT_RECORDS: &str = "insert into records (record_key, account, kind, message_id, custom_id, model, \
    recorded_at, started_at, batch, files_preloaded, uses_code_execution, web_tools_20260209, container_id, \
    input_tokens, output_tokens, cache_creation_input_tokens, cache_write_5m_tokens, cache_write_1h_tokens, \
    cache_read_tokens, web_search_requests, web_fetch_requests, code_execution_requests, service_tier, \
    inference_geo, speed, content_hash, source, source_line, ingested_at) \
    select u.*, $29::bigint from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
    $7::bigint[], $8::bigint[], $9::bool[], $10::bool[], $11::bool[], $12::bool[], $13::text[], $14::bigint[], \
    $15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[], $19::bigint[], $20::bigint[], $21::bigint[], \
    $22::bigint[], $23::text[], $24::text[], $25::text[], $26::text[], $27::text[], $28::bigint[]) as u \
    on conflict (record_key) do nothing returning record_key, seq";

/// Column-wise copy of a chunk of records, for `unnest`.
#[derive(Default)]
struct Columns<'a> {
    key: Vec<&'a str>,
    account: Vec<&'a str>,
    kind: Vec<&'a str>,
    message_id: Vec<Option<&'a str>>,
    custom_id: Vec<Option<&'a str>>,
    model: Vec<Option<&'a str>>,
    recorded_at: Vec<i64>,
    started_at: Vec<Option<i64>>,
    batch: Vec<bool>,
    files_preloaded: Vec<bool>,
    uses_code_execution: Vec<bool>,
    web_tools: Vec<bool>,
    container_id: Vec<Option<&'a str>>,
    counters: [Vec<i64>; 9],
    service_tier: Vec<Option<&'a str>>,
    inference_geo: Vec<Option<&'a str>>,
    speed: Vec<Option<&'a str>>,
    content_hash: Vec<&'a str>,
    source: Vec<&'a str>,
    source_line: Vec<i64>,
}

impl<'a> Columns<'a> {
    fn of(records: &[&'a NewRecord]) -> Self {
        let mut c = Columns::default();
        for r in records {
            let u = &r.usage;
            c.key.push(&r.key);
            c.account.push(&r.account);
            c.kind.push(r.kind.as_str());
            c.message_id.push(r.message_id.as_deref());
            c.custom_id.push(r.custom_id.as_deref());
            c.model.push(r.model.as_deref());
            c.recorded_at.push(r.recorded_at);
            c.started_at.push(r.started_at);
            c.batch.push(r.batch);
            c.files_preloaded.push(r.files_preloaded);
            c.uses_code_execution.push(r.uses_code_execution);
            c.web_tools.push(r.web_tools_20260209);
            c.container_id.push(r.container_id.as_deref());
            push_row(&mut c.counters, u.counters());
            c.service_tier.push(r.service_tier.as_deref());
            c.inference_geo.push(r.inference_geo.as_deref());
            c.speed.push(r.speed.as_deref());
            c.content_hash.push(&r.content_hash);
            c.source.push(&r.origin.source);
            c.source_line.push(r.origin.line as i64);
        }
        c
    }
}

#[async_trait]
impl WriteTx for Tx<'_> {
    async fn container_owners(&mut self, ids: &[&str]) -> Result<HashMap<String, String>> {
        let rows = sqlx::query(
            "select container_id, account from containers where container_id = any($1)",
        )
        .bind(ids)
        .fetch_all(&mut **self.0)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
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
        for table in ["record_iterations", "record_bodies", "records"] {
            sqlx::query(AssertSqlSafe(format!(
                "delete from {table} where seq = any($1)"
            )))
            .bind(seqs)
            .execute(&mut **self.0)
            .await?;
        }
        Ok(())
    }

    async fn insert_records(
        &mut self,
        records: &[&NewRecord],
        now: Micros,
    ) -> Result<Vec<(String, i64)>> {
        let mut inserted = Vec::with_capacity(records.len());
        for chunk in records.chunks(ROWS_PER_STATEMENT) {
            let c = Columns::of(chunk);
            let mut q = sqlx::query(INSERT_RECORDS)
                .bind(c.key)
                .bind(c.account)
                .bind(c.kind)
                .bind(c.message_id)
                .bind(c.custom_id)
                .bind(c.model)
                .bind(c.recorded_at)
                .bind(c.started_at)
                .bind(c.batch)
                .bind(c.files_preloaded)
                .bind(c.uses_code_execution)
                .bind(c.web_tools)
                .bind(c.container_id);
            for col in c.counters {
                q = q.bind(col);
            }
            let rows = q
                .bind(c.service_tier)
                .bind(c.inference_geo)
                .bind(c.speed)
                .bind(c.content_hash)
                .bind(c.source)
                .bind(c.source_line)
                .bind(now)
                .fetch_all(&mut **self.0)
                .await?;
            for row in rows {
                inserted.push((row.try_get(0)?, row.try_get(1)?));
            }
        }
        Ok(inserted)
    }

    async fn existing(&mut self, keys: &[&str]) -> Result<HashMap<String, (String, String)>> {
        let rows = sqlx::query(
            "select record_key, account, content_hash from records where record_key = any($1)",
        )
        .bind(keys)
        .fetch_all(&mut **self.0)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?))))
            .collect()
    }

    async fn insert_bodies(&mut self, bodies: &[(i64, &str)]) -> Result<()> {
        // Not COPY: sqlx (0.9) leaves Nagle's algorithm on, and COPY sends its
        // data and its end as two writes with no answer between them, so the
        // second waits for the server's delayed ACK — 40 ms per transaction.
        // One `insert … unnest` is a single write and costs about the same.
        for chunk in bodies.chunks(ROWS_PER_STATEMENT) {
            let (seqs, raws): (Vec<i64>, Vec<&str>) = chunk.iter().copied().unzip();
            sqlx::query(
                "insert into record_bodies (seq, raw) select * from unnest($1::bigint[], $2::text[])",
            )
            .bind(seqs)
            .bind(raws)
            .execute(&mut **self.0)
            .await?;
        }
        Ok(())
    }

    async fn insert_iterations(&mut self, rows: &[(i64, i64, &ExtraIteration)]) -> Result<()> {
        let mut cols: [Vec<i64>; 9] = Default::default();
        let mut kinds = Vec::with_capacity(rows.len());
        let mut models = Vec::with_capacity(rows.len());
        for (seq, pos, it) in rows {
            let u = &it.usage;
            let [
                input,
                output,
                creation,
                write_5m,
                write_1h,
                read,
                searches,
                ..,
            ] = u.counters();
            let values = [
                *seq, *pos, input, output, creation, write_5m, write_1h, read, searches,
            ];
            push_row(&mut cols, values);
            kinds.push(it.kind.as_str());
            models.push(it.model.as_deref());
        }
        let [seq, pos, usage @ ..] = cols;
        let query = sqlx::query(
            "insert into record_iterations (seq, position, kind, model, input_tokens, output_tokens, \
             cache_creation_input_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, \
             web_search_requests) select * from unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], \
             $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[])",
        )
        .bind(seq)
        .bind(pos)
        .bind(kinds)
        .bind(models);
        execute_with_columns(self.0, query, usage).await
    }

    async fn add_rollups(&mut self, rows: &[RollupRow]) -> Result<()> {
        let mut accounts = Vec::with_capacity(rows.len());
        let mut models = Vec::with_capacity(rows.len());
        let mut ints: [Vec<i64>; 18] = Default::default();
        for (k, u, n, seq) in rows {
            accounts.push(k.account.as_str());
            models.push(k.model.as_str());
            let key = [
                k.day,
                k.kind,
                k.batch,
                k.fast,
                k.us,
                k.size_class,
                self.1,
                *n,
            ];
            push_row(&mut ints, key.into_iter().chain(u.counters()).chain([*seq]));
        }
        let [day, rest @ ..] = ints;
        let sql = format!(
            "insert into usage_rollup (account, day, model, kind, batch, fast, us, size_class, shard, records, \
             input_tokens, output_tokens, cache_creation_input_tokens, cache_write_5m_tokens, \
             cache_write_1h_tokens, cache_read_tokens, web_search_requests, web_fetch_requests, \
             code_execution_requests, max_seq) \
             select * from unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], \
             $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], \
             $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[], $19::bigint[], $20::bigint[]) \
             on conflict (account, day, model, kind, batch, fast, us, size_class, shard) do update set {}",
            super::sql::rollup_update()
        );
        // Columns in the order of the insert: account, day, model, then the rest.
        let query = sqlx::query(AssertSqlSafe(sql))
            .bind(accounts)
            .bind(day)
            .bind(models);
        execute_with_columns(self.0, query, rest).await
    }

    async fn save_containers(
        &mut self,
        states: &[(&str, &ContainerState)],
        days: &[(ContainerDayKey, ContainerDayDelta)],
    ) -> Result<()> {
        // One statement for both: the states as a writable CTE.
        let ids: Vec<&str> = states.iter().map(|(id, _)| *id).collect();
        let owners: Vec<&str> = states.iter().map(|(_, c)| c.account.as_str()).collect();
        let first: Vec<Option<i64>> = states.iter().map(|(_, c)| c.first_at).collect();
        let spans: Vec<String> = states
            .iter()
            .map(|(_, c)| super::containers::encode_spans(&c.spans))
            .collect();
        let exact: Vec<i64> = states.iter().map(|(_, c)| i64::from(c.exact)).collect();
        let accounts: Vec<&str> = days.iter().map(|((a, _), _)| a.as_str()).collect();
        let day: Vec<i64> = days.iter().map(|((_, d), _)| *d).collect();
        let shards: Vec<i64> = vec![self.1; days.len()];
        let n: Vec<i64> = days.iter().map(|(_, d)| d.containers).collect();
        let secs: Vec<i64> = days.iter().map(|(_, d)| d.execution_seconds).collect();
        let short: Vec<i64> = days.iter().map(|(_, d)| d.short_containers).collect();
        let short_secs: Vec<i64> = days.iter().map(|(_, d)| d.short_seconds).collect();
        let sql = format!(
            "with states as (insert into containers (container_id, account, first_at, spans, exact) \
             select * from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[]) {}) \
             insert into container_days (account, day, shard, containers, execution_seconds, \
             short_containers, short_seconds) select * from unnest($6::text[], $7::bigint[], \
             $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[]) {}",
            super::sql::CONTAINER_STATE_UPSERT,
            super::sql::CONTAINER_DAYS_ADD
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(ids)
            .bind(owners)
            .bind(first)
            .bind(spans)
            .bind(exact)
            .bind(accounts)
            .bind(day)
            .bind(shards)
            .bind(n)
            .bind(secs)
            .bind(short)
            .bind(short_secs)
            .execute(&mut **self.0)
            .await?;
        Ok(())
    }

    async fn quarantine(&mut self, r: &NewRejection, now: Micros) -> Result<i64> {
        let id = bind_rejection!(sqlx::query(super::sql::QUARANTINE), r, now)
            .fetch_one(&mut **self.0)
            .await?
            .try_get(0)?;
        Ok(id)
    }
}

/// Append one row's values to column-wise vectors (for `unnest`).
fn push_row<const N: usize>(columns: &mut [Vec<i64>; N], values: impl IntoIterator<Item = i64>) {
    for (column, value) in columns.iter_mut().zip(values) {
        column.push(value);
    }
}

/// Bind the integer `columns` after what `query` has bound, and execute it.
async fn execute_with_columns<'q>(
    tx: &mut Transaction<'static, Postgres>,
    mut query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    columns: impl IntoIterator<Item = Vec<i64>>,
) -> Result<()> {
    for column in columns {
        query = query.bind(column);
    }
    query.execute(&mut **tx).await?;
    Ok(())
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
