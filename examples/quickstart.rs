//! Quickstart: the layers over a real HTTP client, against the embedded InfoPlug emulator.
//!
//! ```text
//! cargo run --example quickstart --all-features
//! ```
//!
//! Starts the emulator on a free loopback port (no network, no real key), sends a series of
//! requests through `ClassifyLayer` + `AuthLayer` over hyper-util's client, and prints what each
//! one came back with.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_infoplug::mock::{Emulator, Reply, TEST_KEY};
use tower_infoplug::{ApiKey, AuthLayer, ClassifyLayer, ResponseExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let emulator = Emulator::builder().credits(2).build();
    let server = emulator.serve().await?;
    println!("InfoPlug emulator on {}\n", server.base_url());

    let client = ServiceBuilder::new()
        .layer(ClassifyLayer::new())
        .layer(AuthLayer::new(ApiKey::new(TEST_KEY)?).for_origin(server.origin()))
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());

    let requests: [(&str, Method, &str, Option<Reply>); 6] = [
        (
            "profile lookup",
            Method::GET,
            "/v1/profile?linkedin_url=https://linkedin.com/in/x",
            None,
        ),
        (
            "bad parameter",
            Method::GET,
            "/v1/profile?linkedin_url=ftp://x",
            None,
        ),
        (
            "rate limited",
            Method::GET,
            "/v1/jobs",
            Some(Reply::rate_limited(2)),
        ),
        (
            "proxy failure",
            Method::GET,
            "/v1/jobs",
            Some(Reply::proxy_html(502)),
        ),
        ("search", Method::POST, "/v1/search", None),
        ("out of credits", Method::GET, "/v1/company", None),
    ];

    println!(
        "{:<16} {:>6}  {:<22} {:<9} details",
        "request", "status", "code", "retryable"
    );
    for (name, method, path, scripted) in requests {
        if let Some(reply) = scripted {
            emulator.push(reply);
        }
        let req = Request::builder()
            .method(method)
            .uri(server.uri(path)?)
            .body(Full::new(Bytes::from_static(b"{\"q\":\"rust\"}")))?;
        let res = client.clone().oneshot(req).await?;
        let status = res.status().as_u16();
        let (code, retryable, details) = match res.api_error() {
            Some(err) => (
                err.code().to_string(),
                err.is_retryable().to_string(),
                err.details()
                    .or(err.body_issue().map(|_| "(body unusable)"))
                    .unwrap_or("")
                    .to_owned(),
            ),
            None => ("-".into(), "-".into(), String::new()),
        };
        // The body is still there for the caller, classified or not.
        let body = res.into_body().collect().await?.to_bytes();
        println!(
            "{name:<16} {status:>6}  {code:<22} {retryable:<9} {details} [{} body bytes]",
            body.len()
        );
    }
    let seen = emulator.requests();
    let with_key = seen
        .iter()
        .filter(|r| r.header("x-infoplug-api-key") == Some(TEST_KEY))
        .count();
    println!(
        "\nThe emulator saw {} requests, {with_key} of them with the key.",
        seen.len()
    );
    Ok(())
}
