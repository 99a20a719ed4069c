//! Counters, a histogram and a gauge through the `metrics` facade (feature `metrics`); every
//! function is an empty inline one without it. Labels are literals wherever they can be, so
//! the facade keeps their keys in statics and counting allocates nothing (the allocation test
//! runs with every feature).
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `infoplug_requests_total` | counter | `outcome`: `ok`, `error_response`, `transport_error`, `timed_out`, or the stop reason (`attempts_exhausted`, `budget_exhausted`, `hint_too_long`, `deadline_too_close`, `cooling_down`, `body_not_replayable`, `circuit_open`) |
//! | `infoplug_retries_total` | counter | `reason`: the status retried (`429`, `500`, `502`, `503`, `504`, else `4xx` or `5xx`) or the failure (`never_sent`, `response_phase`, `timed_out`) |
//! | `infoplug_gate_closures_total` | counter | `status`: `429` or `503` |
//! | `infoplug_probes_total` | counter | |
//! | `infoplug_budget_refusals_total` | counter | |
//! | `infoplug_wait_seconds` | histogram | `cause`: `retry` (a wait before a retry), `hold` (a request held by a gate or the pacing) |
//! | `http.client.request.duration` | histogram (seconds) | per attempt, from sending to its answer's head or its failure: `http.request.method` (`GET`, `HEAD`, `POST`, `PUT`, `DELETE`, `PATCH`, `OPTIONS`, else `_OTHER`), `http.response.status_code` (when answered), `error.type` (the status from 400 on, or the failure: `never_sent`, `response_phase`, `timed_out`, `unsendable`) |
//! | `infoplug_paced_rate` | gauge | `partition`: the origin and a short keyed hash of the credential (never the key); 0 when pacing ends |

#![cfg_attr(not(feature = "metrics"), allow(unused_variables))]

use std::time::Duration;

use http::StatusCode;

use super::StopReason;
use super::policy::Failure;
use super::state::Partition;

/// Calls `$metric!($name, $key => <literal>)` for the literal that equals `$value`: with
/// literal labels the facade keeps the key in a static, so counting allocates nothing.
#[cfg(feature = "metrics")]
macro_rules! labelled {
    ($metric:ident, $name:literal, $key:literal, $value:expr, [$($label:literal),+ $(,)?]) => {
        match $value {
            $($label => Some(metrics::$metric!($name, $key => $label)),)+
            _ => None,
        }
    };
}

/// The request ended: `outcome` as the table above names it.
#[inline]
pub(crate) fn request(outcome: &'static str) {
    #[cfg(feature = "metrics")]
    if let Some(counter) = labelled!(
        counter,
        "infoplug_requests_total",
        "outcome",
        outcome,
        [
            "ok",
            "error_response",
            "transport_error",
            "timed_out",
            "attempts_exhausted",
            "budget_exhausted",
            "hint_too_long",
            "deadline_too_close",
            "cooling_down",
            "body_not_replayable",
            "circuit_open",
        ]
    ) {
        counter.increment(1);
    }
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
        StopReason::CircuitOpen => "circuit_open",
    }
}

/// A status as a label: the ones the decision table retries by name, any other by class.
#[cfg(feature = "metrics")]
fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(feature = "metrics")]
fn retried(reason: &'static str) {
    if let Some(counter) = labelled!(
        counter,
        "infoplug_retries_total",
        "reason",
        reason,
        [
            "429",
            "500",
            "502",
            "503",
            "504",
            "4xx",
            "5xx",
            "never_sent",
            "response_phase",
            "timed_out",
        ]
    ) {
        counter.increment(1);
    }
}

/// A retry was scheduled after a response with `status`, to go after `wait`.
#[inline]
pub(crate) fn retry_after_response(status: StatusCode, wait: Duration) {
    #[cfg(feature = "metrics")]
    {
        retried(status_label(status));
        metrics::histogram!("infoplug_wait_seconds", "cause" => "retry").record(wait.as_secs_f64());
    }
}

/// A retry was scheduled after a failed attempt, to go after `wait`.
#[inline]
pub(crate) fn retry_after_failure(failure: Failure, wait: Duration) {
    #[cfg(feature = "metrics")]
    {
        retried(failure.label());
        metrics::histogram!("infoplug_wait_seconds", "cause" => "retry").record(wait.as_secs_f64());
    }
}

/// A request is held by its partition's gate or pacing for `wait`.
#[inline]
pub(crate) fn held(wait: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!("infoplug_wait_seconds", "cause" => "hold").record(wait.as_secs_f64());
}

/// A 429 or 503 shut (or kept shut) a partition's gate.
#[inline]
pub(crate) fn gate_closed(status: StatusCode) {
    #[cfg(feature = "metrics")]
    if let Some(counter) = labelled!(
        counter,
        "infoplug_gate_closures_total",
        "status",
        status_label(status),
        ["429", "503"]
    ) {
        counter.increment(1);
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

/// The partition's paced rate, in requests a second (0: no longer paced). Only while a
/// partition is paced; its label is built then.
#[inline]
pub(crate) fn paced_rate(partition: &Partition, rate: f64) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("infoplug_paced_rate", "partition" => partition.label()).set(rate);
}

/// The attempt's duration histogram: the OpenTelemetry HTTP client's, per attempt.
#[cfg(feature = "metrics")]
mod duration {
    use std::borrow::Cow;
    use std::sync::OnceLock;

    use http::{Method, StatusCode};
    use metrics::{Key, Label, Level, Metadata};

    use super::Failure;

    const NAME: &str = "http.client.request.duration";
    const METHODS: [&str; 8] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "_OTHER",
    ];
    /// The statuses whose keys are kept once made: any other is labelled as well, with a
    /// key made for each record.
    const STATUSES: [&str; 31] = [
        "200", "201", "202", "204", "206", "301", "302", "303", "304", "307", "308", "400", "401",
        "402", "403", "404", "405", "408", "409", "410", "412", "413", "415", "422", "425", "429",
        "500", "501", "502", "503", "504",
    ];
    const FAILURES: [Failure; 4] = [
        Failure::NeverSent,
        Failure::ResponsePhase,
        Failure::TimedOut,
        Failure::Unsendable,
    ];
    const OUTCOMES: usize = STATUSES.len() + FAILURES.len();
    /// One key per method and outcome, made the first time it is recorded (a label list on
    /// the heap, once per process): then recording allocates nothing.
    static KEYS: [OnceLock<Key>; METHODS.len() * OUTCOMES] =
        [const { OnceLock::new() }; METHODS.len() * OUTCOMES];
    static METADATA: Metadata<'static> =
        Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

    /// The method's row in the key table, and its label.
    fn method_of(method: &Method) -> (usize, &'static str) {
        let row = match *method {
            Method::GET => 0,
            Method::HEAD => 1,
            Method::POST => 2,
            Method::PUT => 3,
            Method::DELETE => 4,
            Method::PATCH => 5,
            Method::OPTIONS => 6,
            _ => 7,
        };
        (row, METHODS.get(row).copied().unwrap_or("_OTHER"))
    }

    fn key(method: &'static str, outcome: Result<&str, Failure>) -> Key {
        let mut labels = vec![Label::from_static_parts("http.request.method", method)];
        match outcome {
            Ok(status) => {
                labels.push(Label::new("http.response.status_code", status.to_owned()));
                if status.as_bytes().first().is_some_and(|d| *d >= b'4') {
                    labels.push(Label::new("error.type", status.to_owned()));
                }
            }
            Err(failure) => labels.push(Label::from_static_parts("error.type", failure.label())),
        }
        Key::from_parts(NAME, labels)
    }

    pub(super) fn record(method: &Method, outcome: Result<StatusCode, Failure>, seconds: f64) {
        let (row, method) = method_of(method);
        let column = match outcome {
            Ok(status) => STATUSES.iter().position(|s| *s == status.as_str()),
            Err(failure) => FAILURES
                .iter()
                .position(|f| *f == failure)
                .map(|i| STATUSES.len() + i),
        };
        let kept = column.and_then(|c| Some((STATUSES.get(c), KEYS.get(row * OUTCOMES + c)?)));
        let key = match kept {
            // A kept status's label is its literal; a failure's, its name.
            Some((status, cell)) => Cow::Borrowed(
                cell.get_or_init(|| key(method, outcome.map(|_| status.copied().unwrap_or("")))),
            ),
            None => Cow::Owned(key(
                method,
                outcome.as_ref().map(StatusCode::as_str).map_err(|f| *f),
            )),
        };
        metrics::with_recorder(|recorder| recorder.register_histogram(&key, &METADATA))
            .record(seconds);
    }
}

/// An attempt sent at `sent_at` ended now: answered with a status, or failed.
#[cfg(feature = "metrics")]
#[inline]
pub(crate) fn attempt(
    method: &http::Method,
    outcome: Result<StatusCode, Failure>,
    sent_at: Option<tokio::time::Instant>,
) {
    if let Some(sent_at) = sent_at {
        duration::record(method, outcome, sent_at.elapsed().as_secs_f64());
    }
}
