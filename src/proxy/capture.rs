//! The copy of a call that becomes its record: the request body as it is
//! uploaded and the answer as it is passed back ([`super::answer`]). When
//! the answer has ended, the copy becomes an envelope (docs/input.md) for
//! the recorder.

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ACCOUNT_HEADER, WORKSPACE_HEADER, is_event_stream};
use crate::ingest::retention::{billing_request, billing_view};
use crate::record::Retention;
use crate::time::{Micros, rfc3339};

/// A call's envelope, and the hash of the API key that made it: what the
/// recorder writes and the spool keeps.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Captured {
    pub(super) envelope: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) key_sha256: Option<String>,
}

/// Bytes copied up to a limit; past it the copy is given up (the call is
/// still forwarded whole).
#[derive(Default)]
pub(super) struct Bounded {
    bytes: BytesMut,
    overflowed: bool,
}

impl Bounded {
    pub(super) fn push(&mut self, chunk: &[u8], max: usize) {
        if self.overflowed {
            return;
        }
        if self.bytes.len() + chunk.len() > max {
            self.overflowed = true;
            self.bytes = BytesMut::new();
        } else {
            self.bytes.extend_from_slice(chunk);
        }
    }
}

/// What is kept of a request to record it: its body (as uploaded), the
/// account it names, and the SHA-256 of its API key (the key is dropped here).
pub(super) struct RequestCopy {
    body: Arc<Mutex<Bounded>>,
    max: usize,
    account: Option<String>,
    key_sha256: Option<String>,
}

impl RequestCopy {
    pub(super) fn new(headers: &HeaderMap, max: usize) -> RequestCopy {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let key = text("x-api-key").or_else(|| {
            text("authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::trim))
        });
        RequestCopy {
            body: Arc::default(),
            max,
            account: text(ACCOUNT_HEADER).map(|a| a.trim().to_owned()),
            key_sha256: key.map(crate::auth::hash_key),
        }
    }

    /// The upload, copied as it passes.
    pub(super) fn tee<S>(
        &self,
        upload: S,
    ) -> impl Stream<Item = Result<Bytes, axum::Error>> + use<S>
    where
        S: Stream<Item = Result<Bytes, axum::Error>>,
    {
        let (body, max) = (self.body.clone(), self.max);
        upload.inspect_ok(move |chunk| {
            body.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(chunk, max);
        })
    }

    /// The request as JSON (when it was copied whole and parses), and under
    /// billing retention already reduced to its billing view, with whether it
    /// uploaded files. The copied bytes are let go here: a call waiting for
    /// a long answer holds its request's billing view, not its prompt.
    fn settle(self, retention: Retention) -> SettledRequest {
        let body = std::mem::take(&mut *self.body.lock().unwrap_or_else(|p| p.into_inner()));
        let json = (!body.overflowed)
            .then(|| serde_json::from_slice::<Map<String, Value>>(&body.bytes).ok())
            .flatten();
        drop(body);
        let (json, files_preloaded) = match (json, retention) {
            (Some(request), Retention::Billing) => {
                let (view, uploads) = billing_request(&request);
                (Some(view), Some(uploads))
            }
            (json, _) => (json.map(Value::Object), None),
        };
        SettledRequest {
            json,
            files_preloaded,
            account: self.account,
            key_sha256: self.key_sha256,
        }
    }
}

/// What is kept of a request once its upload has ended.
struct SettledRequest {
    json: Option<Value>,
    /// Under billing retention: whether it uploaded files into its container.
    files_preloaded: Option<bool>,
    account: Option<String>,
    key_sha256: Option<String>,
}

/// A call being answered: what its record needs besides the answer.
pub(super) struct Capture {
    request: SettledRequest,
    workspace: Option<String>,
    events: bool,
    started_at: Micros,
    retention: Retention,
}

impl Capture {
    /// A call whose answer has begun (so its upload has ended).
    pub(super) fn begin(
        request: RequestCopy,
        answer: &HeaderMap,
        started_at: Micros,
        retention: Retention,
    ) -> Capture {
        Capture {
            workspace: answer
                .get(WORKSPACE_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            events: is_event_stream(answer),
            request: request.settle(retention),
            started_at,
            retention,
        }
    }

    /// The envelope of the call whose answer was `body`, ended at `recorded_at`.
    pub(super) fn envelope(self, body: &Bounded, recorded_at: Micros) -> Captured {
        let mut env = Map::new();
        if let Some(account) = self.request.account.clone() {
            env.insert("account".into(), account.into());
        }
        env.insert("recorded_at".into(), rfc3339(recorded_at).into());
        env.insert("started_at".into(), rfc3339(self.started_at).into());
        env.insert("batch".into(), false.into());
        if let Some(w) = self.workspace {
            env.insert("workspace".into(), w.into());
        }
        if let Some(sha) = &self.request.key_sha256 {
            env.insert("api_key_id".into(), crate::auth::api_key_id(sha).into());
        }
        if let Some(uploads) = self.request.files_preloaded {
            env.insert("files_preloaded".into(), uploads.into());
        }
        if let Some(request) = self.request.json {
            env.insert("request".into(), request);
        }
        let answer = if body.overflowed {
            Value::Null
        } else if self.events {
            env.insert("events".into(), Value::Array(sse_data(&body.bytes)));
            Value::Null
        } else {
            serde_json::from_slice(&body.bytes).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&body.bytes).into_owned())
            })
        };
        if !self.events {
            env.insert("response".into(), answer);
        }
        if self.retention == Retention::Billing {
            // The queue and the spool hold the billing view only.
            if let Value::Object(view) = billing_view(&env) {
                env = view;
            }
        }
        Captured {
            envelope: env,
            key_sha256: self.request.key_sha256,
        }
    }
}

/// The data objects of a server-sent event stream, in order (an event's
/// `data:` lines joined; data that is not JSON is skipped).
fn sse_data(text: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut data = String::new();
    let text = String::from_utf8_lossy(text);
    for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            if let Ok(v) = serde_json::from_str::<Value>(&data) {
                out.push(v);
            }
            data.clear();
        } else if let Some(d) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    if let Ok(v) = serde_json::from_str::<Value>(&data) {
        out.push(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_sent_events_yield_their_data_objects() {
        let text = b"event: message_start\ndata: {\"type\":\"message_start\"}\n\nevent: ping\ndata: {\"type\": \"ping\"}\r\n\r\ndata: not json\n\ndata: {\"type\":\ndata: \"message_stop\"}\n";
        let data = sse_data(text);
        let kinds: Vec<&str> = data.iter().filter_map(|v| v["type"].as_str()).collect();
        assert_eq!(kinds, ["message_start", "ping", "message_stop"]);
    }
}
