//! Every retry decision is a `tracing` event, and no event carries the key.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use tower_infoplug::mock::{Emulator, Reply, TEST_KEY};
use tower_infoplug::{ApiKey, AuthHeader, InfoPlugLayer};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records every event and span field as text.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut text = Text(format!("span {} ", attrs.metadata().name()));
        attrs.record(&mut text);
        self.0.lock().unwrap().push(text.0);
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut text = Text(String::new());
        values.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut text = Text(format!("{} ", event.metadata().level()));
        event.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

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

    let lines = capture.0.lock().unwrap().clone();
    let all = lines.join("\n");
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
