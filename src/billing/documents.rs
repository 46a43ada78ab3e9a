//! An invoice's printable documents (docs/invoices.md): HTML and PDF, rendered from
//! its JSON by [`crate::documents`]. A finalized invoice's are frozen when
//! it is finalized, like its JSON and CSV; one finalized before tally kept
//! documents has them rendered once from its frozen JSON, then kept.

use super::details::{Details, SELLER};
use super::drafts::draft_invoice;
use super::period::Period;
use super::{BillingError, render};
use crate::documents::{self, CodeExecutionTerms, Document, Paper};
use crate::pricing::PriceBook;
use crate::store::{FrozenDocuments, Store, StoreError};

/// Which document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    Html,
    Pdf,
}

impl DocumentKind {
    pub fn content_type(self) -> &'static str {
        match self {
            DocumentKind::Html => "text/html; charset=utf-8",
            DocumentKind::Pdf => "application/pdf",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            DocumentKind::Html => "html",
            DocumentKind::Pdf => "pdf",
        }
    }
}

/// The paper the seller prints on (A4 unless `tally org set --paper`).
pub async fn seller_paper(store: &dyn Store) -> Result<Paper, BillingError> {
    Ok(match store.details_as_of(SELLER, i64::MAX).await? {
        Some(s) => Details::from_stored(&s.details)?.paper.unwrap_or_default(),
        None => Paper::default(),
    })
}

fn document(json: &str, book: &PriceBook, period: Period) -> Result<Document, BillingError> {
    let terms = CodeExecutionTerms::of(book, period.last_day());
    Document::from_json(json, terms.as_ref())
        .map_err(|e| StoreError::Invalid(format!("an invoice document: {e}")).into())
}

/// The invoice as a plain-text table (not frozen: a view of its JSON).
pub fn text(json: &str, book: &PriceBook, period: Period) -> Result<String, BillingError> {
    Ok(documents::text::render(&document(json, book, period)?))
}

/// Both documents of an invoice's JSON.
pub fn render_both(
    json: &str,
    book: &PriceBook,
    period: Period,
    paper: Paper,
) -> Result<(String, Vec<u8>), BillingError> {
    let doc = document(json, book, period)?;
    Ok((
        documents::html::render(&doc),
        documents::pdf::render(&doc, paper),
    ))
}

/// Everything finalizing freezes of an invoice, from its JSON and CSV.
pub fn frozen(
    json: String,
    csv: String,
    book: &PriceBook,
    period: Period,
    paper: Paper,
) -> Result<FrozenDocuments, BillingError> {
    let (html, pdf) = render_both(&json, book, period, paper)?;
    Ok(FrozenDocuments {
        json,
        csv,
        html,
        pdf,
    })
}

/// The document of `account`'s invoice for `period`: as frozen when it is
/// finalized, else the draft's as of now.
pub async fn invoice_document(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
    kind: DocumentKind,
) -> Result<Vec<u8>, BillingError> {
    let label = period.to_string();
    if let Some(f) = store.finalized_invoice(account, &label).await? {
        let (html, pdf) = match (f.html, f.pdf) {
            (Some(html), Some(pdf)) if !html.is_empty() => (html, pdf),
            _ => {
                let paper = seller_paper(store).await?;
                let (html, pdf) = render_both(&f.json, book, period, paper)?;
                store.keep_documents(account, &label, &html, &pdf).await?;
                // Another server may have kept its rendering first: that one stands.
                let kept = store.finalized_invoice(account, &label).await?;
                match kept.and_then(|k| k.html.zip(k.pdf)) {
                    Some(both) => both,
                    None => (html, pdf),
                }
            }
        };
        return Ok(match kind {
            DocumentKind::Html => html.into_bytes(),
            DocumentKind::Pdf => pdf,
        });
    }
    let draft = draft_invoice(store, book, account, period).await?;
    let doc = document(&render::json(&draft), book, period)?;
    Ok(match kind {
        DocumentKind::Html => documents::html::render(&doc).into_bytes(),
        DocumentKind::Pdf => documents::pdf::render(&doc, seller_paper(store).await?),
    })
}
