//! Retrying a stored rejected line (`tally rejected retry`): parse its raw
//! bytes again, with the defaults it was ingested with unless new ones are
//! given (e.g. the account it lacked), and record it. A line that is then
//! recorded, or found already recorded, is marked retried.

use crate::record::LineError;
use crate::record::{Defaults, Origin};
use crate::store::{RecordOutcome, Store, StoreError, WriteBatch};
use crate::time::Micros;
use crate::time::parse_rfc3339;

/// What became of a retried line.
#[derive(Debug)]
pub enum Retried {
    /// Recorded now, under this key.
    Recorded { key: String },
    /// A record with this key was already in the ledger.
    Duplicate { key: String },
    /// It still does not parse.
    StillRejected(LineError),
    /// It conflicts with a recorded line.
    StillConflict { message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no rejected line with id {0}")]
    NotFound(i64),
    #[error("the store returned no outcome")]
    NoOutcome,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Retry rejected line `id`. Each of `given`'s defaults, when set, replaces
/// the one stored with the line; `now` stamps the record.
pub async fn retry_rejected(
    store: &dyn Store,
    id: i64,
    given: Defaults,
    now: Micros,
) -> Result<Retried, RetryError> {
    let Some(e) = store.rejected_get(id).await? else {
        return Err(RetryError::NotFound(id));
    };
    let defaults = Defaults {
        account: given.account.or(e.account_default.clone()),
        recorded_at: given.recorded_at.or(e
            .recorded_at_default
            .as_deref()
            .and_then(|t| parse_rfc3339(t).ok())),
        oldest: given.oldest,
    };
    let origin = Origin {
        source: format!("retry of #{id}"),
        line: e.line.unwrap_or(1).max(1) as u64,
    };
    let record = match super::parse::parse_record(&e.raw_bytes, &origin, &defaults, now) {
        Ok(r) => r,
        Err(err) => return Ok(Retried::StillRejected(err)),
    };
    let key = record.key.clone();
    let batch = WriteBatch {
        records: vec![record],
        rejections: Vec::new(),
    };
    let outcome = store.write(&batch).await?;
    match outcome.records.first() {
        Some(RecordOutcome::Recorded) => {
            store.rejected_mark_retried(id).await?;
            Ok(Retried::Recorded { key })
        }
        Some(RecordOutcome::Duplicate) => {
            store.rejected_mark_retried(id).await?;
            Ok(Retried::Duplicate { key })
        }
        Some(RecordOutcome::Conflict { message, .. }) => Ok(Retried::StillConflict {
            message: message.clone(),
        }),
        None => Err(RetryError::NoOutcome),
    }
}
