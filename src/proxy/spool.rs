//! The durable spool: calls the ledger could not take wait on disk, in
//! order, until it can. Each batch is one file, written whole and fsynced
//! under a temporary name, then renamed (and the directory fsynced), so a
//! crash leaves either the whole batch or none of it. Replaying a batch
//! twice records it once: a record's identity is its response id.
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

fn number(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("batch-")?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()
}

impl Spool {
    /// The spool in `dir` (created if missing), with whatever it already holds.
    pub(super) fn open(dir: &Path) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let spool = Spool {
            dir: dir.to_owned(),
            next: AtomicU64::new(0),
        };
        let last = spool.pending()?.last().and_then(|p| number(p)).unwrap_or(0);
        spool.next.store(last + 1, Ordering::SeqCst);
        Ok(spool)
    }

    /// Keep a batch durably (its file fsynced and renamed, the directory
    /// fsynced), numbered after every batch kept before it.
    pub(super) fn append(&self, batch: &[&Captured]) -> io::Result<()> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.join(format!("batch-{n:012}{SUFFIX}"));
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

    /// A waiting batch's calls. A line that does not parse (a disk fault)
    /// is skipped and logged: the rest of the batch still goes in.
    pub(super) fn read(path: &Path) -> io::Result<Vec<Captured>> {
        let mut calls = Vec::new();
        for (i, line) in BufReader::new(File::open(path)?).lines().enumerate() {
            match serde_json::from_str(&line?) {
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
