//! The stack under hostile conditions: retry storms, herds after a 429, callers that give up,
//! error bodies of many megabytes.
//!
//! Over loopback HTTP (hyper-util's client against the emulator on 127.0.0.1) in real time,
//! with every wait a fraction of a second (hints are HTTP-dates read against a wall clock set
//! just before them), and in memory under paused time where the rule is about time.

use crate::common;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::{arrivals, info, read_body};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use tokio::time::Instant;
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use tower_infoplug::retry::{Deadline, ReplayBody, RetryBuilder, RetryLayer, StopReason};
use tower_infoplug::{
    ApiKey, AuthLayer, BodyIssue, ClassifyLayer, InfoPlugLayer, InfoPlugService, ResponseExt,
};
use tower_infoplug_mock::{Emulator, EmulatorServer, Reply, TEST_KEY};

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

type HttpClient = Client<HttpConnector, ReplayBody<Full<Bytes>>>;

/// The preset over hyper-util's client, with `retry`'s settings and millisecond backoff.
fn stack(server: &EmulatorServer, retry: RetryBuilder) -> InfoPlugService<HttpClient> {
    InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), &server.base_url())
        .retry(|_| retry.backoff(MS, 5 * MS))
        .build()
        .unwrap()
        .layer(common::http_client_for())
}

fn get(server: &EmulatorServer) -> Request<Full<Bytes>> {
    let uri = server.uri("/v1/profile").unwrap();
    Request::get(uri).body(Full::default()).unwrap()
}

/// A date for the emulator to name in `Retry-After`, and a wall clock `lead` before it.
fn hint_of(lead: Duration) -> (Reply, impl Fn() -> SystemTime + Send + Sync + 'static) {
    let date = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let reply = Reply::status(429).header("retry-after", &httpdate::fmt_http_date(date));
    (reply, move || date - lead)
}

#[tokio::test]
async fn a_503_storm_stays_within_the_budget_and_retries_resume_after_recovery() {
    const CALLERS: usize = 40;
    // A reserve of 1 retry a second, 10 for the budget's ten-second window, and half a retry
    // per success.
    const RESERVE: usize = 10;
    let api = Emulator::builder().no_rate_limit().build();
    let server = api.serve().await.unwrap();
    // The budget alone: the circuit breaker would stop most of these callers before it.
    let client = stack(
        &server,
        RetryLayer::builder()
            .max_attempts(4)
            .budget(0.5, 1)
            .no_circuit_breaker(),
    );

    api.set_outage(Some(Reply::unavailable()));
    let calls: Vec<_> = (0..CALLERS)
        .map(|_| tokio::spawn(client.clone().oneshot(get(&server))))
        .collect();
    let mut out_of_budget = 0;
    for call in calls {
        // Every caller gets an answer: the server's last 503, not an error.
        let res = call.await.unwrap().unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        if info(&res).stop_reason() == StopReason::BudgetExhausted {
            out_of_budget += 1;
        }
    }
    // Without a budget, 4 attempts each would be 160 requests. With it: one each, plus the
    // reserve (there are no successes to earn more); the callers want more, so all of it.
    let storm = api.request_count();
    assert_eq!(storm, CALLERS + RESERVE);
    assert!(out_of_budget >= CALLERS - RESERVE, "{out_of_budget}");

    // Recovery: every call succeeds at once, and the successes earn retries again.
    api.set_outage(None);
    for _ in 0..20 {
        let res = client.clone().oneshot(get(&server)).await.unwrap();
        assert_eq!((res.status(), info(&res).attempts()), (StatusCode::OK, 1));
    }
    // The reserve is spent for this window, so these retries are paid by the 20 successes.
    for _ in 0..5 {
        api.push(Reply::unavailable());
        let res = client.clone().oneshot(get(&server)).await.unwrap();
        assert_eq!((res.status(), info(&res).attempts()), (StatusCode::OK, 2));
    }
    assert_eq!(api.request_count(), storm + 20 + 10);
}

#[tokio::test]
async fn a_herd_told_to_wait_stays_away_for_the_window_and_comes_back_spread() {
    const HERD: usize = 20;
    const LATE: usize = 5;
    const WINDOW: Duration = Duration::from_millis(300);
    let api = Emulator::builder().no_rate_limit().build();
    let server = api.serve().await.unwrap();
    let (limited, clock) = hint_of(WINDOW);
    let client = stack(
        &server,
        RetryLayer::builder()
            .wall_clock(clock)
            .hint_jitter(200 * MS),
    );

    api.set_outage(Some(limited));
    let mut calls: Vec<_> = (0..HERD)
        .map(|_| tokio::spawn(client.clone().oneshot(get(&server))))
        .collect();
    // Every first attempt was under way before the first 429 came back; wait for them all.
    while api.request_count() < HERD {
        tokio::time::sleep(MS).await;
    }
    // A moment for the clients to read the 429s: the window has begun for the stack.
    tokio::time::sleep(50 * MS).await;
    api.set_outage(None);
    // Callers that come during the window wait for it too, through any clone of the stack.
    calls.extend((0..LATE).map(|_| tokio::spawn(client.clone().oneshot(get(&server)))));
    for call in calls {
        let res = call.await.unwrap().unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }

    let times = arrivals(&api);
    assert_eq!(times.len(), HERD * 2 + LATE);
    let after = &times[HERD..];
    assert!(after.iter().all(|t| *t >= WINDOW), "{times:?}");
    // Spread over the jitter (200 ms), not at one instant: no 10 ms holds half of them.
    let spread = after
        .iter()
        .max()
        .unwrap()
        .saturating_sub(*after.iter().min().unwrap());
    assert!(spread >= 50 * MS, "{after:?}");
    let crowded = after
        .iter()
        .map(|t| after.iter().filter(|u| u.abs_diff(*t) < 5 * MS).count())
        .max()
        .unwrap();
    assert!(crowded <= after.len() / 2, "{after:?}");
}

#[tokio::test(start_paused = true)]
async fn an_outer_timeout_bounds_the_total_time_including_waits() {
    let api = Emulator::new();
    api.push(Reply::rate_limited(30));
    let client = ServiceBuilder::new()
        .timeout(5 * S)
        .layer(RetryLayer::new())
        .layer(ClassifyLayer::new())
        .layer(AuthLayer::new(ApiKey::new(TEST_KEY).unwrap()))
        .service(api.clone());
    let start = Instant::now();
    let err = client
        .oneshot(
            Request::get("/v1/x")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
    assert_eq!(start.elapsed(), 5 * S);
    // The wait was dropped with the future: nothing more is sent, ever.
    tokio::time::sleep(120 * S).await;
    assert_eq!(api.request_count(), 1);
}

#[tokio::test]
async fn callers_that_give_up_mid_attempt_or_mid_wait_send_nothing_later() {
    let api = Emulator::new();
    let server = api.serve().await.unwrap();
    // Real sockets, so the clock is the wall's: the hint is long (1 s) and each bound on
    // elapsed time below sits far from both what it checks (100 ms) and the hint.
    let (limited, clock) = hint_of(S);
    let client = stack(&server, RetryLayer::builder().wall_clock(clock));

    // During an attempt: the answer is slow to come.
    api.push(Reply::unavailable().delay(200 * MS));
    let call = client.clone().oneshot(get(&server));
    assert!(tokio::time::timeout(50 * MS, call).await.is_err());
    // During the wait after a 429.
    api.push(limited.clone());
    let call = client.clone().oneshot(get(&server));
    assert!(tokio::time::timeout(100 * MS, call).await.is_err());
    // An outer timeout around the whole stack, ending while the 429's cooldown holds the
    // request back: it is never sent.
    let bounded = tower::timeout::Timeout::new(client.clone(), 100 * MS);
    let start = Instant::now();
    assert!(bounded.oneshot(get(&server)).await.is_err());
    assert!(
        start.elapsed() < 700 * MS,
        "wall clock: {:?}",
        start.elapsed()
    );

    // Long after the hint and the slow reply, the server saw the two first attempts only.
    tokio::time::sleep(1300 * MS).await;
    assert_eq!(api.request_count(), 2);

    // A hint past the request's deadline is not slept on: the 429 comes back at once.
    api.push(limited);
    let mut req = get(&server);
    req.extensions_mut().insert(Deadline::after(100 * MS));
    let start = Instant::now();
    let res = client.oneshot(req).await.unwrap();
    assert!(
        start.elapsed() < 700 * MS,
        "wall clock: {:?}",
        start.elapsed()
    );
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(info(&res).stop_reason(), StopReason::DeadlineTooClose);
}

/// A 10 MiB error body: a contract envelope around varied filler, so a reordered or dropped
/// chunk shows.
fn ten_mib_error_body() -> Bytes {
    let head = br#"{"message":"invalid_parameter","parameter":"q","details":""#;
    let mut body = head.to_vec();
    let filler = (0u32..).map(|i| b'a' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26);
    body.extend(filler.take(10 * 1024 * 1024 - head.len() - 2));
    body.extend_from_slice(b"\"}");
    Bytes::from(body)
}

/// Yields a body in 16 KiB chunks and counts the bytes handed out.
struct Counted {
    rest: Bytes,
    taken: Arc<AtomicUsize>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.rest.is_empty() {
            return Poll::Ready(None);
        }
        let at = self.rest.len().min(16 * 1024);
        let chunk = self.rest.split_to(at);
        self.taken.fetch_add(chunk.len(), Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

#[tokio::test]
async fn a_10_mib_error_body_is_read_to_the_limit_only_and_passed_on_byte_identical() {
    let body = ten_mib_error_body();

    // In memory: how much did the classifier take before handing the response on?
    let taken = Arc::new(AtomicUsize::new(0));
    let transport = {
        let (body, taken) = (body.clone(), taken.clone());
        service_fn(move |_: Request<()>| {
            let body = Counted {
                rest: body.clone(),
                taken: taken.clone(),
            };
            async move {
                let mut res = Response::new(body);
                *res.status_mut() = StatusCode::BAD_REQUEST;
                Ok::<_, Infallible>(res)
            }
        })
    };
    let res = ClassifyLayer::new()
        .layer(transport)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    let read_ahead = taken.load(Ordering::SeqCst);
    assert!(read_ahead <= 64 * 1024 + 16 * 1024, "{read_ahead}");
    assert_eq!(
        res.api_error().unwrap().body_issue(),
        Some(&BodyIssue::TooLarge)
    );
    assert_eq!(res.body().size_hint().exact(), Some(body.len() as u64));
    assert!(read_body(res.into_body()).await.unwrap() == body);

    // Over loopback, through the whole stack.
    let api = Emulator::new();
    let server = api.serve().await.unwrap();
    api.push(Reply::json(400, body.clone()).chunked(64 * 1024));
    let res = stack(&server, RetryLayer::builder())
        .oneshot(get(&server))
        .await
        .unwrap();
    assert_eq!(
        res.api_error().unwrap().body_issue(),
        Some(&BodyIssue::TooLarge)
    );
    let received = read_body(res.into_body()).await.unwrap();
    assert_eq!(received.len(), body.len());
    assert!(received == body, "the body changed on the way");
}

#[tokio::test]
async fn a_connection_reset_mid_error_body_ends_in_an_error_downstream() {
    // A purpose-built fault server: the head and the start of a JSON error body, then a TCP
    // reset (zero linger) instead of the rest.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = vec![0; 4096];
        let _ = socket.read(&mut request).await.unwrap();
        socket
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
                  content-length: 200\r\n\r\n{\"message\":\"invalid_par",
            )
            .await
            .unwrap();
        socket.flush().await.unwrap();
        tokio::time::sleep(20 * MS).await;
        socket.set_zero_linger().unwrap();
        drop(socket);
    });

    let client = InfoPlugLayer::new(ApiKey::new(TEST_KEY).unwrap(), &format!("http://{addr}"))
        .unwrap()
        .layer(common::http_client_for::<ReplayBody<Full<Bytes>>>());
    let req = Request::get(format!("http://{addr}/v1/x"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        res.api_error().unwrap().body_issue(),
        Some(&BodyIssue::Incomplete)
    );
    // The bytes that came, then the transport's error: never a clean short body.
    let mut body = res.into_body();
    let mut got = Vec::new();
    let end = loop {
        match http_body_util::BodyExt::frame(&mut body).await {
            Some(Ok(frame)) => got.extend_from_slice(&frame.into_data().unwrap()),
            Some(Err(err)) => break Some(err),
            None => break None,
        }
    };
    assert_eq!(got, b"{\"message\":\"invalid_par");
    assert!(end.is_some(), "the reset must surface as an error");
    server.await.unwrap();
}

/// HTTP/2 refusals over loopback: a stream the server refused, or left unprocessed when it
/// went away gracefully, was never processed, so even a POST is sent again.
#[cfg(feature = "http2")]
mod http2 {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// How a connection's first stream is met; every later stream is answered with a 200.
    #[derive(Clone, Copy)]
    enum First {
        /// `RST_STREAM` with `REFUSED_STREAM`, on a connection that then goes on serving.
        Refused,
        /// `GOAWAY` with last-stream-id 0 and `NO_ERROR` (written frame by frame): the
        /// stream was not processed, and the client needs another connection.
        GoneAway,
    }

    /// Serves HTTP/2 on loopback; the server's address and how many streams it saw.
    async fn server(first: First) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let streams = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&streams);
        tokio::spawn(async move {
            for connection in 0..4 {
                let (socket, _) = listener.accept().await.unwrap();
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    match first {
                        First::GoneAway if connection == 0 => go_away(socket, &seen).await,
                        _ => serve(socket, &seen, matches!(first, First::Refused)).await,
                    }
                });
            }
        });
        (addr, streams)
    }

    /// Answers every stream with a 200, but refuses the first if `refuse_first`.
    async fn serve(socket: TcpStream, seen: &AtomicUsize, refuse_first: bool) {
        let mut conn = h2::server::handshake(socket).await.unwrap();
        while let Some(Ok((req, mut respond))) = conn.accept().await {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            if refuse_first && n == 0 {
                respond.send_reset(h2::Reason::REFUSED_STREAM);
                continue;
            }
            drop(req);
            let res = Response::builder().status(200).body(()).unwrap();
            let mut body = respond.send_response(res, false).unwrap();
            body.send_data(Bytes::from_static(b"{}"), true).unwrap();
        }
    }

    /// Reads the client's preface and frames until its first HEADERS, then sends SETTINGS
    /// and a graceful GOAWAY that processed nothing, and waits for the client to close.
    async fn go_away(mut socket: TcpStream, seen: &AtomicUsize) {
        let mut preface = [0; 24];
        socket.read_exact(&mut preface).await.unwrap();
        loop {
            let mut head = [0; 9];
            socket.read_exact(&mut head).await.unwrap();
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0; len];
            socket.read_exact(&mut payload).await.unwrap();
            if head[3] == 0x1 {
                seen.fetch_add(1, Ordering::SeqCst);
                break;
            }
        }
        let settings = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];
        let go_away = [0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        socket.write_all(&settings).await.unwrap();
        socket.write_all(&go_away).await.unwrap();
        let mut rest = Vec::new();
        let _ = socket.read_to_end(&mut rest).await;
    }

    async fn post_through_the_stack(first: First) -> (StatusCode, u32, usize) {
        let (addr, streams) = server(first).await;
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http::<ReplayBody<Full<Bytes>>>();
        let stack = InfoPlugLayer::new(ApiKey::new(TEST_KEY).unwrap(), &format!("http://{addr}"))
            .unwrap()
            .layer(client);
        let req = Request::post(format!("http://{addr}/v1/search"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let res = tokio::time::timeout(10 * S, stack.oneshot(req))
            .await
            .expect("the request ends")
            .unwrap();
        (
            res.status(),
            res.retry_info().attempts(),
            streams.load(Ordering::SeqCst),
        )
    }

    #[tokio::test]
    async fn a_post_on_a_refused_stream_is_sent_again() {
        assert_eq!(
            post_through_the_stack(First::Refused).await,
            (StatusCode::OK, 2, 2)
        );
    }

    #[tokio::test]
    async fn a_post_on_a_stream_a_graceful_goaway_left_unprocessed_is_sent_again() {
        assert_eq!(
            post_through_the_stack(First::GoneAway).await,
            (StatusCode::OK, 2, 2)
        );
    }
}

/// A request hyper canceled before sending it (its connection closed first: "connection was
/// not ready") did no work, so even a POST is sent again. The transport is hyper's own
/// connection-level client over loopback, one connection per attempt; the first attempt's
/// connection is closed before the request is handed to it.
#[cfg(feature = "hyper")]
#[tokio::test]
async fn a_post_hyper_canceled_before_sending_it_is_sent_again() {
    use hyper::client::conn::http1;
    use hyper_util::rt::TokioIo;

    let server = Emulator::new().serve().await.unwrap();
    let addr = server.addr();
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&attempts);
    let transport = service_fn(move |req: Request<ReplayBody<Full<Bytes>>>| {
        let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
            let (mut sender, conn) = http1::handshake(io).await?;
            if first {
                // The connection's task ends before the request reaches it.
                drop(conn);
            } else {
                tokio::spawn(conn);
            }
            sender.send_request(req).await
        }
    });
    let client = InfoPlugLayer::new(ApiKey::new(TEST_KEY).unwrap(), &server.base_url())
        .unwrap()
        .layer(transport);
    let req = Request::post(server.uri("/v1/search").unwrap())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.retry_info().attempts(), 2);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(server.emulator().request_count(), 1);
}

/// A request the transport refuses before any I/O (an `https://` URL given to hyper-util's
/// plain-HTTP client) cannot be cured by sending it again: one attempt, and the transport's
/// own error back at once (it was tried three times, then returned as a transport dump).
#[tokio::test]
async fn a_request_the_transport_cannot_send_is_tried_once() {
    let client = InfoPlugLayer::new(ApiKey::new(TEST_KEY).unwrap(), "https://127.0.0.1:9")
        .unwrap()
        .layer(common::http_client_for::<ReplayBody<Full<Bytes>>>());
    let req = Request::get("https://127.0.0.1:9/v1/x")
        .body(Full::<Bytes>::default())
        .unwrap();
    match client.oneshot(req).await {
        Err(tower_infoplug::RetryError::Transport { error, info }) => {
            assert_eq!(info.attempts(), 1);
            assert_eq!(info.stop_reason(), StopReason::Final);
            let chain =
                std::iter::successors(Some(&error as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .map(ToString::to_string)
                .collect::<Vec<_>>();
            assert!(
                chain.iter().any(|m| m == "invalid URL, scheme is not http"),
                "{chain:?}"
            );
        }
        other => panic!("{:?}", other.map(|r| r.status())),
    }
}

/// Over loopback, a port nobody listens on: ten refused connections in a row trip the
/// breaker; the next request is refused at once without a connection attempt, and once the
/// emulator listens there the probe a second later finds it and requests flow again.
#[tokio::test]
async fn refused_connections_over_loopback_trip_the_breaker_and_its_probe_finds_the_server() {
    let api = Emulator::builder().no_rate_limit().build();
    let server = api.serve().await.unwrap();
    let addr = server.addr();
    server.shutdown().await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&attempts);
    let client = InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), &format!("http://{addr}"))
        .retry(|r| r.max_attempts(1).circuit_breaker(10, 300 * MS))
        .build()
        .unwrap()
        .layer(
            ServiceBuilder::new()
                .map_request(move |req| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    req
                })
                .service(common::http_client_for::<ReplayBody<Full<Bytes>>>()),
        );
    let get = || {
        let req = Request::get(format!("http://{addr}/v1/profile"))
            .body(Full::<Bytes>::default())
            .unwrap();
        client.clone().oneshot(req)
    };
    for _ in 0..10 {
        assert!(matches!(
            get().await,
            Err(tower_infoplug::RetryError::Transport { .. })
        ));
    }
    match get().await {
        Err(tower_infoplug::RetryError::CoolingDown { status, info }) => {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(info.stop_reason(), StopReason::CircuitOpen);
        }
        other => panic!("{:?}", other.map(|r| r.status())),
    }
    assert_eq!(attempts.load(Ordering::SeqCst), 10);
    let server = api.serve_on(addr).await.unwrap();
    tokio::time::sleep(300 * MS).await;
    for _ in 0..3 {
        assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(attempts.load(Ordering::SeqCst), 13);
    drop(server);
}
