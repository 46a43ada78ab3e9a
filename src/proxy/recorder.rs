//! The recorder: captured calls go through a bounded queue to the ledger,
//! in batches, through the same ingest path as every other line (identity,
//! duplicates, conflicts, the rejected store, retention). A batch the ledger
//! cannot take goes to the spool ([`super::spool`]) when there is one; while
//! the spool holds anything, new batches queue behind it, so calls reach the
//! ledger in the order they ended.
//!
//! The account of a call: the `x-tally-account` header it sent, else the
//! account its API key's hash is mapped to, else `--default-account`; a
//! call with none is kept as a rejected line (field `account`) all the same.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use std::sync::atomic::Ordering;

use super::spool::Spool;
use super::{ProxyConfig, ProxyMetrics};
use crate::ingest::ChunkBuilder;
use crate::record::{Defaults, Retention};
use crate::store::{Store, StoreError};

/// Captures written per transaction at most.
const BATCH: usize = 500;

/// How often the spool is tried again while nothing new arrives.
const REPLAY_EVERY: Duration = Duration::from_secs(1);

/// A call's envelope, and the hash of the API key that made it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Captured {
    pub(super) envelope: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) key_sha256: Option<String>,
}

#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Captured>,
    spool: Option<Arc<Spool>>,
    metrics: Arc<ProxyMetrics>,
}

struct Writer {
    store: Arc<dyn Store>,
    spool: Option<Arc<Spool>>,
    default_account: Option<String>,
    retention: Retention,
    metrics: Arc<ProxyMetrics>,
}

impl Recorder {
    pub(super) fn start(
        store: Arc<dyn Store>,
        config: &ProxyConfig,
        metrics: Arc<ProxyMetrics>,
    ) -> std::io::Result<Recorder> {
        let spool = match &config.spool {
            Some(dir) => {
                let spool = Spool::open(dir)?;
                let waiting = spool.calls_waiting()?;
                metrics.spool_depth.store(waiting as i64, Ordering::Relaxed);
                Some(Arc::new(spool))
            }
            None => None,
        };
        let (queue, captured) = mpsc::channel(config.queue.max(1));
        let writer = Writer {
            store,
            spool: spool.clone(),
            default_account: config.default_account.clone(),
            retention: config.retention,
            metrics: metrics.clone(),
        };
        tokio::spawn(writer.run(captured));
        Ok(Recorder {
            queue,
            spool,
            metrics,
        })
    }

    /// Hand a capture over without waiting. When the queue is full (the
    /// ledger is slower than the traffic), the capture goes to the spool on
    /// a blocking thread, to be replayed with the rest; without a spool it
    /// is dropped (and counted, and logged).
    pub(super) fn submit(&self, captured: Captured) {
        let captured = match self.queue.try_send(captured) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(c) | mpsc::error::TrySendError::Closed(c)) => c,
        };
        let (Some(spool), metrics) = (self.spool.clone(), self.metrics.clone()) else {
            ProxyMetrics::count(&self.metrics.dropped, 1);
            tracing::warn!(
                "the recording queue is full and there is no --spool: a call was not recorded"
            );
            return;
        };
        tokio::task::spawn_blocking(move || {
            // Counted before it is written: the writer may replay it at once.
            metrics.spool_depth.fetch_add(1, Ordering::Relaxed);
            match spool.append(&[captured]) {
                Ok(()) => ProxyMetrics::count(&metrics.spooled, 1),
                Err(e) => {
                    metrics.spool_depth.fetch_sub(1, Ordering::Relaxed);
                    ProxyMetrics::count(&metrics.dropped, 1);
                    tracing::error!(error = %e, "cannot write the spool: a call is lost");
                }
            }
        });
    }
}

impl Writer {
    async fn run(self, mut captured: mpsc::Receiver<Captured>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut tick = tokio::time::interval(REPLAY_EVERY);
        loop {
            tokio::select! {
                n = captured.recv_many(&mut batch, BATCH) => if n == 0 { break },
                _ = tick.tick() => {}
            }
            let spooled = self.replay().await;
            if batch.is_empty() {
                continue;
            }
            let calls = std::mem::take(&mut batch);
            if spooled {
                self.spool(calls).await;
                continue;
            }
            match self.write(&calls).await {
                Ok(()) => ProxyMetrics::count(&self.metrics.recorded, calls.len()),
                Err(e) => {
                    tracing::warn!(error = %e, calls = calls.len(), "the ledger did not take the calls");
                    self.spool(calls).await;
                }
            }
        }
    }

    /// Write the spool's batches, oldest first, while the ledger takes them;
    /// whether any is still waiting.
    async fn replay(&self) -> bool {
        let Some(spool) = self.spool.clone() else {
            return false;
        };
        let pending = match blocking(move || spool.pending()).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spool");
                return true;
            }
        };
        for path in pending {
            let file = path.clone();
            let calls = match blocking(move || Spool::read(&file)).await {
                Ok(calls) => calls,
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "cannot read a spooled batch");
                    return true;
                }
            };
            if let Err(e) = self.write(&calls).await {
                tracing::debug!(error = %e, "the ledger still does not take the spooled calls");
                return true;
            }
            ProxyMetrics::count(&self.metrics.recorded, calls.len());
            let n = calls.len() as i64;
            self.metrics.spool_depth.fetch_sub(n, Ordering::Relaxed);
            if let Err(e) = std::fs::remove_file(&path) {
                // Replayed again later: recorded once all the same.
                tracing::error!(file = %path.display(), error = %e, "cannot remove a replayed batch");
                return true;
            }
            tracing::info!(calls = calls.len(), "spooled calls recorded");
        }
        false
    }

    /// Keep calls in the spool (captures are billing views already under
    /// billing retention), or, without a spool, drop them and say so.
    async fn spool(&self, calls: Vec<Captured>) {
        let Some(spool) = self.spool.clone() else {
            tracing::error!(
                calls = calls.len(),
                "no --spool: calls the ledger did not take are lost"
            );
            return;
        };
        let n = calls.len();
        match blocking(move || spool.append(&calls)).await {
            Ok(()) => {
                ProxyMetrics::count(&self.metrics.spooled, n);
                self.metrics
                    .spool_depth
                    .fetch_add(n as i64, Ordering::Relaxed);
            }
            Err(e) => {
                ProxyMetrics::count(&self.metrics.dropped, n);
                tracing::error!(error = %e, calls = n, "cannot write the spool: calls are lost");
            }
        }
    }

    /// Record calls in one transaction.
    async fn write(&self, calls: &[Captured]) -> Result<(), StoreError> {
        let now = crate::time::now_micros();
        let mut builder = ChunkBuilder::new("proxy", Defaults::default(), now)
            .with_chunk_lines(calls.len())
            .retaining(self.retention);
        // One lookup per key in the batch, not one per call.
        let mut mappings: HashMap<&str, Option<String>> = HashMap::new();
        for (i, c) in calls.iter().enumerate() {
            let mut envelope = c.envelope.clone();
            if !envelope.contains_key("account") {
                let mapped = match c.key_sha256.as_deref() {
                    Some(sha) => match mappings.get(sha) {
                        Some(account) => account.clone(),
                        None => {
                            let account = self.store.proxy_key_account(sha).await?;
                            mappings.insert(sha, account.clone());
                            account
                        }
                    },
                    None => None,
                };
                if let Some(account) = mapped.or_else(|| self.default_account.clone()) {
                    envelope.insert("account".into(), account.into());
                }
            }
            let line = Value::Object(envelope).to_string();
            builder.push_line(i as u64 + 1, line.as_bytes());
        }
        self.store.write(&builder.take()).await.map(|_| ())
    }
}

/// Run file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}
