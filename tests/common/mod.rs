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
pub use retry::{Fixed, exact, info};

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

/// A GET with an empty body.
pub fn get<U>(uri: U) -> http::Request<Full<Bytes>>
where
    http::Uri: TryFrom<U>,
    <http::Uri as TryFrom<U>>::Error: Into<http::Error>,
{
    http::Request::get(uri).body(Full::default()).unwrap()
}

/// When each request reached the emulator, from the first.
pub fn arrivals(api: &tower_infoplug_mock::Emulator) -> Vec<std::time::Duration> {
    let seen = api.requests();
    seen.iter()
        .map(|r| r.at.saturating_duration_since(seen[0].at))
        .collect()
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

/// The built example `name`.
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join("examples").join(name);
    let built = std::fs::metadata(&path).and_then(|m| m.modified());
    let source =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.rs"));
    let edited = std::fs::metadata(&source)
        .and_then(|m| m.modified())
        .unwrap();
    // `cargo test --test it` alone does not rebuild the examples: refuse to test an old
    // binary rather than pass or fail on code that is no longer there.
    match built {
        Ok(built) if built >= edited => path,
        _ => panic!(
            "{} is missing or older than its source; run `cargo test --all-features` \
             (or `cargo build --examples --all-features` first)",
            path.display()
        ),
    }
}

/// A body that is always ready with another empty frame, and never ends: no byte bound stops
/// reading it, only a time bound (which needs the reader to yield).
pub struct EndlessEmptyFrames;

impl Body for EndlessEmptyFrames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::new()))))
    }
}
