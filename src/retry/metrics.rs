//! Counters, a histogram and a gauge through the `metrics` facade (feature `metrics`); every
//! function is an empty inline one without it.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `infoplug_requests_total` | counter | `outcome`: `ok`, `error_response`, `transport_error`, `timed_out`, or the stop reason (`attempts_exhausted`, `budget_exhausted`, `hint_too_long`, `deadline_too_close`, `cooling_down`, `body_not_replayable`) |
//! | `infoplug_retries_total` | counter | `reason`: the status retried (`429`, `503`, ...) or the failure (`never_sent`, `response_phase`, `timed_out`) |
//! | `infoplug_gate_closures_total` | counter | `status`: `429` or `503` |
//! | `infoplug_probes_total` | counter | |
//! | `infoplug_budget_refusals_total` | counter | |
//! | `infoplug_wait_seconds` | histogram | `cause`: `retry` (a wait before a retry), `hold` (a request held by a gate or the pacing) |
//! | `infoplug_paced_rate` | gauge | `partition`: the origin and a short keyed hash of the credential (never the key); 0 when pacing ends |

#![cfg_attr(not(feature = "metrics"), allow(unused_variables))]

use std::time::Duration;

use http::StatusCode;

use super::StopReason;
use super::policy::Failure;
use super::state::Partition;

/// The request ended: `outcome` as the table above names it.
#[inline]
pub(crate) fn request(outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("infoplug_requests_total", "outcome" => outcome).increment(1);
}

/// The outcome label of a final response.
pub(crate) fn response_outcome(status: StatusCode, reason: StopReason) -> &'static str {
    match reason {
        StopReason::Final if status.as_u16() < 400 => "ok",
        StopReason::Final => "error_response",
        other => stop_label(other),
    }
}

/// The outcome label of a request that ended without a response.
pub(crate) fn failure_outcome(timed_out: bool, reason: StopReason) -> &'static str {
    match reason {
        StopReason::Final if timed_out => "timed_out",
        StopReason::Final => "transport_error",
        other => stop_label(other),
    }
}

fn stop_label(reason: StopReason) -> &'static str {
    match reason {
        StopReason::Final => "final",
        StopReason::AttemptsExhausted => "attempts_exhausted",
        StopReason::BudgetExhausted => "budget_exhausted",
        StopReason::HintTooLong => "hint_too_long",
        StopReason::DeadlineTooClose => "deadline_too_close",
        StopReason::CoolingDown => "cooling_down",
        StopReason::BodyNotReplayable => "body_not_replayable",
    }
}

/// A retry was scheduled after a response with `status`, to go after `wait`.
#[inline]
pub(crate) fn retry_after_response(status: StatusCode, wait: Duration) {
    #[cfg(feature = "metrics")]
    {
        let reason = status.as_str().to_owned();
        metrics::counter!("infoplug_retries_total", "reason" => reason).increment(1);
        waited("retry", wait);
    }
}

/// A retry was scheduled after a failed attempt, to go after `wait`.
#[inline]
pub(crate) fn retry_after_failure(failure: Failure, wait: Duration) {
    #[cfg(feature = "metrics")]
    {
        let reason = match failure {
            Failure::NeverSent => "never_sent",
            Failure::ResponsePhase => "response_phase",
            Failure::TimedOut => "timed_out",
        };
        metrics::counter!("infoplug_retries_total", "reason" => reason).increment(1);
        waited("retry", wait);
    }
}

/// A request is held by its partition's gate or pacing for `wait`.
#[inline]
pub(crate) fn held(wait: Duration) {
    #[cfg(feature = "metrics")]
    waited("hold", wait);
}

#[cfg(feature = "metrics")]
fn waited(cause: &'static str, wait: Duration) {
    metrics::histogram!("infoplug_wait_seconds", "cause" => cause).record(wait.as_secs_f64());
}

/// A 429 or 503 shut (or kept shut) a partition's gate.
#[inline]
pub(crate) fn gate_closed(status: StatusCode) {
    #[cfg(feature = "metrics")]
    {
        let status = status.as_str().to_owned();
        metrics::counter!("infoplug_gate_closures_total", "status" => status).increment(1);
    }
}

/// A request went through a shut gate as its probe.
#[inline]
pub(crate) fn probe() {
    #[cfg(feature = "metrics")]
    metrics::counter!("infoplug_probes_total").increment(1);
}

/// The retry budget refused a retry.
#[inline]
pub(crate) fn budget_refused() {
    #[cfg(feature = "metrics")]
    metrics::counter!("infoplug_budget_refusals_total").increment(1);
}

/// The partition's paced rate, in requests a second (0: no longer paced).
#[inline]
pub(crate) fn paced_rate(partition: &Partition, rate: f64) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("infoplug_paced_rate", "partition" => partition.label()).set(rate);
}
