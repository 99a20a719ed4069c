//! The layer among others: cancellation, readiness with buffers and limits, the preset,
//! and the auto traits of services and futures.

use super::*;

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

/// What a user's struct or axum `State` holds: every type named from the crate root.
#[allow(dead_code)]
struct App {
    api: tower_infoplug::InfoPlugService<Emulator>,
}

#[tokio::test(start_paused = true)]
async fn the_stack_is_nameable_from_the_crate_root() {
    use tower_infoplug::{ClassifyBody, InfoPlugService, RetryError, StopReason};
    let api = Emulator::new();
    api.push(Reply::rate_limited(1));
    let app = App {
        api: InfoPlugLayer::new(ApiKey::new(TEST_KEY).unwrap(), "http://127.0.0.1")
            .unwrap()
            .layer(api.clone()),
    };
    let client: InfoPlugService<Emulator> = app.api;
    let res: Response<ClassifyBody<_>> =
        client.oneshot(get("http://127.0.0.1/v1/x")).await.unwrap();
    assert_eq!(res.retry_info().stop_reason(), StopReason::Final);
    assert_eq!(res.retry_info().attempts(), 2);
    let _: fn(RetryError<Infallible>) -> Option<Duration> = |e| e.retry_after();
}

/// A transport that refuses connections for its first `n` calls, with boxed errors the way
/// `tower::timeout` and `Buffer` box them.
#[derive(Clone)]
struct RefusesFirst(Arc<AtomicUsize>, usize);

impl Service<Request<ReplayBody<Full<Bytes>>>> for RefusesFirst {
    type Response = Response<Full<Bytes>>;
    type Error = tower::BoxError;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<ReplayBody<Full<Bytes>>>) -> Self::Future {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if n < self.1 {
            Err(io::Error::from(io::ErrorKind::ConnectionRefused).into())
        } else {
            Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn the_boxed_policy_retries_a_never_sent_post_through_timeout_and_buffer() {
    let calls = Arc::new(AtomicUsize::new(0));
    let client = ServiceBuilder::new()
        .layer(
            exact()
                .build()
                .unwrap()
                .with_policy(DefaultPolicy::new().boxed()),
        )
        .buffer(4)
        .timeout(10 * S)
        .service(RefusesFirst(Arc::clone(&calls), 2));
    let post = Request::post("/v1/x")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let res = client.oneshot(post).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "never sent: retried twice");

    // A response-phase failure of a POST is final under the same table.
    let client = ServiceBuilder::new()
        .layer(
            exact()
                .build()
                .unwrap()
                .with_policy(DefaultPolicy::new().boxed()),
        )
        .timeout(10 * S)
        .service(service_fn(|_: Request<ReplayBody<Full<Bytes>>>| async {
            Err::<Response<Full<Bytes>>, _>(io::Error::from(io::ErrorKind::ConnectionReset))
        }));
    let post = Request::post("/v1/x")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    match client.oneshot(post).await {
        Err(RetryError::Transport { info, .. }) => assert_eq!(info.attempts(), 1),
        other => panic!("{:?}", other.map(|r| r.status())),
    }
}
