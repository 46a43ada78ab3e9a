//! `PUT /v1/accounts/{account}/plan` (the plan file as TOML in the body)
//! and `GET /v1/accounts/{account}/plan`: the admin's only. A plan says
//! what the account's usage costs relative to its price, so an account key
//! may not read it.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::Blame;
use super::{AccountScope, ApiBody, ApiError, AppState};
use crate::plans::Plan;

/// `GET /v1/accounts/{account}/plan`: the plan in force (404 without one).
pub async fn get_plan(
    State(state): State<AppState>,
    scope: AccountScope,
) -> Result<Response, ApiError> {
    let account = scope.admin("read or set plans")?;
    let Some(stored) = state.ledger.store().plan(account).await? else {
        return Err(ApiError::NotFound(format!(
            "account {account:?} has no plan: it is billed at cost"
        )));
    };
    // Validated when set: a stored plan that no longer parses is tally's fault.
    let plan = Plan::parse(&stored.toml).internal()?;
    Ok(Json(crate::plans::as_json(&stored, &plan)).into_response())
}

/// `PUT /v1/accounts/{account}/plan` with the plan file (TOML) as the body:
/// validated whole (a 400 with the line and the reason changes nothing),
/// then in force; answers as `GET` does.
pub async fn put_plan(
    State(state): State<AppState>,
    scope: AccountScope,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    let account = scope.admin("read or set plans")?;
    let text = std::str::from_utf8(&body).field("body: the plan must be UTF-8 TOML")?;
    let plan = Plan::parse(text).field("plan")?;
    let stored = state.ledger.store().set_plan(account, text).await?;
    Ok(Json(crate::plans::as_json(&stored, &plan)).into_response())
}
