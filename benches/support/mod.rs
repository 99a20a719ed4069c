//! Helpers shared by the benchmark (`benches/stack.rs`) and the allocation counts
//! (`tests/allocations.rs`), so both measure the same rows.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::Full;
use tower_http::set_header::SetRequestHeaderLayer;
use tower_infoplug::ApiKey;
use tower_infoplug::retry::Jitter;

pub const KEY: &str = "ip_bench_0123456789abcdef";
pub const BASE: &str = "https://api.infoplug.io";
pub const URI: &str = "https://api.infoplug.io/v1/profile";
pub const ERROR_BODY: &[u8] =
    br#"{"message":"invalid_parameter","parameter":"linkedin_url","details":"Missing or invalid linkedin_url"}"#;

/// Polls a future that is ready at once; the in-memory transports never wait.
pub fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the in-memory transport is always ready"),
    }
}

pub fn key() -> ApiKey {
    ApiKey::new(KEY).unwrap()
}

/// tower-http's nearest equivalent of `AuthLayer`: the key as a sensitive header.
pub fn set_header() -> SetRequestHeaderLayer<HeaderValue> {
    let mut sensitive = HeaderValue::from_static(KEY);
    sensitive.set_sensitive(true);
    SetRequestHeaderLayer::overriding(HeaderName::from_static("x-infoplug-api-key"), sensitive)
}

/// tower's own retry with the cheapest useful policy: clone the request, retry 429 and 5xx at
/// once.
#[derive(Clone)]
pub struct CloneOnly;

impl<Res, E> tower::retry::Policy<Request<Full<Bytes>>, Response<Res>, E> for CloneOnly {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<Full<Bytes>>,
        result: &mut Result<Response<Res>, E>,
    ) -> Option<Self::Future> {
        match result {
            Ok(res) if !res.status().is_server_error() && res.status() != 429 => None,
            _ => Some(std::future::ready(())),
        }
    }

    fn clone_request(&mut self, req: &Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> {
        Some(req.clone())
    }
}

/// No jitter: backoff waits are zero, so retries measure the layer, not the clock.
pub struct NoJitter;

impl Jitter for NoJitter {
    fn sample(&self) -> f64 {
        0.0
    }
}
