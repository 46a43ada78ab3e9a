//! The HTTP API (axum). `router(state)` builds the whole app so tests can
//! serve it on a loopback port; `serve` adds the listener, the loopback rule
//! for unauthenticated use, and graceful shutdown.

mod error;
mod health;
mod ingest;
mod invoices;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

pub use error::ApiError;

use crate::ledger::Ledger;

/// Settings of a running server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// `TALLY_ADMIN_TOKEN`: when set, every `/v1` request must carry it.
    pub admin_token: Option<String>,
    /// Largest single-record body (`POST /v1/usage`) and longest NDJSON line.
    pub max_body_bytes: usize,
    /// Largest NDJSON body (`POST /v1/usage/batch`).
    pub max_batch_bytes: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            admin_token: None,
            max_body_bytes: 16 << 20,
            max_batch_bytes: 1 << 30,
        }
    }
}

/// Ingest counters since start, for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub conflicts: AtomicU64,
    pub rejected: AtomicU64,
}

impl Metrics {
    pub fn count(&self, results: &[crate::ingest::LineResult]) {
        for r in results {
            let counter = match r.status {
                "recorded" => &self.accepted,
                "duplicate" => &self.duplicates,
                "conflict" => &self.conflicts,
                _ => &self.rejected,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub ledger: Ledger,
    pub config: Arc<ServeConfig>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(ledger: Ledger, config: ServeConfig) -> Self {
        AppState {
            ledger,
            config: Arc::new(config),
            metrics: Arc::default(),
        }
    }
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/usage", post(ingest::post_usage))
        .route("/v1/usage/batch", post(ingest::post_batch))
        .route(
            "/v1/accounts/{account}/invoices/{period}",
            get(invoices::get_invoice),
        )
        .route(
            "/v1/accounts/{account}/invoices/{period}/finalize",
            post(invoices::finalize),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .merge(api)
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(state)
}

/// Until account keys exist, the admin token is the only credential: with it
/// configured, every `/v1` call must present it.
async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.config.admin_token {
        let presented = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), expected.as_bytes())) {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuse to expose an unauthenticated ledger beyond this machine.
pub fn check_listen_policy(addr: &SocketAddr, config: &ServeConfig) -> Result<(), String> {
    if config.admin_token.is_none() && !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {addr} without TALLY_ADMIN_TOKEN: without an admin token tally serves only on loopback (e.g. 127.0.0.1:8080)"
        ));
    }
    Ok(())
}

/// Serve until `shutdown` resolves, then finish in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    if state.config.admin_token.is_none() {
        tracing::warn!(
            "no TALLY_ADMIN_TOKEN set: serving on loopback only, without authentication"
        );
    }
    tracing::info!("tally listening on http://{addr}");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
