use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// What the server says is left of its rate limit, read from a response's `RateLimit` field
/// (the IETF draft's `"name";r=..;t=..`, or its earlier `limit=.., remaining=.., reset=..`),
/// its `RateLimit-Limit` / `-Remaining` / `-Reset` fields, or `X-RateLimit-Limit` /
/// `-Remaining` / `-Reset`, in that order of preference.
///
/// Read it with [`ResponseExt::rate_limit`](crate::ResponseExt::rate_limit); it is parsed
/// from the headers when asked for, so a response costs nothing until then. Of several
/// `RateLimit` policies, the one with the least left (and, on a tie, the latest reset) is the
/// one reported: it is the one that stops the next request.
///
/// ```
/// use http::Response;
/// use std::time::Duration;
/// use tower_infoplug::ResponseExt;
///
/// let res = Response::builder()
///     .header("ratelimit", r#""burst";r=3;t=2, "daily";r=900;t=3600"#)
///     .header("ratelimit-policy", r#""burst";q=100;w=1"#)
///     .body(())?;
/// let status = res.rate_limit().expect("the server sent one");
/// assert_eq!(status.remaining(), 3);
/// assert_eq!(status.reset(), Some(Duration::from_secs(2)));
/// assert_eq!(status.limit(), Some(100));
/// assert!(Response::new(()).rate_limit().is_none());
/// # Ok::<(), http::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitStatus {
    remaining: u64,
    reset: Option<Duration>,
    limit: Option<u64>,
}

impl RateLimitStatus {
    /// Requests left in the current window.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// How long until the window resets, from when the response was read, if the server said.
    pub fn reset(&self) -> Option<Duration> {
        self.reset
    }

    /// The window's quota, if the server said (`q=` of the matching `RateLimit-Policy`,
    /// `limit=`, `RateLimit-Limit` or `X-RateLimit-Limit`).
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Reads the status from a response's headers, against `now` for an `X-RateLimit-Reset`
    /// given in Unix seconds. `None` when no field names what is left.
    pub fn from_headers(headers: &HeaderMap, now: SystemTime) -> Option<Self> {
        super::hints::rate_limit_status(headers, now).map(|(remaining, reset, limit)| Self {
            remaining,
            reset,
            limit,
        })
    }
}
