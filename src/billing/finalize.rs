//! Finalizing: an invoice frozen at a cutoff of the ledger, numbered, its
//! JSON and CSV kept as bytes forever.

use super::documents::{self, seller_paper};
use super::drafts::draft_issued;
use super::period::Period;
use super::sums::Cutoff;
use super::{BillingError, render};
use crate::pricing::PriceBook;
use crate::store::{FrozenDocuments, Store, StoreError};

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
    // Another finalization may draw on the same credit at once: the store
    // refuses a draw that no longer fits, and the invoice is computed again.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let cutoff = store.cutoff_seq().await.map_err(BillingError::from)?;
        let today = chrono::Utc::now().date_naive();
        let draft = draft_issued(
            store,
            book,
            account,
            period,
            Cutoff::AsOf(cutoff),
            Some(today),
        )
        .await?;
        if !draft.unpriced.is_empty() && !allow_unpriced {
            let models: Vec<&str> = draft.unpriced.iter().map(|u| u.model.as_str()).collect();
            return Err(FinalizeError::Unpriced(models.join(", ")));
        }
        let draws = draft.draws.clone();
        let paper = seller_paper(store).await?;
        let render = move |number: &str| {
            let mut frozen = draft.clone();
            frozen.number = Some(number.to_owned());
            frozen.status = "finalized";
            let (json, csv) = (render::json(&frozen), render::csv(&frozen));
            // A document that cannot be rendered from the JSON just made
            // is a bug; the JSON and CSV are frozen all the same, and the
            // documents are rendered from them on first request.
            match documents::frozen(json.clone(), csv.clone(), book, period, paper) {
                Ok(docs) => docs,
                Err(e) => {
                    tracing::error!("rendering the documents of {number}: {e}");
                    FrozenDocuments {
                        json,
                        csv,
                        html: String::new(),
                        pdf: Vec::new(),
                    }
                }
            }
        };
        match store
            .finalize(account, &label, cutoff, &draws, &render)
            .await
        {
            Err(StoreError::Changed(_)) if attempts < MAX_ATTEMPTS => continue,
            done => return Ok(done.map_err(BillingError::from)?),
        }
    }
}

/// How often a finalization is computed again when its credit changed under it.
const MAX_ATTEMPTS: u32 = 5;
