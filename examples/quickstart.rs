//! Quickstart: the whole stack over a real HTTP client, against the embedded InfoPlug emulator.
//!
//! ```text
//! cargo run --example quickstart --all-features
//! ```
//!
//! Starts the emulator on a free loopback port (no network, no real key), sends a scripted
//! series of requests through `InfoPlugLayer` (retry → auth → classify) over hyper-util's
//! client, and prints what each came back with, how many attempts it took and how long the
//! layer waited. `examples/quickstart_reqwest.rs` is the same over reqwest.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
mod support;

use std::time::Instant;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};
use tower_infoplug::{ReplayBody, ResponseExt};

const USAGE: &str = "usage: quickstart

Starts the embedded InfoPlug emulator on a free loopback port and sends a scripted series of
requests through the whole stack over hyper-util's client. Takes no arguments.";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if support::help_or_no_args(USAGE)? {
        return Ok(());
    }
    let (emulator, server, layer) = support::start().await?;
    let client =
        layer.layer(Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>());

    support::print_header();
    let started = Instant::now();
    for step in support::script() {
        emulator.push_all(step.replies);
        let req = Request::builder()
            .method(step.method)
            .uri(server.uri(step.path)?)
            .body(Full::new(Bytes::from_static(support::BODY)))?;
        let res = client.clone().oneshot(req).await?;
        let (status, info, error) = (
            res.status().as_u16(),
            res.retry_info(),
            res.api_error().cloned(),
        );
        // The body is still there for the caller, classified or not.
        let body = res.into_body().collect().await?.to_bytes();
        support::print_row(step.name, status, error.as_ref(), &info, body.len());
    }
    support::print_summary(&emulator, started.elapsed());
    Ok(())
}
