//! The durable spool: calls the ledger has not committed wait on disk, in
//! order, until it does. It holds two kinds of file:
//!
//! - the recorder's journal (`journal-N.ndjson`, [`super::journal`]): every
//!   call is appended there and fsynced before its answer ends; a segment
//!   whose calls the ledger has all committed is removed, one that it has
//!   not becomes a batch to replay;
//! - batches to replay (`batch-N.ndjson`): such segments, the journal a
//!   stopped proxy left, and calls that found the recorder's queue full
//!   (each written whole and fsynced under a temporary name, then renamed,
//!   so a crash leaves either the whole batch or none of it).
//!
//! Replaying a call twice records it once: a record's identity is its
//! response id.
//!
//! Under billing retention the spool holds billing views only; the SHA-256
//! of the caller's API key travels with a call that names no account, to
//! find its mapping when it is replayed.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::capture::Captured;

pub(super) struct Spool {
    dir: PathBuf,
    next: AtomicU64,
}

const SUFFIX: &str = ".ndjson";

/// Batches waiting to be replayed are `batch-N.ndjson`; the journal's
/// segments, while the recorder writes them, `journal-N.ndjson`.
const BATCH: &str = "batch-";
const JOURNAL: &str = "journal-";

fn numbered(path: &Path, prefix: &str) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix(prefix)?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()
}

fn number(path: &Path) -> Option<u64> {
    numbered(path, BATCH)
}

impl Spool {
    /// The spool in `dir` (created if missing), with whatever it already
    /// holds. A journal segment left by a proxy that stopped (or was killed)
    /// is to be replayed whole: what of it the ledger had committed is
    /// recorded once all the same.
    pub(super) fn open(dir: &Path) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut last = 0;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if let Some(n) = numbered(&path, JOURNAL) {
                fs::rename(&path, dir.join(format!("{BATCH}{n:012}{SUFFIX}")))?;
            }
            last = last.max(numbered(&path, JOURNAL).or(number(&path)).unwrap_or(0));
        }
        File::open(dir)?.sync_all()?;
        Ok(Spool {
            dir: dir.to_owned(),
            next: AtomicU64::new(last + 1),
        })
    }

    /// A new journal segment, empty, its name durable: its number and file.
    pub(super) fn segment(&self) -> io::Result<(u64, File)> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let file = File::create(self.segment_path(n))?;
        File::open(&self.dir)?.sync_all()?;
        Ok((n, file))
    }

    fn segment_path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{JOURNAL}{n:012}{SUFFIX}"))
    }

    /// A closed segment whose calls the ledger has not all committed: it
    /// becomes a batch to replay, with its number (its place in order).
    pub(super) fn keep_segment(&self, n: u64) -> io::Result<()> {
        let batch = self.dir.join(format!("{BATCH}{n:012}{SUFFIX}"));
        fs::rename(self.segment_path(n), batch)
    }

    /// A closed segment whose every call the ledger has committed.
    pub(super) fn drop_segment(&self, n: u64) -> io::Result<()> {
        fs::remove_file(self.segment_path(n))
    }

    /// Keep a batch durably (its file fsynced and renamed, the directory
    /// fsynced), numbered after every batch kept before it.
    pub(super) fn append(&self, batch: &[&Captured]) -> io::Result<()> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.join(format!("{BATCH}{n:012}{SUFFIX}"));
        let temporary = self.dir.join(format!(".batch-{n:012}.tmp"));
        let mut file = File::create(&temporary)?;
        for captured in batch {
            serde_json::to_writer(&mut file, captured)?;
            file.write_all(b"\n")?;
        }
        file.sync_all()?;
        fs::rename(&temporary, &path)?;
        File::open(&self.dir)?.sync_all()
    }

    /// The batches waiting, oldest first.
    pub(super) fn pending(&self) -> io::Result<Vec<PathBuf>> {
        let mut files: Vec<(u64, PathBuf)> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| number(&p).map(|n| (n, p)))
            .collect();
        files.sort();
        Ok(files.into_iter().map(|(_, p)| p).collect())
    }

    /// A waiting batch's calls. A line that does not parse (a disk fault,
    /// or the torn last line of a journal segment a killed proxy left, whose
    /// calls were never answered) is skipped and logged: the rest of the
    /// batch still goes in.
    pub(super) fn read(path: &Path) -> io::Result<Vec<Captured>> {
        let mut calls = Vec::new();
        for (i, line) in BufReader::new(File::open(path)?).split(b'\n').enumerate() {
            match serde_json::from_slice(&line?) {
                Ok(c) => calls.push(c),
                Err(e) => {
                    tracing::error!(file = %path.display(), line = i + 1, error = %e, "unreadable spooled call")
                }
            }
        }
        Ok(calls)
    }

    /// Calls waiting in the spool (its batches' lines).
    pub(super) fn calls_waiting(&self) -> io::Result<usize> {
        let mut n = 0;
        for path in self.pending()? {
            n += BufReader::new(File::open(path)?).lines().count();
        }
        Ok(n)
    }
}
