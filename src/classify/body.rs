use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::frames::{Coalesced, hint_plus, into_bytes};

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
            held: Pin<Box<Held<B>>>,
        },
    }
}

pin_project! {
    /// A classified response's inner body with what the classifier read of it, in one
    /// allocation: it is filled while the classifier reads (the frames in order, then how the
    /// read ended) and replayed from afterwards.
    #[project = HeldProj]
    pub(super) struct Held<B>
    where
        B: Body,
    {
        #[pin]
        pub(super) body: B,
        // The data read within the limit, contiguous: the parser's input.
        pub(super) data: Coalesced,
        // The frame that passed the limit, kept as it came (by reference).
        pub(super) over: Option<Bytes>,
        // The trailers, which end the read.
        pub(super) trailers: Option<HeaderMap>,
        pub(super) tail: Tail<B::Error>,
    }
}

impl<B: Body> Held<B> {
    pub(super) fn new(body: B) -> Self {
        Self {
            body,
            data: Coalesced::default(),
            over: None,
            trailers: None,
            tail: Tail::Inner,
        }
    }
}

impl<B: Body> HeldProj<'_, B> {
    /// The next frame read before, in the order it came: at most three, so no queue.
    fn pop(&mut self) -> Option<Frame<Bytes>> {
        if let Some(data) = std::mem::take(self.data).into_bytes() {
            return Some(Frame::data(data));
        }
        if let Some(over) = self.over.take() {
            return Some(Frame::data(over));
        }
        self.trailers.take().map(Frame::trailers)
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

    pub(super) fn replay(held: Pin<Box<Held<B>>>) -> Self {
        Self {
            kind: Kind::Replay { held },
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
            KindProj::Replay { held } => {
                let mut held = held.as_mut().project();
                if let Some(frame) = held.pop() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                match std::mem::replace(held.tail, Tail::End) {
                    Tail::Inner => {
                        *held.tail = Tail::Inner;
                        held.body.poll_frame(cx).map(|frame| {
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
            Kind::Replay { held } => {
                held.data.as_slice().is_empty()
                    && held.over.is_none()
                    && held.trailers.is_none()
                    && match &held.tail {
                        Tail::Inner => held.body.is_end_stream(),
                        Tail::End => true,
                        Tail::Error(_) => false,
                    }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Passthrough { body } => body.size_hint(),
            Kind::Replay { held } => {
                let buffered = held.data.as_slice().len() as u64
                    + held.over.as_ref().map_or(0, |over| over.len() as u64);
                let rest = match &held.tail {
                    Tail::Inner => held.body.size_hint(),
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
            Kind::Replay { held } => f
                .debug_struct("ClassifyBody::Replay")
                .field(
                    "buffered_frames",
                    &(usize::from(!held.data.as_slice().is_empty())
                        + usize::from(held.over.is_some())
                        + usize::from(held.trailers.is_some())),
                )
                .finish_non_exhaustive(),
        }
    }
}
