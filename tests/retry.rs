//! The retry layer: decisions, waits, cooldown, budget, bodies and cancellation, under paused
//! time in memory and over loopback HTTP against the emulator.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::read_body;
use http::{Method, Request, Response};
use http_body::{Body, Frame};
use http_body_util::Full;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_infoplug::auth::Auth;
use tower_infoplug::classify::Classify;
use tower_infoplug::mock::{Emulator, Reply, TEST_KEY};
use tower_infoplug::retry::Retry;
use tower_infoplug::retry::{
    Deadline, Jitter, ReplayBody, RetryBuilder, RetryError, RetryInfo, RetryLayer, StopReason,
};
use tower_infoplug::{ApiKey, AuthLayer, ClassifyLayer, ErrorCode, InfoPlugLayer, ResponseExt};

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

/// Jitter pinned to one value, so waits are exact.
struct Fixed(f64);

impl Jitter for Fixed {
    fn sample(&self) -> f64 {
        self.0
    }
}

/// The defaults with the jitter pinned to 0, so every wait is exact (`RetryLayer::builder()`
/// draws random jitter, as in production).
fn exact() -> RetryBuilder {
    RetryLayer::builder().jitter(Fixed(0.0))
}

type Stack<T> = Retry<Classify<Auth<T>>>;

/// Retry over classify over auth over the in-process emulator.
fn stack(api: &Emulator, retry: RetryBuilder) -> Stack<Emulator> {
    ServiceBuilder::new()
        .layer(retry.build().unwrap())
        .layer(ClassifyLayer::new())
        .layer(AuthLayer::new(ApiKey::new(TEST_KEY).unwrap()))
        .service(api.clone())
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::default()).unwrap()
}

fn post(path: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(path)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn info<B>(res: &Response<B>) -> RetryInfo {
    res.extensions()
        .get::<RetryInfo>()
        .cloned()
        .expect("every final response has a RetryInfo")
}

fn arrivals(api: &Emulator) -> Vec<Duration> {
    let seen = api.requests();
    let first = seen[0].at;
    seen.iter().map(|r| r.at - first).collect()
}

#[tokio::test(start_paused = true)]
async fn a_429_is_retried_after_its_retry_after() {
    let api = Emulator::new();
    api.push(Reply::rate_limited(3));
    let start = Instant::now();
    let res = stack(&api, exact())
        .oneshot(get("/v1/profile"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(start.elapsed(), 3 * S);
    let info = info(&res);
    assert_eq!(
        (info.attempts(), info.waited(), info.last_hint()),
        (2, 3 * S, Some(3 * S))
    );
    assert_eq!(info.stop_reason(), StopReason::Final);
    assert_eq!(arrivals(&api), [Duration::ZERO, 3 * S]);
    // Both attempts carried the key.
    assert!(
        api.requests()
            .iter()
            .all(|r| r.header("x-infoplug-api-key") == Some(TEST_KEY))
    );
}

#[tokio::test(start_paused = true)]
async fn http_date_hints_are_read_against_the_wall_clock() {
    let api = Emulator::new();
    for date in [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
    ] {
        api.push(Reply::status(429).header("retry-after", date));
    }
    // 08:49:30 on that day: each date is 7 s away.
    let clock = || SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_770);
    let client = stack(&api, exact().max_attempts(4).wall_clock(clock));
    let start = Instant::now();
    let res = client.oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(start.elapsed(), 21 * S);
    assert_eq!(arrivals(&api), [Duration::ZERO, 7 * S, 14 * S, 21 * S]);
}

#[tokio::test(start_paused = true)]
async fn a_hint_is_a_floor_plus_bounded_jitter() {
    let api = Emulator::new();
    api.push(Reply::rate_limited(2));
    let client = stack(&api, RetryLayer::builder().jitter(Fixed(0.5)));
    let start = Instant::now();
    client.oneshot(get("/v1/x")).await.unwrap();
    // max(2 s, backoff 50 ms) + half of max(10% of 2 s, 100 ms): with pacing on, the spread
    // keeps one caller off the exact second, and crowds are the pacer's.
    assert_eq!(start.elapsed(), 2 * S + 100 * MS);

    // Pacing off: half of min(2 s, hint_jitter 1 s), as before pacing existed.
    api.push(Reply::rate_limited(2));
    let client = stack(&api, RetryLayer::builder().jitter(Fixed(0.5)).pacing(false));
    let start = Instant::now();
    client.oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(start.elapsed(), 2 * S + 500 * MS);
}

#[tokio::test(start_paused = true)]
async fn zero_past_and_invalid_hints_fall_back_to_backoff() {
    for hint in [
        "0",
        "Thu, 01 Jan 1970 00:00:01 GMT",
        "-5",
        "1.5",
        "soon",
        "99999999999999999999",
    ] {
        let api = Emulator::new();
        api.push(Reply::status(503).header("retry-after", hint));
        let client = stack(&api, RetryLayer::builder().jitter(Fixed(1.0)));
        let start = Instant::now();
        let res = client.oneshot(get("/v1/x")).await.unwrap();
        assert_eq!(res.status(), 200, "{hint}");
        // The first backoff step (100 ms at full jitter), not zero, not the hint.
        assert_eq!(start.elapsed(), 100 * MS, "{hint}");
    }
}

#[test]
fn a_zero_wait_does_not_touch_the_timer() {
    // tokio rounds every sleep up to the next millisecond tick, so `sleep(ZERO)` costs about
    // 1 ms. On a runtime without a timer, creating any sleep panics: a retry with zero waits
    // must complete there.
    let no_timer = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    no_timer.block_on(async {
        let api = Emulator::new();
        api.push_all([Reply::unavailable(), Reply::unavailable()]);
        let client = ServiceBuilder::new()
            .layer(exact().build().unwrap())
            .layer(AuthLayer::new(ApiKey::new(TEST_KEY).unwrap()))
            .service(api.clone());
        let res = client.oneshot(get("/v1/x")).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(info(&res).attempts(), 3);
    });
}

#[tokio::test(start_paused = true)]
async fn a_hint_above_the_cap_or_past_the_deadline_returns_at_once() {
    let api = Emulator::new();
    api.push(Reply::rate_limited(120));
    let start = Instant::now();
    let res = stack(&api, exact()).oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(start.elapsed(), Duration::ZERO);
    let info1 = info(&res);
    assert_eq!(info1.stop_reason(), StopReason::HintTooLong);
    assert_eq!(info1.last_hint(), Some(120 * S));
    assert_eq!(info1.attempts(), 1);
    // The response is whole: classified, body intact.
    assert_eq!(
        res.api_error().unwrap().code(),
        &ErrorCode::RateLimitExceeded
    );
    assert!(!read_body(res.into_body()).await.unwrap().is_empty());

    api.push(Reply::rate_limited(10));
    let res = stack(&api, exact().deadline(5 * S))
        .oneshot(get("/v1/x"))
        .await
        .unwrap();
    assert_eq!(info(&res).stop_reason(), StopReason::DeadlineTooClose);
    assert_eq!(start.elapsed(), Duration::ZERO);

    // A request's own deadline works the same way.
    api.push(Reply::rate_limited(10));
    let mut req = get("/v1/x");
    req.extensions_mut().insert(Deadline::after(3 * S));
    let res = stack(&api, exact()).oneshot(req).await.unwrap();
    assert_eq!(info(&res).stop_reason(), StopReason::DeadlineTooClose);
}

#[tokio::test(start_paused = true)]
async fn the_decision_table_end_to_end() {
    let credits_429 = || Reply::error(429, "insufficient_credits", None, "no credits");
    let cases: Vec<(Method, Reply, u32)> = vec![
        (Method::GET, Reply::status(402), 1),
        (Method::GET, Reply::status(400), 1),
        (Method::GET, Reply::status(404), 1),
        (Method::GET, Reply::status(501), 1),
        (Method::GET, credits_429(), 1),
        (Method::GET, Reply::status(500), 2),
        (Method::GET, Reply::proxy_html(502), 2),
        (Method::GET, Reply::status(504), 2),
        (Method::GET, Reply::unavailable(), 2),
        (Method::POST, Reply::rate_limited(1), 2),
        (Method::POST, Reply::unavailable(), 1),
        (
            Method::POST,
            Reply::unavailable().header("retry-after", "1"),
            2,
        ),
        (Method::POST, Reply::status(500), 1),
        (Method::PATCH, Reply::proxy_html(502), 1),
        (Method::PUT, Reply::status(500), 2),
        (Method::DELETE, Reply::status(503), 2),
    ];
    for (method, reply, attempts) in cases {
        let api = Emulator::new();
        let status = reply.status_code();
        api.push(reply);
        let req = Request::builder()
            .method(method.clone())
            .uri("/v1/search")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let res = stack(&api, exact()).oneshot(req).await.unwrap();
        assert_eq!(info(&res).attempts(), attempts, "{method} {status}");
        assert_eq!(api.request_count() as u32, attempts, "{method} {status}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_idempotency_key_makes_a_post_retryable() {
    let api = Emulator::new();
    api.push(Reply::status(500));
    let mut req = post("/v1/search", "{}");
    req.headers_mut()
        .insert("idempotency-key", "k1".parse().unwrap());
    let res = stack(&api, exact()).oneshot(req).await.unwrap();
    assert_eq!((res.status().as_u16(), info(&res).attempts()), (200, 2));
}

#[tokio::test(start_paused = true)]
async fn max_attempts_bounds_the_retries() {
    let api = Emulator::new();
    api.push_all((0..5).map(|_| Reply::unavailable()));
    let res = stack(&api, exact()).oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(info(&res).stop_reason(), StopReason::AttemptsExhausted);
    assert_eq!(api.request_count(), 3);
}

/// A transport that fails its first calls with the given I/O errors, then answers 200,
/// counting its calls in `counter`.
fn flaky(
    failures: Vec<io::ErrorKind>,
    counter: Arc<AtomicUsize>,
) -> impl Service<
    Request<ReplayBody<Full<Bytes>>>,
    Response = Response<Full<Bytes>>,
    Error = io::Error,
    Future = impl Send,
> + Clone {
    let failures = Arc::new(Mutex::new(VecDeque::from(failures)));
    service_fn(move |_req: Request<ReplayBody<Full<Bytes>>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let next = failures.lock().unwrap().pop_front();
        async move {
            match next {
                Some(kind) => Err(io::Error::from(kind)),
                None => Ok(Response::new(Full::new(Bytes::from_static(b"ok")))),
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn transport_failures_follow_the_table() {
    use io::ErrorKind::{ConnectionRefused, ConnectionReset, TimedOut};
    for (method, kind, calls, ok) in [
        (Method::POST, ConnectionRefused, 2, true),
        (Method::GET, ConnectionRefused, 2, true),
        (Method::GET, ConnectionReset, 2, true),
        (Method::POST, ConnectionReset, 1, false),
        (Method::GET, TimedOut, 2, true),
        (Method::POST, TimedOut, 1, false),
    ] {
        let count = Arc::new(AtomicUsize::new(0));
        let transport = flaky(vec![kind], count.clone());
        let req = Request::builder()
            .method(method.clone())
            .uri("/v1/x")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let result = exact().build().unwrap().layer(transport).oneshot(req).await;
        assert_eq!(result.is_ok(), ok, "{method} {kind:?}");
        assert_eq!(count.load(Ordering::SeqCst), calls, "{method} {kind:?}");
        if let Err(err) = result {
            assert_eq!(err.info().stop_reason(), StopReason::Final);
            assert_eq!(err.into_transport().unwrap().kind(), kind);
        }
    }
    // Failing every time: the transport's own error comes back after the last attempt.
    let count = Arc::new(AtomicUsize::new(0));
    let transport = flaky(vec![ConnectionRefused; 5], count.clone());
    let err = exact()
        .build()
        .unwrap()
        .layer(transport)
        .oneshot(get("/v1/x"))
        .await
        .unwrap_err();
    assert_eq!(err.info().stop_reason(), StopReason::AttemptsExhausted);
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert!(err.to_string().contains("after 3 attempt(s)"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_is_timed_out_and_retried() {
    let api = Emulator::new();
    api.push(Reply::ok("{}").delay(30 * S));
    let client = stack(&api, exact().attempt_timeout(5 * S));
    let start = Instant::now();
    let res = client.clone().oneshot(get("/v1/x")).await.unwrap();
    assert_eq!((res.status().as_u16(), info(&res).attempts()), (200, 2));
    assert_eq!(start.elapsed(), 5 * S);

    // POST is not retried after a timeout: the server may be doing the work.
    api.push(Reply::ok("{}").delay(30 * S));
    let err = client.oneshot(post("/v1/x", "{}")).await.unwrap_err();
    assert!(matches!(err, RetryError::TimedOut { .. }), "{err}");
    assert_eq!(err.info().attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_cooldown_holds_every_request_to_the_origin() {
    let api = Emulator::new();
    api.push(Reply::rate_limited(5));
    let client = stack(&api, RetryLayer::builder());
    let first = tokio::spawn(client.clone().oneshot(get("/v1/a")));
    tokio::time::sleep(S).await;
    // Issued during the window: they wait for it instead of hitting the API.
    let others: Vec<_> = (0..8)
        .map(|_| tokio::spawn(client.clone().oneshot(get("/v1/b"))))
        .collect();
    let res = first.await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
    for other in others {
        let res = other.await.unwrap().unwrap();
        assert_eq!(res.status(), 200);
        assert!(info(&res).waited() >= 4 * S);
    }
    let times = arrivals(&api);
    assert_eq!(times.len(), 10);
    assert!(times[1..].iter().all(|t| *t >= 5 * S), "{times:?}");
    // Released with jitter, not at one instant.
    let mut distinct = times[1..].to_vec();
    distinct.dedup();
    assert!(distinct.len() > 4, "{times:?}");

    // A request whose deadline ends inside a window fails fast, and nothing is sent.
    api.push(Reply::rate_limited(30));
    let waiting = tokio::spawn(client.clone().oneshot(get("/v1/c")));
    tokio::time::sleep(S).await; // its 429 has closed the gate for 30 s
    let before = api.request_count();
    let mut req = get("/v1/d");
    req.extensions_mut().insert(Deadline::after(10 * S));
    let start = Instant::now();
    let err = client.oneshot(req).await.unwrap_err();
    assert!(matches!(err, RetryError::CoolingDown { .. }), "{err}");
    assert_eq!(err.info().attempts(), 0);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(api.request_count(), before);
    waiting.abort();
}

#[tokio::test(start_paused = true)]
async fn a_cooldown_longer_than_the_cap_fails_fast_instead_of_holding_requests() {
    let api = Emulator::new();
    api.push(Reply::rate_limited(300));
    let client = stack(&api, exact());
    let res = client.clone().oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(info(&res).stop_reason(), StopReason::HintTooLong);
    let start = Instant::now();
    let err = client.oneshot(get("/v1/y")).await.unwrap_err();
    assert!(matches!(err, RetryError::CoolingDown { .. }), "{err}");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(api.request_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_fields_are_read_when_enabled() {
    let api = Emulator::new();
    api.push_all([
        Reply::status(429).header("ratelimit", "\"default\";r=0;t=4"),
        Reply::status(429).header("x-ratelimit-reset", "6"),
        Reply::status(429)
            .header("ratelimit", "\"default\";r=0;t=4")
            .header("retry-after", "2"),
    ]);
    let client = stack(
        &api,
        exact()
            .max_attempts(4)
            .rate_limit_headers(true)
            .x_rate_limit_reset(true),
    );
    let res = client.oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(res.status(), 200);
    // t=4, then 6 from X-RateLimit-Reset, then Retry-After: 2 winning over t=4.
    assert_eq!(arrivals(&api), [Duration::ZERO, 4 * S, 10 * S, 12 * S]);

    // Off by default: the same fields give no floor.
    let api = Emulator::new();
    api.push(Reply::status(429).header("ratelimit", "\"default\";r=0;t=4"));
    let res = stack(&api, exact()).oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(info(&res).last_hint(), None);
    assert_eq!(arrivals(&api), [Duration::ZERO, Duration::ZERO]);
}

#[tokio::test(start_paused = true)]
async fn a_trickling_body_delays_the_next_attempt_by_the_drain_bound_at_most() {
    let api = Emulator::new();
    // A 503 whose body comes one byte a second.
    api.push(Reply::unavailable().chunk_delay(S));
    let client = ServiceBuilder::new()
        .layer(exact().drain(64 * 1024, 250 * MS).build().unwrap())
        .layer(AuthLayer::new(ApiKey::new(TEST_KEY).unwrap()))
        .service(api.clone());
    let res = client.oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(arrivals(&api), [Duration::ZERO, 250 * MS]);

    // A body that is there at once is read to its end without any wait.
    let api = Emulator::new();
    api.push(Reply::unavailable());
    let client = ServiceBuilder::new()
        .layer(exact().build().unwrap())
        .layer(AuthLayer::new(ApiKey::new(TEST_KEY).unwrap()))
        .service(api.clone());
    client.oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(arrivals(&api), [Duration::ZERO, Duration::ZERO]);
}

/// A jitter source that returns what no jitter should.
struct Broken(f64);

impl Jitter for Broken {
    fn sample(&self) -> f64 {
        self.0
    }
}

#[tokio::test(start_paused = true)]
async fn a_misbehaving_jitter_source_cannot_break_the_waits() {
    for sample in [f64::NAN, -1.0, 7.0, f64::INFINITY, f64::NEG_INFINITY] {
        let api = Emulator::new();
        api.push(Reply::rate_limited(2));
        let client = stack(&api, RetryLayer::builder().jitter(Broken(sample)));
        // One request takes the 429 and closes the gate; one waits on it (the release spread
        // uses the jitter too).
        let first = tokio::spawn(client.clone().oneshot(get("/v1/a")));
        tokio::time::sleep(S).await;
        let second = client.oneshot(get("/v1/b")).await.unwrap();
        assert_eq!(second.status(), 200, "{sample}");
        let first = first.await.unwrap().unwrap();
        assert_eq!(first.status(), 200, "{sample}");
        let waited = info(&first).waited();
        assert!((2 * S..=3 * S).contains(&waited), "{sample}: {waited:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn huge_durations_from_users_and_servers_do_not_overflow() {
    let api = Emulator::new();
    api.push_all([
        Reply::rate_limited(999_999_999_999),
        Reply::unavailable().header("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),
    ]);
    let client = stack(
        &api,
        exact()
            .deadline(Duration::MAX)
            .max_retry_after(Duration::MAX)
            .drain(usize::MAX, Duration::MAX)
            .hint_jitter(Duration::MAX),
    );
    let mut req = get("/v1/x");
    req.extensions_mut().insert(Deadline::after(Duration::MAX));
    // The first hint is honoured (the cap allows it); the test only needs it not to panic.
    let call = tokio::spawn(client.clone().oneshot(req));
    tokio::time::sleep(S).await;
    assert_eq!(api.request_count(), 1);
    call.abort();
}

#[tokio::test(start_paused = true)]
async fn the_cooldown_is_per_origin_and_can_be_turned_off() {
    let api = Emulator::new();
    let client = stack(&api, exact());
    api.push(Reply::rate_limited(30));
    let res = client
        .clone()
        .oneshot(get("http://a.test/v1/x"))
        .await
        .unwrap();
    assert_eq!(info(&res).stop_reason(), StopReason::Final); // retried after 30 s
    api.push(Reply::rate_limited(50));
    let waiting = tokio::spawn(client.clone().oneshot(get("http://a.test/v1/x")));
    tokio::time::sleep(S).await;
    let start = Instant::now();
    let other = client
        .clone()
        .oneshot(get("http://b.test/v1/x"))
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "another origin is not held"
    );
    waiting.abort();

    let api = Emulator::new();
    api.push(Reply::rate_limited(20));
    let client = stack(&api, exact().shared_cooldown(false));
    let waiting = tokio::spawn(client.clone().oneshot(get("/v1/x")));
    tokio::time::sleep(S).await;
    let start = Instant::now();
    client.oneshot(get("/v1/y")).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    waiting.abort();
}

#[tokio::test(start_paused = true)]
async fn the_budget_is_shared_by_clones() {
    let api = Emulator::new();
    api.push_all((0..10).map(|_| Reply::unavailable()));
    let res = stack(&api, exact().budget(0.0, 0))
        .oneshot(get("/v1/x"))
        .await
        .unwrap();
    assert_eq!(info(&res).stop_reason(), StopReason::BudgetExhausted);
    assert_eq!(api.request_count(), 1);

    // A reserve of 1 retry a second (10 for the window) across 20 clones, during an outage.
    let api = Emulator::new();
    api.push_all((0..100).map(|_| Reply::unavailable()));
    let client = stack(&api, exact().budget(0.0, 1).max_attempts(5));
    let calls: Vec<_> = (0..20)
        .map(|_| tokio::spawn(client.clone().oneshot(get("/v1/x"))))
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), 503);
    }
    assert_eq!(api.request_count(), 20 + 10);
}

#[tokio::test(start_paused = true)]
async fn only_answers_from_a_healthy_server_buy_retries() {
    // A budget of 20% of healthy answers plus 1 retry a second (10 for the window).
    let api = Emulator::builder().no_rate_limit().build();
    let client = stack(&api, exact().budget(0.2, 1).max_attempts(2));
    // One retried GET opens the budget's window; its 200 is one healthy answer.
    api.push(Reply::unavailable());
    client.clone().oneshot(get("/v1/x")).await.unwrap();
    // An outage that begins with 500 final POST 500s (not retried: not idempotent).
    api.set_outage(Some(Reply::status(500)));
    for _ in 0..500 {
        let res = client.clone().oneshot(post("/v1/x", "{}")).await.unwrap();
        assert_eq!(info(&res).attempts(), 1);
    }
    let before = api.request_count();
    // Then 100 GETs: the 500s bought no retries, so only the reserve (less the one spent)
    // and a fifth of the single 200 are left, not another hundred.
    api.set_outage(Some(Reply::unavailable()));
    for _ in 0..100 {
        client.clone().oneshot(get("/v1/x")).await.unwrap();
    }
    let retries = api.request_count() - before - 100;
    assert_eq!(retries, 9, "{retries} retries");
}

/// A streaming request body with no length, as a proxy or an upload would send.
struct Streaming(VecDeque<&'static [u8]>);

/// The same, with data that is not `Bytes`: the replay buffer copies it.
struct Slices(VecDeque<&'static [u8]>);

impl Body for Slices {
    type Data = &'static [u8];
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<&'static [u8]>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
    }
}

impl Body for Streaming {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.0
                .pop_front()
                .map(|c| Ok(Frame::data(Bytes::from_static(c)))),
        )
    }
}

#[tokio::test(start_paused = true)]
async fn streaming_bodies_are_replayed_byte_identical_or_sent_once() {
    let api = Emulator::new();
    api.push_all([Reply::rate_limited(1), Reply::rate_limited(1)]);
    let client = ServiceBuilder::new()
        .layer(exact().build().unwrap())
        .layer(AuthLayer::new(ApiKey::new(TEST_KEY).unwrap()))
        .service(api.clone());
    let body = Streaming(VecDeque::from([&b"{\"q\":"[..], b"\"rust\"", b"}"]));
    let res = client
        .clone()
        .oneshot(Request::post("/v1/search").body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let bodies: Vec<_> = api.requests().iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies, vec![Bytes::from_static(b"{\"q\":\"rust\"}"); 3]);

    // Copied data past the replay bound: sent once, whole, and not retried.
    let api = Emulator::new();
    api.push(Reply::rate_limited(1));
    let client = ServiceBuilder::new()
        .layer(exact().replay_limit(8).build().unwrap())
        .layer(AuthLayer::new(ApiKey::new(TEST_KEY).unwrap()))
        .service(api.clone());
    let body = Slices(VecDeque::from([&b"{\"q\":"[..], b"\"rust\"", b"}"]));
    let res = client
        .oneshot(Request::post("/v1/search").body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(info(&res).stop_reason(), StopReason::BodyNotReplayable);
    assert_eq!(api.request_count(), 1);
    assert_eq!(&api.requests()[0].body[..], b"{\"q\":\"rust\"}");
}

#[tokio::test(start_paused = true)]
async fn bytes_bodies_past_the_replay_bound_are_retried_without_a_copy() {
    // 100 KiB, over the 64 KiB bound: `Bytes` data is kept by reference, so the bound (which
    // is for copied bytes) does not stop the retry.
    let payload = Bytes::from(format!("{{\"x\":\"{}\"}}", "7".repeat(100 * 1024)));
    for first in [Reply::unavailable(), Reply::rate_limited(1)] {
        let api = Emulator::builder().no_rate_limit().build();
        api.push(first);
        let res = stack(&api, exact())
            .oneshot(
                Request::put("/v1/lists/1")
                    .body(Full::new(payload.clone()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(info(&res).attempts(), 2);
        let bodies: Vec<_> = api.requests().iter().map(|r| r.body.clone()).collect();
        assert_eq!(bodies, [payload.clone(), payload.clone()]);
    }
    // A body of countless tiny frames is still bounded: each kept frame costs its
    // bookkeeping against the limit.
    let api = Emulator::new();
    api.push(Reply::rate_limited(1));
    let tiny: VecDeque<&'static [u8]> = (0..4096).map(|_| &b"x"[..]).collect();
    let res = stack(&api, exact())
        .oneshot(Request::put("/v1/lists/1").body(Streaming(tiny)).unwrap())
        .await
        .unwrap();
    assert_eq!(info(&res).stop_reason(), StopReason::BodyNotReplayable);
    assert_eq!(api.requests()[0].body.len(), 4096);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_stops_everything() {
    let api = Emulator::new();
    api.push(Reply::rate_limited(5));
    let tasks_before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let call = stack(&api, exact()).oneshot(get("/v1/x"));
    assert!(
        tokio::time::timeout(S, call).await.is_err(),
        "still waiting on the hint"
    );
    assert_eq!(api.request_count(), 1);
    tokio::time::sleep(60 * S).await;
    assert_eq!(api.request_count(), 1, "no attempt after the drop");
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        tasks_before
    );
}

#[tokio::test(start_paused = true)]
async fn readiness_is_asked_again_so_limits_and_buffers_compose() {
    let api = Emulator::new();
    api.push_all([Reply::rate_limited(2), Reply::unavailable()]);
    let client = ServiceBuilder::new()
        .buffer(8)
        .layer(exact().build().unwrap())
        .concurrency_limit(1)
        .layer(ClassifyLayer::new())
        .layer(AuthLayer::new(ApiKey::new(TEST_KEY).unwrap()))
        .service(api.clone());
    let calls: Vec<_> = (0..4)
        .map(|i| tokio::spawn(client.clone().oneshot(get(&format!("/v1/{i}")))))
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(api.request_count(), 6);
}

#[tokio::test(start_paused = true)]
async fn the_preset_stacks_all_three_layers() {
    let api = Emulator::new();
    api.push_all([Reply::rate_limited(1), Reply::echoing_key(401)]);
    let client = InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), "http://api.test")
        .retry(|r| r.max_attempts(5))
        .build()
        .unwrap()
        .layer(api.clone());
    let res = client
        .clone()
        .oneshot(get("http://api.test/v1/x"))
        .await
        .unwrap();
    let err = res.api_error().unwrap();
    assert_eq!(err.code(), &ErrorCode::Unauthorized);
    assert!(!err.to_string().contains(TEST_KEY));
    assert_eq!(info(&res).attempts(), 2);
    // Another origin gets no key, through the whole stack.
    client
        .oneshot(get("http://elsewhere.test/v1/x"))
        .await
        .unwrap();
    assert_eq!(api.requests()[2].header("x-infoplug-api-key"), None);
    assert!(InfoPlugLayer::new(ApiKey::new(TEST_KEY).unwrap(), "not a url").is_err());
}

#[test]
fn the_stack_and_its_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    fn sync<T: Sync>(_: &T) {}
    let client = common::http_client_for::<ReplayBody<Full<Bytes>>>();
    let mut stack = InfoPlugLayer::new(ApiKey::new(TEST_KEY).unwrap(), "http://127.0.0.1:9")
        .unwrap()
        .layer(client);
    send(&stack);
    sync(&stack);
    let future = stack.call(
        Request::get("http://127.0.0.1:9/")
            .body(Full::<Bytes>::default())
            .unwrap(),
    );
    send(&future);
    drop(future);
}

mod loopback {
    //! The same rules over real HTTP: hyper-util's client against the emulator on 127.0.0.1.
    //! Real time here, so every wait is a fraction of a second: hints are HTTP-dates read
    //! against a wall clock set just before them.

    use super::*;

    /// A wall clock `lead` before the date the emulator will name.
    fn clock_before(
        date: SystemTime,
        lead: Duration,
    ) -> impl Fn() -> SystemTime + Send + Sync + 'static {
        move || date - lead
    }

    type HttpClient = hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        ReplayBody<Full<Bytes>>,
    >;

    fn client(
        retry: RetryBuilder,
        server: &tower_infoplug::mock::EmulatorServer,
    ) -> Stack<HttpClient> {
        InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), &server.base_url())
            .retry(|_| retry.backoff(MS, 5 * MS))
            .build()
            .unwrap()
            .layer(common::http_client_for::<ReplayBody<Full<Bytes>>>())
    }

    fn date_reply(date: SystemTime) -> Reply {
        Reply::status(429).header("retry-after", &httpdate::fmt_http_date(date))
    }

    fn date() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000)
    }

    #[cfg(feature = "decompress")]
    #[tokio::test]
    async fn a_compressed_body_still_vetoes_a_retry_and_reaches_the_caller_as_sent() {
        use std::io::Write;
        let api = Emulator::new();
        let server = api.serve().await.unwrap();
        let client = client(exact(), &server);
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gzip.write_all(br#"{"message":"insufficient_credits","details":"Top up"}"#)
            .unwrap();
        let gzipped = Bytes::from(gzip.finish().unwrap());
        api.push(
            Reply::json(429, gzipped.clone())
                .header("content-encoding", "gzip")
                .header("retry-after", "1")
                .chunked(3),
        );
        let res = client
            .clone()
            .oneshot(get(server.uri("/v1/x").unwrap().to_string().as_str()))
            .await
            .unwrap();
        assert_eq!(res.status(), 429);
        assert_eq!(info(&res).attempts(), 1, "the body's veto was read");
        let err = res.api_error().unwrap();
        assert_eq!(err.code(), &ErrorCode::InsufficientCredits);
        assert_eq!(err.details(), Some("Top up"));
        assert_eq!(read_body(res.into_body()).await.unwrap(), gzipped);

        // A coding this crate does not know: not parsed, and not retried on a guess.
        api.push(
            Reply::json(429, Bytes::from_static(b"(zstd bytes)"))
                .header("content-encoding", "zstd")
                .header("retry-after", "1"),
        );
        let res = client
            .oneshot(get(server.uri("/v1/x").unwrap().to_string().as_str()))
            .await
            .unwrap();
        assert_eq!(info(&res).attempts(), 1);
        let err = res.api_error().unwrap();
        assert_eq!(
            err.body_issue(),
            Some(&tower_infoplug::BodyIssue::Encoded {
                encoding: "zstd".to_owned()
            })
        );
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn a_429_then_200_honours_the_hint() {
        let api = Emulator::new();
        let server = api.serve().await.unwrap();
        api.push(date_reply(date()));
        let client = client(exact().wall_clock(clock_before(date(), 300 * MS)), &server);
        let res = client
            .oneshot(get(&server.uri("/v1/x").unwrap().to_string()))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(info(&res).last_hint(), Some(300 * MS));
        let gap = arrivals(&api)[1];
        assert!(gap >= 300 * MS, "{gap:?}");
    }

    #[tokio::test]
    async fn a_503_storm_is_ridden_out_and_a_402_is_final() {
        let api = Emulator::new();
        let server = api.serve().await.unwrap();
        api.push_all([
            Reply::unavailable(),
            Reply::proxy_html(502),
            Reply::unavailable(),
        ]);
        let client = client(exact().max_attempts(4), &server);
        let res = client
            .clone()
            .oneshot(get(&server.uri("/v1/x").unwrap().to_string()))
            .await
            .unwrap();
        assert_eq!((res.status().as_u16(), info(&res).attempts()), (200, 4));

        api.set_credits(0);
        let res = client
            .oneshot(get(&server.uri("/v1/x").unwrap().to_string()))
            .await
            .unwrap();
        assert_eq!(
            res.api_error().unwrap().code(),
            &ErrorCode::InsufficientCredits
        );
        assert_eq!(info(&res).attempts(), 1);
        assert_eq!(api.request_count(), 5);
    }

    #[tokio::test]
    async fn post_bodies_are_resent_identical_and_unsafe_failures_are_not_retried() {
        let api = Emulator::new();
        let server = api.serve().await.unwrap();
        api.push_all([date_reply(date()), Reply::status(500)]);
        let client = client(exact().wall_clock(clock_before(date(), 50 * MS)), &server);
        let uri = server.uri("/v1/search").unwrap().to_string();
        let res = client
            .clone()
            .oneshot(post(&uri, "{\"q\":\"tower\"}"))
            .await
            .unwrap();
        // 429 retried (the server did no work); the 500 to a POST is final.
        assert_eq!((res.status().as_u16(), info(&res).attempts()), (500, 2));
        let bodies: Vec<_> = api.requests().iter().map(|r| r.body.clone()).collect();
        assert_eq!(bodies, vec![Bytes::from_static(b"{\"q\":\"tower\"}"); 2]);
    }

    #[tokio::test]
    async fn the_server_sees_nothing_during_a_cooldown() {
        let api = Emulator::new();
        let server = api.serve().await.unwrap();
        api.push(date_reply(date()));
        let client = client(exact().wall_clock(clock_before(date(), 400 * MS)), &server);
        let uri = server.uri("/v1/x").unwrap().to_string();
        let first = tokio::spawn(client.clone().oneshot(get(&uri)));
        while api.request_count() == 0 {
            tokio::time::sleep(MS).await;
        }
        tokio::time::sleep(50 * MS).await;
        let others: Vec<_> = (0..5)
            .map(|_| tokio::spawn(client.clone().oneshot(get(&uri))))
            .collect();
        assert_eq!(first.await.unwrap().unwrap().status(), 200);
        for other in others {
            assert_eq!(other.await.unwrap().unwrap().status(), 200);
        }
        let times = arrivals(&api);
        assert_eq!(times.len(), 7);
        assert!(times[1..].iter().all(|t| *t >= 400 * MS), "{times:?}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried_and_reported() {
        // A port nobody listens on: bind, note it, close.
        let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let client =
            InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), &format!("http://{addr}"))
                .retry(|r| r.backoff(MS, 5 * MS))
                .build()
                .unwrap()
                .layer(common::http_client_for::<ReplayBody<Full<Bytes>>>());
        let err = client
            .clone()
            .oneshot(post(&format!("http://{addr}/v1/x"), "{}"))
            .await
            .unwrap_err();
        assert_eq!(
            err.info().attempts(),
            3,
            "refused connections are retried even for POST"
        );
        assert_eq!(err.info().stop_reason(), StopReason::AttemptsExhausted);

        // So is a 100 KiB `Full<Bytes>` body, over the replay bound: kept by reference.
        let big = Bytes::from(vec![b'7'; 100 * 1024]);
        let req = Request::put(format!("http://{addr}/v1/x"))
            .body(Full::new(big))
            .unwrap();
        let err = client.oneshot(req).await.unwrap_err();
        assert_eq!(err.info().attempts(), 3);
        assert_eq!(err.info().stop_reason(), StopReason::AttemptsExhausted);
    }
}
