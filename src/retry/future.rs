use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http::{Request, Response, request::Parts};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep, sleep_until};
use tower_service::Service;

use super::backoff::{backoff, hinted};
use super::body::{Replay, ReplayBody};
use super::cooldown::Partition;
use super::hints::wait_hint;
use super::layer::Shared;
use super::policy::{Attempt, Decision, Failure, Outcome, RetryPolicy};
use super::{RetryError, RetryInfo, StopReason, later};
use crate::ApiError;

pin_project! {
    /// The response future of [`Retry`](super::Retry).
    ///
    /// It owns everything a retry needs (the request head, the body's replay buffer, a clone
    /// of the inner service) and spawns nothing: dropping it stops all work, and no attempt is
    /// sent after that.
    pub struct ResponseFuture<S, B, R, P>
    where
        S: Service<Request<ReplayBody<B>>>,
        B: Body,
    {
        #[pin]
        state: State<S::Future, R>,
        service: S,
        // Whether `service` has been polled ready and not called since.
        ready: bool,
        plan: Plan<B, P>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, R> {
        // Waiting for the origin's cooldown to end before an attempt. Timers are boxed: they
        // exist only while waiting, and inline they would make every future (and every move of
        // one) several hundred bytes larger on the success path.
        Cooling {
            sleep: Pin<Box<Sleep>>,
            started: Instant,
        },
        // Checking the cooldown, then readiness, then sending.
        Preparing,
        Calling {
            #[pin]
            future: F,
            timeout: Option<Pin<Box<Sleep>>>,
        },
        // Between attempts: waiting, and draining the last response's body meanwhile.
        Pausing {
            sleep: Option<Pin<Box<Sleep>>>,
            started: Instant,
            resume_at: Instant,
            drain: Option<Drain<R>>,
        },
        Done,
    }
}

/// The retry bookkeeping of one request.
struct Plan<B: Body, P> {
    head: Parts,
    replay: Replay<B>,
    /// The body of the next attempt.
    body: Option<ReplayBody<B>>,
    policy: P,
    shared: Arc<Shared>,
    partition: Option<Partition>,
    deadline: Option<Instant>,
    attempts: u32,
    waited: Duration,
    last_hint: Option<Duration>,
}

/// The body of a response that is being retried, read and dropped so the connection can be
/// reused.
struct Drain<R> {
    body: Pin<Box<R>>,
    until: Instant,
    left: usize,
}

enum Step<R, E> {
    Return(Result<Response<R>, RetryError<E>>),
    Pause { wait: Duration, drain: Option<R> },
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
        let (head, body) = req.into_parts();
        let (replay, first) = Replay::start(body, shared.settings.replay_limit);
        Self {
            state: State::Preparing,
            service,
            ready: true,
            plan: Plan {
                head,
                replay,
                body: Some(first),
                policy,
                shared,
                partition: None,
                deadline,
                attempts: 0,
                waited: Duration::ZERO,
                last_hint: None,
            },
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
        loop {
            match this.state.as_mut().project() {
                StateProj::Cooling { sleep, started } => {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.plan.waited += started.elapsed();
                    this.state.set(State::Preparing);
                }
                StateProj::Preparing => {
                    if let Some(until) = this.plan.cooling_until() {
                        // A wait the layer would not sleep on for a hint (past the deadline,
                        // or longer than `max_retry_after`) is not slept on for a cooldown.
                        let too_long = until.saturating_duration_since(Instant::now())
                            > this.plan.shared.settings.max_retry_after;
                        if too_long || this.plan.deadline.is_some_and(|d| until >= d) {
                            let info = this.plan.info(StopReason::DeadlineTooClose);
                            this.state.set(State::Done);
                            return Poll::Ready(Err(RetryError::CoolingDown { info }));
                        }
                        if *this.ready {
                            // Give back what readiness reserved (a concurrency permit, a
                            // buffer slot) while waiting; it is asked for again afterwards.
                            let fresh = this.service.clone();
                            *this.service = fresh;
                            *this.ready = false;
                        }
                        crate::trace::debug!(
                            wait_ms =
                                until.saturating_duration_since(Instant::now()).as_millis() as u64,
                            "waiting for the origin's cooldown before sending"
                        );
                        this.state.set(State::Cooling {
                            sleep: Box::pin(sleep_until(until)),
                            started: Instant::now(),
                        });
                        continue;
                    }
                    if !*this.ready {
                        match this.service.poll_ready(cx) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(Err(error)) => {
                                let info = this.plan.info(StopReason::Final);
                                this.state.set(State::Done);
                                return Poll::Ready(Err(RetryError::Transport { error, info }));
                            }
                            Poll::Ready(Ok(())) => *this.ready = true,
                        }
                    }
                    let Some(body) = this.plan.body.take() else {
                        // Every path into this state sets the body; nothing to send otherwise.
                        this.state.set(State::Done);
                        return Poll::Pending;
                    };
                    this.plan.attempts += 1;
                    *this.ready = false;
                    let future = this
                        .service
                        .call(Request::from_parts(this.plan.head.clone(), body));
                    let timeout = this
                        .plan
                        .shared
                        .settings
                        .attempt_timeout
                        .map(|t| Box::pin(sleep(t)));
                    this.state.set(State::Calling { future, timeout });
                }
                StateProj::Calling { future, timeout } => {
                    let step = match future.poll(cx) {
                        Poll::Ready(Ok(res)) => this.plan.on_response(res),
                        Poll::Ready(Err(error)) => this.plan.on_failure(Some(error)),
                        Poll::Pending => {
                            let timed_out = timeout
                                .as_mut()
                                .is_some_and(|timeout| timeout.as_mut().poll(cx).is_ready());
                            if !timed_out {
                                return Poll::Pending;
                            }
                            this.plan.on_failure(None)
                        }
                    };
                    match step {
                        Step::Return(output) => {
                            this.state.set(State::Done);
                            return Poll::Ready(output);
                        }
                        Step::Pause { wait, drain } => {
                            let now = Instant::now();
                            let settings = &this.plan.shared.settings;
                            let drain = drain.map(|body| Drain {
                                body: Box::pin(body),
                                until: later(now, settings.drain_timeout),
                                left: settings.drain_limit,
                            });
                            this.state.set(State::Pausing {
                                sleep: None,
                                started: now,
                                resume_at: later(now, wait),
                                drain,
                            });
                        }
                    }
                }
                StateProj::Pausing {
                    sleep,
                    started,
                    resume_at,
                    drain,
                } => {
                    if drain.as_mut().is_some_and(|d| d.poll(cx)) {
                        *drain = None;
                    }
                    let now = Instant::now();
                    let draining = drain.as_ref().filter(|d| now < d.until);
                    if now >= *resume_at && draining.is_none() {
                        this.plan.waited += now.saturating_duration_since(*started);
                        this.state.set(State::Preparing);
                        continue;
                    }
                    let wake_at = match draining {
                        Some(d) if now >= *resume_at => d.until,
                        _ => *resume_at,
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

impl<B: Body, P> Plan<B, P> {
    fn info(&self, stop: StopReason) -> RetryInfo {
        RetryInfo {
            attempts: self.attempts,
            waited: self.waited,
            last_hint: self.last_hint,
            stop,
        }
    }

    /// When the origin's cooldown ends (plus the jitter that spreads waiters), if it is on.
    fn cooling_until(&mut self) -> Option<Instant> {
        let Self {
            shared,
            partition,
            head,
            ..
        } = self;
        let cooldown = shared.cooldown.as_ref()?;
        // No clock read at all while no gate ever closed.
        if !cooldown.ever_closed() {
            return None;
        }
        let now = Instant::now();
        let until =
            cooldown.closed_until(now, || cooldown.partition_cached(partition, &head.uri))?;
        let spread = until
            .saturating_duration_since(now)
            .min(self.shared.settings.hint_jitter)
            .mul_f64(self.shared.sample());
        Some(later(until, spread))
    }

    fn on_response<R, E>(&mut self, mut res: Response<R>) -> Step<R, E>
    where
        P: RetryPolicy<E>,
    {
        let status = res.status();
        let hint = match status.as_u16() {
            429 | 503 => wait_hint(
                res.headers(),
                self.shared.settings.hint_fields,
                self.shared.clock.now(),
            ),
            _ => None,
        };
        if hint.is_some() {
            self.last_hint = hint;
        }
        if let Some(floor) = hint.filter(|h| !h.is_zero())
            && let Some(cooldown) = &self.shared.cooldown
        {
            let partition = cooldown.partition_cached(&mut self.partition, &self.head.uri);
            cooldown.close(partition, later(Instant::now(), floor));
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
        let stop = match decision {
            Decision::Stop => {
                if let Some(budget) = &self.shared.budget {
                    budget.deposit();
                }
                StopReason::Final
            }
            Decision::Retry => match self.plan_retry(hint) {
                Ok(wait) => {
                    crate::trace::debug!(
                        attempt = self.attempts,
                        status = status.as_u16(),
                        code = res
                            .extensions()
                            .get::<ApiError>()
                            .map(|e| e.code().as_str()),
                        hint_ms = hint.map(|h| h.as_millis() as u64),
                        wait_ms = wait.as_millis() as u64,
                        "retrying after a response"
                    );
                    return Step::Pause {
                        wait,
                        drain: Some(res.into_body()),
                    };
                }
                Err(reason) => reason,
            },
        };
        crate::trace::debug!(
            attempts = self.attempts,
            status = status.as_u16(),
            reason = ?stop,
            "returning the response"
        );
        res.extensions_mut().insert(self.info(stop));
        Step::Return(Ok(res))
    }

    fn on_failure<R, E>(&mut self, error: Option<E>) -> Step<R, E>
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
        let stop = match decision {
            Decision::Stop => StopReason::Final,
            Decision::Retry => match self.plan_retry(None) {
                Ok(wait) => {
                    crate::trace::debug!(
                        attempt = self.attempts,
                        failure = ?failure,
                        wait_ms = wait.as_millis() as u64,
                        "retrying after a failed attempt"
                    );
                    return Step::Pause { wait, drain: None };
                }
                Err(reason) => reason,
            },
        };
        crate::trace::debug!(attempts = self.attempts, failure = ?failure, reason = ?stop, "giving up");
        let info = self.info(stop);
        Step::Return(Err(match error {
            Some(error) => RetryError::Transport { error, info },
            None => RetryError::TimedOut { info },
        }))
    }

    /// The wait before the next attempt, or why there is none.
    fn plan_retry(&mut self, hint: Option<Duration>) -> Result<Duration, StopReason> {
        let settings = &self.shared.settings;
        if self.attempts >= settings.max_attempts {
            return Err(StopReason::AttemptsExhausted);
        }
        if hint.is_some_and(|h| h > settings.max_retry_after) {
            return Err(StopReason::HintTooLong);
        }
        if !self.replay.can_replay() {
            return Err(StopReason::BodyNotReplayable);
        }
        let backoff = backoff(
            self.attempts,
            settings.base_backoff,
            settings.max_backoff,
            self.shared.sample(),
        );
        let mut wait = match hint {
            Some(floor) if !floor.is_zero() => {
                hinted(floor, backoff, settings.hint_jitter, self.shared.sample())
            }
            _ => backoff,
        };
        let now = Instant::now();
        if let Some(until) = self.cooling_until() {
            wait = wait.max(until.saturating_duration_since(now));
        }
        if self.deadline.is_some_and(|d| later(now, wait) >= d) {
            return Err(StopReason::DeadlineTooClose);
        }
        if let Some(budget) = &self.shared.budget
            && !budget.withdraw()
        {
            return Err(StopReason::BudgetExhausted);
        }
        self.body = self.replay.next();
        if self.body.is_none() {
            return Err(StopReason::BodyNotReplayable);
        }
        Ok(wait)
    }
}

impl<R: Body> Drain<R> {
    /// Reads what is there; `true` once the body is done with (ended, failed, or the byte
    /// bound reached).
    fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.left == 0 {
                return true;
            }
            match self.body.as_mut().poll_frame(cx) {
                Poll::Pending => return false,
                Poll::Ready(None | Some(Err(_))) => return true,
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        self.left = self.left.saturating_sub(data.remaining());
                    }
                }
            }
        }
    }
}

impl<S, B, R, P> fmt::Debug for ResponseFuture<S, B, R, P>
where
    S: Service<Request<ReplayBody<B>>>,
    B: Body,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.plan.attempts)
            .field("waited", &self.plan.waited)
            .finish_non_exhaustive()
    }
}
