//! A whole header map: `retry-after-ms`, `Retry-After`, `RateLimit`, `RateLimit-Reset`,
//! `X-RateLimit-Reset`, vendor reset headers in seconds, milliseconds and epoch seconds, and
//! the verdict headers, in any number and order. Never panics; `retry-after-ms` wins whenever
//! one of its lines parses on its own, then `Retry-After`, each time the largest of its lines;
//! a verdict is given only when every verdict line says the same.
#![no_main]

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_infoplug::fuzzing::{retry_after, retry_after_ms, should_retry, wait_hint};

const NAMES: [&str; 11] = [
    "retry-after",
    "retry-after-ms",
    "ratelimit",
    "ratelimit-reset",
    "x-ratelimit-reset",
    "ratelimit-policy",
    "x-reset",
    "x-reset-ms",
    "x-reset-at",
    "x-should-retry",
    "stripe-should-retry",
];

fuzz_target!(|input: (u64, Vec<(u8, &[u8])>)| {
    let (now_secs, fields) = input;
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now_secs % 253_402_300_800);
    let mut headers = HeaderMap::new();
    for (name, value) in fields {
        let Ok(value) = HeaderValue::from_bytes(value) else {
            continue;
        };
        let name = NAMES
            .get(usize::from(name) % NAMES.len())
            .copied()
            .unwrap_or("ratelimit");
        headers.append(HeaderName::from_static(name), value);
    }
    let hint = wait_hint(&headers, now);
    let largest_ms = headers
        .get_all("retry-after-ms")
        .iter()
        .filter_map(retry_after_ms)
        .max();
    let largest = headers
        .get_all("retry-after")
        .iter()
        .filter_map(|v| retry_after(v, now))
        .max();
    if largest_ms.is_some() {
        assert_eq!(hint, largest_ms);
    } else if largest.is_some() {
        assert_eq!(hint, largest);
    }
    let lines: Vec<_> = ["x-should-retry", "stripe-should-retry"]
        .iter()
        .flat_map(|name| headers.get_all(*name))
        .map(|v| v.to_str().ok().map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    if let Some(verdict) = should_retry(&headers) {
        let said = if verdict { "true" } else { "false" };
        assert!(lines.iter().all(|l| l.as_deref() == Some(said)), "{lines:?}");
    }
});
