//! The HTTP API (axum). `router(state)` builds the whole app so tests can
//! serve it on a loopback port; `serve` adds the listener, the loopback rule
//! for unauthenticated use, and graceful shutdown.

mod body;
mod credits;
mod details;
mod error;
mod estimate;
mod finance;
mod health;
mod ingest;
mod invoices;
pub mod openapi;
mod plans;
mod scope;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub use error::{ApiBody, ApiError, ApiPath, ApiQuery, Blame};
use scope::{AccountScope, admin_only, check_account};

use crate::auth::Principal;
use crate::finance::webhook::Webhook;
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
    /// What is kept of each ingested line.
    pub retention: crate::record::Retention,
    /// Budget alerts are POSTed here when set.
    pub alert_webhook: Option<String>,
    /// How often budgets are checked (and undelivered alerts retried).
    pub alert_interval: std::time::Duration,
    /// How long finance views may reuse a period's figures while records
    /// keep arriving (when nothing changed they are reused regardless).
    pub finance_max_age: std::time::Duration,
    /// The oldest `recorded_at` accepted (`--oldest`; None: 2000-01-01).
    pub oldest: Option<crate::time::Micros>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            admin_token: None,
            max_body_bytes: crate::ingest::lines::MAX_LINE_BYTES,
            max_batch_bytes: 1 << 30,
            retention: crate::record::Retention::Full,
            alert_webhook: None,
            alert_interval: std::time::Duration::from_secs(60),
            finance_max_age: std::time::Duration::from_secs(10),
            oldest: None,
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
    pub finance: Arc<crate::finance::FinanceCache>,
    /// One turn for a record body declared over [`crate::ingest::CHUNK_BYTES`]:
    /// concurrent uploads of large records are read one at a time, so the
    /// server holds one such record in memory, not one per connection.
    pub large_body_turn: Arc<tokio::sync::Semaphore>,
    /// The webhook every event goes to (one client for the server's life).
    pub webhook: Option<Webhook>,
}

impl AppState {
    pub fn new(ledger: Ledger, config: ServeConfig) -> Self {
        let webhook = config.alert_webhook.as_deref().and_then(|url| {
            Webhook::new(url)
                .inspect_err(|e| tracing::error!("the alert webhook cannot be used: {e}"))
                .ok()
        });
        AppState {
            webhook,
            ledger,
            finance: Arc::new(crate::finance::FinanceCache::new(config.finance_max_age)),
            config: Arc::new(config),
            metrics: Arc::default(),
            large_body_turn: Arc::new(tokio::sync::Semaphore::new(1)),
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
        .route("/v1/invoices", get(finance::period_invoices))
        .route(
            "/v1/accounts/{account}/budget",
            get(finance::get_budget).put(finance::put_budget),
        )
        .route(
            "/v1/accounts/{account}/plan",
            get(plans::get_plan).put(plans::put_plan),
        )
        .route(
            "/v1/accounts/{account}/credits",
            get(credits::get_credits).post(credits::post_credit),
        )
        .route("/v1/accounts/{account}/balance", get(credits::get_balance))
        .route(
            "/v1/accounts/{account}/details",
            get(details::get_details)
                .put(details::set_details)
                .patch(details::set_details),
        )
        .route(
            "/v1/org",
            get(details::get_org)
                .put(details::set_org)
                .patch(details::set_org),
        )
        .route("/v1/alerts", get(finance::alerts))
        .route("/v1/cost_report", get(finance::cost_report))
        .route("/v1/exports/focus", get(finance::focus_export))
        .route("/v1/exports/quickbooks", get(finance::quickbooks_export))
        .route("/v1/exports/xero", get(finance::xero_export))
        .route("/v1/estimate", post(estimate::post_estimate))
        .route("/", get(finance::dashboard))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .merge(api)
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::serve))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(record_response)
                // A 5xx is logged once, with its cause, where `ApiError`
                // answers it; the layer's own line would only repeat it.
                .on_failure(()),
        )
        .with_state(state)
}

/// The span of one request: its method and matched route (the template,
/// e.g. `/v1/accounts/{account}/budget`); the account and period once a
/// handler knows them ([`note_target`]), the lines of a batch; then its
/// status and latency. Every log line of the request (an error's cause
/// too) carries them. Neither headers nor the query string are logged:
/// bearer tokens and API keys must never reach a log.
fn request_span(request: &Request) -> tracing::Span {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("(no route)", MatchedPath::as_str);
    tracing::info_span!(
        "request",
        method = %request.method(),
        path,
        account = tracing::field::Empty,
        period = tracing::field::Empty,
        lines = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    )
}

/// Records the answer on the request's span, with one DEBUG line per
/// request (`TALLY_LOG=info,tally=debug` to see them).
fn record_response(response: &Response, latency: Duration, span: &tracing::Span) {
    span.record("status", response.status().as_u16());
    span.record(
        "latency_ms",
        tracing::field::display(format_args!("{:.3}", latency.as_secs_f64() * 1000.0)),
    );
    tracing::debug!("answered");
}

/// Put the account and period a request is about on its span (quoted, as
/// they come from the client).
fn note_target(account: Option<&str>, period: Option<&str>) {
    let span = tracing::Span::current();
    if let Some(account) = account {
        span.record("account", tracing::field::debug(account));
    }
    if let Some(period) = period {
        span.record("period", tracing::field::debug(period));
    }
}

/// Resolve who is calling and put it in the request's extensions.
///
/// With an admin token configured, every `/v1` request needs a bearer: the
/// admin token, or an active account key. Without one (loopback only), a
/// request without a bearer acts as admin, and one with an account key acts
/// as that account.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let principal = match principal_of(&state, request.headers()).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// Who the request's credentials name: the admin (its token, or no token
/// configured and none sent), or the account of an account key.
pub(crate) async fn principal_of(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Principal, ApiError> {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_or_basic);
    match (&state.config.admin_token, presented) {
        (None, None) => Ok(Principal::Admin),
        (Some(admin), Some(p)) if crate::auth::constant_time_eq(p.as_bytes(), admin.as_bytes()) => {
            Ok(Principal::Admin)
        }
        (_, Some(p)) => match state
            .ledger
            .store()
            .key_account(&crate::auth::hash_key(&p))
            .await?
        {
            Some(account) => Ok(Principal::Account(account)),
            None => Err(ApiError::Unauthorized),
        },
        (Some(_), None) => Err(ApiError::Unauthorized),
    }
}

/// The key from `Bearer KEY`, or from HTTP Basic auth's password (so a
/// browser can open the dashboard: it asks for the key once).
fn bearer_or_basic(header: &str) -> Option<String> {
    if let Some(key) = header.strip_prefix("Bearer ") {
        return Some(key.to_owned());
    }
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(header.strip_prefix("Basic ")?.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_owned())
}

/// Check budgets and credit balances every `alert_interval`: record crossed
/// thresholds and POST undelivered alerts to the webhook.
fn spawn_alerts(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.config.alert_interval);
        loop {
            tick.tick().await;
            check_alerts(&state).await;
        }
    })
}

/// Keep the current month's costs computed in the background (from start,
/// then every half `finance_max_age`), so the dashboard and cost report of
/// the month finance opens most find them ready instead of computing them
/// on the request (seconds on a month of millions of records).
fn spawn_warm_current_month(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = (state.config.finance_max_age / 2).max(std::time::Duration::from_secs(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let period = crate::billing::Period::of_day(chrono::Utc::now().date_naive());
            if let Err(e) = state
                .finance
                .costs(state.ledger.store().as_ref(), period)
                .await
            {
                tracing::warn!("computing this month's costs failed: {e}");
            }
        }
    })
}

/// How often a server folds the roll-ups' writer shards (PostgreSQL).
const COMPACT_ROLLUPS_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Fold the roll-ups' writer shards now and then, so reads that split by a
/// dimension stay fast on a ledger fed by many concurrent writes (see
/// [`crate::store::Writes::compact_rollups`]).
fn spawn_compact_rollups(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(COMPACT_ROLLUPS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // not at start: a fresh server has better to do
        loop {
            tick.tick().await;
            if let Err(e) = state.ledger.store().compact_rollups().await {
                tracing::warn!("folding the roll-ups' shards failed: {e}");
            }
        }
    })
}

async fn check_alerts(state: &AppState) {
    let webhook = state.webhook.as_ref();
    // Each step on its own: one that fails (and is logged) holds back none
    // of the others, above all not the delivery of what is already recorded.
    let store = state.ledger.store().as_ref();
    let now = chrono::Utc::now();
    let budgets = async {
        if !store.budgets().await?.is_empty() {
            let period = crate::billing::Period::of_day(now.date_naive());
            let snap = state.finance.costs(store, period).await?;
            crate::finance::budget::check(store, &snap.costs, now).await?;
        }
        Ok::<_, crate::billing::BillingError>(())
    };
    if let Err(e) = budgets.await {
        tracing::warn!("budget check failed: {e}");
    }
    let credits = async {
        let figures = crate::finance::credits::Figures::cached(&state.finance, store).await?;
        crate::finance::credits::check(store, &figures, now).await?;
        Ok::<_, crate::billing::BillingError>(())
    };
    if let Err(e) = credits.await {
        tracing::warn!("credit balance check failed: {e}");
    }
    if let Some(webhook) = webhook {
        crate::finance::deliver_events(store, webhook).await;
    }
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
    // Background work lives as long as the server, not longer.
    let background = [
        spawn_alerts(state.clone()),
        spawn_warm_current_month(state.clone()),
        spawn_compact_rollups(state.clone()),
    ];
    let served = axum::serve(crate::net::without_delay(listener), router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    for task in background {
        task.abort();
    }
    served
}
