//! The whole stack over hyper-util's client with rustls, as an application would use it.
//!
//! ```text
//! # against a started emulator (no network, no key needed):
//! cargo run --example hyper_client --all-features
//! # against the API, or another server speaking the contract (https or http):
//! INFOPLUG_BASE_URL=https://api.infoplug.io INFOPLUG_API_KEY=... cargo run --example hyper_client --all-features
//! ```
//!
//! HTTPS goes through rustls (hyper-rustls with the ring provider) and trusts the system's
//! roots; `SSL_CERT_FILE=path.pem` adds a certificate file, for a server of your own.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};
use tower_infoplug::retry::ReplayBody;
use tower_infoplug::{ApiKey, InfoPlugLayer, ResponseExt};
use tower_infoplug_mock::{Emulator, TEST_KEY};

const USAGE: &str = "usage: hyper_client

Sends two requests through InfoPlugLayer over hyper-util's client (HTTPS through rustls) and
prints what came back. Against INFOPLUG_BASE_URL with INFOPLUG_API_KEY when the base URL is
set, else against an emulator started on a free loopback port. SSL_CERT_FILE=path.pem adds
a trusted certificate.";

#[tokio::main]
async fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("hyper_client: unexpected argument {other:?}\n\n{USAGE}");
            return ExitCode::FAILURE;
        }
    }
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

    // https and http alike; HTTP/1.1 (enable hyper-rustls's `http2` feature for HTTP/2).
    let connector = HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("no trusted root certificates could be loaded: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client = InfoPlugLayer::new(key, &base)?.layer(
        Client::builder(TokioExecutor::new()).build::<_, ReplayBody<Empty<Bytes>>>(connector),
    );

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
