//! Against a rate limiter nobody here wrote: Debian's nginx with `limit_req` (a leaky bucket)
//! in front of a static JSON file, started by each test on a free loopback port with every
//! path inside a temporary folder, and stopped when it ends.
//!
//! The tests need `/usr/sbin/nginx`, so they are ignored by default:
//! `cargo test --all-features --test servers -- --include-ignored` runs them (`.ci/run`
//! installs Debian's `nginx` package, never started as a service).

use crate::common;
use crate::nginx_server as nginx;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_infoplug::retry::ReplayBody;
use tower_infoplug::{ApiKey, InfoPlugLayer};

use nginx::{Nginx, Refusal};

/// What a batch came to.
#[derive(Debug)]
struct Run {
    ok: usize,
    calls: usize,
    refused: usize,
    elapsed: Duration,
}

/// `n` requests, `in_flight` at a time, through the preset with its defaults over a hyper-util
/// client; the calls nginx answered are counted below the stack.
async fn batch(nginx: &Nginx, n: usize, in_flight: usize) -> Run {
    let calls = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let counted = {
        let (calls, refused) = (Arc::clone(&calls), Arc::clone(&refused));
        ServiceBuilder::new()
            .map_response(move |res: http::Response<hyper::body::Incoming>| {
                calls.fetch_add(1, Ordering::Relaxed);
                if res.status() == StatusCode::TOO_MANY_REQUESTS {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                res
            })
            .service(common::http_client_for::<ReplayBody<Full<Bytes>>>())
    };
    let layer =
        InfoPlugLayer::new(ApiKey::new("ip_nginx_test_key").unwrap(), &nginx.base_url()).unwrap();
    let uri = layer.uri("/data.json").unwrap();
    let client = layer.layer(counted);
    let next = Arc::new(AtomicUsize::new(0));
    let start = std::time::Instant::now();
    let lanes: Vec<_> = (0..in_flight)
        .map(|_| {
            let (client, next, uri) = (client.clone(), Arc::clone(&next), uri.clone());
            tokio::spawn(async move {
                let mut ok = 0;
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let req = Request::get(uri.clone()).body(Full::default()).unwrap();
                    if let Ok(res) = client.clone().oneshot(req).await {
                        let status = res.status();
                        if res.into_body().collect().await.is_ok() && status == StatusCode::OK {
                            ok += 1;
                        }
                    }
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for lane in lanes {
        ok += lane.await.unwrap();
    }
    Run {
        ok,
        calls: calls.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    }
}

/// 120 requests at 20 a second, 16 in flight, through the preset with its defaults: every
/// request ends in a 200, and at most `share` of the calls are refused. (Before the layer
/// searched a rate without hints, 172 of 200 such requests ended `BudgetExhausted`.) The
/// makespan against the ideal is the goodput bench's to measure, not a test's.
async fn every_request_ends_in_a_200(burst: u32, refusal: Refusal, share: usize) {
    // One at a time: three servers and three clients on two cores bunch the sends up (timer
    // lateness), and a leaky bucket refuses a bunched request however well it was paced.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let nginx = Nginx::start(20, burst, refusal);
    let run = batch(&nginx, 120, 16).await;
    assert_eq!(run.ok, 120, "{run:?}");
    assert!(run.refused * share <= run.calls, "{run:?}");
    // Bounded: nothing near the 120 s that waiting a second per request would take.
    assert!(run.elapsed < Duration::from_secs(60), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx"]
async fn limit_req_without_a_hint_is_paced_and_every_request_ends_in_a_200() {
    every_request_ends_in_a_200(0, Refusal::Bare, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx"]
async fn limit_req_with_retry_after_one_is_paced_and_every_request_ends_in_a_200() {
    every_request_ends_in_a_200(0, Refusal::RetryAfterOne, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx"]
async fn limit_req_with_a_burst_is_paced_and_every_request_ends_in_a_200() {
    every_request_ends_in_a_200(10, Refusal::Bare, 5).await;
}
