//! Records near the size limit (a Messages API request may be 128 MB, an
//! envelope up to 256 MiB by default): accepted whole, and held one at a
//! time, by `tally ingest` and by the server, whatever arrives after them.
//!
//! Memory is read from the process itself (`VmHWM` in `/proc/PID/status`,
//! its peak resident size) while it is still running: the peak after one
//! large record and after three more must be about the same.

use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tally::store::Store;

use crate::support::{Backend, ServerProcess, TestDb, tally_command};

/// Each large record's size: over the old 16 MiB default, well under 256 MiB.
const LARGE_MIB: usize = 40;

/// An envelope of about `mib` MiB, its bulk in the request (a long document).
fn large_line(id: &str, mib: usize) -> String {
    json!({
        "account": "big",
        "recorded_at": "2026-05-01T00:00:00Z",
        "request": {"model": "claude-sonnet-4-5", "max_tokens": 64,
            "messages": [{"role": "user", "content": "x".repeat(mib << 20)}]},
        "response": {"id": id, "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn", "usage": {"input_tokens": 10_000_000, "output_tokens": 2}},
    })
    .to_string()
}

/// The peak resident size of a running process, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Wait (up to 60 s) until every one of `ids` is recorded.
async fn until_recorded(store: &Arc<dyn Store>, ids: &[String]) {
    for _ in 0..6000 {
        let mut all = true;
        for id in ids {
            all &= store.record(id).await.unwrap().is_some();
        }
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{ids:?} were not all recorded");
}

/// Growth of the peak allowed after the first large record (the allocator's
/// and the database driver's own): less than one more record held at the
/// same time would add (its text as read, parsed and kept: at least three
/// times `LARGE_MIB`).
const SLACK_KIB: u64 = (2 * LARGE_MIB as u64) << 10;

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("msg_{prefix}_{i}")).collect()
}

async fn ingest_holds_one_large_record_at_a_time(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let store = db.store().await;
    // Standard input, kept open between the steps so the process can be measured.
    let mut child = tally_command(&db, &["ingest", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (lines, to_write) = std::sync::mpsc::channel::<Vec<String>>();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for batch in to_write {
            for line in batch {
                stdin.write_all(line.as_bytes()).unwrap();
                stdin.write_all(b"\n").unwrap();
            }
            stdin.flush().unwrap();
        }
    });

    let first = ids("alone", 1);
    lines.send(vec![large_line(&first[0], LARGE_MIB)]).unwrap();
    until_recorded(&store, &first).await;
    let after_one = peak_kib(pid);

    let more = ids("more", 3);
    lines
        .send(more.iter().map(|id| large_line(id, LARGE_MIB)).collect())
        .unwrap();
    until_recorded(&store, &more).await;
    let after_four = peak_kib(pid);
    assert!(
        after_four < after_one + SLACK_KIB,
        "the peak grew from {after_one} KiB to {after_four} KiB: more than one large record was held"
    );

    drop(lines);
    writer.join().unwrap();
    let out = child.wait_with_output().unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["accepted"], 4, "{summary}");
    // Kept whole: the stored line is the line sent.
    let stored = store.record(&more[1]).await.unwrap().unwrap();
    assert_eq!(stored.raw, large_line(&more[1], LARGE_MIB));
}

async fn the_server_holds_one_large_record_at_a_time(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let store = db.store().await;
    // One malloc arena: memory one thread frees is reused by the next rather
    // than kept per thread, so the peak measures what is held at once, not
    // which threads did the work.
    let server = ServerProcess::start_with(&db, |c| {
        c.env("MALLOC_ARENA_MAX", "1");
    });
    let pid = server.child.id();
    let http = reqwest::Client::new();
    let post = |path: &str, body: String| {
        http.post(format!("{}{path}", server.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let first = ids("single", 1);
    let answer = post("/v1/usage", large_line(&first[0], LARGE_MIB))
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    let after_one = peak_kib(pid);

    // Three large records posted at once, each alone: taken one at a time.
    let concurrent = ids("concurrent", 3);
    let answers = futures_util::future::join_all(
        concurrent
            .iter()
            .map(|id| post("/v1/usage", large_line(id, LARGE_MIB))),
    )
    .await;
    for answer in answers {
        assert_eq!(answer.unwrap().status(), 201);
    }
    // Three large records in one batch, between small lines.
    let batched = ids("batched", 3);
    let mut body = String::new();
    for id in &batched {
        body.push_str(&large_line(id, LARGE_MIB));
        body.push('\n');
        body.push_str(&crate::support::fixture("sample.ndjson"));
    }
    let answer = post("/v1/usage/batch", body).await.unwrap();
    assert_eq!(answer.status(), 200);
    let summary: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(summary["rejected"], 0, "{summary}");
    until_recorded(&store, &batched).await;
    let after_all = peak_kib(pid);
    assert!(
        after_all < after_one + SLACK_KIB,
        "the peak grew from {after_one} KiB to {after_all} KiB: more than one large record was held"
    );
}

on_both_backends!(
    ingest_holds_one_large_record_at_a_time,
    the_server_holds_one_large_record_at_a_time,
);
