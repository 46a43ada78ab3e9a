//! The rows the write path inserts, as both backends write them.
//!
//! Each table's column list lives here once, each column named beside its
//! value: SQLite binds the rows one after another, PostgreSQL column by
//! column for `unnest`, and a new column is added in one place.

use super::RollupKey;
use crate::record::{ExtraIteration, NewRecord, NewRejection, Refusal, Usage};
use crate::time::Micros;

/// One value as it is bound (every text and integer column may be NULL in
/// the bind; the table's constraints decide what it accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Value<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
    Bool(bool),
    Bytes(Option<&'a [u8]>),
}

/// Each column holds one kind of value; these read it (another kind reads
/// as NULL or false, which no row builder produces).
impl<'a> Value<'a> {
    pub(super) fn text(self) -> Option<&'a str> {
        match self {
            Value::Text(t) => t,
            _ => None,
        }
    }

    pub(super) fn int(self) -> Option<i64> {
        match self {
            Value::Int(i) => i,
            _ => None,
        }
    }

    pub(super) fn flag(self) -> bool {
        matches!(self, Value::Bool(true))
    }

    pub(super) fn bytes(self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => b,
            _ => None,
        }
    }
}

/// A row: its columns, named, in insert order.
pub(crate) type TableRow<'a> = Vec<(&'static str, Value<'a>)>;

/// What an insert's `returning` clause yields (nothing without one).
pub(crate) type Returned = Vec<(String, i64)>;

/// What follows a `records` insert: keys already stored are skipped, and
/// the `(record_key, seq)` of each inserted row comes back.
pub(super) const RECORDS_INSERTED: &str =
    "on conflict (record_key) do nothing returning record_key, seq";

/// The nine usage counters' columns, in the ledger's order.
pub(super) const USAGE_COLUMNS: [&str; 9] = [
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
    "web_search_requests",
    "web_fetch_requests",
    "code_execution_requests",
];

/// The nine usage counters under their column names.
fn usage_columns(u: &Usage) -> [(&'static str, Value<'static>); 9] {
    let counts = u.counters();
    std::array::from_fn(|i| (USAGE_COLUMNS[i], Value::Int(Some(counts[i]))))
}

/// `r`'s row in `records` (`tags`: its tags as canonical JSON; `now` is `ingested_at`).
pub(super) fn record_row<'a>(r: &'a NewRecord, tags: Option<&'a str>, now: Micros) -> TableRow<'a> {
    use Value::{Bool, Int, Text};
    let mut row = vec![
        ("record_key", Text(Some(&r.key))),
        ("account", Text(Some(&r.account))),
        ("kind", Text(Some(r.kind.as_str()))),
        ("message_id", Text(r.message_id.as_deref())),
        ("custom_id", Text(r.custom_id.as_deref())),
        ("model", Text(r.model.as_deref())),
        ("recorded_at", Int(Some(r.recorded_at))),
        ("started_at", Int(r.started_at)),
        ("batch", Bool(r.batch)),
        ("files_preloaded", Bool(r.files_preloaded)),
        ("uses_code_execution", Bool(r.uses_code_execution)),
        ("web_tools_20260209", Bool(r.web_tools_20260209)),
        ("container_id", Text(r.container_id.as_deref())),
    ];
    row.extend(usage_columns(&r.usage));
    row.extend([
        ("service_tier", Text(r.service_tier.as_deref())),
        ("inference_geo", Text(r.inference_geo.as_deref())),
        ("speed", Text(r.speed.as_deref())),
        ("content_hash", Text(Some(&r.content_hash))),
        ("retention", Text(Some(r.retention.as_str()))),
        ("refusal", Text(Some(Refusal::column(r.refusal.as_ref())))),
        ("workspace", Text(r.attribution.workspace.as_deref())),
        ("api_key_id", Text(r.attribution.api_key_id.as_deref())),
        ("end_user", Text(r.attribution.user.as_deref())),
        ("tags", Text(tags)),
        ("source", Text(Some(&r.origin.source))),
        ("source_line", Int(Some(r.origin.line as i64))),
        ("ingested_at", Int(Some(now))),
    ]);
    row
}

/// A record's raw line in `record_bodies`.
pub(super) fn body_row(seq: i64, raw: &str) -> TableRow<'_> {
    vec![
        ("seq", Value::Int(Some(seq))),
        ("raw", Value::Text(Some(raw))),
    ]
}

/// One of a record's tags in `record_tags`.
pub(super) fn tag_row<'a>(seq: i64, key: &'a str, value: &'a str) -> TableRow<'a> {
    vec![
        ("seq", Value::Int(Some(seq))),
        ("key", Value::Text(Some(key))),
        ("value", Value::Text(Some(value))),
    ]
}

/// The tables holding a record's rows, its own last (a record undone by a
/// container conflict is deleted from each).
pub(super) const RECORD_TABLES: [&str; 4] = [
    "record_iterations",
    "record_bodies",
    "record_tags",
    "records",
];

/// An extra iteration in `record_iterations`: the usage counters up to web
/// searches (its web fetches and code-execution requests are the record's).
pub(super) fn iteration_row(seq: i64, position: i64, it: &ExtraIteration) -> TableRow<'_> {
    use Value::{Int, Text};
    let mut row = vec![
        ("seq", Int(Some(seq))),
        ("position", Int(Some(position))),
        ("kind", Text(Some(it.kind.as_str()))),
        ("model", Text(it.model.as_deref())),
    ];
    row.extend(usage_columns(&it.usage).into_iter().take(7));
    row
}

/// A roll-up row to add to `usage_rollup`, or to `usage_dim_rollup` when
/// its key names a dimension (see [`super::sql::rollup_upsert`]):
/// `records` records summing to `usage`, the newest of them `max_seq`.
pub(super) fn rollup_row<'a>(
    k: &'a RollupKey,
    usage: &Usage,
    records: i64,
    max_seq: i64,
    shard: i64,
) -> TableRow<'a> {
    use Value::{Int, Text};
    let mut row = vec![
        ("account", Text(Some(&k.account))),
        ("day", Int(Some(k.day))),
        ("model", Text(Some(&k.model))),
        ("kind", Int(Some(k.kind))),
        ("batch", Int(Some(k.batch))),
        ("fast", Int(Some(k.fast))),
        ("us", Int(Some(k.us))),
        ("size_class", Int(Some(k.size_class))),
        ("refusal", Text(Some(&k.refusal))),
        ("shard", Int(Some(shard))),
        ("records", Int(Some(records))),
    ];
    row.extend(usage_columns(usage));
    row.push(("max_seq", Int(Some(max_seq))));
    if !k.dim.is_empty() {
        // A row of usage_dim_rollup.
        row.push(("dim", Text(Some(&k.dim))));
        row.push(("value", Text(Some(&k.value))));
    }
    row
}

/// A rejected line in `rejected`, under its identity `raw_hash` (see
/// [`super::sql::QUARANTINE_UPSERT`]), first and last seen `now`.
pub(super) fn rejection_row<'a>(
    r: &'a NewRejection,
    raw_hash: &'a str,
    now: Micros,
) -> TableRow<'a> {
    use Value::{Bytes, Int, Text};
    let e = &r.error;
    vec![
        ("raw_hash", Text(Some(raw_hash))),
        ("raw", Bytes(Some(&r.raw))),
        ("reason", Text(Some(e.reason.as_str()))),
        ("message", Text(Some(&e.message))),
        ("line_number", Int(e.line.map(|v| v as i64))),
        ("column_number", Int(e.column.map(|v| v as i64))),
        ("field", Text(e.field.as_deref())),
        ("source", Text(Some(&r.origin.source))),
        ("account_default", Text(r.defaults.account.as_deref())),
        ("recorded_at_default", Int(r.defaults.recorded_at)),
        ("first_seen", Int(Some(now))),
        ("last_seen", Int(Some(now))),
        ("occurrences", Int(Some(1))),
        ("status", Text(Some("open"))),
    ]
}

/// `insert into table (name, …) {values} {then}`, the columns those of `rows`.
pub(super) fn insert_sql(table: &str, rows: &[TableRow<'_>], values: &str, then: &str) -> String {
    let names: Vec<&str> = rows
        .first()
        .map(|row| row.iter().map(|(name, _)| *name).collect())
        .unwrap_or_default();
    format!("insert into {table} ({}) {values} {then}", names.join(", "))
}
