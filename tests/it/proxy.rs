//! `tally proxy`: forwarding to a local upstream that answers like the
//! Messages API, recording, and the account mappings of API keys; on both
//! backends.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tally::store::{Store, StoredRecord};

use crate::support::{Backend, TestDb, fixture, tally, tally_command, tally_ok};

/// `tally proxy keys map --api-key-sha256 SHA --account ACCOUNT`: exit code, stdout, stderr.
fn map(db: &TestDb, sha: &str, account: &str) -> (i32, String, String) {
    let args = [
        "proxy",
        "keys",
        "map",
        "--api-key-sha256",
        sha,
        "--account",
        account,
    ];
    tally(db, &args)
}

/// [`map`], which must succeed: its stdout.
fn map_ok(db: &TestDb, sha: &str, account: &str) -> String {
    let (code, out, err) = map(db, sha, account);
    assert_eq!(code, 0, "{err}");
    out
}

/// SHA-256 of a made-up Anthropic API key, as `sha256sum` prints it.
fn sha256_hex(key: &str) -> String {
    tally::auth::hash_key(key)
}

async fn key_mappings_map_list_and_unmap(backend: Backend) {
    let db = TestDb::new(backend).await;
    let key = "sk-ant-api03-not-a-real-key";
    let sha = sha256_hex(key);
    let id = &sha[..12];

    let out = map_ok(&db, &sha, "acme");
    assert!(out.contains(id) && out.contains("acme"), "{out}");
    // Upper case is the same hash; mapping again moves the key to another account.
    let upper = sha.to_ascii_uppercase();
    map_ok(&db, &upper, "globex");
    let store = db.store().await;
    assert_eq!(
        store.proxy_key_account(&sha).await.unwrap().as_deref(),
        Some("globex")
    );

    let list: serde_json::Value =
        serde_json::from_str(&tally_ok(&db, &["proxy", "keys", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        (&list[0]["api_key_id"], &list[0]["account"]),
        (&id.into(), &"globex".into())
    );
    // Listed by its id only: neither the key nor its whole hash.
    let text = tally_ok(&db, &["proxy", "keys", "list"]);
    assert!(
        text.contains(id) && !text.contains(&sha) && !text.contains(key),
        "{text}"
    );

    tally_ok(&db, &["proxy", "keys", "unmap", "--api-key-sha256", &sha]);
    assert_eq!(store.proxy_key_account(&sha).await.unwrap(), None);
    let (code, _, err) = tally(&db, &["proxy", "keys", "unmap", "--api-key-sha256", &sha]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("no mapping for key {id}")), "{err}");
}

async fn bad_mappings_are_refused_and_change_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let sha = sha256_hex("sk-ant-api03-another");
    // A key given instead of its hash is refused, and not echoed back.
    let (code, out, err) = map(&db, "sk-ant-api03-secret", "acme");
    assert_eq!(code, 1);
    assert!(
        err.contains("--api-key-sha256: expected 64 hex digits"),
        "{err}"
    );
    assert!(!err.contains("sk-ant-api03-secret") && !out.contains("sk-ant-api03-secret"));
    let (code, _, err) = map(&db, &sha, "no spaces");
    assert_eq!(code, 1);
    assert!(err.contains("--account \"no spaces\""), "{err}");
    assert_eq!(
        tally_ok(&db, &["proxy", "keys", "list"]).trim(),
        "no key mappings"
    );
}

/// The upstream's answer to `POST /v1/messages`: a plain response or a
/// server-sent event stream (with pauses) from the fixtures, its id taken
/// from the `x-test-id` header; `"model": "overloaded"` answers 529 and
/// `"model": "slow"` answers after 1.2 s. A
/// request that still carries `x-tally-account` is refused: it must have
/// been removed.
async fn upstream_messages(headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if headers.contains_key("x-tally-account") {
        return (StatusCode::BAD_REQUEST, "x-tally-account was forwarded").into_response();
    }
    let request: Value = serde_json::from_slice(&body).unwrap();
    if request["model"] == "overloaded" {
        let error = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        return (StatusCode::from_u16(529).unwrap(), axum::Json(error)).into_response();
    }
    let id = headers["x-test-id"].to_str().unwrap().to_owned();
    if request["stream"] == true {
        let envelope: Value = serde_json::from_str(&fixture("streamed.ndjson")).unwrap();
        let mut events = envelope["events"].as_array().unwrap().clone();
        events[0]["message"]["id"] = id.into();
        // `"model": "breaks-off"`: the connection breaks after three events.
        let breaks_off = request["model"] == "breaks-off";
        let chunks = events.into_iter().enumerate().map(move |(i, e)| {
            let kind = e["type"].as_str().unwrap().to_owned();
            if breaks_off && i == 3 {
                return Err(std::io::Error::other("connection lost"));
            }
            Ok(format!("event: {kind}\ndata: {e}\n\n"))
        });
        let paced = futures_util::stream::iter(chunks).then(|chunk| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            chunk
        });
        return Response::builder()
            .header("content-type", "text/event-stream")
            .header("anthropic-workspace-id", "wrkspc_test")
            .body(Body::from_stream(paced))
            .unwrap();
    }
    if request["model"] == "slow" {
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    let line = fixture("sample.ndjson");
    let mut response =
        serde_json::from_str::<Value>(line.lines().next().unwrap()).unwrap()["response"].clone();
    // A container of its own per call (one container is one account's).
    response["container"]["id"] = format!("container_{id}").into();
    response["id"] = id.into();
    (
        [("anthropic-workspace-id", "wrkspc_test")],
        axum::Json(response),
    )
        .into_response()
}

/// A proxy in front of a local upstream, recording into `db`.
struct Proxied {
    upstream: String,
    proxy: String,
    admin: String,
    store: Arc<dyn Store>,
    http: reqwest::Client,
}

pub(crate) async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// The local upstream's routes.
pub(crate) fn upstream_router() -> axum::Router {
    axum::Router::new()
        .route("/v1/messages", axum::routing::post(upstream_messages))
        .route(
            "/v1/models",
            axum::routing::get(|| async { axum::Json(json!({"data": []})) }),
        )
}

/// Plain TCP with TLS on top, for axum: the local upstream over HTTPS.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // A client that refuses the certificate fails its handshake: next.
            if let Ok((tcp, addr)) = self.tcp.accept().await
                && let Ok(tls) = self.tls.accept(tcp).await
            {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// The local upstream over TLS with a self-signed certificate for
/// `localhost`: its URL and the certificate (PEM).
async fn serve_tls() -> (String, Vec<u8>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TlsListener { tcp, tls };
    tokio::spawn(async move { axum::serve(listener, upstream_router()).await.unwrap() });
    (
        format!("https://localhost:{port}"),
        certified.cert.pem().into_bytes(),
    )
}

impl Proxied {
    async fn start(db: &TestDb, change: impl FnOnce(&mut tally::proxy::ProxyConfig)) -> Proxied {
        let upstream = serve(upstream_router()).await;
        Proxied::in_front_of(db, upstream, change).await
    }

    /// A proxy with a spool in `dir`, billing calls to `acme` by default.
    async fn spooling(db: &TestDb, dir: &std::path::Path) -> Proxied {
        Proxied::start(db, |c| {
            c.spool = Some(dir.to_owned());
            c.default_account = Some("acme".into());
        })
        .await
    }

    async fn in_front_of(
        db: &TestDb,
        upstream: String,
        change: impl FnOnce(&mut tally::proxy::ProxyConfig),
    ) -> Proxied {
        let store = db.store().await;
        let mut config = tally::proxy::ProxyConfig::new(format!("{upstream}/").parse().unwrap());
        change(&mut config);
        let state = tally::proxy::ProxyState::new(store.clone(), config).unwrap();
        let admin = serve(tally::proxy::admin_router(state.clone())).await;
        let proxy = serve(tally::proxy::router(state)).await;
        Proxied {
            upstream,
            proxy,
            admin,
            store,
            http: reqwest::Client::new(),
        }
    }

    /// `POST /v1/messages` through `base` (the proxy or the upstream itself).
    async fn post(
        &self,
        base: &str,
        id: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> (StatusCode, Vec<u8>) {
        let mut request = self
            .http
            .post(format!("{base}/v1/messages"))
            .header("x-test-id", id)
            .header("anthropic-version", "2023-06-01")
            .json(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let answer = request.send().await.unwrap();
        let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
        (status, answer.bytes().await.unwrap().to_vec())
    }

    /// `GET url`: the status and the body.
    async fn get(&self, url: String) -> (u16, String) {
        let answer = self.http.get(url).send().await.unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    }

    /// A metric's value on the admin surface.
    async fn metric(&self, name: &str) -> i64 {
        let (_, text) = self.get(format!("{}/metrics", self.admin)).await;
        let line = text
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    /// Wait (up to 5 s) until a metric has `value`.
    async fn metric_reaches(&self, name: &str, value: i64) {
        for _ in 0..500 {
            if self.metric(name).await == value {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(self.metric(name).await, value, "{name}");
    }

    /// The record of `id`, once the recorder has written it.
    async fn recorded(&self, id: &str) -> StoredRecord {
        for _ in 0..500 {
            if let Some(r) = self.store.record(id).await.unwrap() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let rejected = self.store.rejected_list(true, 10).await.unwrap();
        let errors: Vec<&str> = rejected.iter().map(|r| r.error.as_str()).collect();
        panic!("{id} was not recorded; rejected: {errors:?}");
    }
}

const KEY: &str = "sk-ant-api03-proxy-test-key";
const PROMPT: &str = "What is the secret recipe?";

pub(crate) fn request(stream: bool) -> Value {
    json!({
        "model": "claude-opus-4-20250514",
        "max_tokens": 1024,
        "stream": stream,
        "messages": [{"role": "user", "content": PROMPT}],
        "tools": [{"type": "code_execution_20250522", "name": "code_execution"}],
    })
}

async fn calls_pass_through_byte_for_byte_and_are_recorded(backend: Backend) {
    let db = TestDb::new(backend).await;
    let p = Proxied::start(&db, |_| {}).await;
    let account = [("x-api-key", KEY), ("x-tally-account", "acme")];

    // A plain answer: the caller gets the upstream's bytes; the record has
    // the account, the call's times, the workspace and the key's id.
    let (status, through) = p
        .post(&p.proxy, "msg_plain", &account, &request(false))
        .await;
    let (_, direct) = p
        .post(
            &p.upstream,
            "msg_plain",
            &[("x-api-key", KEY)],
            &request(false),
        )
        .await;
    assert_eq!((status, &through), (StatusCode::OK, &direct));
    let r = p.recorded("msg_plain").await;
    assert_eq!(
        (r.account.as_str(), r.retention.as_str()),
        ("acme", "billing")
    );
    assert!(r.started_at.unwrap() <= r.recorded_at);
    assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (45, 187));
    assert!(r.uses_code_execution && r.container_id.is_some());
    let kept: Value = serde_json::from_str(&r.raw).unwrap();
    assert_eq!(kept["workspace"], "wrkspc_test");
    assert_eq!(kept["api_key_id"], tally::auth::hash_key(KEY)[..12]);
    assert_eq!(kept["request"]["tools"][0]["name"], "code_execution");

    // A stream: passed on as it arrives, recorded from its events.
    let (status, through) = p
        .post(&p.proxy, "msg_stream", &account, &request(true))
        .await;
    let (_, direct) = p.post(&p.upstream, "msg_stream", &[], &request(true)).await;
    assert_eq!((status, &through), (StatusCode::OK, &direct));
    let r = p.recorded("msg_stream").await;
    assert_eq!(
        (
            r.usage.input_tokens,
            r.usage.output_tokens,
            r.usage.web_search_requests
        ),
        (10682, 510, 1)
    );

    // An upstream error passes through and is not recorded; other paths
    // are forwarded, only /v1/ ones.
    let mut overloaded = request(false);
    overloaded["model"] = "overloaded".into();
    let (status, body) = p
        .post(&p.proxy, "msg_overloaded", &account, &overloaded)
        .await;
    assert_eq!(status.as_u16(), 529);
    assert!(String::from_utf8_lossy(&body).contains("overloaded_error"));
    for (path, status) in [("/v1/models", 200), ("/healthz", 404)] {
        assert_eq!(
            p.get(format!("{}{path}", p.proxy)).await.0,
            status,
            "{path}"
        );
    }
    // The recorder keeps order: once a later call is in, the 529 would have been.
    p.post(&p.proxy, "msg_after", &account, &request(false))
        .await;
    p.recorded("msg_after").await;
    assert!(p.store.record("msg_overloaded").await.unwrap().is_none());
    assert_eq!(p.store.counts().await.unwrap().records, 3);
    // Five forwarded (the 404 was not), each timed.
    assert_eq!(p.metric("tally_proxy_requests_total").await, 5);
    assert_eq!(p.metric("tally_proxy_upstream_seconds_count").await, 5);
    let (status, health) = p.get(format!("{}/healthz", p.admin)).await;
    assert_eq!(
        (status, health.as_str()),
        (200, r#"{"ledger":"up","spool_depth":0,"status":"ok"}"#)
    );

    // Neither the prompt nor the key is kept anywhere in the ledger.
    for id in ["msg_plain", "msg_stream", "msg_after"] {
        let raw = p.store.record(id).await.unwrap().unwrap().raw;
        assert!(!raw.contains(PROMPT) && !raw.contains(KEY), "{raw}");
    }
    if backend == Backend::Sqlite {
        let path = db.url.trim_start_matches("sqlite://");
        for suffix in ["", "-wal"] {
            let bytes = std::fs::read(format!("{path}{suffix}")).unwrap_or_default();
            for secret in [PROMPT, KEY] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret}"
                );
            }
        }
    }
}

/// Wait until the ledger holds `n` open rejected lines; they, newest first.
async fn rejected(store: &Arc<dyn Store>, n: i64) -> Vec<tally::store::Rejected> {
    for _ in 0..500 {
        if store.counts().await.unwrap().rejected_open >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rejected = store.rejected_list(false, 100).await.unwrap();
    assert_eq!(rejected.len() as i64, n, "{rejected:?}");
    rejected
}

async fn broken_streams_and_callers_that_leave(backend: Backend) {
    let db = TestDb::new(backend).await;
    let p = Proxied::start(&db, |c| c.default_account = Some("acme".into())).await;

    // The upstream breaks off mid-stream: the caller's body ends in an
    // error, and the call is kept as an incomplete line.
    let mut breaks = request(true);
    breaks["model"] = "breaks-off".into();
    let answer = p
        .http
        .post(format!("{}/v1/messages", p.proxy))
        .header("x-test-id", "msg_broken")
        .json(&breaks)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.bytes().await.is_err(), "the cut reaches the caller");
    let kept = rejected(&p.store, 1).await;
    assert_eq!(kept[0].reason, "incomplete", "{kept:?}");
    assert!(!kept[0].raw.contains(PROMPT));

    // A caller that goes away mid-stream: the upstream answers (and bills)
    // all the same, so the rest is read and the call recorded.
    let mut answer = p
        .http
        .post(format!("{}/v1/messages", p.proxy))
        .header("x-test-id", "msg_left")
        .json(&request(true))
        .send()
        .await
        .unwrap();
    answer.chunk().await.unwrap();
    drop(answer);
    p.recorded("msg_left").await;

    // One that goes away before the answer has begun: the same.
    let mut slow = request(false);
    slow["model"] = "slow".into();
    let gone = tokio::time::timeout(
        Duration::from_millis(300),
        p.http
            .post(format!("{}/v1/messages", p.proxy))
            .header("x-test-id", "msg_left_early")
            .json(&slow)
            .send(),
    )
    .await;
    assert!(gone.is_err(), "the slow upstream answered within 300 ms");
    p.recorded("msg_left_early").await;
    p.post(&p.proxy, "msg_stayed", &[], &request(true)).await;
    p.recorded("msg_stayed").await;
    assert_eq!(p.store.counts().await.unwrap().records, 3);
}

/// This test database's PostgreSQL "stopped": no new connections, every
/// open one ended (the shared server goes on serving the other tests).
pub(crate) async fn postgres_down(db: &TestDb, down: bool) {
    use sqlx::Connection;
    let name = db.url.rsplit('/').next().unwrap();
    let admin = format!("{}/postgres", crate::support::postgres_server());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    let allow = format!("alter database {name} allow_connections {}", !down);
    sqlx::raw_sql(sqlx::AssertSqlSafe(allow))
        .execute(&mut conn)
        .await
        .unwrap();
    if down {
        let end = format!(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = '{name}'"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(end))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// PostgreSQL down under the proxy: calls still succeed, they wait in the
/// spool, and every one is recorded once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_calls_still_succeed_and_are_recorded_later() {
    let db = TestDb::migrated(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let p = Proxied::spooling(&db, dir.path()).await;
    p.post(&p.proxy, "msg_before", &[], &request(false)).await;
    p.recorded("msg_before").await;
    postgres_down(&db, true).await;
    let ids: Vec<String> = (0..5).map(|i| format!("msg_down_{i}")).collect();
    for id in &ids {
        let started = std::time::Instant::now();
        let (status, _) = p.post(&p.proxy, id, &[], &request(false)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the caller waited for the ledger"
        );
    }
    // Each was in the spool when its answer ended.
    for id in &ids {
        assert!(in_spool(dir.path(), id), "{id} is not in the spool");
    }
    postgres_down(&db, false).await;
    for id in &ids {
        p.recorded(id).await;
    }
    spool_holds(dir.path(), 0).await;
}

/// A loopback address nobody listens on (a moment ago).
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// `tally proxy` as a process of its own, once its admin surface answers.
pub(crate) async fn proxy_process(
    db: &TestDb,
    upstream: &str,
    spool: &std::path::Path,
    more: &[&str],
) -> (std::process::Child, String, String) {
    let (listen, admin) = (free_address(), free_address());
    let spool = spool.display().to_string();
    let mut args = vec![
        "proxy",
        "--upstream",
        upstream,
        "--listen",
        &listen,
        "--admin-listen",
        &admin,
        "--spool",
        &spool,
        "--default-account",
        "acme",
    ];
    args.extend_from_slice(more);
    let mut child = tally_command(db, &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    for _ in 0..500 {
        if http
            .get(format!("http://{admin}/healthz"))
            .send()
            .await
            .is_ok()
        {
            return (child, format!("http://{listen}"), format!("http://{admin}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("tally proxy did not start");
}

/// `kill -9` of the proxy while its spool holds calls: the next proxy on
/// the same spool records every one of them, once.
async fn a_killed_proxy_replays_its_spool_once(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let p = Proxied::start(&db, |_| {}).await;
    let upstream = format!("{}/", p.upstream);
    refuse_records(&db, true).await;
    let (mut first, proxy, _) = proxy_process(&db, &upstream, dir.path(), &[]).await;
    let ids: Vec<String> = (0..20).map(|i| format!("msg_killed_{i}")).collect();
    for id in &ids {
        let (status, _) = p.post(&proxy, id, &[], &request(false)).await;
        assert_eq!(status, StatusCode::OK);
    }
    spool_holds(dir.path(), ids.len()).await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert_eq!(p.store.counts().await.unwrap().records, 0);
    // A kill in the middle of an append leaves a torn last line (here cut
    // inside a character): never answered, it is skipped, the rest replayed.
    let (last, _) = spooled(dir.path()).pop().unwrap();
    let mut file = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    std::io::Write::write_all(&mut file, b"{\"id\":\"msg_torn\",\"text\":\"\xc3").unwrap();

    refuse_records(&db, false).await;
    let (mut second, _, _) = proxy_process(&db, &upstream, dir.path(), &[]).await;
    for id in &ids {
        p.recorded(id).await;
    }
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(p.store.counts().await.unwrap().records, ids.len() as i64);
}

/// The Python interpreter that has the `anthropic` SDK (`.ci/run` installs
/// it in `target/ci-python`).
fn python_with_sdk() -> std::path::PathBuf {
    let python = std::env::var_os("TALLY_TEST_PYTHON").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-python/bin/python"),
        std::path::PathBuf::from,
    );
    assert!(
        python.exists(),
        "the SDK test needs Python with the anthropic package at {} (set TALLY_TEST_PYTHON, or run .ci/run)",
        python.display()
    );
    python
}

/// The official Python SDK through the proxy, plain and streaming: it gets
/// its answers, and both calls are recorded under the header's account.
async fn the_official_python_sdk_works_through_the_proxy(backend: Backend) {
    let db = TestDb::new(backend).await;
    let p = Proxied::start(&db, |_| {}).await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/sdk/through_proxy.py");
    let python = python_with_sdk();
    let base = p.proxy.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .args([base.as_str(), "msg_sdk_plain", "msg_sdk_stream"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "msg_sdk_plain 187\nmsg_sdk_stream 510\n");
    let plain = p.recorded("msg_sdk_plain").await;
    let streamed = p.recorded("msg_sdk_stream").await;
    assert_eq!(
        (plain.account.as_str(), plain.usage.output_tokens),
        ("acme", 187)
    );
    assert_eq!(
        (streamed.account.as_str(), streamed.usage.output_tokens),
        ("acme", 510)
    );
}

/// TLS to the upstream is verified: against `--upstream-ca` when given, and
/// a certificate nobody vouches for is refused (502), with nothing recorded.
async fn the_upstream_is_reached_over_verified_tls(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (upstream, pem) = serve_tls().await;
    let (upstream_url, pem_text) = (format!("{upstream}/"), pem.clone());
    let trusting = Proxied::in_front_of(&db, upstream.clone(), |c| {
        c.upstream_ca = Some(pem);
        c.default_account = Some("acme".into());
    })
    .await;
    let (status, body) = trusting
        .post(&trusting.proxy, "msg_tls", &[], &request(false))
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(trusting.recorded("msg_tls").await.account, "acme");

    let doubting =
        Proxied::in_front_of(&db, upstream, |c| c.default_account = Some("acme".into())).await;
    let (status, body) = doubting
        .post(&doubting.proxy, "msg_untrusted", &[], &request(false))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(String::from_utf8_lossy(&body).contains("could not be reached"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        doubting
            .store
            .record("msg_untrusted")
            .await
            .unwrap()
            .is_none()
    );

    // The command line: `--upstream-ca FILE`, and `--retain full` keeping the prompt.
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &pem_text).unwrap();
    let spool = tempfile::tempdir().unwrap();
    let ca_arg = ca.path().display().to_string();
    let flags = ["--upstream-ca", ca_arg.as_str(), "--retain", "full"];
    let (mut process, proxy, _) = proxy_process(&db, &upstream_url, spool.path(), &flags).await;
    let (status, body) = doubting
        .post(&proxy, "msg_tls_cli", &[], &request(false))
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let stored = doubting.recorded("msg_tls_cli").await;
    assert_eq!(stored.retention, "full");
    assert!(stored.raw.contains(PROMPT));
    process.kill().unwrap();
    process.wait().unwrap();
}

async fn the_account_comes_from_the_key_mapping_or_the_default(backend: Backend) {
    let db = TestDb::new(backend).await;
    let p = Proxied::start(&db, |c| c.default_account = Some("fallback".into())).await;
    p.store
        .map_proxy_key(&tally::auth::hash_key(KEY), "globex")
        .await
        .unwrap();
    p.post(
        &p.proxy,
        "msg_mapped",
        &[("x-api-key", KEY)],
        &request(false),
    )
    .await;
    let bearer = format!("Bearer {KEY}");
    p.post(
        &p.proxy,
        "msg_bearer",
        &[("authorization", bearer.as_str())],
        &request(false),
    )
    .await;
    p.post(
        &p.proxy,
        "msg_other",
        &[("x-api-key", "sk-ant-unmapped")],
        &request(false),
    )
    .await;
    assert_eq!(p.recorded("msg_mapped").await.account, "globex");
    assert_eq!(p.recorded("msg_bearer").await.account, "globex");
    assert_eq!(p.recorded("msg_other").await.account, "fallback");

    // No header, no mapping, no default: served all the same, kept as rejected.
    let db = TestDb::new(backend).await;
    let p = Proxied::start(&db, |_| {}).await;
    let (status, _) = p
        .post(
            &p.proxy,
            "msg_nobody",
            &[("x-api-key", "sk-ant-unmapped")],
            &request(false),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..500 {
        if p.store.counts().await.unwrap().rejected_open == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rejected = p.store.rejected_list(false, 10).await.unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].field.as_deref(), Some("account"));
    assert!(!rejected[0].raw.contains(PROMPT));
}

/// Make the ledger refuse (or take again) every new record: a trigger that
/// fails each insert, as a full or broken database would.
async fn refuse_records(db: &TestDb, refuse: bool) {
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let sql = if refuse {
                "create trigger refuse before insert on records begin select raise(abort, 'the ledger refuses'); end"
            } else {
                "drop trigger refuse"
            };
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let sql = if refuse {
                "create or replace function refuse() returns trigger language plpgsql as \
                 $$ begin raise exception 'the ledger refuses'; end $$; \
                 create trigger refuse before insert on records for each row execute function refuse()"
            } else {
                "drop trigger refuse on records"
            };
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        }
    }
}

/// Whether a call is in the spool (its journal or its batches).
fn in_spool(dir: &std::path::Path, id: &str) -> bool {
    let quoted = format!("\"{id}\"");
    spooled(dir).iter().any(|(_, text)| text.contains(&quoted))
}

/// Calls in the spool's files (its journal and its batches).
pub(crate) fn spooled_calls(dir: &std::path::Path) -> usize {
    spooled(dir).iter().map(|(_, t)| t.lines().count()).sum()
}

/// Wait (up to 5 s) until the spool holds `n` calls.
async fn spool_holds(dir: &std::path::Path, n: usize) {
    for _ in 0..500 {
        if spooled_calls(dir) == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(spooled_calls(dir), n, "calls in the spool");
}

/// The spool's batch files and their text.
fn spooled(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect();
    files.sort();
    files
}

async fn calls_wait_in_the_spool_while_the_ledger_refuses_them(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let p = Proxied::spooling(&db, dir.path()).await;
    refuse_records(&db, true).await;
    let ids: Vec<String> = (0..5).map(|i| format!("msg_spooled_{i}")).collect();
    for id in &ids {
        let (status, _) = p
            .post(&p.proxy, id, &[("x-api-key", KEY)], &request(false))
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "the caller is served while the ledger refuses"
        );
    }
    spool_holds(dir.path(), ids.len()).await;
    assert_eq!(p.store.counts().await.unwrap().records, 0);
    // Once the journal's segment is closed, it waits as a batch to replay.
    p.metric_reaches("tally_proxy_spool_depth", 5).await;
    assert_eq!(p.metric("tally_proxy_spooled_total").await, 5);
    assert_eq!(p.metric("tally_proxy_recorded_total").await, 0);
    let batches = spooled(dir.path());
    for (_, text) in &batches {
        assert!(!text.contains(PROMPT) && !text.contains(KEY), "{text}");
    }

    // The ledger takes records again: the spool is replayed, in order, and emptied.
    refuse_records(&db, false).await;
    for id in &ids {
        p.recorded(id).await;
    }
    spool_holds(dir.path(), 0).await;
    assert_eq!(p.metric("tally_proxy_spool_depth").await, 0);
    assert_eq!(p.metric("tally_proxy_recorded_total").await, 5);

    // A batch replayed twice (say, a crash between its write and its
    // removal) is recorded once.
    let (_, text) = &batches[0];
    std::fs::write(dir.path().join("batch-999999999999.ndjson"), text).unwrap();
    spool_holds(dir.path(), 0).await;
    assert_eq!(p.store.counts().await.unwrap().records, ids.len() as i64);
}

/// The end of an answer reaches the caller only once the call's record is
/// durable: with a spool, fsynced in its journal (the ledger refusing or
/// not); without one, committed to the ledger, and when the ledger refuses
/// it the caller gets a cut-off answer, never a whole one.
async fn an_answer_ends_only_once_its_record_is_durable(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let p = Proxied::spooling(&db, dir.path()).await;
    for (id, stream) in [("msg_durable_plain", false), ("msg_durable_stream", true)] {
        let (status, _) = p.post(&p.proxy, id, &[], &request(stream)).await;
        assert_eq!(status, StatusCode::OK);
        // No waiting: it is in the journal when the answer has ended (and
        // in the ledger soon after).
        assert!(in_spool(dir.path(), id), "{id} is not in the journal");
        p.recorded(id).await;
    }
    refuse_records(&db, true).await;
    for (i, stream) in [false, true].into_iter().enumerate() {
        let id = format!("msg_durable_spooled_{i}");
        let (status, _) = p.post(&p.proxy, &id, &[], &request(stream)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(in_spool(dir.path(), &id), "{id} is not in the spool");
    }
    assert_eq!(p.metric("tally_proxy_record_wait_seconds_count").await, 4);
    refuse_records(&db, false).await;
    p.recorded("msg_durable_spooled_0").await;
    p.recorded("msg_durable_spooled_1").await;

    // Without a spool, durable is committed to the ledger.
    let p = Proxied::in_front_of(&db, p.upstream.clone(), |c| {
        c.default_account = Some("acme".into())
    })
    .await;
    for (id, stream) in [
        ("msg_committed_plain", false),
        ("msg_committed_stream", true),
    ] {
        let (status, _) = p.post(&p.proxy, id, &[], &request(stream)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(p.store.record(id).await.unwrap().is_some(), "{id}");
    }
    refuse_records(&db, true).await;

    // No spool, and a ledger that refuses: the answer is cut off.
    for (id, stream) in [("msg_lost_plain", false), ("msg_lost_stream", true)] {
        let answer = p
            .http
            .post(format!("{}/v1/messages", p.proxy))
            .header("x-test-id", id)
            .json(&request(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert!(answer.bytes().await.is_err(), "{id} was answered in full");
    }
    assert_eq!(p.metric("tally_proxy_dropped_total").await, 2);
}

/// The ledger's write lock held from another connection (SQLite: a write
/// transaction; PostgreSQL: an exclusive lock on `records`), as a busy or
/// stuck database holds it: writes wait until it is released.
pub(crate) enum LedgerLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl LedgerLock {
    pub(crate) async fn take(db: &TestDb) -> LedgerLock {
        use sqlx::Connection;
        match db.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
                sqlx::raw_sql("begin immediate")
                    .execute(&mut c)
                    .await
                    .unwrap();
                LedgerLock::Sqlite(c)
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
                let lock = "begin; lock table records in access exclusive mode";
                sqlx::raw_sql(lock).execute(&mut c).await.unwrap();
                LedgerLock::Postgres(c)
            }
        }
    }

    pub(crate) async fn release(self) {
        match self {
            LedgerLock::Sqlite(mut c) => {
                sqlx::raw_sql("commit").execute(&mut c).await.unwrap();
            }
            LedgerLock::Postgres(mut c) => {
                sqlx::raw_sql("commit").execute(&mut c).await.unwrap();
            }
        }
    }
}

/// A ledger slower than the traffic: the recording queue fills, and the
/// calls past it go to the spool instead of being dropped; every call is
/// served at once and recorded once when the ledger is free again.
async fn a_full_queue_spills_to_the_spool(backend: Backend) {
    let db = TestDb::migrated(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let p = Proxied::start(&db, |c| {
        c.spool = Some(dir.path().to_owned());
        c.default_account = Some("acme".into());
        c.queue = 1;
    })
    .await;
    let lock = LedgerLock::take(&db).await;
    let ids: Vec<String> = (0..6).map(|i| format!("msg_spilled_{i}")).collect();
    for id in &ids {
        let started = std::time::Instant::now();
        let (status, _) = p.post(&p.proxy, id, &[], &request(false)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the call waited for the ledger"
        );
    }
    // The writer holds the first call, the queue the second: the rest spill.
    for _ in 0..500 {
        if p.metric("tally_proxy_spooled_total").await >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(p.metric("tally_proxy_spooled_total").await >= 4);
    assert_eq!(p.metric("tally_proxy_dropped_total").await, 0);

    lock.release().await;
    for id in &ids {
        p.recorded(id).await;
    }
    spool_holds(dir.path(), 0).await;
    assert_eq!(p.store.counts().await.unwrap().records, ids.len() as i64);
    assert_eq!(p.metric("tally_proxy_recorded_total").await, 6);
    assert_eq!(p.metric("tally_proxy_spool_depth").await, 0);
}

/// The proxy times each call itself: a slow answer's record spans the call,
/// and its container is billed from that interval (here the 300 s minimum).
async fn calls_are_timed_for_container_time(backend: Backend) {
    let db = TestDb::new(backend).await;
    let p = Proxied::start(&db, |c| c.default_account = Some("acme".into())).await;
    let mut slow = request(false);
    slow["model"] = "slow".into();
    let (status, _) = p.post(&p.proxy, "msg_slow", &[], &slow).await;
    assert_eq!(status, StatusCode::OK);
    let r = p.recorded("msg_slow").await;
    let took = r.recorded_at - r.started_at.unwrap();
    assert!(
        (1_200_000..10_000_000).contains(&took),
        "the record spans the call: {took} µs"
    );
    assert_eq!(r.container_id.as_deref(), Some("container_msg_slow"));

    let period = tally::billing::Period::of_day(tally::time::date_of(r.recorded_at));
    let invoice = tally::billing::draft_invoice(
        p.store.as_ref(),
        &tally::pricing::PriceBook::shipped(),
        "acme",
        period,
    )
    .await
    .unwrap();
    let hours = invoice
        .lines
        .iter()
        .find(|l| l.charge.as_str() == "container_hours")
        .expect("a container-hours line");
    // 1.2 s of execution, billed at the 300 s minimum.
    assert_eq!(
        hours.quantity,
        rust_decimal::Decimal::from(300) / rust_decimal::Decimal::from(3600)
    );
    assert_eq!(invoice.containers, 1);
}

on_both_backends!(
    an_answer_ends_only_once_its_record_is_durable,
    calls_are_timed_for_container_time,
    a_full_queue_spills_to_the_spool,
    the_upstream_is_reached_over_verified_tls,
    the_official_python_sdk_works_through_the_proxy,
    a_killed_proxy_replays_its_spool_once,
    broken_streams_and_callers_that_leave,
    calls_wait_in_the_spool_while_the_ledger_refuses_them,
    key_mappings_map_list_and_unmap,
    bad_mappings_are_refused_and_change_nothing,
    calls_pass_through_byte_for_byte_and_are_recorded,
    the_account_comes_from_the_key_mapping_or_the_default,
);
