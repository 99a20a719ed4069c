//! The error-body parser: any status, any `Content-Type`, any bytes. Never panics, and the
//! result can be shown (`Display`, `Debug`) without panicking either.
#![no_main]

use http::{HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower_infoplug::ApiError;

fuzz_target!(|input: (u16, Option<&[u8]>, &[u8])| {
    let (status, content_type, body) = input;
    let Ok(status) = StatusCode::from_u16(100 + status % 500) else {
        return;
    };
    let content_type = content_type.and_then(|c| HeaderValue::from_bytes(c).ok());
    let err = ApiError::from_body(status, content_type.as_ref(), body);
    assert_eq!(err.status(), status);
    let _ = (err.to_string(), format!("{err:?}"), err.is_retryable());
});
