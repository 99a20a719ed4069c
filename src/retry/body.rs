use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::frames::{hint_plus, into_bytes_shared};

/// What each kept frame costs against the replay limit besides its copied bytes: its
/// bookkeeping, so that a body of countless tiny frames is bounded too.
const FRAME_COST: usize = 64;

/// A boxed error, as tower uses them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// The request body each attempt sends: the caller's body, recorded as it is sent so a
    /// retry can send it again.
    ///
    /// - An empty body costs nothing.
    /// - Any other body is read from the caller's body by the first attempt, and its frames
    ///   are kept for the next one. Data that is `Bytes` (`Full<Bytes>`, hyper's and axum's
    ///   bodies) is kept by reference, not copied, whatever its size; other data is copied,
    ///   and the replay limit bounds the copied bytes (plus 64 bytes of bookkeeping per kept
    ///   frame, so that a body of countless tiny frames is bounded too).
    ///   A later attempt yields the kept frames, then goes on reading the caller's body where
    ///   the earlier attempt stopped, so a body that was never sent (connection refused) is
    ///   not lost. Past the limit the frames are dropped and the request is not retried: it is
    ///   never re-sent empty or short.
    ///
    /// A handle from an attempt that was given up fails with an error when polled, rather
    /// than taking frames meant for the current attempt.
    ///
    /// The transport under the retry layer receives `Request<ReplayBody<B>>`; build hyper's
    /// client for it:
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use hyper_util::client::legacy::{Client, connect::HttpConnector};
    /// use hyper_util::rt::TokioExecutor;
    /// use tower::Layer;
    /// use tower_infoplug::{ApiKey, InfoPlugLayer, InfoPlugService, ReplayBody};
    ///
    /// type Transport = Client<HttpConnector, ReplayBody<Full<Bytes>>>;
    ///
    /// let transport: Transport = Client::builder(TokioExecutor::new()).build_http();
    /// let layer = InfoPlugLayer::new(ApiKey::new("ip_live_key")?, "http://127.0.0.1:3000")?;
    /// let client: InfoPlugService<Transport> = layer.layer(transport);
    /// # let _ = client;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub struct ReplayBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Empty,
        Shared {
            shared: Arc<Mutex<Shared<B>>>,
            generation: u32,
            position: usize,
        },
    }
}

struct Shared<B> {
    source: Option<Pin<Box<B>>>,
    frames: Vec<Kept>,
    /// What the kept frames cost against the limit: copied bytes, and each frame's bookkeeping.
    kept_bytes: usize,
    limit: usize,
    /// The body passed the limit: the frames were dropped; no replay.
    overflowed: bool,
    /// The caller's body failed: no replay.
    failed: bool,
    /// The attempt whose handle may read from `source`.
    generation: u32,
}

#[derive(Clone)]
enum Kept {
    Data(Bytes),
    Trailers(HeaderMap),
}

impl Kept {
    fn frame(&self) -> Frame<Bytes> {
        match self {
            Self::Data(data) => Frame::data(data.clone()),
            Self::Trailers(trailers) => Frame::trailers(trailers.clone()),
        }
    }
}

/// The error of a handle whose attempt was given up.
#[derive(Debug)]
struct Superseded;

impl fmt::Display for Superseded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("this request body belongs to an attempt that was retried")
    }
}

impl std::error::Error for Superseded {}

/// Makes the bodies of successive attempts from one caller body.
pub(super) struct Replay<B> {
    shared: Option<Arc<Mutex<Shared<B>>>>,
    empty: bool,
}

impl<B: Body> Replay<B> {
    /// The first attempt's body, and the means to make the next ones.
    pub(super) fn start(body: B, limit: usize) -> (Self, ReplayBody<B>) {
        if body.is_end_stream() {
            let replay = Self {
                shared: None,
                empty: true,
            };
            return (replay, ReplayBody { kind: Kind::Empty });
        }
        let shared = Arc::new(Mutex::new(Shared {
            source: Some(Box::pin(body)),
            frames: Vec::new(),
            kept_bytes: 0,
            limit,
            overflowed: false,
            failed: false,
            generation: 0,
        }));
        let first = ReplayBody {
            kind: Kind::Shared {
                shared: Arc::clone(&shared),
                generation: 0,
                position: 0,
            },
        };
        let replay = Self {
            shared: Some(shared),
            empty: false,
        };
        (replay, first)
    }

    /// Whether the body can be sent again (so far: a body still being sent can still pass
    /// the limit).
    pub(super) fn can_replay(&self) -> bool {
        self.empty
            || self.shared.as_ref().is_some_and(|shared| {
                let state = lock(shared);
                !state.overflowed && !state.failed
            })
    }

    /// The next attempt's body, or `None` when the body cannot be sent again.
    pub(super) fn next(&mut self) -> Option<ReplayBody<B>> {
        if self.empty {
            return Some(ReplayBody { kind: Kind::Empty });
        }
        let shared = self.shared.as_ref()?;
        let mut state = lock(shared);
        if state.overflowed || state.failed {
            return None;
        }
        state.generation = state.generation.wrapping_add(1);
        Some(ReplayBody {
            kind: Kind::Shared {
                shared: Arc::clone(shared),
                generation: state.generation,
                position: 0,
            },
        })
    }
}

fn lock<B: Body>(shared: &Mutex<Shared<B>>) -> MutexGuard<'_, Shared<B>> {
    // Every update leaves the state consistent, so a panic elsewhere does not spoil it.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Empty => Poll::Ready(None),
            KindProj::Shared {
                shared,
                generation,
                position,
            } => {
                let mut state = lock(shared);
                if state.generation != *generation {
                    return Poll::Ready(Some(Err(Superseded.into())));
                }
                if let Some(kept) = state.frames.get(*position) {
                    *position += 1;
                    return Poll::Ready(Some(Ok(kept.frame())));
                }
                let state = &mut *state;
                let Some(source) = state.source.as_mut() else {
                    return Poll::Ready(None);
                };
                match source.as_mut().poll_frame(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(None) => {
                        state.source = None;
                        Poll::Ready(None)
                    }
                    Poll::Ready(Some(Err(err))) => {
                        state.source = None;
                        state.failed = true;
                        state.frames = Vec::new();
                        Poll::Ready(Some(Err(err.into())))
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        let mut copied = 0;
                        let frame = frame.map_data(|data| {
                            let (bytes, by_reference) = into_bytes_shared(data);
                            if !by_reference {
                                copied = bytes.len();
                            }
                            bytes
                        });
                        if !state.overflowed {
                            let cost = copied.saturating_add(FRAME_COST);
                            state.kept_bytes = state.kept_bytes.saturating_add(cost);
                            let kept = match frame.data_ref() {
                                Some(data) => Some(Kept::Data(data.clone())),
                                None => frame.trailers_ref().cloned().map(Kept::Trailers),
                            };
                            if state.kept_bytes > state.limit {
                                state.overflowed = true;
                                state.frames = Vec::new();
                            } else if let Some(kept) = kept {
                                state.frames.push(kept);
                                *position += 1;
                            }
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.with_state(true, false, |state, position| {
            position >= state.frames.len()
                && state.source.as_ref().is_none_or(|s| s.is_end_stream())
        })
    }

    fn size_hint(&self) -> SizeHint {
        self.with_state(
            SizeHint::with_exact(0),
            SizeHint::default(),
            |state, position| {
                let kept: u64 = state
                    .frames
                    .iter()
                    .skip(position)
                    .map(|kept| match kept {
                        Kept::Data(data) => data.len() as u64,
                        Kept::Trailers(_) => 0,
                    })
                    .sum();
                let rest = state
                    .source
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), |s| s.size_hint());
                hint_plus(&rest, kept)
            },
        )
    }
}

impl<B: Body> ReplayBody<B> {
    /// `f` of the shared state and this handle's position in it; `empty` for an empty body,
    /// `superseded` for the handle of an attempt that was given up.
    fn with_state<T>(&self, empty: T, superseded: T, f: impl FnOnce(&Shared<B>, usize) -> T) -> T {
        let Kind::Shared {
            shared,
            generation,
            position,
        } = &self.kind
        else {
            return empty;
        };
        let state = lock(shared);
        if state.generation != *generation {
            return superseded;
        }
        f(&state, *position)
    }
}

/// An empty body: what a redirect follower such as tower-http's `FollowRedirect` sends on a
/// hop whose original body was empty (or after a `303 See Other`).
impl<B: Body> Default for ReplayBody<B> {
    fn default() -> Self {
        Self { kind: Kind::Empty }
    }
}

impl<B: Body> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Empty => f.write_str("ReplayBody::Empty"),
            Kind::Shared { generation, .. } => f
                .debug_struct("ReplayBody::Shared")
                .field("attempt", &(u64::from(*generation) + 1))
                .finish_non_exhaustive(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use std::collections::VecDeque;

    async fn read<B>(body: B) -> Result<Bytes, BoxError>
    where
        B: Body<Data = Bytes, Error = BoxError>,
    {
        Ok(body.collect().await?.to_bytes())
    }

    /// A streaming body without a length: frames, then an optional error.
    struct Chunks(VecDeque<Result<&'static [u8], &'static str>>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = &'static str;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
            Poll::Ready(
                self.0
                    .pop_front()
                    .map(|c| c.map(|b| Frame::data(Bytes::from_static(b)))),
            )
        }
    }

    fn chunks(parts: Vec<Result<&'static [u8], &'static str>>) -> Chunks {
        Chunks(parts.into())
    }

    #[tokio::test]
    async fn a_replayed_body_is_byte_identical() {
        let (mut replay, first) = Replay::start(Full::new(Bytes::from_static(b"{\"q\":1}")), 1024);
        assert_eq!(read(first).await.unwrap(), "{\"q\":1}");
        let second = replay.next().unwrap();
        assert_eq!(second.size_hint().exact(), Some(7));
        assert_eq!(read(second).await.unwrap(), "{\"q\":1}");
        assert_eq!(read(replay.next().unwrap()).await.unwrap(), "{\"q\":1}");
    }

    #[tokio::test]
    async fn a_body_never_read_by_the_first_attempt_is_not_lost() {
        let (mut replay, first) = Replay::start(chunks(vec![Ok(b"ab"), Ok(b"cd")]), 1024);
        drop(first); // connection refused: the transport never polled it
        assert_eq!(read(replay.next().unwrap()).await.unwrap(), "abcd");
        assert_eq!(read(replay.next().unwrap()).await.unwrap(), "abcd");
    }

    #[tokio::test]
    async fn a_half_sent_body_is_replayed_then_continued() {
        let (mut replay, mut first) =
            Replay::start(chunks(vec![Ok(b"ab"), Ok(b"cd"), Ok(b"ef")]), 1024);
        let frame = first.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "ab");
        let second = replay.next().unwrap();
        // The first attempt's handle is given up: it cannot take frames any more.
        assert!(first.frame().await.unwrap().is_err());
        assert_eq!(read(second).await.unwrap(), "abcdef");
    }

    /// The same frames as [`Chunks`], as data that is not `Bytes`: the replay copies it.
    struct Copied(VecDeque<&'static [u8]>);

    impl Body for Copied {
        type Data = &'static [u8];
        type Error = &'static str;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<&'static [u8]>, &'static str>>> {
            Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
        }
    }

    #[tokio::test]
    async fn past_the_limit_copied_data_is_sent_once_and_never_short() {
        let limit = 2 * FRAME_COST + 8;
        let (mut replay, first) =
            Replay::start(Copied(vec![&b"abcde"[..], b"fghij"].into()), limit);
        assert_eq!(read(first).await.unwrap(), "abcdefghij");
        assert!(
            replay.next().is_none(),
            "10 copied bytes and two frames are past the limit"
        );

        // `Bytes` data costs only its frame's bookkeeping, whatever its size.
        let big = Full::new(Bytes::from(vec![b'x'; 10 * limit]));
        let (mut replay, first) = Replay::start(big, limit);
        assert_eq!(read(first).await.unwrap().len(), 10 * limit);
        assert_eq!(
            read(replay.next().unwrap()).await.unwrap().len(),
            10 * limit
        );

        // But not countless frames of it.
        let many = chunks((0..3).map(|_| Ok(&b"x"[..])).collect());
        let (mut replay, first) = Replay::start(many, limit);
        assert_eq!(read(first).await.unwrap(), "xxx");
        assert!(replay.next().is_none());
    }

    #[tokio::test]
    async fn a_failed_body_is_not_replayed() {
        let (mut replay, first) = Replay::start(chunks(vec![Ok(b"ab"), Err("reset")]), 1024);
        assert!(read(first).await.is_err());
        assert!(replay.next().is_none());
    }

    #[tokio::test]
    async fn an_empty_body_costs_nothing_and_replays_forever() {
        let (mut replay, first) = Replay::start(Full::new(Bytes::new()), 1024);
        assert_eq!(format!("{first:?}"), "ReplayBody::Empty");
        assert!(first.is_end_stream());
        assert_eq!(format!("{:?}", replay.next().unwrap()), "ReplayBody::Empty");
    }
}
