//! Liveness and Prometheus metrics.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;

/// 200 when the database answers, 503 otherwise.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.ledger.store().ping().await {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::error!("health check failed: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let m = &state.metrics;
    let mut out = String::new();
    out.push_str(
        "# HELP tally_ingested_lines_total Lines ingested over HTTP since start, by outcome.\n",
    );
    out.push_str("# TYPE tally_ingested_lines_total counter\n");
    for (outcome, counter) in [
        ("accepted", &m.accepted),
        ("duplicate", &m.duplicates),
        ("conflict", &m.conflicts),
        ("rejected", &m.rejected),
    ] {
        let _ = writeln!(
            out,
            "tally_ingested_lines_total{{outcome=\"{outcome}\"}} {}",
            counter.load(Ordering::Relaxed)
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
