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

use super::Blame;
use super::{ApiError, ApiQuery, AppState};
use crate::auth::Principal;
use crate::ingest::lines::LineReader;
use crate::ingest::pipeline::{OrderedCommitter, Settled};
use crate::ingest::{ChunkBuilder, LineResult, Summary};
use crate::record::Defaults;
use crate::store::{Store, WriteBatch, WriteOutcome};
use crate::time::parse_rfc3339;
use crate::time::{Micros, to_micros};

#[derive(Debug, Deserialize)]
pub struct IngestQuery {
    account: Option<String>,
    recorded_at: Option<String>,
    /// Batch only: which lines `results` lists: `all` (default), `problems`
    /// (conflicts and rejections only: for very large batches), or `none`.
    results: Option<String>,
}

impl IngestQuery {
    /// The defaults the query gives, checked as a record's own fields are
    /// (an empty or malformed one is refused, not taken as absent).
    fn defaults(&self, oldest: Option<Micros>) -> Result<Defaults, ApiError> {
        // Names the parameter: the parser's message alone would not.
        let recorded_at = match &self.recorded_at {
            Some(t) => {
                let t = parse_rfc3339(t).field("query parameter recorded_at")?;
                let earliest = oldest.unwrap_or(crate::time::EARLIEST);
                if let Some(why) = crate::time::out_of_range(t, earliest, now()) {
                    return Err(why).field("query parameter recorded_at");
                }
                Some(t)
            }
            None => None,
        };
        if let Some(a) = &self.account {
            crate::record::validate_account(a).field(&format!("query parameter account {a:?}"))?;
        }
        Ok(Defaults {
            account: self.account.clone(),
            recorded_at,
            oldest,
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

impl axum::extract::FromRequestParts<AppState> for IngestScope {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let ApiQuery(query) = ApiQuery::<IngestQuery>::from_request_parts(parts, state).await?;
        // The authentication layer puts the principal on every request it lets through.
        let principal = parts
            .extensions
            .get::<Principal>()
            .ok_or_else(|| ApiError::internal("no principal on an authenticated request"))?;
        let (defaults, only) = scope(principal, &query, state.config.oldest)?;
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
    oldest: Option<Micros>,
) -> Result<(Defaults, Option<String>), ApiError> {
    super::note_target(
        query.account.as_deref().or(match principal {
            Principal::Admin => None,
            Principal::Account(own) => Some(own.as_str()),
        }),
        None,
    );
    let mut defaults = query.defaults(oldest)?;
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
            Some(state.large_body_turn.acquire().await.internal()?)
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

/// Why a batch's body was not read to its end.
enum Cut {
    /// Past `--max-batch-bytes`.
    TooLarge,
    /// The body ended before it was complete (the client went away, or
    /// broke the framing): what the reader said.
    EndedEarly(String),
    /// Storage failed in a way that may pass (the database cannot be
    /// reached): the first failure, as logged.
    StorageFailed,
}

/// The answer being built: the counts and the per-line results.
struct Answer<'a> {
    state: &'a AppState,
    summary: Summary,
    results: ResultsJson,
    /// Whether any write of this request reached the ledger.
    wrote: bool,
    /// The query's defaults, kept with a line the database refuses (a
    /// retry then reads it as this request did).
    defaults: crate::record::Defaults,
}

impl Answer<'_> {
    fn committed(&mut self, batch: &WriteBatch, outcome: &WriteOutcome) {
        self.wrote = true;
        let lines = self.summary.absorb(batch, outcome);
        self.state.metrics.count(&lines);
        self.results.extend(&lines);
    }

    fn not_stored(&mut self, batch: &WriteBatch) {
        let lines = self.summary.not_stored(batch, NOT_STORED, true);
        self.results.extend(&lines);
    }

    /// A line the database itself refused, alone, while it took the others.
    async fn refused(&mut self, mut batch: WriteBatch) {
        let Some(rejection) = batch.rejections.pop().or_else(|| {
            batch.records.pop().map(|r| crate::record::NewRejection {
                raw: r.raw.clone().into_bytes(),
                error: crate::record::LineError::whole(
                    crate::record::RejectReason::Invalid,
                    r.origin.line,
                    REFUSED.to_owned(),
                ),
                origin: r.origin.clone(),
                defaults: crate::record::Defaults {
                    oldest: None,
                    ..self.defaults.clone()
                },
            })
        }) else {
            return;
        };
        // Kept in the rejected store when it can be (the cause may be in
        // the raw text itself, then it cannot).
        let line = rejection.origin.line;
        let mut kept = WriteBatch::default();
        kept.rejections.push(rejection);
        let rejected_id = match self.state.ledger.store().write(&kept).await {
            Ok(outcome) => {
                self.wrote = true;
                outcome.rejections.first().copied()
            }
            Err(_) => None,
        };
        self.summary.rejected += 1;
        self.summary.rejected_lines.push(line);
        self.results.extend(&[crate::ingest::LineResult {
            line,
            status: "rejected",
            id: None,
            account: None,
            error: Some(crate::ingest::LineErrorBody {
                kind: "storage_refused",
                message: REFUSED.to_owned(),
                line: Some(line),
                column: None,
                field: None,
            }),
            rejected_id,
            retryable: Some(false),
        }]);
    }

    /// After a chunk's write failed: settle everything in flight, report
    /// each chunk truthfully, and store what the database will take of a
    /// chunk it refused (one line at fault does not cost the others).
    /// `Some` when storage cannot be used now: reading must stop.
    async fn recover(&mut self, committer: &mut OrderedCommitter<dyn Store>) -> Option<Cut> {
        let mut cut = None;
        for settled in committer.settle().await {
            match settled {
                Settled::Committed(batch, outcome) => self.committed(&batch, &outcome),
                // Storage cannot be used: it is not stored. Else it is tried
                // as any chunk is (in halves if the database refuses it).
                Settled::Unsent(batch) if cut.is_some() => self.not_stored(&batch),
                Settled::Unsent(batch) => {
                    if self.isolate(batch).await {
                        cut = Some(Cut::StorageFailed);
                    }
                }
                Settled::Failed(failed) if cut.is_some() || unavailable(&failed.error) => {
                    if cut.is_none() {
                        tracing::warn!("a batch's chunk was not stored: {}", failed.error);
                    }
                    cut = Some(Cut::StorageFailed);
                    self.not_stored(&failed.batch);
                }
                Settled::Failed(failed) => {
                    tracing::warn!(
                        "the database refused a batch's chunk; storing its lines one part at a time: {}",
                        failed.error
                    );
                    if self.isolate(failed.batch).await {
                        cut = Some(Cut::StorageFailed);
                    }
                }
            }
        }
        cut
    }

    /// Store `batch` in halves, down to the single lines the database
    /// refuses. True when storage failed in a way that may pass meanwhile
    /// (what was left is reported `not_stored`).
    async fn isolate(&mut self, batch: WriteBatch) -> bool {
        let store = self.state.ledger.store().clone();
        let mut parts = vec![batch];
        let mut failed = false;
        while let Some(part) = parts.pop() {
            if failed {
                self.not_stored(&part);
                continue;
            }
            match store.write(&part).await {
                Ok(outcome) => self.committed(&part, &outcome),
                Err(e) if unavailable(&e) => {
                    tracing::warn!("a batch's chunk was not stored: {e}");
                    failed = true;
                    self.not_stored(&part);
                }
                Err(e) if part.len() <= 1 => {
                    tracing::warn!("the database refused a line of a batch: {e}");
                    self.refused(part).await;
                }
                Err(_) => {
                    let (first, second) = halves(part);
                    // A stack: the first half is stored first, as read.
                    parts.push(second);
                    parts.push(first);
                }
            }
        }
        failed
    }
}

/// What a line that storage did not take says.
const NOT_STORED: &str = "storage failed before this line was stored: send it again";
/// What a line the database refused on its own says (the cause is logged).
const REFUSED: &str = "the database refused to store this line while it stored the others; the cause is in the server's log";

/// Whether a store error means "cannot be used now" (a 503), not a refusal.
fn unavailable(e: &crate::store::StoreError) -> bool {
    matches!(ApiError::from(e), ApiError::Unavailable(_))
}

/// A chunk cut in two, its lines in order (rejections go with the first).
fn halves(mut batch: WriteBatch) -> (WriteBatch, WriteBatch) {
    let second = WriteBatch {
        records: if batch.rejections.is_empty() {
            batch.records.split_off(batch.records.len() / 2)
        } else {
            std::mem::take(&mut batch.records)
        },
        rejections: Vec::new(),
    };
    (batch, second)
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
    let mode = query.results_mode()?;
    let store = state.ledger.store().clone();
    let chunk_lines = store.chunk_lines();
    let body = request.into_body().into_data_stream();
    let mut reader = LineReader::new(StreamReader::new(body.map_err(io::Error::other)), max_line);
    let kept_defaults = defaults.clone();
    let mut builder = ChunkBuilder::new("http", defaults, now())
        .with_chunk_lines(chunk_lines)
        .only_for(only)
        .retaining(state.config.retention);
    // Per-line results are serialised as they arrive: a compact buffer, not
    // a growing list of structs.
    let mut answer = Answer {
        state: &state,
        summary: Summary::default(),
        results: ResultsJson::new(mode),
        wrote: false,
        defaults: kept_defaults,
    };
    // Chunks commit while the next ones are read and parsed (several at once
    // on PostgreSQL), in order. A large batch needs no group commit: it goes
    // to the store directly.
    let mut committer = OrderedCommitter::new(store);
    let mut total: u64 = 0;
    let mut last_line: u64 = 0;
    let mut cut = None;

    while cut.is_none() {
        let item = match reader.next_line().await {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("batch body ended early after line {last_line}: {e}");
                cut = Some(Cut::EndedEarly(e.to_string()));
                break;
            }
        };
        total += item.len;
        if total > max_total {
            cut = Some(Cut::TooLarge);
            break;
        }
        last_line = item.number;
        builder.push_read(&item, max_line);
        if builder.is_full() {
            let batch = builder.take();
            builder.set_now(now());
            let submitted = committer
                .submit(batch, 0, &mut |b, o, _| answer.committed(&b, &o))
                .await;
            if submitted.is_err() {
                cut = answer.recover(&mut committer).await;
            }
        }
    }
    if total == 0 && cut.is_none() {
        return Err(ApiError::BadRequest(
            "the body is empty: expected NDJSON, one record per line".into(),
        ));
    }
    if !matches!(cut, Some(Cut::StorageFailed)) && !builder.is_empty() {
        let submitted = committer
            .submit(builder.take(), 0, &mut |b, o, _| answer.committed(&b, &o))
            .await;
        if submitted.is_err() {
            cut = answer.recover(&mut committer).await.or(cut);
        }
    }
    let finished = committer
        .finish(&mut |b, o, _| answer.committed(&b, &o))
        .await;
    if finished.is_err() {
        cut = answer.recover(&mut committer).await.or(cut);
    }

    let Answer {
        summary,
        results,
        wrote,
        ..
    } = answer;
    tracing::Span::current().record(
        "lines",
        summary.accepted
            + summary.duplicates
            + summary.conflicts
            + summary.rejected
            + summary.not_stored,
    );
    let (status, error) = match &cut {
        None => (StatusCode::OK, None),
        Some(Cut::TooLarge) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            Some(json!({"type": "payload_too_large", "message": format!(
                "body is larger than {max_total} bytes: the lines before the limit were processed (see results), the rest was not read")})),
        ),
        Some(Cut::EndedEarly(why)) => (
            StatusCode::BAD_REQUEST,
            Some(
                json!({"type": "incomplete_body", "last_complete_line": last_line, "message": format!(
                "the body ended before it was complete ({why}): lines 1 to {last_line}, the last complete one, were processed (see results); send the lines after line {last_line} again")}),
            ),
        ),
        Some(Cut::StorageFailed) if !wrote => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(
                json!({"type": "storage_unavailable", "last_read_line": last_line,
                        "message": super::error::UNAVAILABLE_MESSAGE}),
            ),
        ),
        Some(Cut::StorageFailed) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(
                json!({"type": "storage_unavailable", "last_read_line": last_line, "message": format!(
                "storage failed part-way: {} lines were stored (recorded or duplicates), {} were not (status not_stored, retryable), and the lines after line {last_line} were not read; send those again (lines already stored count as duplicates)",
                summary.accepted + summary.duplicates, summary.not_stored)}),
            ),
        ),
    };
    let mut body = serde_json::to_vec(&summary).unwrap_or_else(|_| b"{}".to_vec());
    body.pop(); // the closing brace: the results (and any error) follow
    body.extend_from_slice(b",\"results\":");
    body.extend_from_slice(&results.finish());
    if let Some(error) = error {
        body.extend_from_slice(b",\"error\":");
        body.extend_from_slice(error.to_string().as_bytes());
    }
    body.push(b'}');
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
