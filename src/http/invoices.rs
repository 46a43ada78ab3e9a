//! `GET /v1/accounts/{account}/invoices/{period}` (JSON, or CSV with
//! `Accept: text/csv` or `?format=csv`) and
//! `POST /v1/accounts/{account}/invoices/{period}/finalize[?allow_unpriced=true]`.

use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, ApiQuery, AppState, check_account};
use crate::auth::Principal;
use crate::billing::{self, Period};

#[derive(Debug, Deserialize)]
pub struct InvoiceQuery {
    format: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct FinalizeQuery {
    #[serde(default)]
    allow_unpriced: bool,
}

fn parse_target(account: &str, period: &str) -> Result<Period, ApiError> {
    check_account(account)?;
    super::note_target(None, Some(period));
    // The period's parser says what is wrong with it: the client's to fix.
    Period::parse(period).map_err(ApiError::BadRequest)
}

fn wants_csv(query: &InvoiceQuery, headers: &HeaderMap) -> Result<bool, ApiError> {
    match query.format.as_deref() {
        Some("csv") => return Ok(true),
        Some("json") => return Ok(false),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format={other:?}: expected json or csv"
            )));
        }
        None => {}
    }
    Ok(headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/csv")))
}

fn document(body: String, csv: bool) -> Response {
    let content_type = if csv {
        "text/csv; charset=utf-8"
    } else {
        "application/json"
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

pub async fn get_invoice(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((account, period)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<InvoiceQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let period = parse_target(&account, &period)?;
    if !principal.may_access(&account) {
        // Another account's invoice: not even its existence is shown.
        return Err(ApiError::NotFound("no such invoice".into()));
    }
    let csv = wants_csv(&query, &headers)?;
    let store = state.ledger.store().as_ref();
    let book = crate::pricing::current_book(store).await?;
    let r = billing::invoice(store, &book, &account, period).await?;
    Ok(document(if csv { r.csv } else { r.json }, csv))
}

pub async fn finalize(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((account, period)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<FinalizeQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let period = parse_target(&account, &period)?;
    if principal != Principal::Admin {
        return Err(ApiError::Forbidden(
            "only the admin token may finalize invoices".into(),
        ));
    }
    let csv = wants_csv(&InvoiceQuery { format: None }, &headers)?;
    let store = state.ledger.store().as_ref();
    let book = crate::pricing::current_book(store).await?;
    // Unpriced usage is a 409 `unpriced_usage` (see `From<FinalizeError>`).
    let f = billing::finalize(store, &book, &account, period, query.allow_unpriced).await?;
    Ok(document(if csv { f.csv } else { f.json }, csv))
}
