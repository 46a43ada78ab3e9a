//! Group commit in front of a [`Store`].
//!
//! Many HTTP requests arrive at once, each with a few records. Committing each
//! on its own would cost one fsync (SQLite) or one round trip (PostgreSQL)
//! per request. One writer task takes whatever is queued (up to
//! [`GROUP_MAX_LINES`] lines), commits it in one transaction, and only then
//! answers every waiting request. A failed commit fails every request of the
//! group, and none of them is acknowledged: nothing is half written.
//!
//! A backend that takes concurrent writers (PostgreSQL) gets up to
//! [`Store::max_parallel_writes`] groups in flight at once: while one group
//! waits for its commit, the next is already being written. Concurrent
//! requests have no order among themselves, and the database's unique keys
//! keep a record sent twice at once stored once.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::store::{Store, StoreError, WriteBatch, WriteOutcome};

pub const GROUP_MAX_LINES: usize = 8000;

/// Why a submitted batch was not committed (nothing of it was recorded).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// The store failed the group's transaction (shared by every request of
    /// the group, hence the `Arc`).
    #[error("{0}")]
    Store(Arc<StoreError>),
    /// The writer task is gone (the runtime is shutting down).
    #[error("the ledger writer has stopped")]
    Stopped,
}

type Reply = Result<(WriteBatch, WriteOutcome), CommitError>;

struct Job {
    batch: WriteBatch,
    reply: oneshot::Sender<Reply>,
}

#[derive(Clone)]
pub struct Ledger {
    store: Arc<dyn Store>,
    queue: mpsc::Sender<Job>,
}

impl Ledger {
    /// Start the writer task on the current runtime.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (queue, rx) = mpsc::channel(256);
        tokio::spawn(writer(store.clone(), rx));
        Ledger { store, queue }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Commit `batch` (with whatever else is queued) and return it with its outcome.
    pub async fn submit(&self, batch: WriteBatch) -> Reply {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { batch, reply })
            .await
            .map_err(|_| CommitError::Stopped)?;
        answer.await.map_err(|_| CommitError::Stopped)?
    }
}

async fn writer(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Job>) {
    let slots = Arc::new(Semaphore::new(store.max_parallel_writes().max(1)));
    while let Some(first) = rx.recv().await {
        // Wait for a free slot before gathering, so a group takes in
        // everything that queued up meanwhile.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut lines = first.batch.len();
        let mut jobs = vec![first];
        while lines < GROUP_MAX_LINES {
            match rx.try_recv() {
                Ok(job) => {
                    lines += job.batch.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let store = store.clone();
        tokio::spawn(async move {
            commit_group(store.as_ref(), jobs).await;
            drop(slot);
        });
    }
}

async fn commit_group(store: &dyn Store, jobs: Vec<Job>) {
    if let [_] = jobs.as_slice() {
        if let Some(job) = jobs.into_iter().next() {
            let result = store
                .write(&job.batch)
                .await
                .map_err(|e| CommitError::Store(Arc::new(e)));
            let _ = job.reply.send(result.map(|outcome| (job.batch, outcome)));
        }
        return;
    }
    // Merge, remembering each job's share, then split the outcome back.
    let mut merged = WriteBatch::default();
    let mut shares = Vec::with_capacity(jobs.len());
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        shares.push((job.batch.records.len(), job.batch.rejections.len()));
        merged.records.extend(job.batch.records);
        merged.rejections.extend(job.batch.rejections);
        replies.push(job.reply);
    }
    match store.write(&merged).await {
        Ok(outcome) => {
            let mut records = merged.records.into_iter();
            let mut rejections = merged.rejections.into_iter();
            let mut record_outcomes = outcome.records.into_iter();
            let mut rejection_ids = outcome.rejections.into_iter();
            for ((nrec, nrej), reply) in shares.into_iter().zip(replies) {
                let batch = WriteBatch {
                    records: records.by_ref().take(nrec).collect(),
                    rejections: rejections.by_ref().take(nrej).collect(),
                };
                let part = WriteOutcome {
                    records: record_outcomes.by_ref().take(nrec).collect(),
                    rejections: rejection_ids.by_ref().take(nrej).collect(),
                };
                let _ = reply.send(Ok((batch, part)));
            }
        }
        Err(e) => {
            // Logged where each request is answered, with its request span.
            let e = CommitError::Store(Arc::new(e));
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
