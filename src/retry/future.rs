use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http::{Request, Response, StatusCode, request::Parts};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep, sleep_until};
use tower_service::Service;

use super::body::{Replay, ReplayBody};
use super::hints::{quota, remaining_rate, wait_hint};
use super::layer::Shared;
use super::plan::{Inputs, Plan, Step, Stop};
use super::policy::{Attempt, Decision, Failure, Outcome, RetryPolicy};
use super::state::{Observation, Partition, Signal};
use super::store::{Planned, Question, Remote};
use super::{RetryError, RetryInfo, StopReason, later};
use crate::ApiError;
#[allow(unused_imports)] // `Target` without the `tracing` feature
use crate::trace::{RequestSpan, Target, event_at};

pin_project! {
    /// The response future of [`Retry`](super::Retry).
    ///
    /// It owns everything a retry needs (the request head, the body's replay buffer, a clone
    /// of the inner service) and spawns nothing: dropping it stops all work, and no attempt is
    /// sent after that.
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
        request: Bookkeeping<B, P>,
    }
}

pin_project! {
    /// Each state that leads to an attempt carries the body that attempt sends.
    #[project = StateProj]
    enum State<F, B, R, E> {
        // Asking the planner whether, and when, `body` may go.
        Planning {
            body: ReplayBody<B>,
            step: Step,
        },
        // Asking a fleet's shared store first (bounded by its timeout). Boxed: only a fleet
        // that is throttled gets here, and the success path's future stays small.
        Asking {
            asking: Box<Asking>,
            body: ReplayBody<B>,
        },
        // The planner decided, at once or once the store answered.
        Decided {
            plan: Plan,
            body: ReplayBody<B>,
        },
        // Waiting for the time the planner chose (a gate, a pacing slot). Timers are boxed:
        // they exist only while waiting, and inline they would make every future (and every
        // move of one) several hundred bytes larger on the success path.
        Waiting {
            sleep: Pin<Box<Sleep>>,
            started: Instant,
            body: ReplayBody<B>,
        },
        // Polling readiness, then sending.
        Sending {
            body: ReplayBody<B>,
        },
        Calling {
            #[pin]
            future: F,
            timeout: Option<Pin<Box<Sleep>>>,
        },
        // Between attempts: waiting, and draining the last response's body meanwhile.
        // The last body is drained in place: it is pinned here, not boxed.
        Pausing {
            sleep: Option<Pin<Box<Sleep>>>,
            started: Instant,
            resume_at: Instant,
            #[pin]
            drain: Option<R>,
            drain_until: Instant,
            drain_left: usize,
            body: ReplayBody<B>,
        },
        // Asking a fleet's store whether to retry; the last outcome is kept, to be returned
        // if not.
        AskingRetry {
            pending: Option<Box<RetryQuestion<R, E>>>,
        },
        Done,
    }
}

/// A question to a fleet's store, and the planner's inputs to resolve its answer with.
struct Asking {
    question: Question,
    inputs: Inputs,
}

/// A question before a retry, and the outcome to return if there is none.
struct RetryQuestion<R, E> {
    asking: Asking,
    kept: Kept<R, E>,
}

/// The outcome of the attempt a retry would follow.
enum Kept<R, E> {
    Response {
        res: Response<R>,
        hint: Option<Duration>,
    },
    Failure {
        error: Option<E>,
        failure: Failure,
    },
}

/// What the layer knows and has done for one request.
struct Bookkeeping<B, P> {
    head: Parts,
    replay: Replay<B>,
    policy: P,
    shared: Arc<Shared>,
    /// Computed the first time shared state needs it.
    partition: Option<Partition>,
    deadline: Option<Instant>,
    attempts: u32,
    waited: Duration,
    last_hint: Option<Duration>,
    /// The schedule of the pacing slot the attempt in flight went at, if it went at one.
    sent_at_slot: Option<u32>,
    /// Attempts sent at a pacing slot and refused with a 429: the pacer's misses.
    misses: u32,
    /// Whether the attempt in flight (or about to go) is the gate's probe.
    probe: bool,
    /// The schedule of the pacing slot the request waits for, if it holds one.
    slot: Option<u32>,
}

/// What a request through the layer ends with.
type Output<R, E> = Result<Response<R>, RetryError<E>>;

/// What comes of an attempt.
enum Next<B: Body, R, E> {
    Return(Result<Response<R>, RetryError<E>>),
    Retry {
        at: Instant,
        body: ReplayBody<B>,
        drain: Option<R>,
    },
    /// Ask a fleet's store before deciding.
    Ask(Box<RetryQuestion<R, E>>),
}

impl<B: Body, R, E> Next<B, R, E> {
    /// The state that follows, or the output to return.
    fn into_state<F>(
        self,
        settings: &super::layer::Settings,
    ) -> Result<State<F, B, R, E>, Output<R, E>> {
        match self {
            Next::Return(output) => Err(output),
            Next::Retry { at, body, drain } => {
                let now = Instant::now();
                Ok(State::Pausing {
                    sleep: None,
                    started: now,
                    resume_at: at,
                    drain,
                    drain_until: later(now, settings.drain_timeout),
                    drain_left: settings.drain_limit,
                    body,
                })
            }
            Next::Ask(pending) => Ok(State::AskingRetry {
                pending: Some(pending),
            }),
        }
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
        if shared.settings.idempotency_keys {
            super::idempotency::ensure_key(&head.method, &mut head.headers);
        }
        let span = RequestSpan::new(&head.method, &head.uri);
        let (replay, first) = Replay::start(body, shared.settings.replay_limit);
        let throttled = shared.state.throttled();
        let request = Bookkeeping {
            head,
            replay,
            policy,
            shared,
            partition: None,
            deadline,
            attempts: 0,
            waited: Duration::ZERO,
            last_hint: None,
            sent_at_slot: None,
            misses: 0,
            probe: false,
            slot: None,
        };
        // The common case, nothing throttled anywhere: straight to sending, no planning.
        // (Sending from here, in `call`, measured slower: the inner future is then moved
        // through this constructor's return as well.)
        let state = if throttled {
            State::Planning {
                body: first,
                step: Step::Fresh,
            }
        } else {
            State::Sending { body: first }
        };
        Self {
            state,
            span,
            service,
            ready: true,
            request,
        }
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
            match this.state.as_mut().project() {
                StateProj::Planning { body, step } => {
                    let body = std::mem::take(body);
                    // The common case: nothing throttled anywhere, so no clock and no lock.
                    if !this.request.shared.state.throttled() {
                        this.state.set(State::Sending { body });
                        continue;
                    }
                    let (planned, inputs) = this.request.plan(Instant::now(), *step);
                    match planned {
                        Planned::Now(plan) => this.state.set(State::Decided { plan, body }),
                        Planned::Ask(question) => this.state.set(State::Asking {
                            asking: Box::new(Asking { question, inputs }),
                            body,
                        }),
                    }
                }
                StateProj::Asking { asking, body } => {
                    let Poll::Ready(remote) = asking.question.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    let plan = this.request.resolve(asking.inputs, remote);
                    let body = std::mem::take(body);
                    this.state.set(State::Decided { plan, body });
                }
                StateProj::Decided { plan, body } => {
                    let (plan, body) = (*plan, std::mem::take(body));
                    let now = Instant::now();
                    match plan {
                        Plan::Go {
                            at, probe, slot, ..
                        } => {
                            this.request.probe |= probe;
                            if slot.is_some() {
                                this.request.slot = slot;
                            }
                            if at <= now {
                                this.state.set(State::Sending { body });
                                continue;
                            }
                            if *this.ready {
                                // Give back what readiness reserved (a concurrency permit, a
                                // buffer slot) while waiting; it is asked for again afterwards.
                                let fresh = this.service.clone();
                                *this.service = fresh;
                                *this.ready = false;
                            }
                            let request = &*this.request;
                            event_at!(
                                request.shared.settings.levels.retry,
                                http.request.method = %request.head.method,
                                url = %Target(&request.head.uri),
                                attempt = request.attempts + 1,
                                wait_ms = at.saturating_duration_since(now).as_millis() as u64,
                                "holding the request for the partition's gate or pacing"
                            );
                            super::metrics::held(at.saturating_duration_since(now));
                            this.state.set(State::Waiting {
                                sleep: Box::pin(sleep_until(at)),
                                started: now,
                                body,
                            });
                        }
                        Plan::Stop(stop) => {
                            let error = this.request.cooling_down(stop);
                            this.state.set(State::Done);
                            return Poll::Ready(Err(error));
                        }
                    }
                }
                StateProj::Waiting {
                    sleep,
                    started,
                    body,
                } => {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.request.waited += started.elapsed();
                    let body = std::mem::take(body);
                    this.state.set(State::Planning {
                        body,
                        step: Step::Resume,
                    });
                }
                StateProj::Sending { body } => {
                    if !*this.ready {
                        match this.service.poll_ready(cx) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(Err(error)) => {
                                super::metrics::request("transport_error");
                                let info = this.request.info(StopReason::Final, None);
                                this.state.set(State::Done);
                                return Poll::Ready(Err(RetryError::Transport { error, info }));
                            }
                            Poll::Ready(Ok(())) => *this.ready = true,
                        }
                    }
                    let body = std::mem::take(body);
                    *this.ready = false;
                    let (future, timeout) = this.request.send(this.service, body, this.span);
                    this.state.set(State::Calling { future, timeout });
                }
                StateProj::Calling { future, timeout } => {
                    let next = match future.poll(cx) {
                        Poll::Ready(Ok(res)) => this.request.on_response(res),
                        Poll::Ready(Err(error)) => this.request.on_failure(Some(error)),
                        Poll::Pending => {
                            let timed_out = timeout
                                .as_mut()
                                .is_some_and(|timeout| timeout.as_mut().poll(cx).is_ready());
                            if !timed_out {
                                return Poll::Pending;
                            }
                            this.request.on_failure(None)
                        }
                    };
                    // The common case returns straight away, moving the output once.
                    if let Next::Return(output) = next {
                        this.state.set(State::Done);
                        return Poll::Ready(output);
                    }
                    match next.into_state(&this.request.shared.settings) {
                        Ok(state) => this.state.set(state),
                        Err(output) => {
                            this.state.set(State::Done);
                            return Poll::Ready(output);
                        }
                    }
                }
                StateProj::AskingRetry { pending } => {
                    let Some(asked) = pending.as_mut() else {
                        this.state.set(State::Done);
                        return Poll::Pending;
                    };
                    let Poll::Ready(remote) = asked.asking.question.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    let inputs = asked.asking.inputs;
                    let Some(asked) = pending.take() else {
                        return Poll::Pending;
                    };
                    let plan = this.request.resolve(inputs, remote);
                    let next = this.request.after_answer(plan, asked.kept);
                    match next.into_state(&this.request.shared.settings) {
                        Ok(state) => this.state.set(state),
                        Err(output) => {
                            this.state.set(State::Done);
                            return Poll::Ready(output);
                        }
                    }
                }
                StateProj::Pausing {
                    sleep,
                    started,
                    resume_at,
                    mut drain,
                    drain_until,
                    drain_left,
                    body,
                } => {
                    if drain
                        .as_mut()
                        .as_pin_mut()
                        .is_some_and(|d| drained(d, drain_left, cx))
                    {
                        drain.set(None);
                    }
                    let now = Instant::now();
                    let draining = drain.is_some() && now < *drain_until;
                    if now >= *resume_at && !draining {
                        this.request.waited += now.saturating_duration_since(*started);
                        let body = std::mem::take(body);
                        this.state.set(State::Planning {
                            body,
                            step: Step::Resume,
                        });
                        continue;
                    }
                    let wake_at = if draining && now >= *resume_at {
                        *drain_until
                    } else {
                        *resume_at
                    };
                    let timer = sleep.get_or_insert_with(|| Box::pin(sleep_until(wake_at)));
                    if timer.deadline() != wake_at {
                        timer.as_mut().reset(wake_at);
                    }
                    let fired = timer.as_mut().poll(cx).is_ready();
                    if !fired {
                        return Poll::Pending;
                    }
                }
                StateProj::Done => return Poll::Pending,
            }
        }
    }
}

impl<B: Body, P> Bookkeeping<B, P> {
    /// Sends the next attempt with `body` through `service` (polled ready for it); its
    /// future, and the attempt's timer if attempts are timed.
    #[allow(clippy::type_complexity)]
    fn send<S>(
        &mut self,
        service: &mut S,
        body: ReplayBody<B>,
        span: &RequestSpan,
    ) -> (S::Future, Option<Pin<Box<Sleep>>>)
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        self.attempts += 1;
        self.sent_at_slot = self.slot.take();
        span.sending(self.attempts);
        let future = service.call(Request::from_parts(self.head.clone(), body));
        let timeout = self
            .shared
            .settings
            .attempt_timeout
            .map(|t| Box::pin(sleep(t)));
        (future, timeout)
    }

    fn info(&self, stop: StopReason, retry_after: Option<Duration>) -> RetryInfo {
        RetryInfo {
            attempts: self.attempts,
            waited: self.waited,
            last_hint: self.last_hint,
            retry_after,
            stop,
        }
    }

    /// Asks the planner, under the shared state's lock: a plan, or a question to a fleet's
    /// store first; and the inputs it planned with.
    fn plan(&mut self, now: Instant, step: Step) -> (Planned, Inputs) {
        let Self {
            partition,
            head,
            shared,
            ..
        } = self;
        let inputs = Inputs {
            now,
            samples: [shared.sample(), shared.sample()],
            attempts: self.attempts,
            misses: self.misses,
            deadline: self.deadline,
            replayable: self.replay.can_replay(),
            probing: self.probe,
            slot: self.slot,
            step,
        };
        let state = &shared.state;
        let partition = || {
            partition
                .get_or_insert_with(|| state.partition(&head.uri, &head.headers))
                .clone()
        };
        (state.plan(&shared.settings, partition, &inputs), inputs)
    }

    /// The plan once a fleet's store answered (or did not, in time): the same inputs, at the
    /// time of the answer.
    fn resolve(&mut self, inputs: Inputs, remote: Option<Remote>) -> Plan {
        let Self {
            partition,
            head,
            shared,
            ..
        } = self;
        let state = &shared.state;
        let partition = partition.get_or_insert_with(|| state.partition(&head.uri, &head.headers));
        let inputs = Inputs {
            now: Instant::now(),
            ..inputs
        };
        state.resolve(&shared.settings, partition, &inputs, remote)
    }

    /// The error of a request the planner would not send.
    fn cooling_down<E>(&self, stop: Stop) -> RetryError<E> {
        event_at!(
            self.shared.settings.levels.give_up,
            http.request.method = %self.head.method,
            url = %Target(&self.head.uri),
            attempts = self.attempts,
            status = stop.status.map(|s| s.as_u16()),
            retry_after_ms = stop.retry_after.map(|d| d.as_millis() as u64),
            reason = ?stop.reason,
            "not sending: the server asked clients to wait longer than this request may"
        );
        super::metrics::request(super::metrics::failure_outcome(false, stop.reason));
        RetryError::CoolingDown {
            status: stop.status.unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            info: self.info(stop.reason, stop.retry_after),
        }
    }

    /// Tells the shared state what the attempt showed (and, for a paced partition, the rate
    /// the server says its remaining quota lasts at, if it says so).
    fn observe(&mut self, signal: Signal, follow: Option<f64>) {
        let seen = Observation {
            signal,
            slot: self.sent_at_slot.take(),
            probe: std::mem::take(&mut self.probe),
            follow,
        };
        let Self {
            partition,
            head,
            shared,
            ..
        } = self;
        let state = &shared.state;
        state.observe(
            &seen,
            || {
                partition
                    .get_or_insert_with(|| state.partition(&head.uri, &head.headers))
                    .clone()
            },
            Instant::now,
        );
    }

    /// What follows an attempt's outcome, `kept`, once the policy decided: it is returned,
    /// or the retry is planned (and goes, or is refused), or a fleet's store is asked first.
    fn conclude<R, E>(&mut self, decision: Decision, kept: Kept<R, E>) -> Next<B, R, E> {
        if decision == Decision::Stop {
            return self.stopped(kept, Stop::at(StopReason::Final));
        }
        let (hint, throttle) = match &kept {
            Kept::Response { res, hint } => (*hint, res.status() == StatusCode::TOO_MANY_REQUESTS),
            Kept::Failure { .. } => (None, false),
        };
        match self.plan(Instant::now(), Step::Retry { hint, throttle }) {
            (Planned::Now(plan), _) => self.after_answer(plan, kept),
            (Planned::Ask(question), inputs) => Next::Ask(Box::new(RetryQuestion {
                asking: Asking { question, inputs },
                kept,
            })),
        }
    }

    /// Returns the kept outcome, recording why the layer stopped.
    fn stopped<R, E>(&mut self, kept: Kept<R, E>, stop: Stop) -> Next<B, R, E> {
        match kept {
            Kept::Response { res, .. } => self.returned(res, stop),
            Kept::Failure { error, failure } => self.failed(error, failure, stop),
        }
    }

    /// The retry a plan allows: when it goes and with which body, or why not.
    fn retry_as(&mut self, plan: Plan) -> Result<(Instant, ReplayBody<B>), Stop> {
        match plan {
            Plan::Go {
                at, probe, slot, ..
            } => {
                let body = self
                    .replay
                    .next()
                    .ok_or(Stop::at(StopReason::BodyNotReplayable))?;
                self.probe = probe;
                self.slot = slot;
                Ok((at, body))
            }
            Plan::Stop(stop) => Err(stop),
        }
    }

    /// What follows a retry's plan (made at once, or once a fleet's store answered).
    fn after_answer<R, E>(&mut self, plan: Plan, kept: Kept<R, E>) -> Next<B, R, E> {
        let (at, body) = match self.retry_as(plan) {
            Ok(go) => go,
            Err(stop) => return self.stopped(kept, stop),
        };
        let drain = match kept {
            Kept::Response { res, hint } => {
                self.retrying_after_response(&res, hint, at);
                Some(res.into_body())
            }
            Kept::Failure { failure, .. } => {
                self.retrying_after_failure(failure, at);
                None
            }
        };
        Next::Retry { at, body, drain }
    }

    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    fn retrying_after_response<R>(&self, res: &Response<R>, hint: Option<Duration>, at: Instant) {
        let wait = at.saturating_duration_since(Instant::now());
        event_at!(
            self.shared.settings.levels.retry,
            http.request.method = %self.head.method,
            url = %Target(&self.head.uri),
            attempt = self.attempts,
            http.request.resend_count = self.attempts,
            status = res.status().as_u16(),
            code = res
                .extensions()
                .get::<ApiError>()
                .map(|e| e.code().event_name()),
            hint_ms = hint.map(|h| h.as_millis() as u64),
            wait_ms = wait.as_millis() as u64,
            "retrying after a response"
        );
        super::metrics::retry_after_response(res.status(), wait);
    }

    fn retrying_after_failure(&self, failure: Failure, at: Instant) {
        let wait = at.saturating_duration_since(Instant::now());
        event_at!(
            self.shared.settings.levels.retry,
            http.request.method = %self.head.method,
            url = %Target(&self.head.uri),
            attempt = self.attempts,
            http.request.resend_count = self.attempts,
            failure = ?failure,
            wait_ms = wait.as_millis() as u64,
            "retrying after a failed attempt"
        );
        super::metrics::retry_after_failure(failure, wait);
    }

    fn on_response<R, E>(&mut self, res: Response<R>) -> Next<B, R, E>
    where
        P: RetryPolicy<E>,
    {
        let status = res.status();
        let settings = &self.shared.settings;
        let throttling = matches!(status.as_u16(), 429 | 503);
        let hint = if throttling {
            wait_hint(res.headers(), settings.hint_fields, self.shared.clock.now())
        } else {
            None
        };
        if hint.is_some() {
            self.last_hint = hint;
        }
        if status == StatusCode::TOO_MANY_REQUESTS && self.sent_at_slot.is_some() {
            self.misses += 1;
        }
        let decision = self.policy.decide(&Attempt {
            method: &self.head.method,
            request_headers: &self.head.headers,
            number: self.attempts,
            outcome: Outcome::Response {
                status,
                headers: res.headers(),
                api_error: res.extensions().get::<ApiError>(),
                hint,
            },
        });
        let signal = if throttling && decision == Decision::Retry {
            Signal::Throttled {
                status,
                hint,
                quota: settings
                    .hint_fields
                    .rate_limit
                    .then(|| quota(res.headers()))
                    .flatten(),
            }
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            Signal::Refused
        } else if status.is_server_error() {
            Signal::Answered
        } else {
            Signal::Healthy
        };
        // Only a paced partition follows the server's figures: nothing is read while nothing
        // is throttled.
        let follow = (signal == Signal::Healthy && self.shared.state.throttled())
            .then(|| remaining_rate(res.headers(), settings.hint_fields, self.shared.clock.now()))
            .flatten();
        self.observe(signal, follow);
        // The usual answer is final: returned as it is, not moved into a `Kept` first (that
        // move measured 60 instructions on every 2xx).
        if decision == Decision::Stop {
            return self.returned(res, Stop::at(StopReason::Final));
        }
        self.conclude(decision, Kept::Response { res, hint })
    }

    /// Returns the response, recording why the layer stopped.
    fn returned<R, E>(&mut self, mut res: Response<R>, stop: Stop) -> Next<B, R, E> {
        let status = res.status();
        let level = if stop.reason == StopReason::Final {
            crate::trace::Levels::DEBUG
        } else {
            self.shared.settings.levels.give_up
        };
        event_at!(
            level,
            http.request.method = %self.head.method,
            url = %Target(&self.head.uri),
            attempts = self.attempts,
            status = status.as_u16(),
            code = res
                .extensions()
                .get::<ApiError>()
                .map(|e| e.code().event_name()),
            hint_ms = self.last_hint.map(|h| h.as_millis() as u64),
            reason = ?stop.reason,
            "returning the response"
        );
        super::metrics::request(super::metrics::response_outcome(status, stop.reason));
        // Only when something happened: a plain single attempt costs no extension (the map,
        // its table and a box); `ResponseExt::retry_info` gives the same record without it.
        let info = self.info(stop.reason, stop.retry_after);
        if info.is_eventful() {
            res.extensions_mut().insert(info);
        }
        Next::Return(Ok(res))
    }

    fn on_failure<R, E>(&mut self, error: Option<E>) -> Next<B, R, E>
    where
        P: RetryPolicy<E>,
    {
        let failure = error
            .as_ref()
            .map_or(Failure::TimedOut, |e| self.policy.failure(e));
        let decision = self.policy.decide(&Attempt {
            method: &self.head.method,
            request_headers: &self.head.headers,
            number: self.attempts,
            outcome: Outcome::Failed {
                error: error.as_ref(),
                failure,
            },
        });
        self.observe(Signal::Failed, None);
        self.conclude(decision, Kept::Failure { error, failure })
    }

    /// Returns the failure, recording why the layer stopped.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    fn failed<R, E>(&mut self, error: Option<E>, failure: Failure, stop: Stop) -> Next<B, R, E> {
        let level = if stop.reason == StopReason::Final && self.attempts == 1 {
            crate::trace::Levels::DEBUG
        } else {
            self.shared.settings.levels.give_up
        };
        event_at!(
            level,
            http.request.method = %self.head.method,
            url = %Target(&self.head.uri),
            attempts = self.attempts,
            failure = ?failure,
            reason = ?stop.reason,
            "giving up after a failed attempt"
        );
        super::metrics::request(super::metrics::failure_outcome(
            error.is_none(),
            stop.reason,
        ));
        let info = self.info(stop.reason, stop.retry_after);
        Next::Return(Err(match error {
            Some(error) => RetryError::Transport { error, info },
            None => RetryError::TimedOut { info },
        }))
    }
}

/// Reads what is there of the body of a response that is being retried, so the connection
/// can be reused; `true` once the body is done with (ended, failed, or `left` bytes read).
/// At most [`DRAIN_FRAMES_PER_POLL`] frames a poll: then it yields, so a body that is always
/// ready (with empty frames, which no byte bound stops) is held to the drain's time bound.
fn drained<R: Body>(mut body: Pin<&mut R>, left: &mut usize, cx: &mut Context<'_>) -> bool {
    for _ in 0..DRAIN_FRAMES_PER_POLL {
        if *left == 0 {
            return true;
        }
        match body.as_mut().poll_frame(cx) {
            Poll::Pending => return false,
            Poll::Ready(None | Some(Err(_))) => return true,
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *left = left.saturating_sub(data.remaining());
                }
            }
        }
    }
    cx.waker().wake_by_ref();
    false
}

/// See [`drained`].
const DRAIN_FRAMES_PER_POLL: usize = 32;

impl<S, B, R, P> fmt::Debug for ResponseFuture<S, B, R, P>
where
    S: Service<Request<ReplayBody<B>>>,
    B: Body,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.request.attempts)
            .field("waited", &self.request.waited)
            .finish_non_exhaustive()
    }
}
