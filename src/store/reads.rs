//! The read methods whose SQL and row mapping are the same on both backends,
//! written once. `shared_reads!(Type)` expands to an inherent `impl` with a
//! `shared_*` method for each; the backends' `Store` impls delegate to them
//! (only the pool type differs, and sqlx's generic bounds would cost more
//! clarity than this macro does).

macro_rules! shared_reads {
    ($store:ty) => {
        impl $store {
            pub(super) async fn shared_create_key(&self, account: &str, prefix: &str, key_hash: &str) -> Result<i64> {
                use sqlx::Row as _;
                let row = sqlx::query(
                    "insert into api_keys (account, prefix, key_hash, created_at) values ($1, $2, $3, $4) returning id",
                )
                .bind(account)
                .bind(prefix)
                .bind(key_hash)
                .bind(crate::time::now_micros())
                .fetch_one(&self.pool)
                .await?;
                Ok(row.try_get(0)?)
            }

            pub(super) async fn shared_list_keys(&self) -> Result<Vec<$crate::store::ApiKey>> {
                use sqlx::Row as _;
                let rows = sqlx::query("select id, account, prefix, created_at, revoked_at from api_keys order by id desc")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|r| {
                        let created: i64 = r.try_get(3)?;
                        let revoked: Option<i64> = r.try_get(4)?;
                        Ok($crate::store::ApiKey {
                            id: r.try_get(0)?,
                            account: r.try_get(1)?,
                            prefix: r.try_get(2)?,
                            created_at: $crate::time::rfc3339(created),
                            revoked_at: revoked.map($crate::time::rfc3339),
                        })
                    })
                    .collect()
            }

            pub(super) async fn shared_revoke_key(&self, id: i64) -> Result<bool> {
                let done = sqlx::query("update api_keys set revoked_at = $1 where id = $2 and revoked_at is null")
                    .bind(crate::time::now_micros())
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            pub(super) async fn shared_set_budget(&self, account: &str, monthly_usd: rust_decimal::Decimal) -> Result<()> {
                sqlx::query(
                    "insert into budgets (account, monthly_usd, updated_at) values ($1, $2, $3) \
                     on conflict (account) do update set monthly_usd = excluded.monthly_usd, updated_at = excluded.updated_at",
                )
                .bind(account)
                .bind(monthly_usd.to_string())
                .bind(crate::time::now_micros())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            pub(super) async fn shared_budgets(&self) -> Result<Vec<(String, rust_decimal::Decimal)>> {
                use sqlx::Row as _;
                let rows = sqlx::query("select account, monthly_usd from budgets order by account")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|r| {
                        let text: String = r.try_get(1)?;
                        let amount = text.parse().map_err(|e| {
                            $crate::store::StoreError::Invalid(format!("budget {text:?} in the database: {e}"))
                        })?;
                        Ok((r.try_get(0)?, amount))
                    })
                    .collect()
            }

            pub(super) async fn shared_record_alert(&self, alert: &$crate::store::BudgetAlert) -> Result<bool> {
                let done = sqlx::query(
                    "insert into budget_alerts (account, period, threshold, spend_usd, budget_usd, crossed_at) \
                     values ($1, $2, $3, $4, $5, $6) on conflict (account, period, threshold) do nothing",
                )
                .bind(&alert.account)
                .bind(&alert.period)
                .bind(alert.threshold)
                .bind(alert.spend_usd.to_string())
                .bind(alert.budget_usd.to_string())
                .bind(alert.crossed_at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            pub(super) async fn shared_alerts(&self, period: Option<&str>, undelivered_only: bool) -> Result<Vec<$crate::store::BudgetAlert>> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "select account, period, threshold, spend_usd, budget_usd, crossed_at, delivered_at \
                     from budget_alerts where (cast($1 as text) is null or period = $1) \
                     and (not $2 or delivered_at is null) \
                     order by period, account, threshold",
                )
                .bind(period)
                .bind(undelivered_only)
                .fetch_all(&self.pool)
                .await?;
                let money = |text: String| {
                    text.parse::<rust_decimal::Decimal>().map_err(|e| {
                        $crate::store::StoreError::Invalid(format!("amount {text:?} in budget_alerts: {e}"))
                    })
                };
                rows.iter()
                    .map(|r| {
                        Ok($crate::store::BudgetAlert {
                            account: r.try_get(0)?,
                            period: r.try_get(1)?,
                            threshold: r.try_get(2)?,
                            spend_usd: money(r.try_get(3)?)?,
                            budget_usd: money(r.try_get(4)?)?,
                            crossed_at: r.try_get(5)?,
                            delivered_at: r.try_get(6)?,
                        })
                    })
                    .collect()
            }

            pub(super) async fn shared_mark_alert_delivered(&self, account: &str, period: &str, threshold: i64) -> Result<()> {
                sqlx::query(
                    "update budget_alerts set delivered_at = $1 where account = $2 and period = $3 and threshold = $4",
                )
                .bind(crate::time::now_micros())
                .bind(account)
                .bind(period)
                .bind(threshold)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            pub(super) async fn shared_key_account(&self, key_hash: &str) -> Result<Option<String>> {
                use sqlx::Row as _;
                let row = sqlx::query("select account from api_keys where key_hash = $1 and revoked_at is null")
                    .bind(key_hash)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| Ok(r.try_get(0)?)).transpose()
            }

            pub(super) async fn usage_query(&self, q: &UsageQuery, iterations: bool) -> Result<Vec<UsageGroup>> {
                if q.use_rollup && super::rollup_covers(&q.thresholds) {
                    let (first_day, end_day) = crate::time::day_range(q.from, q.to);
                    let rows = sqlx::query(AssertSqlSafe(super::sql::rollup_sql(q.account.is_some())))
                        .bind(i64::from(iterations))
                        .bind(first_day)
                        .bind(end_day)
                        .bind(q.account.as_deref())
                        .fetch_all(&self.pool)
                        .await?;
                    return rows
                        .iter()
                        .map(|row| {
                            let mut g = usage_group_from_row!(row)?;
                            g.bucket = super::bucket_of_class(g.bucket, &q.thresholds);
                            Ok(g)
                        })
                        .collect();
                }
                let sql = super::sql::usage_sql(q.thresholds.len(), iterations, q.account.is_some());
                let mut query = sqlx::query(AssertSqlSafe(sql))
                    .bind(q.from)
                    .bind(q.to)
                    .bind(q.account.as_deref())
                    .bind(q.max_seq);
                for t in &q.thresholds {
                    query = query.bind(*t);
                }
                let rows = query.fetch_all(&self.pool).await?;
                rows.iter().map(|row| usage_group_from_row!(row)).collect()
            }

            pub(super) async fn shared_rejected_list(&self, all: bool, limit: i64) -> Result<Vec<Rejected>> {
                let rows = sqlx::query(super::sql::REJECTED_LIST)
                    .bind(all)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(|row| rejected_from_row!(row)).collect()
            }
            pub(super) async fn shared_rejected_get(&self, id: i64) -> Result<Option<Rejected>> {
                let row = sqlx::query(super::sql::REJECTED_GET)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(|row| rejected_from_row!(row)).transpose()
            }
            pub(super) async fn shared_record(&self, key: &str) -> Result<Option<StoredRecord>> {
                let row = sqlx::query(super::sql::RECORD_GET)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(|row| record_from_row!(row)).transpose()
            }
            pub(super) async fn shared_counts(&self) -> Result<LedgerCounts> {
                let row = sqlx::query(super::sql::COUNTS)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(LedgerCounts {
                    records: row.try_get(0)?,
                    containers: row.try_get(1)?,
                    rejected_open: row.try_get(2)?,
                })
            }
            pub(super) async fn shared_container_days(
                &self,
                from_day: i64,
                to_day: i64,
            ) -> Result<Vec<$crate::store::ContainerDayRow>> {
                use sqlx::Row as _;
                let rows = sqlx::query(super::sql::CONTAINER_DAYS)
                    .bind(from_day)
                    .bind(to_day)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::store::ContainerDayRow {
                            account: r.try_get(0)?,
                            day: r.try_get(1)?,
                            containers: r.try_get(2)?,
                            execution_seconds: r.try_get(3)?,
                            short_containers: r.try_get(4)?,
                            short_seconds: r.try_get(5)?,
                        })
                    })
                    .collect()
            }
            /// `sql` selects container records (see [`super::sql::CONTAINER_RECORDS`]);
            /// `max_seq` is bound as `$3` when the query has it.
            pub(super) async fn shared_container_records(
                &self,
                sql: &'static str,
                from: Micros,
                to: Micros,
                max_seq: Option<i64>,
            ) -> Result<Vec<ContainerRecord>> {
                let mut query = sqlx::query(sql).bind(from).bind(to);
                if let Some(seq) = max_seq {
                    query = query.bind(seq);
                }
                let rows = query.fetch_all(&self.pool).await?;
                let mut records = rows
                    .iter()
                    .map(|r| {
                        Ok(ContainerRecord {
                            container_id: r.try_get(0)?,
                            account: r.try_get(1)?,
                            recorded_at: r.try_get(2)?,
                            started_at: r.try_get(3)?,
                            web_tools_20260209: r.try_get::<i64, _>(4)? != 0,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                // Read in time order (an index-only scan); grouped by container here.
                records.sort_unstable_by(|a, b| {
                    (&a.container_id, a.recorded_at).cmp(&(&b.container_id, b.recorded_at))
                });
                Ok(records)
            }
            pub(super) async fn shared_record_counts(
                &self,
                account: Option<&str>,
                from: Micros,
                to: Micros,
                max_seq: i64,
                use_rollup: bool,
            ) -> Result<Vec<(String, i64)>> {
                let rows = if use_rollup {
                    let (first_day, end_day) = crate::time::day_range(from, to);
                    let sql = if account.is_some() {
                        super::sql::ROLLUP_COUNTS_ONE
                    } else {
                        super::sql::ROLLUP_COUNTS_ALL
                    };
                    sqlx::query(sql)
                        .bind(account)
                        .bind(first_day)
                        .bind(end_day)
                        .fetch_all(&self.pool)
                        .await?
                } else {
                    let sql = if account.is_some() {
                        super::sql::RECORD_COUNTS_ONE
                    } else {
                        super::sql::RECORD_COUNTS_ALL
                    };
                    sqlx::query(sql)
                        .bind(account)
                        .bind(from)
                        .bind(to)
                        .bind(max_seq)
                        .fetch_all(&self.pool)
                        .await?
                };
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect()
            }
            pub(super) async fn shared_price_book_id(&self) -> Result<Option<i64>> {
                let row = sqlx::query("select max(id) from price_books")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(row.try_get(0)?)
            }
            pub(super) async fn shared_price_book(&self) -> Result<Option<(i64, String, String)>> {
                let row = sqlx::query("select id, name, toml from price_books order by id desc limit 1")
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                    .transpose()
            }
            pub(super) async fn shared_import_price_book(&self, name: &str, toml: &str) -> Result<i64> {
                let row = sqlx::query(
                    "insert into price_books (imported_at, name, toml) values ($1, $2, $3) returning id",
                )
                .bind(crate::time::now_micros())
                .bind(name)
                .bind(toml)
                .fetch_one(&self.pool)
                .await?;
                Ok(row.try_get(0)?)
            }
            pub(super) async fn shared_newest_seq_in_days(&self, first_day: i64, end_day: i64) -> Result<i64> {
                let row = sqlx::query("select cast(coalesce(max(max_seq), 0) as bigint) from usage_rollup where day >= $1 and day < $2")
                    .bind(first_day)
                    .bind(end_day)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(row.try_get(0)?)
            }
            pub(super) async fn shared_max_seq(&self) -> Result<i64> {
                let row = sqlx::query("select cast(coalesce(max(seq), 0) as bigint) from records")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(row.try_get(0)?)
            }
            pub(super) async fn shared_finalized_periods(&self, account: &str) -> Result<Vec<(String, i64)>> {
                let rows = sqlx::query(
                    "select period, cutoff_seq from invoices where account = $1 order by period",
                )
                .bind(account)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect()
            }
            pub(super) async fn shared_finalized_accounts_before(&self, period: &str) -> Result<Vec<String>> {
                let rows = sqlx::query(
                    "select distinct account from invoices where period < $1 order by account",
                )
                .bind(period)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
            }
            pub(super) async fn shared_finalized_in_period(&self, period: &str) -> Result<Vec<(String, String, i64)>> {
                let rows = sqlx::query(
                    "select account, number, cutoff_seq from invoices where period = $1 order by account",
                )
                .bind(period)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                    .collect()
            }
            pub(super) async fn shared_finalized_count(&self) -> Result<i64> {
                use sqlx::Row as _;
                let row = sqlx::query("select cast(count(*) as bigint) from invoices")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(row.try_get(0)?)
            }
            pub(super) async fn shared_finalized_invoice(
                &self,
                account: &str,
                period: &str,
            ) -> Result<Option<FinalizedInvoice>> {
                let row = sqlx::query(super::sql::FINALIZED_GET)
                    .bind(account)
                    .bind(period)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(|r| finalized_from_row!(r)).transpose()
            }
            pub(super) async fn shared_ping(&self) -> Result<()> {
                sqlx::query("select 1").execute(&self.pool).await?;
                Ok(())
            }
        }
    };
}
pub(crate) use shared_reads;
