//! Ingesting NDJSON files and standard input (`tally ingest`).
//!
//! One thread reads and parses (blocking reads, through the shared
//! [`LineReader`] and its per-line cap); the calling task commits, in order,
//! through the [`OrderedCommitter`]. The channel between them is bounded, so
//! at most a few chunks are in memory whatever the input size.

use std::sync::Arc;

use super::lines::{LineReader, MAX_LINE_BYTES};
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
    File { name: String },
    Chunk { batch: WriteBatch, bytes: u64 },
}

/// Ingest `files` in order (`-` is standard input), filling in `defaults`
/// for lines that lack them. A line longer than [`MAX_LINE_BYTES`] is a
/// rejected line; the lines after it are still ingested.
pub async fn ingest_files(
    store: Arc<dyn Store>,
    files: &[String],
    defaults: Defaults,
    retention: Retention,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Summary, IngestFilesError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Feed>(2);
    let files = files.to_vec();
    let chunk_lines = store.chunk_lines();
    let reader =
        std::thread::spawn(move || read_inputs(&files, &defaults, retention, chunk_lines, &tx));

    let mut summary = Summary::default();
    let mut committer = OrderedCommitter::new(store);
    while let Some(feed) = rx.recv().await {
        match feed {
            Feed::File { name } => progress(Progress::File(&name)),
            Feed::Chunk { batch, bytes } => committer
                .submit(batch, bytes, &mut |batch, outcome, bytes| {
                    summary.absorb(&batch, &outcome);
                    progress(Progress::Committed(bytes));
                })
                .await
                .map_err(IngestFilesError::Commit)?,
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
    Ok(summary)
}

/// The reader thread: every input, line by line, into chunks.
fn read_inputs(
    files: &[String],
    defaults: &Defaults,
    retention: Retention,
    chunk_lines: usize,
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
        let mut reader = LineReader::new(input, MAX_LINE_BYTES).with_read_size(READ_BYTES);
        let mut builder = ChunkBuilder::new(
            label.clone(),
            defaults.clone(),
            to_micros(chrono::Utc::now()),
        )
        .with_chunk_lines(chunk_lines)
        .retaining(retention);
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
                builder.set_now(to_micros(chrono::Utc::now()));
                if tx
                    .blocking_send(Feed::Chunk {
                        batch,
                        bytes: std::mem::take(&mut bytes),
                    })
                    .is_err()
                {
                    return Ok(());
                }
            }
        }
        if !builder.is_empty() || bytes > 0 {
            let batch = builder.take();
            if tx.blocking_send(Feed::Chunk { batch, bytes }).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}
