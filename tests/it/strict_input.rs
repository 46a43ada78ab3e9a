//! Strict input and truthful answers (docs/http.md): every admin write
//! refuses each wrong shape with a 400 and changes nothing; `PATCH` merges;
//! dates out of range are refused with the field named; a batch that storage
//! fails part-way, or whose body ends early, says exactly what was stored.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Backend, TestApp, TestDb, tally};

/// Everything the admin writes can change, as the API shows it.
async fn snapshot(app: &TestApp) -> Value {
    let admin = app.admin();
    let mut credits = admin.get_json("/v1/accounts/acme/credits").await;
    credits.as_object_mut().unwrap().remove("as_of");
    json!({
        "details": admin.get_json("/v1/accounts/acme/details").await,
        "org": admin.get_json("/v1/org").await,
        "budget": admin.get_json("/v1/accounts/acme/budget").await["monthly_budget_usd"],
        "credits": credits,
    })
}

async fn send(app: &TestApp, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
    let r = app
        .admin()
        .fresh()
        .request(method, path)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn admin_writes_refuse_every_wrong_shape_and_change_nothing(backend: Backend) {
    let app = TestApp::on(backend).serve().await;
    let full = r#"{"name": "Acme AG", "email": "billing@acme.test", "address": "1 Road\nTown",
                   "tax_id": "DE1", "tax_rate_percent": "19", "tax_label": "VAT", "terms_days": 30}"#;
    for (method, path, body) in [
        (Method::PUT, "/v1/accounts/acme/details", full),
        (
            Method::PUT,
            "/v1/org",
            r#"{"name": "Seller Ltd", "tax_id": "GB1"}"#,
        ),
        (
            Method::PUT,
            "/v1/accounts/acme/budget",
            r#"{"monthly_usd": "500.00"}"#,
        ),
        (
            Method::POST,
            "/v1/accounts/acme/credits",
            r#"{"usd": "100.00", "note": "welcome"}"#,
        ),
    ] {
        let (status, answer) = send(&app, method, path, body).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    }
    let before = snapshot(&app).await;

    // Shapes no object schema allows, on every admin JSON write.
    let not_objects = ["[]", "[null, null]", r#"["Evil"]"#, "null", "7", r#""x""#];
    let writes = [
        (Method::PUT, "/v1/accounts/acme/details"),
        (Method::PATCH, "/v1/accounts/acme/details"),
        (Method::PUT, "/v1/org"),
        (Method::PATCH, "/v1/org"),
        (Method::POST, "/v1/accounts/acme/credits"),
        (Method::PUT, "/v1/accounts/acme/budget"),
    ];
    let mut tried = Vec::new();
    for (method, path) in &writes {
        for body in not_objects {
            tried.push((method.clone(), *path, body, "expected a JSON object"));
        }
        tried.push((method.clone(), *path, "{\"name\": ", "not JSON"));
    }
    // Values the schema forbids, each named in the answer.
    for (method, path, body, named) in [
        (
            Method::PUT,
            "/v1/accounts/acme/budget",
            r#"["7"]"#,
            "expected a JSON object",
        ),
        (
            Method::PUT,
            "/v1/accounts/acme/budget",
            r#"{"monthly_usd": "1e3"}"#,
            "monthly_usd",
        ),
        (
            Method::PUT,
            "/v1/accounts/acme/budget",
            r#"{"monthly_usd": 7}"#,
            "monthly_usd",
        ),
        (
            Method::PUT,
            "/v1/accounts/acme/budget",
            r#"{"monthly_usd": null}"#,
            "monthly_usd",
        ),
        (Method::PUT, "/v1/accounts/acme/budget", "{}", "monthly_usd"),
        (
            Method::POST,
            "/v1/accounts/acme/credits",
            r#"["5.00", null, null, null]"#,
            "expected a JSON object",
        ),
        (
            Method::POST,
            "/v1/accounts/acme/credits",
            r#"{"usd": "5.00", "note": null}"#,
            "note",
        ),
        (
            Method::POST,
            "/v1/accounts/acme/credits",
            r#"{"usd": 5}"#,
            "usd",
        ),
        (
            Method::POST,
            "/v1/accounts/acme/credits",
            r#"{"usd": "5.00", "expires": "2026-02-30"}"#,
            "expires",
        ),
        (
            Method::POST,
            "/v1/accounts/acme/credits",
            r#"{"usd": "5.00", "expires": "0001-01-01"}"#,
            "expires",
        ),
        (
            Method::POST,
            "/v1/accounts/acme/credits",
            r#"{"usd": "5.00", "memo": "x"}"#,
            "memo",
        ),
        (
            Method::PUT,
            "/v1/accounts/acme/details",
            r#"{"name": null}"#,
            "name",
        ),
        (
            Method::PUT,
            "/v1/accounts/acme/details",
            r#"{"tax_rate_percent": 20}"#,
            "tax_rate_percent",
        ),
        (
            Method::PUT,
            "/v1/accounts/acme/details",
            r#"{"terms_days": "30"}"#,
            "terms_days",
        ),
        (
            Method::PUT,
            "/v1/accounts/acme/details",
            r#"{"reverse_charge": "yes"}"#,
            "reverse_charge",
        ),
        (
            Method::PUT,
            "/v1/accounts/acme/details",
            r#"{"paper": "a4"}"#,
            "paper",
        ),
        (
            Method::PATCH,
            "/v1/accounts/acme/details",
            r#"{"tax_rate_percent": 20}"#,
            "tax_rate_percent",
        ),
        (
            Method::PATCH,
            "/v1/accounts/acme/details",
            r#"{"nmae": "x"}"#,
            "nmae",
        ),
        (
            Method::PATCH,
            "/v1/accounts/acme/details",
            r#"{"tax_rate_percent": "150"}"#,
            "tax_rate_percent",
        ),
        (Method::PUT, "/v1/org", r#"{"name": null}"#, "name"),
        (
            Method::PUT,
            "/v1/org",
            r#"{"terms_days": 30}"#,
            "terms are set per account",
        ),
        (
            Method::PATCH,
            "/v1/org",
            r#"{"tax_label": "VAT"}"#,
            "tax_label",
        ),
        (Method::PATCH, "/v1/org", r#"{"paper": "a5"}"#, "paper"),
    ] {
        tried.push((method, path, body, named));
    }
    for (method, path, body, named) in &tried {
        let (status, answer) = send(&app, method.clone(), path, body).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(named),
            "{method} {path} {body}: {message:?} does not name {named:?}"
        );
    }
    assert_eq!(
        snapshot(&app).await,
        before,
        "a refused write changed something"
    );

    // An empty period is refused, not read as the current month.
    let r = app
        .admin()
        .get("/v1/accounts/acme/budget?period=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // PATCH changes what it names, clears what it sets to null, keeps the rest.
    let (status, details) = send(
        &app,
        Method::PATCH,
        "/v1/accounts/acme/details",
        r#"{"email": "ap@acme.test", "tax_id": null}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{details}");
    assert_eq!(details["email"], "ap@acme.test");
    assert_eq!(details["name"], "Acme AG");
    assert_eq!(details["tax_rate_percent"], "19");
    assert!(details.get("tax_id").is_none(), "{details}");
    assert_eq!(
        app.admin().get_json("/v1/accounts/acme/details").await,
        details
    );
    // As RFC 7396's media type too.
    let r = app
        .admin()
        .fresh()
        .request(Method::PATCH, "/v1/org")
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"paper": "letter"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let org: Value = r.json().await.unwrap();
    assert_eq!(
        (org["name"].as_str(), org["paper"].as_str()),
        (Some("Seller Ltd"), Some("letter"))
    );
    // PUT replaces: what it leaves out is cleared.
    let (status, details) = send(
        &app,
        Method::PUT,
        "/v1/accounts/acme/details",
        r#"{"name": "Acme AG"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(details, json!({"name": "Acme AG"}));
}

/// A record line with message id `id`, recorded at `at`.
fn record(id: &str, at: &str) -> String {
    json!({
        "account": "acme", "recorded_at": at,
        "response": {"id": id, "type": "message", "model": "claude-sonnet-4-20250514",
                     "content": [], "usage": {"input_tokens": 10, "output_tokens": 5}}
    })
    .to_string()
}

async fn times_out_of_range_are_refused_with_the_field(backend: Backend) {
    let app = TestApp::on(backend).serve().await;
    let api = app.admin();
    let later = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    for (at, field) in [
        ("0000-01-01T00:00:00Z", "recorded_at"),
        ("1999-12-31T23:59:59Z", "recorded_at"),
        (later.as_str(), "recorded_at"),
    ] {
        let (status, body) = api.post_json("/v1/usage", record("msg_range", at)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{at}: {body}");
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    let mut started =
        serde_json::from_str::<Value>(&record("msg_range", "2025-05-01T00:00:00Z")).unwrap();
    started["started_at"] = json!("1970-01-01T00:00:00Z");
    let (status, body) = api.post_json("/v1/usage", started.to_string()).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("started_at"))
    );
    // The query's default is checked the same way, before any line is read.
    let (status, body) = api
        .post_json("/v1/usage/batch?recorded_at=0000-01-01T00:00:00Z", "{}\n")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("recorded_at")
    );
    let (status, _) = api
        .post_json(
            "/v1/usage?account=",
            record("msg_ok", "2025-05-01T00:00:00Z"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(app.store.counts().await.unwrap().records, 0);

    // A backfill that old is allowed when asked for (`--oldest`).
    let dir = tempfile::tempdir().unwrap();
    let file = crate::support::write_file(
        &dir,
        "old.ndjson",
        &record("msg_1998", "1998-06-01T00:00:00Z"),
    );
    let (code, _, err) = tally(&app.db, &["ingest", &file]);
    assert_eq!(code, 1, "{err}");
    let (code, out, err) = tally(&app.db, &["ingest", "--oldest", "1990-01-01", &file]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(app.store.counts().await.unwrap().records, 1);
}

/// `lines` records, one per line, and their message ids.
fn generated(lines: usize) -> (String, Vec<String>) {
    let ids: Vec<String> = (1..=lines).map(|n| format!("msg_line_{n:05}")).collect();
    let text = ids
        .iter()
        .map(|id| record(id, "2025-05-01T12:00:00Z") + "\n")
        .collect();
    (text, ids)
}

/// Make the database refuse to store the record with message id `id`:
/// with `sqlstate` on PostgreSQL (SQLite's trigger aborts as a constraint).
async fn refuse_record(db: &TestDb, id: &str, sqlstate: &str) {
    match db.backend {
        Backend::Sqlite => {
            db.execute(&format!(
                "CREATE TRIGGER refuse_one BEFORE INSERT ON records WHEN NEW.message_id = '{id}' \
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
            ))
            .await
        }
        Backend::Postgres => {
            db.execute(&format!(
                "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                   IF NEW.message_id = '{id}' THEN RAISE EXCEPTION 'refused by the test' USING ERRCODE = '{sqlstate}'; END IF; \
                   RETURN NEW; END $$; \
                 CREATE TRIGGER refuse_one BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION refuse_one();"
            ))
            .await
        }
    }
}

/// Each line's status in a batch answer.
fn statuses(answer: &Value) -> Vec<(u64, String)> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The message ids stored in the ledger.
async fn stored_ids(db: &TestDb) -> std::collections::BTreeSet<String> {
    db.texts("SELECT message_id FROM records")
        .await
        .into_iter()
        .collect()
}

async fn one_line_the_database_refuses_costs_only_that_line(backend: Backend) {
    let app = TestApp::on(backend).serve().await;
    let (text, ids) = generated(3000);
    refuse_record(&app.db, &ids[1500], "P0001").await;
    // The query's defaults are kept with the refused line, for its retry.
    let (status, answer) = app
        .admin()
        .post_json("/v1/usage/batch?account=fallback", text)
        .await;
    assert_eq!(status, StatusCode::OK, "{}", answer["error"]);
    assert_eq!(
        (answer["accepted"].as_u64(), answer["rejected"].as_u64()),
        (Some(2999), Some(1))
    );
    let refused = &answer["results"][1500];
    assert_eq!(
        (
            refused["line"].as_u64(),
            refused["status"].as_str(),
            refused["error"]["type"].as_str(),
            refused["retryable"].as_bool()
        ),
        (
            Some(1501),
            Some("rejected"),
            Some("storage_refused"),
            Some(false)
        ),
        "{refused}"
    );
    let stored = stored_ids(&app.db).await;
    assert_eq!(stored.len(), 2999);
    assert!(!stored.contains(&ids[1500]));
    let kept = refused["rejected_id"]
        .as_i64()
        .expect("kept in the rejected store");
    let kept = app.store.rejected_get(kept).await.unwrap().unwrap();
    assert_eq!(kept.account_default.as_deref(), Some("fallback"));
}

async fn a_batch_that_storage_fails_part_way_says_what_was_stored(db: TestDb) {
    let app = TestApp::on(db.backend).serve_on(db).await;
    let (text, ids) = generated(5000);
    // Storage "fails" (a full disk, as the database reports it) at line 2501.
    refuse_record(&app.db, &ids[2500], "53100").await;
    let (status, answer) = app.admin().post_json("/v1/usage/batch", text).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer["error"]
    );
    assert_eq!(answer["error"]["type"], "storage_unavailable");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(!message.contains("nothing"), "{message}");
    // Every line the answer lists as stored is in the ledger, and no other.
    let stored = stored_ids(&app.db).await;
    let mut listed_stored = std::collections::BTreeSet::new();
    for (line, status) in statuses(&answer) {
        let id = &ids[line as usize - 1];
        match status.as_str() {
            "recorded" => {
                listed_stored.insert(id.clone());
            }
            "not_stored" => assert!(!stored.contains(id), "line {line} is stored"),
            other => panic!("line {line}: {other}"),
        }
    }
    assert_eq!(stored, listed_stored);
    assert!(
        stored.len() >= 2000,
        "the chunks before the failure are stored: {}",
        stored.len()
    );
    assert!(!stored.contains(&ids[2500]));
    let not_stored = answer["not_stored"].as_u64().unwrap();
    assert!(not_stored > 0);
    assert!(
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] != "not_stored" || r["retryable"] == true)
    );
    // What the answer says to send again is exactly what is missing.
    let last_read = answer["error"]["last_read_line"].as_u64().unwrap();
    let missing = ids.len() - stored.len();
    assert_eq!(missing as u64, not_stored + (ids.len() as u64 - last_read));
}

async fn a_body_that_ends_early_is_answered_as_such(backend: Backend) {
    let app = TestApp::on(backend).serve().await;
    let (text, _) = generated(2600);
    let mut cut = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if n == 2500 {
            cut += 300.min(line.len() - 1);
            break;
        }
        cut += line.len();
    }
    let address = app
        .url("/")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/usage/batch HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
        text.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&text.as_bytes()[..cut]).await.unwrap();
    stream.shutdown().await.unwrap(); // half-closed: the rest never comes
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let json: Value =
        serde_json::from_str(&answer[answer.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(json["error"]["type"], "incomplete_body", "{json}");
    assert_eq!(json["error"]["last_complete_line"], 2500);
    assert_eq!(json["accepted"], 2500);
    assert_eq!(app.store.counts().await.unwrap().records, 2500);
}

on_both_backends!(
    admin_writes_refuse_every_wrong_shape_and_change_nothing,
    times_out_of_range_are_refused_with_the_field,
    one_line_the_database_refuses_costs_only_that_line,
    a_body_that_ends_early_is_answered_as_such,
);

/// Only PostgreSQL can be made to report a failure that may pass (a full
/// disk) from inside a statement: SQLite's trigger aborts as a constraint,
/// the refusal covered above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_storage_failing_part_way() {
    a_batch_that_storage_fails_part_way_says_what_was_stored(TestDb::new(Backend::Postgres).await)
        .await;
}
