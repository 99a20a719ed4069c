//! Helpers shared by the benchmark (`benches/stack.rs`) and the allocation counts
//! (`tests/allocations.rs`), so both measure the same rows.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use tower::Service;
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

/// The request every in-memory row sends.
pub fn request() -> Request<Full<Bytes>> {
    Request::get(URI).body(Full::new(Bytes::new())).unwrap()
}

/// One request through `svc`: ready, call, and (when `read`) the body read to its end.
pub fn send_one<S, B>(svc: &mut S, read: bool)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
    let res = now(svc.call(request())).unwrap();
    if read {
        black_box(now(res.into_body().collect()).unwrap());
    } else {
        black_box(res);
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
