//! The quickstart over reqwest: `reqwest_middleware` with `InfoPlugMiddleware`, against the
//! embedded InfoPlug emulator.
//!
//! ```text
//! cargo run --example quickstart_reqwest --all-features
//! ```
//!
//! The same script as `examples/quickstart.rs`, sent through a `ClientWithMiddleware`: the
//! middleware runs the same stack (retry → auth → classify) with the same rules, and the
//! responses are `reqwest::Response`s that carry the same `ApiError` and `RetryInfo`.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
mod support;

use std::time::Instant;

use reqwest_middleware::ClientBuilder;
use tower_infoplug::ResponseExt;
use tower_infoplug::reqwest::{InfoPlugMiddleware, redirect_policy};

const USAGE: &str = "usage: quickstart_reqwest

Starts the embedded InfoPlug emulator on a free loopback port and sends a scripted series of
requests through reqwest-middleware with InfoPlugMiddleware. Takes no arguments.";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if support::help_or_no_args(USAGE)? {
        return Ok(());
    }
    // With the real API: `InfoPlugMiddleware::from_env()?` (INFOPLUG_API_KEY, INFOPLUG_BASE_URL).
    let (emulator, server, layer) = support::start().await?;
    // Redirects only within one origin: reqwest copies custom headers to other hosts.
    let reqwest = reqwest::Client::builder()
        .redirect(redirect_policy())
        .build()?;
    let client = ClientBuilder::new(reqwest)
        .with(InfoPlugMiddleware::new(layer))
        .build();

    support::print_header();
    let started = Instant::now();
    for step in support::script() {
        emulator.push_all(step.replies);
        let res = client
            .request(step.method, format!("{}{}", server.base_url(), step.path))
            .body(support::BODY)
            .send()
            .await?;
        let (status, info, error) = (
            res.status().as_u16(),
            res.retry_info(),
            res.api_error().cloned(),
        );
        // The body is still there for the caller, classified or not.
        let body = res.bytes().await?;
        support::print_row(step.name, status, error.as_ref(), &info, body.len());
    }
    support::print_summary(&emulator, started.elapsed());
    Ok(())
}
