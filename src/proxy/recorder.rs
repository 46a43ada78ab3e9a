//! The recorder: captured calls go through a bounded queue to one writer,
//! which commits whatever has queued meanwhile in one transaction (group
//! commit: with many callers, one commit serves them all) through the same
//! ingest path as every other line (identity, duplicates, conflicts, the
//! rejected store, retention), then tells each call's answer that its
//! record is durable ([`Kept`]), so the answer's end can go to the caller.
//!
//! A batch the ledger does not take within [`super::link::PATIENCE`] goes
//! to the spool ([`super::spool`]) when there is one, and while the ledger
//! is down every batch goes there directly; the spool is replayed by a task
//! of its own ([`super::replay`]), so live calls never wait behind it.
//!
//! The account of a call: the `x-tally-account` header it sent, else the
//! account its API key's hash is mapped to, else `--default-account`; a
//! call with none is kept as a rejected line (field `account`) all the same.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::admin::ProxyMetrics;
use super::capture::Captured;
use super::link::LedgerLink;
use super::replay::Replayer;
use super::spool::Spool;
use crate::record::Retention;

/// Captures written per transaction at most.
const BATCH: usize = 500;

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
struct Call {
    captured: Captured,
    kept: oneshot::Sender<Kept>,
    since: Instant,
}

/// What the writer, the replayer and the overflow path share.
pub(super) struct Sink {
    pub(super) link: Arc<LedgerLink>,
    pub(super) spool: Option<Arc<Spool>>,
    pub(super) default_account: Option<String>,
    pub(super) retention: Retention,
    pub(super) metrics: Arc<ProxyMetrics>,
}

#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Call>,
    sink: Arc<Sink>,
}

impl Recorder {
    /// Start the writer (and, with a spool, its replayer) on the current
    /// runtime.
    pub(super) fn start(sink: Sink, queue: usize) -> std::io::Result<Recorder> {
        if let Some(spool) = &sink.spool {
            let waiting = spool.calls_waiting()?;
            let depth = &sink.metrics.spool_depth;
            depth.store(waiting as i64, Ordering::Relaxed);
        }
        let sink = Arc::new(sink);
        let (sender, receiver) = mpsc::channel(queue.max(1));
        tokio::spawn(write_calls(sink.clone(), receiver));
        if sink.spool.is_some() {
            tokio::spawn(Replayer::new(sink.clone()).run());
        }
        Ok(Recorder {
            queue: sender,
            sink,
        })
    }

    /// Whether the ledger is taking calls (else they go to the spool).
    pub(super) fn ledger_up(&self) -> bool {
        self.sink.link.is_up()
    }

    /// Hand a call over without waiting; the answer says where its record
    /// is kept once it is durable. When the queue is full (the ledger is
    /// slower than the traffic), the call goes to the spool on a blocking
    /// thread instead.
    pub(super) fn submit(&self, captured: Captured) -> oneshot::Receiver<Kept> {
        let (kept, answer) = oneshot::channel();
        let call = Call {
            captured,
            kept,
            since: Instant::now(),
        };
        let call = match self.queue.try_send(call) {
            Ok(()) => return answer,
            Err(mpsc::error::TrySendError::Full(c) | mpsc::error::TrySendError::Closed(c)) => c,
        };
        let sink = self.sink.clone();
        tokio::task::spawn_blocking(move || {
            let kept = sink.spool_now(&[&call.captured]);
            sink.settle(call, kept);
        });
        answer
    }
}

impl Sink {
    /// Keep calls in the spool (fsynced before this returns); where they are
    /// kept. Blocking.
    fn spool_now(&self, calls: &[&Captured]) -> Kept {
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

    /// Tell a call's answer where its record is, and time the wait.
    fn settle(&self, call: Call, kept: Kept) {
        let waited = call.since.elapsed().as_micros() as usize;
        ProxyMetrics::count(&self.metrics.record_micros, waited);
        ProxyMetrics::count(&self.metrics.record_waits, 1);
        // The caller may have gone: nobody is waiting then.
        let _ = call.kept.send(kept);
    }
}

/// The writer: whatever has queued, in one transaction (or one spool file),
/// then every call of it told.
async fn write_calls(sink: Arc<Sink>, mut queue: mpsc::Receiver<Call>) {
    let mut calls = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut calls, BATCH).await > 0 {
        let (batch, kept) = keep(&sink, std::mem::take(&mut calls)).await;
        for call in batch {
            sink.settle(call, kept);
        }
    }
}

fn captured(calls: &[Call]) -> Vec<&Captured> {
    calls.iter().map(|c| &c.captured).collect()
}

/// Commit calls to the ledger, or, when it is down or does not take them
/// in time, to the spool.
async fn keep(sink: &Arc<Sink>, calls: Vec<Call>) -> (Vec<Call>, Kept) {
    if sink.spool.is_none() || sink.link.is_up() {
        let written = sink
            .link
            .write(
                &captured(&calls),
                sink.default_account.as_deref(),
                sink.retention,
            )
            .await;
        match written {
            Ok(()) => {
                ProxyMetrics::count(&sink.metrics.recorded, calls.len());
                return (calls, Kept::Ledger);
            }
            Err(e) => {
                tracing::warn!(error = %e, calls = calls.len(), "the ledger did not take the calls");
            }
        }
    }
    let sink = sink.clone();
    tokio::task::spawn_blocking(move || {
        let kept = sink.spool_now(&captured(&calls));
        (calls, kept)
    })
    .await
    // A panic while spooling: the calls' answers hear nothing, so are cut.
    .unwrap_or((Vec::new(), Kept::Lost))
}
