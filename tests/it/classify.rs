//! The classifier reads error bodies within its bounds and hands every byte on.
use crate::common;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::{http_client, read_body};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt, service_fn};
use tower_infoplug::classify::ClassifyBody;
use tower_infoplug::{BodyIssue, ClassifyLayer, ErrorCode, ResponseExt};
use tower_infoplug_mock::{Emulator, Reply, TEST_KEY};

/// A body that yields scripted frames and counts how often it was polled.
struct Scripted {
    frames: VecDeque<Result<Frame<Bytes>, &'static str>>,
    polls: Arc<AtomicUsize>,
    hint: SizeHint,
}

impl Scripted {
    fn new(frames: Vec<Result<Frame<Bytes>, &'static str>>) -> (Self, Arc<AtomicUsize>) {
        let polls = Arc::new(AtomicUsize::new(0));
        let len = frames
            .iter()
            .filter_map(|f| f.as_ref().ok()?.data_ref().map(Bytes::len))
            .sum::<usize>();
        let body = Self {
            frames: frames.into(),
            polls: polls.clone(),
            hint: SizeHint::with_exact(len as u64),
        };
        (body, polls)
    }
}

impl Body for Scripted {
    type Data = Bytes;
    type Error = &'static str;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        let frame = self.frames.pop_front();
        if let (Some(Ok(Some(data))), Some(len)) = (
            frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)),
            self.hint.exact(),
        ) {
            self.hint = SizeHint::with_exact(len - data.len() as u64);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

fn data(bytes: &'static [u8]) -> Result<Frame<Bytes>, &'static str> {
    Ok(Frame::data(Bytes::from_static(bytes)))
}

/// Serves one response with `status` and `body` through the default classifier.
async fn classify_one<B>(status: u16, body: B) -> Response<ClassifyBody<B>>
where
    B: Body + Send + 'static,
{
    classify_with(ClassifyLayer::new(), status, body).await
}

/// Serves one response with `status` and `body` through `layer`.
async fn classify_with<B>(layer: ClassifyLayer, status: u16, body: B) -> Response<ClassifyBody<B>>
where
    B: Body + Send + 'static,
{
    let body = std::sync::Mutex::new(Some(body));
    let transport = service_fn(move |_req: Request<()>| {
        let body = body.lock().unwrap().take().unwrap();
        async move {
            let mut res = Response::new(body);
            *res.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok::<_, Infallible>(res)
        }
    });
    layer
        .layer(transport)
        .oneshot(Request::new(()))
        .await
        .unwrap()
}

#[tokio::test]
async fn success_bodies_are_not_touched_before_the_caller_reads_them() {
    let (body, polls) = Scripted::new(vec![data(b"{\"data\":1}")]);
    let res = classify_one(200, body).await;
    assert_eq!(polls.load(Ordering::SeqCst), 0);
    assert!(res.api_error().is_none());
    assert_eq!(format!("{:?}", res.body()), "ClassifyBody::Passthrough");
    assert_eq!(res.body().size_hint().exact(), Some(10));
    assert_eq!(read_body(res.into_body()).await.unwrap(), "{\"data\":1}");
}

#[tokio::test]
async fn redirects_and_informational_responses_are_not_classified() {
    for status in [301, 304, 100] {
        let (body, polls) = Scripted::new(vec![data(b"moved")]);
        let res = classify_one(status, body).await;
        assert!(res.api_error().is_none(), "{status}");
        assert_eq!(polls.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn replay_keeps_bytes_trailers_and_size_hint() {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let (body, _) = Scripted::new(vec![
        data(b"{\"message\":"),
        data(b"\"not_found\"}"),
        Ok(Frame::trailers(trailers.clone())),
    ]);
    let res = classify_one(404, body).await;
    assert_eq!(res.api_error().unwrap().code(), &ErrorCode::NotFound);
    assert_eq!(res.body().size_hint().exact(), Some(23));
    assert!(!res.body().is_end_stream());
    let collected = res.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers(), Some(&trailers));
    assert_eq!(collected.to_bytes(), "{\"message\":\"not_found\"}");
}

// Byte-a-frame and always ready: the read yields every 32 frames, and keeps every frame
// it read before yielding (the test failed when the yield dropped the 32nd).
#[tokio::test]
async fn a_body_read_across_yields_is_classified_and_replayed_whole() {
    const BODY: &str = concat!(
        r#"{"message":"not_found","details":""#,
        "0123456789012345678901234567890123456789012345678901234567890123456789",
        r#""}"#
    );
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let mut frames: Vec<_> = BODY.as_bytes().chunks(1).map(data).collect();
    frames.push(Ok(Frame::trailers(trailers.clone())));
    let (body, _) = Scripted::new(frames);
    let res = classify_one(404, body).await;
    let err = res.api_error().unwrap();
    assert_eq!(err.code(), &ErrorCode::NotFound);
    assert_eq!(err.details().map(str::len), Some(70));
    let collected = res.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers(), Some(&trailers));
    assert_eq!(collected.to_bytes(), BODY);
}

#[tokio::test]
async fn a_stream_error_is_replayed_after_the_bytes_before_it() {
    let (body, _) = Scripted::new(vec![data(b"{\"mess"), Err("connection reset")]);
    let res = classify_one(503, body).await;
    let err = res.api_error().unwrap();
    assert_eq!(err.body_issue(), Some(&BodyIssue::Incomplete));
    assert_eq!(err.code(), &ErrorCode::ServerError);
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "{\"mess");
    assert_eq!(body.frame().await.unwrap().unwrap_err(), "connection reset");
    assert!(body.frame().await.is_none());
}

#[tokio::test]
async fn a_long_unannounced_body_is_read_only_past_the_limit_once() {
    let chunk: &'static [u8] = &[b'x'; 1024];
    const ENVELOPE: &[u8] = b"{\"message\":\"x\",\"details\":\"";
    let mut frames = vec![data(ENVELOPE)];
    frames.extend((0..100).map(|_| data(chunk)));
    frames.push(data(b"\"}"));
    let (mut body, polls) = Scripted::new(frames);
    body.hint = SizeHint::new(); // like a chunked response: no length announced
    let layer = ClassifyLayer::builder().body_limit(4096).build().unwrap();
    let res = classify_with(layer, 400, body).await;
    assert_eq!(
        res.api_error().unwrap().body_issue(),
        Some(&BodyIssue::TooLarge)
    );
    // 4 KiB limit: the envelope frame plus four 1 KiB frames cross it; nothing more is read.
    assert_eq!(polls.load(Ordering::SeqCst), 5);
    let all = read_body(res.into_body()).await.unwrap();
    assert_eq!(all.len(), ENVELOPE.len() + 100 * 1024 + 2);
}

#[tokio::test(start_paused = true)]
async fn a_slow_error_body_stops_being_read_at_the_deadline() {
    let emulator = Emulator::new();
    // 40 bytes, one a second: the whole body would take 39 s.
    emulator.push(
        Reply::status(503)
            .chunked(1)
            .chunk_delay(Duration::from_secs(1)),
    );
    let start = tokio::time::Instant::now();
    let res = ClassifyLayer::new()
        .layer(emulator)
        .oneshot(Request::new(http_body_util::Empty::<Bytes>::new()))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    let err = res.api_error().unwrap();
    assert_eq!(err.body_issue(), Some(&BodyIssue::TimedOut));
    assert_eq!(err.code(), &ErrorCode::ServerError);
    // The caller still gets the whole body, at the server's pace.
    let body = read_body(res.into_body()).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["message"], "error");
    assert_eq!(start.elapsed(), Duration::from_secs(body.len() as u64 - 1));
}

// The deadline is armed lazily (only a body that makes the read wait needs a timer), but a
// body that never does is timed too: no byte limit would ever stop this one. Real time, as
// an always-ready body never lets paused time advance; the assertion is on the outcome only.
#[tokio::test]
async fn an_always_ready_body_of_empty_frames_stops_at_the_deadline() {
    let layer = ClassifyLayer::builder()
        .read_timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    let res = tokio::time::timeout(
        Duration::from_secs(30),
        classify_with(layer, 500, common::EndlessEmptyFrames),
    )
    .await
    .expect("the read ends at its deadline");
    let err = res.api_error().unwrap();
    assert_eq!(err.body_issue(), Some(&BodyIssue::TimedOut));
}

#[tokio::test]
async fn an_error_body_sent_a_byte_a_chunk_is_held_as_one_run() {
    let emulator = Emulator::new();
    let server = emulator.serve().await.unwrap();
    let client = ClassifyLayer::new().layer(http_client());
    let details = "x".repeat(60 * 1024);
    let body = format!(r#"{{"message":"invalid_parameter","details":"{details}"}}"#);
    emulator.push(Reply::json(400, body.clone()).chunked(1));
    let req = Request::get(server.uri("/v1/profile").unwrap())
        .header("x-infoplug-api-key", TEST_KEY)
        .body(common::empty())
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(
        res.api_error().unwrap().code(),
        &ErrorCode::InvalidParameter
    );
    // Sixty thousand chunks on the wire, one run in memory (plus, at most, the frame that
    // ended the read and the trailers).
    let held = format!("{:?}", res.body());
    let frames: usize = held
        .split("buffered_frames: ")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ', '}']).next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(frames <= 3, "{held}");
    assert_eq!(read_body(res.into_body()).await.unwrap(), body);
}

#[tokio::test]
async fn error_bodies_over_loopback_are_classified_and_passed_on_intact() {
    let emulator = Emulator::new();
    let server = emulator.serve().await.unwrap();
    let client = ClassifyLayer::new().layer(http_client());
    let contract = r#"{"message":"invalid_parameter","parameter":"linkedin_url","details":"Missing or invalid linkedin_url"}"#;
    emulator.push_all([
        Reply::json(400, contract).chunked(7),
        Reply::proxy_html(502),
        Reply::malformed(429),
        Reply::oversized(500, 1024 * 1024),
        Reply::status(500).truncate_after(10),
        Reply::json(404, "").without_header("content-type"),
    ]);
    let get = || {
        let req = Request::get(server.uri("/v1/profile").unwrap())
            .header("x-infoplug-api-key", TEST_KEY)
            .body(common::empty())
            .unwrap();
        client.clone().oneshot(req)
    };

    let res = get().await.unwrap();
    let err = res.api_error().unwrap().clone();
    assert_eq!(err.code(), &ErrorCode::InvalidParameter);
    assert_eq!(err.parameter(), Some("linkedin_url"));
    assert_eq!(read_body(res.into_body()).await.unwrap(), contract);

    let res = get().await.unwrap();
    assert!(matches!(
        res.api_error().unwrap().body_issue(),
        Some(BodyIssue::NotJson { content_type: Some(ct) }) if ct.starts_with("text/html")
    ));
    assert!(
        read_body(res.into_body())
            .await
            .unwrap()
            .starts_with(b"<html>")
    );

    let res = get().await.unwrap();
    assert_eq!(
        res.api_error().unwrap().body_issue(),
        Some(&BodyIssue::Malformed)
    );
    assert_eq!(
        res.api_error().unwrap().code(),
        &ErrorCode::RateLimitExceeded
    );

    let res = get().await.unwrap();
    assert_eq!(
        res.api_error().unwrap().body_issue(),
        Some(&BodyIssue::TooLarge)
    );
    assert_eq!(read_body(res.into_body()).await.unwrap().len(), 1024 * 1024);

    let res = get().await.unwrap();
    assert_eq!(
        res.api_error().unwrap().body_issue(),
        Some(&BodyIssue::Incomplete)
    );
    // Downstream sees the ten bytes, then the transport's error: never a clean short body.
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first.len(), 10);
    assert!(body.frame().await.unwrap().is_err());

    let res = get().await.unwrap();
    assert_eq!(
        res.api_error().unwrap().body_issue(),
        Some(&BodyIssue::Empty)
    );
    assert_eq!(res.api_error().unwrap().code(), &ErrorCode::NotFound);

    // `?`-style callers get a std error (no key on this request: 401).
    let req = Request::get(server.uri("/v1/profile").unwrap())
        .body(common::empty())
        .unwrap();
    let res = client.clone().oneshot(req).await.unwrap();
    let err: Box<dyn std::error::Error> = res.error_for_status().unwrap_err().into();
    assert!(err.to_string().contains("401"), "{err}");
}

#[test]
fn bad_limits_are_build_time_errors() {
    assert!(ClassifyLayer::builder().body_limit(0).build().is_err());
    assert!(
        ClassifyLayer::builder()
            .body_limit(usize::MAX)
            .build()
            .is_err()
    );
    assert!(
        ClassifyLayer::builder()
            .read_timeout(Duration::ZERO)
            .build()
            .is_err()
    );
    let layer = ClassifyLayer::builder().no_read_timeout().build().unwrap();
    assert_eq!(layer.read_timeout(), None);
}
