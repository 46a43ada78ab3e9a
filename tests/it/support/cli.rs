//! The `tally` binary, run as an operator runs it.

use std::process::{Command, Output};

use super::TestDb;

/// The `tally` binary built for this test run, with nothing set.
pub fn tally_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tally"))
}

/// `tally --database <db> <args>`, with no database or webhook taken from
/// the environment the tests run in.
pub fn tally_command(db: &TestDb, args: &[&str]) -> Command {
    let mut command = tally_bin();
    command
        .arg("--database")
        .arg(&db.url)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("TALLY_ALERT_WEBHOOK");
    command
}

/// Run the `tally` binary on `db`: its exit status and output as they are.
pub fn tally_output(db: &TestDb, args: &[&str]) -> Output {
    tally_command(db, args).output().unwrap()
}

/// Run the `tally` binary on `db`: (exit code, stdout, stderr).
pub fn tally(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    let out = tally_output(db, args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Run the `tally` binary on `db`, which must succeed: its stdout.
pub fn tally_ok(db: &TestDb, args: &[&str]) -> String {
    let (code, out, err) = tally(db, args);
    assert_eq!(code, 0, "tally {args:?}: {err}");
    out
}

/// Create an account key with the CLI, as an operator would; returns the
/// key (printed alone on the last line).
pub fn create_key(db: &TestDb, account: &str) -> String {
    let (code, out, err) = tally(db, &["keys", "create", "--account", account]);
    assert_eq!(code, 0, "{err}");
    out.lines().last().unwrap().to_owned()
}
