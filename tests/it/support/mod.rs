//! Test support: a fresh database per test on either backend, a real HTTP
//! server on a loopback port ([`TestApp`]), the `tally` binary, and fixture
//! loading.
//!
//! PostgreSQL is required, never skipped: the server named by
//! `TALLY_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`) must
//! answer, or the PostgreSQL half of the suite fails loudly.

mod app;
mod cli;
mod db;

use std::path::{Path, PathBuf};

pub use app::{Api, TestApp, TestAppBuilder, TestServer};
pub use cli::{ServerProcess, create_key, tally, tally_bin, tally_command, tally_ok, tally_output};
pub use db::{Backend, TestDb, postgres_server};

pub fn fixture_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

pub fn fixture(rel: &str) -> String {
    std::fs::read_to_string(fixture_path(rel)).unwrap()
}

/// [`fixture_path`] as a string, for command lines.
pub fn fixture_arg(rel: &str) -> String {
    fixture_path(rel).display().to_string()
}

/// Write `text` to `name` in `dir`: the file's path, for command lines.
pub fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Proptest's settings for this binary: `cases` cases, and failures kept in
/// `<module>.proptest-regressions` beside the module's file. (Proptest's
/// default looks up the nearest `main.rs` and would keep them in
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

/// The whole ledger, from the roll-ups (`rollup`) or from the records.
pub fn whole_ledger(rollup: bool) -> tally::billing::Cutoff {
    let end = i64::MAX;
    if rollup {
        tally::billing::Cutoff::Now(end)
    } else {
        tally::billing::Cutoff::AsOf(end)
    }
}
