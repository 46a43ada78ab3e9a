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

use crate::auth::Principal;
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
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .merge(api)
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(state)
}

/// Resolve who is calling and put it in the request's extensions.
///
/// With an admin token configured, every `/v1` request needs a bearer: the
/// admin token, or an active account key. Without one (loopback only), a
/// request without a bearer acts as admin, and one with an account key acts
/// as that account.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let principal = match (&state.config.admin_token, presented) {
        (None, None) => Principal::Admin,
        (Some(admin), Some(p)) if crate::auth::constant_time_eq(p.as_bytes(), admin.as_bytes()) => {
            Principal::Admin
        }
        (_, Some(p)) => match state
            .ledger
            .store()
            .key_account(&crate::auth::hash_key(&p))
            .await
        {
            Ok(Some(account)) => Principal::Account(account),
            Ok(None) => return ApiError::Unauthorized.into_response(),
            Err(e) => return ApiError::Storage(e.to_string()).into_response(),
        },
        (Some(_), None) => return ApiError::Unauthorized.into_response(),
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
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
