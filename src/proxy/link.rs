//! The proxy's link to its ledger, which may be slow, down, or not there
//! yet when the proxy starts. Callers wait for their call's record to be
//! durable, so the proxy never waits long for the ledger: a write that has
//! not committed within [`PATIENCE`] is given up and its calls go to the
//! spool, and from then on the link counts as down (the circuit is open):
//! new calls go straight to the spool until the spool's replayer finds the
//! ledger answering again.
//!
//! A write given up after its commit was sent may still have committed;
//! its calls, spooled too, are then recorded once all the same, since a
//! record's identity is its response id.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::OnceCell;

use super::capture::Captured;
use crate::ingest::ChunkBuilder;
use crate::record::{Defaults, Retention};
use crate::store::{Store, StoreError};

/// How long a write may take before its calls go to the spool instead.
/// A batch of calls commits in milliseconds on a healthy ledger; a ledger
/// that takes longer is stuck (a lock held, a server gone) and the callers
/// are waiting.
pub(super) const PATIENCE: Duration = Duration::from_secs(1);

/// How long opening the ledger (connecting, checking its migrations) may
/// take, at start and when it was down.
pub const OPEN_PATIENCE: Duration = Duration::from_secs(5);

/// The ledger a proxy records into.
pub struct LedgerLink {
    store: OnceCell<Arc<dyn Store>>,
    /// Where to open the ledger when it could not be opened at start.
    url: Option<String>,
    up: AtomicBool,
}

impl LedgerLink {
    /// An open ledger.
    pub fn open(store: Arc<dyn Store>) -> LedgerLink {
        LedgerLink {
            store: OnceCell::from(store),
            url: None,
            up: AtomicBool::new(true),
        }
    }

    /// A ledger that could not be opened yet: calls go to the spool until
    /// it can.
    pub fn unreachable(url: &str) -> LedgerLink {
        LedgerLink {
            store: OnceCell::new(),
            url: Some(url.to_owned()),
            up: AtomicBool::new(false),
        }
    }

    /// Whether the ledger took the last write (or answered the last check).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn mark(&self, up: bool) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!("the ledger answers again");
            } else {
                tracing::warn!("the ledger is down or slow: calls go to the spool");
            }
        }
    }

    /// The store, opening it first if it was not there at start.
    async fn store(&self) -> Result<&Arc<dyn Store>, StoreError> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let Some(url) = &self.url else {
            return Err(StoreError::Invalid("no ledger".into()));
        };
        let opened = self
            .store
            .get_or_try_init(|| async {
                match tokio::time::timeout(OPEN_PATIENCE, crate::store::open(url)).await {
                    Ok(opened) => opened,
                    Err(_) => Err(StoreError::Invalid(format!(
                        "the ledger did not answer within {} s",
                        OPEN_PATIENCE.as_secs()
                    ))),
                }
            })
            .await?;
        tracing::info!("the ledger is open");
        Ok(opened)
    }

    /// Check that the ledger answers (opening it if need be), and say so.
    pub(super) async fn check(&self) -> bool {
        let answered = match self.store().await {
            Ok(store) => matches!(
                tokio::time::timeout(PATIENCE, store.ping()).await,
                Ok(Ok(()))
            ),
            Err(e) => {
                tracing::debug!(error = %e, "the ledger cannot be opened yet");
                false
            }
        };
        self.mark(answered);
        answered
    }

    /// Record calls in one transaction, within [`PATIENCE`]; a failure
    /// marks the link down.
    pub(super) async fn write(
        &self,
        calls: &[&Captured],
        default_account: Option<&str>,
        retention: Retention,
    ) -> Result<(), StoreError> {
        let written = async {
            let store = self.store().await?;
            write(store.as_ref(), calls, default_account, retention).await
        };
        let result = match tokio::time::timeout(PATIENCE, written).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Invalid(format!(
                "the ledger did not commit within {} ms",
                PATIENCE.as_millis()
            ))),
        };
        self.mark(result.is_ok());
        result
    }
}

/// The calls as lines of one batch through the ingest path (identity,
/// duplicates, the rejected store, retention), each with its account: the
/// one it named, else its key's mapping, else the default.
async fn write(
    store: &dyn Store,
    calls: &[&Captured],
    default_account: Option<&str>,
    retention: Retention,
) -> Result<(), StoreError> {
    let now = crate::time::now_micros();
    let mut builder = ChunkBuilder::new("proxy", Defaults::default(), now)
        .with_chunk_lines(calls.len())
        .retaining(retention);
    // One lookup per key in the batch, not one per call.
    let mut mappings: HashMap<&str, Option<String>> = HashMap::new();
    for (i, c) in calls.iter().enumerate() {
        let mut envelope = c.envelope.clone();
        if !envelope.contains_key("account") {
            let mapped = match c.key_sha256.as_deref() {
                Some(sha) => match mappings.get(sha) {
                    Some(account) => account.clone(),
                    None => {
                        let account = store.proxy_key_account(sha).await?;
                        mappings.insert(sha, account.clone());
                        account
                    }
                },
                None => None,
            };
            if let Some(account) = mapped.or_else(|| default_account.map(str::to_owned)) {
                envelope.insert("account".into(), account.into());
            }
        }
        let line = Value::Object(envelope).to_string();
        builder.push_line(i as u64 + 1, line.as_bytes());
    }
    store.write(&builder.take()).await.map(|_| ())
}
