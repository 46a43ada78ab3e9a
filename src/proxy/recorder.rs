//! The recorder: captured calls go through a bounded queue to the ledger,
//! in batches, through the same ingest path as every other line (identity,
//! duplicates, conflicts, the rejected store, retention).
//!
//! The account of a call: the `x-tally-account` header it sent, else the
//! account its API key's hash is mapped to, else `--default-account`; a
//! call with none is kept as a rejected line (field `account`) all the same.

use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::ProxyConfig;
use crate::ingest::ChunkBuilder;
use crate::record::{Defaults, Retention};
use crate::store::Store;

/// Captures written per transaction at most.
const BATCH: usize = 500;

/// A call's envelope, and the hash of the API key that made it.
pub(super) struct Captured {
    pub(super) envelope: Map<String, Value>,
    pub(super) key_sha256: Option<String>,
}

#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Captured>,
}

impl Recorder {
    pub(super) fn start(store: Arc<dyn Store>, config: &ProxyConfig) -> Recorder {
        let (queue, captured) = mpsc::channel(config.queue.max(1));
        tokio::spawn(record(
            store,
            captured,
            config.default_account.clone(),
            config.retention,
        ));
        Recorder { queue }
    }

    /// Hand a capture over without waiting: a full queue drops it (and says so).
    pub(super) fn submit(&self, captured: Captured) {
        if self.queue.try_send(captured).is_err() {
            tracing::warn!("the recording queue is full: a call was not recorded");
        }
    }
}

async fn record(
    store: Arc<dyn Store>,
    mut captured: mpsc::Receiver<Captured>,
    default_account: Option<String>,
    retention: Retention,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while captured.recv_many(&mut batch, BATCH).await > 0 {
        let now = crate::time::now_micros();
        let mut builder = ChunkBuilder::new("proxy", Defaults::default(), now)
            .with_chunk_lines(BATCH)
            .retaining(retention);
        for (i, c) in batch.drain(..).enumerate() {
            let mut envelope = c.envelope;
            if !envelope.contains_key("account") {
                let mapped = match &c.key_sha256 {
                    Some(sha) => store.proxy_key_account(sha).await.unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "could not read the key mappings");
                        None
                    }),
                    None => None,
                };
                if let Some(account) = mapped.or_else(|| default_account.clone()) {
                    envelope.insert("account".into(), account.into());
                }
            }
            let line = Value::Object(envelope).to_string();
            builder.push_line(i as u64 + 1, line.as_bytes());
        }
        let lines = builder.take();
        if let Err(e) = store.write(&lines).await {
            tracing::error!(error = %e, records = lines.records.len(), "recording failed");
        }
    }
}
