//! Invoices end to end: golden files (`fixtures/expected/`) through the CLI,
//! the HTTP endpoints on a loopback server, the all-accounts CSV and the
//! price-book commands; on both backends.
//!
//! `TALLY_UPDATE_GOLDEN=1 cargo test --test it invoices_e2e::` rewrites the
//! golden files (review the diff before committing).

use std::sync::Arc;

use crate::support::{
    Backend, TestApp, TestDb, TestServer, fixture, fixture_arg, fixture_path, postgres_server,
    tally,
};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::Connection;
use tally::http::ServeConfig;
use tally::store::{PostgresStore, SqliteStore, Store, Writes};

fn check_golden(name: &str, actual: &str) {
    let path = fixture_path("expected").join(name);
    if std::env::var_os("TALLY_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
    assert_eq!(actual, expected, "{name} differs from its golden file");
}

const GOLDEN: [(&str, &str); 3] = [
    ("acme", "2025-05"),
    ("acme", "2025-10"),
    ("globex", "2025-10"),
];

async fn golden_invoices(backend: Backend) {
    let db = TestDb::new(backend).await;
    let sample = fixture_arg("sample.ndjson");
    assert_eq!(tally(&db, &["ingest", &sample]).0, 0);
    for (account, period) in GOLDEN {
        for format in ["json", "csv", "txt"] {
            let flag = if format == "txt" { "text" } else { format };
            let (code, out, err) = tally(
                &db,
                &[
                    "invoice",
                    "--account",
                    account,
                    "--period",
                    period,
                    "--format",
                    flag,
                ],
            );
            assert_eq!(code, 0, "{err}");
            check_golden(&format!("{account}_{period}.{format}"), &out);
        }
    }
    let (code, out, _) = tally(&db, &["invoices", "--period", "2025-10", "--format", "csv"]);
    assert_eq!(code, 0);
    check_golden("all_2025-10.csv", &out);
    // One header, then every account's rows, each ending with its total row.
    assert_eq!(out.matches("invoice_number,").count(), 1);
    assert_eq!(out.lines().filter(|l| l.contains(",total,")).count(), 2);

    // After finalizing one account, the all-accounts documents show it frozen.
    let (code, _, err) = tally(
        &db,
        &[
            "invoice",
            "--account",
            "acme",
            "--period",
            "2025-10",
            "--finalize",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (_, json, _) = tally(
        &db,
        &["invoices", "--period", "2025-10", "--format", "json"],
    );
    let all: Vec<Value> = serde_json::from_str(&json).unwrap();
    let states: Vec<(&str, &str)> = all
        .iter()
        .map(|v| {
            (
                v["account"].as_str().unwrap(),
                v["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(states, [("acme", "finalized"), ("globex", "draft")]);
    let (_, csv, _) = tally(&db, &["invoices", "--period", "2025-10"]);
    assert!(
        csv.lines().nth(1).unwrap().starts_with("INV-2025-10-"),
        "{csv}"
    );
}

async fn http_invoice_endpoints(backend: Backend) {
    let app = TestApp::on(backend).serve().await;
    let admin = app.admin();
    let body = std::fs::read(fixture_path("sample.ndjson")).unwrap();
    admin
        .post("/v1/usage/batch")
        .body(body)
        .send()
        .await
        .unwrap();

    let url = "/v1/accounts/acme/invoices/2025-05";
    let json = admin.get(url).send().await.unwrap();
    assert_eq!(json.status(), StatusCode::OK);
    assert_eq!(json.headers()["content-type"], "application/json");
    let text = json.text().await.unwrap();
    assert_eq!(text, fixture("expected/acme_2025-05.json"));

    let csv = admin
        .get(url)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        csv.headers()["content-disposition"],
        "attachment; filename=\"acme-2025-05-draft.csv\"",
        "a download has a file name"
    );
    let csv_text = csv.text().await.unwrap();
    assert_eq!(csv_text, fixture("expected/acme_2025-05.csv"));
    let by_query = admin
        .get(&format!("{url}?format=csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(by_query, csv_text);

    let bad = admin
        .status_of_get("/v1/accounts/acme/invoices/2025-13")
        .await;
    assert_eq!(bad, StatusCode::BAD_REQUEST);
    let bad = admin.status_of_get(&format!("{url}?format=xml")).await;
    assert_eq!(bad, StatusCode::BAD_REQUEST);

    // Finalize: numbered, frozen, and served identically afterwards.
    let fin = admin.post(&format!("{url}/finalize")).send().await.unwrap();
    assert_eq!(fin.status(), StatusCode::OK);
    let frozen = fin.text().await.unwrap();
    let v: Value = serde_json::from_str(&frozen).unwrap();
    assert_eq!(v["status"], "finalized");
    assert!(v["number"].as_str().unwrap().starts_with("INV-2025-05-"));
    assert_eq!(admin.get_text(url).await, frozen);

    // Unpriced usage blocks finalizing unless allowed.
    let mut unknown: Value = serde_json::from_str(&fixture("seed/files_preloaded.ndjson")).unwrap();
    unknown["response"]["id"] = "msg_unknown_model".into();
    unknown["response"]["model"] = "claude-imaginary-9".into();
    unknown["response"]["container"] = Value::Null;
    unknown["recorded_at"] = "2025-07-01T00:00:00Z".into();
    unknown["started_at"] = Value::Null;
    admin
        .post("/v1/usage")
        .body(unknown.to_string())
        .send()
        .await
        .unwrap();
    let july = "/v1/accounts/acme/invoices/2025-07/finalize";
    let refused = admin.post(july).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let allowed = admin
        .post(&format!("{july}?allow_unpriced=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
}

async fn price_book_commands(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (code, out, _) = tally(&db, &["prices", "--at", "2025-06-01"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("price book version 2025-05-22"), "{out}");
    assert!(out.contains("claude-opus-4-20250514"));
    let (_, json, _) = tally(&db, &["prices", "--at", "2026-10-10", "--json"]);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["effective_from"], "2026-10-07");

    // A bad file is refused with its line, and the book in force stays.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        tally::pricing::SHIPPED.replacen("input = \"15\"", "input = 15", 1),
    )
    .unwrap();
    let (code, _, err) = tally(&db, &["prices", "import", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("line ") && err.contains("unchanged"), "{err}");
    // A good file takes over: Opus 4 input at $99.
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        tally::pricing::SHIPPED.replace("input = \"15\"", "input = \"99\""),
    )
    .unwrap();
    let (code, out, err) = tally(&db, &["prices", "import", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imported price book"));
    let (_, out, _) = tally(&db, &["prices", "--at", "2025-06-01"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("claude-opus-4-20250514") && l.contains(" 99 ")),
        "{out}"
    );
}

/// A stored price book that no longer parses is the server's fault: 500
/// `internal_error` with an opaque message (the cause goes to the log), not
/// a 503 as if the database were away.
async fn unparsable_price_book_is_an_internal_error(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db, ServeConfig::default()).await;
    // Written behind tally's back, as a hand edit or a bad restore would.
    let sql = "insert into price_books (imported_at, name, toml) values (0, 'hand-edited', 'this is [not toml')";
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    }
    let client = reqwest::Client::new();
    for (method, path) in [
        (Method::GET, "/v1/accounts/acme/invoices/2025-05"),
        (Method::POST, "/v1/accounts/acme/invoices/2025-05/finalize"),
        (Method::GET, "/v1/invoices?period=2025-05"),
    ] {
        let answer = client
            .request(method, server.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["type"], "internal_error", "{path}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(!message.contains("price book"), "{path}: {message}");
    }
    // The database itself answers.
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

/// The pool of a store opened by the test, to close it under the server.
enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

async fn open_with_pool(db: &TestDb) -> (Arc<dyn Store>, Pool) {
    match db.backend {
        Backend::Sqlite => {
            let store = SqliteStore::connect(&db.url).await.unwrap();
            store.migrate().await.unwrap();
            let pool = Pool::Sqlite(store.pool().clone());
            (Arc::new(store), pool)
        }
        Backend::Postgres => {
            let store = PostgresStore::connect(&db.url).await.unwrap();
            store.migrate().await.unwrap();
            let pool = Pool::Postgres(store.pool().clone());
            (Arc::new(store), pool)
        }
    }
}

/// Reads and writes through `server` answer 503 `storage_unavailable`.
async fn assert_unavailable(server: &TestServer) {
    let client = reqwest::Client::new();
    let record = std::fs::read_to_string(fixture_path("seed/files_preloaded.ndjson")).unwrap();
    for (method, path, body) in [
        (
            Method::GET,
            "/v1/accounts/acme/invoices/2025-05",
            String::new(),
        ),
        (Method::POST, "/v1/usage", record.clone()),
        (Method::POST, "/v1/usage/batch", record),
    ] {
        let answer = client
            .request(method, server.url(path))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["type"], "storage_unavailable", "{path}");
        assert_eq!(
            body["error"]["message"],
            "the ledger could not commit; nothing from this request was recorded, retry later"
        );
    }
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// A database that is gone answers 503 (retry later), not 500.
async fn unavailable_database_is_503(backend: Backend) {
    // Its pool closed under a running server: deterministic on both backends.
    let db = TestDb::new(backend).await;
    let (store, pool) = open_with_pool(&db).await;
    let server = TestServer::serve(store, ServeConfig::default()).await;
    let invoice = server.url("/v1/accounts/acme/invoices/2025-05");
    let client = reqwest::Client::new();
    assert_eq!(
        client.get(&invoice).send().await.unwrap().status(),
        StatusCode::OK
    );
    match pool {
        Pool::Sqlite(p) => p.close().await,
        Pool::Postgres(p) => p.close().await,
    }
    assert_unavailable(&server).await;

    if backend == Backend::Postgres {
        // The database dropped under a running server: its connections are
        // cut, and a new one finds no such database.
        let db = TestDb::new(backend).await;
        let server = TestServer::start(&db, ServeConfig::default()).await;
        let invoice = server.url("/v1/accounts/acme/invoices/2025-05");
        assert_eq!(
            client.get(&invoice).send().await.unwrap().status(),
            StatusCode::OK
        );
        let name = db.url.rsplit('/').next().unwrap();
        let admin = format!("{}/postgres", postgres_server());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "drop database {name} with (force)"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        assert_unavailable(&server).await;
    }
}

on_both_backends!(
    golden_invoices,
    http_invoice_endpoints,
    price_book_commands,
    unparsable_price_book_is_an_internal_error,
    unavailable_database_is_503,
);
