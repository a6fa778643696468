//! `ChannelBody`: an HTTP body fed frame by frame from a channel (streaming, chunked, trailers).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame};
use tokio::sync::mpsc;

/// A body whose frames are pushed through a [`ChannelBody::channel`] sender.
///
/// It has no exact size, so HTTP/1.1 sends it chunked; trailers pushed with
/// [`Frame::trailers`] travel as HTTP/2 trailers (or chunked trailers).
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::Receiver<Frame<Bytes>>,
}

impl ChannelBody {
    /// A body and the sender that feeds it; dropping the sender ends the body.
    pub fn channel(capacity: usize) -> (mpsc::Sender<Frame<Bytes>>, Self) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (tx, Self { rx })
    }

    /// A body that sends `data` in chunks of `chunk` bytes, then `trailers` if any.
    pub fn chunked(data: Bytes, chunk: usize, trailers: Option<HeaderMap>) -> Self {
        let (tx, body) = Self::channel(4);
        let chunk = chunk.max(1);
        tokio::spawn(async move {
            let mut rest = data;
            while !rest.is_empty() {
                let n = chunk.min(rest.len());
                if tx.send(Frame::data(rest.split_to(n))).await.is_err() {
                    return;
                }
            }
            if let Some(trailers) = trailers {
                // The receiver may be gone; nothing to do then.
                let _ = tx.send(Frame::trailers(trailers)).await;
            }
        });
        body
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}
