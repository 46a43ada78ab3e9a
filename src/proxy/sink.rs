//! What the recorder's writer, the journal and the replayer share: a call
//! waiting to be recorded, where its record was kept, and the sink they
//! all write through (the ledger link, the spool, the metrics).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::oneshot;

use super::admin::ProxyMetrics;
use super::capture::Captured;
use super::link::LedgerLink;
use super::spool::Spool;
use crate::record::Retention;

/// Calls written per transaction (or journal append) at most.
pub(super) const BATCH: usize = 500;

/// Where a call's record is kept, once it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kept {
    /// Committed to the ledger.
    Ledger,
    /// Fsynced in the spool, to be replayed into the ledger.
    Spool,
    /// Nowhere: the ledger refused it and there is no spool (or the spool
    /// could not be written).
    Lost,
}

/// A call waiting to be recorded, and who to tell when it is.
pub(super) struct Call {
    pub(super) captured: Captured,
    pub(super) kept: oneshot::Sender<Kept>,
    pub(super) since: Instant,
}

/// What the writer, the replayer and the overflow path share.
pub(super) struct Sink {
    pub(super) link: Arc<LedgerLink>,
    pub(super) spool: Option<Arc<Spool>>,
    pub(super) default_account: Option<String>,
    pub(super) retention: Retention,
    pub(super) metrics: Arc<ProxyMetrics>,
}

impl Sink {
    /// Keep calls in the spool (fsynced before this returns); where they are
    /// kept. Blocking.
    pub(super) fn spool_now(&self, calls: &[&Captured]) -> Kept {
        let n = calls.len();
        let Some(spool) = &self.spool else {
            tracing::error!(
                calls = n,
                "no --spool: calls the ledger did not take are lost"
            );
            ProxyMetrics::count(&self.metrics.dropped, n);
            return Kept::Lost;
        };
        // Counted before it is written: the replayer may take it at once.
        self.metrics
            .spool_depth
            .fetch_add(n as i64, Ordering::Relaxed);
        match spool.append(calls) {
            Ok(()) => {
                ProxyMetrics::count(&self.metrics.spooled, n);
                Kept::Spool
            }
            Err(e) => {
                self.metrics
                    .spool_depth
                    .fetch_sub(n as i64, Ordering::Relaxed);
                ProxyMetrics::count(&self.metrics.dropped, n);
                tracing::error!(error = %e, calls = n, "cannot write the spool: calls are lost");
                Kept::Lost
            }
        }
    }

    /// Tell a call's answer where its record is, and time the wait; the
    /// call's capture back.
    pub(super) fn settle(&self, call: Call, kept: Kept) -> Captured {
        let waited = call.since.elapsed().as_micros() as usize;
        ProxyMetrics::count(&self.metrics.record_micros, waited);
        ProxyMetrics::count(&self.metrics.record_waits, 1);
        // The caller may have gone: nobody is waiting then.
        let _ = call.kept.send(kept);
        call.captured
    }
}
