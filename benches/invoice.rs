//! Invoice generation time on large ledgers, on SQLite and PostgreSQL:
//! one account's invoice over 1,000,000 records, and every account's invoice
//! for a month of 5,000,000 records; then that month's daily costs (what the
//! dashboard and the cost report read) unsplit and split by a tag; then
//! `GET /v1/accounts/{account}/balance` over HTTP on that ledger (an
//! account with a plan and a prepaid grant from the month), p50 and p99.
//!
//! Run with `cargo bench --bench invoice`. Settings (environment):
//! `TALLY_BENCH_ONE` (default 1000000), `TALLY_BENCH_MONTH` (default 5000000),
//! `TALLY_BENCH_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`),
//! `TALLY_BENCH_BACKENDS` (default `sqlite,postgres`).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use sqlx::Connection;
use tally::billing::{self, Period};
use tally::ingest::ChunkBuilder;
use tally::ingest::pipeline::OrderedCommitter;
use tally::pricing::PriceBook;
use tally::record::{Defaults, Dimension};
use tally::store::{self, Store};

async fn fill(store: &Arc<dyn Store>, n: u64, accounts: u64) -> f64 {
    let before = store.counts().await.unwrap().records;
    let start = Instant::now();
    let mut committer = OrderedCommitter::new(store.clone());
    let mut done = |_, _, _| {};
    // Received now: a record more than a day after its receipt is refused.
    let received = tally::time::now_micros();
    let mut builder = ChunkBuilder::new("bench", Defaults::default(), received)
        .with_chunk_lines(store.chunk_lines());
    for (i, v) in tally::synth::Generator::new(n, 42, accounts).enumerate() {
        builder.push_line(i as u64 + 1, v.to_string().as_bytes());
        if builder.is_full() {
            committer
                .submit(builder.take(), 0, &mut done)
                .await
                .unwrap();
        }
    }
    committer
        .submit(builder.take(), 0, &mut done)
        .await
        .unwrap();
    committer.finish(&mut done).await.unwrap();
    let seconds = start.elapsed().as_secs_f64();
    // A bench over records the ledger refused would time an empty ledger.
    let stored = store.counts().await.unwrap().records - before;
    assert_eq!(stored, n as i64, "the ledger refused generated records");
    seconds
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn database(backend: &str, pg: &str, dir: &std::path::Path, name: &str) -> String {
    match backend {
        "sqlite" => format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
        _ => {
            let db = format!("tally_bench_{name}_{}", std::process::id());
            let mut conn = sqlx::PgConnection::connect(&format!("{pg}/postgres"))
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "drop database if exists {db} with (force)"
            )))
            .execute(&mut conn)
            .await
            .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database {db}")))
                .execute(&mut conn)
                .await
                .unwrap();
            format!("{pg}/{db}")
        }
    }
}

async fn drop_pg(url: &str, pg: &str) {
    if let Some(name) = url.strip_prefix(&format!("{pg}/")) {
        let mut conn = sqlx::PgConnection::connect(&format!("{pg}/postgres"))
            .await
            .unwrap();
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "drop database if exists {name} with (force)"
        )))
        .execute(&mut conn)
        .await;
    }
}

/// Give `team-00` a plan and a grant dated 2026-03-01 (the bench month),
/// serve the HTTP API on loopback, and time its balance answers: the first
/// (it computes the months since the grant), then 2,000 in a row.
async fn balance_latency(backend: &str, store: &Arc<dyn Store>, url: &str) -> String {
    store
        .set_plan(
            "team-00",
            "[[version]]\neffective_from = \"2026-01-01\"\nmarkup_percent = \"20\"\n",
        )
        .await
        .unwrap();
    let grant = store
        .grant_credit("team-00", "100000".parse().unwrap(), None, Some("bench"))
        .await
        .unwrap();
    let backdate = format!(
        "update credit_grants set granted_at = 1772323200000000 where id = {}",
        grant.id
    );
    if backend == "sqlite" {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(backdate))
            .execute(&pool)
            .await
            .unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(backdate))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let state = tally::http::AppState::new(
        tally::ledger::Ledger::start(store.clone()),
        tally::http::ServeConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, tally::http::router(state))
            .await
            .unwrap()
    });
    let client = reqwest::Client::new();
    let path = format!("http://{addr}/v1/accounts/team-00/balance");
    let get = || async {
        let t = Instant::now();
        let r = client.get(&path).send().await.unwrap();
        assert!(r.status().is_success());
        let body: serde_json::Value = r.json().await.unwrap();
        (t.elapsed().as_secs_f64() * 1000.0, body)
    };
    let (first, body) = get().await;
    let mut times = Vec::with_capacity(2000);
    for _ in 0..2000 {
        times.push(get().await.0);
    }
    server.abort();
    times.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    eprintln!("{backend}: balance {body}");
    format!(
        "| {backend} | GET …/balance (plan, a grant since 2026-03), p50 / p99 of 2,000 | {:.2} / {:.2} ms | first {first:.0} ms |",
        at(0.5),
        at(0.99)
    )
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let one = env("TALLY_BENCH_ONE", 1_000_000);
    let month = env("TALLY_BENCH_MONTH", 5_000_000);
    let pg = std::env::var("TALLY_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let backends =
        std::env::var("TALLY_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let book = PriceBook::shipped();
    let period = Period::parse("2026-03").unwrap();
    let mut rows = Vec::new();

    rt.block_on(async {
        for backend in backends.split(',') {
            let url = database(backend, &pg, dir.path(), "one").await;
            let store = store::open(&url).await.unwrap();
            let fill_s = fill(&store, one, 1).await;
            eprintln!("{backend}: {one} records for one account ingested in {fill_s:.0} s");
            let mut times = Vec::new();
            let mut total = String::new();
            for _ in 0..3 {
                let t = Instant::now();
                let inv = billing::draft_invoice(store.as_ref(), &book, "team-00", period)
                    .await
                    .unwrap();
                times.push(t.elapsed().as_secs_f64());
                total = inv.total.to_string();
            }
            rows.push(format!(
                "| {backend} | one account, {one} records | {:.3} s | total ${total} |",
                median(times)
            ));
            drop(store);
            drop_pg(&url, &pg).await;

            let url = database(backend, &pg, dir.path(), "month").await;
            let store = store::open(&url).await.unwrap();
            let fill_s = fill(&store, month, 12).await;
            eprintln!("{backend}: {month} records for 12 accounts ingested in {fill_s:.0} s");
            // As `tally ingest` does after a bulk load.
            let t = Instant::now();
            store.compact_rollups().await.unwrap();
            let compact_s = t.elapsed().as_secs_f64();
            eprintln!("{backend}: roll-up shards folded in {compact_s:.1} s");
            rows.push(format!(
                "| {backend} | bulk load of {month} records, then folding the roll-up shards | {fill_s:.0} s + {compact_s:.1} s | |"
            ));
            let mut times = Vec::new();
            let mut n = 0;
            for _ in 0..3 {
                let t = Instant::now();
                let all = billing::draft_invoices(store.as_ref(), &book, period)
                    .await
                    .unwrap();
                times.push(t.elapsed().as_secs_f64());
                n = all.len();
            }
            rows.push(format!(
                "| {backend} | all {n} accounts, {month} records | {:.3} s | |",
                median(times)
            ));
            // The month's costs as the cost report computes them on a first
            // request: unsplit, and split by the tag `project` (from the
            // dimension roll-up; container time from the container records).
            for (name, dims) in [
                ("daily costs", vec![]),
                (
                    "daily costs by tag:project",
                    vec![Dimension::Tag("project".into())],
                ),
            ] {
                let mut times = Vec::new();
                for _ in 0..3 {
                    let t = Instant::now();
                    billing::daily::period_costs(store.as_ref(), &book, period, None, &dims)
                        .await
                        .unwrap();
                    times.push(t.elapsed().as_secs_f64());
                }
                rows.push(format!(
                    "| {backend} | {name}, all accounts, {month} records | {:.3} s | first {:.3} s |",
                    median(times.clone()),
                    times[0]
                ));
            }
            rows.push(balance_latency(backend, &store, &url).await);
            drop(store);
            drop_pg(&url, &pg).await;
        }
    });
    println!("| backend | invoices | time (median of 3) | |");
    println!("|---|---|---:|---|");
    for r in rows {
        println!("{r}");
    }
}
