//! Billing details over HTTP: `GET/PUT /v1/org` (the seller's) and
//! `GET/PUT /v1/accounts/{account}/details` (an account's). `PUT` takes the
//! whole details as JSON (fields left out are cleared) and is the admin's;
//! an account key may read its own account's details.

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};

use super::{ApiBody, ApiError, ApiPath, AppState, check_account};
use crate::auth::Principal;
use crate::billing::details::{Details, SELLER};

async fn read(state: &AppState, party: &str) -> Result<Details, ApiError> {
    Ok(
        match state.ledger.store().details_as_of(party, i64::MAX).await? {
            Some(s) => Details::from_stored(&s.details)?,
            None => Details::default(),
        },
    )
}

async fn write(state: &AppState, party: &str, body: &[u8]) -> Result<Details, ApiError> {
    let details: Details = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "body: expected the billing details as JSON (name, email, address, tax_id, tax_rate_percent, tax_label, reverse_charge, terms_days; the seller's also paper): {e}"
        ))
    })?;
    details.validate().map_err(ApiError::BadRequest)?;
    if party == SELLER && details.has_account_terms() {
        return Err(ApiError::BadRequest(
            "the seller's details take name, email, address and tax_id: tax rate, label, reverse charge and terms are set per account".into(),
        ));
    }
    if party != SELLER && details.has_seller_settings() {
        return Err(ApiError::BadRequest(
            "paper is the seller's setting (PUT /v1/org), not an account's".into(),
        ));
    }
    let json = serde_json::to_string(&details).map_err(ApiError::internal)?;
    state.ledger.store().set_details(party, &json).await?;
    Ok(details)
}

/// `GET /v1/org`: the seller's details (admin).
pub async fn get_org(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    super::admin_only(&principal, "read the seller's details")?;
    Ok(Json(read(&state, SELLER).await?).into_response())
}

/// `PUT /v1/org` (admin).
pub async fn put_org(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    super::admin_only(&principal, "set the seller's details")?;
    Ok(Json(write(&state, SELLER, &body).await?).into_response())
}

/// `GET /v1/accounts/{account}/details`.
pub async fn get_details(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(account): ApiPath<String>,
) -> Result<Response, ApiError> {
    check_account(&account)?;
    if !principal.may_access(&account) {
        return Err(ApiError::NotFound(format!("no account {account:?}")));
    }
    Ok(Json(read(&state, &account).await?).into_response())
}

/// `PUT /v1/accounts/{account}/details` (admin).
pub async fn put_details(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(account): ApiPath<String>,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    check_account(&account)?;
    super::admin_only(&principal, "set billing details")?;
    Ok(Json(write(&state, &account, &body).await?).into_response())
}
