//! Ingesting NDJSON files and standard input (`tally ingest`).
//!
//! One thread reads and parses (blocking reads, through the shared
//! [`LineReader`] and its per-line cap); the calling task commits, in order,
//! through the [`OrderedCommitter`]. The reader hands a chunk over and waits
//! until the committer has taken it (which it does once the chunks in flight
//! are under their byte budget) before it reads on: memory stays bounded
//! whatever the input, and a record near the size limit is alone in memory.

use std::sync::Arc;

use super::lines::LineReader;
use super::pipeline::OrderedCommitter;
use super::{ChunkBuilder, Summary};
use crate::record::{Defaults, Retention};
use crate::store::{Store, StoreError, WriteBatch};
use crate::time::to_micros;

/// Bytes read at once from a file or standard input.
const READ_BYTES: usize = 1 << 20;

/// The name that stands for standard input.
pub const STDIN: &str = "-";

/// What [`ingest_files`] reports as it goes, for a progress display.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// Reading starts on this input (`stdin` for standard input).
    File(&'a str),
    /// This many more input bytes are committed.
    Committed(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum IngestFilesError {
    #[error("opening {name}")]
    Open {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {name} after line {line}")]
    Read {
        name: String,
        line: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("committing to the ledger")]
    Commit(#[source] StoreError),
    #[error("the reader thread failed")]
    ReaderThread,
}

/// What the reader thread sends to the writer.
enum Feed {
    File {
        name: String,
    },
    Chunk {
        batch: WriteBatch,
        bytes: u64,
        /// Told once the committer has taken the chunk.
        taken: tokio::sync::oneshot::Sender<()>,
    },
}

/// Ingest `files` in order (`-` is standard input), filling in `defaults`
/// for lines that lack them. A line longer than `max_line` bytes is a
/// rejected line; the lines after it are still ingested.
pub async fn ingest_files(
    store: Arc<dyn Store>,
    files: &[String],
    defaults: Defaults,
    retention: Retention,
    max_line: usize,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Summary, IngestFilesError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Feed>(1);
    let files = files.to_vec();
    let shape = Shape {
        defaults,
        retention,
        max_line,
        chunk_lines: store.chunk_lines(),
    };
    let reader = std::thread::spawn(move || read_inputs(&files, &shape, &tx));

    let mut summary = Summary::default();
    let mut committer = OrderedCommitter::new(store.clone());
    while let Some(feed) = rx.recv().await {
        match feed {
            Feed::File { name } => progress(Progress::File(&name)),
            Feed::Chunk {
                batch,
                bytes,
                taken,
            } => {
                committer
                    .submit(batch, bytes, &mut |batch, outcome, bytes| {
                        summary.absorb(&batch, &outcome);
                        progress(Progress::Committed(bytes));
                    })
                    .await
                    .map_err(IngestFilesError::Commit)?;
                let _ = taken.send(());
            }
        }
    }
    committer
        .finish(&mut |batch, outcome, bytes| {
            summary.absorb(&batch, &outcome);
            progress(Progress::Committed(bytes));
        })
        .await
        .map_err(IngestFilesError::Commit)?;
    match reader.join() {
        Ok(result) => result?,
        Err(_) => return Err(IngestFilesError::ReaderThread),
    }
    // Every record is committed by now: a fold that fails only leaves the
    // roll-ups slower to read, so it is reported, not an ingest failure.
    if summary.accepted >= BULK_LOAD_RECORDS
        && let Err(e) = store.compact_rollups().await
    {
        tracing::warn!("folding the roll-ups' shards after the load failed: {e}");
    }
    Ok(summary)
}

/// Records from which a run counts as a bulk load, after which the roll-ups'
/// writer shards are folded (see [`crate::store::Writes::compact_rollups`]).
pub const BULK_LOAD_RECORDS: u64 = 10_000;

/// How the reader thread cuts and parses lines.
struct Shape {
    defaults: Defaults,
    retention: Retention,
    max_line: usize,
    chunk_lines: usize,
}

/// Hand a chunk to the writer and wait until it is taken; false when the
/// writer has stopped (its error is reported there).
fn hand_over(tx: &tokio::sync::mpsc::Sender<Feed>, batch: WriteBatch, bytes: u64) -> bool {
    let (taken, until_taken) = tokio::sync::oneshot::channel();
    tx.blocking_send(Feed::Chunk {
        batch,
        bytes,
        taken,
    })
    .is_ok()
        && until_taken.blocking_recv().is_ok()
}

/// The reader thread: every input, line by line, into chunks.
fn read_inputs(
    files: &[String],
    shape: &Shape,
    tx: &tokio::sync::mpsc::Sender<Feed>,
) -> Result<(), IngestFilesError> {
    for name in files {
        let input: Box<dyn std::io::Read> = if name == STDIN {
            Box::new(std::io::stdin())
        } else {
            Box::new(
                std::fs::File::open(name).map_err(|source| IngestFilesError::Open {
                    name: name.clone(),
                    source,
                })?,
            )
        };
        let label = if name == STDIN {
            "stdin".to_owned()
        } else {
            name.clone()
        };
        if tx
            .blocking_send(Feed::File {
                name: label.clone(),
            })
            .is_err()
        {
            return Ok(()); // the writer stopped; its error is reported there
        }
        let mut reader = LineReader::new(input, shape.max_line).with_read_size(READ_BYTES);
        let mut builder = ChunkBuilder::new(
            label.clone(),
            shape.defaults.clone(),
            to_micros(chrono::Utc::now()),
        )
        .with_chunk_lines(shape.chunk_lines)
        .retaining(shape.retention);
        let mut bytes = 0u64;
        loop {
            let line = reader
                .next_line_blocking()
                .map_err(|source| IngestFilesError::Read {
                    name: label.clone(),
                    line: reader.lines_read(),
                    source,
                })?;
            let Some(line) = line else {
                break;
            };
            bytes += line.len;
            builder.push_read(&line, reader.max_line());
            if builder.is_full() {
                let batch = builder.take();
                if !hand_over(tx, batch, std::mem::take(&mut bytes)) {
                    return Ok(());
                }
                builder.set_now(to_micros(chrono::Utc::now()));
            }
        }
        if (!builder.is_empty() || bytes > 0) && !hand_over(tx, builder.take(), bytes) {
            return Ok(());
        }
    }
    Ok(())
}
