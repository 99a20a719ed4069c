use std::fmt;
use std::time::Duration;

use super::RetryInfo;

/// Why a request through the retry layer produced no response.
///
/// Responses of any status are returned as `Ok` (with a [`RetryInfo`] in their extensions);
/// this error is for requests that ended without one.
///
/// ```
/// use std::io;
/// use http::{Request, Response};
/// use tower::{Layer, ServiceExt, service_fn};
/// use tower_infoplug::{RetryError, RetryLayer};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // A server that refuses every connection.
/// let transport = service_fn(|_req: Request<_>| async {
///     Err::<Response<String>, _>(io::Error::from(io::ErrorKind::ConnectionRefused))
/// });
/// let client = RetryLayer::new().layer(transport);
/// match client.oneshot(Request::new(String::new())).await {
///     Err(RetryError::Transport { error, info }) => {
///         assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
///         assert_eq!(info.attempts(), 3); // never sent: retried up to max_attempts
///     }
///     other => panic!("{other:?}"),
/// }
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum RetryError<E> {
    /// The last attempt failed with the transport's error (or the inner service was not
    /// ready).
    Transport {
        /// The transport's error.
        error: E,
        /// What the layer did before giving up.
        info: RetryInfo,
    },
    /// The last attempt took longer than the layer's attempt timeout.
    TimedOut {
        /// What the layer did before giving up.
        info: RetryInfo,
    },
    /// The server asked clients of this origin and credential to wait (a 429 or 503 with a
    /// hint shut the shared gate, or the pacing after a 429 has no earlier slot) longer than
    /// `max_retry_after`, or past the request's deadline, so the request was not sent
    /// (again). [`retry_after`](Self::retry_after) says how long it asked for. Also the
    /// error of a request the partition's circuit breaker did not send
    /// ([`StopReason::CircuitOpen`](super::StopReason::CircuitOpen)): `retry_after` is then
    /// the time to the breaker's next probe.
    CoolingDown {
        /// The status that shut the gate or started the pacing (429 or 503); for a tripped
        /// breaker, the last failure's (503 for a failure without an answer).
        status: http::StatusCode,
        /// What the layer did before giving up.
        info: RetryInfo,
    },
}

impl<E> RetryError<E> {
    /// What the layer did before giving up.
    pub fn info(&self) -> &RetryInfo {
        match self {
            Self::Transport { info, .. }
            | Self::TimedOut { info }
            | Self::CoolingDown { info, .. } => info,
        }
    }

    /// How long the server asked to wait, when that is why the request was not sent: for a
    /// gateway's `Retry-After`, say.
    pub fn retry_after(&self) -> Option<Duration> {
        self.info().retry_after()
    }

    /// The transport's error, if that is what ended the request.
    pub fn into_transport(self) -> Option<E> {
        match self {
            Self::Transport { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attempts = self.info().attempts();
        match self {
            Self::Transport { error, .. } => {
                write!(f, "request failed after {attempts} attempt(s): {error}")
            }
            Self::TimedOut { .. } => write!(f, "attempt {attempts} timed out"),
            Self::CoolingDown { status, info } => {
                write!(
                    f,
                    "the API answered {} and asked clients to wait",
                    status.as_u16()
                )?;
                if let Some(wait) = info.retry_after() {
                    write!(f, " {:.1} s", wait.as_secs_f64())?;
                }
                f.write_str(", longer than this request may wait; not sent")
            }
        }
    }
}

impl<E> std::error::Error for RetryError<E>
where
    E: std::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Transport { error, .. } => Some(error),
            _ => None,
        }
    }
}
