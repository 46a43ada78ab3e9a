//! One line (or one HTTP body) in, one [`NewRecord`] or one [`LineError`] out.
//!
//! Accepted shapes (docs/input.md): the envelope with `response`; the envelope with
//! streamed `events`; a bare Messages API response (`"type": "message"`); a
//! Message Batches result line (`custom_id` + `result`). Policy:
//! - the input is parsed once into a `serde_json::Value`; everything billing
//!   needs is read from it, everything else is tolerated and kept verbatim in
//!   `raw` (docs/input.md), and `null` always means the same as absent;
//! - errors name the line and column (syntax) or the field path (values);
//! - nothing here panics on any input: the parser is fuzzed by the tests.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use super::canonical::canonical_hash;
use super::containers;
use super::counters::CountersIn;
use super::retention::billing_view;
use super::stream::assemble_stream;
use crate::record::RejectReason;
use crate::record::{
    Attribution, Defaults, LineError, MAX_TAGS, NewRecord, Origin, RecordKind, Refusal, Retention,
    Usage, validate_account, validate_label, validate_tag_key,
};
use crate::time::Micros;

/// Parse one record, keeping the line whole. `origin.line` is the line the
/// text starts on; syntax errors inside a multi-line body are reported
/// relative to it.
pub fn parse_record(
    text: &[u8],
    origin: &Origin,
    defaults: &Defaults,
    now: Micros,
) -> Result<NewRecord, LineError> {
    parse_retaining(text, origin, defaults, now, Retention::Full)
}

/// [`parse_record`], keeping of the line what `retention` says.
pub fn parse_retaining(
    text: &[u8],
    origin: &Origin,
    defaults: &Defaults,
    now: Micros,
    retention: Retention,
) -> Result<NewRecord, LineError> {
    let base = origin.line.max(1);
    let value: Value = serde_json::from_slice(text).map_err(|e| syntax_error(&e, base))?;
    let raw = match std::str::from_utf8(text) {
        Ok(s) => s.trim_end_matches(['\r', '\n']).to_owned(),
        Err(e) => {
            return Err(LineError {
                reason: RejectReason::Malformed,
                message: "not valid UTF-8".into(),
                line: Some(base),
                column: Some(e.valid_up_to() as u64 + 1),
                field: None,
            });
        }
    };
    let Value::Object(top) = value else {
        return Err(LineError::whole(
            RejectReason::NotARecord,
            base,
            format!(
                "a JSON {} is not a record: expected an envelope object with `response` (or `events`), a Messages API response, or a batch result line",
                json_kind(&value)
            ),
        ));
    };
    // A line that is already a billing view (a rejected line retried, say)
    // is recorded as one, whatever was asked.
    let retention = if top.get("retained").and_then(Value::as_str) == Some("billing") {
        Retention::Billing
    } else {
        retention
    };
    let raw = match retention {
        Retention::Full => raw,
        Retention::Billing => billing_view(&top).to_string(),
    };
    let ctx = Ctx {
        line: base,
        defaults,
        now,
        retention,
    };
    let shape = Shape::detect(&top, base)?;
    let env = ctx.envelope(&top)?;
    let record = match shape {
        Shape::Envelope => {
            let response = top
                .get("response")
                .filter(|v| !v.is_null())
                .ok_or_else(|| {
                    LineError::field(
                        RejectReason::Invalid,
                        base,
                        "response",
                        "required field is missing",
                    )
                })?;
            ctx.message_record(&top, env, response, "response", raw, origin, false)
        }
        Shape::Bare => {
            let response = Value::Object(top.clone());
            ctx.message_record(&top, env, &response, "", raw, origin, false)
        }
        Shape::Stream => {
            let events = top.get("events").unwrap_or(&Value::Null);
            let message = assemble_stream(events).map_err(|msg| {
                let reason = if msg.incomplete {
                    RejectReason::Incomplete
                } else {
                    RejectReason::Invalid
                };
                LineError::field(reason, base, msg.field, msg.message)
            })?;
            ctx.message_record(&top, env, &message, "events", raw, origin, false)
        }
        Shape::BatchResult => ctx.batch_record(&top, env, raw, origin),
    }?;
    refuse_nul(&record, base)?;
    Ok(record)
}

/// PostgreSQL's text cannot hold NUL (U+0000): a record with one in a
/// field the ledger stores on its own is refused, on either backend alike,
/// naming the field. (The raw line has it escaped, `\u0000`, and keeps it.)
fn refuse_nul(r: &NewRecord, line: u64) -> Result<(), LineError> {
    let a = &r.attribution;
    let mut fields: Vec<(String, Option<&str>)> = vec![
        ("id".into(), r.message_id.as_deref()),
        ("custom_id".into(), r.custom_id.as_deref()),
        ("model".into(), r.model.as_deref()),
        ("container.id".into(), r.container_id.as_deref()),
        ("usage.service_tier".into(), r.service_tier.as_deref()),
        ("usage.inference_geo".into(), r.inference_geo.as_deref()),
        ("usage.speed".into(), r.speed.as_deref()),
        (
            "stop_details.category".into(),
            r.refusal.as_ref().and_then(Refusal::category),
        ),
        ("workspace".into(), a.workspace.as_deref()),
        ("api_key_id".into(), a.api_key_id.as_deref()),
        ("user".into(), a.user.as_deref()),
    ];
    for (i, it) in r.iterations.iter().enumerate() {
        fields.push((format!("usage.iterations[{i}].type"), Some(&it.kind)));
        fields.push((format!("usage.iterations[{i}].model"), it.model.as_deref()));
    }
    for (key, value) in &a.tags {
        fields.push((format!("tags.{key}"), Some(value)));
    }
    match fields
        .into_iter()
        .find(|(_, v)| v.is_some_and(|v| v.contains('\0')))
    {
        Some((field, _)) => Err(LineError::field(
            RejectReason::Invalid,
            line,
            field,
            "holds a NUL character (U+0000), which the ledger cannot store",
        )),
        None => Ok(()),
    }
}

fn syntax_error(e: &serde_json::Error, base: u64) -> LineError {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "truncated JSON",
        _ => "invalid JSON",
    };
    // serde_json appends " at line L column C"; we report the position ourselves.
    let full = e.to_string();
    let msg = full
        .rsplit_once(" at line ")
        .map_or(full.as_str(), |(head, _)| head);
    LineError {
        reason: RejectReason::Malformed,
        message: format!("{what}: {msg}"),
        line: Some(base + e.line().saturating_sub(1) as u64),
        column: Some(e.column() as u64),
        field: None,
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

enum Shape {
    Envelope,
    Bare,
    Stream,
    BatchResult,
}

impl Shape {
    fn detect(top: &Map<String, Value>, line: u64) -> Result<Shape, LineError> {
        let present = |k: &str| top.get(k).is_some_and(|v| !v.is_null());
        if present("response") {
            return Ok(Shape::Envelope);
        }
        if present("events") {
            return Ok(Shape::Stream);
        }
        if present("result") && top.contains_key("custom_id") {
            return Ok(Shape::BatchResult);
        }
        match top.get("type").and_then(Value::as_str) {
            Some("message") => Ok(Shape::Bare),
            Some(other) => Err(LineError::whole(
                RejectReason::NotARecord,
                line,
                format!(
                    "an object of type `{other}` is not a record: expected a Messages API response (`\"type\": \"message\"`) or an envelope with `response`"
                ),
            )),
            None if top.contains_key("account") || top.contains_key("recorded_at") => {
                Err(LineError::field(
                    RejectReason::Invalid,
                    line,
                    "response",
                    "required field is missing",
                ))
            }
            None => Err(LineError::whole(
                RejectReason::NotARecord,
                line,
                "not a record: expected an envelope with `response` (or `events`), a Messages API response, or a batch result line",
            )),
        }
    }
}

/// Envelope fields that may stand beside any shape.
struct EnvelopeFields {
    account: String,
    recorded_at: Micros,
    started_at: Option<Micros>,
    batch: Option<bool>,
    files_preloaded: Option<bool>,
    /// As the envelope gives it (`user` may still come from the request).
    attribution: Attribution,
}

struct Ctx<'a> {
    line: u64,
    defaults: &'a Defaults,
    now: Micros,
    retention: Retention,
}

impl Ctx<'_> {
    fn invalid(&self, field: impl Into<String>, message: impl Into<String>) -> LineError {
        LineError::field(RejectReason::Invalid, self.line, field, message)
    }

    fn envelope(&self, top: &Map<String, Value>) -> Result<EnvelopeFields, LineError> {
        let account = match self.opt_str(top, "account", "account")? {
            Some(a) => a.to_owned(),
            None => self.defaults.account.clone().ok_or_else(|| {
                self.invalid(
                    "account",
                    "required field is missing (give it in the record, with --account, or with an account-bound API key)",
                )
            })?,
        };
        validate_account(&account)
            .map_err(|m| self.invalid("account", format!("{account:?} {m}")))?;
        let recorded_at = match self.opt_time(top, "recorded_at")? {
            Some(t) => t,
            None => self.defaults.recorded_at.unwrap_or(self.now),
        };
        let oldest = self.defaults.oldest.unwrap_or(crate::time::EARLIEST);
        if let Some(why) = crate::time::out_of_range(recorded_at, oldest, self.now) {
            return Err(self.invalid("recorded_at", why));
        }
        let started_at = self.opt_time(top, "started_at")?;
        if let Some(why) = started_at.and_then(|s| crate::time::out_of_range(s, oldest, self.now)) {
            return Err(self.invalid("started_at", why));
        }
        if started_at.is_some_and(|s| s > recorded_at) {
            return Err(self.invalid(
                "started_at",
                "is after recorded_at: a request cannot be sent after its response was received",
            ));
        }
        // The request's user is checked whatever the shape (a batch result
        // that carries no message included), as the envelope's fields are.
        let user = match self.opt_label(top, "user", "user")? {
            Some(user) => Some(user),
            None => request_user(top.get("request").filter(|v| v.is_object()), self)?,
        };
        Ok(EnvelopeFields {
            account,
            recorded_at,
            started_at,
            batch: self.opt_bool(top, "batch")?,
            files_preloaded: self.opt_bool(top, "files_preloaded")?,
            attribution: Attribution {
                workspace: self.opt_label(top, "workspace", "workspace")?,
                api_key_id: self.opt_label(top, "api_key_id", "api_key_id")?,
                user,
                tags: self.tags(top)?,
            },
        })
    }

    /// A workspace, API key id or user: a string of at most 256 characters
    /// (an empty one is absent).
    fn opt_label(
        &self,
        obj: &Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Result<Option<String>, LineError> {
        let Some(s) = self.opt_str(obj, key, path)? else {
            return Ok(None);
        };
        validate_label(s).map_err(|m| self.invalid(path, m))?;
        Ok((!s.is_empty()).then(|| s.to_owned()))
    }

    /// `tags`: an object of at most 20 string values, each key `[a-z0-9_.:-]{1,64}`.
    fn tags(&self, top: &Map<String, Value>) -> Result<BTreeMap<String, String>, LineError> {
        let tags = match top.get("tags") {
            None | Some(Value::Null) => return Ok(BTreeMap::new()),
            Some(Value::Object(tags)) => tags,
            Some(other) => {
                return Err(self.invalid(
                    "tags",
                    format!(
                        "must be an object of string values, got a {}",
                        json_kind(other)
                    ),
                ));
            }
        };
        if tags.len() > MAX_TAGS {
            return Err(self.invalid(
                "tags",
                format!("has {} keys; at most {MAX_TAGS} are allowed", tags.len()),
            ));
        }
        let mut out = BTreeMap::new();
        for (key, value) in tags {
            validate_tag_key(key).map_err(|m| self.invalid("tags", m))?;
            let path = format!("tags.{key}");
            let Value::String(value) = value else {
                return Err(self.invalid(
                    path,
                    format!("must be a string, got a {}", json_kind(value)),
                ));
            };
            validate_label(value).map_err(|m| self.invalid(&path, m))?;
            out.insert(key.clone(), value.clone());
        }
        Ok(out)
    }

    fn opt_str<'v>(
        &self,
        obj: &'v Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Result<Option<&'v str>, LineError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.invalid(
                path,
                format!("must be a string, got a {}", json_kind(other)),
            )),
        }
    }

    fn opt_bool(&self, obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, LineError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.invalid(
                key,
                format!("must be true or false, got a {}", json_kind(other)),
            )),
        }
    }

    fn opt_time(&self, obj: &Map<String, Value>, key: &str) -> Result<Option<Micros>, LineError> {
        let Some(s) = self.opt_str(obj, key, key)? else {
            return Ok(None);
        };
        crate::time::parse_rfc3339(s)
            .map(Some)
            .map_err(|m| self.invalid(key, m))
    }

    #[allow(clippy::too_many_arguments)]
    fn message_record(
        &self,
        top: &Map<String, Value>,
        env: EnvelopeFields,
        response: &Value,
        prefix: &str,
        raw: String,
        origin: &Origin,
        from_batch: bool,
    ) -> Result<NewRecord, LineError> {
        let path = |k: &str| {
            if prefix.is_empty() {
                k.to_owned()
            } else {
                format!("{prefix}.{k}")
            }
        };
        let Value::Object(resp) = response else {
            return Err(self.invalid(
                prefix,
                format!(
                    "must be a Messages API response object, got a {}",
                    json_kind(response)
                ),
            ));
        };
        match resp.get("type").and_then(Value::as_str) {
            None | Some("message") => {}
            Some(other) => {
                return Err(LineError::field(
                    RejectReason::NotARecord,
                    self.line,
                    path("type"),
                    format!("is `{other}`: only a Messages API response (`message`) is a record"),
                ));
            }
        }
        let id = self
            .opt_str(resp, "id", &path("id"))?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.invalid(path("id"), "required field is missing"))?;
        let model = self
            .opt_str(resp, "model", &path("model"))?
            .ok_or_else(|| self.invalid(path("model"), "required field is missing"))?;
        let usage_in: CountersIn = match resp.get("usage") {
            None | Some(Value::Null) => CountersIn::default(),
            Some(v) => serde_path_to_error::deserialize(v).map_err(|e| {
                let inner = e.path().to_string();
                let field = if inner == "." {
                    path("usage")
                } else {
                    format!("{}.{inner}", path("usage"))
                };
                self.invalid(field, e.into_inner().to_string())
            })?,
        };
        let container_id = match resp.get("container") {
            None | Some(Value::Null) => None,
            Some(Value::Object(c)) => self
                .opt_str(c, "id", &path("container.id"))?
                .map(str::to_owned),
            Some(other) => {
                return Err(self.invalid(
                    path("container"),
                    format!("must be an object, got a {}", json_kind(other)),
                ));
            }
        };
        let uses_code_execution = match resp.get("content") {
            None | Some(Value::Null) => false,
            Some(Value::Array(blocks)) => blocks.iter().any(containers::block_uses_code_execution),
            Some(other) => {
                return Err(self.invalid(
                    path("content"),
                    format!(
                        "must be a list of content blocks, got a {}",
                        json_kind(other)
                    ),
                ));
            }
        };
        let refusal = refusal_before_output(resp);
        let request = top.get("request").filter(|v| v.is_object());
        let attribution = env.attribution;
        let files_preloaded = env.files_preloaded.unwrap_or_else(|| {
            request.is_some_and(|r| containers::messages_upload_files(r.get("messages")))
        });
        let (usage, iterations, tier, geo, speed) = usage_in.into_parts();
        Ok(NewRecord {
            key: id.to_owned(),
            account: env.account,
            kind: RecordKind::Message,
            message_id: Some(id.to_owned()),
            custom_id: None,
            model: Some(model.to_owned()),
            recorded_at: env.recorded_at,
            started_at: env.started_at,
            batch: from_batch || env.batch.unwrap_or(false),
            files_preloaded,
            uses_code_execution,
            web_tools_20260209: request.is_some_and(containers::request_declares_new_web_tools),
            container_id,
            usage,
            service_tier: tier,
            inference_geo: geo,
            speed,
            iterations,
            refusal,
            attribution,
            content_hash: canonical_hash(response),
            retention: self.retention,
            raw,
            origin: origin.clone(),
        })
    }

    fn batch_record(
        &self,
        top: &Map<String, Value>,
        env: EnvelopeFields,
        raw: String,
        origin: &Origin,
    ) -> Result<NewRecord, LineError> {
        let custom_id = self
            .opt_str(top, "custom_id", "custom_id")?
            .ok_or_else(|| self.invalid("custom_id", "required field is missing"))?
            .to_owned();
        let Some(Value::Object(result)) = top.get("result") else {
            return Err(self.invalid("result", "must be an object"));
        };
        let kind = match self.opt_str(result, "type", "result.type")? {
            Some("succeeded") => {
                let message = result
                    .get("message")
                    .filter(|v| !v.is_null())
                    .ok_or_else(|| {
                        self.invalid(
                            "result.message",
                            "required field is missing for a succeeded result",
                        )
                    })?;
                let mut record =
                    self.message_record(top, env, message, "result.message", raw, origin, true)?;
                record.custom_id = Some(custom_id);
                return Ok(record);
            }
            Some("errored") => RecordKind::BatchErrored,
            Some("canceled") => RecordKind::BatchCanceled,
            Some("expired") => RecordKind::BatchExpired,
            Some(other) => {
                return Err(self.invalid(
                    "result.type",
                    format!("is `{other}`: expected succeeded, errored, canceled or expired"),
                ));
            }
            None => return Err(self.invalid("result.type", "required field is missing")),
        };
        // A result without a message is identified by account, custom_id and
        // content (docs/input.md), so a results file ingested twice changes nothing.
        let result_value = Value::Object(result.clone());
        let content_hash = canonical_hash(&result_value);
        let mut key_hasher = Sha256::new();
        for part in [
            env.account.as_str(),
            custom_id.as_str(),
            content_hash.as_str(),
        ] {
            key_hasher.update(part.as_bytes());
            key_hasher.update([0]);
        }
        let key = format!("batch:{}", hex::encode(key_hasher.finalize()));
        Ok(NewRecord {
            key,
            account: env.account,
            kind,
            message_id: None,
            custom_id: Some(custom_id),
            model: None,
            recorded_at: env.recorded_at,
            started_at: env.started_at,
            batch: true,
            files_preloaded: false,
            uses_code_execution: false,
            web_tools_20260209: false,
            container_id: None,
            usage: Usage::default(),
            service_tier: None,
            inference_geo: None,
            speed: None,
            iterations: Vec::new(),
            refusal: None,
            attribution: env.attribution,
            content_hash,
            retention: self.retention,
            raw,
            origin: origin.clone(),
        })
    }
}

/// `request.metadata.user_id`, the user when the envelope names none (a
/// value that is not a string is not a user: the request is the API's, not ours).
fn request_user(request: Option<&Value>, ctx: &Ctx<'_>) -> Result<Option<String>, LineError> {
    let Some(user) = request
        .and_then(|r| r.get("metadata"))
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    else {
        return Ok(None);
    };
    validate_label(user).map_err(|m| ctx.invalid("request.metadata.user_id", m))?;
    Ok((!user.is_empty()).then(|| user.to_owned()))
}

/// A refusal before any output (docs/billing.md): `stop_reason` is `refusal` and
/// `content` is empty or absent; its category from `stop_details`. A stream's
/// assembled message carries its last `message_delta`'s stop reason and details.
fn refusal_before_output(resp: &Map<String, Value>) -> Option<Refusal> {
    if resp.get("stop_reason").and_then(Value::as_str) != Some("refusal") {
        return None;
    }
    let output = match resp.get("content") {
        None | Some(Value::Null) => false,
        Some(Value::Array(blocks)) => !blocks.is_empty(),
        Some(_) => true,
    };
    if output {
        return None;
    }
    let category = resp
        .get("stop_details")
        .and_then(|d| d.get("category"))
        .and_then(Value::as_str);
    Some(Refusal::new(category))
}
