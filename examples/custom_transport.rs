//! The stack over transports that are not hyper: an in-memory recorder built with
//! `service_fn`, and reqwest through the crate's `ReqwestTransport` (feature `reqwest`).
//!
//! ```text
//! cargo run --example custom_transport --all-features
//! ```
//!
//! What the layers need from a transport:
//!
//! - a `tower::Service<http::Request<ReplayBody<B>>>` that is `Clone` (the retry layer calls a
//!   fresh clone for each attempt, after polling it ready);
//! - `Response = http::Response<R>` with `R: http_body::Body` (the classifier reads error
//!   bodies, the retry layer drains retried ones);
//! - for the default retry policy, an error type implementing `std::error::Error`, whose
//!   source chain tells a refused connection (never sent) from a failure after sending;
//! - absolute request URIs, so the key can be scoped to the API's origin.
//!
//! `ReplayBody<B>` yields `Bytes` and fails with a `BoxError`, which most clients take as is.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};
use tower_infoplug::reqwest::ReqwestTransport;
use tower_infoplug::retry::ReplayBody;
use tower_infoplug::{ApiKey, InfoPlugLayer, ResponseExt};
use tower_infoplug_mock::{Emulator, Reply, TEST_KEY};

const USAGE: &str = "usage: custom_transport

Runs the whole stack over an in-memory transport built with service_fn, then over
ReqwestTransport against the emulator on loopback, and prints what each saw. Takes no
arguments.";

fn layer() -> InfoPlugLayer {
    InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), "http://api.test")
        .retry(|r| r.backoff(Duration::from_millis(20), Duration::from_millis(100)))
        .build()
        .unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if support::help_or_no_args(USAGE)? {
        return Ok(());
    }
    // 1. An in-memory transport that records what it is sent and rate-limits the first
    //    attempt (a 429 is retried even for a POST: the server did no work).
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let recorder = service_fn(move |req: Request<ReplayBody<Full<Bytes>>>| {
        let log = log.clone();
        async move {
            let key = req
                .headers()
                .get("x-infoplug-api-key")
                .map(|_| "key")
                .unwrap_or("no key");
            let body = req
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let mut log = log.lock().unwrap();
            log.push(format!("{key}, {} body bytes", body.len()));
            let status = if log.len() == 1 { 429 } else { 200 };
            let res = Response::builder()
                .status(status)
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
            Ok::<_, Infallible>(res)
        }
    });
    let client = layer().layer(recorder);
    let req = Request::post("http://api.test/v1/search")
        .body(Full::new(Bytes::from_static(b"{\"q\":\"rust\"}")))?;
    let res = client.oneshot(req).await?;
    let attempts = res.retry_info().attempts();
    println!(
        "in-memory transport: {} after {attempts} attempts",
        res.status()
    );
    for (i, line) in seen.lock().unwrap().iter().enumerate() {
        println!("  attempt {}: {line}", i + 1);
    }

    // 2. reqwest, against the emulator on loopback.
    let emulator = Emulator::new();
    let server = emulator.serve().await?;
    emulator.push_all([Reply::unavailable(), Reply::status(402)]);
    let layer = InfoPlugLayer::builder(ApiKey::new(TEST_KEY)?, &server.base_url())
        .retry(|r| r.backoff(Duration::from_millis(20), Duration::from_millis(100)))
        .build()?;
    // Its client has reqwest's own redirects off: on a hop to another host reqwest drops
    // `Authorization` but not `X-INFOPLUG-API-KEY`.
    let client = layer.layer(ReqwestTransport::new()?);
    let req = Request::get(server.uri("/v1/profile")?).body(Full::new(Bytes::new()))?;
    let res = client.oneshot(req).await?;
    let attempts = res.retry_info().attempts();
    let code = res
        .api_error()
        .map(|e| e.code().to_string())
        .unwrap_or_default();
    println!("reqwest: {} {code} after {attempts} attempts", res.status());
    println!("  the emulator saw {} requests", emulator.request_count());
    Ok(())
}
