//! Helpers shared by the integration tests.
#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used
)]

mod capture;
#[cfg(feature = "retry")]
mod retry;

pub use capture::Capture;
#[cfg(feature = "retry")]
pub use retry::{Fixed, exact};

use bytes::Bytes;
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

/// A real HTTP/1.1 client, as applications use it.
pub fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Reads a whole body, keeping the stream's error if it fails.
pub async fn read_body<B: Body>(body: B) -> Result<Bytes, B::Error> {
    Ok(body.collect().await?.to_bytes())
}

/// An empty request body of the client's type.
pub fn empty() -> Full<Bytes> {
    Full::new(Bytes::new())
}

/// A real HTTP/1.1 client for request bodies of type `B`.
pub fn http_client_for<B>() -> Client<HttpConnector, B>
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new()).build_http()
}
