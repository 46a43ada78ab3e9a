//! Why a line was not recorded, and the line itself as it is kept in the
//! rejected store for inspection and retry.

use std::fmt;

use super::{Defaults, Origin};

/// Why a line was not recorded. Stored with the rejected line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Not valid JSON (or not UTF-8).
    Malformed,
    /// Valid JSON that is not a record (a lone content block, an array, …).
    NotARecord,
    /// A record with a field that breaks a rule (negative count, bad time, …).
    Invalid,
    /// A streamed response cut off before its `message_delta`.
    Incomplete,
    /// Same id with another body or under another account; or a container
    /// already owned by another account (docs/input.md).
    Conflict,
    /// A record for an account the caller's API key may not write to.
    Forbidden,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::NotARecord => "not_a_record",
            RejectReason::Invalid => "invalid",
            RejectReason::Incomplete => "incomplete",
            RejectReason::Conflict => "conflict",
            RejectReason::Forbidden => "forbidden",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "malformed" => RejectReason::Malformed,
            "not_a_record" => RejectReason::NotARecord,
            "invalid" => RejectReason::Invalid,
            "incomplete" => RejectReason::Incomplete,
            "conflict" => RejectReason::Conflict,
            "forbidden" => RejectReason::Forbidden,
            _ => return None,
        })
    }
}

/// A rejected line: what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    pub reason: RejectReason,
    pub message: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub field: Option<String>,
}

impl LineError {
    pub(crate) fn field(
        reason: RejectReason,
        line: u64,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        LineError {
            reason,
            message: message.into(),
            line: Some(line),
            column: None,
            field: Some(field.into()),
        }
    }

    pub(crate) fn whole(reason: RejectReason, line: u64, message: impl Into<String>) -> Self {
        LineError {
            reason,
            message: message.into(),
            line: Some(line),
            column: None,
            field: None,
        }
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: ")?,
            (Some(l), None) => write!(f, "line {l}: ")?,
            _ => {}
        }
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A line that will not be recorded, with everything needed to show it and
/// to retry it later.
#[derive(Debug, Clone)]
pub struct NewRejection {
    pub raw: Vec<u8>,
    pub error: LineError,
    pub origin: Origin,
    pub defaults: Defaults,
}

/// The reason stored for a conflict.
pub fn conflict_error(message: String, origin: &Origin) -> LineError {
    LineError {
        reason: RejectReason::Conflict,
        message,
        line: Some(origin.line),
        column: None,
        field: None,
    }
}
