use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Response, header};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::body::{ClassifyBody, Held, Tail};
use super::decode::{self, Decoded};
use super::layer::Settings;
use super::parse::is_classified;
use super::parse::{Outcome, classify};
use crate::ApiError;
use crate::frames::into_bytes;
use crate::handoff::SentCredential;

pin_project! {
    /// The response future of [`Classify`](super::Classify).
    pub struct ResponseFuture<F, B>
    where
        B: Body,
    {
        #[pin]
        state: State<F, B>,
        settings: Settings,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B>
    where
        B: Body,
    {
        Calling {
            #[pin]
            future: F,
        },
        // The inner service answered: its error body is being read, or (`None`) the future
        // has completed, and polling it again finds nothing more to do.
        Answered {
            reading: Option<Read<B>>,
        },
    }
}

/// An error response whose body is being read. What was read is kept in three parts, so
/// memory is bounded by the limit plus one frame whatever the framing, and handed on in order.
struct Read<B: Body> {
    parts: http::response::Parts,
    /// The body and the frames read from it, boxed together: the box goes on to replay them.
    held: Pin<Box<Held<B>>>,
    /// The read's deadline, armed only once the body keeps the read waiting (see
    /// [`Timer`]): a body that is already there costs no timer.
    deadline: Timer,
    /// How many data bytes were read, including any past the limit.
    total: usize,
}

impl<F, B: Body> ResponseFuture<F, B> {
    pub(super) fn new(future: F, settings: Settings) -> Self {
        Self {
            state: State::Calling { future },
            settings,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<ClassifyBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let res = ready!(future.poll(cx))?;
                    // A response another classifier (further in) already classified, and an
                    // auth layer between may have redacted, is left as it is.
                    if !is_classified(res.status()) || res.extensions().get::<ApiError>().is_some()
                    {
                        this.state.set(State::Answered { reading: None });
                        return Poll::Ready(Ok(res.map(ClassifyBody::passthrough)));
                    }
                    let (parts, body) = res.into_parts();
                    // Shortcuts that need no reading, and so no allocation: a body known to be
                    // empty, or one that announces more than the limit.
                    let outcome = if body.is_end_stream() {
                        Some(Outcome::Complete(&[]))
                    } else if body.size_hint().lower() > this.settings.limit as u64 {
                        Some(Outcome::TooLarge)
                    } else {
                        None
                    };
                    if let Some(outcome) = outcome {
                        this.state.set(State::Answered { reading: None });
                        let res = Response::from_parts(parts, ClassifyBody::passthrough(body));
                        return Poll::Ready(Ok(attach(res, outcome, this.settings.limit)));
                    }
                    this.state.set(State::Answered {
                        reading: Some(Read {
                            parts,
                            held: Box::pin(Held::new(body)),
                            deadline: Timer::Unarmed,
                            total: 0,
                        }),
                    });
                }
                StateProj::Answered { reading } => {
                    let Some(mut read) = reading.take() else {
                        return Poll::Pending;
                    };
                    return match poll_read(&mut read, *this.settings, cx) {
                        Poll::Pending => {
                            *reading = Some(read);
                            Poll::Pending
                        }
                        Poll::Ready((cut, tail)) => {
                            Poll::Ready(Ok(read.finish(cut, tail, this.settings.limit)))
                        }
                    };
                }
            }
        }
    }
}

impl<B: Body> Read<B> {
    /// Classifies what was read and hands the response on with a body that replays it.
    fn finish(
        self,
        cut: Option<Outcome<'static>>,
        tail: Tail<B::Error>,
        limit: usize,
    ) -> Response<ClassifyBody<B>> {
        let Self {
            parts, mut held, ..
        } = self;
        let read = held.as_mut().project();
        *read.tail = tail;
        let outcome = cut.unwrap_or(Outcome::Complete(read.data.as_slice()));
        let res = attach(Response::from_parts(parts, ()), outcome, limit);
        res.map(|()| ClassifyBody::replay(held))
    }
}

/// Reads frames until the body ends, fails, passes the limit or the deadline passes; says how
/// the read was cut short, if it was (`None`: the body, or its data, is complete).
fn poll_read<B: Body>(
    read: &mut Read<B>,
    settings: Settings,
    cx: &mut Context<'_>,
) -> Poll<(Option<Outcome<'static>>, Tail<B::Error>)> {
    let mut budget = FRAMES_PER_POLL;
    loop {
        // Checked before every frame once armed.
        if read.deadline.poll(cx) {
            return Poll::Ready((Some(Outcome::TimedOut), Tail::Inner));
        }
        let held = read.held.as_mut().project();
        let frame = match held.body.poll_frame(cx) {
            Poll::Pending => {
                // The first wait arms the deadline; the time spent before it was this same
                // poll's, reading frames that were already there.
                if read.deadline.arm(settings.read_timeout) && read.deadline.poll(cx) {
                    return Poll::Ready((Some(Outcome::TimedOut), Tail::Inner));
                }
                return Poll::Pending;
            }
            Poll::Ready(None) => return Poll::Ready((None, Tail::End)),
            Poll::Ready(Some(Err(err))) => {
                return Poll::Ready((Some(Outcome::Incomplete), Tail::Error(err)));
            }
            Poll::Ready(Some(Ok(frame))) => frame.map_data(into_bytes),
        };
        match frame.into_data() {
            Ok(data) => {
                read.total = read.total.saturating_add(data.len());
                if read.total > settings.limit {
                    *held.over = Some(data);
                    return Poll::Ready((Some(Outcome::TooLarge), Tail::Inner));
                }
                held.data.push(data, settings.limit);
            }
            Err(frame) => {
                // Trailers are the last frame: the data is complete. Whatever the inner body
                // still has comes after them, in order.
                if let Ok(trailers) = frame.into_trailers() {
                    *held.trailers = Some(trailers);
                    return Poll::Ready((None, Tail::Inner));
                }
            }
        }
        budget -= 1;
        if budget == 0 {
            // A body that is always ready never makes the read wait: it gets its deadline
            // now, and the task yields (the frame just read is kept), so the runtime's clock
            // and its other tasks move on.
            read.deadline.arm(settings.read_timeout);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
    }
}

/// How many frames one poll reads at most before it yields: a body that is always ready
/// (endless empty frames, say, which no byte limit stops) cannot hold the task, and is timed
/// like any other.
const FRAMES_PER_POLL: u32 = 32;

/// The deadline of an error body's read. Arming it (a boxed tokio timer, registered with the
/// runtime's timer wheel) costs more than classifying a short body, so it is armed only when
/// the body makes the read wait, or when the read yields after [`FRAMES_PER_POLL`] frames.
enum Timer {
    Unarmed,
    /// Boxed: it exists only while a slow error body is read.
    Armed(Pin<Box<Sleep>>),
    /// No deadline: none configured, or no Tokio runtime to time it (the body limit still
    /// bounds the read).
    Off,
}

impl Timer {
    /// Arms the deadline, `timeout` from now, unless it is armed or off already; `true` if
    /// it is armed now.
    fn arm(&mut self, timeout: Option<Duration>) -> bool {
        if let Self::Unarmed = self {
            *self = match timeout {
                Some(t) if tokio::runtime::Handle::try_current().is_ok() => {
                    Self::Armed(Box::pin(tokio::time::sleep(t)))
                }
                _ => Self::Off,
            };
        }
        matches!(self, Self::Armed(_))
    }

    /// Whether the deadline has passed (registering for the wake-up if not).
    fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        match self {
            Self::Armed(sleep) => sleep.as_mut().poll(cx).is_ready(),
            Self::Unarmed | Self::Off => false,
        }
    }
}

/// Classifies (a compressed body decoded first, within `limit`), redacts the credential the
/// auth layer reported, and stores the result.
fn attach<B>(mut res: Response<B>, outcome: Outcome<'_>, limit: usize) -> Response<B> {
    let content_type = res.headers().get(header::CONTENT_TYPE);
    let decoded = match outcome {
        Outcome::Complete(raw) if !raw.is_empty() => {
            let codings = decode::codings(res.headers());
            (!codings.is_empty()).then(|| decode::decode(&codings, raw, limit))
        }
        _ => None,
    };
    let outcome = match &decoded {
        None => outcome,
        Some(Decoded::Body(body)) => Outcome::Complete(body),
        Some(Decoded::TooLarge) => Outcome::TooLarge,
        Some(Decoded::Invalid) => Outcome::Malformed,
        Some(Decoded::Unsupported(encoding)) => Outcome::Encoded(encoding),
    };
    let mut error = classify(res.status(), content_type, outcome);
    if let Some(SentCredential(sent)) = res.extensions_mut().remove::<SentCredential>() {
        error.redact(&sent);
    }
    crate::trace::debug!(
        status = error.status().as_u16(),
        code = error.code().event_name(),
        body_issue = ?error.body_issue(),
        "classified an error response"
    );
    res.extensions_mut().insert(error);
    res
}

impl<F, B: Body> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
