//! Helpers shared by the benchmark (`benches/stack.rs`) and the allocation counts
//! (`tests/allocations.rs`), so both measure the same rows.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, service_fn};
use tower_http::set_header::SetRequestHeaderLayer;
use tower_infoplug::ApiKey;
use tower_infoplug::retry::Jitter;

pub const KEY: &str = "ip_bench_0123456789abcdef";
pub const BASE: &str = "https://api.infoplug.io";
pub const URI: &str = "https://api.infoplug.io/v1/profile";

/// A body in static memory on a 64-byte boundary. Where the linker places a byte string moves
/// with any change to the binary, and the word-at-a-time UTF-8 and JSON scans of a body cost
/// a few instructions more or fewer with its alignment: aligned, counted rows compare code,
/// not placement.
macro_rules! aligned {
    ($bytes:expr) => {{
        #[repr(C, align(64))]
        struct Aligned<const N: usize>([u8; N]);
        const BYTES: &[u8] = $bytes;
        static ALIGNED: Aligned<{ BYTES.len() }> = Aligned(*$bytes);
        &ALIGNED.0
    }};
}

pub static ERROR_BODY: &[u8] = aligned!(
    br#"{"message":"invalid_parameter","parameter":"linkedin_url","details":"Missing or invalid linkedin_url"}"#
);

/// Polls a future whose transport never waits until it is ready. It may still yield (the
/// classifier does, every few dozen frames of a long error body), so it is polled again, a
/// bounded number of times.
pub fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
    panic!("the in-memory transport is always ready, and this future never was")
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

/// A transport answering `status` with `body`, for any request body.
pub fn transport<B>(
    status: u16,
    body: &'static [u8],
) -> impl Service<
    Request<B>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
> + Clone {
    service_fn(move |req: Request<B>| {
        black_box(&req);
        let mut res = Response::new(Full::new(Bytes::from_static(body)));
        *res.status_mut() = StatusCode::from_u16(status).unwrap();
        std::future::ready(Ok(res))
    })
}

pub fn ok<B>() -> impl Service<
    Request<B>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
> + Clone {
    transport(200, b"{\"data\":{}}")
}

/// A transport that answers 429 and 200 in turn.
pub fn flip<B>() -> impl Service<
    Request<B>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
> + Clone {
    let limited = Arc::new(AtomicBool::new(false));
    service_fn(move |req: Request<B>| {
        black_box(&req);
        let was = limited.fetch_xor(true, Ordering::Relaxed);
        let (status, body): (u16, &'static [u8]) = if was {
            (200, aligned!(b"{\"data\":{}}"))
        } else {
            (429, aligned!(br#"{"message":"rate_limit_exceeded"}"#))
        };
        let mut res = Response::new(Full::new(Bytes::from_static(body)));
        *res.status_mut() = StatusCode::from_u16(status).unwrap();
        std::future::ready(Ok(res))
    })
}

/// What a naive classifier finds in an error body: the contract's three fields, as `String`s.
#[derive(Debug, Clone)]
pub struct NaiveError {
    pub status: u16,
    pub message: Option<String>,
    pub parameter: Option<String>,
    pub details: Option<String>,
}

/// What people write by hand instead of `ClassifyLayer` (with `tower::util::AndThenLayer`):
/// collect a 4xx/5xx body whole, parse it with `serde_json`, store the fields in the
/// extensions, and hand on a `Full` body of the bytes. No limit, no deadline, no replay of
/// trailers or errors: the cheapest equivalent, for the cost ratios.
pub async fn naive_classify(
    res: Response<Full<Bytes>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if !(res.status().is_client_error() || res.status().is_server_error()) {
        return Ok(res);
    }
    let (mut parts, body) = res.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    parts.extensions.insert(NaiveError {
        status: parts.status.as_u16(),
        message: field("message"),
        parameter: field("parameter"),
        details: field("details"),
    });
    Ok(Response::from_parts(parts, Full::new(bytes)))
}

/// The hand-built equivalent of the whole stack over `inner`: `tower::retry` (clone-only
/// policy) over the naive classifier (`AndThen`, unboxed) over tower-http's
/// `SetRequestHeader`.
pub fn naive_stack<S>(
    inner: S,
) -> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible>
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone,
{
    ServiceBuilder::new()
        .layer(tower::retry::RetryLayer::new(CloneOnly))
        .layer(tower::util::AndThenLayer::new(naive_classify))
        .layer(set_header())
        .service(inner)
}

/// No jitter: backoff waits are zero, so retries measure the layer, not the clock.
pub struct NoJitter;

impl Jitter for NoJitter {
    fn sample(&self) -> f64 {
        0.0
    }
}
