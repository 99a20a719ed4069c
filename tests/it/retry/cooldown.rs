//! The shared gate as the retry tests first pinned it: held requests, fail-fast past the
//! cap, per origin, and off. (`tests/it/gates.rs` has the gate's caps, probes and pacing.)

use super::*;

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

/// 20,000 tenants (one credential each) throttled at once through one layer whose table
/// keeps 500 partitions: every request still ends in a 200, each after its own wait.
#[tokio::test(start_paused = true)]
async fn many_tenants_throttled_at_once_all_end_with_a_bounded_table() {
    use std::collections::HashSet;
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let transport = {
        let seen = Arc::clone(&seen);
        service_fn(move |req: Request<ReplayBody<Full<Bytes>>>| {
            let key = req.headers()["x-infoplug-api-key"].clone();
            let first = seen.lock().unwrap().insert(key);
            async move {
                let res = if first {
                    Response::builder()
                        .status(429)
                        .header("retry-after", "1")
                        .body(Full::<Bytes>::default())
                } else {
                    Response::builder().body(Full::<Bytes>::default())
                };
                Ok::<_, Infallible>(res.unwrap())
            }
        })
    };
    // The retry budget is the layer's, across tenants: not what this is about.
    let client = exact()
        .max_partitions(500)
        .no_budget()
        .build()
        .unwrap()
        .layer(transport);
    let calls: Vec<_> = (0..20_000)
        .map(|i| {
            let req = Request::get("https://api.test/v1/x")
                .header("x-infoplug-api-key", format!("ip_tenant_{i}"))
                .body(Full::<Bytes>::default())
                .unwrap();
            tokio::spawn(client.clone().oneshot(req))
        })
        .collect();
    for call in calls {
        let res = call.await.unwrap().unwrap();
        let stop = info(&res).stop_reason();
        assert_eq!(
            (res.status().as_u16(), info(&res).attempts()),
            (200, 2),
            "{stop:?}"
        );
    }
}
