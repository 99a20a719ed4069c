//! One request's admission engine: what the layer knows and has done for it, and every
//! decision after each input (started, a wait ended, a response, a failure, a timeout, a
//! fleet's answer), returned as one [`Next`] step: send this body, wait until then (draining
//! the last body), ask the fleet's store, or return.
//!
//! It spawns nothing, holds no timer and no socket: the [response future](super::future)
//! sequences its steps. It takes no lock itself (the stores take theirs, and release them
//! before anything is reported), and the time it plans at is the clock's when it is asked:
//! Tokio's, so paused in tests.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, request::Parts};
use http_body::Body;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;
use tower_service::Service;

use super::body::{Replay, ReplayBody};
use super::hints::{Reading, concurrency, quota, reading, scope, wait_hint};
use super::hooks::{RetriedAfter, RetryEvent, ThrottleEvent};
use super::layer::{Settings, Shared};
use super::plan::{Inputs, Plan, Step, Stop};
use super::policy::{Attempt, Decision, Failure, Outcome, RetryPolicy};
use super::rules;
use super::state::{Observation, Partition, Signal};
use super::store::{Planned, Question, Remote};
use super::telemetry::{self, Waiting};
use super::trace::RequestSpan;
use super::{Priority, RetryError, RetryInfo, RetryOverrides, StopReason};

/// What a request through the layer ends with.
pub(super) type Output<R, E> = Result<Response<R>, RetryError<E>>;

/// What to do next.
pub(super) enum Next<B: Body, R, E> {
    /// Send `body` now (once the service is ready).
    Send(ReplayBody<B>),
    /// Wait until `at` (planned at `from`), reading what there is of the last response's body
    /// meanwhile, then [`resume`](Engine::resume) with `body`.
    Wait {
        at: Instant,
        from: Instant,
        body: ReplayBody<B>,
        drain: Option<R>,
    },
    /// Wait for a place under the partition's limit on requests in flight, then
    /// [`placed`](Engine::placed) and send `body`; at `until` (the longest the request may
    /// wait), [`no_place`](Engine::no_place).
    Acquire {
        places: Arc<Semaphore>,
        until: Instant,
        body: ReplayBody<B>,
    },
    /// Ask a fleet's store, then [`answered`](Engine::answered).
    Ask(Box<Asking<B, R, E>>),
    Return(Output<R, E>),
}

/// A question to a fleet's store in flight, and what its answer decides.
pub(super) struct Asking<B, R, E> {
    pub(super) question: Question,
    inputs: Inputs,
    then: Then<B, R, E>,
}

/// What a store's answer decides.
enum Then<B, R, E> {
    /// Whether and when `body` goes (a first attempt, or one that waited).
    Admit(ReplayBody<B>),
    /// Whether the attempt that ended in `kept` is retried, or `kept` returned.
    Retry(Kept<R, E>),
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
pub(super) struct Engine<B, P> {
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
    /// The ticket the attempt in flight took as it started, when answers are read for what
    /// is left of the quota (`u64::MAX`: none).
    ticket: u64,
    /// The ticket a fleet's store handed the request for its next attempt (`u64::MAX`: none).
    fleet_ticket: u64,
    /// Attempts sent at a pacing slot and refused with a 429: the pacer's misses (a byte:
    /// only up to `max_attempts - 1`, at most 99, count).
    misses: u8,
    /// Whether the attempt in flight (or about to go) is the gate's probe.
    probe: bool,
    /// The schedule of the pacing slot the request waits for, if it holds one.
    slot: Option<u32>,
    /// The request's number among those waiting for slots (0: none yet), taken the first
    /// time it is planned.
    lane: u64,
    /// The place the attempt in flight holds under its partition's limit on requests in
    /// flight, if it has one: given back at its answer (or when the request is dropped).
    place: Option<OwnedSemaphorePermit>,
    /// When the attempt in flight was sent, for its duration's histogram.
    #[cfg(feature = "metrics")]
    sent_at: Option<Instant>,
}

impl<B: Body, P> Engine<B, P> {
    /// Readies a request's head for its attempts: an idempotency key, if the layer adds
    /// them.
    pub(super) fn prepare(head: &mut Parts, settings: &Settings) {
        if settings.idempotency_keys {
            super::idempotency::ensure_key(&head.method, &mut head.headers);
        }
    }

    /// The engine of a request whose head was [`prepare`](Self::prepare)d.
    #[inline(always)]
    pub(super) fn new(
        head: Parts,
        replay: Replay<B>,
        policy: P,
        shared: Arc<Shared>,
        deadline: Option<Instant>,
    ) -> Self {
        Self {
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
            ticket: u64::MAX,
            fleet_ticket: u64::MAX,
            misses: 0,
            probe: false,
            slot: None,
            lane: 0,
            place: None,
            #[cfg(feature = "metrics")]
            sent_at: None,
        }
    }

    /// The engine of `req`, and the body of its first attempt.
    #[cfg(test)]
    fn start(
        req: Request<B>,
        policy: P,
        shared: Arc<Shared>,
        deadline: Option<Instant>,
    ) -> (Self, ReplayBody<B>) {
        let (mut head, body) = req.into_parts();
        Self::prepare(&mut head, &shared.settings);
        let (replay, first) = Replay::start(body, shared.settings.replay_limit);
        (Self::new(head, replay, policy, shared, deadline), first)
    }

    pub(super) fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    pub(super) fn attempts(&self) -> u32 {
        self.attempts
    }

    pub(super) fn waited(&self) -> Duration {
        self.waited
    }

    /// Whether anything may hold the request back: while not, it goes without planning.
    pub(super) fn throttled(&self) -> bool {
        self.shared.state.throttled()
    }

    /// Whether, and when, `body` goes: its first attempt (`Step::Fresh`) or after a wait of
    /// `waited` (`Step::Resume`).
    pub(super) fn admit<R, E>(&mut self, body: ReplayBody<B>, step: Step) -> Next<B, R, E> {
        // The common case: nothing throttled anywhere, so no clock and no lock.
        if !self.throttled() {
            return Next::Send(body);
        }
        let now = Instant::now();
        match self.plan(now, step) {
            (Planned::Now(plan), _) => self.go(plan, body, now),
            (Planned::Ask(question), inputs) => Next::Ask(Box::new(Asking {
                question,
                inputs,
                then: Then::Admit(body),
            })),
        }
    }

    /// Sends `body` now, once it holds a place under its partition's limit on requests in
    /// flight, when there is one.
    fn take_place<R, E>(&mut self, body: ReplayBody<B>) -> Next<B, R, E> {
        let Some(partition) = &self.partition else {
            return Next::Send(body);
        };
        let Some(places) = self.shared.state.local().places(partition) else {
            return Next::Send(body);
        };
        match Arc::clone(&places).try_acquire_owned() {
            Ok(place) => {
                self.place = Some(place);
                Next::Send(body)
            }
            Err(TryAcquireError::NoPermits) => {
                let now = Instant::now();
                let own = self.head.extensions.get::<RetryOverrides>();
                let most = own.and_then(|own| own.max_retry_after);
                let most = most.unwrap_or(self.shared.settings.max_retry_after);
                let until = super::later(now, rules::cap(most, self.deadline, now));
                Next::Acquire {
                    places,
                    until,
                    body,
                }
            }
            // Never closed; were it, nothing would hold the request.
            Err(TryAcquireError::Closed) => Next::Send(body),
        }
    }

    /// A place under the partition's limit on requests in flight came free: `body` goes.
    pub(super) fn placed<R, E>(
        &mut self,
        place: Option<OwnedSemaphorePermit>,
        body: ReplayBody<B>,
    ) -> Next<B, R, E> {
        self.place = place;
        Next::Send(body)
    }

    /// No place came free within what the request may wait (`max_retry_after`, its
    /// deadline): it is not sent.
    pub(super) fn no_place<R, E>(&mut self) -> Next<B, R, E> {
        let stop = Stop {
            reason: StopReason::CoolingDown,
            retry_after: None,
            status: Some(StatusCode::TOO_MANY_REQUESTS),
        };
        Next::Return(Err(self.cooling_down(stop)))
    }

    /// A wait ended after `waited`: whether `body` goes now.
    pub(super) fn resume<R, E>(&mut self, body: ReplayBody<B>, waited: Duration) -> Next<B, R, E> {
        self.waited += waited;
        self.admit(body, Step::Resume)
    }

    /// What a fleet's store said (`None`: it did not answer in time).
    pub(super) fn answered<R, E>(
        &mut self,
        asking: Asking<B, R, E>,
        remote: Option<Remote>,
    ) -> Next<B, R, E> {
        let now = Instant::now();
        self.fleet_ticket = remote.and_then(|r| r.ticket).unwrap_or(u64::MAX);
        let plan = self.resolve(asking.inputs, remote, now);
        match asking.then {
            Then::Admit(body) => self.go(plan, body, now),
            Then::Retry(kept) => self.retry_or_return(plan, kept, now),
        }
    }

    /// Sends the next attempt with `body` through `service` (polled ready for it).
    pub(super) fn send<S>(
        &mut self,
        service: &mut S,
        body: ReplayBody<B>,
        span: &RequestSpan,
    ) -> S::Future
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        self.attempts += 1;
        self.sent_at_slot = self.slot.take();
        if self.shared.settings.hint_fields.follows() {
            // A fleet counts the requests of all its processes: its store's ticket, or none
            // (the request went without asking it).
            self.ticket = match std::mem::replace(&mut self.fleet_ticket, u64::MAX) {
                u64::MAX if !self.shared.state.is_fleet() => self.shared.state.local().start(),
                ticket => ticket,
            };
        }
        span.sending(self.attempts, &self.head.method, &self.head.uri);
        #[cfg(feature = "metrics")]
        {
            self.sent_at = Some(Instant::now());
        }
        let mut head = self.head.clone();
        if let Some((name, first)) = &self.shared.settings.attempt_header
            && (self.attempts > 1 || *first)
        {
            head.headers
                .insert(name.clone(), HeaderValue::from(self.attempts));
        }
        service.call(Request::from_parts(head, body))
    }

    /// The inner service failed its readiness: the error, returned as it is.
    pub(super) fn not_ready<E>(&self, error: E) -> RetryError<E> {
        telemetry::not_ready();
        RetryError::Transport {
            error,
            info: self.info(StopReason::Final, None),
        }
    }

    /// A plan's step for `body`, planned at `now`: send now, wait, or return why not.
    fn go<R, E>(&mut self, plan: Plan, body: ReplayBody<B>, now: Instant) -> Next<B, R, E> {
        match plan {
            Plan::Go {
                at, probe, slot, ..
            } => {
                self.probe |= probe;
                if slot.is_some() {
                    self.slot = slot;
                }
                let wait = at.saturating_duration_since(now);
                if wait.is_zero() {
                    return self.take_place(body);
                }
                let level = self.settings().levels.retry;
                telemetry::holding(level, &self.head, self.attempts + 1, wait);
                Next::Wait {
                    at,
                    from: now,
                    body,
                    drain: None,
                }
            }
            Plan::Stop(stop) => Next::Return(Err(self.cooling_down(stop))),
        }
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

    /// The request's partition, worked out the first time it is asked for; and the shared
    /// state, borrowed beside it.
    fn partition(&mut self) -> (impl FnMut() -> Partition + '_, &Shared) {
        let (partition, head, shared) = (&mut self.partition, &self.head, &*self.shared);
        let get = move || {
            partition
                .get_or_insert_with(|| shared.state.partition(&head.uri, &head.headers))
                .clone()
        };
        (get, shared)
    }

    /// The request counts against the quota `scope`, as its answer said: its partition from
    /// now on, learned for its path.
    fn rescope(&mut self, scope: u64) {
        let scoped = {
            let (partition, _) = self.known_partition();
            partition.scoped(scope)
        };
        if self.partition.as_ref() != Some(&scoped) {
            self.shared
                .state
                .local()
                .learn(&scoped, self.head.uri.path());
            self.partition = Some(scoped);
            // A slot of another partition's schedule says nothing of this one's pace.
            self.sent_at_slot = None;
        }
    }

    /// The request's partition, worked out now if it was not yet; and the shared state.
    fn known_partition(&mut self) -> (&Partition, &Shared) {
        let (head, shared) = (&self.head, &*self.shared);
        let partition = self
            .partition
            .get_or_insert_with(|| shared.state.partition(&head.uri, &head.headers));
        (partition, shared)
    }

    /// Asks the store: a plan, or a question to a fleet's store first; and the inputs it
    /// planned with.
    fn plan(&mut self, now: Instant, step: Step) -> (Planned, Inputs) {
        let shared = &self.shared;
        // The request's own limits, if it carries them: read here, off a plain request's path.
        let own = self.head.extensions.get::<RetryOverrides>();
        let priority = self.head.extensions.get::<Priority>().copied();
        if self.lane == 0 {
            self.lane = shared.state.local().lane();
        }
        let inputs = Inputs {
            now,
            samples: [shared.sample(), shared.sample()],
            attempts: self.attempts,
            misses: u32::from(self.misses),
            deadline: self.deadline,
            replayable: self.replay.can_replay(),
            probing: self.probe,
            slot: self.slot,
            lane: Some((
                self.lane,
                rules::rank(self.attempts > 0, priority.unwrap_or_default().level()),
            )),
            step,
            max_attempts: own.and_then(|own| own.max_attempts),
            max_retry_after: own.and_then(|own| own.max_retry_after),
        };
        let (partition, shared) = self.partition();
        (
            shared.state.plan(&shared.settings, partition, &inputs),
            inputs,
        )
    }

    /// The plan once a fleet's store answered (or did not, in time): the same inputs, at the
    /// time of the answer, `now`.
    fn resolve(&mut self, inputs: Inputs, remote: Option<Remote>, now: Instant) -> Plan {
        let inputs = Inputs { now, ..inputs };
        let (partition, shared) = self.known_partition();
        shared
            .state
            .resolve(&shared.settings, partition, &inputs, remote)
    }

    /// The error of a request the planner would not send.
    fn cooling_down<E>(&self, stop: Stop) -> RetryError<E> {
        let level = self.settings().levels.give_up;
        let (status, after) = (stop.status, stop.retry_after);
        telemetry::not_sending(level, &self.head, self.attempts, status, after, stop.reason);
        let info = self.info(stop.reason, stop.retry_after);
        self.gave_up(&info);
        RetryError::CoolingDown {
            status: stop.status.unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            info,
        }
    }

    /// Tells the give-up hook, if any, that the layer stopped for a reason of its own.
    fn gave_up(&self, info: &RetryInfo) {
        if let Some(hook) = &self.shared.settings.hooks.on_give_up {
            hook(info);
        }
    }

    /// Tells the store what the attempt showed.
    fn observe(&mut self, signal: Signal, reading: Option<Reading>, unhinted: Option<StatusCode>) {
        let seen = Observation {
            signal,
            slot: self.sent_at_slot.take(),
            probe: std::mem::take(&mut self.probe),
            reading,
            ticket: self.ticket,
            unhinted,
        };
        let (partition, shared) = self.partition();
        let throttled = shared.state.observe(&seen, partition, Instant::now);
        if let Some(throttled) = throttled
            && let Some(hook) = &self.shared.settings.hooks.on_throttle
        {
            hook(&ThrottleEvent {
                method: &self.head.method,
                attempt: self.attempts,
                status: throttled.status,
                tripped: throttled.tripped,
                gated_for: throttled.gated_for,
                paced: throttled.paced,
            });
        }
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
        let now = Instant::now();
        match self.plan(now, Step::Retry { hint, throttle }) {
            (Planned::Now(plan), _) => self.retry_or_return(plan, kept, now),
            (Planned::Ask(question), inputs) => Next::Ask(Box::new(Asking {
                question,
                inputs,
                then: Then::Retry(kept),
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

    /// What a retry's plan (made at `now`, at once or once a fleet's store answered) comes to:
    /// a wait with the next body, or the kept outcome returned.
    #[inline]
    fn retry_or_return<R, E>(
        &mut self,
        plan: Plan,
        kept: Kept<R, E>,
        now: Instant,
    ) -> Next<B, R, E> {
        let (at, probe, slot) = match plan {
            Plan::Go {
                at, probe, slot, ..
            } => (at, probe, slot),
            Plan::Stop(stop) => return self.stopped(kept, stop),
        };
        let Some(body) = self.replay.next() else {
            return self.stopped(kept, Stop::at(StopReason::BodyNotReplayable));
        };
        self.probe = probe;
        self.slot = slot;
        let wait = Waiting {
            from: now,
            until: at,
        };
        if let Some(hook) = &self.shared.settings.hooks.on_retry {
            let after = match &kept {
                Kept::Response { res, .. } => RetriedAfter::Status(res.status()),
                Kept::Failure { failure, .. } => RetriedAfter::Failure(*failure),
            };
            hook(&RetryEvent {
                method: &self.head.method,
                attempt: self.attempts,
                after,
                wait: wait.length(),
            });
        }
        let level = self.settings().levels.retry;
        let drain = match kept {
            Kept::Response { res, hint } => {
                telemetry::retrying_after_response(
                    level,
                    &self.head,
                    self.attempts,
                    &res,
                    hint,
                    wait,
                );
                Some(res.into_body())
            }
            Kept::Failure { failure, .. } => {
                telemetry::retrying_after_failure(level, &self.head, self.attempts, failure, wait);
                None
            }
        };
        Next::Wait {
            at,
            from: now,
            body,
            drain,
        }
    }

    /// What follows a response.
    pub(super) fn on_response<R, E>(&mut self, res: Response<R>) -> Next<B, R, E>
    where
        P: RetryPolicy<E>,
    {
        let status = res.status();
        // The answer frees the attempt's place in flight, if it held one.
        self.place = None;
        #[cfg(feature = "metrics")]
        super::metrics::attempt(&self.head.method, Ok(status), self.sent_at);
        let settings = &self.shared.settings;
        let throttling = matches!(status.as_u16(), 429 | 503);
        let hint = if throttling {
            wait_hint(res.headers(), settings.hint_fields, &*self.shared.clock)
        } else {
            None
        };
        if hint.is_some() {
            self.last_hint = hint;
        }
        if settings.hint_fields.rate_limit {
            telemetry::ignored_quota(&self.head, res.headers());
            // The quota the answer says it counted against: this request's partition from
            // now on, and the next ones' to the same path.
            if self.shared.state.local().scoping()
                && let Some(scope) = scope(res.headers())
            {
                self.rescope(scope);
            }
            if let Some(limit) = concurrency(res.headers()) {
                let (partition, shared) = self.known_partition();
                shared
                    .state
                    .local()
                    .limit_in_flight(partition, limit, Instant::now());
            }
        }
        let settings = &self.shared.settings;
        // A refusal at a pacing slot, or one that announces the quota (the allowance's miss:
        // another client spent what was left), is the pace's, not the request's.
        if status == StatusCode::TOO_MANY_REQUESTS
            && (self.sent_at_slot.is_some()
                || (settings.hint_fields.follows()
                    && reading(res.headers(), settings.hint_fields, &*self.shared.clock).is_some()))
        {
            self.misses = self.misses.saturating_add(1);
        }
        let decision = self.policy.decide(&Attempt {
            method: &self.head.method,
            request_headers: &self.head.headers,
            number: self.attempts,
            outcome: Outcome::Response {
                status,
                headers: res.headers(),
                api_error: res.extensions().get::<crate::ApiError>(),
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
        // What is left of the quota, read on every healthy answer when asked to.
        let reading = (signal == Signal::Healthy && settings.hint_fields.follows())
            .then(|| reading(res.headers(), settings.hint_fields, &*self.shared.clock))
            .flatten();
        // A server error it gave no reason or wait for: the breaker's to count (501 and 505
        // are about the request, not the server's health).
        let unhinted = match status.as_u16() {
            501 | 505 => None,
            500..=599 if hint.is_none_or(|h| h.is_zero()) => Some(status),
            _ => None,
        };
        self.observe(signal, reading, unhinted);
        // The usual answer is final: returned as it is, not moved into a `Kept` first (that
        // move measured 60 instructions on every 2xx).
        if decision == Decision::Stop {
            return self.returned(res, Stop::at(StopReason::Final));
        }
        self.conclude(decision, Kept::Response { res, hint })
    }

    /// Returns the response, recording why the layer stopped.
    fn returned<R, E>(&mut self, mut res: Response<R>, stop: Stop) -> Next<B, R, E> {
        let level = self.settings().levels.give_up;
        telemetry::returning(
            level,
            &self.head,
            self.attempts,
            &res,
            self.last_hint,
            stop.reason,
        );
        // Only when something happened: a plain single attempt costs no extension (the map,
        // its table and a box); `ResponseExt::retry_info` gives the same record without it.
        let info = self.info(stop.reason, stop.retry_after);
        if stop.reason != StopReason::Final {
            self.gave_up(&info);
        }
        if info.is_eventful() {
            res.extensions_mut().insert(info);
        }
        Next::Return(Ok(res))
    }

    /// What follows a failed attempt (`None`: its timeout).
    pub(super) fn on_failure<R, E>(&mut self, error: Option<E>, span: &RequestSpan) -> Next<B, R, E>
    where
        P: RetryPolicy<E>,
    {
        self.place = None;
        let failure = error
            .as_ref()
            .map_or(Failure::TimedOut, |e| self.policy.failure(e));
        span.failed(failure.label());
        #[cfg(feature = "metrics")]
        super::metrics::attempt(&self.head.method, Err(failure), self.sent_at);
        let decision = self.policy.decide(&Attempt {
            method: &self.head.method,
            request_headers: &self.head.headers,
            number: self.attempts,
            outcome: Outcome::Failed {
                error: error.as_ref(),
                failure,
            },
        });
        // No answer counts as a 503 for the breaker, unless nothing was sent at all.
        let unhinted = (failure != Failure::Unsendable).then_some(StatusCode::SERVICE_UNAVAILABLE);
        self.observe(Signal::Failed, None, unhinted);
        self.conclude(decision, Kept::Failure { error, failure })
    }

    /// Returns the failure, recording why the layer stopped.
    fn failed<R, E>(&mut self, error: Option<E>, failure: Failure, stop: Stop) -> Next<B, R, E> {
        let level = self.settings().levels.give_up;
        let timed_out = error.is_none();
        telemetry::giving_up(
            level,
            &self.head,
            self.attempts,
            failure,
            timed_out,
            stop.reason,
        );
        let info = self.info(stop.reason, stop.retry_after);
        if stop.reason != StopReason::Final {
            self.gave_up(&info);
        }
        Next::Return(Err(match error {
            Some(error) => RetryError::Transport { error, info },
            None => RetryError::TimedOut { info },
        }))
    }
}

#[cfg(test)]
mod tests {
    //! The engine as a table: each row a layer, a request and the outcomes its attempts meet,
    //! and the steps the engine takes. No socket and no timer: a wait is resumed at once (the
    //! clock is paused), a fleet is not involved (its question is the conformance table's).
    #![allow(clippy::unwrap_used, clippy::panic)]

    use bytes::Bytes;
    use http::{HeaderValue, Method};
    use http_body_util::Full;

    use super::*;
    use crate::retry::{DefaultPolicy, Jitter, RetryBuilder, RetryLayer};

    const S: Duration = Duration::from_secs(1);

    struct Half;
    impl Jitter for Half {
        fn sample(&self) -> f64 {
            0.5
        }
    }

    /// What an attempt meets.
    #[derive(Clone, Copy)]
    enum Meets {
        Status(u16, Option<&'static str>),
        Fails,
        TimesOut,
    }
    use Meets::{Fails, Status, TimesOut};

    type Res = Full<Bytes>;
    type Error = std::io::Error;

    /// Drives an engine through `outcomes` (one per attempt it sends); the steps it took.
    async fn steps<B>(
        layer: RetryBuilder,
        req: Request<B>,
        deadline: Option<Duration>,
        outcomes: &[Meets],
    ) -> Vec<String>
    where
        B: Body,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let layer = layer.jitter(Half).build().unwrap();
        let deadline = deadline.map(|d| Instant::now() + d);
        let policy = DefaultPolicy::new();
        let (mut engine, body) = Engine::start(req, policy, Arc::clone(&layer.shared), deadline);
        // A transport reads the body it sends (and the replay keeps what it may).
        let mut service = tower::service_fn(|req: Request<ReplayBody<B>>| async {
            let _ = http_body_util::BodyExt::collect(req.into_body()).await;
            Ok::<Response<Res>, Error>(Response::new(Full::default()))
        });
        let span = RequestSpan::new(&Method::GET, &"https://api.test/".parse().unwrap());
        let mut outcomes = outcomes.iter();
        let mut next: Next<B, Res, Error> = engine.admit(body, Step::Fresh);
        let mut seen = Vec::new();
        loop {
            next = match next {
                Next::Send(body) => {
                    seen.push("send".to_owned());
                    let _ = engine.send(&mut service, body, &span).await;
                    match outcomes.next().expect("an outcome for every attempt") {
                        Status(status, retry_after) => {
                            let mut res = Response::new(Full::default());
                            *res.status_mut() = StatusCode::from_u16(*status).unwrap();
                            if let Some(value) = retry_after {
                                res.headers_mut()
                                    .insert("retry-after", HeaderValue::from_static(value));
                            }
                            engine.on_response(res)
                        }
                        Fails => engine.on_failure(Some(Error::other("refused")), &span),
                        TimesOut => engine.on_failure(None, &span),
                    }
                }
                Next::Wait {
                    at, body, drain, ..
                } => {
                    let wait = at.saturating_duration_since(Instant::now());
                    let drained = if drain.is_some() { " (draining)" } else { "" };
                    seen.push(format!("wait {}ms{drained}", wait.as_millis()));
                    tokio::time::advance(wait).await;
                    engine.resume(body, wait)
                }
                Next::Ask(_) => panic!("no fleet here"),
                Next::Acquire { .. } => panic!("no limit on requests in flight here"),
                Next::Return(Ok(res)) => {
                    let info = crate::ResponseExt::retry_info(&res);
                    let stop = info.stop_reason();
                    seen.push(format!("return {} {stop:?}", res.status().as_u16()));
                    return seen;
                }
                Next::Return(Err(error)) => {
                    let stop = error.info().stop_reason();
                    let kind = match error {
                        RetryError::Transport { .. } => "transport error",
                        RetryError::TimedOut { .. } => "timed out",
                        RetryError::CoolingDown { .. } => "cooling down",
                    };
                    seen.push(format!("{kind} {stop:?}"));
                    return seen;
                }
            };
        }
    }

    fn get() -> Request<Full<Bytes>> {
        Request::get("https://api.test/v1/x")
            .body(Full::default())
            .unwrap()
    }

    /// A row: its name, the layer, the request, its deadline, what its attempts meet, and
    /// the steps the engine takes.
    type Row = (
        &'static str,
        RetryBuilder,
        Request<Full<Bytes>>,
        Option<Duration>,
        Vec<Meets>,
        &'static [&'static str],
    );

    #[tokio::test(start_paused = true)]
    async fn every_transition_and_every_stop() {
        let layer = RetryLayer::builder;
        let post = || {
            Request::post("https://api.test/v1/x")
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap()
        };
        let rows: Vec<Row> = vec![
            (
                "a 2xx is returned",
                layer(),
                get(),
                None,
                vec![Status(200, None)],
                &["send", "return 200 Final"],
            ),
            (
                "a 400 is final",
                layer(),
                get(),
                None,
                vec![Status(400, None)],
                &["send", "return 400 Final"],
            ),
            (
                "a 503 is retried after the backoff, draining its body",
                layer(),
                get(),
                None,
                vec![Status(503, None), Status(200, None)],
                &["send", "wait 50ms (draining)", "send", "return 200 Final"],
            ),
            (
                "a hint is a floor",
                layer(),
                get(),
                None,
                vec![Status(429, Some("2")), Status(200, None)],
                &["send", "wait 2100ms (draining)", "send", "return 200 Final"],
            ),
            (
                "out of attempts: the last response",
                layer().max_attempts(2),
                get(),
                None,
                vec![Status(500, None), Status(500, None)],
                &[
                    "send",
                    "wait 50ms (draining)",
                    "send",
                    "return 500 AttemptsExhausted",
                ],
            ),
            (
                "a hint above the cap is not slept on",
                layer(),
                get(),
                None,
                vec![Status(503, Some("120"))],
                &["send", "return 503 HintTooLong"],
            ),
            (
                "a POST's bare 503 is not retried",
                layer(),
                post(),
                None,
                vec![Status(503, None)],
                &["send", "return 503 Final"],
            ),
            (
                "a failure is retried without a body to drain",
                layer(),
                get(),
                None,
                vec![Fails, Status(200, None)],
                &["send", "wait 50ms", "send", "return 200 Final"],
            ),
            (
                "a timeout, retried, then out of attempts",
                layer().max_attempts(2),
                get(),
                None,
                vec![TimesOut, TimesOut],
                &["send", "wait 50ms", "send", "timed out AttemptsExhausted"],
            ),
            (
                "the budget refuses",
                layer().budget(0.0, 0),
                get(),
                None,
                vec![Status(500, None)],
                &["send", "return 500 BudgetExhausted"],
            ),
            (
                "a wait past the deadline is not started",
                layer(),
                get(),
                Some(S),
                vec![Status(503, Some("2"))],
                &["send", "return 503 DeadlineTooClose"],
            ),
            (
                "a gate the request's own 503 shut holds its retry, not the first send",
                layer().max_cooldown(10 * S),
                get(),
                None,
                vec![Status(503, Some("3")), Status(200, None)],
                &["send", "wait 3150ms (draining)", "send", "return 200 Final"],
            ),
        ];
        for (name, layer, req, deadline, outcomes, expected) in rows {
            let seen = steps(layer, req, deadline, &outcomes).await;
            assert_eq!(seen, expected, "{name}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_cannot_be_sent_again_is_not_retried() {
        let req = Request::get("https://api.test/v1/x")
            .body(Full::new(&b"0123456789"[..]))
            .unwrap();
        let seen = steps(
            RetryLayer::builder().replay_limit(4),
            req,
            None,
            &[Status(503, None)],
        )
        .await;
        assert_eq!(seen, ["send", "return 503 BodyNotReplayable"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shut_gate_holds_a_fresh_request_or_refuses_it() {
        let layer = RetryLayer::builder()
            .max_cooldown(10 * S)
            .jitter(Half)
            .build()
            .unwrap();
        let shared = &layer.shared;
        let start = |req| Engine::start(req, DefaultPolicy::new(), Arc::clone(shared), None);
        // A first request's 503 with a 3 s hint shuts the gate.
        let (mut first, body) = start(get());
        let mut service = tower::service_fn(|_: Request<ReplayBody<Full<Bytes>>>| async {
            Ok::<Response<Res>, Error>(Response::new(Full::default()))
        });
        let span = RequestSpan::new(&Method::GET, &"https://api.test/".parse().unwrap());
        drop(first.send(&mut service, body, &span));
        let mut res = Response::new(Full::default());
        *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        res.headers_mut()
            .insert("retry-after", HeaderValue::from_static("3"));
        let _: Next<_, Res, Error> = first.on_response(res);
        // Another request is held for it (plus at most a tenth of the hint, here half of it).
        let (mut second, body) = start(get());
        match second.admit::<Res, Error>(body, Step::Fresh) {
            Next::Wait {
                at, drain: None, ..
            } => {
                assert_eq!(
                    at.saturating_duration_since(Instant::now()),
                    3 * S + S * 3 / 20
                );
            }
            _ => panic!("not held"),
        }
        // One that may not wait that long is refused at once.
        let (mut third, body) = Engine::start(
            get(),
            DefaultPolicy::new(),
            Arc::clone(shared),
            Some(Instant::now() + S),
        );
        match third.admit::<Res, Error>(body, Step::Fresh) {
            Next::Return(Err(RetryError::CoolingDown { status, info })) => {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(info.stop_reason(), StopReason::CoolingDown);
            }
            _ => panic!("not refused"),
        }
    }
}
