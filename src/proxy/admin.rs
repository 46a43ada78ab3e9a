//! The proxy's admin surface, on its own address (`--admin-listen`), never
//! on the proxied one: `GET /healthz` and `GET /metrics` (Prometheus text).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::ProxyState;

/// Counters since start, and the calls waiting in the spool.
#[derive(Debug, Default)]
pub struct ProxyMetrics {
    /// Requests forwarded (every path).
    pub requests: AtomicU64,
    /// Calls written to the ledger (straight away or from the spool).
    pub recorded: AtomicU64,
    /// Calls left in the spool for the replayer.
    pub spooled: AtomicU64,
    /// Calls lost: the queue was full, or the ledger refused them with no spool.
    pub dropped: AtomicU64,
    /// Calls in the spool now.
    pub spool_depth: AtomicI64,
    /// Time to the upstream's answer headers, summed (microseconds), and calls timed.
    pub upstream_micros: AtomicU64,
    pub upstream_calls: AtomicU64,
    /// Time from an answer's end to its record being durable (the end
    /// waits for it), summed (microseconds), and calls timed.
    pub record_micros: AtomicU64,
    pub record_waits: AtomicU64,
}

impl ProxyMetrics {
    pub(super) fn count(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

pub fn admin_router(state: ProxyState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The proxy serves whatever the ledger does: with the ledger down it is
/// degraded (calls go to the spool), not dead, so the answer is 200 either
/// way; health says which, and how far behind recording is.
async fn healthz(State(state): State<ProxyState>) -> Response {
    let depth = state.metrics.spool_depth.load(Ordering::Relaxed);
    let up = state.recorder.ledger_up();
    let (status, ledger) = if up {
        ("ok", "up")
    } else {
        ("degraded", "down")
    };
    axum::Json(json!({"status": status, "ledger": ledger, "spool_depth": depth})).into_response()
}

/// One metric family in the Prometheus text format: its help, its type and
/// its samples (name suffix, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, String)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (suffix, value) in samples {
        let _ = writeln!(out, "{name}{suffix} {value}");
    }
}

async fn metrics(State(state): State<ProxyState>) -> Response {
    let m = &state.metrics;
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
    let mut out = String::new();
    let counters = [
        ("requests", "Requests forwarded.", &m.requests),
        ("recorded", "Calls written to the ledger.", &m.recorded),
        (
            "spooled",
            "Calls left in the spool for the replayer.",
            &m.spooled,
        ),
        ("dropped", "Calls that could not be recorded.", &m.dropped),
    ];
    for (name, help, counter) in counters {
        let name = format!("tally_proxy_{name}_total");
        family(&mut out, &name, "counter", help, &[("", load(counter))]);
    }
    let depth = m.spool_depth.load(Ordering::Relaxed).to_string();
    let help = "Calls waiting in the spool.";
    family(
        &mut out,
        "tally_proxy_spool_depth",
        "gauge",
        help,
        &[("", depth)],
    );
    let up = u8::from(state.recorder.ledger_up()).to_string();
    let help = "Whether the ledger takes calls (0: they go to the spool).";
    family(
        &mut out,
        "tally_proxy_ledger_up",
        "gauge",
        help,
        &[("", up)],
    );
    let summaries = [
        (
            "tally_proxy_upstream_seconds",
            "Time to the upstream's answer headers.",
            &m.upstream_micros,
            &m.upstream_calls,
        ),
        (
            "tally_proxy_record_wait_seconds",
            "Time from an answer's end to its record being durable.",
            &m.record_micros,
            &m.record_waits,
        ),
    ];
    for (name, help, micros, count) in summaries {
        let micros = micros.load(Ordering::Relaxed);
        let seconds = format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
        let samples = [("_sum", seconds), ("_count", load(count))];
        family(&mut out, name, "summary", help, &samples);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
