//! Draft invoices: the charges of a period computed from the ledger as it
//! stands (or as it stood at a cutoff), one account or every account in one
//! pass, with adjustments for late usage of finalized periods.

use super::adjustments::adjustments_for;
use super::credits::CreditBook;
use super::details;
use super::invoice::Invoice;
use super::period::Period;
use super::sums::{Cutoff, PeriodData};
use super::{BillingError, render};
use crate::pricing::PriceBook;
use crate::store::Store;

/// The invoice of `account` for `period`: the frozen one when finalized,
/// else a draft from the ledger as it is now (with adjustments for late
/// records of earlier finalized periods).
pub async fn invoice(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
) -> Result<Rendered, BillingError> {
    if let Some(f) = store
        .finalized_invoice(account, &period.to_string())
        .await?
    {
        return Ok(Rendered {
            json: f.json,
            csv: f.csv,
            invoice: None,
            number: Some(f.number),
        });
    }
    let draft = draft_invoice(store, book, account, period).await?;
    Ok(Rendered {
        json: render::json(&draft),
        csv: render::csv(&draft),
        number: None,
        invoice: Some(draft),
    })
}

/// An invoice as served: the exact bytes of both formats.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub json: String,
    pub csv: String,
    pub number: Option<String>,
    /// The structured draft (absent for a finalized invoice, whose bytes are the truth).
    pub invoice: Option<Invoice>,
}

/// The draft invoice of `account` for `period`, from the ledger as it is now.
pub async fn draft_invoice(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
) -> Result<Invoice, BillingError> {
    let max_seq = store.max_seq().await?;
    draft_as_of(store, book, account, period, Cutoff::Now(max_seq)).await
}

/// The draft from the given state of the ledger, adjustments included.
pub async fn draft_as_of(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
    cutoff: Cutoff,
) -> Result<Invoice, BillingError> {
    draft_issued(store, book, account, period, cutoff, None).await
}

/// [`draft_as_of`], issued on `issued` when finalizing: its dates set.
pub(super) async fn draft_issued(
    store: &dyn Store,
    book: &PriceBook,
    account: &str,
    period: Period,
    cutoff: Cutoff,
    issued: Option<chrono::NaiveDate>,
) -> Result<Invoice, BillingError> {
    let data = PeriodData::load(store, book, period, cutoff, Some(account), &[]).await?;
    let mut invoice = data.charges(book, account, period);
    invoice.add_adjustments(adjustments_for(store, book, account, period, cutoff.seq()).await?);
    CreditBook::load(store, Some(account))
        .await?
        .apply(&mut invoice, period, false);
    let (seller, bill_to) = details::details_at(store, account, i64::MAX).await?;
    details::apply(
        &mut invoice,
        period,
        seller.as_ref(),
        bill_to.as_ref(),
        issued,
    );
    Ok(invoice)
}

/// Draft invoices of every account with usage (or containers) in `period`,
/// sorted by account. Usage is read in one pass for all accounts.
pub async fn draft_invoices(
    store: &dyn Store,
    book: &PriceBook,
    period: Period,
) -> Result<Vec<Invoice>, BillingError> {
    let max_seq = store.max_seq().await?;
    let data = PeriodData::load(store, book, period, Cutoff::Now(max_seq), None, &[]).await?;
    let accounts = data.accounts(store, period).await?;
    let credits = CreditBook::load(store, None).await?;
    let mut invoices = Vec::with_capacity(accounts.len());
    for account in accounts {
        let mut invoice = data.charges(book, &account, period);
        let adjustments = adjustments_for(store, book, &account, period, max_seq).await?;
        if adjustments.is_empty() && !data.has_charges(&account, period) {
            continue;
        }
        invoice.add_adjustments(adjustments);
        credits.apply(&mut invoice, period, false);
        let (seller, bill_to) = details::details_at(store, &account, i64::MAX).await?;
        details::apply(
            &mut invoice,
            period,
            seller.as_ref(),
            bill_to.as_ref(),
            None,
        );
        invoices.push(invoice);
    }
    Ok(invoices)
}

/// Every account's invoice for a period, as served: finalized invoices as
/// frozen, the others as drafts (computed in one pass), sorted by account.
pub async fn period_invoices(
    store: &dyn Store,
    book: &PriceBook,
    period: Period,
) -> Result<Vec<Rendered>, BillingError> {
    let mut out = Vec::new();
    for draft in draft_invoices(store, book, period).await? {
        out.push(
            match store
                .finalized_invoice(&draft.account, &period.to_string())
                .await?
            {
                Some(f) => Rendered {
                    json: f.json,
                    csv: f.csv,
                    number: Some(f.number),
                    invoice: None,
                },
                None => Rendered {
                    json: render::json(&draft),
                    csv: render::csv(&draft),
                    number: None,
                    invoice: Some(draft),
                },
            },
        );
    }
    Ok(out)
}

/// Invoices' CSV documents joined into one (the header once).
pub fn joined_csv<'a>(documents: impl IntoIterator<Item = &'a Rendered>) -> String {
    let mut out = render::csv_document(std::iter::empty());
    for r in documents {
        if let Some((_, rows)) = r.csv.split_once("\r\n") {
            out.push_str(rows);
        }
    }
    out
}

/// Every account's invoice for a period as one CSV document.
pub async fn period_csv(
    store: &dyn Store,
    book: &PriceBook,
    period: Period,
) -> Result<String, BillingError> {
    Ok(joined_csv(&period_invoices(store, book, period).await?))
}
