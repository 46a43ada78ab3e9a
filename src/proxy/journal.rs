//! The recorder's journal, when the proxy has a spool: what makes a call
//! durable before its answer ends, at the cost of one append and one fsync
//! for all the calls that end together, whatever the ledger is doing.
//!
//! - The journal writer appends each group of calls that queued meanwhile
//!   to the open segment (`journal-N.ndjson` in the spool), fsyncs it (at
//!   most once every [`SYNC_INTERVAL`]), then tells each call's answer it is
//!   durable and hands the group to the committer.
//! - The committer writes groups to the ledger in large transactions (what
//!   gathered in [`COMMIT_PAUSE`]), apart from the callers: a slow commit
//!   costs nobody a wait.
//! - A segment is closed after [`SEGMENT_CALLS`] calls or [`SEGMENT_AGE`].
//!   Once every call in it has been through the committer, it is removed if
//!   the ledger committed them all, and otherwise kept as a batch that the
//!   replayer ([`super::replay`]) writes when the ledger answers again. A
//!   segment left by a stopped or killed proxy is replayed whole when the
//!   next one starts ([`Spool::open`]); what of it the ledger had committed
//!   is recorded once all the same (a record's identity is its response id).

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::admin::ProxyMetrics;
use super::capture::Captured;
use super::sink::{BATCH, Call, Kept, Sink};
use super::spool::Spool;

/// Calls per segment at most.
const SEGMENT_CALLS: usize = 2000;

/// The shortest time from one fsync's start to the next's. Calls that end
/// further apart than this (one caller, or a few) never wait for it; with
/// many callers, fsyncs as fast as the disk allows would take CPU from
/// them: measured on 2 cores, 200 callers served a third fewer calls.
const SYNC_INTERVAL: Duration = Duration::from_millis(1);

/// How long a segment stays open at most: how long calls the ledger did not
/// take wait before the replayer may write them.
const SEGMENT_AGE: Duration = Duration::from_secs(1);

/// Groups the committer may hold before new ones are left to the replayer.
const COMMIT_QUEUE: usize = 1024;

/// How long the committer lets groups gather before a transaction.
const COMMIT_PAUSE: Duration = Duration::from_millis(50);

/// Calls the committer writes in one transaction (it may go past it by
/// one group).
const COMMIT_CALLS: usize = 2000;

/// What became of a segment's calls so far.
#[derive(Default)]
struct Tally {
    appended: usize,
    through: usize,
    /// Some of its calls were not committed (the ledger was down or slow).
    uncommitted: bool,
    closed: bool,
}

/// A journal segment, shared by the writer (which appends to it and closes
/// it) and the committer (which says what the ledger did with its calls).
struct Segment {
    number: u64,
    tally: Mutex<Tally>,
}

impl Segment {
    fn update(&self, sink: &Sink, change: impl FnOnce(&mut Tally)) {
        let mut tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        let was_finished = tally.closed && tally.through == tally.appended;
        change(&mut tally);
        if was_finished || !(tally.closed && tally.through == tally.appended) {
            return;
        }
        let Some(spool) = &sink.spool else { return };
        let n = tally.appended;
        if tally.uncommitted {
            match spool.keep_segment(self.number) {
                Ok(()) => {
                    ProxyMetrics::count(&sink.metrics.spooled, n);
                    let depth = &sink.metrics.spool_depth;
                    depth.fetch_add(n as i64, std::sync::atomic::Ordering::Relaxed);
                }
                // Still there under its journal name: replayed at the next start.
                Err(e) => tracing::error!(error = %e, "cannot keep a journal segment for replay"),
            }
        } else if let Err(e) = spool.drop_segment(self.number) {
            // Replayed at the next start, and recorded once.
            tracing::warn!(error = %e, "cannot remove a recorded journal segment");
        }
    }
}

/// Calls on their way to the ledger, from one segment.
struct Group {
    segment: Arc<Segment>,
    calls: Vec<Captured>,
}

/// The open segment.
struct Open {
    segment: Arc<Segment>,
    file: File,
    since: Instant,
}

/// Start the journal writer (a thread of its own: it spends its time in
/// fsync, which would hold up an async worker) and the committer (a task on
/// the current runtime); calls go in through the sender returned, which
/// holds at most `queue` of them.
pub(super) fn start(
    sink: Arc<Sink>,
    spool: Arc<Spool>,
    queue: usize,
) -> io::Result<SyncSender<Call>> {
    let (calls, queued) = std::sync::mpsc::sync_channel(queue.max(1));
    let (groups, committing) = mpsc::channel(COMMIT_QUEUE);
    tokio::spawn(commit(sink.clone(), committing));
    std::thread::Builder::new()
        .name("tally-journal".into())
        .spawn(move || write(&sink, &spool, &queued, &groups))?;
    Ok(calls)
}

/// The writer: whatever has queued, appended and fsynced, its calls told,
/// then handed to the committer; until every sender is gone.
fn write(sink: &Sink, spool: &Spool, queue: &Receiver<Call>, committer: &mpsc::Sender<Group>) {
    let mut open: Option<Open> = None;
    let mut last_sync = Instant::now();
    loop {
        // An open segment is closed at its age even when no call comes.
        let first = match &open {
            None => queue.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(o) => queue.recv_timeout(SEGMENT_AGE.saturating_sub(o.since.elapsed())),
        };
        let group: Vec<Call> = match first {
            Ok(call) => {
                // Under load, fsync no more often than SYNC_INTERVAL: each
                // costs CPU (a flush of the disk), and the calls that end
                // meanwhile share the next one.
                let wait = SYNC_INTERVAL.saturating_sub(last_sync.elapsed());
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
                std::iter::once(call)
                    .chain(queue.try_iter().take(BATCH - 1))
                    .collect()
            }
            Err(RecvTimeoutError::Timeout) => {
                close(sink, open.take());
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if open.as_ref().is_some_and(Open::full) {
            close(sink, open.take());
        }
        let mut current = match open.take().map_or_else(|| new_segment(spool), Ok) {
            Ok(current) => current,
            Err(e) => {
                tracing::error!(error = %e, "cannot open a journal segment: calls are lost");
                settle_all(sink, group, Kept::Lost);
                continue;
            }
        };
        last_sync = Instant::now();
        if let Err(e) = append(&mut current.file, &group) {
            tracing::error!(error = %e, "cannot write the journal: calls are lost");
            // What it holds is replayed; nothing more goes into it.
            close(sink, Some(current));
            settle_all(sink, group, Kept::Lost);
            continue;
        }
        let segment = current.segment.clone();
        segment.update(sink, |t| t.appended += group.len());
        open = Some(current);
        let calls: Vec<Captured> = group
            .into_iter()
            .map(|c| sink.settle(c, Kept::Spool))
            .collect();
        let n = calls.len();
        if committer
            .try_send(Group {
                segment: segment.clone(),
                calls,
            })
            .is_err()
        {
            // The ledger is far behind: these wait in the journal for the replayer.
            segment.update(sink, |t| {
                t.through += n;
                t.uncommitted = true;
            });
        }
    }
    close(sink, open);
}

impl Open {
    fn full(&self) -> bool {
        self.since.elapsed() >= SEGMENT_AGE
            || self
                .segment
                .tally
                .lock()
                .map_or(true, |t| t.appended >= SEGMENT_CALLS)
    }
}

fn settle_all(sink: &Sink, group: Vec<Call>, kept: Kept) {
    if kept == Kept::Lost {
        ProxyMetrics::count(&sink.metrics.dropped, group.len());
    }
    for call in group {
        sink.settle(call, kept);
    }
}

fn close(sink: &Sink, open: Option<Open>) {
    if let Some(open) = open {
        drop(open.file);
        open.segment.update(sink, |t| t.closed = true);
    }
}

fn new_segment(spool: &Spool) -> io::Result<Open> {
    let (number, file) = spool.segment()?;
    Ok(Open {
        segment: Arc::new(Segment {
            number,
            tally: Mutex::new(Tally::default()),
        }),
        file,
        since: Instant::now(),
    })
}

/// Append the calls to the segment and fsync it.
fn append(file: &mut File, group: &[Call]) -> io::Result<()> {
    let mut lines = Vec::with_capacity(group.len() * 1024);
    for call in group {
        serde_json::to_writer(&mut lines, &call.captured)?;
        lines.push(b'\n');
    }
    file.write_all(&lines)?;
    file.sync_data()
}

/// The committer: groups to the ledger, many per transaction.
async fn commit(sink: Arc<Sink>, mut groups: mpsc::Receiver<Group>) {
    while let Some(first) = groups.recv().await {
        // Let more groups come: one large transaction costs the ledger (its
        // fsync, its roll-ups) far less than many small ones, and nobody
        // waits for it.
        tokio::time::sleep(COMMIT_PAUSE).await;
        let mut calls = first.calls.len();
        let mut batch = vec![first];
        while calls < COMMIT_CALLS {
            let Ok(group) = groups.try_recv() else { break };
            calls += group.calls.len();
            batch.push(group);
        }
        let calls: Vec<&Captured> = batch.iter().flat_map(|g| g.calls.iter()).collect();
        let committed = sink.link.is_up()
            && sink
                .link
                .write(&calls, sink.default_account.as_deref(), sink.retention)
                .await
                .inspect_err(|e| {
                    tracing::warn!(error = %e, calls = calls.len(), "the ledger did not take the calls: they wait in the spool");
                })
                .is_ok();
        if committed {
            ProxyMetrics::count(&sink.metrics.recorded, calls.len());
        }
        drop(calls);
        for group in batch {
            let n = group.calls.len();
            group.segment.update(&sink, |t| {
                t.through += n;
                t.uncommitted |= !committed;
            });
        }
    }
}
