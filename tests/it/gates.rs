//! The shared gate and the pacing: no hint locks an origin out, no request sleeps past its cap,
//! one tenant's 429 holds no other, and a quota is paced rather than hit. Paused time, against
//! the emulator in memory.
use crate::common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Fixed, exact, get, info};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};
use tower_infoplug::retry::{RetryError, RetryLayer, StopReason};
use tower_infoplug::{ApiKey, AuthLayer, ClassifyLayer};
use tower_infoplug_mock::{Emulator, Quota, Reply, TEST_KEY};

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

/// Retry over classify over auth, over `api`, from one layer (so stacks built from it share
/// its gates).
/// [`stack_of`] with 20 ms to the server and 20 ms back: a crowd is on its way before any
/// answer comes.
fn far_stack_of(
    layer: &RetryLayer,
    api: &Emulator,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<tower_infoplug::classify::ClassifyBody<tower_infoplug_mock::MockBody>>,
    Error = RetryError<std::convert::Infallible>,
    Future: Send,
> + Clone
+ use<> {
    ServiceBuilder::new()
        .layer(layer.clone())
        .layer(ClassifyLayer::new())
        .layer(AuthLayer::new(ApiKey::new(TEST_KEY).unwrap()))
        .map_future(|answer| async move {
            tokio::time::sleep(20 * MS).await;
            let answer = answer.await;
            tokio::time::sleep(20 * MS).await;
            answer
        })
        .service(api.clone())
}

fn stack_of(
    layer: &RetryLayer,
    api: &Emulator,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<tower_infoplug::classify::ClassifyBody<tower_infoplug_mock::MockBody>>,
    Error = RetryError<std::convert::Infallible>,
    Future: Send,
> + Clone
+ use<> {
    ServiceBuilder::new()
        .layer(layer.clone())
        .layer(ClassifyLayer::new())
        .layer(AuthLayer::new(ApiKey::new(TEST_KEY).unwrap()))
        .service(api.clone())
}

fn as_tenant(key: &str) -> Request<Full<Bytes>> {
    Request::get("https://api.test/v1/x")
        .header("x-infoplug-api-key", key)
        .body(Full::default())
        .unwrap()
}

fn cooling(err: &RetryError<std::convert::Infallible>) -> (StatusCode, Duration) {
    match err {
        RetryError::CoolingDown { status, info } => {
            assert_eq!(info.stop_reason(), StopReason::CoolingDown);
            (*status, info.retry_after().unwrap())
        }
        other => panic!("not a cooldown: {other}"),
    }
}

#[tokio::test(start_paused = true)]
async fn no_hint_however_long_locks_the_origin_out() {
    let hour_hints = [
        Reply::rate_limited(999_999_999_999),
        Reply::status(429).header("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),
        Reply::status(429).header("x-ratelimit-reset", "99999999999"),
        Reply::status(429).header("ratelimit", "\"default\";r=0;t=999999999"),
    ];
    for hint in hour_hints {
        let api = Emulator::new();
        let layer = exact()
            .max_cooldown(5 * S)
            .rate_limit_headers(true)
            .x_rate_limit_reset(true)
            .build()
            .unwrap();
        api.push(hint);
        let res = stack_of(&layer, &api).oneshot(get("/v1/x")).await.unwrap();
        assert_eq!(info(&res).stop_reason(), StopReason::HintTooLong);

        // Meanwhile: refused at once, saying how long the server asked for and with what.
        let start = Instant::now();
        let err = stack_of(&layer, &api)
            .oneshot(get("/v1/x"))
            .await
            .unwrap_err();
        let (status, asked) = cooling(&err);
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(asked > 365 * 24 * 3600 * S, "{asked:?}");
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(api.request_count(), 1);

        // After max_cooldown, a probe goes; its 200 reopens the origin for everyone, a stack
        // built afterwards from the same layer included.
        tokio::time::advance(5 * S).await;
        let res = stack_of(&layer, &api).oneshot(get("/v1/x")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let res = stack_of(&layer, &api).oneshot(get("/v1/x")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(api.request_count(), 3);
    }
}

#[tokio::test(start_paused = true)]
async fn a_paced_partition_is_not_locked_out_by_a_long_hint_either() {
    // Paced at a stated 4 a second, then a 429 asking for an hour: the pacing must not hold
    // the partition longer than the gate may (it held it for the hour before).
    let api = Emulator::builder().no_rate_limit().build();
    let layer = exact()
        .max_cooldown(5 * S)
        .rate_limit_headers(true)
        .build()
        .unwrap();
    api.push(
        Reply::rate_limited(1)
            .header("ratelimit", "\"default\";r=0;t=1")
            .header("ratelimit-policy", "\"default\";q=4;w=1"),
    );
    let res = stack_of(&layer, &api).oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    api.push(Reply::rate_limited(3600));
    let res = stack_of(&layer, &api).oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(info(&res).stop_reason(), StopReason::HintTooLong);
    let err = stack_of(&layer, &api)
        .oneshot(get("/v1/x"))
        .await
        .unwrap_err();
    assert_eq!(cooling(&err).1, 3600 * S);

    // After max_cooldown, the probe goes and its 200 reopens the partition.
    tokio::time::advance(5 * S).await;
    let start = Instant::now();
    let res = stack_of(&layer, &api).oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(start.elapsed() <= S, "{:?}", start.elapsed());
    assert_eq!(api.request_count(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_meets_another_long_hint_shuts_the_gate_again() {
    let api = Emulator::new();
    let layer = exact().max_cooldown(2 * S).build().unwrap();
    let client = stack_of(&layer, &api);
    api.push_all([Reply::rate_limited(3600), Reply::rate_limited(3600)]);
    client.clone().oneshot(get("/v1/x")).await.unwrap();
    tokio::time::advance(2 * S).await;
    // The probe: answered with another hour.
    let res = client.clone().oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // Shut again by the same rule, for max_cooldown.
    let err = client.clone().oneshot(get("/v1/x")).await.unwrap_err();
    assert_eq!(cooling(&err).0, StatusCode::TOO_MANY_REQUESTS);
    tokio::time::advance(2 * S).await;
    assert_eq!(
        client.oneshot(get("/v1/x")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(api.request_count(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_meets_another_requests_long_gate_returns_at_once() {
    let api = Emulator::new();
    let layer = exact().build().unwrap();
    let client = stack_of(&layer, &api);
    // The GET's 500 comes back after a second; meanwhile another request's 429 asks for an
    // hour.
    api.push_all([
        Reply::status(500).delay(S),
        Reply::status(503).header("retry-after", "3600"),
    ]);
    let start = Instant::now();
    let slow = tokio::spawn(client.clone().oneshot(get("/v1/slow")));
    tokio::task::yield_now().await;
    let res = client.clone().oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(info(&res).stop_reason(), StopReason::HintTooLong);
    assert_eq!(info(&res).retry_after(), Some(3600 * S));

    let res = slow.await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(start.elapsed(), S, "not the hour");
    let info = info(&res);
    assert_eq!(info.stop_reason(), StopReason::CoolingDown);
    assert_eq!(info.retry_after(), Some(3599 * S));
    assert_eq!(api.request_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_vetoed_429_closes_no_gate() {
    let api = Emulator::new();
    let layer = exact().build().unwrap();
    let client = stack_of(&layer, &api);
    api.push(Reply::error(429, "insufficient_credits", None, "Top up").header("retry-after", "30"));
    let res = client.clone().oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(info(&res).stop_reason(), StopReason::Final);
    let start = Instant::now();
    let res = client.oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn one_tenants_429_holds_no_other_tenant() {
    let api = Emulator::builder().no_rate_limit().build();
    let layer = exact().build().unwrap();
    let client = stack_of(&layer, &api);
    api.push(Reply::rate_limited(30));
    let tenant_a = tokio::spawn(client.clone().oneshot(as_tenant("ip_tenant_a")));
    tokio::time::sleep(S).await;

    // Another tenant goes at once (the emulator does not know its key: a 401, but sent).
    let start = Instant::now();
    let res = client
        .clone()
        .oneshot(as_tenant("ip_tenant_b"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(start.elapsed(), Duration::ZERO);
    // The layer's own key (no tenant header) is another partition too.
    let res = client.clone().oneshot(get("https://api.test/v1/x")).await;
    assert_eq!(res.unwrap().status(), StatusCode::OK);
    assert_eq!(start.elapsed(), Duration::ZERO);

    // The same tenant waits for its own gate.
    let res = client.oneshot(as_tenant("ip_tenant_a")).await.unwrap();
    assert!(info(&res).waited() >= 28 * S, "{:?}", info(&res));
    tenant_a.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_policy_with_quota_left_names_no_wait() {
    let api = Emulator::new();
    let layer = exact().rate_limit_headers(true).build().unwrap();
    api.push(Reply::status(429).header("ratelimit", "\"burst\";r=0;t=1, \"daily\";r=900;t=86000"));
    let start = Instant::now();
    let res = stack_of(&layer, &api).oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(info(&res).last_hint(), Some(S));
    assert_eq!(start.elapsed(), S);
}

#[tokio::test(start_paused = true)]
async fn a_lone_request_waits_its_hint_plus_at_most_a_tenth_or_100_ms() {
    for (hint, most) in [(1, 1100 * MS), (5, 5500 * MS)] {
        let api = Emulator::new();
        api.push(Reply::rate_limited(hint));
        // The largest spread a jitter sample can give.
        let layer = RetryLayer::builder().jitter(Fixed(1.0)).build().unwrap();
        let start = Instant::now();
        let res = stack_of(&layer, &api).oneshot(get("/v1/x")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(start.elapsed(), most, "Retry-After: {hint}");
    }
}

/// `n` requests to `path`, `in_flight` at a time, each as soon as the last of its lane ends;
/// returns the makespan and how many ended in a 200.
async fn batch<S>(client: S, path: &'static str, n: usize, in_flight: usize) -> (Duration, usize)
where
    S: tower::Service<
            Request<Full<Bytes>>,
            Response = Response<
                tower_infoplug::classify::ClassifyBody<tower_infoplug_mock::MockBody>,
            >,
            Error = RetryError<std::convert::Infallible>,
            Future: Send,
        > + Clone
        + Send
        + 'static,
{
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let lanes: Vec<_> = (0..in_flight)
        .map(|_| {
            let (client, next) = (client.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                let mut ok = 0;
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                    let res = client.clone().oneshot(get(path)).await;
                    ok += usize::from(res.is_ok_and(|r| r.status() == StatusCode::OK));
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for lane in lanes {
        ok += lane.await.unwrap();
    }
    (start.elapsed(), ok)
}

fn rejected(api: &Emulator) -> usize {
    // What the server turned away: every request it saw beyond those it admitted.
    api.request_count() - (1000 - api.credits() as usize)
}

#[tokio::test(start_paused = true)]
async fn a_quota_is_paced_instead_of_hit_window_after_window() {
    // 20 requests a second; 120 requests, 20 in flight: the ideal is 6 s.
    for quota in [
        Quota::fixed_window(20, S),
        Quota::token_bucket(20, 20),
        Quota::sliding_window(20, S),
    ] {
        let run = |pacing: bool| async move {
            let api = Emulator::builder().quota(quota).build();
            let layer = RetryLayer::builder()
                .jitter(Fixed(0.5))
                .pacing(pacing)
                .max_attempts(10)
                .build()
                .unwrap();
            let (makespan, ok) = batch(stack_of(&layer, &api), "/v1/x", 120, 20).await;
            (makespan, ok, rejected(&api))
        };
        let (paced, ok, paced_rejected) = run(true).await;
        assert_eq!(ok, 120, "{quota:?}");
        // The first 429 shuts the gate for the rest of the first window (in memory, nothing
        // else is in flight then); after that, the pacer keeps to the quota.
        assert!(
            paced_rejected <= 2,
            "{quota:?}: {paced_rejected} turned away"
        );
        assert!(paced <= 6 * S + 100 * MS, "{quota:?}: {paced:?}");

        let (unpaced, ok, unpaced_rejected) = run(false).await;
        assert_eq!(ok, 120, "{quota:?}");
        assert!(
            unpaced_rejected > 2 * paced_rejected,
            "{quota:?}: paced {paced_rejected}, unpaced {unpaced_rejected}"
        );
        assert!(paced < unpaced, "{quota:?}: {paced:?} vs {unpaced:?}");
    }
}

/// An emulator whose next answer is a 429 stating a quota of `per_second`, and a layer that
/// reads the rate-limit fields or not.
fn after_a_stated_quota(per_second: u32, read_fields: bool) -> (Emulator, RetryLayer) {
    let api = Emulator::builder().no_rate_limit().build();
    api.push(
        Reply::rate_limited(1)
            .header("ratelimit", "\"default\";r=0;t=1")
            .header(
                "ratelimit-policy",
                &format!("\"default\";q={per_second};w=1"),
            ),
    );
    (
        api,
        exact().rate_limit_headers(read_fields).build().unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_stated_quota_sets_the_pace_directly() {
    for read_fields in [true, false] {
        let (api, layer) = after_a_stated_quota(4, read_fields);
        let client = stack_of(&layer, &api);
        let first = tokio::spawn(client.clone().oneshot(get("/v1/x")));
        tokio::time::sleep(500 * MS).await;
        let rest: Vec<_> = (0..7)
            .map(|_| tokio::spawn(client.clone().oneshot(get("/v1/x"))))
            .collect();
        first.await.unwrap().unwrap();
        for call in rest {
            assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
        }
        let seen = api.requests();
        let times: Vec<_> = seen[1..].iter().map(|r| r.at - seen[0].at).collect();
        if read_fields {
            // `q=4;w=1`: four a second from the moment the server named.
            let expected: Vec<_> = (0..8).map(|i| S + i * 250 * MS).collect();
            assert_eq!(times, expected);
        } else {
            // Nothing measured and nothing stated: no pacing, only the spread of the wait.
            assert!(times.iter().all(|t| *t == S), "{times:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_loopback_a_quota_costs_one_burst_of_429s_and_every_request_gets_its_200() {
    const N: usize = 100;
    const IN_FLIGHT: usize = 10;
    let api = Emulator::builder()
        .quota(Quota::fixed_window(50, S))
        .build();
    let server = api.serve().await.unwrap();
    let layer =
        tower_infoplug::InfoPlugLayer::new(ApiKey::new(TEST_KEY).unwrap(), &server.base_url())
            .unwrap();
    let client = tower::Layer::layer(
        &layer,
        common::http_client_for::<tower_infoplug::retry::ReplayBody<Full<Bytes>>>(),
    );
    let uri = server.uri("/v1/x").unwrap().to_string();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let lanes: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (client, next, uri) = (client.clone(), Arc::clone(&next), uri.clone());
            tokio::spawn(async move {
                let mut ok = 0;
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < N {
                    let req = Request::get(uri.as_str()).body(Full::default()).unwrap();
                    let res = client.clone().oneshot(req).await.unwrap();
                    ok += usize::from(res.status() == StatusCode::OK);
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for lane in lanes {
        ok += lane.await.unwrap();
    }
    assert_eq!(ok, N);
    // At most what was in flight when the first window ran out: the gate holds everyone
    // else back, and the pacer keeps the later windows under the quota. (That the pacing is
    // what keeps them there is shown in paused time above; over loopback, the gate alone
    // comes close.)
    assert!(
        rejected(&api) <= IN_FLIGHT,
        "{} turned away",
        rejected(&api)
    );
}

#[tokio::test(start_paused = true)]
async fn a_paced_partition_follows_the_quota_the_server_says_is_left() {
    for read_fields in [true, false] {
        // A 429 that states a quota of 100 a second starts the pacing; then every answer
        // says two requests are left for the next second.
        let (api, layer) = after_a_stated_quota(100, read_fields);
        let client = stack_of(&layer, &api);
        api.set_outage(Some(
            Reply::ok("{}").header("ratelimit", "\"default\";r=2;t=1"),
        ));
        for _ in 0..5 {
            let res = client.clone().oneshot(get("/v1/x")).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
        }
        let seen = api.requests();
        let gaps: Vec<_> = seen.windows(2).skip(2).map(|w| w[1].at - w[0].at).collect();
        if read_fields {
            // Two left until a reset a second away: never a third request within a second
            // of the one two before it (the allowance replaces the pace the refusal set).
            let after: Vec<_> = seen.iter().skip(2).map(|r| r.at).collect();
            assert!(after.windows(3).all(|w| w[2] - w[0] >= S), "{gaps:?}");
        } else {
            // Without the fields nothing is measured or stated: no pacing at all.
            assert!(gaps.iter().all(|g| g.is_zero()), "{gaps:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_response_says_what_is_left_of_the_quota() {
    use tower_infoplug::ResponseExt;
    let api = Emulator::builder()
        .quota(Quota::fixed_window(3, 10 * S))
        .rate_limit_headers(true)
        .build();
    let client = stack_of(&exact().build().unwrap(), &api);
    let mut left = Vec::new();
    for _ in 0..3 {
        let res = client.clone().oneshot(get("/v1/x")).await.unwrap();
        let status = res.rate_limit().expect("the emulator states its quota");
        assert_eq!(status.limit(), Some(3));
        assert!(status.reset().is_some_and(|r| r <= 10 * S));
        left.push(status.remaining());
    }
    assert_eq!(left, [2, 1, 0]);
    // Without the fields, nothing is made up.
    let plain = Emulator::new();
    let res = stack_of(&exact().build().unwrap(), &plain)
        .oneshot(get("/v1/x"))
        .await
        .unwrap();
    assert!(res.rate_limit().is_none());
}

/// A leaky bucket as nginx's `limit_req` keeps it, 20 a second, no burst: 400 requests, 16 and
/// 64 in flight (the ideal is 20 s), through the layer with its defaults. Without a hint
/// (nginx's default), every request ends in a 200 within 1.15 times the ideal, and at most one
/// call in ten is refused; before, the retry budget ran out on the 429s and 388 of 400 ended
/// in a 429. With a constant `Retry-After: 1` (a second's gate on every refusal) every request
/// ends in a 200 too, at most one call in twenty refused, within 1.5 times the ideal (before:
/// 419 s and 399 refusals; each refusal still shuts the gate for its second, see benches/README.md).
#[tokio::test(start_paused = true)]
async fn a_leaky_bucket_is_paced_to_its_rate_with_or_without_hints() {
    let ideal = 20 * S;
    for (quota, makespan_bound, refused_share) in [
        (
            Quota::leaky_bucket(20, 0).without_hint(),
            ideal * 115 / 100,
            10,
        ),
        (
            Quota::leaky_bucket(20, 0).constant_retry_after(1),
            ideal * 3 / 2,
            20,
        ),
    ] {
        for in_flight in [16, 64] {
            let api = Emulator::builder().quota(quota).build();
            let layer = RetryLayer::builder().jitter(Fixed(0.5)).build().unwrap();
            let (makespan, ok) = batch(stack_of(&layer, &api), "/v1/x", 400, in_flight).await;
            let (calls, refused) = (api.request_count(), rejected(&api));
            let run = format!(
                "{quota:?}, {in_flight} in flight: {makespan:?}, {refused} of {calls} refused"
            );
            assert_eq!(ok, 400, "{run}");
            assert!(makespan <= makespan_bound, "{run}");
            assert!(refused * refused_share <= calls, "{run}");
        }
    }
}

/// A pacer finds a rate no server announces by going past it now and then: a 429 to an attempt
/// sent at a pacing slot is its miss, and the request is not ended for it (up to as many
/// misses as it has retries). Before, three 429s in a row ended a request `AttemptsExhausted`
/// even when the last one was the pacer's (one request in 120 against nginx with a burst).
#[tokio::test(start_paused = true)]
async fn the_pacers_misses_do_not_end_a_request_but_a_quota_that_never_returns_does() {
    let api = Emulator::new();
    api.push_all((0..4).map(|_| Reply::status(429)));
    let layer = RetryLayer::builder().jitter(Fixed(0.5)).build().unwrap();
    let res = stack_of(&layer, &api)
        .oneshot(get("https://api.test/v1/x"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(info(&res).attempts(), 5);

    // Refused for good: three counted attempts and two misses, then it ends.
    let api = Emulator::new();
    api.push_all((0..100).map(|_| Reply::status(429)));
    let layer = RetryLayer::builder().jitter(Fixed(0.5)).build().unwrap();
    let res = stack_of(&layer, &api)
        .oneshot(get("https://api.test/v1/x"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(info(&res).stop_reason(), StopReason::AttemptsExhausted);
    assert_eq!(info(&res).attempts(), 5);
    assert_eq!(api.request_count(), 5);

    // One attempt means no retry, paced or not.
    let layer = RetryLayer::builder()
        .jitter(Fixed(0.5))
        .max_attempts(1)
        .build()
        .unwrap();
    let client = stack_of(&layer, &api);
    for _ in 0..3 {
        let res = client
            .clone()
            .oneshot(get("https://api.test/v1/x"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(info(&res).attempts(), 1);
    }
}

/// A quota the caller knows (`quota(20, 1 s)`) is followed from the first request: against a
/// fixed window, a token bucket (with the burst it allows) and a leaky bucket of that quota,
/// no call is refused and the batch takes what the quota allows. Without it, the same batch
/// against the fixed window costs a crowd of 429s before the pace is found.
#[tokio::test(start_paused = true)]
async fn a_configured_quota_is_followed_from_the_first_request() {
    const N: usize = 200;
    for (quota, burst) in [
        (Quota::fixed_window(20, S), 1),
        (Quota::token_bucket(20, 20), 20),
        (Quota::leaky_bucket(20, 0), 1),
    ] {
        for in_flight in [16, 64] {
            let api = Emulator::builder().quota(quota).build();
            let layer = RetryLayer::builder()
                .jitter(Fixed(0.5))
                .quota(20, S)
                .quota_burst(burst)
                .build()
                .unwrap();
            let (makespan, ok) = batch(stack_of(&layer, &api), "/v1/x", N, in_flight).await;
            let run = format!("{quota:?}, {in_flight} in flight: {makespan:?}");
            assert_eq!(ok, N, "{run}");
            assert_eq!(rejected(&api), 0, "{run}");
            assert_eq!(api.request_count(), N, "{run}");
            // One slot every 1/19.8 s (the quota less its 1% headroom), the burst's ahead of
            // it: the quota's time, to the slot.
            let ideal = S.div_f64(20.0 * 0.99) * (N - burst as usize) as u32;
            assert!(makespan >= ideal && makespan <= ideal + 100 * MS, "{run}");
        }
    }
    // Without the quota: the fixed window refuses a crowd first.
    let api = Emulator::builder()
        .quota(Quota::fixed_window(20, S))
        .build();
    let layer = RetryLayer::builder().jitter(Fixed(0.5)).build().unwrap();
    let (_, ok) = batch(stack_of(&layer, &api), "/v1/x", N, 16).await;
    assert_eq!(ok, N);
    assert!(rejected(&api) > 0);
}

/// A server that announces its quota on every answer (`RateLimit`, `RateLimit-Policy`) is
/// followed from each answer: no more requests start than it says are left before its reset,
/// counting those on their way. Against a fixed window and a token bucket of 20 a second, no
/// request is refused after the first crowd (16 in flight: none at all; 64: the 44 past the
/// first window's 20, sent before anything was known).
#[tokio::test(start_paused = true)]
async fn an_announced_quota_is_followed_from_each_answer() {
    const N: usize = 200;
    // The IETF draft's fields, and the common X-RateLimit-* ones.
    for x_fields in [false, true] {
        for quota in [Quota::fixed_window(20, S), Quota::token_bucket(20, 20)] {
            for in_flight in [16, 64] {
                let api = Emulator::builder()
                    .quota(quota)
                    .rate_limit_headers(!x_fields)
                    .x_rate_limit_headers(x_fields)
                    .build();
                let layer = RetryLayer::builder()
                    .jitter(Fixed(0.5))
                    .rate_limit_headers(!x_fields)
                    .x_rate_limit_reset(x_fields)
                    .build()
                    .unwrap();
                let (makespan, ok) = batch(far_stack_of(&layer, &api), "/v1/x", N, in_flight).await;
                let run = format!(
                    "{quota:?}, X-RateLimit {x_fields}, {in_flight} in flight: {makespan:?}, {} refused",
                    rejected(&api)
                );
                assert_eq!(ok, N, "{run}");
                assert!(rejected(&api) <= in_flight.saturating_sub(20), "{run}");
                // A window each 20, the first at once: 9 s, and the way there and back; each
                // window's reset is read a round trip late (the fields count whole seconds,
                // rounded up, and a reading is trusted over a reset guessed from the last).
                assert!(makespan <= 9 * S + 500 * MS, "{run}");
            }
        }
    }
}

/// Two clients that do not share their state, on one announced quota: each reads the whole
/// of what is left as its own, so requests sent under an allowance are refused. The
/// refusals contradict the allowance (no refill, no stated rate taken, the pace learned from
/// them holds), yet one request in 200 still meets five refusals and ends in a 429: why
/// following the fields is not the default (docs/rate-limits.md).
#[tokio::test(start_paused = true)]
#[ignore = "known: uncoordinated clients on one announced quota can lose a request"]
async fn clients_that_share_a_quota_but_not_their_state_lose_no_request() {
    const N: usize = 200;
    let api = Emulator::builder()
        .quota(Quota::fixed_window(20, S))
        .rate_limit_headers(true)
        .build();
    let client = || {
        let layer = RetryLayer::builder()
            .jitter(Fixed(0.5))
            .rate_limit_headers(true)
            .build()
            .unwrap();
        far_stack_of(&layer, &api)
    };
    let (a, b) = tokio::join!(
        batch(client(), "/v1/x", N / 2, 16),
        batch(client(), "/v1/x", N / 2, 16)
    );
    assert_eq!(a.1 + b.1, N, "{} refused; {a:?} {b:?}", rejected(&api));
}

/// Priority lanes on a configured quota of 10 a second (a slot every ~101 ms): 40 batch
/// requests are waiting for their slots when an interactive request comes, every half
/// second, five times. Each interactive one takes the next slot (within two slot intervals
/// of its call, where first come, first served would hold it behind the whole batch queue),
/// no slot goes unused (the batch still ends when the quota allows the 45 in all), and no
/// request is refused.
#[tokio::test(start_paused = true)]
async fn an_interactive_request_takes_the_next_paced_slot_and_batch_keeps_the_rest() {
    use tower_infoplug::retry::Priority;
    const BATCH: usize = 40;
    let api = Emulator::builder()
        .quota(Quota::fixed_window(10, S))
        .build();
    let layer = RetryLayer::builder()
        .jitter(Fixed(0.5))
        .quota(10, S)
        .build()
        .unwrap();
    let client = stack_of(&layer, &api);
    let with = |priority| {
        let mut req = get("/v1/x");
        req.extensions_mut().insert(priority);
        req
    };
    let t0 = Instant::now();
    let batch: Vec<_> = (0..BATCH)
        .map(|_| {
            let (client, req) = (client.clone(), with(Priority::BATCH));
            tokio::spawn(async move {
                let res = client.oneshot(req).await;
                (
                    res.is_ok_and(|r| r.status() == StatusCode::OK),
                    Instant::now(),
                )
            })
        })
        .collect();
    let interval = S.div_f64(10.0 * 0.99);
    let mut waits = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(500 * MS + 7 * MS).await;
        let asked = Instant::now();
        let res = client.clone().oneshot(with(Priority::INTERACTIVE)).await;
        assert_eq!(res.unwrap().status(), StatusCode::OK);
        waits.push(asked.elapsed());
    }
    assert!(waits.iter().all(|w| *w <= 2 * interval), "{waits:?}");
    let mut last = t0;
    for lane in batch {
        let (ok, done) = lane.await.unwrap();
        assert!(ok);
        last = last.max(done);
    }
    // 45 slots, the first at once: 44 intervals, to the slot.
    let makespan = last - t0;
    let ideal = interval * (BATCH as u32 + 5 - 1);
    assert!(
        makespan >= ideal && makespan <= ideal + 10 * MS,
        "{makespan:?} for {ideal:?}"
    );
    assert_eq!(rejected(&api), 0);
    assert_eq!(api.request_count(), BATCH + 5);
}

/// Two endpoints with quotas of their own (`/v1/search` 5 a second, the rest 1000), named in
/// the draft's fields: while a batch of searches keeps its quota saturated (and meets 429s
/// that ask for a second), the other endpoint's batch takes the time it takes alone. Before,
/// every 429 of the search quota shut the gate of the whole origin and credential.
#[tokio::test(start_paused = true)]
async fn one_endpoints_quota_does_not_pace_another() {
    let api = || {
        Emulator::builder()
            .quota(Quota::fixed_window(1000, S))
            .endpoint_quota("/v1/search", "search", Quota::fixed_window(5, S))
            .rate_limit_headers(true)
            .build()
    };
    let layer = || {
        RetryLayer::builder()
            .jitter(Fixed(0.5))
            .rate_limit_headers(true)
            .build()
            .unwrap()
    };
    // Alone: 200 requests, 8 at a time, 40 ms each.
    let (api_alone, layer_alone) = (api(), layer());
    let (alone, ok) = batch(
        far_stack_of(&layer_alone, &api_alone),
        "/v1/profile",
        200,
        8,
    )
    .await;
    assert_eq!(ok, 200);
    // Beside a saturated search quota, on one layer.
    let (api, layer) = (api(), layer());
    let client = far_stack_of(&layer, &api);
    let searches = tokio::spawn(batch(client.clone(), "/v1/search?q=x", 30, 8));
    tokio::time::sleep(100 * MS).await;
    let (beside, ok) = batch(client, "/v1/profile", 200, 8).await;
    assert_eq!(ok, 200);
    assert!(
        beside.as_secs_f64() <= alone.as_secs_f64() / 0.98,
        "{beside:?} beside the searches, {alone:?} alone"
    );
    let (_, searched) = searches.await.unwrap();
    assert_eq!(searched, 30);
}

/// A limit on requests in flight the server names (`qu="concurrent-requests"`, 4 at once,
/// each answer taking 100 ms) is kept from its first statement: after the first crowd (16
/// sent before anything was known), no request is refused, and the batch takes the limit's
/// time. Not reading the fields, the same batch meets a refusal every few requests.
#[tokio::test(start_paused = true)]
async fn a_limit_on_requests_in_flight_is_kept_from_its_first_statement() {
    const N: usize = 200;
    let run = |read: bool| async move {
        let api = Emulator::builder()
            .quota(Quota::fixed_window(1000, S))
            .concurrency_limit(4)
            .latency(100 * MS)
            .rate_limit_headers(true)
            .build();
        let layer = RetryLayer::builder()
            .jitter(Fixed(0.5))
            .rate_limit_headers(read)
            .build()
            .unwrap();
        let (first, _) = batch(stack_of(&layer, &api), "/v1/x", 16, 16).await;
        let crowd = rejected(&api);
        let (makespan, ok) = batch(stack_of(&layer, &api), "/v1/x", N, 16).await;
        (first, crowd, makespan, ok, rejected(&api) - crowd)
    };
    let (_, crowd, makespan, ok, after) = run(true).await;
    let shown = format!("{crowd} refused in the first crowd, {after} after; {makespan:?}");
    assert_eq!(ok, N, "{shown}");
    assert!(crowd <= 12, "{shown}");
    assert_eq!(after, 0, "{shown}");
    // 200 requests, 4 at a time, 100 ms each: 5 s.
    assert!(makespan <= 5 * S + 100 * MS, "{shown}");
    let (_, _, _, _, unread) = run(false).await;
    assert!(
        unread > 5,
        "not read: {unread} refused after the first crowd"
    );
}

/// A request waiting for a place in flight waits no longer than it may wait for anything
/// (`max_retry_after`, its deadline): then it fails with `CoolingDown` (429), unsent. A
/// server whose answers never come cannot hold it forever.
#[tokio::test(start_paused = true)]
async fn a_wait_for_a_place_in_flight_is_bounded() {
    let api = Emulator::builder()
        .concurrency_limit(1)
        .latency(10 * S)
        .rate_limit_headers(true)
        .build();
    let layer = RetryLayer::builder()
        .jitter(Fixed(0.5))
        .rate_limit_headers(true)
        .max_retry_after(2 * S)
        .build()
        .unwrap();
    let client = stack_of(&layer, &api);
    // The first answer states the limit: one in flight.
    let res = client.clone().oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let holder = tokio::spawn(client.clone().oneshot(get("/v1/x")));
    tokio::time::sleep(100 * MS).await;
    let asked = Instant::now();
    match client.clone().oneshot(get("/v1/x")).await {
        Err(RetryError::CoolingDown { status, info }) => {
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(info.stop_reason(), StopReason::CoolingDown);
            assert_eq!(info.attempts(), 0);
        }
        other => panic!("{:?}", other.map(|r| r.status())),
    }
    assert_eq!(asked.elapsed(), 2 * S);
    assert_eq!(api.request_count(), 2, "the third was not sent");
    assert_eq!(holder.await.unwrap().unwrap().status(), StatusCode::OK);
}
