//! Keeping an HTTP/2 request body replayable: the body streams upstream as
//! it arrives while a copy (up to a cap) is recorded, so a try that failed
//! can be sent again once the whole body has been seen.

use crate::endpoint::H2Body;
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

/// A recorded frame.
#[derive(Debug, Clone)]
enum Recorded {
    Data(Bytes),
    Trailers(HeaderMap),
}

#[derive(Default)]
struct Recording {
    frames: Vec<Recorded>,
    bytes: u64,
    complete: bool,
    overflowed: bool,
    /// What the upstream connection did not read of the client's body (it
    /// answered, or failed, before the body ended).
    rest: Option<H2Body>,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("frames", &self.frames.len())
            .field("bytes", &self.bytes)
            .field("complete", &self.complete)
            .field("overflowed", &self.overflowed)
            .finish()
    }
}

/// The shared record of a body being teed.
#[derive(Debug, Clone)]
pub(super) struct Tape {
    recording: Arc<Mutex<Recording>>,
    cap: u64,
}

impl Tape {
    /// Tees `body`: the returned body yields the same frames and records them.
    pub(super) fn tee(body: H2Body, cap: u64) -> (Tape, H2Body) {
        let tape = Tape {
            recording: Arc::default(),
            cap,
        };
        if body.is_end_stream() {
            tape.finish();
        }
        let teed = Teed {
            inner: Some(body),
            tape: tape.clone(),
        };
        (tape, teed.boxed_unsync())
    }

    /// The body again: what was recorded, then what the last try left of
    /// the client's body. `None` when the recording passed the cap (or the
    /// remainder was lost).
    pub(super) fn replay(&self) -> Option<H2Body> {
        let mut recording = self
            .recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if recording.overflowed {
            return None;
        }
        let rest = recording.rest.take();
        if !recording.complete && rest.is_none() {
            return None;
        }
        Some(
            Played {
                frames: recording.frames.iter().cloned().collect(),
                rest,
            }
            .boxed_unsync(),
        )
    }

    fn keep_rest(&self, rest: H2Body) {
        let mut recording = self
            .recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !recording.complete {
            recording.rest = Some(rest);
        }
    }

    fn record(&self, frame: &Frame<Bytes>) {
        let mut recording = self
            .recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if recording.overflowed {
            return;
        }
        if let Some(data) = frame.data_ref() {
            recording.bytes += data.len() as u64;
            if recording.bytes > self.cap {
                recording.overflowed = true;
                recording.frames = Vec::new();
                return;
            }
            recording.frames.push(Recorded::Data(data.clone()));
        } else if let Some(trailers) = frame.trailers_ref() {
            recording.frames.push(Recorded::Trailers(trailers.clone()));
        }
    }

    fn finish(&self) {
        self.recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .complete = true;
    }
}

/// The body sent upstream on the first try: the client's, recorded.
struct Teed {
    /// Always `Some` until dropped.
    inner: Option<H2Body>,
    tape: Tape,
}

impl Drop for Teed {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            self.tape.keep_rest(inner);
        }
    }
}

impl Body for Teed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => self.tape.record(frame),
            Poll::Ready(None) => self.tape.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // hyper stops polling once the body says it ended: that is the end too.
        let end = self.inner.as_ref().is_none_or(Body::is_end_stream);
        if end {
            self.tape.finish();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(SizeHint::default, Body::size_hint)
    }
}

/// A recorded body played back, then the rest of the client's body.
struct Played {
    frames: VecDeque<Recorded>,
    rest: Option<H2Body>,
}

impl Body for Played {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(f) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(match f {
                Recorded::Data(data) => Frame::data(data),
                Recorded::Trailers(trailers) => Frame::trailers(trailers),
            })));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }
}
