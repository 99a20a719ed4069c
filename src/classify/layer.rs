use std::time::Duration;

use tower_layer::Layer;

use super::Classify;
use crate::ConfigError;

/// The default for [`ClassifyBuilder::body_limit`]: 64 KiB.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// The default for [`ClassifyBuilder::read_timeout`]: 2 seconds.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest [`ClassifyBuilder::body_limit`] accepted: 16 MiB.
pub const MAX_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Validated settings, copied into every service and future.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Settings {
    pub(super) limit: usize,
    pub(super) read_timeout: Option<Duration>,
}

/// Classifies 4xx/5xx responses into an [`ApiError`](crate::ApiError) extension. See the
/// [module docs](crate::classify).
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::Full;
/// use tower::{Layer, ServiceExt, service_fn};
/// use tower_infoplug::{ClassifyLayer, ErrorCode, ResponseExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let transport = service_fn(|_: Request<()>| async {
///     Response::builder()
///         .status(402)
///         .body(Full::new(Bytes::from_static(br#"{"message":"insufficient_credits"}"#)))
/// });
/// let res = ClassifyLayer::new().layer(transport).oneshot(Request::new(())).await?;
/// let err = res.api_error().expect("a 402 is classified");
/// assert_eq!(err.code(), &ErrorCode::InsufficientCredits);
/// assert!(!err.is_retryable());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ClassifyLayer {
    settings: Settings,
}

impl ClassifyLayer {
    /// Reads at most 64 KiB of an error body within 2 seconds.
    pub fn new() -> Self {
        Self {
            settings: Settings {
                limit: DEFAULT_BODY_LIMIT,
                read_timeout: Some(DEFAULT_READ_TIMEOUT),
            },
        }
    }

    /// Other limits, checked when built.
    pub fn builder() -> ClassifyBuilder {
        ClassifyBuilder {
            settings: Self::new().settings,
        }
    }

    /// How many bytes of an error body are read at most.
    pub fn body_limit(&self) -> usize {
        self.settings.limit
    }

    /// How long reading an error body may take at most, if bounded.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.settings.read_timeout
    }
}

impl Default for ClassifyLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for ClassifyLayer {
    type Service = Classify<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Classify::from_settings(inner, self.settings)
    }
}

/// Builds a [`ClassifyLayer`] with other limits.
///
/// ```
/// use std::time::Duration;
/// use tower_infoplug::ClassifyLayer;
///
/// let layer = ClassifyLayer::builder()
///     .body_limit(8 * 1024)
///     .read_timeout(Duration::from_millis(500))
///     .build()?;
/// assert_eq!(layer.body_limit(), 8192);
///
/// assert!(ClassifyLayer::builder().body_limit(0).build().is_err());
/// # Ok::<(), tower_infoplug::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "call `build` to get the layer"]
pub struct ClassifyBuilder {
    settings: Settings,
}

impl ClassifyBuilder {
    /// How many bytes of an error body to read at most (1 byte to 16 MiB; default 64 KiB).
    ///
    /// A body that announces more (by `Content-Length`) is not read at all; one that turns out
    /// longer stops being read once past the limit. Either way it is reported as
    /// [`BodyIssue::TooLarge`](crate::BodyIssue::TooLarge) and passed on whole.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.settings.limit = bytes;
        self
    }

    /// How long reading an error body may take in total (default 2 s). Past it the body is
    /// reported as [`BodyIssue::TimedOut`](crate::BodyIssue::TimedOut) and passed on with what
    /// was read so far followed by the rest.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.settings.read_timeout = Some(timeout);
        self
    }

    /// Reads error bodies without a deadline (the body limit still applies). Only for
    /// transports that bound body time themselves.
    pub fn no_read_timeout(mut self) -> Self {
        self.settings.read_timeout = None;
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<ClassifyLayer, ConfigError> {
        if !(1..=MAX_BODY_LIMIT).contains(&self.settings.limit) {
            return Err(ConfigError::OutOfRange {
                setting: "body_limit",
                expected: format!("1 to {MAX_BODY_LIMIT} bytes"),
            });
        }
        if self.settings.read_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::OutOfRange {
                setting: "read_timeout",
                expected: "a positive duration (or `no_read_timeout`)".to_owned(),
            });
        }
        Ok(ClassifyLayer {
            settings: self.settings,
        })
    }
}
