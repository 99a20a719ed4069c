//! The whole stack over hyper-util's client, as an application would use it.
//!
//! ```text
//! # against a started emulator (no network, no key needed):
//! cargo run --example hyper_client --all-features
//! # against another server speaking the contract (plain HTTP; the real API needs an HTTPS connector):
//! INFOPLUG_BASE_URL=http://127.0.0.1:3000 INFOPLUG_API_KEY=... cargo run --example hyper_client --all-features
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};
use tower_infoplug::mock::{Emulator, TEST_KEY};
use tower_infoplug::retry::ReplayBody;
use tower_infoplug::{ApiKey, InfoPlugLayer, ResponseExt};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hyper_client: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // A base URL from the environment, or an emulator started here.
    let (base, key, _server) = match std::env::var("INFOPLUG_BASE_URL") {
        Ok(base) => (base, ApiKey::from_env()?, None),
        Err(_) => {
            let server = Emulator::new().serve().await?;
            (server.base_url(), ApiKey::new(TEST_KEY)?, Some(server))
        }
    };
    println!("talking to {base}");

    let client = InfoPlugLayer::new(key, &base)?
        .layer(Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Empty<Bytes>>>());

    for path in [
        "/v1/profile?linkedin_url=https://linkedin.com/in/x",
        "/v1/jobs?limit=9999",
    ] {
        let req = Request::get(format!("{base}{path}")).body(Empty::new())?;
        let res = client.clone().oneshot(req).await?;
        let attempts = res.retry_info().attempts();
        let summary = match res.api_error() {
            Some(err) => err.to_string(),
            None => "ok".to_owned(),
        };
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        println!(
            "GET {path}\n  {status} after {attempts} attempt(s): {summary}\n  {} body bytes",
            body.len()
        );
    }
    Ok(())
}
