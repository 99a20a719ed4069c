//! Every retry decision is a `tracing` event, and no event carries the key.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use bytes::Bytes;
use common::Capture;
use http::Request;
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use tower_infoplug::mock::{Emulator, Reply, TEST_KEY};
use tower_infoplug::{ApiKey, AuthHeader, InfoPlugLayer};

#[tokio::test(start_paused = true)]
async fn decisions_are_traced_without_the_key() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    let api = Emulator::new();
    api.push_all([
        Reply::rate_limited(1),
        Reply::unavailable(),
        Reply::echoing_key(401),
        Reply::unavailable(),
        Reply::unavailable(),
        Reply::unavailable(),
    ]);
    let client = InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), "http://api.test")
        .header(AuthHeader::bearer())
        .build()
        .unwrap()
        .layer(api.clone());
    for _ in 0..2 {
        let req = Request::get("http://api.test/v1/x")
            .body(Full::<Bytes>::default())
            .unwrap();
        let res = client.clone().oneshot(req).await.unwrap();
        let _ = format!("{res:?}");
    }

    let all = capture.text();
    assert!(all.contains("retrying after a response"), "{all}");
    assert!(
        all.contains("status=429") && all.contains("status=503"),
        "{all}"
    );
    assert!(all.contains("hint_ms=1000"), "{all}");
    assert!(all.contains("code=\"rate_limit_exceeded\""), "{all}");
    assert!(
        all.contains("reason=Final") && all.contains("reason=AttemptsExhausted"),
        "{all}"
    );
    assert!(all.contains("classified an error response"), "{all}");
    assert!(
        !all.contains(TEST_KEY),
        "the key leaked into a trace:\n{all}"
    );
}
