//! Time limits: a request's own deadline, and instant arithmetic that cannot overflow.

use std::time::Duration;

use tokio::time::Instant;

/// A request's own deadline, as a request extension; the retry layer starts no wait that would
/// cross it (and the layer's own [`deadline`](super::RetryBuilder::deadline), if earlier, wins).
///
/// ```
/// use std::time::Duration;
/// use tower_infoplug::retry::Deadline;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(Deadline::after(Duration::from_secs(5)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub(super) Instant);

impl Deadline {
    /// At `instant` (Tokio's clock).
    pub fn at(instant: Instant) -> Self {
        Self(instant)
    }

    /// `duration` from now.
    pub fn after(duration: Duration) -> Self {
        Self(later(Instant::now(), duration))
    }

    /// When it is.
    pub fn instant(&self) -> Instant {
        self.0
    }
}

/// `at + after`, or a point a century away when that would overflow: durations come from users
/// (`deadline(Duration::MAX)`) and servers (`Retry-After: 999999999999`), and adding them to an
/// `Instant` must not panic.
pub(crate) fn later(at: Instant, after: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    at.checked_add(after)
        .or_else(|| at.checked_add(CENTURY))
        .unwrap_or(at)
}
