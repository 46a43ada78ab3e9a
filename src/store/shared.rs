//! The role traits whose SQL is the same on both backends, implemented once
//! for every [`Pooled`] store. Rows map through `FromRow` structs; a row
//! type differs from the public one only where the database spells a value
//! differently (an amount kept as text, a time as microseconds, a flag as a
//! number).

use std::collections::HashMap;

use async_trait::async_trait;
use rust_decimal::Decimal;
use sqlx::AssertSqlSafe;

use super::pool::{PoolRef, Pooled, on_pool};
use super::sql;
use super::{
    Budget, BudgetAlert, Budgets, ContainerDayRow, ContainerDimDayRow, ContainerRecord, CreditDraw,
    FiguresVersion, FinalizedInvoice, FinalizedRef, FrozenDocuments, Invoices, LedgerCounts,
    PriceBooks, Rejected, RejectedLines, Result, StoreError, StoredPriceBook, StoredRecord,
    UsageGroup, UsageQuery, UsageReads,
};
use crate::record::Dimension;
use crate::record::{LineError, RateKey, RejectReason};
use crate::time::{Micros, now_micros, rfc3339};

/// An amount kept as exact decimal text.
pub(super) fn money(text: &str, what: &str) -> Result<Decimal> {
    text.parse()
        .map_err(|e| StoreError::Invalid(format!("{what} {text:?} in the database: {e}")))
}

/// The rows of `sql`, whose one parameter `$1` is `key`.
async fn rows_where<T>(pool: PoolRef<'_>, sql: &'static str, key: &str) -> Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    Ok(on_pool!(pool, |p| {
        sqlx::query_as(sql).bind(key).fetch_all(p).await?
    }))
}

/// Waits for the in-process writer lock where the backend has one.
async fn one_writer<S: Pooled>(store: &S) -> Option<tokio::sync::MutexGuard<'_, ()>> {
    match store.writer_lock() {
        Some(lock) => Some(lock.lock().await),
        None => None,
    }
}

// ---- usage reads ---------------------------------------------------------

#[derive(sqlx::FromRow)]
struct UsageGroupRow {
    account: String,
    model: Option<String>,
    day: i64,
    batch: i64,
    fast: i64,
    us: i64,
    bucket: i64,
    refusal: String,
    records: i64,
    #[sqlx(flatten)]
    usage: crate::record::Usage,
    #[sqlx(flatten)]
    values: DimensionValues,
}

/// The `v0` … `v3` columns of a grouped read (a roll-up read selects only
/// those it has: fewer columns to decode per row).
#[derive(sqlx::FromRow)]
struct DimensionValues {
    #[sqlx(default)]
    v0: Option<String>,
    #[sqlx(default)]
    v1: Option<String>,
    #[sqlx(default)]
    v2: Option<String>,
    #[sqlx(default)]
    v3: Option<String>,
}

impl DimensionValues {
    fn none() -> DimensionValues {
        DimensionValues {
            v0: None,
            v1: None,
            v2: None,
            v3: None,
        }
    }

    /// The first `n` values (one per dimension asked for).
    fn take(self, n: usize) -> Vec<Option<String>> {
        let mut all = vec![self.v0, self.v1, self.v2, self.v3];
        all.truncate(n);
        all
    }
}

impl From<UsageGroupRow> for UsageGroup {
    fn from(r: UsageGroupRow) -> Self {
        UsageGroup {
            account: r.account,
            rate: RateKey {
                model: r.model,
                day: r.day,
                batch: r.batch != 0,
                fast: r.fast != 0,
                us: r.us != 0,
                bucket: r.bucket,
                refusal: crate::record::Refusal::from_column(&r.refusal),
            },
            records: r.records,
            usage: r.usage,
            values: Vec::new(),
        }
    }
}

/// Token usage (or extra iterations) from the roll-ups when they can answer
/// (no dimension, or one the dimension roll-up keeps), else summed from the
/// records.
async fn usage_query(
    pool: PoolRef<'_>,
    q: &UsageQuery,
    iterations: bool,
) -> Result<Vec<UsageGroup>> {
    let rollup_dim = match q.dims.as_slice() {
        [] => Some(None),
        [d] => d.rollup_name().map(Some),
        _ => None,
    };
    if let (true, Some(dim)) = (
        q.use_rollup && super::rollup_covers(&q.thresholds),
        rollup_dim,
    ) {
        let Some(dim) = dim else {
            return rollup_read(pool, q, iterations, None).await;
        };
        // Each value's groups; the records without the dimension are what
        // is left of the totals (read second: a record committed between
        // the two reads is then in the totals, never only in a value).
        let valued = rollup_read(pool, q, iterations, Some(&dim)).await?;
        let all = rollup_read(pool, q, iterations, None).await?;
        let mut rest: Vec<UsageGroup> = all;
        let mut index: HashMap<(String, RateKey), usize> = HashMap::with_capacity(rest.len());
        for (i, g) in rest.iter_mut().enumerate() {
            g.values = vec![None];
            index.insert((g.account.clone(), g.rate.clone()), i);
        }
        for g in &valued {
            let total = index
                .get(&(g.account.clone(), g.rate.clone()))
                .and_then(|&i| rest.get_mut(i));
            if let Some(total) = total {
                total.records -= g.records;
                total.usage -= &g.usage;
            }
        }
        let mut groups = valued;
        groups.extend(
            rest.into_iter()
                .filter(|g| g.records != 0 || g.usage != crate::record::Usage::default()),
        );
        return Ok(groups);
    }
    let sql = sql::usage_sql(q.thresholds.len(), iterations, q.account.is_some(), &q.dims);
    let rows: Vec<UsageGroupRow> = on_pool!(pool, |p| {
        let mut query = sqlx::query_as(AssertSqlSafe(sql))
            .bind(q.from)
            .bind(q.to)
            .bind(q.account.as_deref())
            .bind(q.max_seq);
        for t in &q.thresholds {
            query = query.bind(*t);
        }
        query.fetch_all(p).await?
    });
    let n = q.dims.len();
    Ok(rows
        .into_iter()
        .map(|mut r| {
            let values = std::mem::replace(&mut r.values, DimensionValues::none());
            let mut g = UsageGroup::from(r);
            g.values = values.take(n);
            g
        })
        .collect())
}

/// Usage groups from `usage_rollup`, or by one dimension's values from
/// `usage_dim_rollup`.
async fn rollup_read(
    pool: PoolRef<'_>,
    q: &UsageQuery,
    iterations: bool,
    dim: Option<&str>,
) -> Result<Vec<UsageGroup>> {
    let (first_day, end_day) = crate::time::day_range(q.from, q.to);
    let sql = match dim {
        Some(_) => sql::dim_rollup_sql(q.account.is_some()),
        None => sql::rollup_sql(q.account.is_some()),
    };
    let rows: Vec<UsageGroupRow> = on_pool!(pool, |p| {
        let mut query = sqlx::query_as(AssertSqlSafe(sql.clone()))
            .bind(i64::from(iterations))
            .bind(first_day)
            .bind(end_day)
            .bind(q.account.as_deref());
        if let Some(d) = dim {
            query = query.bind(d);
        }
        query.fetch_all(p).await?
    });
    Ok(rows
        .into_iter()
        .map(|mut r| {
            let values = std::mem::replace(&mut r.values, DimensionValues::none());
            let mut g = UsageGroup::from(r);
            g.rate.bucket = super::bucket_of_class(g.rate.bucket, &q.thresholds);
            if dim.is_some() {
                g.values = values.take(1);
            }
            g
        })
        .collect())
}

/// A container record with its dimension values.
#[derive(sqlx::FromRow)]
struct ContainerRecordRow {
    #[sqlx(flatten)]
    record: ContainerRecord,
    #[sqlx(flatten)]
    values: DimensionValues,
}

/// Container records selected by `sql` (see [`sql::container_records_sql`]),
/// grouped by container, with the first `dims` values; `max_seq` is bound
/// as `$3` when the query has it.
async fn container_records(
    pool: PoolRef<'_>,
    sql: String,
    (from, to, max_seq): (Micros, Micros, Option<i64>),
    dims: usize,
) -> Result<Vec<ContainerRecord>> {
    let rows: Vec<ContainerRecordRow> = on_pool!(pool, |p| {
        let mut query = sqlx::query_as(AssertSqlSafe(sql.clone()))
            .bind(from)
            .bind(to);
        if let Some(seq) = max_seq {
            query = query.bind(seq);
        }
        query.fetch_all(p).await?
    });
    let mut records: Vec<ContainerRecord> = rows
        .into_iter()
        .map(|r| ContainerRecord {
            values: r.values.take(dims),
            ..r.record
        })
        .collect();
    // Read in time order (an index-only scan); grouped by container here.
    records.sort_unstable_by(|a, b| {
        (&a.container_id, a.recorded_at, a.seq).cmp(&(&b.container_id, b.recorded_at, b.seq))
    });
    Ok(records)
}

#[async_trait]
impl<S: Pooled> UsageReads for S {
    async fn record(&self, key: &str) -> Result<Option<StoredRecord>> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_as(sql::RECORD_GET)
                .bind(key)
                .fetch_optional(p)
                .await?
        }))
    }

    async fn counts(&self) -> Result<LedgerCounts> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_as(sql::COUNTS).fetch_one(p).await?
        }))
    }

    async fn usage_groups(&self, q: &UsageQuery) -> Result<Vec<UsageGroup>> {
        usage_query(self.pool(), q, false).await
    }

    async fn iteration_groups(&self, q: &UsageQuery) -> Result<Vec<UsageGroup>> {
        usage_query(self.pool(), q, true).await
    }

    async fn container_records(
        &self,
        from: Micros,
        to: Micros,
        max_seq: i64,
        dims: &[Dimension],
    ) -> Result<Vec<ContainerRecord>> {
        let sql = sql::container_records_sql(dims);
        container_records(self.pool(), sql, (from, to, Some(max_seq)), dims.len()).await
    }

    async fn container_days(&self, from_day: i64, to_day: i64) -> Result<Vec<ContainerDayRow>> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_as(sql::CONTAINER_DAYS)
                .bind(from_day)
                .bind(to_day)
                .fetch_all(p)
                .await?
        }))
    }

    async fn container_dim_days(
        &self,
        dim: &str,
        from_day: i64,
        to_day: i64,
    ) -> Result<Vec<ContainerDimDayRow>> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_as(sql::CONTAINER_DIM_DAYS)
                .bind(dim)
                .bind(from_day)
                .bind(to_day)
                .fetch_all(p)
                .await?
        }))
    }

    async fn inexact_container_records(
        &self,
        from: Micros,
        to: Micros,
        dims: &[Dimension],
    ) -> Result<Vec<ContainerRecord>> {
        let sql = sql::inexact_container_records_sql(dims);
        container_records(self.pool(), sql, (from, to, None), dims.len()).await
    }

    async fn record_counts(&self, q: &UsageQuery) -> Result<Vec<(String, i64)>> {
        let account = q.account.as_deref();
        Ok(if q.use_rollup {
            let (first_day, end_day) = crate::time::day_range(q.from, q.to);
            let sql = match account {
                Some(_) => sql::ROLLUP_COUNTS_ONE,
                None => sql::ROLLUP_COUNTS_ALL,
            };
            on_pool!(self.pool(), |p| {
                sqlx::query_as(sql)
                    .bind(account)
                    .bind(first_day)
                    .bind(end_day)
                    .fetch_all(p)
                    .await?
            })
        } else {
            let sql = match account {
                Some(_) => sql::RECORD_COUNTS_ONE,
                None => sql::RECORD_COUNTS_ALL,
            };
            on_pool!(self.pool(), |p| {
                sqlx::query_as(sql)
                    .bind(account)
                    .bind(q.from)
                    .bind(q.to)
                    .bind(q.max_seq)
                    .fetch_all(p)
                    .await?
            })
        })
    }

    async fn has_records(&self, account: &str) -> Result<bool> {
        let found: Option<i64> = on_pool!(self.pool(), |p| {
            sqlx::query_scalar(sql::HAS_RECORDS)
                .bind(account)
                .fetch_optional(p)
                .await?
        });
        Ok(found.is_some())
    }

    async fn account_days(&self) -> Result<Vec<(String, i64, i64)>> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_as(sql::ACCOUNT_DAYS).fetch_all(p).await?
        }))
    }

    async fn newest_seq_in_days(&self, first_day: i64, end_day: i64) -> Result<i64> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_scalar(
                "select cast(coalesce(max(max_seq), 0) as bigint) from usage_rollup \
                 where day >= $1 and day < $2",
            )
            .bind(first_day)
            .bind(end_day)
            .fetch_one(p)
            .await?
        }))
    }

    async fn max_seq(&self) -> Result<i64> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_scalar(sql::MAX_SEQ).fetch_one(p).await?
        }))
    }

    async fn figures_version(&self) -> Result<FiguresVersion> {
        type Row = (i64, i64, i64, i64, i64, i64, i64);
        let (max_seq, finalized, price_book, plans, grants, voids, details): Row =
            on_pool!(self.pool(), |p| {
                sqlx::query_as(
                    "select cast(coalesce((select max(seq) from records), 0) as bigint), \
                     cast((select count(*) from invoices) as bigint), \
                     cast(coalesce((select max(id) from price_books), 0) as bigint), \
                     cast(coalesce((select max(id) from account_plans), 0) as bigint), \
                     cast(coalesce((select max(id) from credit_grants), 0) as bigint), \
                     cast((select count(voided_at) from credit_grants) as bigint), \
                     cast(coalesce((select max(id) from billing_details), 0) as bigint)",
                )
                .fetch_one(p)
                .await?
            });
        Ok(FiguresVersion {
            max_seq,
            finalized,
            price_book,
            plans,
            credit: (grants, voids),
            details,
        })
    }

    async fn any_tags(&self) -> Result<bool> {
        let n: i64 = on_pool!(self.pool(), |p| {
            sqlx::query_scalar(
                "select cast(count(*) as bigint) from (select 1 from record_tags limit 1) t",
            )
            .fetch_one(p)
            .await?
        });
        Ok(n > 0)
    }

    async fn ping(&self) -> Result<()> {
        on_pool!(self.pool(), |p| {
            sqlx::query("select 1").execute(p).await?;
        });
        Ok(())
    }
}

// ---- rejected lines ------------------------------------------------------

#[derive(sqlx::FromRow)]
struct RejectedRow {
    id: i64,
    raw: Vec<u8>,
    reason: String,
    message: String,
    line_number: Option<i64>,
    column_number: Option<i64>,
    field: Option<String>,
    source: String,
    account_default: Option<String>,
    recorded_at_default: Option<i64>,
    first_seen: i64,
    last_seen: i64,
    occurrences: i64,
    status: String,
}

impl From<RejectedRow> for Rejected {
    fn from(r: RejectedRow) -> Self {
        let error = LineError {
            reason: RejectReason::parse(&r.reason).unwrap_or(RejectReason::Invalid),
            message: r.message,
            line: r.line_number.map(|v| v as u64),
            column: r.column_number.map(|v| v as u64),
            field: r.field.clone(),
        }
        .to_string();
        Rejected {
            id: r.id,
            time: rfc3339(r.first_seen),
            last_seen: rfc3339(r.last_seen),
            occurrences: r.occurrences,
            status: r.status,
            reason: r.reason,
            error,
            line: r.line_number,
            column: r.column_number,
            field: r.field,
            source: r.source,
            account_default: r.account_default,
            recorded_at_default: r.recorded_at_default.map(rfc3339),
            raw: String::from_utf8_lossy(&r.raw).into_owned(),
            raw_bytes: r.raw,
        }
    }
}

#[async_trait]
impl<S: Pooled> RejectedLines for S {
    async fn rejected_list(&self, all: bool, limit: i64) -> Result<Vec<Rejected>> {
        let rows: Vec<RejectedRow> = on_pool!(self.pool(), |p| {
            sqlx::query_as(sql::REJECTED_LIST)
                .bind(all)
                .bind(limit)
                .fetch_all(p)
                .await?
        });
        Ok(rows.into_iter().map(Rejected::from).collect())
    }

    async fn rejected_get(&self, id: i64) -> Result<Option<Rejected>> {
        let row: Option<RejectedRow> = on_pool!(self.pool(), |p| {
            sqlx::query_as(sql::REJECTED_GET)
                .bind(id)
                .fetch_optional(p)
                .await?
        });
        Ok(row.map(Rejected::from))
    }

    async fn rejected_mark_retried(&self, id: i64) -> Result<()> {
        let _one_writer = one_writer(self).await;
        on_pool!(self.pool(), |p| {
            sqlx::query("update rejected set status = 'retried', resolved_at = $1 where id = $2")
                .bind(now_micros())
                .bind(id)
                .execute(p)
                .await?;
        });
        Ok(())
    }
}

// ---- invoices ------------------------------------------------------------

#[async_trait]
impl<S: Pooled> Invoices for S {
    async fn finalized_periods(&self, account: &str) -> Result<Vec<(String, i64)>> {
        let sql = "select period, cutoff_seq from invoices where account = $1 order by period";
        rows_where(self.pool(), sql, account).await
    }

    async fn finalized_accounts_before(&self, period: &str) -> Result<Vec<String>> {
        let sql = "select distinct account from invoices where period < $1 order by account";
        let accounts: Vec<(String,)> = rows_where(self.pool(), sql, period).await?;
        Ok(accounts.into_iter().map(|(a,)| a).collect())
    }

    async fn finalized_in_period(&self, period: &str) -> Result<Vec<FinalizedRef>> {
        let sql = "select account, number, cutoff_seq, finalized_at from invoices where period = $1 \
             order by account";
        rows_where(self.pool(), sql, period).await
    }

    async fn undelivered_invoice_events(&self) -> Result<Vec<(String, String)>> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_as(
                "select account, period from invoice_events where delivered_at is null \
                 order by created_at, account, period",
            )
            .fetch_all(p)
            .await?
        }))
    }

    async fn claim_invoice_event(
        &self,
        account: &str,
        period: &str,
        token: &str,
        for_micros: i64,
    ) -> Result<bool> {
        let now = now_micros();
        let done = on_pool!(self.pool(), |p| {
            sqlx::query(
                "update invoice_events set claimed_by = $1, claimed_until = $2 \
                 where account = $3 and period = $4 and delivered_at is null \
                 and (claimed_until is null or claimed_until < $5)",
            )
            .bind(token)
            .bind(now + for_micros)
            .bind(account)
            .bind(period)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    async fn settle_invoice_event(
        &self,
        account: &str,
        period: &str,
        token: &str,
        delivered: bool,
    ) -> Result<()> {
        on_pool!(self.pool(), |p| {
            // Only the claim this sender holds (an expired one may be another's now).
            sqlx::query(
                "update invoice_events set claimed_by = null, claimed_until = null, \
                 delivered_at = case when $1 then $2 else delivered_at end \
                 where account = $3 and period = $4 and claimed_by = $5",
            )
            .bind(delivered)
            .bind(now_micros())
            .bind(account)
            .bind(period)
            .bind(token)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    async fn finalized_count(&self) -> Result<i64> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_scalar("select cast(count(*) as bigint) from invoices")
                .fetch_one(p)
                .await?
        }))
    }

    async fn keep_documents(
        &self,
        account: &str,
        period: &str,
        html: &str,
        pdf: &[u8],
    ) -> Result<()> {
        on_pool!(self.pool(), |p| {
            sqlx::query(
                "update invoices set html = $1, pdf = $2 \
                 where account = $3 and period = $4 and (html is null or html = '')",
            )
            .bind(html)
            .bind(pdf)
            .bind(account)
            .bind(period)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    async fn finalized_invoice(
        &self,
        account: &str,
        period: &str,
    ) -> Result<Option<FinalizedInvoice>> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_as(sql::FINALIZED_GET)
                .bind(account)
                .bind(period)
                .fetch_optional(p)
                .await?
        }))
    }

    async fn finalize(
        &self,
        account: &str,
        period: &str,
        cutoff_seq: i64,
        draws: &[CreditDraw],
        render: &(dyn for<'a> Fn(&'a str) -> FrozenDocuments + Send + Sync),
    ) -> Result<FinalizedInvoice> {
        let _one_writer = one_writer(self).await;
        let begin = self.pool().begin_write();
        // PostgreSQL: lock each grant drawn on, so two finalizations drawing
        // on one grant take turns (SQLite's write lock is already whole).
        let postgres = matches!(self.pool(), PoolRef::Postgres(_));
        let grant_sql = match self.pool() {
            PoolRef::Sqlite(_) => "select usd, voided_at from credit_grants where id = $1",
            PoolRef::Postgres(_) => {
                "select usd, voided_at from credit_grants where id = $1 for update"
            }
        };
        on_pool!(self.pool(), |p| {
            let mut tx = p.begin_with(begin).await?;
            if postgres {
                // Finalizations take turns, so each takes the period's next
                // number (SQLite's write lock is already whole).
                sqlx::query("select pg_advisory_xact_lock($1)")
                    .bind(FINALIZE_LOCK)
                    .execute(&mut *tx)
                    .await?;
            }
            let inserted: Option<(i64, i64)> = sqlx::query_as(
                "insert into invoices (account, period, number, cutoff_seq, finalized_at, json, csv, seq) \
                 values ($1, $2, '', $3, $4, '', '', \
                   (select coalesce(max(seq), 0) + 1 from invoices where period = $2)) \
                 on conflict (account, period) do nothing returning id, seq",
            )
            .bind(account)
            .bind(period)
            .bind(cutoff_seq)
            .bind(now_micros())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((id, seq)) = inserted {
                for d in draws {
                    let grant: Option<(String, Option<i64>)> = sqlx::query_as(grant_sql)
                        .bind(d.grant_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let drawn: Vec<String> =
                        sqlx::query_scalar("select usd from credit_draws where grant_id = $1")
                            .bind(d.grant_id)
                            .fetch_all(&mut *tx)
                            .await?;
                    let mut total = d.usd;
                    for x in &drawn {
                        total += money(x, "credit draw")?;
                    }
                    let fits = match &grant {
                        Some((usd, None)) => total <= money(usd, "credit grant")?,
                        _ => false,
                    };
                    if !fits {
                        // Dropping the transaction rolls it back: nothing is written.
                        return Err(StoreError::Changed(format!(
                            "credit grant #{} was drawn on or voided meanwhile",
                            d.grant_id
                        )));
                    }
                    sqlx::query(
                        "insert into credit_draws (account, period, grant_id, usd) \
                         values ($1, $2, $3, $4)",
                    )
                    .bind(account)
                    .bind(period)
                    .bind(d.grant_id)
                    .bind(d.usd.to_string())
                    .execute(&mut *tx)
                    .await?;
                }
                // The invoice.finalized event, once per finalization.
                sqlx::query(
                    "insert into invoice_events (account, period, created_at) values ($1, $2, $3)",
                )
                .bind(account)
                .bind(period)
                .bind(now_micros())
                .execute(&mut *tx)
                .await?;
                let number = sql::invoice_number(period, seq);
                let docs = render(&number);
                sqlx::query(
                    "update invoices set number = $1, json = $2, csv = $3, html = $4, pdf = $5 \
                     where id = $6",
                )
                .bind(number)
                .bind(docs.json)
                .bind(docs.csv)
                .bind(docs.html)
                .bind(docs.pdf)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?
        });
        self.finalized_invoice(account, period)
            .await?
            .ok_or_else(|| StoreError::Invalid("the finalized invoice vanished".into()))
    }
}

/// The advisory lock finalizations take on PostgreSQL ("tally" + 1).
const FINALIZE_LOCK: i64 = 0x7461_6c6c_7901;

// ---- budgets and their alerts --------------------------------------------

#[derive(sqlx::FromRow)]
struct BudgetAlertRow {
    account: String,
    period: String,
    threshold: i64,
    spend_usd: String,
    budget_usd: String,
    crossed_at: i64,
    delivered_at: Option<i64>,
}

impl TryFrom<BudgetAlertRow> for BudgetAlert {
    type Error = StoreError;

    fn try_from(r: BudgetAlertRow) -> Result<Self> {
        Ok(BudgetAlert {
            spend_usd: money(&r.spend_usd, "amount in budget_alerts")?,
            budget_usd: money(&r.budget_usd, "amount in budget_alerts")?,
            account: r.account,
            period: r.period,
            threshold: r.threshold,
            crossed_at: r.crossed_at,
            delivered_at: r.delivered_at,
        })
    }
}

#[async_trait]
impl<S: Pooled> Budgets for S {
    async fn set_budget(&self, account: &str, monthly_usd: Decimal) -> Result<()> {
        on_pool!(self.pool(), |p| {
            sqlx::query(
                "insert into budgets (account, monthly_usd, updated_at) values ($1, $2, $3) \
                 on conflict (account) do update set monthly_usd = excluded.monthly_usd, \
                 updated_at = excluded.updated_at",
            )
            .bind(account)
            .bind(monthly_usd.to_string())
            .bind(now_micros())
            .execute(p)
            .await?;
        });
        Ok(())
    }

    async fn budgets(&self) -> Result<Vec<Budget>> {
        let rows: Vec<(String, String)> = on_pool!(self.pool(), |p| {
            sqlx::query_as("select account, monthly_usd from budgets order by account")
                .fetch_all(p)
                .await?
        });
        rows.into_iter()
            .map(|(account, amount)| {
                Ok(Budget {
                    monthly_usd: money(&amount, "budget")?,
                    account,
                })
            })
            .collect()
    }

    async fn record_alert(&self, alert: &BudgetAlert) -> Result<bool> {
        let done = on_pool!(self.pool(), |p| {
            sqlx::query(
                "insert into budget_alerts (account, period, threshold, spend_usd, budget_usd, crossed_at) \
                 values ($1, $2, $3, $4, $5, $6) on conflict (account, period, threshold) do nothing",
            )
            .bind(&alert.account)
            .bind(&alert.period)
            .bind(alert.threshold)
            .bind(alert.spend_usd.to_string())
            .bind(alert.budget_usd.to_string())
            .bind(alert.crossed_at)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    async fn alerts(
        &self,
        period: Option<&str>,
        undelivered_only: bool,
    ) -> Result<Vec<BudgetAlert>> {
        let rows: Vec<BudgetAlertRow> = on_pool!(self.pool(), |p| {
            sqlx::query_as(
                "select account, period, threshold, spend_usd, budget_usd, crossed_at, delivered_at \
                 from budget_alerts where (cast($1 as text) is null or period = $1) \
                 and (not $2 or delivered_at is null) \
                 order by period, account, threshold",
            )
            .bind(period)
            .bind(undelivered_only)
            .fetch_all(p)
            .await?
        });
        rows.into_iter().map(BudgetAlert::try_from).collect()
    }

    async fn mark_alert_delivered(
        &self,
        account: &str,
        period: &str,
        threshold: i64,
    ) -> Result<()> {
        on_pool!(self.pool(), |p| {
            sqlx::query(
                "update budget_alerts set delivered_at = $1 \
                 where account = $2 and period = $3 and threshold = $4",
            )
            .bind(now_micros())
            .bind(account)
            .bind(period)
            .bind(threshold)
            .execute(p)
            .await?;
        });
        Ok(())
    }
}

// ---- price books ---------------------------------------------------------

#[async_trait]
impl<S: Pooled> PriceBooks for S {
    async fn price_book_id(&self) -> Result<Option<i64>> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_scalar("select max(id) from price_books")
                .fetch_one(p)
                .await?
        }))
    }

    async fn price_book(&self) -> Result<Option<StoredPriceBook>> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_as("select id, name, toml from price_books order by id desc limit 1")
                .fetch_optional(p)
                .await?
        }))
    }

    async fn import_price_book(&self, name: &str, toml: &str) -> Result<i64> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_scalar(
                "insert into price_books (imported_at, name, toml) values ($1, $2, $3) returning id",
            )
            .bind(now_micros())
            .bind(name)
            .bind(toml)
            .fetch_one(p)
            .await?
        }))
    }
}
