//! Two `tally serve` processes on one database receive the same records at
//! the same time: every record is stored and acknowledged as new exactly once.

use std::process::Stdio;

use crate::support::{Backend, ServerProcess, TestDb, tally_command};
use serde_json::Value;

async fn two_servers_one_database(backend: Backend) {
    // Migrated once up front; the servers migrate again, harmlessly.
    let db = TestDb::migrated(backend).await;
    let a = ServerProcess::start(&db);
    let b = ServerProcess::start(&db);

    let mut text = Vec::new();
    tally::synth::write_ndjson(&mut text, 3000, 11).unwrap();
    let lines: Vec<String> = String::from_utf8(text.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let client = reqwest::Client::new();

    let mut tasks = Vec::new();
    for (i, server) in [&a, &b, &a, &b].into_iter().enumerate() {
        let (client, url) = (client.clone(), format!("{}/v1/usage/batch", server.base));
        // Two copies of the file each, one of them reversed.
        let body = if i < 2 {
            text.clone()
        } else {
            lines
                .iter()
                .rev()
                .map(|l| format!("{l}\n"))
                .collect::<String>()
                .into_bytes()
        };
        tasks.push(tokio::spawn(async move {
            let v: Value = client
                .post(url)
                .body(body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(v["conflicts"], 0, "{v}");
            v["accepted"].as_u64().unwrap()
        }));
    }
    // And single-record posts of the first 100 lines to both servers at once.
    for server in [&a, &b] {
        for line in lines.iter().take(100) {
            let (client, url, line) = (
                client.clone(),
                format!("{}/v1/usage", server.base),
                line.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let status = client
                    .post(url)
                    .body(line)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                assert!(status == 200 || status == 201, "{status}");
                u64::from(status == 201)
            }));
        }
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap();
    }
    assert_eq!(
        accepted, 3000,
        "each record acknowledged as new exactly once"
    );
    assert_eq!(db.store().await.counts().await.unwrap().records, 3000);
}

/// `kill -9` in the middle of an ingest: what was committed is whole
/// chunks, and running the same file again completes it without counting
/// anything twice.
async fn killed_mid_ingest_loses_nothing_and_retry_counts_once(backend: Backend) {
    let (db, store) = TestDb::with_store(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("usage.ndjson");
    let total = 40_000u64;
    tally::synth::write_ndjson(std::fs::File::create(&file).unwrap(), total, 21).unwrap();

    let mut child = tally_command(&db, &["ingest", "--json"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as the first commits are visible.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store.counts().await.unwrap().records == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let committed = store.counts().await.unwrap().records as u64;
    assert!(
        committed > 0 && committed < total,
        "killed mid-way: {committed} of {total}"
    );
    let chunk = store.chunk_lines() as u64;
    assert_eq!(
        committed % chunk,
        0,
        "only whole chunks are committed ({committed})"
    );

    let out = tally_command(&db, &["ingest", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary["accepted"].as_u64(),
        Some(total - committed),
        "{summary}"
    );
    assert_eq!(summary["duplicates"].as_u64(), Some(committed));
    assert_eq!(store.counts().await.unwrap().records as u64, total);
}

on_both_backends!(
    two_servers_one_database,
    killed_mid_ingest_loses_nothing_and_retry_counts_once
);
