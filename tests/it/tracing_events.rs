//! Every retry decision is a `tracing` event, and no event carries the key.

use crate::common;

use std::sync::Arc;

use bytes::Bytes;
use common::Capture;
use http::Request;
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use tower_infoplug::{ApiKey, AuthHeader, InfoPlugLayer};
use tower_infoplug_mock::{Emulator, Reply, TEST_KEY};

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

/// The capture's lines for events whose message is `message`.
fn events<'a>(all: &'a str, message: &str) -> Vec<&'a str> {
    all.lines()
        .filter(|l| l.contains(&format!("message={message}")))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn each_request_has_a_span_and_each_attempt_an_event_with_its_context() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    let api = Emulator::new();
    let client = InfoPlugLayer::new(ApiKey::new(TEST_KEY).unwrap(), "https://api.test")
        .unwrap()
        .layer(api.clone());
    let uri = "https://user:pw@api.test/v1/profile?linkedin_url=secret-person&x=1";
    // A 429 and a 503 before a 200; then three 503s.
    for replies in [
        vec![Reply::rate_limited(1), Reply::unavailable()],
        vec![Reply::unavailable(); 3],
    ] {
        api.push_all(replies);
        let req = Request::get(uri).body(Full::<Bytes>::default()).unwrap();
        client.clone().oneshot(req).await.unwrap();
    }
    let all = capture.text();

    // A span per request, with the method and the URL without user-info or query.
    let spans: Vec<_> = all
        .lines()
        .filter(|l| l.starts_with("span infoplug.request"))
        .collect();
    assert_eq!(spans.len(), 2, "{all}");
    assert!(spans[0].contains("http.request.method=GET"), "{all}");
    assert!(
        spans[0].contains("url=https://api.test/v1/profile "),
        "{all}"
    );
    // The resend count is recorded on the span once an attempt is a resend.
    assert!(
        all.lines()
            .any(|l| l.starts_with("http.request.resend_count=1 #")),
        "{all}"
    );
    assert!(
        all.lines()
            .any(|l| l.starts_with("http.request.resend_count=2 #")),
        "{all}"
    );

    // The retry: DEBUG, with everything needed to read it alone.
    let retry = events(&all, "retrying after a response");
    assert_eq!(retry.len(), 4, "{all}");
    assert!(retry[0].starts_with("DEBUG "), "{all}");
    for field in [
        "http.request.method=GET",
        "url=https://api.test/v1/profile ",
        "attempt=1",
        "http.request.resend_count=1",
        "status=429",
        "code=\"rate_limit_exceeded\"",
        "hint_ms=1000",
        "wait_ms=",
    ] {
        assert!(
            retry[0].contains(field),
            "{field} missing from {}",
            retry[0]
        );
    }

    // The first request succeeded on its third attempt: an ordinary outcome, DEBUG. The
    // second ran out of attempts on 503s: a give-up, WARN, with the method, URL and reason.
    let returned = events(&all, "returning the response");
    assert_eq!(returned.len(), 2, "{all}");
    assert!(
        returned[0].starts_with("DEBUG ") && returned[0].contains("reason=Final"),
        "{all}"
    );
    assert!(returned[1].starts_with("WARN "), "{all}");
    for field in [
        "http.request.method=GET",
        "url=https://api.test/v1/profile ",
        "attempts=3",
        "status=503",
        "reason=AttemptsExhausted",
    ] {
        assert!(
            returned[1].contains(field),
            "{field} missing from {}",
            returned[1]
        );
    }
    for secret in ["secret-person", "pw@", TEST_KEY] {
        assert!(
            !all.contains(secret),
            "{secret} leaked into a trace:\n{all}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_levels_of_retries_and_give_ups_are_configurable() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    let api = Emulator::new();
    api.push_all([Reply::unavailable(), Reply::rate_limited(3600)]);
    let client = InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), "http://api.test")
        .retry(|r| r.trace_levels(tracing::Level::INFO, tracing::Level::ERROR))
        .build()
        .unwrap()
        .layer(api.clone());
    let get = || {
        Request::get("http://api.test/v1/x")
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    let res = client.clone().oneshot(get()).await.unwrap();
    assert_eq!(res.status(), 429);
    // The gate the 1-hour hint shut refuses the next request without sending it.
    assert!(client.oneshot(get()).await.is_err());
    let all = capture.text();
    let retry = events(&all, "retrying after a response");
    assert!(retry.len() == 1 && retry[0].starts_with("INFO "), "{all}");
    let gave_up = events(&all, "returning the response");
    assert!(
        gave_up.len() == 1 && gave_up[0].starts_with("ERROR "),
        "{all}"
    );
    assert!(gave_up[0].contains("reason=HintTooLong"), "{all}");
    let refused = events(
        &all,
        "not sending: the server asked clients to wait longer than this request may",
    );
    assert!(
        refused.len() == 1 && refused[0].starts_with("ERROR "),
        "{all}"
    );
    assert!(
        refused[0].contains("reason=CoolingDown") && refused[0].contains("status=429"),
        "{all}"
    );
}

/// The id that follows the last `key` in a capture line (`#`: a span's own or a record's).
fn id_after<'a>(line: &'a str, key: &str) -> &'a str {
    let line = match key {
        "#" => line.split(" parent=").next().unwrap_or_default(),
        _ => line,
    };
    let at = line.rfind(key).map_or(0, |at| at + key.len());
    line[at..].split(' ').next().unwrap_or_default()
}

/// Each attempt sent is an OpenTelemetry CLIENT span under its request's span: method, URL
/// without secrets, resend count from the second, the status or the failure as `error.type`;
/// the transport's own events (while its future is polled) happen inside it.
#[tokio::test(start_paused = true)]
async fn each_attempt_is_a_client_span_under_its_request() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    // A transport that fails its first call (connection refused), then serves the emulator
    // (a 429, then a 200), and says so in an event of its own.
    let api = Emulator::new();
    api.push(Reply::rate_limited(1));
    let calls = Arc::new(AtomicU32::new(0));
    let transport = {
        let api = api.clone();
        tower::service_fn(move |req: Request<_>| {
            let first = calls.fetch_add(1, Ordering::Relaxed) == 0;
            let served = api.clone().oneshot(req);
            async move {
                tracing::info!("transport called");
                if first {
                    return Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
                }
                served.await.map_err(|never| match never {})
            }
        })
    };
    let client = InfoPlugLayer::new(ApiKey::new(TEST_KEY).unwrap(), "https://api.test")
        .unwrap()
        .layer(transport);
    let uri = "https://user:pw@api.test/v1/profile?linkedin_url=https-secret-person";
    let req = Request::get(uri).body(Full::<Bytes>::default()).unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let all = capture.text();

    let request = all
        .lines()
        .find(|l| l.starts_with("span infoplug.request"))
        .expect("the request's span");
    let request_id = id_after(request, "#");
    let attempts: Vec<_> = all
        .lines()
        .filter(|l| l.starts_with("span infoplug.attempt"))
        .collect();
    assert_eq!(attempts.len(), 3, "{all}");
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(id_after(attempt, "parent=#"), request_id, "{all}");
        for field in [
            "otel.kind=\"client\"",
            "http.request.method=GET",
            "url.full=https://api.test/v1/profile ",
        ] {
            assert!(attempt.contains(field), "{field} missing from {attempt}");
        }
        let resends = format!("http.request.resend_count={n} ");
        assert_eq!(attempt.contains(&resends), n > 0, "{attempt}");
    }
    // What each attempt met, recorded on its own span.
    let recorded = |n: usize| -> Vec<&str> {
        let id = format!("#{}", id_after(attempts[n], "#"));
        all.lines()
            .filter(|l| !l.starts_with("span ") && !l.contains(" in=#") && l.ends_with(&id))
            .collect()
    };
    assert_eq!(recorded(0), ["error.type=\"never_sent\" #2"], "{all}");
    assert_eq!(
        recorded(1),
        ["http.response.status_code=429 #3", "error.type=\"429\" #3"],
        "{all}"
    );
    assert_eq!(recorded(2), ["http.response.status_code=200 #4"], "{all}");
    // The transport was called inside each attempt's span.
    let called: Vec<_> = events(&all, "transport called")
        .iter()
        .map(|l| id_after(l, "in=#"))
        .collect();
    let ids: Vec<_> = attempts.iter().map(|a| id_after(a, "#")).collect();
    assert_eq!(called, ids, "{all}");
    for secret in ["secret-person", "pw@", TEST_KEY] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
}

/// A quota counted in bytes is not followed, and a DEBUG event
/// says so, naming the unit; a unit the crate does not know is named `other`, not echoed.
#[tokio::test(start_paused = true)]
async fn a_quota_in_another_unit_is_named_in_a_debug_event() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let api = Emulator::new();
    api.push_all([
        Reply::ok("{}").header(
            "ratelimit",
            "\"r\";r=9;t=1, \"bytes\";r=0;t=9;qu=\"content-bytes\"",
        ),
        Reply::ok("{}").header("ratelimit", "\"odd\";r=0;t=9;qu=\"odd-unit-x\""),
        Reply::ok("{}").header("ratelimit", "\"r\";r=9;t=1"),
    ]);
    let client = InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), "http://api.test")
        .retry(|r| r.rate_limit_headers(true))
        .build()
        .unwrap()
        .layer(api.clone());
    for _ in 0..3 {
        let req = Request::get("http://api.test/v1/x")
            .body(Full::<Bytes>::default())
            .unwrap();
        let res = client.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
    }
    let all = capture.text();
    let ignored = events(
        &all,
        "not following a quota the server counts in another unit",
    );
    assert_eq!(ignored.len(), 2, "{all}");
    assert!(ignored[0].contains("unit=\"content-bytes\""), "{all}");
    assert!(ignored[1].contains("unit=\"other\""), "{all}");
    assert!(!all.contains("odd-unit-x"), "{all}");
}
