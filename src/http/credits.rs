//! Prepaid credit over HTTP: `GET /v1/accounts/{account}/credits` (grants,
//! what each invoice drew, the balance), `POST …/credits` (a grant, admin
//! only) and `GET /v1/accounts/{account}/balance` (may the account keep
//! spending: for gateways that stop a prepaid customer at zero). An account
//! key reads its own account only (another's answers 404).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use super::Blame;
use super::body::{self, BodyOf};
use super::{AccountScope, ApiBody, ApiError, AppState};
use crate::finance::credits::{self, Figures};

/// `GET /v1/accounts/{account}/credits`.
pub async fn get_credits(
    State(state): State<AppState>,
    scope: AccountScope,
) -> Result<Response, ApiError> {
    let account = scope.readable()?;
    let store = state.ledger.store().as_ref();
    let figures = Figures::cached(&state.finance, store).await?;
    let status = credits::status(store, &figures, account, Utc::now()).await?;
    Ok(Json(status).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    usd: String,
    expires: Option<String>,
    note: Option<String>,
    low_balance_usd: Option<String>,
}

/// A grant as asked for, each field parsed (a message naming the field otherwise).
struct Grant {
    usd: rust_decimal::Decimal,
    expires: Option<chrono::NaiveDate>,
    note: Option<String>,
    threshold: Option<rust_decimal::Decimal>,
}

impl TryFrom<GrantBody> for Grant {
    type Error = ApiError;

    fn try_from(body: GrantBody) -> Result<Grant, ApiError> {
        if body.note.as_deref().is_some_and(|n| n.contains('\0')) {
            // PostgreSQL's text cannot hold it: refused on either backend alike.
            return Err(ApiError::BadRequest(
                "note holds a NUL character (U+0000), which the ledger cannot store".into(),
            ));
        }
        let expires = match body.expires.as_deref() {
            Some(e) => {
                let day = crate::estimate::parse_day(e).field("expires")?;
                // A year 0001 or 9999 is a slip of the keyboard, not a plan.
                if !(2000..=2099).contains(&chrono::Datelike::year(&day)) {
                    return Err(format!(
                        "{e} is out of range: from 2000-01-01 to 2099-12-31"
                    ))
                    .field("expires");
                }
                Some(day)
            }
            None => None,
        };
        Ok(Grant {
            usd: credits::parse_grant(&body.usd).field("usd")?,
            expires,
            threshold: body
                .low_balance_usd
                .as_deref()
                .map(|t| crate::finance::budget::parse_amount(t).field("low_balance_usd"))
                .transpose()?,
            note: body.note,
        })
    }
}

/// `POST /v1/accounts/{account}/credits` with `{"usd": "100.00",
/// "expires": "2026-12-31", "note": "…", "low_balance_usd": "10"}` (all but
/// `usd` optional; admin): answers as `GET`.
pub async fn post_credit(
    State(state): State<AppState>,
    scope: AccountScope,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    let account = scope.admin("grant credit")?;
    let grant = body::parse(BodyOf::CreditGrant, &body, |b: GrantBody| {
        Grant::try_from(b)
    })?;
    let store = state.ledger.store().as_ref();
    // The threshold first: setting it again is harmless, so a grant that
    // fails after it leaves a retry of the same request correct.
    if let Some(t) = grant.threshold {
        store.set_low_balance(account, t).await?;
    }
    store
        .grant_credit(account, grant.usd, grant.expires, grant.note.as_deref())
        .await?;
    get_credits(State(state), scope).await
}

/// `GET /v1/accounts/{account}/balance`.
pub async fn get_balance(
    State(state): State<AppState>,
    scope: AccountScope,
) -> Result<Response, ApiError> {
    let account = scope.readable()?;
    let store = state.ledger.store().as_ref();
    let figures = Figures::cached(&state.finance, store).await?;
    Ok(Json(credits::balance(store, &figures, account, Utc::now()).await?).into_response())
}
