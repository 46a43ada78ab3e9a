//! The `tally` binary, run as an operator runs it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

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

/// A `tally serve` process on a loopback port, killed when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub base: String,
}

impl ServerProcess {
    pub fn start(db: &TestDb) -> ServerProcess {
        Self::start_with(db, |_| {})
    }

    /// [`ServerProcess::start`], the command changed first by `change`.
    pub fn start_with(db: &TestDb, change: impl FnOnce(&mut Command)) -> ServerProcess {
        let mut command = tally_command(db, &["serve", "--listen", "127.0.0.1:0"]);
        change(&mut command);
        let mut child = command
            .env_remove("TALLY_ADMIN_TOKEN")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            if let Some(at) = line.find("listening on ") {
                break line[at + "listening on ".len()..].trim().to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ServerProcess { child, base }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
