//! Billing details over HTTP: `GET/PUT/PATCH /v1/org` (the seller's) and
//! `GET/PUT/PATCH /v1/accounts/{account}/details` (an account's). `PUT`
//! takes the whole details (fields left out are cleared); `PATCH` a JSON
//! merge patch (a field given is set, `null` clears it, the rest stay).
//! Both are the admin's, and a body the document forbids changes nothing;
//! an account key may read its own account's details.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};

use super::Blame;
use super::body::{self, BodyOf};
use super::{AccountScope, ApiBody, ApiError, AppState};
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

/// What the details of `party` may not hold.
fn checked(party: &str, details: Details) -> Result<Details, String> {
    details.validate()?;
    if party == SELLER && details.has_account_terms() {
        return Err(
            "the seller's details take name, email, address and tax_id: tax rate, label, reverse charge and terms are set per account".into(),
        );
    }
    if party != SELLER && details.has_seller_settings() {
        return Err("paper is the seller's setting (PUT /v1/org), not an account's".into());
    }
    Ok(details)
}

/// Store `details` (checked) as `party`'s.
async fn write(state: &AppState, party: &str, details: Details) -> Result<Details, ApiError> {
    let json = serde_json::to_string(&details).internal()?;
    state.ledger.store().set_details(party, &json).await?;
    Ok(details)
}

/// The body and patch schemas of `party`'s details.
fn shapes(party: &str) -> (BodyOf, BodyOf) {
    if party == SELLER {
        (BodyOf::SellerDetails, BodyOf::SellerDetailsPatch)
    } else {
        (BodyOf::AccountDetails, BodyOf::AccountDetailsPatch)
    }
}

/// `PUT` replaces `party`'s details with the body, `PATCH` merges it in.
async fn set(
    state: &AppState,
    method: &Method,
    party: &str,
    body: &[u8],
) -> Result<Details, ApiError> {
    if method == Method::PATCH {
        patch(state, party, body).await
    } else {
        replace(state, party, body).await
    }
}

/// `PUT`: the body is the whole details.
async fn replace(state: &AppState, party: &str, body: &[u8]) -> Result<Details, ApiError> {
    let (whole, _) = shapes(party);
    let details = body::parse(whole, body, |d| checked(party, d).invalid())?;
    write(state, party, details).await
}

/// `PATCH`: the stored details with the body merged in, checked whole.
async fn patch(state: &AppState, party: &str, body: &[u8]) -> Result<Details, ApiError> {
    let (whole, patch) = shapes(party);
    let changes = body::object(patch, body)?;
    let current = match serde_json::to_value(read(state, party).await?).internal()? {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    let merged = serde_json::Value::Object(body::merge(current, changes));
    let bytes = serde_json::to_vec(&merged).internal()?;
    let details = body::parse(whole, &bytes, |d| checked(party, d).invalid())?;
    write(state, party, details).await
}

/// `GET /v1/org`: the seller's details (admin).
pub async fn get_org(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    super::admin_only(&principal, "read the seller's details")?;
    Ok(Json(read(&state, SELLER).await?).into_response())
}

/// `PUT` or `PATCH /v1/org` (admin).
pub async fn set_org(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    method: Method,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    super::admin_only(&principal, "set the seller's details")?;
    Ok(Json(set(&state, &method, SELLER, &body).await?).into_response())
}

/// `GET /v1/accounts/{account}/details`.
pub async fn get_details(
    State(state): State<AppState>,
    scope: AccountScope,
) -> Result<Response, ApiError> {
    let account = scope.readable()?;
    Ok(Json(read(&state, account).await?).into_response())
}

/// `PUT` or `PATCH /v1/accounts/{account}/details` (admin).
pub async fn set_details(
    State(state): State<AppState>,
    scope: AccountScope,
    method: Method,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    let account = scope.admin("set billing details")?;
    Ok(Json(set(&state, &method, account, &body).await?).into_response())
}
