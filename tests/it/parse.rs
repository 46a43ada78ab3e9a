//! Parsing every accepted shape (docs/input.md), forward compatibility (3.3) and
//! every kind of bad input (3.4), without a database.

use crate::support::fixture;
use proptest::prelude::*;
use serde_json::{Value, json};
use tally::ingest::parse::{canonical_hash, parse_record};
use tally::record::{Defaults, NewRecord, Origin, RecordKind};
use tally::record::{LineError, RejectReason};

const NOW: i64 = 1_800_000_000_000_000;
/// A time a default may give: before [`NOW`], after 2000.
const AT: i64 = 1_700_000_000_000_000;

fn origin() -> Origin {
    Origin {
        source: "test".into(),
        line: 7,
    }
}

fn parse_with(text: &str, defaults: &Defaults) -> Result<NewRecord, LineError> {
    parse_record(text.as_bytes(), &origin(), defaults, NOW)
}

fn parse(text: &str) -> Result<NewRecord, LineError> {
    parse_with(text, &Defaults::default())
}

fn parse_value(v: &Value) -> Result<NewRecord, LineError> {
    parse(&v.to_string())
}

fn seed() -> Value {
    serde_json::from_str(&fixture("seed/code_execution.ndjson")).unwrap()
}

fn rejected(v: &Value) -> LineError {
    parse_value(v).expect_err("must be rejected")
}

#[test]
fn the_seed_code_execution_response() {
    let r = parse(&fixture("seed/code_execution.ndjson")).unwrap();
    assert_eq!(r.key, "msg_01BqK2v4FnRs4xTjgL8EuZxz");
    assert_eq!(r.kind, RecordKind::Message);
    assert_eq!(r.model.as_deref(), Some("claude-opus-4-20250514"));
    assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (45, 187));
    assert_eq!(
        r.container_id.as_deref(),
        Some("container_011CPR5CNjB747bTd36fQLFk")
    );
    assert!(r.uses_code_execution);
    assert!(!r.files_preloaded && !r.batch && !r.web_tools_20260209);
    assert_eq!(
        r.recorded_at - r.started_at.unwrap(),
        89_000_000,
        "20:12:02 → 20:13:31"
    );
    assert_eq!(r.origin.line, 7);
}

#[test]
fn trailing_comma_is_malformed_with_line_and_column() {
    let e = parse(&fixture("seed/trailing_comma.ndjson")).unwrap_err();
    assert_eq!(e.reason, RejectReason::Malformed);
    assert_eq!(e.line, Some(7));
    // Column 1264 is the `}` right after `"output_tokens":187,`.
    assert_eq!(e.column, Some(1264));
    let text = fixture("seed/trailing_comma.ndjson");
    assert_eq!(&text[1254..1264], "ens\":187,}", "column 1264 is 1-based");
    assert!(
        e.to_string()
            .starts_with("line 7, column 1264: invalid JSON: trailing comma"),
        "{e}"
    );
}

#[test]
fn truncated_line_is_malformed() {
    let text = fixture("seed/code_execution.ndjson");
    let e = parse(&text[..300]).unwrap_err();
    assert_eq!(e.reason, RejectReason::Malformed);
    assert!(e.message.starts_with("truncated JSON"), "{}", e.message);
    assert_eq!((e.line, e.column), (Some(7), Some(300)));
}

#[test]
fn errors_in_a_multi_line_body_point_at_the_right_line() {
    let body = "{\n  \"account\": \"acme\",\n  \"response\": {,\n}";
    let e = parse(body).unwrap_err();
    assert_eq!((e.line, e.column), (Some(7 + 2), Some(16)));
}

#[test]
fn a_lone_content_block_is_not_a_record() {
    let e = parse(&fixture("seed/bare_tool_result.ndjson")).unwrap_err();
    assert_eq!(e.reason, RejectReason::NotARecord);
    assert!(
        e.message.contains("code_execution_tool_result"),
        "{}",
        e.message
    );
    for v in [
        json!([1, 2]),
        json!("text"),
        json!(42),
        json!({"hello": "world"}),
    ] {
        assert_eq!(rejected(&v).reason, RejectReason::NotARecord, "{v}");
    }
}

#[test]
fn an_envelope_without_response_names_the_field() {
    let e = rejected(&json!({"account": "acme", "recorded_at": "2025-05-23T20:13:31Z"}));
    assert_eq!(
        (e.reason, e.field.as_deref()),
        (RejectReason::Invalid, Some("response"))
    );
    let e = rejected(&json!({"account": "acme", "response": null}));
    assert_eq!(e.field.as_deref(), Some("response"));
}

#[test]
fn bad_token_counts_name_the_field() {
    for (bad, says) in [
        (json!(-5), "got -5"),
        (json!(4.5), "got 4.5"),
        (json!("45"), "got the string \"45\""),
        (json!(true), "got true"),
    ] {
        let mut v = seed();
        v["response"]["usage"]["input_tokens"] = bad.clone();
        let e = rejected(&v);
        assert_eq!(e.reason, RejectReason::Invalid);
        assert_eq!(
            e.field.as_deref(),
            Some("response.usage.input_tokens"),
            "{bad}"
        );
        assert!(e.message.contains(says), "{bad}: {}", e.message);
    }
    let mut v = seed();
    v["response"]["usage"]["cache_creation"] = json!({"ephemeral_1h_input_tokens": -1});
    assert_eq!(
        rejected(&v).field.as_deref(),
        Some("response.usage.cache_creation.ephemeral_1h_input_tokens")
    );
}

#[test]
fn bad_timestamps_accounts_and_intervals_name_the_field() {
    let mut v = seed();
    v["recorded_at"] = json!("yesterday");
    assert_eq!(rejected(&v).field.as_deref(), Some("recorded_at"));

    let mut v = seed();
    v["started_at"] = json!("2025-05-23 20:12:02");
    assert_eq!(rejected(&v).field.as_deref(), Some("started_at"));

    let mut v = seed();
    v["started_at"] = json!("2025-05-23T20:13:32Z");
    let e = rejected(&v);
    assert_eq!(e.field.as_deref(), Some("started_at"));
    assert!(e.message.contains("after recorded_at"));

    for bad in ["", "has space", "ümlaut", &"x".repeat(129)] {
        let mut v = seed();
        v["account"] = json!(bad);
        assert_eq!(rejected(&v).field.as_deref(), Some("account"), "{bad:?}");
    }
    let mut v = seed();
    v["batch"] = json!("yes");
    assert_eq!(rejected(&v).field.as_deref(), Some("batch"));
}

#[test]
fn attribution_fields_are_read_and_checked() {
    let mut v = seed();
    v["workspace"] = json!("wrkspc_01");
    v["api_key_id"] = json!("apikey_01");
    v["tags"] = json!({"project": "search", "cost_centre": "cc-42"});
    v["request"] = json!({"model": "m", "messages": [], "metadata": {"user_id": "user-7"}});
    let r = parse_value(&v).unwrap();
    let a = &r.attribution;
    assert_eq!(a.workspace.as_deref(), Some("wrkspc_01"));
    assert_eq!(a.api_key_id.as_deref(), Some("apikey_01"));
    // `user` from the request's metadata when the envelope has none...
    assert_eq!(a.user.as_deref(), Some("user-7"));
    assert_eq!(
        a.tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [("cost_centre", "cc-42"), ("project", "search")]
    );
    // ... and the envelope's own when it has one.
    v["user"] = json!("user-8");
    assert_eq!(
        parse_value(&v).unwrap().attribution.user.as_deref(),
        Some("user-8")
    );
    // None of them: none.
    let plain = parse_value(&seed()).unwrap().attribution;
    assert_eq!(plain, tally::record::Attribution::default());

    // Bad values are rejected with the field named.
    let cases = [
        ("workspace", json!(7), "workspace"),
        ("user", json!("u".repeat(257)), "user"),
        ("tags", json!(["project"]), "tags"),
        ("tags", json!({"Project": "x"}), "tags"),
        ("tags", json!({"project": 1}), "tags.project"),
        ("tags", json!({"project": "v".repeat(257)}), "tags.project"),
    ];
    for (field, value, named) in cases {
        let mut v = seed();
        v[field] = value;
        let e = rejected(&v);
        assert_eq!(e.field.as_deref(), Some(named), "{e}");
    }
    let mut v = seed();
    let many: serde_json::Map<String, Value> =
        (0..21).map(|i| (format!("k{i}"), json!("v"))).collect();
    v["tags"] = Value::Object(many);
    let e = rejected(&v);
    assert!(e.message.contains("at most 20"), "{e}");
}

#[test]
fn timestamps_accept_any_offset_and_default_to_now() {
    let mut v = seed();
    v["recorded_at"] = json!("2025-05-23T22:13:31+02:00");
    v["started_at"] = json!("2025-05-23T20:12:02.250Z");
    let r = parse_value(&v).unwrap();
    assert_eq!(r.recorded_at, 1_748_031_211_000_000);
    assert_eq!(r.started_at, Some(1_748_031_122_250_000));

    let mut v = seed();
    v.as_object_mut().unwrap().remove("recorded_at");
    v.as_object_mut().unwrap().remove("started_at");
    assert_eq!(parse_value(&v).unwrap().recorded_at, NOW);
    let d = Defaults {
        account: None,
        recorded_at: Some(AT),
        oldest: None,
    };
    assert_eq!(parse_with(&v.to_string(), &d).unwrap().recorded_at, AT);
    // As old as the default allows, and older only when asked for.
    let old = Defaults {
        recorded_at: Some(42),
        ..d.clone()
    };
    let e = parse_with(&v.to_string(), &old).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("recorded_at"));
    let backfill = Defaults {
        oldest: Some(0),
        ..old
    };
    assert_eq!(
        parse_with(&v.to_string(), &backfill).unwrap().recorded_at,
        42
    );
}

#[test]
fn nulls_and_missing_usage_fields_count_as_zero() {
    let mut v = seed();
    v["response"]["usage"] = json!({
        "input_tokens": 10, "output_tokens": null, "cache_creation_input_tokens": null,
        "cache_read_input_tokens": null, "cache_creation": null, "server_tool_use": null,
        "iterations": null, "inference_geo": null, "speed": null, "service_tier": null
    });
    v["response"]["container"] = json!({"id": "c1", "expires_at": null, "skills": null});
    let r = parse_value(&v).unwrap();
    assert_eq!(r.usage.input_tokens, 10);
    assert_eq!(r.usage.output_tokens, 0);
    assert_eq!(r.usage.cache_write_5m_tokens, 0);
    assert!(r.iterations.is_empty());

    let mut v = seed();
    v["response"].as_object_mut().unwrap().remove("usage");
    assert_eq!(parse_value(&v).unwrap().usage, Default::default());
}

#[test]
fn cache_writes_without_breakdown_are_five_minute_writes() {
    let mut v = seed();
    v["response"]["usage"]["cache_creation_input_tokens"] = json!(1000);
    let r = parse_value(&v).unwrap();
    assert_eq!(
        (r.usage.cache_write_5m_tokens, r.usage.cache_write_1h_tokens),
        (1000, 0)
    );

    v["response"]["usage"]["cache_creation"] =
        json!({"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 600});
    let r = parse_value(&v).unwrap();
    assert_eq!(
        (r.usage.cache_write_5m_tokens, r.usage.cache_write_1h_tokens),
        (400, 600)
    );
    assert_eq!(r.usage.cache_creation_input_tokens, 1000);
}

#[test]
fn modifiers_and_server_tool_counters_are_read() {
    let mut v = seed();
    v["response"]["usage"]["inference_geo"] = json!("us");
    v["response"]["usage"]["speed"] = json!("fast");
    v["response"]["usage"]["service_tier"] = json!("priority");
    v["response"]["usage"]["server_tool_use"] =
        json!({"web_search_requests": 3, "web_fetch_requests": 2, "code_execution_requests": 1});
    let r = parse_value(&v).unwrap();
    assert_eq!(r.inference_geo.as_deref(), Some("us"));
    assert_eq!(r.speed.as_deref(), Some("fast"));
    assert_eq!(r.service_tier.as_deref(), Some("priority"));
    assert_eq!(
        (
            r.usage.web_search_requests,
            r.usage.web_fetch_requests,
            r.usage.code_execution_requests
        ),
        (3, 2, 1)
    );
}

#[test]
fn iterations_other_than_message_are_kept_for_extra_billing() {
    let mut v = seed();
    v["response"]["usage"]["iterations"] = json!([
        {"type": "message", "input_tokens": 45, "output_tokens": 187},
        {"type": "advisor_message", "model": "claude-opus-4-6", "input_tokens": 900, "output_tokens": 120},
        {"type": "fallback_message", "model": "claude-sonnet-5", "input_tokens": 10, "output_tokens": 5},
        {"type": "some_future_kind", "input_tokens": 1, "output_tokens": 1, "new_field": {"x": 1}}
    ]);
    let r = parse_value(&v).unwrap();
    let kinds: Vec<_> = r
        .iterations
        .iter()
        .map(|i| (i.kind.as_str(), i.model.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("advisor_message", Some("claude-opus-4-6")),
            ("fallback_message", Some("claude-sonnet-5")),
            ("some_future_kind", None)
        ]
    );
    assert_eq!(r.iterations[0].usage.input_tokens, 900);
}

#[test]
fn unknown_fields_and_block_types_are_tolerated_and_kept() {
    let mut v = seed();
    v["response"]["brand_new_field"] = json!({"nested": [1, 2, 3]});
    v["response"]["usage"]["output_tokens_details"] = json!({"thinking_tokens": 12});
    v["response"]["content"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "hologram", "payload": 7}));
    v["response"]["content"]
        .as_array_mut()
        .unwrap()
        .push(json!("not even an object"));
    v["envelope_extra"] = json!(true);
    let text = v.to_string();
    let r = parse(&text).unwrap();
    assert_eq!(r.raw, text, "the raw line is stored verbatim");
    // A 2025 result block without a `content` list still counts as code execution.
    let mut old = seed();
    old["response"]["content"] = json!([{"type": "code_execution_tool_result", "tool_use_id": "x",
        "content": {"type": "code_execution_result", "stdout": "", "stderr": "", "return_code": 0}}]);
    assert!(parse_value(&old).unwrap().uses_code_execution);
}

#[test]
fn code_execution_detection_follows_the_spec() {
    let with_content = |blocks: Value| {
        let mut v = seed();
        v["response"]["content"] = blocks;
        parse_value(&v).unwrap().uses_code_execution
    };
    for name in [
        "code_execution",
        "bash_code_execution",
        "text_editor_code_execution",
    ] {
        assert!(
            with_content(json!([{"type": "server_tool_use", "name": name, "id": "s"}])),
            "{name}"
        );
    }
    for ty in [
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
    ] {
        assert!(with_content(json!([{"type": ty}])), "{ty}");
    }
    assert!(!with_content(
        json!([{"type": "server_tool_use", "name": "web_search", "id": "s"}])
    ));
    assert!(!with_content(
        json!([{"type": "text", "text": "code_execution"}])
    ));
    assert!(!with_content(json!([])));
}

#[test]
fn files_preloaded_is_derived_from_container_upload_unless_given() {
    let r = parse(&fixture("seed/files_preloaded.ndjson")).unwrap();
    assert!(r.files_preloaded);
    assert!(!r.uses_code_execution);
    let mut v: Value = serde_json::from_str(&fixture("seed/files_preloaded.ndjson")).unwrap();
    v["files_preloaded"] = json!(false);
    assert!(
        !parse_value(&v).unwrap().files_preloaded,
        "an explicit flag wins"
    );
    let mut v = seed();
    v["files_preloaded"] = json!(true);
    assert!(parse_value(&v).unwrap().files_preloaded);
}

#[test]
fn new_web_tools_make_code_execution_free() {
    let with_tools = |tools: Value| {
        let mut v = seed();
        v["request"]["tools"] = tools;
        parse_value(&v).unwrap().web_tools_20260209
    };
    assert!(with_tools(
        json!([{"type": "web_search_20260209", "name": "web_search"}])
    ));
    assert!(with_tools(
        json!([{"type": "web_fetch_20261001", "name": "web_fetch"}])
    ));
    assert!(!with_tools(
        json!([{"type": "web_search_20250305", "name": "web_search"}])
    ));
    assert!(!with_tools(
        json!([{"type": "code_execution_20260120", "name": "code_execution"}])
    ));
    let mut v = seed();
    v.as_object_mut().unwrap().remove("request");
    assert!(
        !parse_value(&v).unwrap().web_tools_20260209,
        "without the request tally cannot know"
    );
}

#[test]
fn a_bare_response_needs_the_account_out_of_band() {
    let bare = seed()["response"].clone();
    let e = parse_value(&bare).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("account"));
    let d = Defaults {
        account: Some("acme".into()),
        recorded_at: None,
        oldest: None,
    };
    let r = parse_with(&bare.to_string(), &d).unwrap();
    assert_eq!(r.account, "acme");
    assert_eq!(
        r.content_hash,
        parse(&fixture("seed/code_execution.ndjson"))
            .unwrap()
            .content_hash
    );
    // The record's own account wins over the default.
    let mut v = seed();
    v["account"] = json!("globex");
    assert_eq!(parse_with(&v.to_string(), &d).unwrap().account, "globex");
}

#[test]
fn batch_result_lines() {
    let d = Defaults {
        account: Some("acme".into()),
        recorded_at: Some(AT),
        oldest: None,
    };
    let lines: Vec<String> = fixture("batch_results.ndjson")
        .lines()
        .map(str::to_owned)
        .collect();
    let ok = parse_with(&lines[0], &d).unwrap();
    assert!(ok.batch);
    assert_eq!(ok.kind, RecordKind::Message);
    assert_eq!(ok.custom_id.as_deref(), Some("my-first-request"));
    assert_eq!(ok.recorded_at, AT);
    assert_eq!((ok.usage.input_tokens, ok.usage.output_tokens), (1200, 300));

    let kinds: Vec<RecordKind> = lines[2..]
        .iter()
        .map(|l| parse_with(l, &d).unwrap().kind)
        .collect();
    assert_eq!(
        kinds,
        [
            RecordKind::BatchErrored,
            RecordKind::BatchCanceled,
            RecordKind::BatchExpired
        ]
    );
    let errored = parse_with(&lines[2], &d).unwrap();
    assert_eq!(
        errored.key,
        parse_with(&lines[2], &d).unwrap().key,
        "same line, same identity"
    );
    let other = Defaults {
        account: Some("globex".into()),
        recorded_at: None,
        oldest: None,
    };
    assert_ne!(errored.key, parse_with(&lines[2], &other).unwrap().key);

    let mut v: Value = serde_json::from_str(&lines[0]).unwrap();
    v["result"]["type"] = json!("teleported");
    assert_eq!(
        parse_with(&v.to_string(), &d).unwrap_err().field.as_deref(),
        Some("result.type")
    );
    v["result"]["type"] = json!("succeeded");
    v["result"]["message"]["usage"]["output_tokens"] = json!(-1);
    assert_eq!(
        parse_with(&v.to_string(), &d).unwrap_err().field.as_deref(),
        Some("result.message.usage.output_tokens")
    );
}

#[test]
fn streamed_responses_are_assembled() {
    let r = parse(&fixture("streamed.ndjson")).unwrap();
    assert_eq!(r.key, "msg_01StreamedWebSearch00000001");
    assert_eq!(r.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    // Usage from the last message_delta; cache counters fall back to message_start.
    assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (10682, 510));
    assert_eq!(r.usage.web_search_requests, 1);
    assert_eq!(r.service_tier.as_deref(), Some("standard"));
    assert!(!r.uses_code_execution);
}

#[test]
fn streamed_code_execution_and_container_from_message_delta() {
    let events = json!([
        {"type": "message_start", "message": {"id": "msg_s", "type": "message", "model": "claude-sonnet-4-6",
            "content": [], "usage": {"input_tokens": 50, "output_tokens": 1, "cache_read_input_tokens": 7}}},
        {"type": "content_block_start", "index": 0, "content_block":
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "bash_code_execution", "input": {}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"command\":"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": " \"ls\"}"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "container": {"id": "container_s", "expires_at": "2026-01-01T00:00:00Z"}},
            "usage": {"output_tokens": 40}},
        {"type": "message_stop"}
    ]);
    let r = parse_value(&json!({"account": "acme", "events": events})).unwrap();
    assert!(r.uses_code_execution);
    assert_eq!(r.container_id.as_deref(), Some("container_s"));
    assert_eq!(
        (
            r.usage.input_tokens,
            r.usage.output_tokens,
            r.usage.cache_read_tokens
        ),
        (50, 40, 7)
    );
}

#[test]
fn a_stream_cut_off_before_message_delta_is_incomplete() {
    let e = parse(&fixture("seed/stream_cut_off.ndjson")).unwrap_err();
    assert_eq!(e.reason, RejectReason::Incomplete);
    assert_eq!(e.field.as_deref(), Some("events"));
    let e = rejected(&json!({"account": "acme", "events": []}));
    assert_eq!(e.reason, RejectReason::Incomplete);
    let e = rejected(&json!({"account": "acme", "events": "nope"}));
    assert_eq!(e.reason, RejectReason::Invalid);
}

#[test]
fn response_must_be_a_message_with_id_and_model() {
    let mut v = seed();
    v["response"]["type"] = json!("error");
    assert_eq!(rejected(&v).reason, RejectReason::NotARecord);
    for field in ["id", "model"] {
        let mut v = seed();
        v["response"].as_object_mut().unwrap().remove(field);
        assert_eq!(
            rejected(&v).field.as_deref(),
            Some(format!("response.{field}").as_str())
        );
    }
    let mut v = seed();
    v["response"]["content"] = json!("text");
    assert_eq!(rejected(&v).field.as_deref(), Some("response.content"));
}

#[test]
fn canonical_hash_ignores_key_order_and_white_space() {
    let a: Value = serde_json::from_str(r#"{"a": 1, "b": {"x": [1, 2], "y": "z"}}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{"b":{"y":"z","x":[1,2]},"a":1}"#).unwrap();
    let c: Value = serde_json::from_str(r#"{"b":{"y":"z","x":[2,1]},"a":1}"#).unwrap();
    assert_eq!(canonical_hash(&a), canonical_hash(&b));
    assert_ne!(canonical_hash(&a), canonical_hash(&c));
}

#[test]
fn invalid_utf8_is_malformed() {
    let mut bytes = fixture("seed/code_execution.ndjson").into_bytes();
    let at = bytes.iter().position(|&b| b == b'I').unwrap();
    bytes[at] = 0xff;
    let e = parse_record(&bytes, &origin(), &Defaults::default(), NOW).unwrap_err();
    assert_eq!(e.reason, RejectReason::Malformed);
    assert_eq!(e.line, Some(7));
}

proptest! {
    #![proptest_config(crate::support::proptest_config(500))]

    /// No input, however broken, makes the parser panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_record(&bytes, &origin(), &Defaults::default(), NOW);
    }

    /// Cutting the seed line anywhere or flipping any byte gives a record or
    /// a clear error, never a panic.
    #[test]
    fn mangled_seed_lines_never_panic(cut in 0usize..1400, flip in 0usize..1400, to in any::<u8>()) {
        let mut bytes = fixture("seed/code_execution.ndjson").into_bytes();
        if let Some(b) = bytes.get_mut(flip) { *b = to; }
        bytes.truncate(cut);
        match parse_record(&bytes, &origin(), &Defaults::default(), NOW) {
            Ok(r) => prop_assert!(!r.key.is_empty()),
            // A flipped byte may be a newline: the error then sits on a later line.
            Err(e) => prop_assert!(!e.message.is_empty() && e.line.is_some_and(|l| l >= 7)),
        }
    }
}
