//! `POST /v1/usage` (one record) and `POST /v1/usage/batch` (NDJSON, streamed).
//!
//! Both answer only after the commit. Out-of-band defaults for records that
//! lack them come from the query string: `?account=A&recorded_at=TIME`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState};
use crate::ingest::parse::{LineError, RejectReason, parse_record, parse_time};
use crate::ingest::{ChunkBuilder, LineResult, Summary};
use crate::record::{Defaults, Origin, to_micros};
use crate::store::{NewRejection, WriteBatch};

#[derive(Debug, Deserialize)]
pub struct IngestQuery {
    account: Option<String>,
    recorded_at: Option<String>,
}

impl IngestQuery {
    fn defaults(&self) -> Result<Defaults, ApiError> {
        let recorded_at =
            match &self.recorded_at {
                Some(t) => Some(parse_time(t).map_err(|m| {
                    ApiError::BadRequest(format!("query parameter recorded_at: {m}"))
                })?),
                None => None,
            };
        Ok(Defaults {
            account: self.account.clone(),
            recorded_at,
        })
    }
}

fn now() -> i64 {
    to_micros(chrono::Utc::now())
}

fn declared_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Commit a batch through the group-commit ledger and count it.
async fn commit(
    state: &AppState,
    batch: WriteBatch,
    summary: &mut Summary,
) -> Result<Vec<LineResult>, ApiError> {
    let (batch, outcome) = state
        .ledger
        .submit(batch)
        .await
        .map_err(ApiError::Storage)?;
    let mut part = Summary::default();
    let results = part.absorb(&batch, &outcome);
    state.metrics.count(&part);
    summary.accepted += part.accepted;
    summary.duplicates += part.duplicates;
    summary.conflicts += part.conflicts;
    summary.rejected += part.rejected;
    summary.rejected_lines.extend(part.rejected_lines);
    summary.conflict_lines.extend(part.conflict_lines);
    summary.problems.extend(part.problems);
    Ok(results)
}

pub async fn post_usage(
    State(state): State<AppState>,
    Query(query): Query<IngestQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let defaults = query.defaults()?;
    let limit = state.config.max_body_bytes;
    if declared_length(&request).is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge {
            limit: limit as u64,
        });
    }
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
    let origin = Origin {
        source: "http".into(),
        line: 1,
    };
    let mut batch = WriteBatch::default();
    match parse_record(&bytes, &origin, &defaults, now()) {
        Ok(record) => batch.records.push(record),
        Err(error) => batch.rejections.push(NewRejection {
            raw: bytes.to_vec(),
            error,
            origin,
            defaults,
        }),
    }
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

/// Bytes kept of a line that is longer than the per-line limit.
const OVERLONG_KEEP: usize = 64 << 10;

pub async fn post_batch(
    State(state): State<AppState>,
    Query(query): Query<IngestQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let defaults = query.defaults()?;
    let max_total = state.config.max_batch_bytes;
    let max_line = state.config.max_body_bytes;
    if declared_length(&request).is_some_and(|n| n > max_total) {
        return Err(ApiError::TooLarge { limit: max_total });
    }
    let mut reader = LineReader::new(request.into_body(), max_line);
    let mut builder = ChunkBuilder::new("http", defaults.clone(), now());
    let mut summary = Summary::default();
    let mut results: Vec<LineResult> = Vec::new();
    let mut total: u64 = 0;
    let mut too_large = false;

    loop {
        let item = match reader.next_line().await {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(e) => {
                // The client went away or sent garbage framing: keep what is committed.
                tracing::warn!("batch body ended early: {e}");
                break;
            }
        };
        total += item.len as u64;
        if total > max_total {
            too_large = true;
            break;
        }
        match item.overlong {
            false => builder.push_line(item.number, &item.bytes),
            true => {
                let origin = Origin {
                    source: "http".into(),
                    line: item.number,
                };
                let error = LineError {
                    reason: RejectReason::Malformed,
                    message: format!(
                        "line is longer than {max_line} bytes (the per-record limit); its first {OVERLONG_KEEP} bytes are kept"
                    ),
                    line: Some(item.number),
                    column: None,
                    field: None,
                };
                let mut batch = builder.take();
                let head = item.bytes.slice(..OVERLONG_KEEP.min(item.bytes.len()));
                batch.rejections.push(NewRejection {
                    raw: head.to_vec(),
                    error,
                    origin,
                    defaults: defaults.clone(),
                });
                results.extend(commit(&state, batch, &mut summary).await?);
            }
        }
        if builder.is_full() {
            results.extend(commit(&state, builder.take(), &mut summary).await?);
            builder.set_now(now());
        }
    }
    if !builder.is_empty() {
        results.extend(commit(&state, builder.take(), &mut summary).await?);
    }

    let mut body = serde_json::to_value(&summary).unwrap_or_else(|_| json!({}));
    if let Some(obj) = body.as_object_mut() {
        obj.insert(
            "results".into(),
            serde_json::to_value(&results).unwrap_or_default(),
        );
        if too_large {
            obj.insert(
                "error".into(),
                json!({"type": "payload_too_large", "message": format!(
                    "body is larger than {max_total} bytes: the lines before the limit were processed (see results), the rest was not read")}),
            );
        }
    }
    let status = if too_large {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::OK
    };
    Ok((status, Json(body)).into_response())
}

struct Line {
    number: u64,
    bytes: Bytes,
    /// Bytes the line had on the wire (may exceed `bytes.len()` when overlong).
    len: usize,
    overlong: bool,
}

/// Splits a streamed body into lines without holding more than one line
/// (capped at `max_line` bytes) plus one network chunk in memory.
struct LineReader {
    stream: axum::body::BodyDataStream,
    pending: BytesMut,
    number: u64,
    max_line: usize,
    skipping: Option<(Bytes, usize)>,
    done: bool,
}

impl LineReader {
    fn new(body: Body, max_line: usize) -> Self {
        LineReader {
            stream: body.into_data_stream(),
            pending: BytesMut::new(),
            number: 0,
            max_line,
            skipping: None,
            done: false,
        }
    }

    async fn next_line(&mut self) -> Result<Option<Line>, axum::Error> {
        loop {
            if let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
                let chunk = self.pending.split_to(pos + 1).freeze();
                self.number += 1;
                if let Some((head, seen)) = self.skipping.take() {
                    return Ok(Some(Line {
                        number: self.number,
                        bytes: head,
                        len: seen + chunk.len(),
                        overlong: true,
                    }));
                }
                let len = chunk.len();
                return Ok(Some(Line {
                    number: self.number,
                    bytes: chunk,
                    len,
                    overlong: len > self.max_line + 2,
                }));
            }
            if self.pending.len() > self.max_line {
                // Keep only the head of an overlong line; drop the rest as it streams by.
                let dropped = self.pending.split().freeze();
                let (head, seen) = self
                    .skipping
                    .take()
                    .unwrap_or_else(|| (dropped.slice(..OVERLONG_KEEP.min(dropped.len())), 0));
                self.skipping = Some((head, seen + dropped.len()));
            }
            if self.done {
                if self.pending.is_empty() && self.skipping.is_none() {
                    return Ok(None);
                }
                let rest = self.pending.split().freeze();
                self.number += 1;
                if let Some((head, seen)) = self.skipping.take() {
                    return Ok(Some(Line {
                        number: self.number,
                        bytes: head,
                        len: seen + rest.len(),
                        overlong: true,
                    }));
                }
                let len = rest.len();
                return Ok(Some(Line {
                    number: self.number,
                    bytes: rest,
                    len,
                    overlong: len > self.max_line,
                }));
            }
            match self.stream.next().await {
                Some(chunk) => self.pending.extend_from_slice(&chunk?),
                None => self.done = true,
            }
        }
    }
}
