//! Ingest throughput and peak memory, end to end through the real binary:
//! `tally ingest FILE` and `POST /v1/usage/batch`, on SQLite and PostgreSQL.
//!
//! Run with `cargo bench --bench ingest`. Settings (environment):
//! - `TALLY_BENCH_RECORDS` (default 200000): records in the generated file;
//! - `TALLY_BENCH_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`):
//!   a server where the bench may create and drop a database.
//!
//! Peak memory is the process's `VmHWM` (peak resident set), sampled from
//! /proc while it runs. A second CLI run on a file a quarter the size shows
//! whether memory stays flat as the input grows.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_tally");

struct Run {
    label: String,
    records: u64,
    seconds: f64,
    peak_kib: u64,
}

fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Wait for `child`, sampling its peak memory.
fn wait_sampling(child: &mut Child) -> u64 {
    let mut peak = 0;
    loop {
        if let Some(kib) = peak_kib(child.id()) {
            peak = peak.max(kib);
        }
        if child.try_wait().unwrap().is_some() {
            return peak;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn cli_run(label: &str, database: &str, file: &Path, records: u64) -> Run {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(["--database", database, "ingest", "--json"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let peak = wait_sampling(&mut child);
    let seconds = start.elapsed().as_secs_f64();
    let summary: serde_json::Value = serde_json::from_str(&reader.join().unwrap()).unwrap();
    assert_eq!(
        summary["accepted"].as_u64(),
        Some(records),
        "{label}: {summary}"
    );
    Run {
        label: label.into(),
        records,
        seconds,
        peak_kib: peak,
    }
}

fn http_run(label: &str, database: &str, body: Vec<u8>, records: u64) -> Run {
    let mut server = Command::new(BIN)
        .args(["--database", database, "serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("server exited").unwrap();
        if let Some(at) = line.find("listening on ") {
            break line[at + "listening on ".len()..].trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let pid = server.id();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while let Some(kib) = peak_kib(pid) {
            peak = peak.max(kib);
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    let summary: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{base}/v1/usage/batch"))
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(summary["accepted"].as_u64(), Some(records), "{label}");
    let _ = server.kill();
    let _ = server.wait();
    let peak = sampler.join().unwrap();
    Run {
        label: label.into(),
        records,
        seconds,
        peak_kib: peak,
    }
}

struct PgDb {
    server: String,
    name: String,
}

impl PgDb {
    fn create(server: &str, rt: &tokio::runtime::Runtime) -> PgDb {
        let name = format!("tally_bench_{}_{}", std::process::id(), rand_suffix());
        rt.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres"))
                .await
                .expect("the bench needs PostgreSQL (TALLY_BENCH_POSTGRES)");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database {name}")))
                .execute(&mut conn)
                .await
                .unwrap();
        });
        PgDb {
            server: server.into(),
            name,
        }
    }
    fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
    fn drop_with(self, rt: &tokio::runtime::Runtime) {
        rt.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&format!("{}/postgres", self.server))
                .await
                .unwrap();
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "drop database if exists {} with (force)",
                self.name
            )))
            .execute(&mut conn)
            .await;
        });
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000
}

fn main() {
    // `cargo test --benches` runs benches in test mode with `--bench` absent: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let records: u64 = std::env::var("TALLY_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let pg = std::env::var("TALLY_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    let full = dir.path().join("usage.ndjson");
    let quarter = dir.path().join("usage_quarter.ndjson");
    tally::synth::write_ndjson(
        std::io::BufWriter::new(std::fs::File::create(&full).unwrap()),
        records,
        1,
    )
    .unwrap();
    tally::synth::write_ndjson(
        std::io::BufWriter::new(std::fs::File::create(&quarter).unwrap()),
        records / 4,
        1,
    )
    .unwrap();
    let bytes = std::fs::metadata(&full).unwrap().len();
    eprintln!("generated {records} records ({:.0} MB)", bytes as f64 / 1e6);

    let mut runs = Vec::new();
    let sqlite = |name: &str| format!("sqlite://{}", dir.path().join(name).display());

    runs.push(cli_run("CLI → SQLite", &sqlite("cli.db"), &full, records));
    runs.push(cli_run(
        "CLI → SQLite (¼ file)",
        &sqlite("cli_q.db"),
        &quarter,
        records / 4,
    ));
    let db = PgDb::create(&pg, &rt);
    runs.push(cli_run("CLI → PostgreSQL", &db.url(), &full, records));
    db.drop_with(&rt);
    let db = PgDb::create(&pg, &rt);
    runs.push(cli_run(
        "CLI → PostgreSQL (¼ file)",
        &db.url(),
        &quarter,
        records / 4,
    ));
    db.drop_with(&rt);

    let body = std::fs::read(&full).unwrap();
    runs.push(http_run(
        "HTTP batch → SQLite",
        &sqlite("http.db"),
        body.clone(),
        records,
    ));
    let db = PgDb::create(&pg, &rt);
    runs.push(http_run(
        "HTTP batch → PostgreSQL",
        &db.url(),
        body,
        records,
    ));
    db.drop_with(&rt);

    println!("| path | records | seconds | records/s | peak memory |");
    println!("|---|---:|---:|---:|---:|");
    for r in &runs {
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.0} MiB |",
            r.label,
            r.records,
            r.seconds,
            r.records as f64 / r.seconds,
            r.peak_kib as f64 / 1024.0
        );
    }
}
