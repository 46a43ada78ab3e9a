//! The one NDJSON line reader of every ingest path: `tally ingest` (files and
//! standard input), `POST /v1/usage/batch`, and any other byte stream (an
//! [`AsyncRead`], or a blocking [`std::io::Read`] on a reader thread).
//!
//! It splits bytes into lines with a per-line size cap and holds at most one
//! line (up to the cap) plus one read in memory, whatever the input size. A
//! line longer than the cap does not end the input: its first
//! [`OVERLONG_KEEP`] bytes are kept, the rest is skipped as it streams by, and
//! [`ChunkBuilder::push_read`] records it as a rejected line that names its
//! number; the lines after it are read as usual.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::ChunkBuilder;
use crate::record::Origin;
use crate::record::{LineError, RejectReason};
use crate::record::{NewRejection, Retention};

/// The default cap on one line (`--max-body-bytes`): a request to the
/// Messages API may be up to 128 MB, so its envelope may be about twice that.
pub const MAX_LINE_BYTES: usize = 256 << 20;

/// Bytes kept of a line that is longer than the cap.
pub const OVERLONG_KEEP: usize = 64 << 10;

/// Bytes asked of the source per read unless [`LineReader::with_read_size`] says otherwise.
const READ_BYTES: usize = 64 << 10;

/// One line of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1 for the first line; empty lines count.
    pub number: u64,
    /// The line as read, with its end (`\n` or `\r\n`) when it has one; for
    /// an overlong line, only its first [`OVERLONG_KEEP`] bytes.
    pub bytes: Bytes,
    /// Bytes the line took in the input, its end included (more than
    /// `bytes.len()` when overlong).
    pub len: u64,
    /// Longer than the cap, not counting the line end.
    pub overlong: bool,
}

/// Splits a byte source into [`Line`]s, capping each at `max_line` bytes.
pub struct LineReader<R> {
    source: R,
    max_line: usize,
    read_size: usize,
    pending: BytesMut,
    /// Bytes at the start of `pending` already searched for a newline: each
    /// byte is searched once, however many reads a long line takes.
    scanned: usize,
    number: u64,
    /// The head (up to [`OVERLONG_KEEP`] bytes), and the bytes seen so far,
    /// of an overlong line being skipped.
    skipping: Option<(BytesMut, u64)>,
    eof: bool,
}

impl<R> LineReader<R> {
    pub fn new(source: R, max_line: usize) -> Self {
        LineReader {
            source,
            max_line,
            read_size: READ_BYTES,
            pending: BytesMut::new(),
            scanned: 0,
            number: 0,
            skipping: None,
            eof: false,
        }
    }

    /// Ask the source for up to `bytes` per read.
    pub fn with_read_size(mut self, bytes: usize) -> Self {
        self.read_size = bytes.max(1);
        self
    }

    /// The cap on a line, not counting its end.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Lines returned so far (the number of the last one).
    pub fn lines_read(&self) -> u64 {
        self.number
    }

    /// The next complete line in the buffer (or the last one, at the end of
    /// the input), without reading.
    fn take_line(&mut self) -> Option<Line> {
        let newline = self
            .pending
            .get(self.scanned..)
            .and_then(|unscanned| memchr::memchr(b'\n', unscanned))
            .map(|i| self.scanned + i);
        if let Some(pos) = newline {
            let raw = self.pending.split_to(pos + 1).freeze();
            return Some(self.finish(raw));
        }
        self.scanned = self.pending.len();
        // Without a newline, all but a final `\r` is content: past the cap
        // plus one byte the line is overlong, whatever is still to come.
        if self.skipping.is_some() || self.pending.len() > self.max_line.saturating_add(1) {
            let dropped = self.pending.split();
            self.scanned = 0;
            self.skip(&dropped);
        }
        if self.eof && (!self.pending.is_empty() || self.skipping.is_some()) {
            let raw = self.pending.split().freeze();
            return Some(self.finish(raw));
        }
        None
    }

    /// Count `dropped` as part of the overlong line being skipped, keeping
    /// it while the line's head is shorter than [`OVERLONG_KEEP`].
    fn skip(&mut self, dropped: &[u8]) {
        let (head, seen) = self.skipping.get_or_insert_with(|| (BytesMut::new(), 0));
        let room = OVERLONG_KEEP.saturating_sub(head.len());
        head.extend_from_slice(dropped.get(..room).unwrap_or(dropped));
        *seen += dropped.len() as u64;
    }

    /// The line whose last bytes are `raw`.
    fn finish(&mut self, raw: Bytes) -> Line {
        self.scanned = 0;
        self.number += 1;
        if self.skipping.is_some() {
            self.skip(&raw);
        }
        if let Some((head, len)) = self.skipping.take() {
            return Line {
                number: self.number,
                bytes: head.freeze(),
                len,
                overlong: true,
            };
        }
        let content = raw.strip_suffix(b"\n").unwrap_or(&raw);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        let overlong = content.len() > self.max_line;
        Line {
            number: self.number,
            len: raw.len() as u64,
            bytes: if overlong {
                raw.slice(..OVERLONG_KEEP.min(raw.len()))
            } else {
                raw
            },
            overlong,
        }
    }
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// The next line, or `None` at the end of the input.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            if let Some(line) = self.take_line() {
                return Ok(Some(line));
            }
            if self.eof {
                return Ok(None);
            }
            self.pending.reserve(self.read_size);
            if self.source.read_buf(&mut self.pending).await? == 0 {
                self.eof = true;
            }
        }
    }
}

impl<R: std::io::Read> LineReader<R> {
    /// [`next_line`](Self::next_line) for a blocking source (a file or
    /// standard input on a reader thread).
    pub fn next_line_blocking(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            if let Some(line) = self.take_line() {
                return Ok(Some(line));
            }
            if self.eof {
                return Ok(None);
            }
            let start = self.pending.len();
            self.pending.resize(start + self.read_size, 0);
            let read = loop {
                match self
                    .source
                    .read(self.pending.get_mut(start..).unwrap_or_default())
                {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            let n = *read.as_ref().unwrap_or(&0);
            self.pending.truncate(start + n);
            if read? == 0 {
                self.eof = true;
            }
        }
    }
}

impl ChunkBuilder {
    /// Add a line from a [`LineReader`] capped at `max_line`: parsed, or
    /// rejected as malformed when it was longer than the cap.
    pub fn push_read(&mut self, line: &Line, max_line: usize) {
        if !line.overlong {
            self.push_line(line.number, &line.bytes);
            return;
        }
        // Under billing retention nothing of it is kept: a cut line cannot
        // be sorted into what billing needs and what people said.
        let (raw, kept) = match self.retention {
            Retention::Full => (
                line.bytes
                    .get(..OVERLONG_KEEP)
                    .unwrap_or(&line.bytes)
                    .to_vec(),
                format!("its first {OVERLONG_KEEP} bytes are kept"),
            ),
            Retention::Billing => (
                Vec::new(),
                "nothing of it is kept (billing retention)".to_owned(),
            ),
        };
        let error = LineError {
            reason: RejectReason::Malformed,
            message: format!("line is longer than {max_line} bytes (the per-record limit); {kept}"),
            line: Some(line.number),
            column: None,
            field: None,
        };
        self.push_rejection(NewRejection {
            raw,
            error,
            origin: Origin {
                source: self.source.clone(),
                line: line.number,
            },
            defaults: self.defaults.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A blocking source handing out `chunks` one read at a time.
    struct Chunks(std::collections::VecDeque<Vec<u8>>);

    impl std::io::Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some(mut chunk) = self.0.pop_front() else {
                return Ok(0);
            };
            let n = chunk.len().min(buf.len());
            buf.get_mut(..n)
                .unwrap()
                .copy_from_slice(chunk.get(..n).unwrap());
            if n < chunk.len() {
                self.0.push_front(chunk.split_off(n));
            }
            Ok(n)
        }
    }

    /// (number, bytes, len, overlong) of every line of `chunks`.
    fn lines_of(chunks: &[&[u8]], max_line: usize) -> Vec<(u64, Vec<u8>, u64, bool)> {
        let source = Chunks(
            chunks
                .iter()
                .filter(|c| !c.is_empty()) // a read of 0 bytes is the end
                .map(|c| c.to_vec())
                .collect(),
        );
        let mut reader = LineReader::new(source, max_line).with_read_size(7);
        let mut out = Vec::new();
        while let Some(l) = reader.next_line_blocking().unwrap() {
            out.push((l.number, l.bytes.to_vec(), l.len, l.overlong));
        }
        assert_eq!(reader.lines_read(), out.len() as u64);
        out
    }

    fn l(number: u64, bytes: &[u8], overlong: bool) -> (u64, Vec<u8>, u64, bool) {
        (number, bytes.to_vec(), bytes.len() as u64, overlong)
    }

    #[test]
    fn splits_lines_across_chunk_boundaries() {
        let want = vec![
            l(1, b"{\"a\":1}\n", false),
            l(2, b"{\"bb\":22}\n", false),
            l(3, b"{}\n", false),
        ];
        let whole: &[u8] = b"{\"a\":1}\n{\"bb\":22}\n{}\n";
        assert_eq!(lines_of(&[whole], 100), want);
        // Every way of cutting the input in two gives the same lines.
        for cut in 0..=whole.len() {
            let (a, b) = whole.split_at(cut);
            assert_eq!(lines_of(&[a, b], 100), want, "cut at {cut}");
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(lines_of(&bytes, 100), want);
    }

    #[test]
    fn keeps_crlf_and_a_last_line_without_newline() {
        assert_eq!(
            lines_of(&[b"a\r\nb\r", b"\nc"], 100),
            vec![
                l(1, b"a\r\n", false),
                l(2, b"b\r\n", false),
                l(3, b"c", false)
            ]
        );
        assert_eq!(lines_of(&[b""], 100), vec![]);
        assert_eq!(lines_of(&[b"x"], 100), vec![l(1, b"x", false)]);
    }

    #[test]
    fn empty_lines_are_lines() {
        assert_eq!(
            lines_of(&[b"\n\na\n\r\n"], 100),
            vec![
                l(1, b"\n", false),
                l(2, b"\n", false),
                l(3, b"a\n", false),
                l(4, b"\r\n", false)
            ]
        );
    }

    #[test]
    fn the_cap_counts_content_not_the_line_end() {
        for chunk in [1, 2, 3, 100] {
            let cut = |s: &'static [u8]| -> Vec<&'static [u8]> { s.chunks(chunk).collect() };
            // Exactly the cap, with either line end or none: accepted.
            assert_eq!(
                lines_of(&cut(b"abcd\nabcd\r\nabcd"), 4),
                vec![
                    l(1, b"abcd\n", false),
                    l(2, b"abcd\r\n", false),
                    l(3, b"abcd", false)
                ],
                "chunks of {chunk}"
            );
            // One byte over: overlong, whatever the chunking.
            let got = lines_of(&cut(b"abcde\nabcde\r\nabcde"), 4);
            let flags: Vec<(u64, bool, u64)> = got.iter().map(|x| (x.0, x.3, x.2)).collect();
            assert_eq!(
                flags,
                vec![(1, true, 6), (2, true, 7), (3, true, 5)],
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn an_overlong_line_keeps_its_head_and_the_next_lines_are_read() {
        let long = vec![b'x'; OVERLONG_KEEP * 3];
        let mut input = b"{\"first\":1}\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\n{\"third\":3}\n");
        let source = Chunks(input.chunks(1000).map(<[u8]>::to_vec).collect());
        let mut reader = LineReader::new(source, 100).with_read_size(1000);
        let first = reader.next_line_blocking().unwrap().unwrap();
        assert_eq!((first.number, first.overlong), (1, false));
        let second = reader.next_line_blocking().unwrap().unwrap();
        assert_eq!(second.number, 2);
        assert!(second.overlong);
        assert_eq!(second.len, long.len() as u64 + 1);
        assert_eq!(second.bytes.len(), OVERLONG_KEEP);
        // Memory stays flat: the skipped bytes are not held.
        assert!(
            reader.pending.capacity() < 10_000,
            "{}",
            reader.pending.capacity()
        );
        let third = reader.next_line_blocking().unwrap().unwrap();
        assert_eq!(
            (third.number, &third.bytes[..], third.overlong),
            (3, &b"{\"third\":3}\n"[..], false)
        );
        assert!(reader.next_line_blocking().unwrap().is_none());

        // Overlong and last, without a newline.
        let got = lines_of(&[b"ok\n", &long], 100);
        assert_eq!(got.len(), 2);
        assert_eq!((got[1].0, got[1].2, got[1].3), (2, long.len() as u64, true));
        assert_eq!(got[1].1.len(), OVERLONG_KEEP);
    }

    #[test]
    fn an_overlong_line_becomes_a_rejection_naming_its_number() {
        let mut builder =
            ChunkBuilder::new("f.ndjson", Default::default(), crate::time::now_micros());
        let line = Line {
            number: 7,
            bytes: Bytes::from_static(b"{\"x\":"),
            len: 1 << 30,
            overlong: true,
        };
        builder.push_read(&line, 4);
        let batch = builder.take();
        let r = batch.rejections.first().unwrap();
        assert_eq!(
            r.error.to_string(),
            format!(
                "line 7: line is longer than 4 bytes (the per-record limit); its first {OVERLONG_KEEP} bytes are kept"
            )
        );
        assert_eq!((r.origin.source.as_str(), r.origin.line), ("f.ndjson", 7));
        assert_eq!(r.raw, b"{\"x\":");
    }

    #[tokio::test]
    async fn reads_an_async_source_alike() {
        let (mut tx, rx) = tokio::io::duplex(3);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            tx.write_all(b"{\"a\":1}\r\n\ntoo long here\nlast")
                .await
                .unwrap();
        });
        let mut reader = LineReader::new(rx, 8);
        let mut got = Vec::new();
        while let Some(l) = reader.next_line().await.unwrap() {
            got.push((l.number, l.bytes.to_vec(), l.len, l.overlong));
        }
        writer.await.unwrap();
        assert_eq!(
            got,
            vec![
                l(1, b"{\"a\":1}\r\n", false),
                l(2, b"\n", false),
                l(3, b"too long here\n", true),
                l(4, b"last", false)
            ]
        );
    }
}
