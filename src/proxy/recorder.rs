//! The recorder: captured calls go through a bounded queue to one writer,
//! which makes whatever has queued meanwhile durable at once (group commit:
//! with many callers, one fsync or one transaction serves them all), then
//! tells each call's answer so ([`Kept`]), and the answer's end goes to the
//! caller.
//!
//! - With a spool, durable means appended and fsynced in the journal
//!   ([`super::journal`]); the ledger takes the calls from there in large
//!   transactions, apart from the callers, and what it does not take (slow,
//!   down, refusing) waits in the spool for the replayer ([`super::replay`]).
//! - Without one, durable means committed to the ledger; a call the ledger
//!   does not take is lost, and its answer cut off.
//!
//! Calls reach the ledger through the same ingest path as every other line
//! (identity, duplicates, conflicts, the rejected store, retention).
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
use super::journal;
use super::replay::Replayer;
use super::sink::{BATCH, Call, Kept, Sink};

#[derive(Clone)]
pub struct Recorder {
    queue: Queue,
    sink: Arc<Sink>,
}

/// Where calls queue: for the journal's writer (a thread), or, without a
/// spool, for the ledger writer (a task).
#[derive(Clone)]
enum Queue {
    Journal(std::sync::mpsc::SyncSender<Call>),
    Ledger(mpsc::Sender<Call>),
}

impl Queue {
    /// The call back when the queue is full (or its writer gone).
    fn try_send(&self, call: Call) -> Result<(), Call> {
        use std::sync::mpsc::TrySendError as Std;
        use tokio::sync::mpsc::error::TrySendError as Tokio;
        match self {
            Queue::Journal(queue) => queue.try_send(call).map_err(|e| match e {
                Std::Full(c) | Std::Disconnected(c) => c,
            }),
            Queue::Ledger(queue) => queue.try_send(call).map_err(|e| match e {
                Tokio::Full(c) | Tokio::Closed(c) => c,
            }),
        }
    }
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
        let queue = match sink.spool.clone() {
            Some(spool) => {
                tokio::spawn(Replayer::new(sink.clone()).run());
                Queue::Journal(journal::start(sink.clone(), spool, queue)?)
            }
            None => {
                let (sender, receiver) = mpsc::channel(queue.max(1));
                tokio::spawn(write_calls(sink.clone(), receiver));
                Queue::Ledger(sender)
            }
        };
        Ok(Recorder { queue, sink })
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
        let Err(call) = self.queue.try_send(call) else {
            return answer;
        };
        let sink = self.sink.clone();
        tokio::task::spawn_blocking(move || {
            let kept = sink.spool_now(&[&call.captured]);
            sink.settle(call, kept);
        });
        answer
    }
}

/// Without a spool, the writer: whatever has queued, in one transaction,
/// then every call of it told whether the ledger took it.
async fn write_calls(sink: Arc<Sink>, mut queue: mpsc::Receiver<Call>) {
    let mut calls = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut calls, BATCH).await > 0 {
        let batch = std::mem::take(&mut calls);
        let captured: Vec<&Captured> = batch.iter().map(|c| &c.captured).collect();
        let written = sink
            .link
            .write(&captured, sink.default_account.as_deref(), sink.retention)
            .await;
        drop(captured);
        let kept = match written {
            Ok(()) => {
                ProxyMetrics::count(&sink.metrics.recorded, batch.len());
                Kept::Ledger
            }
            Err(e) => {
                tracing::error!(error = %e, calls = batch.len(), "no --spool: calls the ledger did not take are lost");
                ProxyMetrics::count(&sink.metrics.dropped, batch.len());
                Kept::Lost
            }
        };
        for call in batch {
            sink.settle(call, kept);
        }
    }
}
