//! Ingest throughput and peak memory, end to end through the real binary:
//! `tally ingest FILE`, `POST /v1/usage/batch`, and single records
//! (`POST /v1/usage`) over many concurrent keep-alive connections, on SQLite
//! and PostgreSQL, with one server and with two servers sharing a database.
//!
//! Run with `cargo bench --bench ingest`. Settings (environment):
//! - `TALLY_BENCH_RECORDS` (default 200000): records in the file of the CLI
//!   and batch runs;
//! - `TALLY_BENCH_HTTP_RECORDS` (default 30000): records in the file of the
//!   single-record runs;
//! - `TALLY_BENCH_CONNECTIONS` (default 64): keep-alive connections per
//!   server in the single-record runs, each with its own client;
//! - `TALLY_BENCH_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`):
//!   a server where the bench may create and drop a database;
//! - `TALLY_BENCH_ONLY` (default: all): comma-separated run groups among
//!   `cli`, `cli-code-execution`, `http-batch`, `http-single`,
//!   `http-two-servers`;
//! - `TALLY_BENCH_GEN_ARGS` (default empty): extra arguments to
//!   `tally gen-usage`, split on whitespace (e.g. `--seed 7`).
//!
//! The `cli-code-execution` group ingests code-execution-heavy traffic in
//! random order (`gen-usage --profile code-execution --shuffle`: a backfill
//! of several log files), then apart its container records sorted by time
//! and its other records still shuffled, to show where the time goes.
//!
//! Peak memory is the process's `VmHWM` (peak resident set), sampled from
//! /proc while it runs (one figure per server). A second CLI run on a file a
//! quarter the size shows whether memory stays flat as the input grows.
//! Single-record runs also report each request's latency, p50 and p99, from
//! sending it to reading the whole answer; their clock starts once every
//! connection is open. Every single-record run then counts the records the
//! database holds: each record must be stored exactly once.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use sqlx::Connection;
use tokio::runtime::Runtime;
use tokio::sync::Barrier;

const BIN: &str = env!("CARGO_BIN_EXE_tally");
const GROUPS: [&str; 5] = [
    "cli",
    "cli-code-execution",
    "http-batch",
    "http-single",
    "http-two-servers",
];
/// Longest a server may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest every client may take to open its connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest one single-record request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest one CLI ingest may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(3600);

struct Run {
    label: String,
    records: u64,
    seconds: f64,
    /// Peak resident set of each process that did the work, KiB.
    peaks_kib: Vec<u64>,
    latency: Option<Latency>,
}

/// Per-request latency of a single-record run.
#[derive(Clone, Copy)]
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
}

struct Settings {
    records: u64,
    http_records: u64,
    connections: usize,
    postgres: String,
    gen_args: Vec<String>,
    only: BTreeSet<String>,
}

impl Settings {
    fn from_env() -> Settings {
        let settings = Settings {
            records: env_number("TALLY_BENCH_RECORDS", 200_000),
            http_records: env_number("TALLY_BENCH_HTTP_RECORDS", 30_000),
            connections: env_number("TALLY_BENCH_CONNECTIONS", 64),
            postgres: std::env::var("TALLY_BENCH_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into()),
            gen_args: std::env::var("TALLY_BENCH_GEN_ARGS")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            only: run_groups(std::env::var("TALLY_BENCH_ONLY").ok()),
        };
        assert!(
            settings.connections > 0,
            "TALLY_BENCH_CONNECTIONS must be at least 1"
        );
        settings
    }
    fn wants(&self, group: &str) -> bool {
        self.only.contains(group)
    }
}

fn env_number<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// The groups `TALLY_BENCH_ONLY` names (all when unset or empty).
fn run_groups(only: Option<String>) -> BTreeSet<String> {
    let named: BTreeSet<String> = only
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    for group in &named {
        assert!(
            GROUPS.contains(&group.as_str()),
            "TALLY_BENCH_ONLY: unknown run group {group:?} (known: {})",
            GROUPS.join(", ")
        );
    }
    if named.is_empty() {
        GROUPS.iter().map(|g| (*g).to_owned()).collect()
    } else {
        named
    }
}

/// `tally gen-usage --records N --out FILE` plus `TALLY_BENCH_GEN_ARGS`.
fn gen_usage(records: u64, out: &Path, extra: &[String]) -> PathBuf {
    let status = Command::new(BIN)
        .args(["gen-usage", "--records", &records.to_string(), "--out"])
        .arg(out)
        .args(extra)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "tally gen-usage {} failed: {status}",
        extra.join(" ")
    );
    let bytes = std::fs::metadata(out).unwrap().len();
    eprintln!(
        "generated {records} records ({:.0} MB) in {}",
        bytes as f64 / 1e6,
        out.display()
    );
    out.to_owned()
}

fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Wait for `child`, sampling its peak memory.
fn wait_sampling(child: &mut Child) -> u64 {
    let deadline = Instant::now() + CLI_TIMEOUT;
    let mut peak = 0;
    while Instant::now() < deadline {
        if let Some(kib) = peak_kib(child.id()) {
            peak = peak.max(kib);
        }
        if child.try_wait().unwrap().is_some() {
            return peak;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("tally ingest took longer than {CLI_TIMEOUT:?}");
}

/// Write out what earlier runs left behind (PostgreSQL's dirty buffers, the
/// page cache), so their disk writes do not land in this run's time.
fn settle() {
    let url = std::env::var("TALLY_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        rt.block_on(async {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&format!("{url}/postgres")).await {
                let _ = sqlx::query("checkpoint").execute(&mut conn).await;
            }
        });
    }
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(1));
}

fn cli_run(label: &str, database: &str, file: &Path, records: u64) -> Run {
    // The schema is made first: the clock times ingesting, not migrating.
    let migrated = Command::new(BIN)
        .args(["--database", database, "migrate"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(migrated.success(), "{label}: tally migrate failed");
    settle();
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
        peaks_kib: vec![peak],
        latency: None,
    }
}

/// A running `tally serve` on a loopback port, killed when dropped.
struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    base: String,
    sampler: Option<JoinHandle<u64>>,
}

impl Server {
    fn start(database: &str) -> Server {
        let mut child = Command::new(BIN)
            .args(["--database", database, "serve", "--listen", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let listening = announced_address(child.stderr.take().unwrap());
        let pid = child.id();
        let mut server = Server {
            child,
            base: String::new(),
            sampler: None,
        };
        server.base = listening
            .recv_timeout(START_TIMEOUT)
            .expect("tally serve exited or did not listen in time");
        assert!(
            server.base.starts_with("http://127.0.0.1:"),
            "tally serve listens on {}, not on 127.0.0.1",
            server.base
        );
        server.sampler = Some(std::thread::spawn(move || {
            let mut peak = 0;
            // Ends when the process is gone (or a zombie: no VmHWM then).
            while let Some(kib) = peak_kib(pid) {
                peak = peak.max(kib);
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        }));
        server
    }

    /// Stop the server; its peak memory in KiB.
    fn stop(mut self) -> u64 {
        self.kill();
        self.sampler.take().map_or(0, |s| s.join().unwrap())
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Read the server's log until it exits; send the address after "listening on".
fn announced_address(stderr: std::process::ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("listening on ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(line[at + "listening on ".len()..].trim().to_owned());
            }
        }
    });
    rx
}

fn http_batch_run(label: &str, database: &str, body: Vec<u8>, records: u64, rt: &Runtime) -> Run {
    settle();
    let server = Server::start(database);
    let url = format!("{}/v1/usage/batch", server.base);
    let start = Instant::now();
    let summary: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .post(url)
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
    Run {
        label: label.into(),
        records,
        seconds,
        peaks_kib: vec![server.stop()],
        latency: None,
    }
}

/// The non-blank lines of an NDJSON file, one request body each.
fn ndjson_lines(file: &Path) -> Vec<Bytes> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Bytes::copy_from_slice(l.as_bytes()))
        .collect()
}

/// One connection's records, and the server it sends them to.
struct Share {
    base: String,
    lines: Vec<Bytes>,
}

/// Deal `lines` round-robin to `connections` connections per server.
fn deal(lines: &[Bytes], bases: &[String], connections: usize) -> Vec<Share> {
    let mut shares: Vec<Share> = (0..bases.len() * connections)
        .map(|i| Share {
            base: bases[i % bases.len()].clone(),
            lines: Vec::with_capacity(lines.len() / (bases.len() * connections) + 1),
        })
        .collect();
    let count = shares.len();
    for (i, line) in lines.iter().enumerate() {
        shares[i % count].lines.push(line.clone());
    }
    shares
}

/// A client that keeps exactly one connection to the server alive.
fn one_connection_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(1)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap()
}

/// Open one connection, wait for every other one, then POST the share's
/// records one per request, in turn; each request's latency.
async fn post_share(share: Share, ready: Arc<Barrier>) -> Vec<Duration> {
    let client = one_connection_client();
    let health = client
        .get(format!("{}/healthz", share.base))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success(), "healthz: {}", health.status());
    health.bytes().await.unwrap();
    ready.wait().await;
    let url = format!("{}/v1/usage", share.base);
    let mut latencies = Vec::with_capacity(share.lines.len());
    for line in share.lines {
        let start = Instant::now();
        let response = client
            .post(&url)
            .header(CONTENT_TYPE, "application/json")
            .body(line)
            .send()
            .await
            .unwrap();
        let status = response.status();
        // The whole answer is read, so the connection stays reusable.
        let answer = response.bytes().await.unwrap();
        latencies.push(start.elapsed());
        assert!(
            status.is_success(),
            "POST /v1/usage answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    latencies
}

/// POST every line to the servers, `connections` connections each; the
/// seconds from the moment every connection is open, and every latency.
fn post_concurrently(
    rt: &Runtime,
    bases: &[String],
    lines: &[Bytes],
    connections: usize,
) -> (f64, Vec<Duration>) {
    let shares = deal(lines, bases, connections);
    rt.block_on(async {
        let ready = Arc::new(Barrier::new(shares.len() + 1));
        let tasks: Vec<_> = shares
            .into_iter()
            .map(|share| tokio::spawn(post_share(share, ready.clone())))
            .collect();
        tokio::time::timeout(CONNECT_TIMEOUT, ready.wait())
            .await
            .expect("the clients could not all connect in time");
        let start = Instant::now();
        let mut latencies = Vec::with_capacity(lines.len());
        for task in tasks {
            latencies.extend(task.await.unwrap());
        }
        (start.elapsed().as_secs_f64(), latencies)
    })
}

/// p50 and p99 (nearest rank).
fn latency(mut samples: Vec<Duration>) -> Latency {
    assert!(!samples.is_empty(), "no request was made");
    samples.sort_unstable();
    let at = |p: f64| {
        let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1].as_secs_f64() * 1e3
    };
    Latency {
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    }
}

/// How many records the ledger holds.
fn stored_records(database: &str, rt: &Runtime) -> u64 {
    const COUNT: &str = "select count(*) from records";
    let count: i64 = rt.block_on(async {
        if database.starts_with("postgres") {
            let mut conn = sqlx::PgConnection::connect(database).await.unwrap();
            sqlx::query_scalar(COUNT)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        } else {
            let mut conn = sqlx::SqliteConnection::connect(database).await.unwrap();
            sqlx::query_scalar(COUNT)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
    });
    u64::try_from(count).unwrap()
}

/// Single records over `connections` keep-alive connections to each of
/// `servers` servers sharing `database`; then every record must be stored once.
fn http_single_run(
    label: &str,
    database: &str,
    servers: usize,
    lines: &[Bytes],
    connections: usize,
    rt: &Runtime,
) -> Run {
    settle();
    let servers: Vec<Server> = (0..servers).map(|_| Server::start(database)).collect();
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let (seconds, latencies) = post_concurrently(rt, &bases, lines, connections);
    assert_eq!(latencies.len(), lines.len(), "{label}: requests made");
    let peaks_kib = servers.into_iter().map(Server::stop).collect();
    let records = lines.len() as u64;
    assert_eq!(
        stored_records(database, rt),
        records,
        "{label}: records stored"
    );
    Run {
        label: label.into(),
        records,
        seconds,
        peaks_kib,
        latency: Some(latency(latencies)),
    }
}

struct PgDb {
    server: String,
    name: String,
}

impl PgDb {
    fn create(server: &str, rt: &Runtime) -> PgDb {
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
    fn drop_with(self, rt: &Runtime) {
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

/// What every run needs: the settings, a runtime, a scratch directory.
struct Bench {
    settings: Settings,
    rt: Runtime,
    dir: tempfile::TempDir,
}

impl Bench {
    fn sqlite(&self, name: &str) -> String {
        format!("sqlite://{}", self.dir.path().join(name).display())
    }

    /// `run` on a fresh PostgreSQL database, dropped afterwards.
    fn on_postgres(&self, run: impl FnOnce(&str) -> Run) -> Run {
        let db = PgDb::create(&self.settings.postgres, &self.rt);
        let result = run(&db.url());
        db.drop_with(&self.rt);
        result
    }

    fn generate(&self, name: &str, records: u64) -> PathBuf {
        gen_usage(
            records,
            &self.dir.path().join(name),
            &self.settings.gen_args,
        )
    }

    fn cli_runs(&self, full: &Path) -> Vec<Run> {
        let records = self.settings.records;
        let quarter = self.generate("usage_quarter.ndjson", records / 4);
        vec![
            cli_run("CLI → SQLite", &self.sqlite("cli.db"), full, records),
            cli_run(
                "CLI → SQLite (¼ file)",
                &self.sqlite("cli_q.db"),
                &quarter,
                records / 4,
            ),
            self.on_postgres(|db| cli_run("CLI → PostgreSQL", db, full, records)),
            self.on_postgres(|db| cli_run("CLI → PostgreSQL (¼ file)", db, &quarter, records / 4)),
        ]
    }

    fn cli_code_execution_runs(&self) -> Vec<Run> {
        let records = self.settings.records;
        let mut args = vec![
            "--profile".to_owned(),
            "code-execution".to_owned(),
            "--shuffle".to_owned(),
        ];
        args.extend(self.settings.gen_args.iter().cloned());
        let file = self.dir.path().join("usage_code_execution.ndjson");
        gen_usage(records, &file, &args);
        let (containers, others) = split_container_records(&file, self.dir.path());
        let mut runs = Vec::new();
        for (what, path, n) in [
            ("code-execution mix, shuffled", file.clone(), records),
            ("its container records, sorted", containers.0, containers.1),
            ("its other records, shuffled", others.0, others.1),
        ] {
            runs.push(cli_run(
                &format!("CLI → SQLite, {what}"),
                &self.sqlite(&format!("ce_{n}.db")),
                &path,
                n,
            ));
            runs.push(
                self.on_postgres(|db| cli_run(&format!("CLI → PostgreSQL, {what}"), db, &path, n)),
            );
        }
        runs
    }

    fn http_batch_runs(&self, full: &Path) -> Vec<Run> {
        let records = self.settings.records;
        let body = std::fs::read(full).unwrap();
        vec![
            http_batch_run(
                "HTTP batch → SQLite",
                &self.sqlite("http.db"),
                body.clone(),
                records,
                &self.rt,
            ),
            self.on_postgres(|db| {
                http_batch_run("HTTP batch → PostgreSQL", db, body, records, &self.rt)
            }),
        ]
    }

    fn http_single_runs(&self, lines: &[Bytes]) -> Vec<Run> {
        let n = self.settings.connections;
        let single = |label: &str, db: &str| http_single_run(label, db, 1, lines, n, &self.rt);
        vec![
            single(
                &format!("HTTP single, {n} connections → SQLite"),
                &self.sqlite("single.db"),
            ),
            self.on_postgres(|db| {
                single(&format!("HTTP single, {n} connections → PostgreSQL"), db)
            }),
        ]
    }

    fn http_two_servers_run(&self, lines: &[Bytes]) -> Run {
        let n = self.settings.connections;
        self.on_postgres(|db| {
            http_single_run(
                &format!("HTTP single, 2 servers × {n} connections → PostgreSQL"),
                db,
                2,
                lines,
                n,
                &self.rt,
            )
        })
    }

    fn all_runs(&self) -> Vec<Run> {
        let wants = |group: &str| self.settings.wants(group);
        let mut runs = Vec::new();
        if wants("cli") || wants("http-batch") {
            let full = self.generate("usage.ndjson", self.settings.records);
            if wants("cli") {
                runs.extend(self.cli_runs(&full));
            }
            if wants("http-batch") {
                runs.extend(self.http_batch_runs(&full));
            }
        }
        if wants("cli-code-execution") {
            runs.extend(self.cli_code_execution_runs());
        }
        if wants("http-single") || wants("http-two-servers") {
            let records = self.settings.http_records;
            let lines = ndjson_lines(&self.generate("usage_http.ndjson", records));
            assert_eq!(lines.len() as u64, records, "lines in the generated file");
            if wants("http-single") {
                runs.extend(self.http_single_runs(&lines));
            }
            if wants("http-two-servers") {
                runs.push(self.http_two_servers_run(&lines));
            }
        }
        runs
    }
}

/// Split a generated file into its records that name a container, sorted by
/// `recorded_at`, and the others in their order: `((path, lines), (path, lines))`.
fn split_container_records(file: &Path, dir: &Path) -> ((PathBuf, u64), (PathBuf, u64)) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut containers: Vec<(String, &str)> = Vec::new();
    let mut others: Vec<&str> = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if line.contains("\"container\":{") {
            let at = v["recorded_at"].as_str().unwrap_or_default().to_owned();
            containers.push((at, line));
        } else {
            others.push(line);
        }
    }
    containers.sort_by(|a, b| a.0.cmp(&b.0));
    let write = |name: &str, lines: &mut dyn Iterator<Item = &str>| {
        let path = dir.join(name);
        let mut out = String::new();
        let mut n = 0;
        for l in lines {
            out.push_str(l);
            out.push('\n');
            n += 1;
        }
        std::fs::write(&path, out).unwrap();
        (path, n)
    };
    (
        write(
            "usage_containers_sorted.ndjson",
            &mut containers.iter().map(|(_, l)| *l),
        ),
        write("usage_others.ndjson", &mut others.iter().copied()),
    )
}

fn print_table(runs: &[Run]) {
    println!("| path | records | seconds | records/s | peak memory | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        let peaks: Vec<String> = r
            .peaks_kib
            .iter()
            .map(|kib| format!("{:.0}", *kib as f64 / 1024.0))
            .collect();
        let (p50, p99) = r.latency.map_or(("–".into(), "–".into()), |l| {
            (format!("{:.1}", l.p50_ms), format!("{:.1}", l.p99_ms))
        });
        println!(
            "| {} | {} | {:.2} | {:.0} | {} MiB | {p50} | {p99} |",
            r.label,
            r.records,
            r.seconds,
            r.records as f64 / r.seconds,
            peaks.join(" + "),
        );
    }
}

fn main() {
    // `cargo test --benches` runs benches in test mode with `--bench` absent: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let bench = Bench {
        settings: Settings::from_env(),
        rt: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
        dir: tempfile::tempdir().unwrap(),
    };
    let runs = bench.all_runs();
    print_table(&runs);
}
