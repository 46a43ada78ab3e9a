//! Usage reads: grouped usage from the records or the roll-ups, and container records.

use super::*;

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
        q.use_rollup && crate::store::rollup_covers(&q.thresholds),
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
            g.rate.bucket = crate::store::bucket_of_class(g.rate.bucket, &q.thresholds);
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
