//! The response future: it only sequences the [engine](super::engine)'s steps (send, wait,
//! ask, return) over the inner service, a timer and a fleet's question. It holds no rule.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::sync::{AcquireError, OwnedSemaphorePermit};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::RetryError;
use super::body::{Replay, ReplayBody};
use super::engine::{Asking, Engine, Next, Output};
use super::layer::{Settings, Shared};
use super::plan::Step;
use super::policy::RetryPolicy;
use super::trace::RequestSpan;
use super::wait::Wait;

pin_project! {
    /// The response future of [`Retry`](super::Retry).
    ///
    /// It owns everything a retry needs (the request head, the body's replay buffer, a clone
    /// of the inner service) and spawns nothing: dropping it stops all work, and no attempt is
    /// sent after that.
    ///
    /// # Panics
    ///
    /// Polled again after it returned `Poll::Ready`, which the `Future` contract forbids.
    pub struct ResponseFuture<S, B, R, P>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: State<S::Future, B, R, S::Error>,
        span: RequestSpan,
        service: S,
        // Whether `service` has been polled ready and not called since.
        ready: bool,
        engine: Engine<B, P>,
    }
}

pin_project! {
    /// Each state that leads to an attempt carries the body that attempt sends.
    #[project = StateProj]
    #[project_replace = StateReplace]
    enum State<F, B, R, E> {
        // Polling readiness, then sending.
        Sending {
            body: ReplayBody<B>,
        },
        Calling {
            #[pin]
            future: F,
            // Timers are boxed: they exist only when set, and inline they would make every
            // future (and every move of one) several hundred bytes larger.
            timeout: Option<Pin<Box<Sleep>>>,
        },
        // Until a backoff, a gate or a pacing slot, draining the last response's body
        // meanwhile (pinned here, not boxed).
        Waiting {
            sleep: Option<Pin<Box<Sleep>>>,
            wait: Wait,
            #[pin]
            drain: Option<R>,
            body: ReplayBody<B>,
        },
        // Asking a fleet's store (bounded by its timeout). Boxed: only a throttled fleet gets
        // here, and the success path's future stays small.
        Asking {
            asking: Box<Asking<B, R, E>>,
        },
        // Waiting for a place under the partition's limit on requests in flight (boxed, as
        // asking is).
        Acquiring {
            place: Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>,
            // The longest the request may wait for one.
            until: Pin<Box<Sleep>>,
            body: ReplayBody<B>,
        },
        Done,
    }
}

impl<S, B, R, P> ResponseFuture<S, B, R, P>
where
    S: Service<Request<ReplayBody<B>>>,
    B: Body,
{
    pub(super) fn new(
        service: S,
        req: Request<B>,
        policy: P,
        shared: Arc<Shared>,
        deadline: Option<Instant>,
    ) -> Self {
        let (mut head, body) = req.into_parts();
        Engine::<B, P>::prepare(&mut head, &shared.settings);
        let span = RequestSpan::new(&head.method, &head.uri);
        let (replay, body) = Replay::start(body, shared.settings.replay_limit);
        // The common case, nothing throttled anywhere: straight to sending, no planning.
        // Otherwise the request is planned when first polled (a wait that has not started).
        let state = if shared.state.throttled() {
            let now = Instant::now();
            let wait = Wait {
                started: None,
                until: now,
                drain_for: Duration::ZERO,
                drain_left: 0,
            };
            State::Waiting {
                sleep: None,
                wait,
                drain: None,
                body,
            }
        } else {
            State::Sending { body }
        };
        Self {
            state,
            span,
            service,
            ready: true,
            engine: Engine::new(head, replay, policy, shared, deadline),
        }
    }
}

impl<F, B: Body, R, E> State<F, B, R, E> {
    /// Enters the state a step leads to; the output, when the step returns it.
    fn enter(
        mut self: Pin<&mut Self>,
        next: Next<B, R, E>,
        settings: &Settings,
    ) -> Option<Output<R, E>> {
        match next {
            Next::Return(output) => {
                self.set(State::Done);
                return Some(output);
            }
            Next::Send(body) => self.set(State::Sending { body }),
            Next::Wait {
                at,
                from,
                body,
                drain,
            } => {
                let wait = Wait {
                    started: Some(from),
                    until: at,
                    drain_for: settings.drain_timeout,
                    drain_left: settings.drain_limit,
                };
                self.set(State::Waiting {
                    sleep: None,
                    wait,
                    drain,
                    body,
                });
            }
            Next::Ask(asking) => self.set(State::Asking { asking }),
            Next::Acquire {
                places,
                until,
                body,
            } => self.set(State::Acquiring {
                place: Box::pin(places.acquire_owned()),
                until: Box::pin(tokio::time::sleep_until(until)),
                body,
            }),
        }
        None
    }
}

impl<S, B, R, P> Future for ResponseFuture<S, B, R, P>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<R>> + Clone,
    B: Body,
    R: Body,
    P: RetryPolicy<S::Error>,
{
    type Output = Result<Response<R>, RetryError<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Sending { body } => {
                    if !*this.ready {
                        match this.service.poll_ready(cx) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(Err(error)) => {
                                this.state.set(State::Done);
                                return Poll::Ready(Err(this.engine.not_ready(error)));
                            }
                            Poll::Ready(Ok(())) => *this.ready = true,
                        }
                    }
                    let body = std::mem::take(body);
                    *this.ready = false;
                    let future = this.engine.send(this.service, body, this.span);
                    let timeout = attempt_timer(this.engine.settings());
                    this.state.set(State::Calling { future, timeout });
                    continue;
                }
                StateProj::Calling { future, timeout } => {
                    // The transport is polled in the attempt's span, if there is one (no
                    // guard alive across the poll otherwise: its output is not moved again).
                    let polled = if this.span.is_on() {
                        let _attempt = this.span.enter_attempt();
                        future.poll(cx)
                    } else {
                        future.poll(cx)
                    };
                    let next = match polled {
                        Poll::Ready(Ok(res)) => {
                            this.span.answered(res.status());
                            this.engine.on_response(res)
                        }
                        Poll::Ready(Err(error)) => this.engine.on_failure(Some(error), this.span),
                        Poll::Pending => {
                            let timer = timeout.as_mut().map(|t| t.as_mut().poll(cx));
                            if !timer.is_some_and(|t| t.is_ready()) {
                                return Poll::Pending;
                            }
                            this.engine.on_failure(None, this.span)
                        }
                    };
                    // The common case returns straight away, moving the output once.
                    if let Next::Return(output) = next {
                        this.state.set(State::Done);
                        return Poll::Ready(output);
                    }
                    next
                }
                StateProj::Waiting {
                    sleep,
                    wait,
                    drain,
                    body,
                } => {
                    let Poll::Ready(waited) = wait.poll(cx, sleep, drain) else {
                        return Poll::Pending;
                    };
                    let body = std::mem::take(body);
                    match waited {
                        Some(waited) => this.engine.resume(body, waited),
                        None => this.engine.admit(body, Step::Fresh),
                    }
                }
                StateProj::Asking { asking } => {
                    let Poll::Ready(remote) = asking.question.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    match this.state.as_mut().project_replace(State::Done) {
                        StateReplace::Asking { asking } => this.engine.answered(*asking, remote),
                        // Replaced what was just matched: not another state.
                        _ => continue,
                    }
                }
                StateProj::Acquiring { place, until, body } => match place.as_mut().poll(cx) {
                    Poll::Ready(place) => this.engine.placed(place.ok(), std::mem::take(body)),
                    Poll::Pending if until.as_mut().poll(cx).is_ready() => this.engine.no_place(),
                    Poll::Pending => return Poll::Pending,
                },
                #[allow(clippy::panic)] // the `Future` contract: documented under Panics
                StateProj::Done => panic!("ResponseFuture polled after it returned Ready"),
            };
            if *this.ready && matches!(next, Next::Wait { .. } | Next::Acquire { .. }) {
                // Waiting holds no permit, buffer slot or such that readiness reserved.
                *this.service = this.service.clone();
                *this.ready = false;
            }
            if let Some(output) = this.state.as_mut().enter(next, this.engine.settings()) {
                return Poll::Ready(output);
            }
        }
    }
}

/// The timer of an attempt, if attempts are timed.
#[inline(always)]
fn attempt_timer(settings: &Settings) -> Option<Pin<Box<Sleep>>> {
    settings
        .attempt_timeout
        .map(|timeout| Box::pin(tokio::time::sleep(timeout)))
}

impl<S, B, R, P> fmt::Debug for ResponseFuture<S, B, R, P>
where
    S: Service<Request<ReplayBody<B>>>,
    B: Body,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.engine.attempts())
            .field("waited", &self.engine.waited())
            .finish_non_exhaustive()
    }
}
