//! What is kept of each line (`--retain full|billing`).
//!
//! `full` keeps the line verbatim. `billing` keeps what billing and audit
//! need and drops what people said: the billing view of a line is built from
//! its JSON shape alone, so records and rejected lines are reduced alike.
//!
//! Kept under `billing`:
//! - the envelope's own fields (account, times, batch, files preloaded,
//!   workspace, API key id, user, tags, a batch line's custom id);
//! - of a message (a response, a batch result's message, an assembled
//!   stream's start): id, type, role, model, usage, container, stop reason
//!   and details, and each content block's `type` and tool `name`;
//! - of a stream's events: their types and indexes, each block's type and
//!   tool name, and every `message_delta` whole (usage, stop reason, container);
//! - of the request: model, tools, container, metadata, and whether it
//!   uploaded files into the container (written out as `files_preloaded`,
//!   since the messages that said so are dropped);
//! - of a batch result that is not a message: its type and error.
//!
//! Every field billing reads is among these, so a line's charges are the
//! same under either retention, and parsing a billing view again yields the
//! same record. The view says what it is: `"retained": "billing"`.

use serde_json::{Map, Value};

use super::containers::messages_upload_files;

pub use crate::record::Retention;

/// Envelope fields kept whole (none of them holds what people said).
const ENVELOPE_FIELDS: [&str; 10] = [
    "account",
    "recorded_at",
    "started_at",
    "batch",
    "files_preloaded",
    "workspace",
    "api_key_id",
    "user",
    "tags",
    "custom_id",
];

const MESSAGE_FIELDS: [&str; 8] = [
    "id",
    "type",
    "role",
    "model",
    "usage",
    "container",
    "stop_reason",
    "stop_details",
];

const REQUEST_FIELDS: [&str; 4] = ["model", "tools", "container", "metadata"];

/// The billing view of a line's top-level object.
pub fn billing_view(top: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    out.insert("retained".into(), Value::from("billing"));
    if top.get("type").and_then(Value::as_str) == Some("message") && !top.contains_key("response") {
        // A bare response: the message is the line.
        if let Value::Object(m) = message(top) {
            out.extend(m);
        }
        return Value::Object(out);
    }
    copy(top, &mut out, &ENVELOPE_FIELDS);
    if let Some(Value::Object(request)) = top.get("request") {
        let (kept, uploads) = billing_request(request);
        if !out.contains_key("files_preloaded") || out.get("files_preloaded") == Some(&Value::Null)
        {
            out.insert("files_preloaded".into(), Value::Bool(uploads));
        }
        out.insert("request".into(), kept);
    }
    if let Some(Value::Object(response)) = top.get("response") {
        out.insert("response".into(), message(response));
    }
    if let Some(Value::Array(events)) = top.get("events") {
        out.insert(
            "events".into(),
            Value::Array(events.iter().filter_map(event).collect()),
        );
    }
    if let Some(Value::Object(result)) = top.get("result") {
        let mut kept = Map::new();
        copy(result, &mut kept, &["type", "error"]);
        if let Some(Value::Object(m)) = result.get("message") {
            kept.insert("message".into(), message(m));
        }
        out.insert("result".into(), Value::Object(kept));
    }
    Value::Object(out)
}

/// The billing view of a request, and whether it uploaded files into its
/// container (which the view no longer shows).
pub fn billing_request(request: &Map<String, Value>) -> (Value, bool) {
    let mut kept = Map::new();
    copy(request, &mut kept, &REQUEST_FIELDS);
    let uploads = messages_upload_files(request.get("messages"));
    (Value::Object(kept), uploads)
}

/// The billing view of a line's bytes, for a line that was not recorded:
/// JSON objects are reduced like records; anything else keeps nothing
/// (bytes that are not JSON cannot be sorted into kept and dropped).
pub fn billing_bytes(text: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(top)) => billing_view(&top).to_string().into_bytes(),
        _ => Vec::new(),
    }
}

fn copy(from: &Map<String, Value>, to: &mut Map<String, Value>, keys: &[&str]) {
    for key in keys {
        if let Some(v) = from.get(*key) {
            to.insert((*key).to_owned(), v.clone());
        }
    }
}

/// A message's billing fields, its content blocks reduced to type and name.
fn message(m: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    copy(m, &mut out, &MESSAGE_FIELDS);
    if let Some(Value::Array(blocks)) = m.get("content") {
        out.insert(
            "content".into(),
            Value::Array(blocks.iter().map(block).collect()),
        );
    }
    Value::Object(out)
}

/// A content block's `type` and tool `name`.
fn block(b: &Value) -> Value {
    let mut out = Map::new();
    if let Value::Object(b) = b {
        copy(b, &mut out, &["type", "name"]);
    }
    Value::Object(out)
}

/// A stream event with its text, tool input and output dropped; deltas of
/// content and pings are dropped whole.
fn event(e: &Value) -> Option<Value> {
    // `{"event": …, "data": {…}}` wrappers are read as their data, as the parser does.
    let e = match e.get("data") {
        Some(data @ Value::Object(_)) if e.get("type").is_none() => data,
        _ => e,
    };
    let Value::Object(e) = e else {
        return Some(Value::Null);
    };
    let kind = e.get("type").and_then(Value::as_str).unwrap_or_default();
    let mut out = Map::new();
    match kind {
        "content_block_delta" | "ping" => return None,
        // Usage, stop reason and details, the container: all billing.
        "message_delta" => return Some(Value::Object(e.clone())),
        "message_start" => {
            copy(e, &mut out, &["type"]);
            if let Some(Value::Object(m)) = e.get("message") {
                out.insert("message".into(), message(m));
            }
        }
        "content_block_start" => {
            copy(e, &mut out, &["type", "index"]);
            if let Some(b) = e.get("content_block") {
                out.insert("content_block".into(), block(b));
            }
        }
        _ => copy(e, &mut out, &["type", "index"]),
    }
    Some(Value::Object(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ingest::parse::{parse_record, parse_retaining};
    use crate::record::{Defaults, NewRecord, Origin};

    const LINES: [&str; 6] = [
        include_str!("../../fixtures/sample.ndjson"),
        include_str!("../../fixtures/streamed.ndjson"),
        include_str!("../../fixtures/batch_results.ndjson"),
        include_str!("../../fixtures/seed/code_execution.ndjson"),
        include_str!("../../fixtures/seed/files_preloaded.ndjson"),
        include_str!("../../fixtures/seed/container_reuse.ndjson"),
    ];

    fn parse(text: &str, retention: Retention) -> NewRecord {
        let origin = Origin {
            source: "t".into(),
            line: 1,
        };
        let defaults = Defaults {
            account: Some("acme".into()),
            recorded_at: Some(1_748_000_000_000_000),
            oldest: None,
        };
        parse_retaining(text.as_bytes(), &origin, &defaults, NOW, retention).unwrap()
    }

    /// When the lines are received: after every time they claim.
    const NOW: crate::time::Micros = 1_800_000_000_000_000;

    /// What billing reads of a record: everything but the kept line.
    fn billed(r: &NewRecord) -> NewRecord {
        NewRecord {
            raw: String::new(),
            retention: Retention::Full,
            content_hash: String::new(),
            ..r.clone()
        }
    }

    #[test]
    fn the_billing_view_bills_the_same_and_parses_back_to_the_same_record() {
        for line in LINES.iter().flat_map(|f| f.lines()) {
            let full = parse(line, Retention::Full);
            let kept = parse(line, Retention::Billing);
            assert_eq!(kept.retention, Retention::Billing);
            // Identity and conflicts do not depend on what is kept.
            assert_eq!(
                (&kept.key, &kept.content_hash),
                (&full.key, &full.content_hash)
            );
            assert_eq!(billed(&kept), billed(&full), "{line}");
            let again = parse_record(
                kept.raw.as_bytes(),
                &full.origin,
                &Defaults {
                    account: Some("acme".into()),
                    recorded_at: Some(1_748_000_000_000_000),
                    oldest: None,
                },
                NOW,
            )
            .unwrap();
            assert_eq!(billed(&again), billed(&full), "{}", kept.raw);
            // A billing view is kept as one, unchanged.
            assert_eq!(
                (again.retention, &again.raw),
                (Retention::Billing, &kept.raw)
            );
        }
    }

    #[test]
    fn the_billing_view_keeps_no_text_input_or_output() {
        let line = LINES[0].lines().next().unwrap();
        let kept = parse(line, Retention::Billing).raw;
        for said in [
            "Calculate the mean",
            "import numpy",
            "Mean: 5.5",
            "I'll calculate",
        ] {
            assert!(
                line.contains(said) && !kept.contains(said),
                "{said}: {kept}"
            );
        }
        let v: Value = serde_json::from_str(&kept).unwrap();
        assert_eq!(v["retained"], "billing");
        assert_eq!(v["response"]["usage"]["output_tokens"], 187);
        assert_eq!(v["response"]["content"][1]["name"], "code_execution");
        assert_eq!(v["request"]["tools"][0]["type"], "code_execution_20250522");
        assert_eq!(v["files_preloaded"], false);
    }

    #[test]
    fn a_line_that_is_not_json_keeps_nothing() {
        assert!(billing_bytes(b"{\"account\": \"a\", secret").is_empty());
        let stream = br#"{"events": [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "secret"}}]}"#;
        let kept = String::from_utf8(billing_bytes(stream)).unwrap();
        assert!(!kept.contains("secret"), "{kept}");
    }
}
