//! Entry points for the cargo-fuzz targets in `fuzz/`. Built only with `--cfg fuzzing`, which
//! cargo-fuzz sets; not part of the API.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};

/// `Retry-After` alone, read against `now`.
pub fn retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    crate::retry::hints::retry_after(value, now)
}

/// `retry-after-ms` alone.
pub fn retry_after_ms(value: &HeaderValue) -> Option<Duration> {
    crate::retry::hints::retry_after_ms(value)
}

/// The wait hint of a header map with every hint field enabled.
pub fn wait_hint(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let fields = crate::retry::hints::HintFields {
        retry_after_ms: true,
        rate_limit: true,
        x_rate_limit_reset: true,
        resets: &[
            ("x-reset", crate::retry::ResetFormat::Seconds),
            ("x-reset-ms", crate::retry::ResetFormat::Milliseconds),
            ("x-reset-at", crate::retry::ResetFormat::EpochSeconds),
        ],
    };
    crate::retry::hints::wait_hint(headers, fields, now)
}

/// The server's verdict on retrying, from `x-should-retry` and `stripe-should-retry`.
pub fn should_retry(headers: &HeaderMap) -> Option<bool> {
    crate::retry::hints::should_retry(headers, &["stripe-should-retry"])
}
