//! The proxy's promise under crashes: every call it answered in full (a 2xx
//! whose body arrived whole) is in the ledger, once, however often the
//! proxy is killed with -9 under concurrent load, and while its ledger is
//! down or stuck.
//!
//! Deterministic: the proxy is killed after a given number of answered
//! calls, not after a time, and the ledger goes down and comes back at
//! such counts too. Sixteen callers make plain and streamed calls; a call
//! that fails (the proxy died under it) is made again as a new call, as an
//! application would, and only calls answered in full count as answered.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tally::store::{Store, UsageQuery};
use tokio::sync::watch;

use super::proxy::{
    LedgerLock, postgres_down, proxy_process, request, serve, spooled_calls, upstream_router,
};
use crate::support::{Backend, TestDb};

const CALLERS: usize = 16;

/// Calls answered in full per run (`TALLY_CRASH_CALLS`, default 600), and
/// kills spread evenly over the run (`TALLY_CRASH_KILLS`, default 5, at
/// least 3): larger runs by hand, the same test.
fn run_size() -> (usize, usize) {
    let number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    (
        number("TALLY_CRASH_CALLS", 600),
        number("TALLY_CRASH_KILLS", 5).max(3),
    )
}

/// What happens to the ledger during a run.
#[derive(Clone, Copy, PartialEq)]
enum Ledger {
    /// It answers throughout.
    Up,
    /// From the first kill to the third it refuses connections
    /// (PostgreSQL: the database stops allowing them and every session is
    /// ended) or stays locked by another writer (SQLite): the proxy is
    /// restarted into the outage and must start, serve and spool.
    Outage,
}

/// One call through the proxy at `base`: whether it was answered in full.
async fn call(http: &reqwest::Client, base: &str, id: &str, stream: bool) -> bool {
    let answer = http
        .post(format!("{base}/v1/messages"))
        .header("x-test-id", id)
        .header("anthropic-version", "2023-06-01")
        .json(&request(stream))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    let Ok(answer) = answer else { return false };
    if answer.status() != 200 {
        return false;
    }
    let Ok(body) = answer.bytes().await else {
        return false;
    };
    let text = String::from_utf8_lossy(&body);
    if stream {
        text.contains("message_stop")
    } else {
        serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v["id"] == id)
    }
}

/// The records of the whole ledger and their input tokens, counted from the
/// records or from the usage roll-up.
async fn usage_totals(store: &Arc<dyn Store>, rollup: bool) -> (i64, i64) {
    let query = UsageQuery {
        account: None,
        from: 0,
        to: i64::MAX,
        max_seq: i64::MAX,
        thresholds: Vec::new(),
        use_rollup: rollup,
        dims: Vec::new(),
    };
    let groups = store.usage_groups(&query).await.unwrap();
    groups.iter().fold((0, 0), |(n, tokens), g| {
        (n + g.records, tokens + g.usage.input_tokens)
    })
}

async fn killed_under_load(backend: Backend, ledger: Ledger) {
    let (wanted, kills) = run_size();
    let db = TestDb::migrated(backend).await;
    let store = db.store().await;
    let spool = tempfile::tempdir().unwrap();
    let upstream = format!("{}/", serve(upstream_router()).await);
    let (mut proxy, url, _) = proxy_process(&db, &upstream, spool.path(), &[]).await;
    let (publish, current) = watch::channel(url);

    // The callers: each makes calls until enough are answered in full.
    let answered = Arc::new(Mutex::new(HashSet::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::new();
    let mut callers = Vec::new();
    for caller in 0..CALLERS {
        let (http, current) = (http.clone(), current.clone());
        let (answered, count) = (answered.clone(), count.clone());
        callers.push(tokio::spawn(async move {
            let mut n = 0;
            while count.load(Ordering::Relaxed) < wanted {
                n += 1;
                let id = format!("msg_crash_{caller}_{n}");
                let base = current.borrow().clone();
                if call(&http, &base, &id, n % 2 == 0).await {
                    answered.lock().unwrap().insert(id);
                    count.fetch_add(1, Ordering::Relaxed);
                } else {
                    // The proxy is down or restarting: try again shortly.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }

    // The killer: -9 at evenly spread counts of answered calls, a new proxy
    // on the same spool at once.
    let (mut down, mut lock) = (false, None);
    for kill in 1..=kills {
        let at = kill * wanted / (kills + 1);
        while count.load(Ordering::Relaxed) < at {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        proxy.kill().unwrap(); // SIGKILL
        proxy.wait().unwrap();
        if ledger == Ledger::Outage && kill == 1 {
            lock = ledger_down(&db).await;
            down = true;
        }
        if ledger == Ledger::Outage && kill == 3 {
            // The calls answered meanwhile could only be kept in the spool.
            assert!(spooled_calls(spool.path()) > 0, "nothing was spooled");
            ledger_up(&db, lock.take()).await;
            down = false;
        }
        let (next, url, admin) = proxy_process(&db, &upstream, spool.path(), &[]).await;
        if down {
            let health: serde_json::Value = http
                .get(format!("{admin}/healthz"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if backend == Backend::Postgres {
                // It could not open its ledger, and serves all the same.
                assert_eq!(health["status"], "degraded", "{health}");
            }
        }
        proxy = next;
        publish.send(url).unwrap();
    }
    for caller in callers {
        caller.await.unwrap();
    }

    // Whatever waits in the spool reaches the ledger.
    for _ in 0..3000 {
        if spooled_calls(spool.path()) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(spooled_calls(spool.path()), 0, "calls left in the spool");
    proxy.kill().unwrap();
    proxy.wait().unwrap();

    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() >= wanted);
    let mut missing: Vec<&String> = Vec::new();
    for id in &answered {
        if store.record(id).await.unwrap().is_none() {
            missing.push(id);
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "{} of {} calls answered in full are not in the ledger: {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(10)]
    );
    // Once: the roll-up (what invoices read) counts each record once, so a
    // batch replayed twice, or both committed and spooled, is not doubled.
    let counts = store.counts().await.unwrap();
    let from_records = usage_totals(&store, false).await;
    let rolled_up = usage_totals(&store, true).await;
    assert_eq!(from_records.0, counts.records);
    assert_eq!(rolled_up, from_records, "the roll-up counts records twice");
    // Calls whose callers never got the end (the proxy died under them)
    // may be recorded too, when their record was durable: never more.
    assert!(counts.records >= answered.len() as i64);
    assert_eq!(
        counts.rejected_open,
        0,
        "{:?}",
        store.rejected_list(true, 5).await
    );
    // For runs by hand (`--nocapture`): the figures behind the verdict.
    eprintln!(
        "crash run: {} answered in full, {} recorded (calls left unanswered included), 0 lost, 0 doubled",
        answered.len(),
        counts.records
    );
}

/// The ledger down: PostgreSQL refuses connections to this database;
/// SQLite's write lock is held by another connection. By hand,
/// `TALLY_CRASH_STOP_POSTGRES=1` stops the whole PostgreSQL server instead
/// (never in the suite: other tests share it).
async fn ledger_down(db: &TestDb) -> Option<LedgerLock> {
    match db.backend {
        Backend::Postgres if stop_the_server() => {
            postgres_server_running(false);
            None
        }
        Backend::Postgres => {
            postgres_down(db, true).await;
            None
        }
        Backend::Sqlite => Some(LedgerLock::take(db).await),
    }
}

fn stop_the_server() -> bool {
    std::env::var_os("TALLY_CRASH_STOP_POSTGRES").is_some_and(|v| v == "1")
}

/// `pg_ctlcluster` on every cluster of this machine.
fn postgres_server_running(running: bool) {
    let versions = std::fs::read_dir("/etc/postgresql").unwrap();
    for version in versions {
        let version = version.unwrap().file_name();
        let mut command = std::process::Command::new("pg_ctlcluster");
        command
            .arg("--skip-systemctl-redirect")
            .arg(&version)
            .arg("main");
        if running {
            command.arg("start");
        } else {
            command.args(["stop", "-m", "immediate"]);
        }
        assert!(command.status().unwrap().success());
    }
}

async fn ledger_up(db: &TestDb, lock: Option<LedgerLock>) {
    if db.backend == Backend::Postgres && stop_the_server() {
        postgres_server_running(true);
    } else if db.backend == Backend::Postgres {
        postgres_down(db, false).await;
    }
    if let Some(lock) = lock {
        lock.release().await;
    }
}

async fn killed_again_and_again(backend: Backend) {
    killed_under_load(backend, Ledger::Up).await;
}

async fn killed_while_the_ledger_is_down(backend: Backend) {
    killed_under_load(backend, Ledger::Outage).await;
}

on_both_backends!(killed_again_and_again, killed_while_the_ledger_is_down);
