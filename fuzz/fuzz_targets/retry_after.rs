//! `Retry-After` values: any bytes, any "now". Never panics; delta-seconds are read exactly;
//! a date is never read as a wait longer than the distance from "now" to the latest date
//! an HTTP-date can name.
#![no_main]

use std::time::{Duration, SystemTime};

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use tower_infoplug::fuzzing::retry_after;

fuzz_target!(|input: (u64, &[u8])| {
    let (now_secs, bytes) = input;
    let Ok(value) = HeaderValue::from_bytes(bytes) else {
        return;
    };
    // Any "now" a clock can report, from 1970 to the year 9999.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now_secs % 253_402_300_800);
    let hint = retry_after(&value, now);
    assert_eq!(hint, retry_after(&value, now), "not deterministic");
    if let Ok(text) = value.to_str() {
        let text = text.trim();
        if !text.is_empty() && text.len() <= 12 && text.bytes().all(|b| b.is_ascii_digit()) {
            assert_eq!(hint, text.parse().ok().map(Duration::from_secs));
        }
        if text.starts_with('-') || text.contains('.') && text.len() < 8 {
            assert_eq!(hint, None, "{text:?}");
        }
    }
});
