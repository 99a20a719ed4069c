//! Smoke benchmark: what the layers cost on the success path over an in-memory transport,
//! next to the tower-http building block that does the nearest thing.
//!
//! ```text
//! cargo bench --bench stack --all-features
//! ```
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, ServiceBuilder, service_fn};
use tower_http::set_header::SetRequestHeaderLayer;
use tower_infoplug::{ApiKey, AuthLayer, ClassifyLayer, InfoPlugLayer, Origin};

/// Polls a future that is ready at once; the transport below never waits.
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the in-memory transport is always ready"),
    }
}

/// The floor: a transport that answers a small 200 at once, for any request body.
fn transport<B>() -> impl Service<
    Request<B>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
> + Clone {
    service_fn(|req: Request<B>| {
        black_box(&req);
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(
            b"{\"data\":{}}",
        )))))
    })
}

/// tower's own retry with the cheapest useful policy: clone the request, never retry a 2xx.
#[derive(Clone)]
struct CloneOnly;

impl<E> tower::retry::Policy<Request<Full<Bytes>>, Response<Full<Bytes>>, E> for CloneOnly {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<Full<Bytes>>,
        result: &mut Result<Response<Full<Bytes>>, E>,
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

fn bench_one<S>(c: &mut Criterion, name: &str, mut svc: S)
where
    S: Service<Request<Full<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    c.bench_function(name, |b| {
        b.iter(|| {
            let req = Request::get("https://api.infoplug.io/v1/profile")
                .body(Full::new(Bytes::new()))
                .unwrap();
            now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
            black_box(now(svc.call(req)).unwrap())
        });
    });
}

fn success_path(c: &mut Criterion) {
    let key = ApiKey::new("ip_bench_0123456789abcdef").unwrap();
    let origin = Origin::parse("https://api.infoplug.io").unwrap();
    let mut sensitive = HeaderValue::from_static("ip_bench_0123456789abcdef");
    sensitive.set_sensitive(true);

    bench_one(c, "bare transport", transport());
    bench_one(
        c,
        "tower-http SetRequestHeader",
        SetRequestHeaderLayer::overriding(HeaderName::from_static("x-infoplug-api-key"), sensitive)
            .layer(transport()),
    );
    bench_one(
        c,
        "AuthLayer",
        AuthLayer::new(key.clone()).layer(transport()),
    );
    bench_one(
        c,
        "AuthLayer scoped to origin",
        AuthLayer::new(key.clone())
            .for_origin(origin.clone())
            .layer(transport()),
    );
    bench_one(
        c,
        "ClassifyLayer (2xx)",
        ClassifyLayer::new().layer(transport()),
    );
    bench_one(
        c,
        "Classify + Auth",
        ServiceBuilder::new()
            .layer(ClassifyLayer::new())
            .layer(AuthLayer::new(key.clone()).for_origin(origin))
            .service(transport()),
    );
    bench_one(
        c,
        "tower::retry (clone-only policy)",
        tower::retry::RetryLayer::new(CloneOnly).layer(transport()),
    );
    let mut sensitive = HeaderValue::from_static("ip_bench_0123456789abcdef");
    sensitive.set_sensitive(true);
    bench_one(
        c,
        "tower::retry + SetRequestHeader",
        ServiceBuilder::new()
            .layer(tower::retry::RetryLayer::new(CloneOnly))
            .layer(SetRequestHeaderLayer::overriding(
                HeaderName::from_static("x-infoplug-api-key"),
                sensitive,
            ))
            .service(transport()),
    );
    bench_one(
        c,
        "RetryLayer",
        tower_infoplug::RetryLayer::new().layer(transport()),
    );
    bench_one(
        c,
        "InfoPlugLayer (whole stack)",
        InfoPlugLayer::new(key, "https://api.infoplug.io")
            .unwrap()
            .layer(transport()),
    );
}

criterion_group!(benches, success_path);
criterion_main!(benches);
