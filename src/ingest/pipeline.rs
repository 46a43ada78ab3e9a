//! Committing a stream of chunks in order, with more than one in flight when
//! the backend can take concurrent writers (PostgreSQL).
//!
//! Order matters: the first occurrence of a response id is the one that
//! stands, and the first account to use a container owns it. Two chunks run
//! concurrently only when they share no record key and every container they
//! share is named by one and the same account in both (then either order
//! gives the same owner, and container time merges in any order); otherwise
//! the later one waits for the earlier to commit. Results are handed back in
//! submission order.
//!
//! Memory: the chunks in flight hold at most [`IN_FLIGHT_BYTES`] of input
//! text, give or take the last one submitted, and a chunk holding a record
//! of [`LARGE_RECORD_BYTES`] or more (up to the 256 MiB limit) is committed
//! before [`OrderedCommitter::submit`] returns: a reader that waits for
//! `submit` before reading on holds one such record at a time.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::task::JoinHandle;

use crate::store::{Result, StoreError, WriteBatch, WriteOutcome, Writes};

/// What the committer needs of a store: writing, and how many writes may overlap.
#[async_trait]
pub trait BatchWriter: Send + Sync + 'static {
    fn max_parallel_writes(&self) -> usize;
    async fn write(&self, batch: &WriteBatch) -> Result<WriteOutcome>;
}

#[async_trait]
impl<S: Writes + ?Sized> BatchWriter for S {
    fn max_parallel_writes(&self) -> usize {
        Writes::max_parallel_writes(self)
    }
    async fn write(&self, batch: &WriteBatch) -> Result<WriteOutcome> {
        Writes::write(self, batch).await
    }
}

/// Input text the chunks in flight may hold before `submit` waits for them.
pub const IN_FLIGHT_BYTES: usize = 64 << 20;

pub use crate::store::LARGE_RECORD_BYTES;

/// What became of a chunk, as [`OrderedCommitter::settle`] hands it back.
#[derive(Debug)]
pub enum Settled {
    Committed(WriteBatch, WriteOutcome),
    Failed(Failed),
    /// Never written: the write it waited for failed first.
    Unsent(WriteBatch),
}

/// A chunk whose write failed, handed back whole so its lines can be
/// reported (see [`OrderedCommitter::settle`]).
#[derive(Debug)]
pub struct Failed {
    pub batch: WriteBatch,
    pub error: StoreError,
    pub progress: u64,
}

/// What a chunk touches that another chunk in flight must not.
struct Footprint {
    keys: HashSet<String>,
    /// Container → the one account naming it in the chunk (None: several).
    containers: HashMap<String, Option<String>>,
}

impl Footprint {
    fn of(batch: &WriteBatch) -> Self {
        let mut keys = HashSet::with_capacity(batch.records.len());
        let mut containers: HashMap<String, Option<String>> = HashMap::new();
        for r in &batch.records {
            keys.insert(r.key.clone());
            if let Some(c) = &r.container_id {
                containers
                    .entry(c.clone())
                    .and_modify(|a| {
                        if a.as_deref() != Some(r.account.as_str()) {
                            *a = None;
                        }
                    })
                    .or_insert_with(|| Some(r.account.clone()));
            }
        }
        Footprint { keys, containers }
    }

    fn clashes_with(&self, other: &Footprint) -> bool {
        !self.keys.is_disjoint(&other.keys)
            || self.containers.iter().any(|(c, account)| {
                other
                    .containers
                    .get(c)
                    .is_some_and(|theirs| account.is_none() || theirs != account)
            })
    }
}

struct InFlight {
    footprint: Footprint,
    bytes: usize,
    progress: u64,
    /// Shared with the task writing it: the chunk outlives a failed write.
    batch: Arc<WriteBatch>,
    task: JoinHandle<Result<WriteOutcome>>,
}

pub struct OrderedCommitter<W: BatchWriter + ?Sized> {
    store: Arc<W>,
    parallel: usize,
    inflight: VecDeque<InFlight>,
    /// Input text held by the chunks in flight.
    inflight_bytes: usize,
    /// Chunks whose write failed, for [`Self::settle`].
    failed: Vec<Failed>,
    /// A chunk `submit` was given but never started, because a write it
    /// waited for failed.
    unsent: Option<WriteBatch>,
}

impl<W: BatchWriter + ?Sized> OrderedCommitter<W> {
    pub fn new(store: Arc<W>) -> Self {
        let parallel = store.max_parallel_writes().max(1);
        OrderedCommitter {
            store,
            parallel,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            failed: Vec::new(),
            unsent: None,
        }
    }

    /// Start committing `batch`; `on_done` receives every batch that
    /// finishes meanwhile (in order), with the `progress` it was submitted with.
    /// Returns once the chunks in flight hold less than [`IN_FLIGHT_BYTES`].
    pub async fn submit(
        &mut self,
        batch: WriteBatch,
        progress: u64,
        on_done: &mut impl FnMut(WriteBatch, WriteOutcome, u64),
    ) -> Result<()> {
        let footprint = Footprint::of(&batch);
        let bytes = batch.held_bytes();
        let large = batch.holds_large_record();
        while self.inflight.len() >= self.parallel
            || self
                .inflight
                .iter()
                .any(|f| f.footprint.clashes_with(&footprint))
        {
            if let Err(e) = self.finish_one(on_done).await {
                // Not started: kept, so `settle` hands it back unwritten.
                self.unsent = Some(batch);
                return Err(e);
            }
        }
        let store = self.store.clone();
        let batch = Arc::new(batch);
        let writing = batch.clone();
        let task = tokio::spawn(async move { store.write(&writing).await });
        self.inflight.push_back(InFlight {
            footprint,
            bytes,
            progress,
            batch,
            task,
        });
        self.inflight_bytes += bytes;
        if large {
            return self.finish(on_done).await;
        }
        while self.inflight_bytes >= IN_FLIGHT_BYTES {
            self.finish_one(on_done).await?;
        }
        Ok(())
    }

    /// Wait for everything in flight.
    pub async fn finish(
        &mut self,
        on_done: &mut impl FnMut(WriteBatch, WriteOutcome, u64),
    ) -> Result<()> {
        while !self.inflight.is_empty() {
            self.finish_one(on_done).await?;
        }
        Ok(())
    }

    /// After `submit` or `finish` failed: wait for every chunk still in
    /// flight and hand back, in submission order, every chunk not yet handed
    /// to `on_done`: the failed ones (the first failure included) and the
    /// ones that committed meanwhile. Nothing is left writing behind the
    /// caller's back.
    pub async fn settle(&mut self) -> Vec<Settled> {
        let mut settled: Vec<Settled> = std::mem::take(&mut self.failed)
            .into_iter()
            .map(Settled::Failed)
            .collect();
        while !self.inflight.is_empty() {
            let mut committed = None;
            match self
                .finish_one(&mut |batch, outcome, _| committed = Some((batch, outcome)))
                .await
            {
                Ok(()) => settled.extend(committed.map(|(b, o)| Settled::Committed(b, o))),
                Err(_) => settled.extend(self.failed.pop().map(Settled::Failed)),
            }
        }
        settled.extend(self.unsent.take().map(Settled::Unsent));
        settled
    }

    async fn finish_one(
        &mut self,
        on_done: &mut impl FnMut(WriteBatch, WriteOutcome, u64),
    ) -> Result<()> {
        let Some(first) = self.inflight.pop_front() else {
            return Ok(());
        };
        self.inflight_bytes -= first.bytes;
        let done = first
            .task
            .await
            .map_err(|e| StoreError::Invalid(format!("a write task failed: {e}")))
            .and_then(|written| written);
        // The task has ended (its future, and its handle on the chunk, are
        // dropped): the chunk is this side's alone again.
        let batch = Arc::try_unwrap(first.batch).unwrap_or_default();
        match done {
            Ok(outcome) => {
                on_done(batch, outcome, first.progress);
                Ok(())
            }
            Err(error) => {
                let reported = StoreError::Invalid(error.to_string());
                self.failed.push(Failed {
                    batch,
                    error,
                    progress: first.progress,
                });
                Err(reported)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::ChunkBuilder;
    use crate::record::Defaults;

    /// A batch of records `(id, account, container)`.
    fn batch(records: &[(&str, &str, &str)]) -> WriteBatch {
        let mut b = ChunkBuilder::new("test", Defaults::default(), crate::time::now_micros());
        for (n, (id, account, container)) in records.iter().enumerate() {
            let line = serde_json::json!({
                "account": account, "recorded_at": "2025-05-23T20:13:31Z",
                "response": {"id": id, "type": "message", "model": "m", "content": [],
                    "usage": {"input_tokens": 1, "output_tokens": 1},
                    "container": {"id": container, "expires_at": "2025-05-23T21:00:00Z"}}
            });
            b.push_line(n as u64 + 1, line.to_string().as_bytes());
        }
        let batch = b.take();
        assert_eq!(batch.records.len(), records.len(), "{:?}", batch.rejections);
        batch
    }

    fn clash(a: &[(&str, &str, &str)], b: &[(&str, &str, &str)]) -> bool {
        Footprint::of(&batch(a)).clashes_with(&Footprint::of(&batch(b)))
    }

    #[test]
    fn chunks_wait_only_for_what_order_decides() {
        // Disjoint: run together.
        assert!(!clash(&[("m1", "a", "c1")], &[("m2", "b", "c2")]));
        // One account's container in both: either order gives the same owner.
        assert!(!clash(&[("m1", "a", "c1")], &[("m2", "a", "c1")]));
        // The same container under two accounts: the first must commit first.
        assert!(clash(&[("m1", "a", "c1")], &[("m2", "b", "c1")]));
        assert!(clash(
            &[("m1", "a", "c1"), ("m3", "b", "c1")],
            &[("m2", "a", "c1")]
        ));
        assert!(clash(
            &[("m2", "a", "c1")],
            &[("m1", "a", "c1"), ("m3", "b", "c1")]
        ));
        // The same response id: the first occurrence must stand.
        assert!(clash(&[("m1", "a", "c1")], &[("m1", "a", "c2")]));
    }
}
