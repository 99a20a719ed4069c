//! Callbacks set on the builder: told of each retry the layer schedules, of each request it
//! gives up on, and of each partition a 429 or 503 throttles. They run on the request's task, after every lock of the crate is released, and
//! cost one branch when unset. A hook that panics panics the request's future, as any code
//! polled from it would.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};

use super::RetryInfo;
use super::policy::Failure;

/// What a retry is scheduled after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetriedAfter {
    /// An answer with this status (a 429, a 503, ...).
    Status(StatusCode),
    /// An attempt that failed without an answer.
    Failure(Failure),
}

/// A retry the layer scheduled, for [`RetryBuilder::on_retry`](super::RetryBuilder::on_retry).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RetryEvent<'a> {
    /// The request's method.
    pub method: &'a Method,
    /// The number of the attempt that is retried (1: the first).
    pub attempt: u32,
    /// What it met.
    pub after: RetriedAfter,
    /// How long the retry waits before it goes (backoff, hint, gate or pacing).
    pub wait: Duration,
}

/// A partition the layer began (or went on) holding back after a 429 or 503, or whose
/// circuit breaker tripped, for
/// [`RetryBuilder::on_throttle`](super::RetryBuilder::on_throttle).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ThrottleEvent<'a> {
    /// The method of the request whose answer throttled the partition.
    pub method: &'a Method,
    /// The number of its attempt that met the answer (1: the first).
    pub attempt: u32,
    /// The answer's status (429 or 503; for a tripped breaker, the last failure's, 503 for
    /// a failure without an answer).
    pub status: StatusCode,
    /// Whether the partition's circuit breaker tripped (un-hinted failures in a row), rather
    /// than a server asking for a wait; `gated_for` is then the time to its first probe.
    pub tripped: bool,
    /// How long the partition's gate is now shut: no request of the partition goes before
    /// (`None`: this answer shut no gate, e.g. with `shared_cooldown(false)`).
    pub gated_for: Option<Duration>,
    /// The rate, in requests a second, the partition is now paced at, and for how long at
    /// most (`None`: this answer set no pacing, e.g. with `pacing(false)`).
    pub paced: Option<(f64, Duration)>,
}

/// What a throttle did to its partition, as the store reports it to the engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Throttled {
    pub(crate) status: StatusCode,
    pub(crate) tripped: bool,
    pub(crate) gated_for: Option<Duration>,
    pub(crate) paced: Option<(f64, Duration)>,
}

type OnRetry = dyn Fn(&RetryEvent<'_>) + Send + Sync;
type OnGiveUp = dyn Fn(&RetryInfo) + Send + Sync;
type OnThrottle = dyn Fn(&ThrottleEvent<'_>) + Send + Sync;

/// The hooks a layer was built with.
#[derive(Clone, Default)]
pub(super) struct Hooks {
    pub(super) on_retry: Option<Arc<OnRetry>>,
    pub(super) on_give_up: Option<Arc<OnGiveUp>>,
    pub(super) on_throttle: Option<Arc<OnThrottle>>,
}

impl Hooks {
    pub(super) fn set_on_retry(&mut self, hook: impl Fn(&RetryEvent<'_>) + Send + Sync + 'static) {
        self.on_retry = Some(Arc::new(hook));
    }

    pub(super) fn set_on_give_up(&mut self, hook: impl Fn(&RetryInfo) + Send + Sync + 'static) {
        self.on_give_up = Some(Arc::new(hook));
    }

    pub(super) fn set_on_throttle(
        &mut self,
        hook: impl Fn(&ThrottleEvent<'_>) + Send + Sync + 'static,
    ) {
        self.on_throttle = Some(Arc::new(hook));
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("on_retry", &self.on_retry.is_some())
            .field("on_give_up", &self.on_give_up.is_some())
            .field("on_throttle", &self.on_throttle.is_some())
            .finish()
    }
}
