//! The spool's replayer, a task of its own beside the writer: every second
//! it writes the spooled batches
//! into the ledger, oldest first, removing each once the ledger has
//! committed it. It is also what notices the ledger is back: with nothing
//! spooled it checks that the ledger answers (opening it, when the proxy
//! started without it), and the writer sends calls to the ledger again
//! once it does.
//!
//! A batch replayed twice (a crash between its commit and its removal) is
//! recorded once: a record's identity is its response id.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::admin::ProxyMetrics;
use super::capture::Captured;
use super::sink::Sink;
use super::spool::Spool;

/// How often the spool is tried again, and the ledger checked.
const EVERY: Duration = Duration::from_secs(1);

pub(super) struct Replayer {
    sink: Arc<Sink>,
}

impl Replayer {
    pub(super) fn new(sink: Arc<Sink>) -> Replayer {
        Replayer { sink }
    }

    pub(super) async fn run(self) {
        let Some(spool) = self.sink.spool.clone() else {
            return;
        };
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let pending = match blocking({
                let spool = spool.clone();
                move || spool.pending()
            })
            .await
            {
                Ok(pending) => pending,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the spool");
                    continue;
                }
            };
            if pending.is_empty() {
                self.sink.link.check().await;
                continue;
            }
            self.replay(pending).await;
        }
    }

    /// Write the spooled batches, oldest first, while the ledger takes them.
    async fn replay(&self, pending: Vec<std::path::PathBuf>) {
        let sink = &self.sink;
        for path in pending {
            let file = path.clone();
            let calls = match blocking(move || Spool::read(&file)).await {
                Ok(calls) => calls,
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "cannot read a spooled batch");
                    return;
                }
            };
            let refs: Vec<&Captured> = calls.iter().collect();
            let written = sink
                .link
                .write(&refs, sink.default_account.as_deref(), sink.retention)
                .await;
            if let Err(e) = written {
                tracing::debug!(error = %e, "the ledger still does not take the spooled calls");
                return;
            }
            let n = calls.len();
            ProxyMetrics::count(&sink.metrics.recorded, n);
            sink.metrics
                .spool_depth
                .fetch_sub(n as i64, Ordering::Relaxed);
            if let Err(e) = remove(&path).await {
                // Replayed again later: recorded once all the same.
                tracing::error!(file = %path.display(), error = %e, "cannot remove a replayed batch");
                return;
            }
            tracing::info!(calls = n, "spooled calls recorded");
        }
    }
}

async fn remove(path: &Path) -> std::io::Result<()> {
    let path = path.to_owned();
    blocking(move || std::fs::remove_file(path)).await
}

/// Run file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}
