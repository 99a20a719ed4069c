//! Quickstart: the whole stack over a real HTTP client, against the embedded InfoPlug emulator.
//!
//! ```text
//! cargo run --example quickstart --all-features
//! ```
//!
//! Starts the emulator on a free loopback port (no network, no real key), sends a scripted
//! series of requests through `InfoPlugLayer` (retry → classify → auth) over hyper-util's
//! client, and prints what each came back with, how many attempts it took and how long the
//! layer waited.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};
use tower_infoplug::mock::{Emulator, Reply, TEST_KEY};
use tower_infoplug::retry::ReplayBody;
use tower_infoplug::{ApiKey, InfoPlugLayer, ResponseExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let emulator = Emulator::builder().credits(4).build();
    let server = emulator.serve().await?;
    println!("InfoPlug emulator on {}\n", server.base_url());

    // One layer: retries (honouring Retry-After), error classification, the key.
    let client = InfoPlugLayer::builder(ApiKey::new(TEST_KEY)?, &server.base_url())
        .retry(|r| {
            r.max_attempts(4)
                .backoff(Duration::from_millis(50), Duration::from_millis(400))
        })
        .build()?
        .layer(Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>());

    let script: [(&str, Method, &str, Vec<Reply>); 6] = [
        (
            "profile",
            Method::GET,
            "/v1/profile?linkedin_url=https://linkedin.com/in/x",
            vec![],
        ),
        (
            "rate limited",
            Method::GET,
            "/v1/jobs",
            vec![Reply::rate_limited(1)],
        ),
        (
            "503 storm",
            Method::GET,
            "/v1/company",
            vec![
                Reply::unavailable(),
                Reply::proxy_html(502),
                Reply::unavailable(),
            ],
        ),
        (
            "bad parameter",
            Method::GET,
            "/v1/profile?linkedin_url=ftp://x",
            vec![],
        ),
        ("search (POST)", Method::POST, "/v1/search", vec![]),
        ("out of credits", Method::GET, "/v1/jobs", vec![]),
    ];

    println!(
        "{:<15} {:>6}  {:<22} {:>8}  {:>8}  details",
        "request", "status", "code", "attempts", "waited"
    );
    let started = Instant::now();
    for (name, method, path, replies) in script {
        emulator.push_all(replies);
        let req = Request::builder()
            .method(method)
            .uri(server.uri(path)?)
            .body(Full::new(Bytes::from_static(b"{\"q\":\"rust\"}")))?;
        let res = client.clone().oneshot(req).await?;
        let info = res.retry_info();
        let (code, details) = match res.api_error() {
            Some(err) => (
                err.code().to_string(),
                match (err.parameter(), err.details()) {
                    (Some(p), Some(d)) => format!("{d} (parameter `{p}`)"),
                    (None, Some(d)) => d.to_owned(),
                    _ => err
                        .body_issue()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                },
            ),
            None => ("-".into(), String::new()),
        };
        let status = res.status().as_u16();
        // The body is still there for the caller, classified or not.
        let body = res.into_body().collect().await?.to_bytes();
        println!(
            "{name:<15} {status:>6}  {code:<22} {:>8}  {:>7}ms  {details} [{} body bytes]",
            info.attempts(),
            info.waited().as_millis(),
            body.len()
        );
    }

    let seen = emulator.requests();
    let with_key = seen
        .iter()
        .filter(|r| r.header("x-infoplug-api-key") == Some(TEST_KEY))
        .count();
    println!(
        "\nThe emulator saw {} requests ({with_key} with the key) in {:.1}s.",
        seen.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
