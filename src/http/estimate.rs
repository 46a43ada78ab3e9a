//! `POST /v1/estimate`: the workload document as JSON (docs/estimates.md), priced with
//! the book in force on `?at=` (default today); `?compare_models=a,b` puts
//! the same workloads on each model. An account key's estimate is priced at
//! its account's plan (it never sees cost); the admin's is at cost, or at
//! the plan of `?account=A`.

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use super::Blame;
use super::{ApiBody, ApiError, ApiQuery, AppState, check_account};
use crate::auth::Principal;
use crate::estimate::{self, WorkloadFile};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimateQuery {
    at: Option<String>,
    compare_models: Option<String>,
    account: Option<String>,
}

pub async fn post_estimate(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(q): ApiQuery<EstimateQuery>,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    // axum's default body limit (2 MiB) is far above any workload document.
    let at = match q.at.as_deref() {
        // Names the parameter: the parser's message alone would not.
        Some(s) => estimate::parse_day(s).field("at")?,
        None => Utc::now().date_naive(),
    };
    let text = std::str::from_utf8(&body).field("body is not UTF-8")?;
    if !text.trim_start().starts_with('{') {
        return Err(ApiError::BadRequest(
            "the body must be the workload document as a JSON object".into(),
        ));
    }
    let file = WorkloadFile::parse(text)?;
    let store = state.ledger.store().as_ref();
    let (_, book) = state.finance.book(store).await?;
    let account = match (&principal, q.account) {
        (Principal::Account(own), None) => Some(own.clone()),
        (Principal::Account(own), Some(a)) if a == *own => Some(a),
        (Principal::Account(_), Some(_)) => {
            return Err(ApiError::Forbidden(
                "an account key estimates at its own account's prices only".into(),
            ));
        }
        (Principal::Admin, a) => a,
    };
    let plan = match &account {
        Some(a) => {
            check_account(a)?;
            crate::plans::plan_of(store, a)
                .await
                .map_err(crate::billing::BillingError::from)?
        }
        None => None,
    };
    let models: Option<Vec<String>> = q.compare_models.as_deref().map(|list| {
        list.split(',')
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .collect()
    });
    // A large document is simulated day by day: off the async workers.
    let answer = tokio::task::spawn_blocking(move || match models {
        None => estimate::estimate_for(&book, plan, at, &file).map(|mut e| {
            e.account = account;
            Json(e).into_response()
        }),
        Some(models) => estimate::compare_models(&book, plan, at, &file, &models)
            .map(|c| Json(c).into_response()),
    })
    .await?;
    Ok(answer?)
}
