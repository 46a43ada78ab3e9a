//! Estimates (docs/estimates.md), worked by hand, each through both `tally estimate`
//! and `POST /v1/estimate`: a code-heavy workload past the free allowance, a
//! files-only workload billed at the minimum, a batch share, long context on
//! a tiered model; a workload that mirrors a recorded month equals that
//! month's invoice; repricing recorded usage on another model; comparisons;
//! every kind of bad input named by its field. Both backends.

use crate::support::{Api, Backend, TestApp, TestDb, fixture, tally, tally_bin, write_file};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "estimate-admin";

/// `tally estimate` on a workload text; the JSON it prints.
fn estimate(db: &TestDb, workload: &str, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(&dir, "workload.toml", workload);
    let mut args = vec!["estimate", "--workload", file.as_str()];
    args.extend_from_slice(extra);
    let (code, out, err) = tally(db, &args);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn subtotals(v: &Value) -> [&str; 3] {
    let s = &v["subtotals"];
    [
        s["tokens"].as_str().unwrap(),
        s["web_search"].as_str().unwrap(),
        s["code_execution"].as_str().unwrap(),
    ]
}

/// Code execution past the daily allowance of 2025 (50 h per day).
/// 1,000 requests a day for 2 days, 1,000 in / 100 out on Sonnet 4
/// ($3 / $15 per MTok): 2M × $3 = $6.00 + 200k × $15 = $3.00.
/// Half run code for 10 minutes each: 500 × 600 s = 300,000 s a day,
/// 166.67 h in all: $8.33 gross; 100 h free ($5.00): $3.33 net.
const CODE_HEAVY: &str = r#"
days = 2
[[workload]]
name = "analyst"
model = "claude-sonnet-4-20250514"
requests_per_day = 1000
input_tokens = 1000
output_tokens = 100
code_execution_share = 0.5
container_minutes = 10
"#;

/// The estimate of a TOML workload through both interfaces: `tally
/// estimate` and `POST /v1/estimate` (the same document as JSON) must agree.
async fn both(app: &TestApp, workload: &str, at: &str) -> Value {
    let cli = estimate(&app.db, workload, &["--at", at]);
    let document: toml::Value = toml::from_str(workload).unwrap();
    let r = app
        .admin()
        .fresh()
        .post(&format!("/v1/estimate?at={at}"))
        .body(serde_json::to_string(&document).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let http: Value = r.json().await.unwrap();
    assert_eq!(http, cli, "HTTP and CLI differ");
    cli
}

async fn hand_worked_examples(backend: Backend) {
    // No admin token: loopback only, requests act as the admin.
    let app = TestApp::on(backend).serve().await;
    let db = &app.db;

    let e = both(&app, CODE_HEAVY, "2025-06-15").await;
    assert_eq!(e["days"], 2);
    assert_eq!(e["at"], "2025-06-15");
    let w = &e["workloads"][0];
    assert_eq!(w["name"], "analyst");
    assert_eq!(subtotals(w), ["9.00", "0.00", "8.33"]);
    assert_eq!(w["total"], "17.33");
    assert_eq!(w["container_hours"], "166.66666666666666666666666667");
    assert_eq!(e["free_container_hours"], "100");
    assert_eq!(subtotals(&e), ["9.00", "0.00", "3.33"]);
    assert_eq!(e["total"], "12.33");

    // Files only, no code: each container billed the 300 s minimum, and so is
    // a code run shorter than the minimum. 100 requests: 20 files-only
    // containers and 10 one-minute runs = 30 × 300 s = 2.5 h = $0.13 gross.
    // In June 2026 the allowance is 1,550 h a month: one day of it
    // (1,550 / 30 h) covers all of it, so the net is nothing.
    let files = r#"
days = 1
[[workload]]
name = "uploads"
model = "claude-sonnet-4-20250514"
requests_per_day = 100
files_preloaded_share = 0.2
code_execution_share = 0.1
container_minutes = 1
"#;
    let e = both(&app, files, "2026-06-15").await;
    let w = &e["workloads"][0];
    assert_eq!(w["container_hours"], "2.5");
    assert_eq!(subtotals(w), ["0.00", "0.00", "0.13"]);
    assert_eq!(e["free_container_hours"], "2.5");
    assert_eq!(subtotals(&e), ["0.00", "0.00", "0.00"]);

    // A batch share on Haiku 4.5 ($1 / $5, batch half price): 750 requests
    // at list price ($0.75 + $3.75), 250 in batch ($0.125 + $0.625): each
    // line rounds to cents as on invoices, $0.13 + $0.63, so $5.26.
    let batch = r#"
days = 1
[[workload]]
name = "nightly"
model = "claude-haiku-4-5-20251001"
requests_per_day = 1000
input_tokens = 1000
output_tokens = 1000
batch_share = 0.25
web_searches = 0.5
"#;
    let e = both(&app, batch, "2026-06-15").await;
    // 500 searches at $10 per 1,000.
    assert_eq!(subtotals(&e), ["5.26", "5.00", "0.00"]);
    assert_eq!(e["total"], "10.26");

    // Long context on a tiered model: an average input above 200K makes
    // every token of the workload use the long-context prices ($6 / $22.50);
    // 10 requests: 2.5M × $6 = $15.00 + 10k × $22.50 = $0.225 → $0.23.
    let long = r#"
days = 1
[[workload]]
name = "long"
model = "claude-sonnet-4-5-20250929"
requests_per_day = 10
input_tokens = 250000
output_tokens = 1000
"#;
    let e = both(&app, long, "2026-06-15").await;
    assert_eq!(subtotals(&e), ["15.23", "0.00", "0.00"]);
    // Below the threshold: 1.5M × $3 = $4.50 + 10k × $15 = $0.15.
    let short = long.replace("250000", "150000");
    let e = both(&app, &short, "2026-06-15").await;
    assert_eq!(subtotals(&e), ["4.65", "0.00", "0.00"]);

    // The text view: the table, the allowance and the monthly figure.
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(&dir, "w.toml", CODE_HEAVY);
    let (code, out, err) = tally(
        db,
        &[
            "estimate",
            "--workload",
            &file,
            "--at",
            "2025-06-15",
            "--format",
            "text",
        ],
    );
    assert_eq!(code, 0, "{err}");
    for expected in [
        "analyst",
        "$9.00",
        "$8.33",
        "-$5.00",
        "$12.33",
        "166.67",
        "100.00 free of 100.00 available",
        // $12.33 over 2 days is $184.95 over 30.
        "Monthly total (30 days at this rate): $184.95",
    ] {
        assert!(out.contains(expected), "{expected:?} missing in:\n{out}");
    }
}

/// One line of recorded usage of account `mirror`: Sonnet 4, 1,000 in /
/// 200 out / 500 cache reads, one web search; with `container`, code ran
/// in it for the 60 hours before `at`.
fn mirror_line(id: &str, at: &str, container: Option<&str>) -> String {
    let mut v: Value = serde_json::from_str(fixture("seed/code_execution.ndjson").trim()).unwrap();
    v["account"] = "mirror".into();
    v["recorded_at"] = at.into();
    v["response"]["id"] = id.into();
    v["response"]["model"] = "claude-sonnet-4-20250514".into();
    v["response"]["usage"] = json!({"input_tokens": 1000, "output_tokens": 200,
        "cache_read_input_tokens": 500, "server_tool_use": {"web_search_requests": 1}});
    match container {
        Some(c) => {
            let end = chrono::DateTime::parse_from_rfc3339(at).unwrap();
            v["started_at"] = (end - chrono::Duration::hours(60)).to_rfc3339().into();
            v["response"]["container"]["id"] = c.into();
        }
        None => {
            let o = v.as_object_mut().unwrap();
            o.remove("started_at");
            v["response"].as_object_mut().unwrap().remove("container");
            v["response"]["content"] = json!([{"type": "text", "text": "ok"}]);
        }
    }
    v.to_string()
}

/// Two requests a day for the whole month, one running code for 60 h in a
/// container of its own (past both the daily 50 h and, over a month, the
/// monthly 1,550 h allowance).
fn record_month(db: &TestDb, month: &str, days: u32) {
    let mut lines = Vec::new();
    for d in 1..=days {
        let at = format!("{month}-{d:02}T23:00:00Z");
        lines.push(mirror_line(
            &format!("msg_{month}_{d}_a"),
            &at,
            Some(&format!("c-{month}-{d}")),
        ));
        lines.push(mirror_line(&format!("msg_{month}_{d}_b"), &at, None));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(&dir, "month.ndjson", &lines.join("\n"));
    let (code, out, err) = tally(db, &["ingest", &file]);
    assert_eq!(code, 0, "{out}{err}");
}

const MIRROR: &str = r#"
[[workload]]
name = "mirror"
model = "claude-sonnet-4-20250514"
requests_per_day = 2
input_tokens = 1000
output_tokens = 200
cache_read_tokens = 500
web_searches = 1
code_execution_share = 0.5
container_minutes = 3600
"#;

/// A workload that mirrors a recorded month gives that month's invoice:
/// June 2025 (daily allowance) and January 2026 (monthly allowance).
async fn a_mirrored_month_equals_its_invoice(backend: Backend) {
    let db = TestDb::new(backend).await;
    for (month, days) in [("2025-06", 30), ("2026-01", 31)] {
        record_month(&db, month, days);
        let (code, out, err) = tally(
            &db,
            &[
                "invoice",
                "--account",
                "mirror",
                "--period",
                month,
                "--format",
                "json",
            ],
        );
        assert_eq!(code, 0, "{err}");
        let invoice: Value = serde_json::from_str(&out).unwrap();
        let workload = format!("days = {days}\n{MIRROR}");
        let e = estimate(&db, &workload, &["--at", &format!("{month}-01")]);
        assert_eq!(
            subtotals(&e),
            subtotals(&invoice),
            "{month}: {e:#}\n{invoice:#}"
        );
        assert_eq!(e["total"], invoice["total"], "{month}");
        let free = invoice["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["charge"] == "container_free_hours")
            .unwrap();
        let free_hours: rust_decimal::Decimal = free["quantity"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            e["free_container_hours"],
            (-free_hours).to_string(),
            "{month}"
        );
    }
}

/// Recorded usage repriced on another model at twice the volume.
/// January 2026, 62 records of Sonnet 4 → Haiku 4.5 ($1 / $5 / $0.10 cache
/// reads) × 2: 124,000 in = $0.124 → $0.12; 24,800 out = $0.124 → $0.12;
/// 62,000 cache reads = $0.0062 → $0.01; 124 searches = $1.24. Containers:
/// 31 × 60 h × 2 = 3,720 h = $186.00 gross, 1,550 h free (−$77.50).
async fn recorded_usage_repriced(backend: Backend) {
    let db = TestDb::new(backend).await;
    record_month(&db, "2026-01", 31);
    let args = [
        "estimate",
        "--reprice",
        "--account",
        "mirror",
        "--period",
        "2026-01",
        "--model",
        "claude-haiku-4-5-20251001",
        "--scale",
        "2",
    ];
    let (code, out, err) = tally(&db, &args);
    assert_eq!(code, 0, "{err}");
    let e: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (e["at"].as_str(), e["days"].as_i64()),
        (Some("2026-01-01"), Some(31))
    );
    let workloads = e["workloads"].as_array().unwrap();
    assert_eq!(workloads.len(), 2, "{e:#}");
    assert_eq!(workloads[0]["name"], "claude-sonnet-4-20250514");
    assert_eq!(workloads[0]["model"], "claude-haiku-4-5-20251001");
    assert_eq!(subtotals(&workloads[0]), ["0.25", "1.24", "0.00"]);
    assert_eq!(workloads[1]["container_hours"], "3720");
    assert_eq!(subtotals(&workloads[1]), ["0.00", "0.00", "186.00"]);
    assert_eq!(e["free_container_hours"], "1550");
    assert_eq!(subtotals(&e), ["0.25", "1.24", "108.50"]);
    assert_eq!(e["total"], "109.99");

    // A model the period's price book does not know, and a bad scale.
    let mut bad = args;
    bad[7] = "claude-nonexistent-9";
    let (code, _, err) = tally(&db, &bad);
    assert_ne!(code, 0);
    assert!(
        err.contains("--model") && err.contains("claude-nonexistent-9"),
        "{err}"
    );
    let mut bad = args;
    bad[3] = "mirrror";
    let (code, _, err) = tally(&db, &bad);
    assert_ne!(code, 0);
    assert!(
        err.contains("--account") && err.contains("mirrror"),
        "{err}"
    );
    let mut bad = args;
    bad[9] = "-1";
    let (code, _, err) = tally(&db, &bad);
    assert_ne!(code, 0);
    assert!(err.contains("--scale"), "{err}");
}

/// The same workloads side by side on several models.
async fn models_compared(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let models = "claude-sonnet-4-20250514,claude-haiku-4-5-20251001";
    let e = estimate(
        &db,
        CODE_HEAVY,
        &["--at", "2026-06-15", "--compare-models", models],
    );
    let rows = e["models"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["model"], "claude-sonnet-4-20250514");
    // Sonnet: $9.00 tokens; Haiku ($1 / $5): $2.00 + $1.00 = $3.00. Container
    // time is the same on both.
    assert_eq!(rows[0]["subtotals"]["tokens"], "9.00");
    assert_eq!(rows[1]["subtotals"]["tokens"], "3.00");
    assert_eq!(
        rows[0]["subtotals"]["code_execution"],
        rows[1]["subtotals"]["code_execution"]
    );
    assert_eq!(e["cheapest"], "claude-haiku-4-5-20251001");
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(&dir, "w.toml", CODE_HEAVY);
    let (code, out, _) = tally(
        &db,
        &[
            "estimate",
            "--workload",
            &file,
            "--compare-models",
            models,
            "--format",
            "text",
        ],
    );
    assert_eq!(code, 0);
    let haiku = out.lines().find(|l| l.starts_with("claude-haiku")).unwrap();
    assert!(haiku.contains("cheapest"), "{out}");
    let (code, _, err) = tally(
        &db,
        &[
            "estimate",
            "--workload",
            &file,
            "--compare-models",
            "claude-sonnet-4-20250514,claude-nope",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("--compare-models") && err.contains("claude-nope"),
        "{err}"
    );
}

/// Each mistake gets an error naming its field; nothing panics.
async fn bad_workloads_are_named(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let cases: [(&str, &str, &str); 6] = [
        (
            "model = \"claude-sonnet-4-20250514\"",
            "model = \"claude-sonet-4\"",
            "workload[0].model",
        ),
        (
            "code_execution_share = 0.5",
            "code_execution_share = 1.5",
            "workload[0].code_execution_share",
        ),
        (
            "output_tokens = 100",
            "output_tokens = -100",
            "workload[0].output_tokens",
        ),
        ("input_tokens = 1000", "input_tokns = 1000", "input_tokns"),
        ("days = 2", "days = 0", "days"),
        (
            "requests_per_day = 1000",
            "requests_per_day = \"lots\"",
            "requests_per_day",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (from, to, field) in cases {
        let text = CODE_HEAVY.replace(from, to);
        assert_ne!(text, CODE_HEAVY, "{from}");
        let file = write_file(&dir, "bad.toml", &text);
        let (code, out, err) = tally(&db, &["estimate", "--workload", &file]);
        assert_eq!(code, 1, "{to}: {out}{err}");
        assert!(err.contains(field), "{to}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let (code, _, err) = tally(&db, &["estimate", "--workload", "/nonexistent/w.toml"]);
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent/w.toml"), "{err}");
    let file = write_file(&dir, "w.toml", CODE_HEAVY);
    let (code, _, err) = tally(&db, &["estimate", "--workload", &file, "--at", "June"]);
    assert_ne!(code, 0);
    assert!(err.contains("--at"), "{err}");
}

/// `POST /v1/estimate` answers what the CLI prints; errors are 400s naming
/// the field; any key may ask, no key may not.
async fn estimate_over_http(backend: Backend) {
    let app = TestApp::on(backend)
        .admin_token(ADMIN)
        .account_key("acme")
        .serve()
        .await;
    let document = json!({"days": 2, "workload": [{"name": "analyst", "model": "claude-sonnet-4-20250514",
        "requests_per_day": 1000, "input_tokens": 1000, "output_tokens": 100,
        "code_execution_share": 0.5, "container_minutes": 10}]});
    let post = |query: &str, body: String, api: Api| {
        api.post(&format!("/v1/estimate{query}")).body(body).send()
    };
    let expected = estimate(&app.db, CODE_HEAVY, &["--at", "2025-06-15"]);
    for (api, account) in [(app.admin(), None), (app.account(), Some("acme"))] {
        let r = post("?at=2025-06-15", document.to_string(), api)
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let mut got: Value = r.json().await.unwrap();
        // An account key's estimate says whose prices it is at (its own plan;
        // acme has none, so they are the cost).
        let priced_for = got.as_object_mut().unwrap().remove("account");
        assert_eq!(priced_for.as_ref().and_then(Value::as_str), account);
        assert_eq!(got, expected);
    }
    let r = post("?at=2025-06-15", document.to_string(), app.anonymous())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let mut bad = document.clone();
    bad["workload"][0]["batch_share"] = json!(2);
    let r = post("", bad.to_string(), app.admin()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("workload[0].batch_share"), "{message}");
    let mut typo = document.clone();
    typo["workload"][0]["web_serches"] = json!(1);
    let r = post("", typo.to_string(), app.admin()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("web_serches"));
    // Every refusal is the API's JSON error: an unknown query parameter and
    // a body past the limit too.
    let r = post("?colour=red", document.to_string(), app.admin())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{body}"
    );
    let r = post("", " ".repeat(3 << 20), app.admin()).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "payload_too_large");
    // The server closes a connection whose body it refused unread: a fresh
    // client, so the next request does not race that close.
    let r = app
        .admin()
        .fresh()
        .post("/v1/accounts/acme/invoices/2026-01/finalize?allow_unpriced=maybe")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allow_unpriced"),
        "{body}"
    );
    for (query, body) in [
        ("?at=soon", document.to_string()),
        ("", "days = 3".to_owned()),
        ("", "{\"workload\": [".to_owned()),
        ("?compare_models=claude-nope", document.to_string()),
    ] {
        let r = post(query, body.clone(), app.admin()).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query} {body}");
    }
    let r = post(
        "?at=2026-06-15&compare_models=claude-sonnet-4-20250514,claude-haiku-4-5-20251001",
        document.to_string(),
        app.admin(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["cheapest"], "claude-haiku-4-5-20251001");
}

/// A workload needs no ledger: on a SQLite file that does not exist the
/// shipped price book is used and no file is created. When the ledger has an
/// imported price book, that book prices the estimate.
async fn estimates_use_the_book_in_force(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let workload = write_file(&dir, "w.toml", CODE_HEAVY);
    let missing = dir.path().join("no-ledger.db");
    let out = tally_bin()
        .args(["--database", &format!("sqlite://{}", missing.display())])
        .args(["estimate", "--workload", &workload, "--at", "2025-06-15"])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["total"], "12.33");
    assert!(!missing.exists(), "no ledger file created");

    // Sonnet 4 input at $6 instead of $3 in an imported book: tokens $15.00.
    let db = TestDb::migrated(backend).await;
    let mut parts = tally::pricing::SHIPPED.split("id = \"claude-sonnet-4-20250514\"");
    let mut book = parts.next().unwrap().to_owned();
    for part in parts {
        book.push_str("id = \"claude-sonnet-4-20250514\"");
        book.push_str(&part.replacen("input = \"3\"", "input = \"6\"", 1));
    }
    let book_file = write_file(&dir, "prices.toml", &book);
    let (code, _, err) = tally(&db, &["prices", "import", &book_file]);
    assert_eq!(code, 0, "{err}");
    let e = estimate(&db, CODE_HEAVY, &["--at", "2025-06-15"]);
    assert_eq!(subtotals(&e)[0], "15.00", "{e:#}");
}

on_both_backends!(
    estimates_use_the_book_in_force,
    hand_worked_examples,
    a_mirrored_month_equals_its_invoice,
    recorded_usage_repriced,
    models_compared,
    bad_workloads_are_named,
    estimate_over_http,
);
