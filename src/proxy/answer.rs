//! The answer of a recorded call on its way back to the caller: passed on
//! chunk by chunk as it comes, copied on the side, and its **end held back
//! until the call's record is durable** (committed to the ledger or fsynced
//! in the spool). A caller that has the whole answer therefore has a call
//! that is billed, whatever happens to the proxy next.
//!
//! The end is the last bytes of a plain answer (the chunk that completes a
//! declared length; without one, each chunk is passed on when the next one
//! comes, so the last is still in hand when the body ends), the chunk that
//! completes a stream's `message_stop` event, or, failing those, the end of
//! the body itself. Everything before it goes through at once, so a stream's
//! events are not delayed; only the last waits for the commit, which the
//! recorder shares between every call that ends meanwhile (group commit).
//!
//! A caller that goes away before the end does not stop the recording: the
//! upstream has answered (and bills the call), so the rest of the answer is
//! read on a task of its own and the call recorded when it ends.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::sync::oneshot;

use super::capture::{Bounded, Capture};
use super::recorder::Recorder;
use super::sink::Kept;
use crate::time::now_micros;

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;
type Item = Result<Bytes, std::io::Error>;

/// How the last chunk of an answer is recognised before the body ends.
enum Ending {
    /// The chunk that completes the upstream's `content-length`.
    Declared(u64),
    /// The chunk that completes the `message_stop` event.
    Events(StopEvent),
    /// Neither: each chunk waits for the next, the last for the body's end.
    Unknown { lagging: Option<Bytes> },
}

pub(super) struct Answer {
    inner: ByteStream,
    copy: Bounded,
    max: usize,
    passed: u64,
    ending: Ending,
    /// Until the call is handed to the recorder.
    capture: Option<Capture>,
    recorder: Recorder,
    /// Handed over: the recorder says here when the record is durable.
    waiting: Option<oneshot::Receiver<Kept>>,
    /// What the caller gets once the record is durable, in order.
    held: VecDeque<Item>,
    /// The body ended (after `held`).
    ended: bool,
    /// Read by a task of its own: the caller has gone.
    draining: bool,
}

impl Answer {
    pub(super) fn new(
        upstream: impl Stream<Item = Item> + Send + 'static,
        declared: Option<u64>,
        events: bool,
        capture: Capture,
        recorder: Recorder,
        max: usize,
    ) -> Answer {
        let ending = match (declared, events) {
            (Some(n), _) => Ending::Declared(n),
            (None, true) => Ending::Events(StopEvent::default()),
            (None, false) => Ending::Unknown { lagging: None },
        };
        Answer {
            inner: Box::pin(upstream),
            copy: Bounded::default(),
            max,
            passed: 0,
            ending,
            capture: Some(capture),
            recorder,
            waiting: None,
            held: VecDeque::new(),
            ended: false,
            draining: false,
        }
    }

    /// Hand the call to the recorder; what is held waits for its answer.
    fn record(&mut self) {
        if let Some(capture) = self.capture.take() {
            let copy = std::mem::take(&mut self.copy);
            let call = capture.envelope(&copy, now_micros());
            self.waiting = Some(self.recorder.submit(call));
        }
    }

    /// Hold back what is not yet passed on (a lagging chunk), then `last`.
    fn hold(&mut self, last: Option<Item>) {
        if let Ending::Unknown { lagging } = &mut self.ending
            && let Some(chunk) = lagging.take()
        {
            self.held.push_back(Ok(chunk));
        }
        self.held.extend(last);
    }

    /// A chunk of the answer while the call is not yet recorded: passed on
    /// now, kept back a chunk (no known end), or held as the last.
    fn arrived(&mut self, chunk: Bytes) -> Option<Bytes> {
        self.copy.push(&chunk, self.max);
        self.passed += chunk.len() as u64;
        let last = match &mut self.ending {
            Ending::Declared(n) => self.passed >= *n,
            Ending::Events(stop) => stop.completed_by(&chunk),
            Ending::Unknown { lagging } => return lagging.replace(chunk),
        };
        if last {
            self.hold(Some(Ok(chunk)));
            self.record();
            None
        } else {
            Some(chunk)
        }
    }
}

impl Stream for Answer {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let this = &mut *self;
        loop {
            if let Some(waiting) = &mut this.waiting {
                let kept = ready!(waiting.poll_unpin(cx)).unwrap_or(Kept::Lost);
                this.waiting = None;
                if kept == Kept::Lost {
                    // Not billed, so not answered in full: the caller sees a
                    // cut-off answer, never a complete one that is not recorded.
                    this.held.clear();
                    this.ended = true;
                    let lost = "tally proxy: the call could not be recorded";
                    return Poll::Ready(Some(Err(std::io::Error::other(lost))));
                }
            }
            if let Some(item) = this.held.pop_front() {
                return Poll::Ready(Some(item));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            let next = ready!(this.inner.poll_next_unpin(cx));
            if this.capture.is_none() {
                // Recorded already (a declared length reached, or the stop
                // event): whatever follows passes as it is.
                return Poll::Ready(next);
            }
            match next {
                Some(Ok(chunk)) => match this.arrived(chunk) {
                    Some(chunk) => return Poll::Ready(Some(Ok(chunk))),
                    None => continue,
                },
                Some(Err(e)) => {
                    // Broken off upstream: kept as an incomplete line.
                    this.hold(Some(Err(e)));
                    this.ended = true;
                    this.record();
                }
                None => {
                    this.hold(None);
                    this.ended = true;
                    this.record();
                }
            }
        }
    }
}

impl Drop for Answer {
    /// The caller went away before the end: read the rest of the answer on
    /// a task of its own and record the call when it ends.
    fn drop(&mut self) {
        if self.capture.is_none() || self.draining {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let nothing: ByteStream = Box::pin(futures_util::stream::empty());
        let mut rest = Answer {
            inner: std::mem::replace(&mut self.inner, nothing),
            copy: std::mem::take(&mut self.copy),
            max: self.max,
            passed: self.passed,
            ending: std::mem::replace(&mut self.ending, Ending::Unknown { lagging: None }),
            capture: self.capture.take(),
            recorder: self.recorder.clone(),
            waiting: None,
            held: VecDeque::new(),
            ended: false,
            draining: true,
        };
        runtime.spawn(async move { while rest.next().await.is_some() {} });
    }
}

/// Finds the end of a server-sent event stream's `message_stop` event across
/// chunk boundaries, reading each event's first bytes only.
#[derive(Default)]
struct StopEvent {
    /// The current event's first bytes (its `event:` and `data:` lines when
    /// short, as `message_stop`'s are).
    head: Vec<u8>,
    /// The last byte seen ended a line.
    line_start: bool,
}

/// More than `message_stop`'s event and data lines take.
const EVENT_HEAD: usize = 256;

impl StopEvent {
    /// Whether `chunk` ends a `message_stop` event.
    fn completed_by(&mut self, chunk: &[u8]) -> bool {
        let mut stopped = false;
        for &b in chunk {
            match b {
                b'\r' => {}
                b'\n' if self.line_start => {
                    stopped |= is_stop(&self.head);
                    self.head.clear();
                }
                b'\n' => {
                    self.line_start = true;
                    self.keep(b);
                }
                _ => {
                    self.line_start = false;
                    self.keep(b);
                }
            }
        }
        stopped
    }

    fn keep(&mut self, b: u8) {
        if self.head.len() < EVENT_HEAD {
            self.head.push(b);
        }
    }
}

/// An event named `message_stop`, or whose data is of that type.
fn is_stop(event: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    event.split(|&b| b == b'\n').any(|line| {
        let field = |name: &[u8]| {
            line.strip_prefix(name)
                .map(|v| v.strip_prefix(b" ").unwrap_or(v))
        };
        field(b"event:").is_some_and(|name| name == b"message_stop")
            || field(b"data:").is_some_and(|data| {
                serde_json::from_slice::<Typed>(data).is_ok_and(|t| t.kind == "message_stop")
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_event_is_found_whole_and_across_chunks() {
        let mut stop = StopEvent::default();
        assert!(!stop.completed_by(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"message_stop\"}}\n\n"));
        assert!(!stop.completed_by(b"event: message_stop\r\ndata: {\"type\":"));
        assert!(!stop.completed_by(b"\"message_stop\"}\r\n"));
        assert!(stop.completed_by(b"\r\n"));

        let mut stop = StopEvent::default();
        assert!(stop.completed_by(b"data: {\"type\": \"message_stop\"}\n\n"));
        let mut stop = StopEvent::default();
        assert!(!stop.completed_by(b"event: ping\ndata: {\"type\": \"ping\"}\n\n"));
    }
}
