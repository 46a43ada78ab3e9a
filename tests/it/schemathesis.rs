//! `GET /openapi.json` against the live server, checked by schemathesis
//! (installed by `.ci/run` in `target/ci-python`): a real server on a
//! SQLite file, with an admin token, and every documented operation called
//! with requests generated from the document (its examples, the boundaries
//! of its constraints, then random ones, schema-valid and not).
//!
//! It fails, with schemathesis's report, on any of:
//! - a 5xx (`not_a_server_error`);
//! - a status or a content type the document does not list for the
//!   operation (`status_code_conformance`, `content_type_conformance`);
//! - a JSON answer that breaks its schema (`response_schema_conformance`);
//! - a schema-valid request refused with a 4xx other than 401, 403, 404 or
//!   409 (`positive_data_acceptance`): the document states every
//!   constraint the server enforces. The rules no JSON Schema can state
//!   (two values against each other) are in the document's descriptions,
//!   and `schemathesis/hooks.py` excuses exactly those refusals;
//! - a request the schema forbids that is accepted
//!   (`negative_data_rejection`): an array, `null` or a number where the
//!   document says object or string, a value off its pattern, an unknown
//!   field, a missing one. The hooks excuse only a text body (NDJSON, TOML)
//!   generated as another type, which reaches the server as text all the same;
//! - and every other check schemathesis has (`--checks all`), in every phase,
//!   the stateful one included (requests chained through the links between
//!   operations).
//!
//! No operation makes the server call out: the alert webhook is a server
//! setting (none here), not a request's.
//!
//! `TALLY_SCHEMATHESIS_SEED` runs it with another seed (the default one
//! keeps CI repeatable); `TALLY_TEST_SCHEMATHESIS` names another
//! schemathesis executable.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Backend, TestApp};

const TOKEN: &str = "schemathesis-admin-token";

/// Examples per operation and phase: the run stays near a minute.
const MAX_EXAMPLES: &str = "20";

/// The seed of CI's runs.
const SEED: &str = "20251207";

/// The whole run is stopped (and fails) past this.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// The schemathesis CLI (`.ci/run` installs it in `target/ci-python`).
fn schemathesis() -> PathBuf {
    let bin = std::env::var_os("TALLY_TEST_SCHEMATHESIS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-python/bin/schemathesis"),
        PathBuf::from,
    );
    assert!(
        bin.exists(),
        "the OpenAPI test needs schemathesis at {} (set TALLY_TEST_SCHEMATHESIS, or run .ci/run)",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_holds_against_the_server() {
    let bin = schemathesis();
    let app = TestApp::on(Backend::Sqlite)
        .admin_token(TOKEN)
        .serve()
        .await;
    assert!(app.config().alert_webhook.is_none(), "nothing may call out");
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/schemathesis");
    // Its working directory: nothing it writes lands in the repository.
    let scratch = tempfile::tempdir().unwrap();
    let seed = std::env::var("TALLY_SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.to_owned());
    let mut command = std::process::Command::new(&bin);
    command
        .arg("run")
        .arg(app.url("/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", &seed])
        .args(["--suppress-health-check", "all"])
        .args(["--request-timeout", "10"])
        .args(["--generation-database", "none"])
        .args(["--continue-on-failure", "--no-color"])
        .args(["--output-sanitize", "false"])
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", &hooks)
        .current_dir(scratch.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    // Off the server's workers: the server answers while this waits.
    let out = tokio::task::spawn_blocking(move || run_bounded(command, RUN_LIMIT))
        .await
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis (seed {seed}) found the document and the server disagree:\n{report}"
    );
    // A run that tested nothing would pass too: make sure it did not.
    assert!(
        report.contains("passed") && !report.contains("Tested: 0"),
        "{report}"
    );
    eprintln!(
        "schemathesis: {:.0?} (seed {seed})\n{}",
        started.elapsed(),
        report.lines().rev().take(3).collect::<Vec<_>>().join("\n")
    );
}

/// Run `command` to its end, killing it (and failing) past `limit`. Its
/// output is read as it comes, so a long report cannot fill a pipe.
fn run_bounded(mut command: std::process::Command, limit: Duration) -> std::process::Output {
    use std::io::Read;
    let mut child = command.spawn().unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "schemathesis ran over {limit:?}; its output so far:\n{}",
                String::from_utf8_lossy(&stdout.join().unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}
