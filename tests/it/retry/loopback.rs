//! The same rules over real HTTP: hyper-util's client against the emulator on 127.0.0.1.
//! Real time here, so every wait is a fraction of a second: hints are HTTP-dates read
//! against a wall clock set just before them.

use super::*;
use tower_infoplug::InfoPlugService;

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
    server: &tower_infoplug_mock::EmulatorServer,
) -> InfoPlugService<HttpClient> {
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
    let client = InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), &format!("http://{addr}"))
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
