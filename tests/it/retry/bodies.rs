//! Request bodies replayed byte for byte (by reference for `Bytes`), copied data past the
//! bound sent once, and retried responses' bodies drained within their bound.

use super::*;

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

// Draining a retried 503's body yields every few dozen frames, so its time bound holds for
// a body that never waits. Real time (an always-ready body never lets paused time move),
// on a thread of its own, so a drain that never yields fails this test instead of hanging
// it; the assertions are on the outcome only.
#[test]
fn an_always_ready_body_is_drained_within_its_time_bound() {
    use http_body_util::BodyExt;
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let transport = service_fn(move |_req: Request<ReplayBody<Full<Bytes>>>| {
            let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                let (status, body) = if first {
                    (503, common::EndlessEmptyFrames.boxed())
                } else {
                    (200, Full::new(Bytes::new()).boxed())
                };
                let mut res = Response::new(body);
                *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
                Ok::<_, Infallible>(res)
            }
        });
        let client = exact()
            .drain(64 * 1024, 20 * MS)
            .build()
            .unwrap()
            .layer(transport);
        let res = runtime.block_on(client.oneshot(get("/v1/x"))).unwrap();
        let _ = done.send((res.status(), info(&res).attempts()));
    });
    let (status, attempts) = outcome
        .recv_timeout(Duration::from_secs(60))
        .expect("the drain ends at its time bound");
    assert_eq!((status, attempts), (http::StatusCode::OK, 2));
}
