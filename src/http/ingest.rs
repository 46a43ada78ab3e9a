//! `POST /v1/usage` (one record) and `POST /v1/usage/batch` (NDJSON, streamed).
//!
//! Both answer only after the commit. Out-of-band defaults for records that
//! lack them come from the query string: `?account=A&recorded_at=TIME`.

use std::io;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio_util::io::StreamReader;

use super::{ApiError, ApiQuery, AppState};
use crate::auth::Principal;
use crate::ingest::lines::LineReader;
use crate::ingest::pipeline::OrderedCommitter;
use crate::ingest::{ChunkBuilder, LineResult, Summary};
use crate::record::Defaults;
use crate::store::{WriteBatch, WriteOutcome};
use crate::time::parse_rfc3339;
use crate::time::to_micros;

#[derive(Debug, Deserialize)]
pub struct IngestQuery {
    account: Option<String>,
    recorded_at: Option<String>,
    /// Batch only: which lines `results` lists: `all` (default), `problems`
    /// (conflicts and rejections only: for very large batches), or `none`.
    results: Option<String>,
}

impl IngestQuery {
    fn defaults(&self) -> Result<Defaults, ApiError> {
        // Names the parameter: the parser's message alone would not.
        let recorded_at =
            match &self.recorded_at {
                Some(t) => Some(parse_rfc3339(t).map_err(|m| {
                    ApiError::BadRequest(format!("query parameter recorded_at: {m}"))
                })?),
                None => None,
            };
        Ok(Defaults {
            account: self.account.clone(),
            recorded_at,
        })
    }

    fn results_mode(&self) -> Result<ResultsMode, ApiError> {
        match self.results.as_deref() {
            None | Some("all") => Ok(ResultsMode::All),
            Some("problems") => Ok(ResultsMode::Problems),
            Some("none") => Ok(ResultsMode::None),
            Some(other) => Err(ApiError::BadRequest(format!(
                "query parameter results={other:?}: expected all, problems or none"
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResultsMode {
    All,
    Problems,
    None,
}

fn now() -> i64 {
    to_micros(chrono::Utc::now())
}

/// Refuse a body whose declared length is over `limit` before reading any of it.
/// Refuse a body whose declared length is over `limit`; else its declared length.
fn refuse_declared_over(request: &Request, limit: u64) -> Result<Option<u64>, ApiError> {
    let declared: Option<u64> = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    match declared {
        Some(n) if n > limit => Err(ApiError::TooLarge { limit }),
        _ => Ok(declared),
    }
}

/// Commit a batch through the group-commit ledger, count it, and return its
/// per-line results.
async fn commit(
    state: &AppState,
    batch: WriteBatch,
    summary: &mut Summary,
) -> Result<Vec<LineResult>, ApiError> {
    let (batch, outcome) = state.ledger.submit(batch).await?;
    let results = summary.absorb(&batch, &outcome);
    state.metrics.count(&results);
    Ok(results)
}

/// The caller's defaults and account restriction, from the query and the
/// principal (see [`scope`]).
pub struct IngestScope {
    defaults: Defaults,
    only: Option<String>,
    query: IngestQuery,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for IngestScope {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let ApiQuery(query) = ApiQuery::<IngestQuery>::from_request_parts(parts, state).await?;
        // The authentication layer puts the principal on every request it lets through.
        let principal = parts
            .extensions
            .get::<Principal>()
            .ok_or_else(|| ApiError::internal("no principal on an authenticated request"))?;
        let (defaults, only) = scope(principal, &query)?;
        Ok(IngestScope {
            defaults,
            only,
            query,
        })
    }
}

/// Defaults and the account restriction for the caller: an account key
/// ingests for its own account only (and may not name another in the query).
/// The account, when known, goes on the request's span.
fn scope(
    principal: &Principal,
    query: &IngestQuery,
) -> Result<(Defaults, Option<String>), ApiError> {
    super::note_target(
        query.account.as_deref().or(match principal {
            Principal::Admin => None,
            Principal::Account(own) => Some(own.as_str()),
        }),
        None,
    );
    let mut defaults = query.defaults()?;
    match principal {
        Principal::Admin => Ok((defaults, None)),
        Principal::Account(own) => {
            if defaults.account.as_ref().is_some_and(|a| a != own) {
                return Err(ApiError::Forbidden(format!(
                    "this API key may only ingest for account {own:?}"
                )));
            }
            defaults.account = Some(own.clone());
            Ok((defaults, Some(own.clone())))
        }
    }
}

pub async fn post_usage(
    State(state): State<AppState>,
    IngestScope { defaults, only, .. }: IngestScope,
    request: Request,
) -> Result<Response, ApiError> {
    let limit = state.config.max_body_bytes;
    let declared = refuse_declared_over(&request, limit as u64)?;
    let _turn = match declared {
        Some(n) if n > crate::ingest::CHUNK_BYTES as u64 => {
            // The semaphore is never closed.
            Some(
                state
                    .large_body_turn
                    .acquire()
                    .await
                    .map_err(ApiError::internal)?,
            )
        }
        _ => None,
    };
    // This endpoint's own limit (not axum's default), hence no `From`.
    let bytes = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|e| {
            if is_length_limit(&e) {
                ApiError::TooLarge {
                    limit: limit as u64,
                }
            } else {
                ApiError::BadRequest(format!("could not read the request body: {e}"))
            }
        })?;
    let mut builder = ChunkBuilder::new("http", defaults, now())
        .only_for(only)
        .retaining(state.config.retention);
    builder.push_line(1, &bytes);
    let batch = builder.take();
    let mut summary = Summary::default();
    let result = commit(&state, batch, &mut summary)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::BadRequest("empty body: expected one JSON record".into()))?;
    let status = match (result.status, result.error.as_ref().map(|e| e.kind)) {
        ("recorded", _) => StatusCode::CREATED,
        ("duplicate", _) => StatusCode::OK,
        ("conflict", _) => StatusCode::CONFLICT,
        (_, Some("forbidden")) => StatusCode::FORBIDDEN,
        (_, Some("malformed")) => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Ok((status, Json(result)).into_response())
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

pub async fn post_batch(
    State(state): State<AppState>,
    IngestScope {
        defaults,
        only,
        query,
    }: IngestScope,
    request: Request,
) -> Result<Response, ApiError> {
    let max_total = state.config.max_batch_bytes;
    let max_line = state.config.max_body_bytes;
    refuse_declared_over(&request, max_total)?;
    let chunk_lines = state.ledger.store().chunk_lines();
    let body = request.into_body().into_data_stream();
    let mut reader = LineReader::new(StreamReader::new(body.map_err(io::Error::other)), max_line);
    let mut builder = ChunkBuilder::new("http", defaults, now())
        .with_chunk_lines(chunk_lines)
        .only_for(only)
        .retaining(state.config.retention);
    let mut summary = Summary::default();
    // Per-line results are serialised as they arrive: a compact buffer, not
    // a growing list of structs.
    let mut results = ResultsJson::new(query.results_mode()?);
    // Chunks commit while the next ones are read and parsed (several at once
    // on PostgreSQL), in order. A large batch needs no group commit: it goes
    // to the store directly.
    let mut committer = OrderedCommitter::new(state.ledger.store().clone());
    let mut on_done = |batch: WriteBatch, outcome: WriteOutcome, _: u64| {
        let lines = summary.absorb(&batch, &outcome);
        state.metrics.count(&lines);
        results.extend(&lines);
    };
    let mut total: u64 = 0;
    let mut too_large = false;

    loop {
        let item = match reader.next_line().await {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(e) => {
                // The client went away or broke the framing: keep what is committed.
                tracing::warn!("batch body ended early: {e}");
                break;
            }
        };
        total += item.len;
        if total > max_total {
            too_large = true;
            break;
        }
        builder.push_read(&item, max_line);
        if builder.is_full() {
            let batch = builder.take();
            builder.set_now(now());
            committer.submit(batch, 0, &mut on_done).await?;
        }
    }
    if !builder.is_empty() {
        committer.submit(builder.take(), 0, &mut on_done).await?;
    }
    committer.finish(&mut on_done).await?;

    tracing::Span::current().record(
        "lines",
        summary.accepted + summary.duplicates + summary.conflicts + summary.rejected,
    );
    let mut body = serde_json::to_vec(&summary).unwrap_or_else(|_| b"{}".to_vec());
    body.pop(); // the closing brace: the results (and any error) follow
    body.extend_from_slice(b",\"results\":");
    body.extend_from_slice(&results.finish());
    if too_large {
        let error = json!({"type": "payload_too_large", "message": format!(
            "body is larger than {max_total} bytes: the lines before the limit were processed (see results), the rest was not read")});
        body.extend_from_slice(b",\"error\":");
        body.extend_from_slice(error.to_string().as_bytes());
    }
    body.push(b'}');
    let status = if too_large {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::OK
    };
    Ok((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A JSON array written incrementally, keeping the lines the mode asks for.
struct ResultsJson {
    mode: ResultsMode,
    json: Vec<u8>,
}

impl ResultsJson {
    fn new(mode: ResultsMode) -> Self {
        ResultsJson {
            mode,
            json: Vec::new(),
        }
    }

    fn extend(&mut self, results: &[LineResult]) {
        for r in results {
            let keep = match self.mode {
                ResultsMode::All => true,
                ResultsMode::Problems => !matches!(r.status, "recorded" | "duplicate"),
                ResultsMode::None => false,
            };
            if !keep {
                continue;
            }
            self.json
                .push(if self.json.is_empty() { b'[' } else { b',' });
            if serde_json::to_writer(&mut self.json, r).is_err() {
                self.json.extend_from_slice(b"null");
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.json.is_empty() {
            self.json.push(b'[');
        }
        self.json.push(b']');
        self.json
    }
}
