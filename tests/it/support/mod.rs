//! Test support: a fresh database per test on either backend, a real HTTP
//! server on a loopback port, and fixture loading.
//!
//! PostgreSQL is required, never skipped: the server named by
//! `TALLY_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`) must
//! answer, or the PostgreSQL half of the suite fails loudly.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Connection;
use tally::http::{AppState, ServeConfig};
use tally::ledger::Ledger;
use tally::store::{self, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn postgres_server() -> String {
    std::env::var("TALLY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A fresh, empty database that disappears when dropped.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("tally.db").display());
                TestDb {
                    url,
                    backend,
                    _dir: Some(dir),
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                let name = format!(
                    "tally_t_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    chrono::Utc::now().timestamp_micros() % 1_000_000
                );
                let admin = format!("{}/postgres", postgres_server());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("PostgreSQL must be running for the test suite ({admin}): {e}")
                    });
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let url = format!("{}/{name}", postgres_server());
                TestDb {
                    url,
                    backend,
                    _dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }

    pub async fn store(&self) -> Arc<dyn Store> {
        store::open(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let admin = format!("{}/postgres", postgres_server());
        // Drop runs outside any runtime guarantee: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "drop database if exists {name} with (force)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// A tally HTTP server on a loopback port, stopped when dropped.
pub struct TestServer {
    pub base: String,
    pub store: Arc<dyn Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    /// GET `path` with a bearer key: the body as text, whatever the status.
    pub async fn get_text(&self, path: &str, key: &str) -> String {
        reqwest::Client::new()
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn start(db: &TestDb, config: ServeConfig) -> TestServer {
        let store = db.store().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AppState::new(Ledger::start(store.clone()), config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            tally::http::serve(listener, state, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            base: format!("http://{addr}"),
            store,
            stop: Some(stop),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Run the `tally` binary on `db`: (exit code, stdout, stderr).
pub fn tally(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("--database")
        .arg(&db.url)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("TALLY_ALERT_WEBHOOK")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Create an account key with the CLI, as an operator would; returns the
/// key (printed alone on the last line).
pub fn create_key(db: &TestDb, account: &str) -> String {
    let (code, out, err) = tally(db, &["keys", "create", "--account", account]);
    assert_eq!(code, 0, "{err}");
    out.lines().last().unwrap().to_owned()
}

pub fn fixture_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

pub fn fixture(rel: &str) -> String {
    std::fs::read_to_string(fixture_path(rel)).unwrap()
}

/// Generate every test of a suite twice: once on SQLite, once on PostgreSQL.
/// Each listed function must be `async fn name(backend: Backend)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

/// Proptest's settings for this binary: `cases` cases, and failures kept in
/// `<module>.proptest-regressions` beside the module's file. (Proptest's
/// default looks for the nearest `main.rs` and would write them to
/// `tests/proptest-regressions/<module>.txt` instead.)
pub fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..proptest::test_runner::Config::default()
    }
}
