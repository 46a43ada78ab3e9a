//! The rejected store.

use super::*;

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
