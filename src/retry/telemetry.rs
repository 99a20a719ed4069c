//! Every tracing event and metric of a request through the retry layer, from one place. The
//! engine calls these once the stores returned (no lock of the crate is held: a subscriber or
//! a recorder is the user's code), and the stores report what changed under their lock only
//! after releasing it.
//!
//! Events carry the method and the URL (credentials stripped) and never a body's free text:
//! an error code the crate does not know is named `unknown`.

// Without `tracing` the events are no-ops, and their functions' arguments go unread.
#![cfg_attr(not(feature = "tracing"), allow(unused_variables))]

use std::time::Duration;

use http::request::Parts;
use http::{Response, StatusCode};
use tokio::time::Instant;

use super::StopReason;
use super::metrics;
use super::policy::Failure;
use super::state::Partition;
#[cfg(feature = "tracing")]
use super::trace::Target;
use super::trace::event_at;
use super::trace::{Level, Levels};

/// An event about a request: its method and URL (never its user-info or query) first.
macro_rules! request_event {
    ($level:expr, $head:expr, $($rest:tt)+) => {
        event_at!(
            $level,
            http.request.method = %$head.method,
            url = %Target(&$head.uri),
            $($rest)+
        )
    };
}

/// A wait from `from` until `until`, its length worked out only when an event or a metric
/// records it (with neither on, a retry reads no more of the clock than it must).
#[derive(Clone, Copy)]
pub(crate) struct Waiting {
    pub(crate) from: Instant,
    pub(crate) until: Instant,
}

impl Waiting {
    pub(crate) fn length(self) -> Duration {
        self.until.saturating_duration_since(self.from)
    }
}

/// DEBUG for an ordinary outcome, else the layer's give-up level.
fn level(give_up: Level, ordinary: bool) -> Level {
    if ordinary { Levels::DEBUG } else { give_up }
}

/// The code of a classified error response, as events name it.
#[cfg(feature = "tracing")]
fn code<R>(res: &Response<R>) -> Option<&'static str> {
    res.extensions()
        .get::<crate::ApiError>()
        .map(|e| e.code().event_name())
}

/// An answer names a quota counted in another unit than requests (bytes, requests in
/// flight), which the layer does not follow: a DEBUG event, looked for only when a
/// subscriber wants it.
#[inline]
pub(crate) fn ignored_quota(head: &Parts, headers: &http::HeaderMap) {
    #[cfg(feature = "tracing")]
    if tracing::enabled!(tracing::Level::DEBUG)
        && let Some(unit) = super::hints::ignored_unit(headers)
    {
        request_event!(
            Levels::DEBUG,
            head,
            unit = unit,
            "not following a quota the server counts in another unit than requests"
        );
    }
}

/// A request is held for its partition's gate or pacing.
#[inline]
pub(crate) fn holding(level: Level, head: &Parts, attempt: u32, wait: Duration) {
    request_event!(
        level,
        head,
        attempt = attempt,
        wait_ms = wait.as_millis() as u64,
        "holding the request for the partition's gate or pacing"
    );
    metrics::held(wait);
}

/// A request is not sent: what the server asked for is longer than it may wait.
#[inline]
pub(crate) fn not_sending(
    level: Level,
    head: &Parts,
    attempts: u32,
    status: Option<StatusCode>,
    retry_after: Option<Duration>,
    reason: StopReason,
) {
    request_event!(
        level,
        head,
        attempts = attempts,
        status = status.map(|s| s.as_u16()),
        retry_after_ms = retry_after.map(|d| d.as_millis() as u64),
        reason = ?reason,
        "not sending: the server asked clients to wait longer than this request may"
    );
    metrics::request(metrics::failure_outcome(false, reason));
}

/// A retry after a response, after `wait`.
#[inline]
pub(crate) fn retrying_after_response<R>(
    level: Level,
    head: &Parts,
    attempts: u32,
    res: &Response<R>,
    hint: Option<Duration>,
    wait: Waiting,
) {
    request_event!(
        level,
        head,
        attempt = attempts,
        http.request.resend_count = attempts,
        status = res.status().as_u16(),
        code = code(res),
        hint_ms = hint.map(|h| h.as_millis() as u64),
        wait_ms = wait.length().as_millis() as u64,
        "retrying after a response"
    );
    metrics::retry_after_response(res.status(), wait.length());
}

/// A retry after a failed attempt, after `wait`.
#[inline]
pub(crate) fn retrying_after_failure(
    level: Level,
    head: &Parts,
    attempts: u32,
    failure: Failure,
    wait: Waiting,
) {
    request_event!(
        level,
        head,
        attempt = attempts,
        http.request.resend_count = attempts,
        failure = ?failure,
        wait_ms = wait.length().as_millis() as u64,
        "retrying after a failed attempt"
    );
    metrics::retry_after_failure(failure, wait.length());
}

/// The response is returned: final (DEBUG), or the layer stopped retrying (`give_up`).
#[inline]
pub(crate) fn returning<R>(
    give_up: Level,
    head: &Parts,
    attempts: u32,
    res: &Response<R>,
    last_hint: Option<Duration>,
    reason: StopReason,
) {
    let level = level(give_up, reason == StopReason::Final);
    request_event!(
        level,
        head,
        attempts = attempts,
        status = res.status().as_u16(),
        code = code(res),
        hint_ms = last_hint.map(|h| h.as_millis() as u64),
        reason = ?reason,
        "returning the response"
    );
    metrics::request(metrics::response_outcome(res.status(), reason));
}

/// The last attempt's failure is returned (`timed_out`: it was the attempt's timeout).
#[inline]
pub(crate) fn giving_up(
    give_up: Level,
    head: &Parts,
    attempts: u32,
    failure: Failure,
    timed_out: bool,
    reason: StopReason,
) {
    let level = level(give_up, reason == StopReason::Final && attempts == 1);
    request_event!(
        level,
        head,
        attempts = attempts,
        failure = ?failure,
        reason = ?reason,
        "giving up after a failed attempt"
    );
    metrics::request(metrics::failure_outcome(timed_out, reason));
}

/// The inner service failed its readiness: returned as it is.
#[inline]
pub(crate) fn not_ready() {
    metrics::request("transport_error");
}

/// What a store changed under its lock, reported once the lock is released: no recorder
/// (the user's code) runs under the crate's locks.
#[derive(Debug, Default)]
pub(crate) struct Changed {
    /// The partition's paced rate, when it was set or a slot taken.
    pub(crate) paced: Option<f64>,
    pub(crate) probe: bool,
    pub(crate) closed: Option<StatusCode>,
    pub(crate) budget_refused: bool,
    /// Partitions whose pacing ended.
    pub(crate) unpaced: Vec<Partition>,
}

impl Changed {
    /// Reports it, for `partition` (the one the store was asked about).
    #[inline]
    pub(crate) fn report(self, partition: Option<&Partition>) {
        let nothing = self.paced.is_none()
            && !self.probe
            && self.closed.is_none()
            && !self.budget_refused
            && self.unpaced.is_empty();
        if nothing {
            return;
        }
        if let (Some(rate), Some(partition)) = (self.paced, partition) {
            metrics::paced_rate(partition, rate);
        }
        if self.probe {
            metrics::probe();
        }
        if let Some(status) = self.closed {
            metrics::gate_closed(status);
        }
        if self.budget_refused {
            metrics::budget_refused();
        }
        for partition in &self.unpaced {
            metrics::paced_rate(partition, 0.0);
        }
    }
}
