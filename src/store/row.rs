//! The rows the write path inserts, as both backends write them.
//!
//! Each table's column list lives here once, each column named beside its
//! value: SQLite binds the rows one after another, PostgreSQL column by
//! column for `unnest`, and a new column is added in one place.

use super::RollupKey;
use crate::record::{ExtraIteration, NewRecord, Usage};
use crate::time::Micros;

/// One value as it is bound (every text and integer column may be NULL in
/// the bind; the table's constraints decide what it accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Value<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
    Bool(bool),
}

/// A row: its columns, named, in insert order.
pub(crate) type TableRow<'a, const N: usize> = [(&'static str, Value<'a>); N];

/// What follows a `records` insert: keys already stored are skipped, and
/// the `(record_key, seq)` of each inserted row comes back.
pub(super) const RECORDS_INSERTED: &str =
    "on conflict (record_key) do nothing returning record_key, seq";

/// `r`'s row in `records` (`now` is `ingested_at`).
pub(super) fn record_row(r: &NewRecord, now: Micros) -> TableRow<'_, 29> {
    use Value::{Bool, Int, Text};
    let [
        input,
        output,
        creation,
        write_5m,
        write_1h,
        read,
        searches,
        fetches,
        executions,
    ] = r.usage.counters();
    [
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
        ("input_tokens", Int(Some(input))),
        ("output_tokens", Int(Some(output))),
        ("cache_creation_input_tokens", Int(Some(creation))),
        ("cache_write_5m_tokens", Int(Some(write_5m))),
        ("cache_write_1h_tokens", Int(Some(write_1h))),
        ("cache_read_tokens", Int(Some(read))),
        ("web_search_requests", Int(Some(searches))),
        ("web_fetch_requests", Int(Some(fetches))),
        ("code_execution_requests", Int(Some(executions))),
        ("service_tier", Text(r.service_tier.as_deref())),
        ("inference_geo", Text(r.inference_geo.as_deref())),
        ("speed", Text(r.speed.as_deref())),
        ("content_hash", Text(Some(&r.content_hash))),
        ("source", Text(Some(&r.origin.source))),
        ("source_line", Int(Some(r.origin.line as i64))),
        ("ingested_at", Int(Some(now))),
    ]
}

/// A record's raw line in `record_bodies`.
pub(super) fn body_row(seq: i64, raw: &str) -> TableRow<'_, 2> {
    [
        ("seq", Value::Int(Some(seq))),
        ("raw", Value::Text(Some(raw))),
    ]
}

/// An extra iteration in `record_iterations` (its web fetches and
/// code-execution requests are the record's, counted there).
pub(super) fn iteration_row(seq: i64, position: i64, it: &ExtraIteration) -> TableRow<'_, 11> {
    use Value::{Int, Text};
    let u = &it.usage;
    [
        ("seq", Int(Some(seq))),
        ("position", Int(Some(position))),
        ("kind", Text(Some(it.kind.as_str()))),
        ("model", Text(it.model.as_deref())),
        ("input_tokens", Int(Some(u.input_tokens))),
        ("output_tokens", Int(Some(u.output_tokens))),
        (
            "cache_creation_input_tokens",
            Int(Some(u.cache_creation_input_tokens)),
        ),
        ("cache_write_5m_tokens", Int(Some(u.cache_write_5m_tokens))),
        ("cache_write_1h_tokens", Int(Some(u.cache_write_1h_tokens))),
        ("cache_read_tokens", Int(Some(u.cache_read_tokens))),
        ("web_search_requests", Int(Some(u.web_search_requests))),
    ]
}

/// A roll-up row to add to `usage_rollup` (see [`super::sql::rollup_upsert`]):
/// `records` records summing to `usage`, the newest of them `max_seq`.
pub(super) fn rollup_row<'a>(
    k: &'a RollupKey,
    usage: &Usage,
    records: i64,
    max_seq: i64,
    shard: i64,
) -> TableRow<'a, 20> {
    use Value::{Int, Text};
    let [
        input,
        output,
        creation,
        write_5m,
        write_1h,
        read,
        searches,
        fetches,
        executions,
    ] = usage.counters();
    [
        ("account", Text(Some(&k.account))),
        ("day", Int(Some(k.day))),
        ("model", Text(Some(&k.model))),
        ("kind", Int(Some(k.kind))),
        ("batch", Int(Some(k.batch))),
        ("fast", Int(Some(k.fast))),
        ("us", Int(Some(k.us))),
        ("size_class", Int(Some(k.size_class))),
        ("shard", Int(Some(shard))),
        ("records", Int(Some(records))),
        ("input_tokens", Int(Some(input))),
        ("output_tokens", Int(Some(output))),
        ("cache_creation_input_tokens", Int(Some(creation))),
        ("cache_write_5m_tokens", Int(Some(write_5m))),
        ("cache_write_1h_tokens", Int(Some(write_1h))),
        ("cache_read_tokens", Int(Some(read))),
        ("web_search_requests", Int(Some(searches))),
        ("web_fetch_requests", Int(Some(fetches))),
        ("code_execution_requests", Int(Some(executions))),
        ("max_seq", Int(Some(max_seq))),
    ]
}

/// `name, name, …` of the row's columns.
pub(super) fn column_names(row: &[(&'static str, Value<'_>)]) -> String {
    row.iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}
