//! The `invoice.finalized` webhook (docs/invoices.md): `{"type": "invoice.finalized",
//! "account", "period", "number", "total", "due_at"}`, at least once per
//! finalized invoice. The event is written in the finalizing transaction
//! (so there is exactly one per finalization, however many servers
//! finalize); a sender claims it for a minute under a token of its own
//! before it POSTs it (so two servers never send it at once, given clocks
//! within half a minute of each other), and it stays undelivered until the
//! webhook answers 2xx, then is sent again at the next check, like budget
//! alerts.

use serde::Serialize;

use super::webhook::Webhook;
use crate::store::{Store, StoreError};

/// How long a sender holds an event it is POSTing.
const CLAIM_MICROS: i64 = 60_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvoiceFinalized {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub account: String,
    pub period: String,
    pub number: String,
    pub total: String,
    pub due_at: Option<String>,
}

/// The event of a finalized invoice, from its frozen document.
pub async fn event(
    store: &dyn Store,
    account: &str,
    period: &str,
) -> Result<Option<InvoiceFinalized>, StoreError> {
    let Some(f) = store.finalized_invoice(account, period).await? else {
        return Ok(None);
    };
    let doc: serde_json::Value = serde_json::from_str(&f.json)
        .map_err(|e| StoreError::Invalid(format!("finalized invoice {}: {e}", f.number)))?;
    let text = |k: &str| doc.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    Ok(Some(InvoiceFinalized {
        kind: "invoice.finalized",
        account: account.to_owned(),
        period: period.to_owned(),
        total: text("total").unwrap_or_default(),
        due_at: text("due_at"),
        number: f.number,
    }))
}

/// POST every undelivered `invoice.finalized` event this caller can claim;
/// how many were delivered.
pub async fn deliver(store: &dyn Store, webhook: &Webhook) -> Result<usize, StoreError> {
    let mut delivered = 0;
    for (account, period) in store.undelivered_invoice_events().await? {
        delivered += usize::from(deliver_one(store, webhook, &account, &period).await?);
    }
    Ok(delivered)
}

/// POST one invoice's event if this caller can claim it: whether it was delivered.
pub async fn deliver_one(
    store: &dyn Store,
    webhook: &Webhook,
    account: &str,
    period: &str,
) -> Result<bool, StoreError> {
    // A token of this sender's own: only it may settle its claim.
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Invalid(format!("no randomness available: {e}")))?;
    let token = hex::encode(bytes);
    if !store
        .claim_invoice_event(account, period, &token, CLAIM_MICROS)
        .await?
    {
        return Ok(false); // delivered already, or another sender has it
    }
    let sent = match event(store, account, period).await? {
        Some(e) => webhook.post(&e).await,
        None => false,
    };
    store
        .settle_invoice_event(account, period, &token, sent)
        .await?;
    Ok(sent)
}
