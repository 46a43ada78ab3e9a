//! `POST /v1/estimate`: the workload document as JSON (SPEC 8), priced with
//! the book in force on `?at=` (default today); `?compare_models=a,b` puts
//! the same workloads on each model. It reads only the price book, so any
//! caller may ask.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use super::{ApiError, ApiQuery, AppState};
use crate::estimate::{self, WorkloadFile};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimateQuery {
    at: Option<String>,
    compare_models: Option<String>,
}

pub async fn post_estimate(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<EstimateQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // axum's default body limit (2 MiB) is far above any workload document.
    let body = body?;
    let at = match q.at.as_deref() {
        // Names the parameter: the parser's message alone would not.
        Some(s) => estimate::parse_day(s).map_err(|m| ApiError::BadRequest(format!("at: {m}")))?,
        None => Utc::now().date_naive(),
    };
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::BadRequest(format!("body is not UTF-8: {e}")))?;
    if !text.trim_start().starts_with('{') {
        return Err(ApiError::BadRequest(
            "the body must be the workload document as a JSON object".into(),
        ));
    }
    let file = WorkloadFile::parse(text)?;
    let (_, book) = state.finance.book(state.ledger.store().as_ref()).await?;
    let models: Option<Vec<String>> = q.compare_models.as_deref().map(|list| {
        list.split(',')
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .collect()
    });
    // A large document is simulated day by day: off the async workers.
    let answer = tokio::task::spawn_blocking(move || match models {
        None => estimate::estimate(&book, at, &file).map(|e| Json(e).into_response()),
        Some(models) => {
            estimate::compare_models(&book, at, &file, &models).map(|c| Json(c).into_response())
        }
    })
    .await?;
    Ok(answer?)
}
