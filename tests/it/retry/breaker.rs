//! The circuit breaker: failures the server gives no reason or wait for (5xx without a hint,
//! refused connections) trip it; requests then fail at once, one probe goes a second, and
//! the probe's answer closes it. In memory, under paused time.

use super::*;

/// What happened to a caller's requests: sent (to the layer), ended in a 200, failed at once
/// by the breaker.
#[derive(Default)]
struct Tally {
    attempted: usize,
    circuit_open: usize,
    first_200_after: Option<Duration>,
    not_200_after_first: usize,
}

/// `callers` callers each send a GET every 100 ms (their offered load) for `outage` and
/// then `after`, through `client`; `down` says whether the outage is on. Returns the tally
/// of requests started after the first second of the outage, and how many the server saw
/// then (from `seen`).
async fn run<S, B, E>(
    client: S,
    callers: usize,
    outage: Duration,
    after: Duration,
    set_down: impl Fn(bool),
    seen: impl Fn() -> usize,
) -> (Tally, usize, usize)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = RetryError<E>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
    E: Send + 'static,
{
    let start = Instant::now();
    set_down(true);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let recovered = start + outage;
    let end = recovered + after;
    let mut seen_at_1s = 0;
    let callers: Vec<_> = (0..callers)
        .map(|i| {
            let (client, tally) = (client.clone(), Arc::clone(&tally));
            tokio::spawn(async move {
                // Spread the callers over the first 100 ms.
                tokio::time::sleep(MS * (i as u32 * 100 / 16)).await;
                while Instant::now() < end {
                    let sent = Instant::now();
                    let res = client.clone().oneshot(get("/v1/x")).await;
                    {
                        let mut t = tally.lock().unwrap();
                        if sent >= start + S && sent < recovered {
                            t.attempted += 1;
                        }
                        match res {
                            Ok(res) if res.status() == 200 && sent >= recovered => {
                                let at = Instant::now() - recovered;
                                t.first_200_after =
                                    Some(t.first_200_after.map_or(at, |f| f.min(at)));
                            }
                            Ok(_) if t.first_200_after.is_some_and(|f| sent >= recovered + f) => {
                                t.not_200_after_first += 1;
                            }
                            Err(RetryError::CoolingDown { info, .. })
                                if info.stop_reason() == StopReason::CircuitOpen =>
                            {
                                t.circuit_open += 1;
                                if t.first_200_after.is_some_and(|f| sent >= recovered + f) {
                                    t.not_200_after_first += 1;
                                }
                            }
                            _ => {}
                        }
                    }
                    tokio::time::sleep_until(sent + 100 * MS).await;
                }
            })
        })
        .collect();
    tokio::time::sleep_until(start + S).await;
    seen_at_1s += seen();
    tokio::time::sleep_until(recovered).await;
    let seen_in_outage = seen() - seen_at_1s;
    set_down(false);
    for caller in callers {
        caller.await.unwrap();
    }
    let tally = Arc::into_inner(tally).unwrap().into_inner().unwrap();
    (tally, seen_in_outage, seen())
}

#[tokio::test(start_paused = true)]
async fn a_hard_outage_of_500s_trips_the_breaker_and_its_probe_finds_the_recovery() {
    for callers in [16, 64] {
        let api = Emulator::builder()
            .no_rate_limit()
            .credits(u64::MAX)
            .build();
        let client = stack(&api, exact());
        let down = api.clone();
        let (tally, seen_in_outage, _) = run(
            client,
            callers,
            30 * S,
            5 * S,
            move |on| down.set_outage(on.then(|| Reply::status(500))),
            || api.request_count(),
        )
        .await;
        // The server saw a probe a second, not the callers' load (about 10 a second each).
        let ratio = seen_in_outage as f64 / tally.attempted as f64;
        assert!(
            ratio <= 0.01,
            "{callers}: {seen_in_outage} of {}",
            tally.attempted
        );
        assert!(tally.circuit_open >= tally.attempted * 9 / 10, "{callers}");
        // The recovery is found by the next probe, at most one interval after it, and every
        // request after that first 200 ends in a 200.
        let first = tally.first_200_after.expect("a 200 after the recovery");
        assert!(
            first <= S,
            "{callers}: first 200 {first:?} after the recovery"
        );
        assert_eq!(tally.not_200_after_first, 0, "{callers}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_hard_outage_of_refused_connections_trips_the_breaker_too() {
    let api = Emulator::builder()
        .no_rate_limit()
        .credits(u64::MAX)
        .build();
    let (down, calls) = (Arc::new(AtomicUsize::new(1)), Arc::new(AtomicUsize::new(0)));
    let transport = {
        let (down, calls, api) = (Arc::clone(&down), Arc::clone(&calls), api.clone());
        service_fn(move |req: Request<ReplayBody<Full<Bytes>>>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let refused = down.load(Ordering::SeqCst) == 1;
            let served = api.clone().oneshot(req);
            async move {
                if refused {
                    return Err(io::Error::from(io::ErrorKind::ConnectionRefused));
                }
                Ok(served.await.unwrap_or_else(|never| match never {}))
            }
        })
    };
    let client = ServiceBuilder::new()
        .layer(exact().build().unwrap())
        .layer(ClassifyLayer::new())
        .layer(AuthLayer::new(ApiKey::new(TEST_KEY).unwrap()))
        .service(transport);
    let seen = Arc::clone(&calls);
    let (tally, seen_in_outage, _) = run(
        client,
        16,
        30 * S,
        5 * S,
        move |on| down.store(usize::from(on), Ordering::SeqCst),
        move || seen.load(Ordering::SeqCst),
    )
    .await;
    let ratio = seen_in_outage as f64 / tally.attempted as f64;
    assert!(ratio <= 0.01, "{seen_in_outage} of {}", tally.attempted);
    let first = tally.first_200_after.expect("a 200 after the recovery");
    assert!(first <= S, "first 200 {first:?} after the recovery");
    assert_eq!(tally.not_200_after_first, 0);
}

/// The rule in small: three un-hinted failures in a row trip it (the hook hears it); a
/// request then fails at once with the time to the next probe; the probe's failure trips it
/// again, its 200 closes it; a healthy answer ends a streak before it trips anything.
#[tokio::test(start_paused = true)]
async fn three_failures_in_a_row_trip_it_and_the_probe_decides() {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = Arc::clone(&heard);
    let api = Emulator::builder()
        .no_rate_limit()
        .credits(u64::MAX)
        .build();
    let client = stack(
        &api,
        exact()
            .max_attempts(1)
            .circuit_breaker(3, S)
            .on_throttle(move |e| {
                h.lock()
                    .unwrap()
                    .push((e.status.as_u16(), e.tripped, e.gated_for));
            }),
    );
    let call = || client.clone().oneshot(get("/v1/x"));

    // Two failures, then a 200: the streak ends.
    api.push_all([Reply::status(500), Reply::status(502)]);
    for _ in 0..3 {
        call().await.unwrap();
    }
    api.push_all([Reply::status(500), Reply::status(502)]);
    for _ in 0..2 {
        assert!(call().await.unwrap().status().is_server_error());
    }
    assert!(heard.lock().unwrap().is_empty());
    // The third in a row trips it: its own answer comes back, the next request is not sent.
    api.push(Reply::status(503).without_header("retry-after"));
    assert_eq!(call().await.unwrap().status(), 503);
    assert_eq!(*heard.lock().unwrap(), [(503, true, Some(S))]);
    let count = api.request_count();
    tokio::time::advance(300 * MS).await;
    match call().await {
        Err(RetryError::CoolingDown { status, info }) => {
            assert_eq!(status, 503);
            assert_eq!(info.stop_reason(), StopReason::CircuitOpen);
            assert_eq!(info.attempts(), 0);
            assert_eq!(info.retry_after(), Some(700 * MS));
        }
        other => panic!("{:?}", other.map(|r| r.status())),
    }
    assert_eq!(api.request_count(), count);
    // After a second, one probe: its 500 trips it again for another second.
    tokio::time::advance(700 * MS).await;
    api.push(Reply::status(500));
    assert_eq!(call().await.unwrap().status(), 500);
    assert_eq!(heard.lock().unwrap().len(), 2);
    assert!(call().await.is_err());
    // The next probe's 200 closes it: requests flow again.
    tokio::time::advance(S).await;
    for _ in 0..3 {
        assert_eq!(call().await.unwrap().status(), 200);
    }
    assert_eq!(api.request_count(), count + 4);
}

#[tokio::test(start_paused = true)]
async fn without_the_breaker_every_request_joins_the_outage() {
    let api = Emulator::builder()
        .no_rate_limit()
        .credits(u64::MAX)
        .build();
    let client = stack(&api, exact().max_attempts(1).no_circuit_breaker());
    api.set_outage(Some(Reply::status(500)));
    for _ in 0..50 {
        assert_eq!(
            client.clone().oneshot(get("/v1/x")).await.unwrap().status(),
            500
        );
    }
    assert_eq!(api.request_count(), 50);
}
