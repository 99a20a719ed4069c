//! Opt-in `Idempotency-Key`s: generated once per request, carried by every attempt.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Method};

pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Gives a POST or PATCH without an `Idempotency-Key` a fresh one, so that every attempt of it
/// carries the same key (and the decision table may retry it). Other methods, and a request
/// with a key of the caller's, are left alone.
pub(crate) fn ensure_key(method: &Method, headers: &mut HeaderMap) {
    if matches!(*method, Method::POST | Method::PATCH) && !headers.contains_key(IDEMPOTENCY_KEY) {
        headers.insert(IDEMPOTENCY_KEY, fresh());
    }
}

/// A random version-4 UUID: 122 bits from the standard library's randomly keyed hasher (its
/// keys are seeded from the operating system), fed a process-wide counter so no two calls
/// agree. Unique, not secret.
fn fresh() -> HeaderValue {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let half = |salt: u64| {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(n);
        hasher.write_u64(salt);
        hasher.finish()
    };
    let bits = (u128::from(half(1)) << 64) | u128::from(half(2));
    // Version 4, variant 10.
    let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let text = format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        bits >> 96,
        (bits >> 80) & 0xffff,
        (bits >> 64) & 0xffff,
        (bits >> 48) & 0xffff,
        bits & 0xffff_ffff_ffff
    );
    // Hex digits and dashes are always a valid header value.
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: Method, key: Option<&str>) -> http::request::Parts {
        let mut req = http::Request::builder().method(method);
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn post_and_patch_get_a_fresh_uuid_others_and_callers_keys_are_left_alone() {
        let mut seen = std::collections::HashSet::new();
        for method in [Method::POST, Method::PATCH] {
            for _ in 0..100 {
                let mut head = head(method.clone(), None);
                ensure_key(&head.method, &mut head.headers);
                let key = head.headers[IDEMPOTENCY_KEY].to_str().unwrap().to_owned();
                let groups: Vec<_> = key.split('-').map(str::len).collect();
                assert_eq!(groups, [8, 4, 4, 4, 12], "{key}");
                assert_eq!(&key[14..15], "4", "version 4: {key}");
                assert!(
                    matches!(&key[19..20], "8" | "9" | "a" | "b"),
                    "variant: {key}"
                );
                assert!(seen.insert(key), "a key came twice");
            }
        }
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            let mut head = head(method, None);
            ensure_key(&head.method, &mut head.headers);
            assert!(!head.headers.contains_key(IDEMPOTENCY_KEY));
        }
        let mut own = head(Method::POST, Some("order-42"));
        ensure_key(&own.method, &mut own.headers);
        assert_eq!(own.headers[IDEMPOTENCY_KEY], "order-42");
    }
}
