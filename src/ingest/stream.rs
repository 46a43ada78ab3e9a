//! Rebuild a Messages API response from the data objects of a streamed
//! response's server-sent events (docs/input.md).
//!
//! - id, model (and any container) come from `message_start`;
//! - content blocks from `content_block_start`, with text and tool-input
//!   deltas applied so the stored message reads like a non-streamed one;
//! - usage from the **last** `message_delta` (its counters are cumulative, so
//!   they are never summed), falling back field by field to `message_start`;
//! - the container from `message_delta.delta.container` when present.
//!
//! A stream without `message_delta` was cut off: it is rejected as incomplete.

use serde_json::{Map, Value};

pub struct StreamError {
    pub incomplete: bool,
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> StreamError {
    StreamError {
        incomplete: false,
        field: field.into(),
        message: message.into(),
    }
}

pub fn assemble_stream(events: &Value) -> Result<Value, StreamError> {
    let Value::Array(events) = events else {
        return Err(invalid(
            "events",
            "must be a list of server-sent event data objects",
        ));
    };
    let mut message: Option<Map<String, Value>> = None;
    let mut blocks: Vec<Value> = Vec::new();
    let mut partial_json: Vec<String> = Vec::new();
    let mut last_delta: Option<&Map<String, Value>> = None;

    for (i, event) in events.iter().enumerate() {
        // Accept `{"event": "...", "data": {...}}` wrappers as well as bare data objects.
        let event = match event.get("data") {
            Some(data @ Value::Object(_)) if event.get("type").is_none() => data,
            _ => event,
        };
        let Value::Object(ev) = event else {
            return Err(invalid(
                format!("events[{i}]"),
                "must be an event data object",
            ));
        };
        match ev.get("type").and_then(Value::as_str) {
            Some("message_start") => match ev.get("message") {
                Some(Value::Object(m)) => message = Some(m.clone()),
                _ => {
                    return Err(invalid(
                        format!("events[{i}].message"),
                        "message_start carries no message object",
                    ));
                }
            },
            Some("content_block_start") => {
                let index = block_index(ev, i)?;
                let block = ev.get("content_block").cloned().unwrap_or(Value::Null);
                if blocks.len() <= index {
                    blocks.resize(index + 1, Value::Null);
                    partial_json.resize(index + 1, String::new());
                }
                if let Some(slot) = blocks.get_mut(index) {
                    *slot = block;
                }
            }
            Some("content_block_delta") => {
                let index = block_index(ev, i)?;
                if let (Some(Value::Object(block)), Some(Value::Object(delta))) =
                    (blocks.get_mut(index), ev.get("delta"))
                {
                    apply_delta(block, delta, partial_json.get_mut(index));
                }
            }
            Some("content_block_stop") => {
                let index = block_index(ev, i)?;
                if let (Some(Value::Object(block)), Some(json)) =
                    (blocks.get_mut(index), partial_json.get(index))
                    && !json.is_empty()
                {
                    let input =
                        serde_json::from_str(json).unwrap_or_else(|_| Value::String(json.clone()));
                    block.insert("input".into(), input);
                }
            }
            Some("message_delta") => last_delta = Some(ev),
            // message_stop, ping, error and event types not yet known carry nothing billing needs.
            _ => {}
        }
    }

    let Some(mut message) = message else {
        return Err(StreamError {
            incomplete: true,
            field: "events".into(),
            message: "the stream has no message_start event".into(),
        });
    };
    let Some(delta_event) = last_delta else {
        return Err(StreamError {
            incomplete: true,
            field: "events".into(),
            message:
                "the stream was cut off before its message_delta event: its final usage is unknown"
                    .into(),
        });
    };

    blocks.retain(|b| !b.is_null());
    message.insert("content".into(), Value::Array(blocks));

    if let Some(Value::Object(delta)) = delta_event.get("delta") {
        for (k, v) in delta {
            if k == "container" && v.is_null() {
                continue; // keep message_start's container
            }
            message.insert(k.clone(), v.clone());
        }
    }

    let mut usage = match message.remove("usage") {
        Some(Value::Object(u)) => u,
        _ => Map::new(),
    };
    if let Some(Value::Object(final_usage)) = delta_event.get("usage") {
        for (k, v) in final_usage {
            if !v.is_null() {
                usage.insert(k.clone(), v.clone());
            }
        }
    }
    message.insert("usage".into(), Value::Object(usage));
    Ok(Value::Object(message))
}

fn block_index(ev: &Map<String, Value>, i: usize) -> Result<usize, StreamError> {
    ev.get("index")
        .and_then(|x| {
            // `2.0` is 2 (as JSON Schema's `integer` has it).
            x.as_u64().or_else(|| {
                x.as_f64()
                    .and_then(crate::whole::of_f64)
                    .and_then(|i| u64::try_from(i).ok())
            })
        })
        .and_then(|x| usize::try_from(x).ok())
        .filter(|&x| x < 100_000)
        .ok_or_else(|| {
            invalid(
                format!("events[{i}].index"),
                "must be a content block index",
            )
        })
}

fn apply_delta(
    block: &mut Map<String, Value>,
    delta: &Map<String, Value>,
    json: Option<&mut String>,
) {
    let append =
        |block: &mut Map<String, Value>, field: &str, piece: &str| match block.get_mut(field) {
            Some(Value::String(text)) => text.push_str(piece),
            _ => {
                block.insert(field.into(), Value::String(piece.to_owned()));
            }
        };
    match delta.get("type").and_then(Value::as_str) {
        Some("text_delta") => {
            if let Some(t) = delta.get("text").and_then(Value::as_str) {
                append(block, "text", t);
            }
        }
        Some("thinking_delta") => {
            if let Some(t) = delta.get("thinking").and_then(Value::as_str) {
                append(block, "thinking", t);
            }
        }
        Some("input_json_delta") => {
            if let (Some(piece), Some(json)) =
                (delta.get("partial_json").and_then(Value::as_str), json)
            {
                json.push_str(piece);
            }
        }
        _ => {}
    }
}
