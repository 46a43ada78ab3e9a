//! `tally proxy` on loopback, against a local upstream that answers at once:
//! the latency the proxy adds (p50, p99 of sequential plain and streamed
//! calls, each read to its end, through the proxy and straight to the
//! upstream; the end of each answer through the proxy waits until its
//! record is durable: fsynced in the spool's journal), and the calls per second it passes and records with many
//! concurrent streams; then spool recovery:
//! calls made while the ledger refuses every record (a trigger) wait in the
//! spool, and the time from the ledger taking records again to the last of
//! them recorded.
//!
//! Run with `cargo bench --bench proxy`. Settings (environment):
//! `TALLY_BENCH_CALLS` (default 2000 sequential calls), `TALLY_BENCH_STREAMS`
//! (default 200 concurrent streams), `TALLY_BENCH_STREAM_CALLS` (default 20
//! calls per stream), `TALLY_BENCH_SPOOLED` (default 10000 calls spooled),
//! `TALLY_BENCH_DATABASE` (default a SQLite file).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn usage() -> Value {
    json!({"input_tokens": 1200, "output_tokens": 300})
}

/// A Messages API answer, plain or streamed, with a fresh id each time.
async fn upstream(body: axum::body::Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap();
    let id = format!("msg_bench_{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    if request["stream"] == true {
        let events = [
            json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514", "content": [], "usage": {"input_tokens": 1200, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Here is the answer you asked for."}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage()}),
            json!({"type": "message_stop"}),
        ];
        let text: String = events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
            .collect();
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from(text))
            .unwrap();
    }
    axum::Json(json!({
        "id": id, "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
        "content": [{"type": "text", "text": "Here is the answer you asked for."}],
        "stop_reason": "end_turn", "usage": usage(),
    }))
    .into_response()
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = tally::net::without_delay(listener);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One call to `base`, plain or streamed, read to its end.
async fn call(http: &reqwest::Client, base: &str, stream: bool) {
    let body = json!({"model": "claude-sonnet-4-20250514", "max_tokens": 100, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
    let answer = http
        .post(format!("{base}/v1/messages"))
        .header("x-tally-account", "bench")
        .json(&body)
        .send()
        .await
        .unwrap();
    answer.bytes().await.unwrap();
}

/// Milliseconds of `calls` sequential calls to `base`, plain or streamed,
/// each to its end, sorted.
async fn latencies(http: &reqwest::Client, base: &str, calls: u64, stream: bool) -> Vec<f64> {
    let mut out = Vec::with_capacity(calls as usize);
    for _ in 0..calls {
        let start = Instant::now();
        call(http, base, stream).await;
        out.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    out.sort_by(|a, b| a.total_cmp(b));
    out
}

#[tokio::main]
async fn main() {
    let calls = env_number("TALLY_BENCH_CALLS", 2000);
    let streams = env_number("TALLY_BENCH_STREAMS", 200);
    let per_stream = env_number("TALLY_BENCH_STREAM_CALLS", 20);
    let dir = tempfile::tempdir().unwrap();
    let database = std::env::var("TALLY_BENCH_DATABASE")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("proxy.db").display()));

    let upstream_url =
        serve(axum::Router::new().route("/v1/messages", axum::routing::post(upstream))).await;
    let store = tally::store::open(&database).await.unwrap();
    // As it is deployed: with a spool (`TALLY_BENCH_NO_SPOOL=1`: without,
    // each answer's end then waits for the ledger's commit instead).
    let mut config = tally::proxy::ProxyConfig::new(format!("{upstream_url}/").parse().unwrap());
    let main_spool = tempfile::tempdir().unwrap();
    if std::env::var_os("TALLY_BENCH_NO_SPOOL").is_none() {
        config.spool = Some(main_spool.path().to_owned());
    }
    let state = tally::proxy::ProxyState::new(store.clone(), config).unwrap();
    let proxy_url = serve(tally::proxy::router(state)).await;
    let http = reqwest::Client::new();

    // Warm both paths (connections, the database).
    latencies(&http, &upstream_url, 50, false).await;
    latencies(&http, &proxy_url, 50, false).await;
    let direct = latencies(&http, &upstream_url, calls, false).await;
    let through = latencies(&http, &proxy_url, calls, false).await;
    let direct_streamed = latencies(&http, &upstream_url, calls, true).await;
    let through_streamed = latencies(&http, &proxy_url, calls, true).await;

    // Many concurrent streams, each making calls one after another.
    let recorded_before = store.counts().await.unwrap().records;
    let start = Instant::now();
    let http = Arc::new(reqwest::Client::new());
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let (http, base) = (http.clone(), proxy_url.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_stream {
                call(&http, &base, true).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let served = start.elapsed().as_secs_f64();
    let expected = recorded_before + (streams * per_stream) as i64;
    while store.counts().await.unwrap().records < expected {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recorded = start.elapsed().as_secs_f64();
    let total = (streams * per_stream) as f64;

    let spooled = env_number("TALLY_BENCH_SPOOLED", 10_000);
    let (spooling, replay) = spool_recovery(&database, &upstream_url, store.clone(), spooled).await;

    println!("| run | p50 ms | p99 ms |");
    println!("|---|---:|---:|");
    for (kind, direct, through) in [
        ("plain", &direct, &through),
        ("streamed", &direct_streamed, &through_streamed),
    ] {
        for (name, v) in [
            ("straight to the upstream", direct),
            ("through tally proxy", through),
        ] {
            println!(
                "| {calls} sequential {kind} calls {name} | {:.3} | {:.3} |",
                percentile(v, 0.5),
                percentile(v, 0.99)
            );
        }
        println!(
            "| added by the proxy ({kind}) | {:.3} | {:.3} |",
            percentile(through, 0.5) - percentile(direct, 0.5),
            percentile(through, 0.99) - percentile(direct, 0.99)
        );
    }
    println!();
    println!(
        "{streams} concurrent streams × {per_stream} streamed calls: {:.0} calls/s served, {:.0} records/s recorded ({} records in {:.2} s)",
        total / served,
        total / recorded,
        total,
        recorded
    );
    println!();
    println!(
        "spool recovery: {spooled} calls spooled while the ledger refused them ({:.0} calls/s served meanwhile); once it took records again, all of them recorded in {replay:.2} s ({:.0} records/s)",
        spooled as f64 / spooling,
        spooled as f64 / replay
    );
}

/// Make the ledger refuse every new record (or take them again).
async fn refuse_records(database: &str, refuse: bool) {
    let sql = match (database.starts_with("postgres"), refuse) {
        (false, true) => {
            "create trigger refuse before insert on records begin select raise(abort, 'refused'); end"
        }
        (false, false) => "drop trigger refuse",
        (true, true) => {
            "create or replace function refuse() returns trigger language plpgsql as \
            $$ begin raise exception 'refused'; end $$; \
            create trigger refuse before insert on records for each row execute function refuse()"
        }
        (true, false) => "drop trigger refuse on records",
    };
    if database.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(database).await.unwrap();
        sqlx::raw_sql(sql).execute(&pool).await.unwrap();
    } else {
        let pool = sqlx::SqlitePool::connect(database).await.unwrap();
        sqlx::raw_sql(sql).execute(&pool).await.unwrap();
    }
}

/// `calls` plain calls (50 at a time) through a proxy with a spool while the
/// ledger refuses them, then the ledger back: the seconds the calls took,
/// and the seconds until the last spooled call was recorded.
async fn spool_recovery(
    database: &str,
    upstream_url: &str,
    store: Arc<dyn tally::store::Store>,
    calls: u64,
) -> (f64, f64) {
    let spool = tempfile::tempdir().unwrap();
    let mut config = tally::proxy::ProxyConfig::new(format!("{upstream_url}/").parse().unwrap());
    config.spool = Some(spool.path().to_owned());
    config.default_account = Some("bench".into());
    let state = tally::proxy::ProxyState::new(store.clone(), config).unwrap();
    let proxy_url = serve(tally::proxy::router(state)).await;
    let http = Arc::new(reqwest::Client::new());
    let before = store.counts().await.unwrap().records;
    refuse_records(database, true).await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (http, base) = (http.clone(), proxy_url.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..calls / 50 {
                call(&http, &base, false).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let spooling = start.elapsed().as_secs_f64();
    // Every call in the spool (its files' lines) before the ledger is back.
    let total = calls / 50 * 50;
    loop {
        let lines: usize = std::fs::read_dir(spool.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
            .map(|p| {
                std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .lines()
                    .count()
            })
            .sum();
        if lines as u64 >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    refuse_records(database, false).await;
    let start = Instant::now();
    while store.counts().await.unwrap().records < before + total as i64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (spooling, start.elapsed().as_secs_f64())
}
