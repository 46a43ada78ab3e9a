//! The one error type of the HTTP API, and the one way every layer's error
//! reaches a client. Every failure becomes a JSON body
//! `{"error": {"type": …, "message": …}}`.
//!
//! # Error policy
//!
//! | status | `type`                | when                                               |
//! |--------|-----------------------|----------------------------------------------------|
//! | 400    | `invalid_request`     | the request is wrong (the message says how)        |
//! | 401    | `unauthorized`        | missing or wrong bearer token                      |
//! | 403    | `forbidden`           | the caller may not do this                         |
//! | 404    | `not_found`           | no such thing, or one the caller may not see       |
//! | 409    | e.g. `unpriced_usage` | the request conflicts with the ledger's state      |
//! | 413    | `payload_too_large`   | the body is over the limit                         |
//! | 503    | `storage_unavailable` | the database cannot serve now: retry later         |
//! | 500    | `internal_error`      | anything else: a bug, or stored data that is wrong |
//!
//! **503** means the database could not be used *right now* and the same
//! request may succeed later: it cannot be reached (I/O, TLS, connection
//! refused or lost, the database or its file is gone), the pool is closed or
//! timed out, the server is shutting down, out of resources (disk full, too
//! many connections) or busy (SQLite's busy/locked, PostgreSQL's
//! serialization failures and deadlocks that outlived the retries). See
//! [`unavailable`].
//!
//! **500** is everything unexpected: a stored price book that no longer
//! parses, a stored value that does not decode, a SQL error, a panicked
//! task. Retrying will not help; an operator must look.
//!
//! Both answer an opaque message: the cause goes to the log (once, when the
//! response is built, inside the request's span), never to the client. The
//! 4xx errors are the client's to fix, and their message says what is wrong.
//!
//! Handlers use `?`: each layer's error has a `From` conversion here that
//! classifies it. Where a step's error type cannot say whose fault it is,
//! the handler says so in one word with [`Blame`]: `.field("period")?` (the
//! client's value, named), `.invalid()?` (the client's request) or
//! `.internal()?` (tally's own). There is deliberately no
//! `From<String>`, `From<serde_json::Error>` or `From<csv::Error>`: from
//! those types alone one cannot tell whose fault the error is.

use std::fmt::Display;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::billing::{BillingError, FinalizeError};
use crate::estimate::WorkloadError;
use crate::ledger::CommitError;
use crate::pricing::StoredBookError;
use crate::store::StoreError;

/// What a 503 tells the client.
pub(crate) const UNAVAILABLE_MESSAGE: &str =
    "the ledger could not commit; nothing from this request was recorded, retry later";
/// What a 500 tells the client.
const INTERNAL_MESSAGE: &str =
    "internal error: the server could not answer this request; the cause is in its log";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    BadRequest(String),
    /// 409: the request conflicts with the ledger's state; `kind` is the
    /// error's `type`.
    #[error("{message}")]
    Conflict { kind: &'static str, message: String },
    /// 503: the database cannot serve now. The cause is logged, not shown.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// 500: something that should not happen. The cause is logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 500 carrying `cause` (for the log only).
    pub fn internal(cause: impl Display) -> Self {
        ApiError::Internal(cause.to_string())
    }

    /// The HTTP status and the error's `type`.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::Conflict { kind, .. } => (StatusCode::CONFLICT, kind),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status();
        let message = match &self {
            ApiError::Unavailable(cause) => {
                tracing::error!(cause = %cause, "storage unavailable");
                UNAVAILABLE_MESSAGE.to_owned()
            }
            ApiError::Internal(cause) => {
                tracing::error!(cause = %cause, "internal error");
                INTERNAL_MESSAGE.to_owned()
            }
            other => other.to_string(),
        };
        let mut response = (
            status,
            Json(json!({"error": {"type": kind, "message": message}})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            // Lets a browser ask for the key (as the Basic password) for the dashboard.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"tally\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

/// Whether a database error means "cannot serve now, retry later" (503)
/// rather than something wrong (500).
fn unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                sqlstate_unavailable(pg.code())
            } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                db.code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(sqlite_unavailable)
            } else {
                false
            }
        }
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs of a database that cannot serve now.
fn sqlstate_unavailable(code: &str) -> bool {
    matches!(
        code.get(..2),
        // connection exception; invalid authorization (the server refuses
        // us); insufficient resources (disk full, too many connections);
        // operator intervention (shutdown, cancel, database dropped);
        // system error (I/O)
        Some("08" | "28" | "53" | "57" | "58")
    ) || matches!(
        code,
        // the database does not exist (dropped); read-only (a standby
        // after failover); serialization failure and deadlock (retryable)
        "3D000" | "25006" | "40001" | "40P01"
    )
}

/// SQLite result codes (extended; the primary code is the low byte) of a
/// database that cannot serve now.
fn sqlite_unavailable(code: i32) -> bool {
    matches!(
        code & 0xff,
        3 // PERM: access denied
            | 5 // BUSY
            | 6 // LOCKED
            | 7 // NOMEM
            | 8 // READONLY (e.g. the file was moved or deleted)
            | 10 // IOERR
            | 13 // FULL: the disk is full
            | 14 // CANTOPEN: the file or its directory is gone
            | 15 // PROTOCOL: locking protocol
    )
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if unavailable(&e) {
            ApiError::Unavailable(format!("database error: {e}"))
        } else {
            ApiError::Internal(format!("database error: {e}"))
        }
    }
}

impl From<&StoreError> for ApiError {
    fn from(e: &StoreError) -> Self {
        match e {
            StoreError::Database(db) if unavailable(db) => ApiError::Unavailable(e.to_string()),
            // Concurrent writers kept changing what this write depends on.
            StoreError::Changed(m) => ApiError::Conflict {
                kind: "changed",
                message: format!("{m}: retry"),
            },
            // A migration, a stored value that does not decode, a SQL error.
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::from(&e)
    }
}

impl From<StoredBookError> for ApiError {
    fn from(e: StoredBookError) -> Self {
        match e {
            StoredBookError::Store(e) => e.into(),
            // Validated on import: the stored text changed behind tally's back.
            StoredBookError::Unparsable { .. } => ApiError::internal(e),
        }
    }
}

impl From<BillingError> for ApiError {
    fn from(e: BillingError) -> Self {
        match e {
            BillingError::Store(e) => e.into(),
            BillingError::Book(e) => e.into(),
            BillingError::Plan(crate::plans::StoredPlanError::Store(e)) => e.into(),
            // Validated when set: the stored text changed behind tally's back.
            BillingError::Plan(e) => ApiError::internal(e),
        }
    }
}

impl From<FinalizeError> for ApiError {
    fn from(e: FinalizeError) -> Self {
        match e {
            FinalizeError::Unpriced(models) => ApiError::Conflict {
                kind: "unpriced_usage",
                message: format!(
                    "the invoice has unpriced usage ({models}): import prices for it, or finalize with ?allow_unpriced=true"
                ),
            },
            FinalizeError::Billing(e) => e.into(),
        }
    }
}

impl From<CommitError> for ApiError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Store(e) => e.as_ref().into(),
            // Shutting down: another instance, or this one restarted, will take it.
            CommitError::Stopped => ApiError::Unavailable(e.to_string()),
        }
    }
}

/// A workload document is the client's: what is wrong with it is a 400.
impl From<WorkloadError> for ApiError {
    fn from(e: WorkloadError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

/// A task of ours that panicked or was cancelled.
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(format!("task failed: {e}"))
    }
}

/// A malformed or unknown query parameter: 400, naming it.
impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}

/// How a handler says whose fault a failed step is, in one word: the
/// client's value at a named field (`.field("period")?`: a 400 that names
/// it), the client's request as a whole (`.invalid()?`: a 400 with the
/// message as it is), or tally's own (`.internal()?`: a 500).
pub trait Blame<T> {
    fn field(self, name: &str) -> Result<T, ApiError>;
    fn invalid(self) -> Result<T, ApiError>;
    fn internal(self) -> Result<T, ApiError>;
}

impl<T, E: Display> Blame<T> for Result<T, E> {
    fn field(self, name: &str) -> Result<T, ApiError> {
        self.map_err(|e| ApiError::BadRequest(format!("{name}: {e}")))
    }

    fn invalid(self) -> Result<T, ApiError> {
        self.map_err(|e| ApiError::BadRequest(e.to_string()))
    }

    fn internal(self) -> Result<T, ApiError> {
        self.map_err(ApiError::internal)
    }
}

/// A body that could not be read. Only bodies under axum's default limit
/// (2 MiB) are read this way; larger ones are streamed by their handler.
impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(e: axum::extract::rejection::BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge { limit: 2 << 20 }
        } else {
            ApiError::BadRequest(e.body_text())
        }
    }
}

/// `Query<T>` whose rejection is an [`ApiError`]: a malformed or unknown
/// query parameter answers 400 in the API's JSON error shape, naming it.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `Path<T>` whose rejection is an [`ApiError`]: a 400 in the API's JSON
/// shape (e.g. for a segment that is not UTF-8 once decoded).
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// A request body read whole, under axum's default limit (2 MiB): over it
/// a 413, and a body that cannot be read a 400, both in the API's JSON shape.
#[derive(Debug)]
pub struct ApiBody(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ApiBody {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        Ok(ApiBody(
            axum::body::Bytes::from_request(request, state).await?,
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn status(e: impl Into<ApiError>) -> u16 {
        e.into().status().0.as_u16()
    }

    #[test]
    fn an_unreachable_database_is_503_anything_unexpected_500() {
        // Unreachable, closed, timed out, shutting down: 503.
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        for e in [
            sqlx::Error::Io(io),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::WorkerCrashed,
            sqlx::Error::Tls("handshake".into()),
        ] {
            assert_eq!(status(StoreError::Database(e)), 503);
        }
        assert_eq!(status(CommitError::Stopped), 503);
        assert_eq!(
            status(CommitError::Store(std::sync::Arc::new(
                StoreError::Database(sqlx::Error::PoolClosed)
            ))),
            503
        );
        assert_eq!(
            status(BillingError::Store(StoreError::Database(
                sqlx::Error::PoolTimedOut
            ))),
            503
        );

        // Stored data that is wrong, a decode error, a bug: 500.
        for e in [
            sqlx::Error::RowNotFound,
            sqlx::Error::ColumnNotFound("id".into()),
            sqlx::Error::Decode("not a number".into()),
            sqlx::Error::Protocol("unexpected".into()),
        ] {
            assert_eq!(status(StoreError::Database(e)), 500);
        }
        assert_eq!(status(StoreError::Invalid("bad span".into())), 500);
        let unparsable = || StoredBookError::Unparsable {
            id: 2,
            name: "x".into(),
            error: crate::pricing::PriceBook::parse("nonsense").expect_err("not a book"),
        };
        assert_eq!(status(unparsable()), 500);
        assert_eq!(status(BillingError::Book(unparsable())), 500);
        assert_eq!(
            status(FinalizeError::Billing(BillingError::Book(unparsable()))),
            500
        );

        // The client's errors stay theirs.
        assert_eq!(status(FinalizeError::Unpriced("m".into())), 409);
        assert_eq!(status(WorkloadError::Syntax("line 1".into())), 400);
    }

    #[test]
    fn database_codes() {
        for code in [
            "08006", "08001", "28P01", "53100", "53300", "57P01", "57P03", "57014", "58030",
            "3D000", "25006", "40001", "40P01",
        ] {
            assert!(sqlstate_unavailable(code), "{code}");
        }
        for code in ["42P01", "42703", "22P02", "23505", "XX000", "P0001"] {
            assert!(!sqlstate_unavailable(code), "{code}");
        }
        // BUSY, LOCKED, BUSY_SNAPSHOT (517), READONLY_DBMOVED (1032),
        // IOERR_READ (266), FULL, CANTOPEN.
        for code in [5, 6, 517, 1032, 266, 13, 14] {
            assert!(sqlite_unavailable(code), "{code}");
        }
        // ERROR (SQL), CORRUPT, CONSTRAINT_UNIQUE (2067), MISMATCH, NOTADB.
        for code in [1, 11, 2067, 20, 26] {
            assert!(!sqlite_unavailable(code), "{code}");
        }
    }

    /// Real SQLite errors take the same way: a SQL error is 500, a database
    /// locked by another connection is 503.
    #[tokio::test]
    async fn real_sqlite_errors() {
        use sqlx::Connection;
        use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true)
            .busy_timeout(std::time::Duration::ZERO);
        let mut a = SqliteConnection::connect_with(&options).await.unwrap();
        let mut b = SqliteConnection::connect_with(&options).await.unwrap();
        let sql = sqlx::query("select * from no_such_table")
            .execute(&mut a)
            .await
            .unwrap_err();
        assert_eq!(status(sql), 500);
        sqlx::raw_sql("create table t (x integer); begin exclusive; insert into t values (1)")
            .execute(&mut a)
            .await
            .unwrap();
        let busy = sqlx::query("insert into t values (2)")
            .execute(&mut b)
            .await
            .unwrap_err();
        assert_eq!(status(busy), 503);
    }
}
