use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::frames::{hint_plus, into_bytes};

pin_project! {
    /// The response body of [`Classify`](super::Classify): the transport's body, unchanged.
    ///
    /// For a response that was not classified it forwards every call to the inner body. For a
    /// classified one it first yields the frames the classifier already read, then the rest of
    /// the inner stream, so downstream sees the same bytes, the same trailers, the same
    /// `size_hint` and the same error (if the stream failed) as without the classifier.
    ///
    /// Data comes out as [`Bytes`]; for bodies whose data already is `Bytes` (hyper's
    /// `Incoming`, axum's `Body`, `Full<Bytes>`) that is a move, not a copy.
    pub struct ClassifyBody<B>
    where
        // Needed by the struct itself: a stream error read during classification is stored
        // until its turn comes.
        B: Body,
    {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B>
    where
        B: Body,
    {
        Passthrough {
            #[pin]
            body: B,
        },
        Replay {
            body: Pin<Box<B>>,
            frames: VecDeque<Frame<Bytes>>,
            tail: Tail<B::Error>,
        },
    }
}

/// What follows the replayed frames.
pub(super) enum Tail<E> {
    /// The rest of the inner body.
    Inner,
    /// Nothing: the inner body ended while it was read.
    End,
    /// This error, then nothing: the inner body failed while it was read.
    Error(E),
}

impl<B: Body> ClassifyBody<B> {
    pub(super) fn passthrough(body: B) -> Self {
        Self {
            kind: Kind::Passthrough { body },
        }
    }

    pub(super) fn replay(
        body: Pin<Box<B>>,
        frames: VecDeque<Frame<Bytes>>,
        tail: Tail<B::Error>,
    ) -> Self {
        Self {
            kind: Kind::Replay { body, frames, tail },
        }
    }
}

impl<B> Body for ClassifyBody<B>
where
    B: Body,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Passthrough { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map(|frame| frame.map_data(into_bytes)))),
            KindProj::Replay { body, frames, tail } => {
                if let Some(frame) = frames.pop_front() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                match std::mem::replace(tail, Tail::End) {
                    Tail::Inner => {
                        *tail = Tail::Inner;
                        body.as_mut().poll_frame(cx).map(|frame| {
                            frame.map(|frame| frame.map(|frame| frame.map_data(into_bytes)))
                        })
                    }
                    Tail::End => Poll::Ready(None),
                    Tail::Error(err) => Poll::Ready(Some(Err(err))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Passthrough { body } => body.is_end_stream(),
            Kind::Replay { body, frames, tail } => {
                frames.is_empty()
                    && match tail {
                        Tail::Inner => body.is_end_stream(),
                        Tail::End => true,
                        Tail::Error(_) => false,
                    }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Passthrough { body } => body.size_hint(),
            Kind::Replay { body, frames, tail } => {
                let buffered: u64 = frames
                    .iter()
                    .filter_map(Frame::data_ref)
                    .map(|data| data.len() as u64)
                    .sum();
                let rest = match tail {
                    Tail::Inner => body.size_hint(),
                    Tail::End => SizeHint::with_exact(0),
                    // The stream is known to fail; how much it would have carried is unknown.
                    Tail::Error(_) => SizeHint::new(),
                };
                hint_plus(&rest, buffered)
            }
        }
    }
}

impl<B: Body> fmt::Debug for ClassifyBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Passthrough { .. } => f.write_str("ClassifyBody::Passthrough"),
            Kind::Replay { frames, .. } => f
                .debug_struct("ClassifyBody::Replay")
                .field("buffered_frames", &frames.len())
                .finish_non_exhaustive(),
        }
    }
}
