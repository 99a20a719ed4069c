//! Per-request retry settings, carried by the request as an extension.

use std::time::Duration;

use super::MAX_ATTEMPTS;
use crate::ConfigError;

/// What one request may spend, when it differs from the layer's settings: put it in the
/// request's extensions (a shared client stays as it is). Each setting left unset keeps the
/// layer's. The layer reads it only when it plans the request (a retry, or a request its
/// partition's gate or pacing holds), so a request without it costs nothing more.
///
/// ```
/// use std::time::Duration;
/// use tower_infoplug::retry::RetryOverrides;
///
/// // This call may not be retried at all.
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(RetryOverrides::no_retry());
///
/// // This one is worth more attempts, and may wait longer for the server.
/// let worth_more = RetryOverrides::new()
///     .max_attempts(6)?
///     .max_retry_after(Duration::from_secs(300))?;
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(worth_more);
/// # Ok::<(), tower_infoplug::ConfigError>(())
/// ```
///
/// Its own deadline is a [`Deadline`](super::Deadline).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOverrides {
    pub(super) max_attempts: Option<u32>,
    pub(super) max_retry_after: Option<Duration>,
}

impl RetryOverrides {
    /// Nothing overridden.
    pub fn new() -> Self {
        Self::default()
    }

    /// One attempt: the request is never sent again, whatever its outcome.
    pub fn no_retry() -> Self {
        Self {
            max_attempts: Some(1),
            ..Self::default()
        }
    }

    /// At most `attempts` attempts for this request, from 1 to [`MAX_ATTEMPTS`]
    /// (as [`RetryBuilder::max_attempts`](super::RetryBuilder::max_attempts)).
    pub fn max_attempts(self, attempts: u32) -> Result<Self, ConfigError> {
        if !(1..=MAX_ATTEMPTS).contains(&attempts) {
            return Err(ConfigError::OutOfRange {
                setting: "max_attempts",
                expected: format!("1 to {MAX_ATTEMPTS}"),
            });
        }
        Ok(Self {
            max_attempts: Some(attempts),
            ..self
        })
    }

    /// The longest wait a server may ask of this request before it is returned instead
    /// (as [`RetryBuilder::max_retry_after`](super::RetryBuilder::max_retry_after)); positive.
    pub fn max_retry_after(self, wait: Duration) -> Result<Self, ConfigError> {
        if wait.is_zero() {
            return Err(ConfigError::OutOfRange {
                setting: "max_retry_after",
                expected: "a positive duration".to_owned(),
            });
        }
        Ok(Self {
            max_retry_after: Some(wait),
            ..self
        })
    }
}

/// Who takes the next pacing slot: put it in a request's extensions when some requests
/// matter more than others under one quota (default [`Priority::NORMAL`]).
///
/// While a partition is paced (a quota you configured, one the server announced, or a pace
/// learned from its 429s), requests wait for slots. Of the requests waiting, a retry takes
/// the next slot before any fresh request, then a higher priority before a lower, then the
/// one that came first; a request that ranks above others takes the earliest slot they hold,
/// and each of them moves one slot later. The pace itself does not change: a priority
/// decides who goes when, never how many. So that nothing starves, a request that others
/// passed over 32 times is passed no more.
///
/// Read only when a request is planned (a retry, or a paced or gated partition): a request
/// that nothing holds back costs nothing more. In a [`RedisFleet`](super::RedisFleet) the
/// order holds across the fleet's processes: the waiting requests are kept in Redis beside
/// the fleet's schedule.
///
/// ```
/// use tower_infoplug::retry::Priority;
///
/// // A nightly export yields to people waiting on a page.
/// let mut export = http::Request::new(());
/// export.extensions_mut().insert(Priority::BATCH);
///
/// // Or any level from 0 (lowest) to 255: higher goes first.
/// let mut page = http::Request::new(());
/// page.extensions_mut().insert(Priority::new(200));
/// assert!(Priority::new(200) > Priority::NORMAL);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(u8);

impl Priority {
    /// For work nobody waits on: it takes the slots the others leave.
    pub const BATCH: Self = Self(64);
    /// What a request without a priority has.
    pub const NORMAL: Self = Self(128);
    /// For a request someone waits on: before [`NORMAL`](Self::NORMAL) and
    /// [`BATCH`](Self::BATCH).
    pub const INTERACTIVE: Self = Self(192);

    /// A priority of `level`: higher goes first.
    pub const fn new(level: u8) -> Self {
        Self(level)
    }

    /// Its level.
    pub const fn level(self) -> u8 {
        self.0
    }
}

impl Default for Priority {
    fn default() -> Self {
        Self::NORMAL
    }
}
