//! `tally proxy`: a pass-through proxy for the Anthropic API that records
//! every successful `POST /v1/messages` on its way back to the caller.
//!
//! - Requests are forwarded as they came (method, path, query, headers,
//!   body streamed), less hop-by-hop headers and `x-tally-account`; answers
//!   go back as they came, streamed chunk by chunk (server-sent events are
//!   passed on as they arrive). Only `/v1/…` paths are forwarded, to the
//!   one configured upstream: the proxy is no open relay.
//! - A copy of the request and the answer is assembled on the side
//!   ([`capture`]) as they pass ([`answer`]); once the answer has ended it is
//!   handed to the recorder ([`recorder`]), which commits the calls that end
//!   together in one transaction, or fsyncs them in the spool when the
//!   ledger is slow or down ([`link`], [`spool`], [`replay`]). The end of the
//!   answer reaches the caller only then: a call answered in full is billed.
//! - The caller's API key is hashed on arrival; only the hash goes further
//!   (to find the account it is mapped to, and the first 12 hex digits as
//!   `api_key_id`). The key is never stored or logged.

mod admin;
mod answer;
mod capture;
mod journal;
mod link;
mod recorder;
mod replay;
mod sink;
mod spool;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;

use crate::record::Retention;
use crate::store::Store;
pub use admin::{ProxyMetrics, admin_router};
use answer::Answer;
use capture::{Capture, RequestCopy};
pub use link::{LedgerLink, OPEN_PATIENCE};
pub use recorder::Recorder;
use sink::Sink;

/// Settings of a running proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where requests go: scheme, host and port (a path prefix is kept).
    pub upstream: reqwest::Url,
    /// The account of calls that name none and whose key is not mapped.
    pub default_account: Option<String>,
    /// What is kept of each recorded line (`billing` by default).
    pub retention: Retention,
    /// Largest request or answer body copied for recording; a larger one is
    /// still forwarded whole, and recorded without what did not fit.
    pub max_record_bytes: usize,
    /// Calls waiting for the writer before new ones go straight to the spool.
    pub queue: usize,
    /// Where calls the ledger cannot take wait (fsynced) until it can.
    pub spool: Option<std::path::PathBuf>,
    /// PEM certificates of the authorities the upstream's TLS certificate is
    /// checked against instead of the system's and the bundled web roots.
    pub upstream_ca: Option<Vec<u8>>,
}

impl ProxyConfig {
    pub fn new(upstream: reqwest::Url) -> ProxyConfig {
        ProxyConfig {
            upstream,
            default_account: None,
            retention: Retention::Billing,
            max_record_bytes: crate::ingest::lines::MAX_LINE_BYTES,
            queue: 10_000,
            spool: None,
            upstream_ca: None,
        }
    }
}

#[derive(Clone)]
pub struct ProxyState {
    client: reqwest::Client,
    config: Arc<ProxyConfig>,
    recorder: Recorder,
    metrics: Arc<ProxyMetrics>,
}

impl ProxyState {
    /// The proxy's state, its recorder writing to `store` (and to the spool
    /// when it cannot).
    pub fn new(store: Arc<dyn Store>, config: ProxyConfig) -> std::io::Result<ProxyState> {
        ProxyState::with_link(LedgerLink::open(store), config)
    }

    /// The proxy's state, recording through `link` (a ledger that may not
    /// be open yet).
    pub fn with_link(link: LedgerLink, config: ProxyConfig) -> std::io::Result<ProxyState> {
        // The caller decides about redirects; the proxy passes them on.
        let mut client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &config.upstream_ca {
            let authorities = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("--upstream-ca: {e}"),
                )
            })?;
            if authorities.is_empty() {
                let none = "--upstream-ca: no PEM certificate in the file";
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, none));
            }
            client = client.tls_built_in_root_certs(false);
            for authority in authorities {
                client = client.add_root_certificate(authority);
            }
        }
        let client = client.build().map_err(std::io::Error::other)?;
        let metrics = Arc::new(ProxyMetrics::default());
        let spool = match &config.spool {
            Some(dir) => Some(Arc::new(spool::Spool::open(dir)?)),
            None => None,
        };
        let sink = Sink {
            link: Arc::new(link),
            spool,
            default_account: config.default_account.clone(),
            retention: config.retention,
            metrics: metrics.clone(),
        };
        let recorder = Recorder::start(sink, config.queue)?;
        Ok(ProxyState {
            client,
            config: Arc::new(config),
            recorder,
            metrics,
        })
    }
}

/// Every path goes through [`forward`].
pub fn router(state: ProxyState) -> Router {
    Router::new().fallback(forward).with_state(state)
}

/// Headers that describe one connection, not the message: never forwarded
/// (RFC 9110 7.6.1), plus `host` (the client sets the upstream's).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// The request header that names the account; removed before forwarding.
pub const ACCOUNT_HEADER: &str = "x-tally-account";

fn end_to_end(headers: &HeaderMap, also_drop: &[&str]) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name.as_str();
        if !HOP_BY_HOP.contains(&n) && !also_drop.contains(&n) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// An error of the proxy's own, shaped like the API's errors.
fn proxy_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "type": "error",
        "error": {"type": kind, "message": message},
    });
    (status, axum::Json(body)).into_response()
}

/// The call is forwarded on a task of its own, so a caller that goes away
/// while the upstream is still thinking does not cancel it: the upstream
/// answers (and bills) all the same, and the call is recorded.
async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    match tokio::spawn(exchange(state, request)).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "a forwarded call failed");
            proxy_error(
                StatusCode::BAD_GATEWAY,
                "api_error",
                "tally proxy: the call failed",
            )
        }
    }
}

async fn exchange(state: ProxyState, request: Request) -> Response {
    let started_at = crate::time::now_micros();
    let (parts, body) = request.into_parts();
    if !parts.uri.path().starts_with("/v1/") {
        return proxy_error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "tally proxy forwards /v1/ paths only",
        );
    }
    ProxyMetrics::count(&state.metrics.requests, 1);
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(url) = state
        .config
        .upstream
        .join(path_and_query.trim_start_matches('/'))
    else {
        return proxy_error(StatusCode::BAD_REQUEST, "invalid_request_error", "bad path");
    };
    let records = parts.method == Method::POST && parts.uri.path() == "/v1/messages";
    let copy = records.then(|| RequestCopy::new(&parts.headers, state.config.max_record_bytes));
    let upload = body.into_data_stream();
    let upload = match &copy {
        Some(copy) => reqwest::Body::wrap_stream(copy.tee(upload)),
        None => reqwest::Body::wrap_stream(upload),
    };
    let sent = std::time::Instant::now();
    let upstream = state
        .client
        .request(parts.method.clone(), url)
        .headers(end_to_end(&parts.headers, &[ACCOUNT_HEADER]))
        .body(upload)
        .send()
        .await;
    let answer = match upstream {
        Ok(answer) => answer,
        Err(e) => {
            // The cause stays in the log; the URL holds no secret, the headers are not logged.
            tracing::warn!(error = %e, "upstream unreachable");
            return proxy_error(
                StatusCode::BAD_GATEWAY,
                "api_error",
                "tally proxy: the upstream could not be reached",
            );
        }
    };
    let waited = sent.elapsed().as_micros();
    ProxyMetrics::count(&state.metrics.upstream_micros, waited as usize);
    ProxyMetrics::count(&state.metrics.upstream_calls, 1);
    let status = answer.status();
    let declared = answer.content_length();
    let headers = end_to_end(answer.headers(), &[]);
    let stream = answer.bytes_stream().map_err(std::io::Error::other);
    let body = match copy {
        Some(copy) if status == StatusCode::OK => {
            let capture = Capture::begin(copy, &headers, started_at, state.config.retention);
            Body::from_stream(Answer::new(
                stream,
                declared,
                is_event_stream(&headers),
                capture,
                state.recorder.clone(),
                state.config.max_record_bytes,
            ))
        }
        _ => Body::from_stream(stream),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// `content-type: text/event-stream`?
fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// The response header naming the workspace that served the call.
const WORKSPACE_HEADER: HeaderName = HeaderName::from_static("anthropic-workspace-id");
