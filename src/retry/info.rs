use std::time::Duration;

/// What the retry layer did for a request: in the extensions of a final response when anything
/// happened beyond one plain attempt (a retry, a wait, a hint, an early stop), and in every
/// [`RetryError`](super::RetryError). Read it with
/// [`ResponseExt::retry_info`](crate::ResponseExt::retry_info), which gives the one-attempt
/// record when the extension is absent.
///
/// ```
/// use std::time::Duration;
/// use http::{Request, Response};
/// use tower::{Layer, ServiceExt, service_fn};
/// use tower_infoplug::{ResponseExt, RetryLayer, StopReason};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Always a 429 asking for an hour: more than the layer will wait.
/// let transport = service_fn(|_req: Request<_>| async {
///     Response::builder().status(429).header("retry-after", "3600").body(String::new())
/// });
/// let res = RetryLayer::new().layer(transport).oneshot(Request::new(String::new())).await?;
/// let info = res.retry_info();
/// assert_eq!(info.attempts(), 1);
/// assert_eq!(info.stop_reason(), StopReason::HintTooLong);
/// assert_eq!(info.last_hint(), Some(Duration::from_secs(3600)));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryInfo {
    pub(super) attempts: u32,
    pub(super) waited: Duration,
    pub(super) last_hint: Option<Duration>,
    pub(super) retry_after: Option<Duration>,
    pub(super) stop: StopReason,
}

/// Why the retry layer returned this outcome instead of trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The outcome was final: a success, or not worth retrying by the policy.
    Final,
    /// `max_attempts` were made.
    AttemptsExhausted,
    /// The shared retry budget had no retry left.
    BudgetExhausted,
    /// The server asked for a wait longer than `max_retry_after`; see
    /// [`RetryInfo::last_hint`].
    HintTooLong,
    /// The next wait would have crossed the request's deadline.
    DeadlineTooClose,
    /// The server asked clients of this origin and credential to wait (a shared gate, or
    /// the pacing after a 429) for longer than `max_retry_after` or past the deadline; see
    /// [`RetryInfo::retry_after`].
    CoolingDown,
    /// The request body was larger than the replay buffer (or its stream failed), so it
    /// cannot be sent again.
    BodyNotReplayable,
    /// Requests of this origin and credential failed several times in a row without the
    /// server saying why or for how long (5xx without a hint, transport errors, timeouts),
    /// and the partition's circuit breaker tripped: nothing was sent. One probe goes after
    /// each probe interval; [`RetryInfo::retry_after`] says when the next may, and the
    /// error's status is the last failure's (503 for a failure without an answer).
    CircuitOpen,
}

impl RetryInfo {
    /// One attempt, no wait, no hint, final: what a response without the extension had.
    pub(crate) const ONE_ATTEMPT: Self = Self {
        attempts: 1,
        waited: Duration::ZERO,
        last_hint: None,
        retry_after: None,
        stop: StopReason::Final,
    };

    /// Whether anything happened beyond one plain attempt, so that the response carries it.
    pub(super) fn is_eventful(&self) -> bool {
        *self != Self::ONE_ATTEMPT
    }

    /// How many attempts were sent, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// How long the layer waited in total: backoff, hints and cooldowns.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// The last wait hint the server gave, whether or not it was slept on.
    pub fn last_hint(&self) -> Option<Duration> {
        self.last_hint
    }

    /// How long the server asked to wait, when that is why the layer stopped
    /// ([`HintTooLong`](StopReason::HintTooLong): this response's hint;
    /// [`CoolingDown`](StopReason::CoolingDown): what was left of the wait a shared gate or
    /// the pacing asked for).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Why there was no further attempt.
    pub fn stop_reason(&self) -> StopReason {
        self.stop
    }
}
