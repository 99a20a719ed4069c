//! Server hints: `Retry-After` in every form, the optional rate-limit fields, the floor and
//! its spread, the cap, and waits that must never overflow or touch a timer needlessly.

use super::*;

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

/// Hint forms servers send beyond the RFC's, through the whole stack: fractional seconds, a
/// date in `UTC` or `+0000`, a server's own reset header once named. Before, each was
/// ignored and the retry went at its backoff alone (at once, with no jitter).
#[tokio::test(start_paused = true)]
async fn fractional_seconds_utc_dates_and_named_reset_headers_are_waited_for() {
    let api = Emulator::new();
    api.push_all([
        Reply::status(429).header("retry-after", "1.5"),
        Reply::status(429).header("retry-after", "Sun, 06 Nov 1994 08:49:37 UTC"),
        Reply::status(429).header("retry-after", "Sun, 06 Nov 1994 08:49:37 +0000"),
        Reply::status(429).header("x-app-reset-ms", "2500"),
    ]);
    // 08:49:30 on that day: each date is 7 s away.
    let clock = || SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_770);
    let retry = exact()
        .max_attempts(5)
        .wall_clock(clock)
        .reset_headers(&[("x-app-reset-ms", ResetFormat::Milliseconds)]);
    let res = stack(&api, retry).oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(res.status(), 200);
    let ms = Duration::from_millis;
    assert_eq!(
        arrivals(&api),
        [
            Duration::ZERO,
            ms(1500),
            ms(1500) + 7 * S,
            ms(1500) + 14 * S,
            ms(4000) + 14 * S
        ]
    );
}

/// A vendor's verdict header, once named, overrides the status table through the stack: a
/// POST answered 500 with `Stripe-Should-Retry: true` is retried.
#[tokio::test(start_paused = true)]
async fn a_named_verdict_header_is_heard() {
    let api = Emulator::new();
    api.push(Reply::status(500).header("stripe-should-retry", "true"));
    const STRIPE: &VerdictHeaders = &VerdictHeaders::new(&["stripe-should-retry"]);
    let policy = DefaultPolicy::new().verdict_headers(STRIPE);
    let res = stack(&api, exact().policy(policy))
        .oneshot(post("/v1/x", "{}"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(api.request_count(), 2);
    // Not named, the same answer ends the POST.
    api.push(Reply::status(500).header("stripe-should-retry", "true"));
    let res = stack(&api, exact())
        .oneshot(post("/v1/x", "{}"))
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(api.request_count(), 3);
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
        "1.",
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

    // Off by default: the same fields give no floor; the retry waits only the pacer's first
    // interval (a refusal without a hint came less than one after an admitted request).
    let api = Emulator::new();
    api.push(Reply::status(429).header("ratelimit", "\"default\";r=0;t=4"));
    let res = stack(&api, exact()).oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(info(&res).last_hint(), None);
    assert_eq!(arrivals(&api), [Duration::ZERO, Duration::from_millis(250)]);
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
async fn retry_after_ms_is_honoured_to_the_millisecond_under_the_same_cap() {
    let api = Emulator::new();
    api.push(
        Reply::status(429)
            .header("retry-after", "2")
            .header("retry-after-ms", "1250.5"),
    );
    let start = Instant::now();
    let res = stack(&api, exact()).oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(start.elapsed(), 1251 * MS);
    assert_eq!(info(&res).last_hint(), Some(1251 * MS));

    // Off: the whole-second field is read, as before.
    api.push(
        Reply::status(429)
            .header("retry-after", "2")
            .header("retry-after-ms", "1250"),
    );
    let start = Instant::now();
    let client = stack(&api, exact().retry_after_ms(false));
    client.oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(start.elapsed(), 2 * S);

    // Past max_retry_after the response comes back at once, like any hint too long.
    api.push(Reply::status(429).header("retry-after-ms", "90000"));
    let start = Instant::now();
    let res = stack(&api, exact()).oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(
        (res.status().as_u16(), start.elapsed()),
        (429, Duration::ZERO)
    );
    assert_eq!(info(&res).stop_reason(), StopReason::HintTooLong);
}

#[tokio::test(start_paused = true)]
async fn x_should_retry_vetoes_a_429_and_vouches_for_a_409() {
    let api = Emulator::new();
    api.push(Reply::rate_limited(1).header("x-should-retry", "false"));
    let res = stack(&api, exact()).oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(api.requests().len(), 1, "the server said not to retry");

    // A vetoed 429 closes no gate: the next request goes at once.
    let start = Instant::now();
    let res = stack(&api, exact()).oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(
        (res.status().as_u16(), start.elapsed()),
        (200, Duration::ZERO)
    );

    // `true` on a status the table would not retry, even for a POST.
    api.push(Reply::status(409).header("x-should-retry", "true"));
    let res = stack(&api, exact())
        .oneshot(
            Request::post("/v1/x")
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(info(&res).attempts(), 2);

    // Turned off in the table's options, the header is not read.
    api.push(Reply::status(409).header("x-should-retry", "true"));
    let policy = DefaultPolicy::new().should_retry_header(false);
    let res = stack(&api, exact().policy(policy))
        .oneshot(get("/v1/x"))
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
}
