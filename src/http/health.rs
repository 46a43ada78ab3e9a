//! Liveness and Prometheus metrics.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, AppState};
use crate::auth::Principal;

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

pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
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
    // Spend is for those who may read it: the admin sees every account, an
    // account key its own; a scrape without credentials gets the counters only.
    if let Ok(principal) = super::principal_of(&state, &headers).await {
        match spend(&state, &principal).await {
            Ok(text) => out.push_str(&text),
            Err(e) => return e.into_response(),
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Month-to-date spend per account and cost type, from the figures the
/// dashboard keeps (the invoices' subtotals and totals of the current
/// period, recomputed once the ledger has changed and `--finance-max-age`
/// has passed), and unbilled refusals per account. Amounts are the invoices'
/// decimal strings, never converted through a float.
async fn spend(state: &AppState, principal: &Principal) -> Result<String, ApiError> {
    let period = crate::billing::Period::of_day(chrono::Utc::now().date_naive());
    let snap = state
        .finance
        .costs(state.ledger.store().as_ref(), period)
        .await?;
    let visible = snap.costs.accounts.iter().filter(|a| match principal {
        Principal::Admin => true,
        Principal::Account(own) => *own == a.invoice.account,
    });
    let mut spend = String::from(
        "# HELP tally_spend_usd Month-to-date spend (the draft or finalized invoice), by account and cost type, USD.\n\
         # TYPE tally_spend_usd gauge\n",
    );
    let mut totals = String::from(
        "# HELP tally_spend_total_usd Month-to-date spend by account at its prices, USD: usage and adjustments (what budgets count).\n\
         # TYPE tally_spend_total_usd gauge\n",
    );
    let mut due = String::from(
        "# HELP tally_amount_due_usd Month-to-date invoice total by account, USD: spend, minimum commitment and prepaid credit drawn.\n\
         # TYPE tally_amount_due_usd gauge\n",
    );
    let mut refusals = String::from(
        "# HELP tally_unbilled_refusals Refusals before any output not charged this month, by account.\n\
         # TYPE tally_unbilled_refusals gauge\n",
    );
    for a in visible {
        let i = &a.invoice;
        for (cost_type, amount) in [
            ("tokens", i.subtotals.tokens),
            ("web_search", i.subtotals.web_search),
            ("code_execution", i.subtotals.code_execution),
        ] {
            let _ = writeln!(
                spend,
                "tally_spend_usd{{account=\"{}\",cost_type=\"{cost_type}\",period=\"{period}\"}} {amount}",
                i.account
            );
        }
        let _ = writeln!(
            totals,
            "tally_spend_total_usd{{account=\"{}\",period=\"{period}\"}} {}",
            i.account,
            i.spend()
        );
        let _ = writeln!(
            due,
            "tally_amount_due_usd{{account=\"{}\",period=\"{period}\"}} {}",
            i.account, i.total
        );
        let _ = writeln!(
            refusals,
            "tally_unbilled_refusals{{account=\"{}\",period=\"{period}\"}} {}",
            i.account, i.unbilled_refusals
        );
    }
    Ok(spend + &totals + &due + &refusals)
}
