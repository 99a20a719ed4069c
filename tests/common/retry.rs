//! Helpers for the tests of the retry layer.

use tower_infoplug::retry::{Jitter, RetryBuilder, RetryLayer};

/// Jitter pinned to one value, so waits are exact.
pub struct Fixed(pub f64);

impl Jitter for Fixed {
    fn sample(&self) -> f64 {
        self.0
    }
}

/// The defaults with the jitter pinned to 0, so every wait is exact (`RetryLayer::builder()`
/// draws random jitter, as in production).
pub fn exact() -> RetryBuilder {
    RetryLayer::builder().jitter(Fixed(0.0))
}

/// What the retry layer did for a final response.
pub fn info<B>(res: &http::Response<B>) -> tower_infoplug::RetryInfo {
    use tower_infoplug::ResponseExt;
    res.retry_info()
}
