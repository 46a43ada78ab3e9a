//! The HTTP ingest API on a real server on a loopback port, on both backends.

use crate::support::{Backend, TestApp, fixture};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tally::http::ServeConfig;

fn seed() -> Value {
    serde_json::from_str(&fixture("seed/code_execution.ndjson")).unwrap()
}

async fn single_record_status_codes(backend: Backend) {
    let app = TestApp::on(backend).serve().await;
    let api = app.admin();
    let line = fixture("seed/code_execution.ndjson");

    let (status, body) = api.post_json("/v1/usage", line.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "recorded");
    assert_eq!(body["id"], "msg_01BqK2v4FnRs4xTjgL8EuZxz");

    let (status, body) = api.post_json("/v1/usage", line.clone()).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );

    let mut other = seed();
    other["response"]["usage"]["output_tokens"] = json!(1);
    let (status, body) = api.post_json("/v1/usage", other.to_string()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["type"], "conflict");
    assert!(body["rejected_id"].as_i64().is_some());

    let (status, body) = api
        .post_json("/v1/usage", fixture("seed/trailing_comma.ndjson"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["type"], "malformed");
    assert_eq!(
        (
            body["error"]["line"].as_u64(),
            body["error"]["column"].as_u64()
        ),
        (Some(1), Some(1264))
    );

    let mut negative = seed();
    negative["response"]["id"] = json!("msg_negative");
    negative["response"]["usage"]["input_tokens"] = json!(-3);
    let (status, body) = api.post_json("/v1/usage", negative.to_string()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "response.usage.input_tokens");

    let (status, body) = api
        .post_json("/v1/usage", fixture("seed/bare_tool_result.ndjson"))
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("not_a_record"))
    );

    // A pretty-printed body reports the line inside the body.
    let (status, body) = api
        .post_json(
            "/v1/usage",
            "{\n  \"account\": \"acme\",\n  \"response\": [,]\n}",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["line"], 3);

    // Every rejected body is in the rejected store.
    assert_eq!(app.store.rejected_list(false, 100).await.unwrap().len(), 5);
    assert_eq!(app.store.counts().await.unwrap().records, 1);
}

async fn bare_response_takes_the_account_from_the_query(backend: Backend) {
    let app = TestApp::on(backend).serve().await;
    let api = app.admin();
    let bare = seed()["response"].to_string();
    let (status, body) = api.post_json("/v1/usage", bare.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "account");
    let (status, body) = api
        .post_json(
            "/v1/usage?account=acme&recorded_at=2025-05-23T20:13:31Z",
            bare,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let r = app
        .store
        .record("msg_01BqK2v4FnRs4xTjgL8EuZxz")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.account.as_str(), r.recorded_at),
        ("acme", 1_748_031_211_000_000)
    );
}

async fn oversized_bodies_get_413(backend: Backend) {
    let app = TestApp::on(backend)
        .configure(|c| {
            c.max_body_bytes = 1000;
            c.max_batch_bytes = 5000;
        })
        .serve()
        .await;
    let api = app.admin();
    let (status, body) = api
        .post_json("/v1/usage", fixture("seed/code_execution.ndjson"))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["type"], "payload_too_large");

    let (status, _) = api.post_json("/v1/usage/batch", "x".repeat(6000)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // A streamed (chunked) body that passes the limit part-way: the lines
    // before the limit are processed and reported, the rest is not read.
    let line = fixture("seed/files_preloaded.ndjson");
    let chunks: Vec<Result<String, std::io::Error>> = (0..8).map(|_| Ok(line.clone())).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (status, body) = api.post_json("/v1/usage/batch", body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");
    assert_eq!(
        body["duplicates"].as_u64().unwrap() + 1,
        body["results"].as_array().unwrap().len() as u64
    );
}

async fn batch_reports_every_line_and_keeps_the_good_ones(backend: Backend) {
    let app = TestApp::on(backend).serve().await;
    let api = app.admin();
    let good = fixture("seed/code_execution.ndjson");
    let body = [
        good.trim_end(),
        fixture("seed/trailing_comma.ndjson").trim_end(),
        "",
        fixture("seed/files_preloaded.ndjson").trim_end(),
        good.trim_end(),
        fixture("seed/bare_tool_result.ndjson").trim_end(),
        fixture("streamed.ndjson").trim_end(),
    ]
    .join("\n");
    let (status, body) = api.post_json("/v1/usage/batch", body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            &body["accepted"],
            &body["duplicates"],
            &body["conflicts"],
            &body["rejected"]
        ),
        (&json!(3), &json!(1), &json!(0), &json!(2))
    );
    assert_eq!(body["rejected_lines"], json!([2, 6]));
    let statuses: Vec<(u64, &str)> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            (1, "recorded"),
            (2, "rejected"),
            (4, "recorded"),
            (5, "duplicate"),
            (6, "rejected"),
            (7, "recorded")
        ]
    );
    assert_eq!(body["results"][1]["error"]["column"], 1264);
    assert_eq!(app.store.counts().await.unwrap().records, 3);

    // For very large batches the results can be cut down to the problems.
    let again = [
        good.trim_end(),
        fixture("seed/trailing_comma.ndjson").trim_end(),
    ]
    .join("\n");
    let (_, body) = api
        .post_json("/v1/usage/batch?results=problems", again.clone())
        .await;
    let lines: Vec<u64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2]);
    assert_eq!(
        (body["duplicates"].as_u64(), body["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    let (_, body) = api
        .post_json("/v1/usage/batch?results=none", again.clone())
        .await;
    assert_eq!(body["results"], json!([]));
    let (status, _) = api.post_json("/v1/usage/batch?results=some", again).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn large_batch_with_account_default(backend: Backend) {
    let app = TestApp::on(backend).serve().await;
    let api = app.admin();
    let mut text = Vec::new();
    tally::synth::write_ndjson(&mut text, 5000, 3).unwrap();
    let (status, body) = api.post_json("/v1/usage/batch", text.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["accepted"], 5000);
    let (_, again) = api.post_json("/v1/usage/batch", text).await;
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(5000))
    );

    // A downloaded batch results file has no account: the query gives it.
    let results = fixture("batch_results.ndjson");
    let (_, body) = api.post_json("/v1/usage/batch", results.clone()).await;
    assert_eq!(body["rejected"], 5);
    let (_, body) = api.post_json("/v1/usage/batch?account=acme", results).await;
    assert_eq!(body["accepted"], 5, "{body}");
}

/// Fifty clients send the same record at once: one 201, forty-nine 200s, one row.
async fn concurrent_identical_posts_record_once(backend: Backend) {
    let app = TestApp::on(backend).serve().await;
    let api = app.admin();
    let line = fixture("seed/code_execution.ndjson");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (api, line) = (api.clone(), line.clone());
        tasks.push(tokio::spawn(async move {
            api.post("/v1/usage")
                .body(line)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(app.store.counts().await.unwrap().records, 1);
}

async fn admin_token_guards_the_api(backend: Backend) {
    let app = TestApp::on(backend).admin_token("s3cret").serve().await;
    let line = fixture("seed/code_execution.ndjson");
    let no_key = app
        .anonymous()
        .post("/v1/usage")
        .body(line.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), StatusCode::UNAUTHORIZED);
    let wrong = app
        .api(Some("nope"))
        .post("/v1/usage")
        .body(line.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let ok = app
        .admin()
        .post("/v1/usage")
        .body(line)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::CREATED);
    // Health and metrics stay open for probes.
    let health = app.anonymous().status_of_get("/healthz").await;
    assert_eq!(health, StatusCode::OK);
    assert_eq!(app.store.counts().await.unwrap().records, 1);
}

async fn health_metrics_and_unknown_routes(backend: Backend) {
    let app = TestApp::on(backend).serve().await;
    let api = app.admin();
    let health = api.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    api.post_json("/v1/usage/batch", fixture("sample.ndjson"))
        .await;
    api.post_json("/v1/usage", fixture("seed/trailing_comma.ndjson"))
        .await;
    let metrics = api.get_text("/metrics").await;
    assert!(
        metrics.contains("tally_ingested_lines_total{outcome=\"accepted\"} 10"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tally_ingested_lines_total{outcome=\"rejected\"} 1"),
        "{metrics}"
    );
    assert_eq!(api.status_of_get("/nope").await, StatusCode::NOT_FOUND);
}

on_both_backends!(
    single_record_status_codes,
    bare_response_takes_the_account_from_the_query,
    oversized_bodies_get_413,
    batch_reports_every_line_and_keeps_the_good_ones,
    large_batch_with_account_default,
    concurrent_identical_posts_record_once,
    admin_token_guards_the_api,
    health_metrics_and_unknown_routes,
);

#[test]
fn without_admin_token_only_loopback_is_allowed() {
    let config = ServeConfig::default();
    assert!(tally::http::check_listen_policy(&"127.0.0.1:8080".parse().unwrap(), &config).is_ok());
    assert!(tally::http::check_listen_policy(&"[::1]:8080".parse().unwrap(), &config).is_ok());
    let err =
        tally::http::check_listen_policy(&"0.0.0.0:8080".parse().unwrap(), &config).unwrap_err();
    assert!(err.contains("TALLY_ADMIN_TOKEN"), "{err}");
    let with_token = ServeConfig {
        admin_token: Some("t".into()),
        ..config
    };
    assert!(
        tally::http::check_listen_policy(&"0.0.0.0:8080".parse().unwrap(), &with_token).is_ok()
    );
}
