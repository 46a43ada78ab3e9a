//! Finalized invoices, their documents and figures.

use super::*;

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
