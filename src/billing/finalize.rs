//! Finalizing: an invoice frozen at a cutoff of the ledger, numbered, its
//! JSON and CSV kept as bytes forever.

use super::drafts::{Cutoff, draft_as_of};
use super::period::Period;
use super::{BillingError, render};
use crate::pricing::PriceBook;
use crate::store::Store;

/// Why an invoice could not be finalized.
#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    #[error(
        "the invoice has unpriced usage ({0}); add prices first, or finalize with --allow-unpriced"
    )]
    Unpriced(String),
    #[error(transparent)]
    Billing(#[from] BillingError),
}

/// Freeze the invoice of `account` for `period` (idempotent: a finalized
/// invoice is returned as it was frozen).
pub async fn finalize(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
    allow_unpriced: bool,
) -> Result<crate::store::FinalizedInvoice, FinalizeError> {
    let label = period.to_string();
    if let Some(f) = store
        .finalized_invoice(account, &label)
        .await
        .map_err(BillingError::from)?
    {
        return Ok(f);
    }
    let cutoff = store.cutoff_seq().await.map_err(BillingError::from)?;
    let draft = draft_as_of(store, book, account, period, Cutoff::AsOf(cutoff)).await?;
    if !draft.unpriced.is_empty() && !allow_unpriced {
        let models: Vec<&str> = draft.unpriced.iter().map(|u| u.model.as_str()).collect();
        return Err(FinalizeError::Unpriced(models.join(", ")));
    }
    let render = move |number: &str| {
        let mut frozen = draft.clone();
        frozen.number = Some(number.to_owned());
        frozen.status = "finalized";
        (render::json(&frozen), render::csv(&frozen))
    };
    Ok(store
        .finalize(account, &label, cutoff, &render)
        .await
        .map_err(BillingError::from)?)
}
