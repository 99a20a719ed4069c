//! The decision table end to end: statuses, methods, transport failures, attempts and
//! attempt timeouts.

use super::*;

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
async fn opted_in_idempotency_keys_make_a_post_retryable_with_one_key() {
    let post = || {
        Request::post("/v1/search")
            .body(Full::new(Bytes::from_static(b"{\"q\":1}")))
            .unwrap()
    };
    let api = Emulator::new();

    // Off (the default): a POST's 500 is final and carries no key.
    api.push(Reply::status(500));
    let res = stack(&api, exact()).oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 500);
    let seen = api.take_requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("idempotency-key"), None);

    // On: retried, every attempt with the same generated key; the next request gets another.
    let client = stack(&api, exact().idempotency_keys(true));
    for _ in 0..2 {
        api.push_all([Reply::status(500), Reply::status(502)]);
        let res = client.clone().oneshot(post()).await.unwrap();
        assert_eq!(res.status(), 200);
    }
    let keys: Vec<_> = api
        .take_requests()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 6);
    assert!(keys[..3].iter().all(|k| *k == keys[0]) && keys[3..].iter().all(|k| *k == keys[3]));
    assert_ne!(keys[0], keys[3]);

    // A caller's own key is kept; a GET gets none.
    api.push(Reply::status(500));
    let own = Request::post("/v1/search")
        .header("idempotency-key", "order-42")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    client.clone().oneshot(own).await.unwrap();
    client.clone().oneshot(get("/v1/x")).await.unwrap();
    let seen = api.take_requests();
    assert_eq!(seen[0].header("idempotency-key"), Some("order-42"));
    assert_eq!(seen[1].header("idempotency-key"), Some("order-42"));
    assert_eq!(seen[2].header("idempotency-key"), None);
}

/// Polling the response future again after it returned breaks the `Future` contract; it
/// panics with a message saying so. (Before, it returned `Pending` for ever: a silent hang.)
#[tokio::test]
async fn a_future_polled_after_it_returned_panics_instead_of_hanging() {
    use tower::Layer;
    let api = Emulator::new();
    let mut client = exact().build().unwrap().layer(api.clone());
    ServiceExt::<Request<Full<Bytes>>>::ready(&mut client)
        .await
        .unwrap();
    let mut future = Box::pin(Service::call(&mut client, get("https://api.test/v1/x")));
    // A final answer (no key here: a 401).
    let res = (&mut future).await.unwrap();
    assert_eq!(res.status(), 401);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = future.as_mut().poll(&mut cx);
    }));
    let message = again.expect_err("a second poll panics");
    let message = message
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| message.downcast_ref::<String>().cloned())
        .unwrap();
    assert!(message.contains("polled after it returned"), "{message}");
}

/// An opt-in attempt header tells the server a retry from a new request: the attempt's
/// number on every retry, on the first attempt only when asked, and never without being
/// asked for; names that are no header, or that would overwrite the credential or the
/// framing, are refused when the layer is built.
#[tokio::test(start_paused = true)]
async fn the_attempt_header_numbers_retries_when_asked() {
    let attempts = |api: &Emulator| -> Vec<Option<String>> {
        api.take_requests()
            .iter()
            .map(|r| r.header("x-infoplug-attempt").map(str::to_owned))
            .collect()
    };
    let api = Emulator::new();
    let twice = || [Reply::status(500), Reply::status(503)];
    api.push_all(twice());
    let retry = exact().attempt_header("X-InfoPlug-Attempt");
    let res = stack(&api, retry).oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(res.status(), 200);
    let (two, three) = (Some("2".to_owned()), Some("3".to_owned()));
    assert_eq!(attempts(&api), [None, two.clone(), three.clone()]);

    api.push_all(twice());
    let retry = exact()
        .attempt_header("x-infoplug-attempt")
        .attempt_header_on_first(true);
    stack(&api, retry).oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(attempts(&api), [Some("1".to_owned()), two, three]);

    api.push_all(twice());
    stack(&api, exact()).oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(attempts(&api), [None, None, None]);

    assert!(matches!(
        RetryLayer::builder()
            .attempt_header("no such\nheader")
            .build(),
        Err(tower_infoplug::ConfigError::InvalidHeaderName { .. })
    ));
    for reserved in [
        "Authorization",
        "x-infoplug-api-key",
        "content-length",
        "host",
    ] {
        assert!(
            matches!(
                RetryLayer::builder().attempt_header(reserved).build(),
                Err(tower_infoplug::ConfigError::OutOfRange {
                    setting: "attempt_header",
                    ..
                })
            ),
            "{reserved}"
        );
    }
}

/// The hooks hear every retry (what it met, how long it waits) and every give-up (with the
/// request's record), and nothing else: not a first answer that is final, not a final 404.
#[tokio::test(start_paused = true)]
async fn the_hooks_hear_each_retry_and_each_give_up() {
    use std::sync::Mutex;
    use tower_infoplug::retry::RetriedAfter;
    let retries = Arc::new(Mutex::new(Vec::new()));
    let give_ups = Arc::new(Mutex::new(Vec::new()));
    let (r, g) = (Arc::clone(&retries), Arc::clone(&give_ups));
    let retry = exact()
        .on_retry(move |event| {
            r.lock()
                .unwrap()
                .push((event.attempt, event.after, event.wait));
        })
        .on_give_up(move |info| {
            g.lock()
                .unwrap()
                .push((info.attempts(), info.stop_reason()));
        });
    let api = Emulator::new();
    let client = stack(&api, retry);

    // A 429 with a 2 s hint, then a 500 (no jitter: a backoff of nothing), then the 200.
    api.push_all([Reply::rate_limited(2), Reply::status(500)]);
    let res = client.clone().oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(res.status(), 200);
    let after = |status: u16| RetriedAfter::Status(http::StatusCode::from_u16(status).unwrap());
    assert_eq!(
        *retries.lock().unwrap(),
        [(1, after(429), 2 * S), (2, after(500), Duration::ZERO)]
    );
    assert!(give_ups.lock().unwrap().is_empty());

    // Three 503s: the third ends the request, and the give-up hook hears of it.
    retries.lock().unwrap().clear();
    api.push_all((0..3).map(|_| Reply::status(503)));
    let res = client.clone().oneshot(get("/v1/x")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(retries.lock().unwrap().len(), 2);
    assert_eq!(
        *give_ups.lock().unwrap(),
        [(3, StopReason::AttemptsExhausted)]
    );

    // A final 404 and a plain 200: neither hook.
    retries.lock().unwrap().clear();
    give_ups.lock().unwrap().clear();
    api.push(Reply::status(404));
    client.clone().oneshot(get("/v1/x")).await.unwrap();
    client.clone().oneshot(get("/v1/x")).await.unwrap();
    assert!(retries.lock().unwrap().is_empty());
    assert!(give_ups.lock().unwrap().is_empty());
}

/// The throttle hook hears each answer that shuts a partition's gate or sets its pacing,
/// once per answer (not once per request held), with how long and how fast; never a 500.
#[tokio::test(start_paused = true)]
async fn the_throttle_hook_hears_each_gate_shut_and_each_pacing_set() {
    use std::sync::Mutex;
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = Arc::clone(&heard);
    let retry = exact().on_throttle(move |event| {
        h.lock().unwrap().push((
            event.attempt,
            event.status.as_u16(),
            event.gated_for,
            event.paced,
        ));
    });
    let api = Emulator::new();
    let client = stack(&api, retry);

    // A 500 throttles nothing; the 429 after it shuts the gate for its 2 s and starts the
    // pacing's search (4 a second), once, however many requests it then holds.
    api.push_all([Reply::status(500), Reply::rate_limited(2)]);
    let (first, held) = tokio::join!(client.clone().oneshot(get("/v1/x")), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.clone().oneshot(get("/v1/x")).await
    });
    assert_eq!(first.unwrap().status(), 200);
    assert_eq!(held.unwrap().status(), 200);
    assert_eq!(
        *heard.lock().unwrap(),
        [(2, 429, Some(2 * S), Some((4.0, 5 * S)))]
    );

    // Without shared cool-downs or pacing the same 429 throttles no partition: no event.
    heard.lock().unwrap().clear();
    let h = Arc::clone(&heard);
    let alone = exact()
        .shared_cooldown(false)
        .pacing(false)
        .on_throttle(move |event| h.lock().unwrap().push((event.attempt, 0, None, None)));
    let api = Emulator::new();
    api.push(Reply::rate_limited(2));
    let res = stack(&api, alone).oneshot(get("/v1/x")).await.unwrap();
    assert_eq!((res.status().as_u16(), info(&res).attempts()), (200, 2));
    assert!(heard.lock().unwrap().is_empty());
}

/// Per-request limits on a shared client: this call may not retry, that one is worth more
/// attempts, another may not wait as long for the server; requests without them keep the
/// layer's. Bad values are refused when the overrides are made.
#[tokio::test(start_paused = true)]
async fn a_request_may_carry_its_own_limits() {
    use tower_infoplug::retry::RetryOverrides;
    let api = Emulator::new();
    let client = stack(&api, exact());
    let with = |own: RetryOverrides| {
        let mut req = get("/v1/x");
        req.extensions_mut().insert(own);
        req
    };

    api.push(Reply::status(503));
    let res = client
        .clone()
        .oneshot(with(RetryOverrides::no_retry()))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(info(&res).attempts(), 1);
    assert_eq!(info(&res).stop_reason(), StopReason::AttemptsExhausted);

    api.push_all((0..4).map(|_| Reply::status(503)));
    let worth_more = RetryOverrides::new().max_attempts(5).unwrap();
    let res = client.clone().oneshot(with(worth_more)).await.unwrap();
    assert_eq!((res.status().as_u16(), info(&res).attempts()), (200, 5));

    api.push(Reply::rate_limited(30));
    let impatient = RetryOverrides::new()
        .max_retry_after(Duration::from_secs(10))
        .unwrap();
    let res = client.clone().oneshot(with(impatient)).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(info(&res).stop_reason(), StopReason::HintTooLong);

    // Without them, the layer's: three attempts, hints up to a minute.
    api.push_all((0..3).map(|_| Reply::status(503)));
    let res = client.clone().oneshot(get("/v1/x")).await.unwrap();
    assert_eq!((res.status().as_u16(), info(&res).attempts()), (503, 3));

    for bad in [
        RetryOverrides::new().max_attempts(0),
        RetryOverrides::new().max_attempts(1000),
        RetryOverrides::new().max_retry_after(Duration::ZERO),
    ] {
        assert!(matches!(
            bad,
            Err(tower_infoplug::ConfigError::OutOfRange { .. })
        ));
    }
}
