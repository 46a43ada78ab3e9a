//! Ingestion: NDJSON lines to write batches, and the tally of what happened.
//!
//! The same code serves `tally ingest` (files, stdin: [`files`]) and
//! `POST /v1/usage/batch`: one reader splits the input into capped lines
//! ([`lines`]), lines are parsed into a [`WriteBatch`] of records and rejections, the
//! batch is committed in one transaction, and only then are its lines counted
//! as accepted. Memory is bounded by the chunk size, not by the input size.

mod canonical;
mod containers;
mod counters;
pub mod files;
pub mod lines;
pub mod parse;
pub mod pipeline;
pub mod retention;
pub mod retry;
mod stream;

use serde::Serialize;

use crate::record::{Defaults, Origin};
use crate::record::{LineError, NewRejection, RejectReason, conflict_error};
use crate::store::{RecordOutcome, WriteBatch, WriteOutcome};
use crate::time::Micros;
use parse::parse_retaining;
use retention::Retention;

/// A chunk is also cut once its raw text passes this many bytes: the size
/// from which a record counts as large (and is committed alone).
pub const CHUNK_BYTES: usize = crate::store::LARGE_RECORD_BYTES;

/// Accumulates raw lines and parses them into one [`WriteBatch`].
pub struct ChunkBuilder {
    source: String,
    defaults: Defaults,
    now: Micros,
    batch: WriteBatch,
    bytes: usize,
    max_lines: usize,
    /// When set (an account API key), records for any other account are rejected.
    only_account: Option<String>,
    retention: Retention,
}

impl ChunkBuilder {
    pub fn new(source: impl Into<String>, defaults: Defaults, now: Micros) -> Self {
        ChunkBuilder {
            source: source.into(),
            defaults,
            now,
            batch: WriteBatch::default(),
            bytes: 0,
            max_lines: crate::store::CHUNK_LINES,
            only_account: None,
            retention: Retention::Full,
        }
    }

    /// Keep of each line what `retention` says (records and rejected lines alike).
    pub fn retaining(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// A line that is not recorded, as it is kept.
    fn kept(&self, text: &[u8]) -> Vec<u8> {
        match self.retention {
            Retention::Full => text.to_vec(),
            Retention::Billing => retention::billing_bytes(text),
        }
    }

    /// Accept records for this account only (the caller's key is bound to it).
    pub fn only_for(mut self, account: Option<String>) -> Self {
        self.only_account = account;
        self
    }

    /// Cut chunks at `lines` lines instead of [`crate::store::CHUNK_LINES`].
    pub fn with_chunk_lines(mut self, lines: usize) -> Self {
        self.max_lines = lines.max(1);
        self
    }

    /// Parse one line. Blank lines are skipped (they are not records).
    pub fn push_line(&mut self, line: u64, bytes: &[u8]) {
        let text = trim_line_end(bytes);
        if text.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.bytes += text.len();
        let origin = Origin {
            source: self.source.clone(),
            line,
        };
        match parse_retaining(text, &origin, &self.defaults, self.now, self.retention) {
            Ok(record)
                if self
                    .only_account
                    .as_ref()
                    .is_some_and(|a| *a != record.account) =>
            {
                let error = LineError {
                    reason: RejectReason::Forbidden,
                    message: format!(
                        "this API key may only ingest for account {:?}, not {:?}",
                        self.only_account.as_deref().unwrap_or_default(),
                        record.account
                    ),
                    line: Some(line),
                    column: None,
                    field: Some("account".into()),
                };
                self.batch.rejections.push(NewRejection {
                    raw: self.kept(text),
                    error,
                    origin,
                    defaults: self.defaults.clone(),
                });
            }
            Ok(record) => self.batch.records.push(record),
            Err(error) => self.batch.rejections.push(NewRejection {
                raw: self.kept(text),
                error,
                origin,
                defaults: self.defaults.clone(),
            }),
        }
    }

    /// Add a line that was rejected before parsing (e.g. too long).
    pub fn push_rejection(&mut self, rejection: NewRejection) {
        self.bytes += rejection.raw.len();
        self.batch.rejections.push(rejection);
    }

    pub fn is_full(&self) -> bool {
        self.batch.len() >= self.max_lines || self.bytes >= CHUNK_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Hand over the parsed batch and start a new one.
    pub fn take(&mut self) -> WriteBatch {
        self.bytes = 0;
        std::mem::take(&mut self.batch)
    }

    pub fn set_now(&mut self, now: Micros) {
        self.now = now;
    }
}

pub fn trim_line_end(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && matches!(bytes.get(end - 1), Some(b'\n' | b'\r')) {
        end -= 1;
    }
    bytes.get(..end).unwrap_or_default()
}

/// The outcome of one line, as `POST /v1/usage/batch` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct LineResult {
    pub line: u64,
    /// `recorded`, `duplicate`, `conflict` or `rejected`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<LineErrorBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_id: Option<i64>,
    /// On a line that was not stored (`not_stored`, or `rejected` by the
    /// database itself): whether sending it again may succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

impl LineResult {
    /// A line rejected as bad input, kept as `rejected_id` when it was.
    fn rejected(
        rejection: &NewRejection,
        rejected_id: Option<i64>,
        retryable: Option<bool>,
    ) -> Self {
        LineResult {
            line: rejection.origin.line,
            status: "rejected",
            id: None,
            account: None,
            error: Some((&rejection.error).into()),
            rejected_id,
            retryable,
        }
    }
}

/// An error as the JSON outputs show it.
#[derive(Debug, Clone, Serialize)]
pub struct LineErrorBody {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub message: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub field: Option<String>,
}

impl From<&LineError> for LineErrorBody {
    fn from(e: &LineError) -> Self {
        LineErrorBody {
            kind: e.reason.as_str(),
            message: e.to_string(),
            line: e.line,
            column: e.column,
            field: e.field.clone(),
        }
    }
}

/// One rejected or conflicting line in a summary.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub source: String,
    pub line: u64,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub error: String,
    pub rejected_id: i64,
}

/// The summary `tally ingest` prints and `POST /v1/usage/batch` returns.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub accepted: u64,
    pub duplicates: u64,
    pub conflicts: u64,
    pub rejected: u64,
    /// Line numbers of rejected lines (bad input; conflicts are in `conflict_lines`).
    pub rejected_lines: Vec<u64>,
    pub conflict_lines: Vec<u64>,
    /// Lines that were not accepted, with what went wrong (the first
    /// [`MAX_PROBLEMS`]; `problems_omitted` counts the rest).
    pub problems: Vec<Problem>,
    pub problems_omitted: u64,
    /// Lines that could not be stored because storage failed (their
    /// results say `not_stored`): none unless the answer says storage failed.
    #[serde(skip_serializing_if = "is_zero")]
    pub not_stored: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Cap on the detailed problem list, so a file of garbage cannot grow the summary without bound.
pub const MAX_PROBLEMS: usize = 1000;

impl Summary {
    /// Count a committed batch. Returns its per-line results, in line order.
    pub fn absorb(&mut self, batch: &WriteBatch, outcome: &WriteOutcome) -> Vec<LineResult> {
        let mut results = Vec::with_capacity(batch.len());
        let (rejected_before, conflicts_before) =
            (self.rejected_lines.len(), self.conflict_lines.len());
        for (record, result) in batch.records.iter().zip(&outcome.records) {
            let mut line = LineResult {
                line: record.origin.line,
                status: "recorded",
                id: record
                    .message_id
                    .clone()
                    .or_else(|| record.custom_id.clone()),
                account: Some(record.account.clone()),
                error: None,
                rejected_id: None,
                retryable: None,
            };
            match result {
                RecordOutcome::Recorded => self.accepted += 1,
                RecordOutcome::Duplicate => {
                    self.duplicates += 1;
                    line.status = "duplicate";
                }
                RecordOutcome::Conflict {
                    message,
                    rejected_id,
                } => {
                    self.conflicts += 1;
                    self.conflict_lines.push(record.origin.line);
                    let error = conflict_error(message.clone(), &record.origin);
                    self.note(Problem {
                        source: record.origin.source.clone(),
                        line: record.origin.line,
                        kind: "conflict",
                        error: error.to_string(),
                        rejected_id: *rejected_id,
                    });
                    line.status = "conflict";
                    line.error = Some((&error).into());
                    line.rejected_id = Some(*rejected_id);
                }
            }
            results.push(line);
        }
        for (rejection, id) in batch.rejections.iter().zip(&outcome.rejections) {
            self.rejected += 1;
            self.rejected_lines.push(rejection.origin.line);
            self.note(Problem {
                source: rejection.origin.source.clone(),
                line: rejection.origin.line,
                kind: rejection.error.reason.as_str(),
                error: rejection.error.to_string(),
                rejected_id: *id,
            });
            results.push(LineResult::rejected(rejection, Some(*id), None));
        }
        results.sort_by_key(|r| r.line);
        // Keep each batch's line numbers in order (batches arrive in file order).
        if let Some(tail) = self.rejected_lines.get_mut(rejected_before..) {
            tail.sort_unstable();
        }
        if let Some(tail) = self.conflict_lines.get_mut(conflicts_before..) {
            tail.sort_unstable();
        }
        results
    }

    /// Count a chunk that storage could not take: each of its lines is
    /// `not_stored` (a bad line keeps its own rejection, unstored). Returns
    /// its per-line results, in line order.
    pub fn not_stored(
        &mut self,
        batch: &WriteBatch,
        error: &str,
        retryable: bool,
    ) -> Vec<LineResult> {
        let mut results = Vec::with_capacity(batch.len());
        for record in &batch.records {
            self.not_stored += 1;
            results.push(LineResult {
                line: record.origin.line,
                status: "not_stored",
                id: record
                    .message_id
                    .clone()
                    .or_else(|| record.custom_id.clone()),
                account: Some(record.account.clone()),
                error: Some(LineErrorBody {
                    kind: "storage_unavailable",
                    message: error.to_owned(),
                    line: Some(record.origin.line),
                    column: None,
                    field: None,
                }),
                rejected_id: None,
                retryable: Some(retryable),
            });
        }
        for rejection in &batch.rejections {
            self.rejected += 1;
            self.rejected_lines.push(rejection.origin.line);
            results.push(LineResult::rejected(rejection, None, Some(false)));
        }
        results.sort_by_key(|r| r.line);
        results
    }

    fn note(&mut self, problem: Problem) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem);
        } else {
            self.problems_omitted += 1;
        }
    }

    /// Every line was accepted or a duplicate.
    pub fn all_good(&self) -> bool {
        self.conflicts == 0 && self.rejected == 0
    }
}
