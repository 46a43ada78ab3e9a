//! The `tally` binary as a user runs it: ingest, summaries, exit codes, the
//! rejected store, migrations; on both backends.

use std::io::Write;
use std::process::{Output, Stdio};

use crate::support::{
    Backend, TestDb, fixture, fixture_arg, fixture_path, tally_bin, tally_command, tally_output,
};
use serde_json::Value;

fn tally_stdin(db: &TestDb, args: &[&str], input: &[u8]) -> Output {
    let mut child = tally_command(db, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn json_out(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

async fn ingest_summary_and_exit_codes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let out = tally_output(&db, &["ingest", "--json", &fixture_arg("sample.ndjson")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = json_out(&out);
    assert_eq!(
        (s["accepted"].as_u64(), s["duplicates"].as_u64()),
        (Some(10), Some(0))
    );
    assert_eq!(s["rejected_lines"], serde_json::json!([]));

    // Again: all duplicates, still success.
    let out = tally_output(&db, &["ingest", "--json", &fixture_arg("sample.ndjson")]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json_out(&out)["duplicates"], 10);

    // A file with one bad line among good ones: good lines kept, exit 1.
    let mixed = tempfile::NamedTempFile::new().unwrap();
    let text = [
        fixture("seed/files_preloaded.ndjson"),
        fixture("seed/trailing_comma.ndjson"),
        fixture("streamed.ndjson"),
    ]
    .concat();
    std::fs::write(
        mixed.path(),
        text.replace("msg_01FilesPreloadedNoToolRun0001", "msg_new"),
    )
    .unwrap();
    let out = tally_output(&db, &["ingest", "--json", mixed.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let s = json_out(&out);
    assert_eq!(
        (
            s["accepted"].as_u64(),
            s["duplicates"].as_u64(),
            s["rejected"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(s["rejected_lines"], serde_json::json!([2]));
    assert!(
        s["problems"][0]["error"]
            .as_str()
            .unwrap()
            .contains("line 2, column 1264")
    );

    // The human summary names the line and how to look at it.
    let out = tally_output(&db, &["ingest", &fixture_arg("seed/trailing_comma.ndjson")]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("accepted 0, duplicates 0, conflicts 0, rejected 1"),
        "{text}"
    );
    assert!(
        text.contains("line 1, column 1264: invalid JSON: trailing comma"),
        "{text}"
    );
    assert!(text.contains("tally rejected show"), "{text}");
}

async fn ingest_reads_stdin_with_account_and_time_defaults(backend: Backend) {
    let db = TestDb::new(backend).await;
    let results = fixture("batch_results.ndjson").into_bytes();
    let out = tally_stdin(&db, &["ingest", "--json", "-"], &results);
    assert_eq!(
        out.status.code(),
        Some(1),
        "no account anywhere: every line rejected"
    );
    assert_eq!(json_out(&out)["rejected"], 5);

    let out = tally_stdin(
        &db,
        &[
            "ingest",
            "--json",
            "--account",
            "acme",
            "--recorded-at",
            "2025-06-01T12:00:00Z",
            "-",
        ],
        &results,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_out(&out)["accepted"], 5);
    let store = db.store().await;
    let r = store
        .record("msg_01BatchResult000000000000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.account.as_str(), r.recorded_at),
        ("acme", 1_748_779_200_000_000)
    );

    let out = tally_output(
        &db,
        &[
            "ingest",
            "--account",
            "not ok!",
            &fixture_arg("sample.ndjson"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--account"));
    let out = tally_output(&db, &["ingest", "/no/such/file.ndjson"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/file.ndjson"));
}

async fn rejected_list_show_and_retry(backend: Backend) {
    let db = TestDb::new(backend).await;
    let results = fixture_arg("batch_results.ndjson");
    tally_output(
        &db,
        &[
            "ingest",
            &results,
            &fixture_arg("seed/bare_tool_result.ndjson"),
        ],
    );

    let out = tally_output(&db, &["rejected", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let list = json_out(&out);
    let entries = list.as_array().unwrap();
    assert_eq!(entries.len(), 6);
    for e in entries {
        for key in ["id", "time", "error", "raw"] {
            assert!(!e[key].is_null(), "{key} missing in {e}");
        }
    }
    let first_result = entries
        .iter()
        .find(|e| e["raw"].as_str().unwrap().contains("my-first-request"))
        .unwrap();
    let id = first_result["id"].as_i64().unwrap().to_string();
    assert!(
        first_result["error"]
            .as_str()
            .unwrap()
            .contains("field `account`")
    );

    let out = tally_output(&db, &["rejected", "show", &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("my-first-request") && text.contains("field `account`"),
        "{text}"
    );

    // Retrying without an account fails again and changes nothing.
    let out = tally_output(&db, &["rejected", "retry", &id]);
    assert_eq!(out.status.code(), Some(1));
    // With the account it lacked, it is recorded and leaves the open list.
    let out = tally_output(&db, &["rejected", "retry", &id, "--account", "acme"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("recorded msg_01BatchResult000000000000001")
    );
    let open = json_out(&tally_output(&db, &["rejected", "list", "--json"]));
    assert_eq!(open.as_array().unwrap().len(), 5);
    let all = json_out(&tally_output(&db, &["rejected", "list", "--json", "--all"]));
    assert_eq!(all.as_array().unwrap().len(), 6);
    // A second retry finds the duplicate.
    let out = tally_output(&db, &["rejected", "retry", &id, "--account", "acme"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("duplicate"));

    let out = tally_output(&db, &["rejected", "show", "999999"]);
    assert_eq!(out.status.code(), Some(1));
}

async fn migrate_is_idempotent(backend: Backend) {
    let db = TestDb::new(backend).await;
    for _ in 0..2 {
        let out = tally_output(&db, &["migrate"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A line past the per-line cap (`--max-body-bytes`, here 16 MiB) is one
/// rejected line naming its number, in a file and on standard input alike;
/// the lines around it are recorded.
async fn ingest_rejects_an_overlong_line_and_keeps_the_rest(backend: Backend) {
    const CAP: usize = 16 << 20;
    let db = TestDb::new(backend).await;
    let sample = std::fs::read_to_string(fixture_path("sample.ndjson")).unwrap();
    let (first, rest) = sample.split_once('\n').unwrap();
    let long = format!("{{\"pad\":\"{}\"}}", "x".repeat(CAP));
    let input = format!("{first}\n{long}\n{rest}");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &input).unwrap();
    let name = file.path().to_str().unwrap();

    let cap = CAP.to_string();
    let out = tally_output(&db, &["ingest", "--json", "--max-body-bytes", &cap, name]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = json_out(&out);
    assert_eq!(
        (s["accepted"].as_u64(), s["rejected"].as_u64()),
        (Some(10), Some(1)),
        "{s}"
    );
    assert_eq!(s["rejected_lines"], serde_json::json!([2]));
    let error = s["problems"][0]["error"].as_str().unwrap();
    assert_eq!(
        error,
        format!(
            "line 2: line is longer than {CAP} bytes (the per-record limit); its first 65536 bytes are kept"
        )
    );

    // Only the head of the line is stored.
    let list = json_out(&tally_output(&db, &["rejected", "list", "--json"]));
    let entries = list.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["source"], name);
    assert!(entries[0]["raw"].as_str().unwrap().len() <= 65536);

    // The same from standard input: the good lines are duplicates now.
    let out = tally_stdin(
        &db,
        &["ingest", "--json", "--max-body-bytes", &cap, "-"],
        input.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(1));
    let s = json_out(&out);
    assert_eq!(
        (s["duplicates"].as_u64(), s["rejected"].as_u64()),
        (Some(10), Some(1)),
        "{s}"
    );
    assert_eq!(s["rejected_lines"], serde_json::json!([2]));
    assert!(
        s["problems"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with("line 2: line is longer than"),
        "{s}"
    );
}

on_both_backends!(
    ingest_summary_and_exit_codes,
    ingest_reads_stdin_with_account_and_time_defaults,
    rejected_list_show_and_retry,
    migrate_is_idempotent,
    ingest_rejects_an_overlong_line_and_keeps_the_rest,
);

#[test]
fn default_database_is_a_sqlite_file_created_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let out = tally_bin()
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .args(["ingest", "--json", &fixture_arg("sample.ndjson")])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("tally.db").exists());
}

#[test]
fn serve_refuses_a_public_address_without_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = tally_bin()
        .current_dir(dir.path())
        .env_remove("TALLY_ADMIN_TOKEN")
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TALLY_ADMIN_TOKEN"));
}

#[test]
fn gen_usage_is_deterministic_and_ingestible() {
    let a = tally_bin()
        .args(["gen-usage", "--records", "300", "--seed", "9"])
        .output()
        .unwrap();
    let b = tally_bin()
        .args(["gen-usage", "--records", "300", "--seed", "9"])
        .output()
        .unwrap();
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(a.stdout.iter().filter(|&&c| c == b'\n').count(), 300);
}

/// Chunks of one file may commit concurrently (PostgreSQL), yet the first
/// occurrence of an id still stands, and the first account to use a
/// container still owns it.
async fn first_occurrence_stands_across_concurrent_chunks(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut text = Vec::new();
    tally::synth::write_ndjson(&mut text, 12_000, 5).unwrap();
    let mut lines: Vec<String> = String::from_utf8(text)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let seed: Value = serde_json::from_str(&fixture("seed/code_execution.ndjson")).unwrap();
    // Line 1: the seed record. Line 5000 (a later chunk): the same response,
    // received again later. Line 5001: acme's container under another account.
    let mut retry = seed.clone();
    retry["recorded_at"] = "2025-05-24T00:00:00Z".into();
    let mut thief = seed.clone();
    thief["account"] = "globex".into();
    thief["response"]["id"] = "msg_thief".into();
    lines.insert(0, seed.to_string());
    lines[4999] = retry.to_string();
    lines[5000] = thief.to_string();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), lines.join("\n")).unwrap();

    let out = tally_output(&db, &["ingest", "--json", file.path().to_str().unwrap()]);
    let s = json_out(&out);
    assert_eq!(s["duplicates"], 1, "{s}");
    assert_eq!(s["conflict_lines"], serde_json::json!([5001]), "{s}");
    let store = db.store().await;
    let r = store
        .record("msg_01BqK2v4FnRs4xTjgL8EuZxz")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        r.recorded_at, 1_748_031_211_000_000,
        "the first envelope stands"
    );
    assert!(store.record("msg_thief").await.unwrap().is_none());
    if backend == Backend::Postgres {
        // A run of 10,000 records or more ends by folding the roll-ups'
        // writer shards (SQLite has one shard to begin with).
        assert_ne!(
            db.texts("select cast(count(*) as text) from usage_rollup")
                .await,
            ["0"]
        );
        for table in [
            "usage_rollup",
            "usage_dim_rollup",
            "container_days",
            "container_dim_days",
        ] {
            let unfolded = format!("select cast(count(*) as text) from {table} where shard <> -1");
            assert_eq!(db.texts(&unfolded).await, ["0"], "{table}");
        }
    }
}

mod ordering {
    use super::*;
    on_both_backends!(first_occurrence_stands_across_concurrent_chunks);
}

/// `gen-usage --profile code-execution --shuffle`: about a third of the
/// records in containers, most containers reused, some with files preloaded,
/// out of time order, the same file for the same seed; and a model only on
/// dates the shipped price book prices it.
#[test]
fn gen_usage_code_execution_profile_shuffled() {
    let gen_args = |extra: &[&str]| {
        let out = tally_bin()
            .args(["gen-usage", "--records", "3000", "--seed", "4"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let shuffled = gen_args(&["--profile", "code-execution", "--shuffle"]);
    assert_eq!(
        shuffled,
        gen_args(&["--profile", "code-execution", "--shuffle"])
    );
    let book = tally::pricing::PriceBook::shipped();
    let mut containers: std::collections::HashMap<String, usize> = Default::default();
    let (mut preloads, mut times) = (0, Vec::new());
    for line in shuffled.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let message = if v["events"].is_array() {
            &v["events"][0]["message"]
        } else if v["result"].is_object() {
            &v["result"]["message"]
        } else {
            &v["response"]
        };
        let at = v["recorded_at"].as_str().unwrap().to_owned();
        if let Some(model) = message["model"].as_str() {
            let date = chrono::DateTime::parse_from_rfc3339(&at)
                .unwrap()
                .date_naive();
            let version = book.version_at(date).unwrap();
            assert!(
                version.model(model).is_some(),
                "{model} is not priced on {date}"
            );
        }
        if line.contains("\"container\":{") {
            let id = line.split("\"id\":\"container_").nth(1).unwrap()[..20].to_owned();
            *containers.entry(id).or_default() += 1;
        }
        preloads += usize::from(line.contains("container_upload"));
        times.push(at);
    }
    let in_containers: usize = containers.values().sum();
    assert!(
        (800..1300).contains(&in_containers),
        "{in_containers} of 3000 in containers"
    );
    assert!(
        containers.values().filter(|&&n| n > 1).count() * 4 > containers.len(),
        "reused"
    );
    assert!(preloads > 30, "{preloads} with files preloaded");
    let mut sorted = times.clone();
    sorted.sort();
    assert_ne!(times, sorted, "shuffled");
}

/// A shuffled code-execution backfill through the CLI (on PostgreSQL with
/// several chunks in flight that share containers): every container stays
/// exact, and the container roll-up bills what the records bill.
async fn code_execution_backfill_rolls_up_exactly(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut text = Vec::new();
    let options = tally::synth::Options {
        profile: tally::synth::Profile::CodeExecution,
        shuffle: true,
    };
    tally::synth::write_ndjson_with(&mut text, 12_000, 8, options).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &text).unwrap();
    let out = tally_output(&db, &["ingest", "--json", file.path().to_str().unwrap()]);
    assert_eq!(json_out(&out)["accepted"], 12_000);

    let store = db.store().await;
    let book = tally::pricing::PriceBook::shipped();
    let period = tally::billing::Period::parse("2026-03").unwrap();
    let bill = |rollup| {
        tally::billing::container_bill(
            store.as_ref(),
            &book,
            period,
            crate::support::whole_ledger(rollup),
        )
    };
    let (rolled, records) = (bill(true).await.unwrap(), bill(false).await.unwrap());
    assert!(
        rolled.containers.len() > 100,
        "{} account-days",
        rolled.containers.len()
    );
    assert_eq!(rolled.containers, records.containers);
    assert_eq!(rolled.credits, records.credits);
    let inexact = store
        .inexact_container_records(i64::MIN, i64::MAX, &[])
        .await
        .unwrap();
    assert!(
        inexact.is_empty(),
        "{} records of inexact containers",
        inexact.len()
    );
}

mod backfill {
    use super::*;
    on_both_backends!(code_execution_backfill_rolls_up_exactly);
}
