//! `GET /v1/accounts/{account}/invoices/{period}` (JSON, or CSV with
//! `Accept: text/csv` or `?format=csv`) and
//! `POST /v1/accounts/{account}/invoices/{period}/finalize[?allow_unpriced=true]`.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Blame;
use super::{AccountScope, ApiError, ApiPath, ApiQuery, AppState};
use crate::billing::{self, DocumentKind, Period};

#[derive(Debug, Deserialize)]
pub struct FinalizeQuery {
    #[serde(default)]
    allow_unpriced: bool,
}

/// The `{account}` and `{period}` of an invoice's path, both checked, and
/// who asks; a period written `2025-05.html` or `2025-05.pdf` asks for that
/// document.
pub struct InvoiceTarget {
    scope: AccountScope,
    period: Period,
    document: Option<DocumentKind>,
}

impl<S: Send + Sync> FromRequestParts<S> for InvoiceTarget {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let ApiPath((account, period)) =
            ApiPath::<(String, String)>::from_request_parts(parts, state).await?;
        let scope = AccountScope::of(account, parts)?;
        super::note_target(None, Some(&period));
        let (period, document) = match period.rsplit_once('.') {
            Some((p, "html")) => (p, Some(DocumentKind::Html)),
            Some((p, "pdf")) => (p, Some(DocumentKind::Pdf)),
            Some((_, other)) => {
                return Err(ApiError::NotFound(format!(
                    "no invoice document .{other}: the documents are .html and .pdf"
                )));
            }
            None => (period.as_str(), None),
        };
        // The period's parser says what is wrong with it: the client's to fix.
        let period = Period::parse(period).invalid()?;
        Ok(InvoiceTarget {
            scope,
            period,
            document,
        })
    }
}

/// CSV or JSON: `?format=csv|json`, else CSV when `Accept` names `text/csv`.
pub struct DocumentFormat {
    pub(super) csv: bool,
}

#[derive(Debug, Deserialize)]
struct FormatQuery {
    format: Option<String>,
}

impl DocumentFormat {
    fn from_accept(headers: &HeaderMap) -> DocumentFormat {
        let csv = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv"));
        DocumentFormat { csv }
    }
}

/// `?format=csv|json`: `Some(true)` for CSV, `None` when absent.
async fn format_param<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<Option<bool>, ApiError> {
    let ApiQuery(query) = ApiQuery::<FormatQuery>::from_request_parts(parts, state).await?;
    match query.format.as_deref() {
        Some("csv") => Ok(Some(true)),
        Some("json") => Ok(Some(false)),
        Some(other) => Err(ApiError::BadRequest(format!(
            "format={other:?}: expected json or csv"
        ))),
        None => Ok(None),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for DocumentFormat {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(match format_param(parts, state).await? {
            Some(csv) => DocumentFormat { csv },
            None => DocumentFormat::from_accept(&parts.headers),
        })
    }
}

/// CSV or JSON by `?format=csv|json` alone (JSON when absent).
pub struct QueryFormat {
    pub(super) csv: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for QueryFormat {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let csv = format_param(parts, state).await?.unwrap_or(false);
        Ok(QueryFormat { csv })
    }
}

/// An invoice's JSON or CSV, named for download (`name` without its
/// extension): a CSV is an attachment, the JSON shown inline.
fn document(body: String, csv: bool, name: &str) -> Response {
    let (content_type, disposition) = if csv {
        (
            "text/csv; charset=utf-8",
            format!("attachment; filename=\"{name}.csv\""),
        )
    } else {
        (
            "application/json",
            format!("inline; filename=\"{name}.json\""),
        )
    };
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

/// An invoice's file name: its number once finalized, else
/// `ACCOUNT-PERIOD-draft` (account names are `[A-Za-z0-9._:-]`, safe in a
/// header's quoted string).
fn file_name(number: Option<&str>, account: &str, period: Period) -> String {
    match number {
        Some(n) => n.to_owned(),
        None => format!("{account}-{period}-draft"),
    }
}

#[derive(Debug, Deserialize)]
pub struct BreakdownQuery {
    breakdown: Option<String>,
}

pub async fn get_invoice(
    State(state): State<AppState>,
    target: InvoiceTarget,
    DocumentFormat { csv }: DocumentFormat,
    ApiQuery(query): ApiQuery<BreakdownQuery>,
) -> Result<Response, ApiError> {
    // Another account's invoice: not even its existence is shown.
    let account = target.scope.readable_as("no such invoice")?;
    let period = target.period;
    if let Some(kind) = target.document {
        if query.breakdown.is_some() {
            return Err(ApiError::BadRequest(
                "breakdown: the breakdown is part of the JSON invoice, not of its documents".into(),
            ));
        }
        return invoice_document(&state, account, period, kind).await;
    }
    let breakdown = match query.breakdown.as_deref() {
        Some(d) if csv => {
            return Err(ApiError::BadRequest(format!(
                "breakdown={d:?}: the breakdown is part of the JSON invoice (format=json)"
            )));
        }
        Some(d) => Some(crate::record::Dimension::parse(d).field("breakdown")?),
        None => None,
    };
    let store = state.ledger.store().as_ref();
    let book = crate::pricing::current_book(store).await?;
    let r = billing::invoice(store, &book, account, period).await?;
    let name = file_name(r.number.as_deref(), account, period);
    if csv {
        return Ok(document(r.csv, true, &name));
    }
    let json = match &breakdown {
        Some(dim) => {
            let parts = billing::breakdown(store, &book, account, period, dim).await?;
            billing::with_breakdown(&r.json, &parts)
        }
        None => r.json,
    };
    Ok(document(json, false, &name))
}

/// `GET …/invoices/{period}.html|.pdf`: the printable document, named for
/// download by its number (a draft's by account and period).
async fn invoice_document(
    state: &AppState,
    account: &str,
    period: Period,
    kind: DocumentKind,
) -> Result<Response, ApiError> {
    let store = state.ledger.store().as_ref();
    let book = crate::pricing::current_book(store).await?;
    let body = billing::invoice_document(store, &book, account, period, kind).await?;
    let name = match store
        .finalized_invoice(account, &period.to_string())
        .await?
    {
        Some(f) => f.number,
        None => file_name(None, account, period),
    };
    let disposition = format!("inline; filename=\"{name}.{}\"", kind.extension());
    Ok((
        [
            (header::CONTENT_TYPE, kind.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

pub async fn finalize(
    State(state): State<AppState>,
    target: InvoiceTarget,
    ApiQuery(query): ApiQuery<FinalizeQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if target.document.is_some() {
        return Err(ApiError::NotFound(
            "finalize the invoice itself: POST …/invoices/{period}/finalize".into(),
        ));
    }
    let account = target.scope.admin("finalize invoices")?;
    let period = target.period;
    let DocumentFormat { csv } = DocumentFormat::from_accept(&headers);
    let store = state.ledger.store().as_ref();
    let book = crate::pricing::current_book(store).await?;
    // Unpriced usage is a 409 `unpriced_usage` (see `From<FinalizeError>`).
    let f = billing::finalize(store, &book, account, period, query.allow_unpriced).await?;
    // Announce it now rather than at the next check (which retries a failure).
    if let Some(webhook) = state.webhook.clone() {
        let store = state.ledger.store().clone();
        let account = account.to_owned();
        tokio::spawn(async move {
            let period = period.to_string();
            let sent =
                crate::finance::events::deliver_one(store.as_ref(), &webhook, &account, &period)
                    .await;
            if let Err(e) = sent {
                tracing::warn!("delivering invoice.finalized failed: {e}; will retry");
            }
        });
    }
    let name = file_name(Some(&f.number), account, period);
    Ok(document(if csv { f.csv } else { f.json }, csv, &name))
}
