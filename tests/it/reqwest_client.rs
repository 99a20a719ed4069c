//! reqwest, first class: the tower transport over `reqwest::Client` and the
//! `reqwest_middleware` middleware, against the emulator over loopback HTTP. Both run the
//! same decision table as the tower layer over hyper's client, row by row.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::{Fixed, http_client_for};
use http::{Extensions, Method, Request};
use http_body_util::Full;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use tower::{Layer, ServiceExt};
use tower_infoplug::reqwest::{InfoPlugMiddleware, ReqwestTransport, redirect_policy};
use tower_infoplug::retry::RetryBuilder;
use tower_infoplug::{
    ApiKey, ErrorCode, InfoPlugLayer, ReplayBody, ResponseExt, RetryError, StopReason,
};
use tower_infoplug_mock::{Emulator, EmulatorServer, Reply, TEST_KEY};

async fn served() -> EmulatorServer {
    Emulator::new().serve().await.unwrap()
}

/// The preset for one server, jitter pinned to 0 so a retry without a hint goes at once.
fn layer(
    server: &EmulatorServer,
    retry: impl FnOnce(RetryBuilder) -> RetryBuilder,
) -> InfoPlugLayer {
    InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), &server.base_url())
        .retry(|r| retry(r.jitter(Fixed(0.0))))
        .build()
        .unwrap()
}

fn middleware_client(layer: InfoPlugLayer) -> ClientWithMiddleware {
    let reqwest = reqwest::Client::builder()
        .redirect(redirect_policy())
        .build()
        .unwrap();
    ClientBuilder::new(reqwest)
        .with(InfoPlugMiddleware::new(layer))
        .build()
}

#[tokio::test]
async fn the_middleware_stamps_classifies_and_retries() {
    let server = served().await;
    let api = server.emulator();
    api.push_all([
        Reply::rate_limited(0).header("retry-after-ms", "50"),
        Reply::error(
            400,
            "invalid_parameter",
            Some("linkedin_url"),
            "not a profile URL",
        ),
    ]);
    let client = middleware_client(layer(&server, |r| r));
    let url = format!("{}/v1/profile?x=1", server.base_url());
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.url().as_str(), url, "the response keeps its URL");
    let info = res.retry_info();
    assert_eq!(info.attempts(), 2);
    assert_eq!(info.last_hint(), Some(Duration::from_millis(50)));
    let err = res.api_error().expect("classified");
    assert_eq!(err.code(), &ErrorCode::InvalidParameter);
    assert_eq!(err.parameter(), Some("linkedin_url"));
    // reqwest's own `error_for_status` shadows the trait's; named, it gives the `ApiError`.
    let err = ResponseExt::error_for_status(res).unwrap_err();
    assert_eq!(err.code(), &ErrorCode::InvalidParameter);
    let seen = api.requests();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|r| r.header("x-infoplug-api-key") == Some(TEST_KEY))
    );

    // A success carries its body through the classifier untouched.
    api.push(Reply::ok(r#"{"name":"Ada"}"#));
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.retry_info().attempts(), 1);
    assert_eq!(res.text().await.unwrap(), r#"{"name":"Ada"}"#);
}

/// One row of the decision table: method, the first answer, and how many attempts follow.
struct Row {
    method: Method,
    first: fn() -> Reply,
    attempts: u32,
}

fn rows() -> Vec<Row> {
    let row = |method: Method, first: fn() -> Reply, attempts| Row {
        method,
        first,
        attempts,
    };
    vec![
        row(Method::GET, || Reply::rate_limited(0), 2),
        row(Method::POST, || Reply::rate_limited(0), 2),
        row(Method::GET, Reply::unavailable, 2),
        row(Method::POST, Reply::unavailable, 1),
        row(
            Method::POST,
            || Reply::unavailable().header("retry-after", "soon"),
            1,
        ),
        // A fractional hint is a hint: the server asked to come back, a POST included.
        row(
            Method::POST,
            || Reply::unavailable().header("retry-after", "0.5"),
            2,
        ),
        row(Method::GET, || Reply::status(500), 2),
        row(Method::POST, || Reply::status(500), 1),
        row(Method::PUT, || Reply::status(502), 2),
        row(
            Method::GET,
            || Reply::error(402, "insufficient_credits", None, ""),
            1,
        ),
        row(
            Method::GET,
            || Reply::error(429, "insufficient_credits", None, ""),
            1,
        ),
        row(
            Method::GET,
            || Reply::rate_limited(0).header("x-should-retry", "false"),
            1,
        ),
        row(
            Method::POST,
            || Reply::status(409).header("x-should-retry", "true"),
            2,
        ),
        row(Method::GET, || Reply::status(404), 1),
    ]
}

#[tokio::test]
async fn the_middleware_the_reqwest_transport_and_hyper_decide_every_row_alike() {
    let server = served().await;
    let api = server.emulator();
    let url = |path: &str| format!("{}{path}", server.base_url());
    for (i, row) in rows().into_iter().enumerate() {
        let path = format!("/v1/row/{i}");

        // 1. The middleware.
        api.push((row.first)());
        let client = middleware_client(layer(&server, |r| r));
        let res = client
            .request(row.method.clone(), url(&path))
            .body("{}")
            .send()
            .await
            .unwrap();
        let by_middleware = res.retry_info().attempts();

        // 2. The tower layer over the reqwest transport.
        api.push((row.first)());
        let stack = layer(&server, |r| r).layer(ReqwestTransport::new().unwrap());
        let req = Request::builder()
            .method(row.method.clone())
            .uri(url(&path))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let by_transport = stack.oneshot(req).await.unwrap().retry_info().attempts();

        // 3. The tower layer over hyper's client.
        api.push((row.first)());
        let stack = layer(&server, |r| r).layer(http_client_for::<ReplayBody<Full<Bytes>>>());
        let req = Request::builder()
            .method(row.method.clone())
            .uri(url(&path))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let by_hyper = stack.oneshot(req).await.unwrap().retry_info().attempts();

        assert_eq!(
            [by_middleware, by_transport, by_hyper],
            [row.attempts; 3],
            "row {i}: {} after {:?}",
            row.method,
            (row.first)().status_code()
        );
        assert_eq!(
            api.pending_replies(),
            0,
            "row {i}: every scripted reply was used"
        );
        // Every attempt carried the body, every time.
        assert!(
            api.take_requests().iter().all(|r| &r.body[..] == b"{}"),
            "row {i}"
        );
    }
}

#[tokio::test]
async fn middleware_clones_and_the_tower_layer_share_one_gate() {
    let server = served().await;
    let api = server.emulator();
    let layer = layer(&server, |r| r.max_retry_after(Duration::from_secs(1)));
    let first = middleware_client(layer.clone());
    let second = middleware_client(layer.clone());
    let url = format!("{}/v1/x", server.base_url());

    // A 429 asking for 30 s, above the 1 s cap: returned at once, and the gate shuts.
    api.push(Reply::rate_limited(30));
    let res = first.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.retry_info().stop_reason(), StopReason::HintTooLong);

    // Another client built from the same layer meets the gate without a call.
    let err = second.get(&url).send().await.unwrap_err();
    let reqwest_middleware::Error::Middleware(err) = err else {
        panic!("not the retry layer's refusal: {err:?}");
    };
    let refusal = err
        .downcast_ref::<RetryError<reqwest_middleware::Error>>()
        .expect("a RetryError");
    assert!(
        matches!(refusal, RetryError::CoolingDown { .. }),
        "{refusal}"
    );
    assert!(refusal.retry_after().unwrap() > Duration::from_secs(28));

    // So does the tower layer over the reqwest transport.
    let stack = layer.layer(ReqwestTransport::new().unwrap());
    let req = Request::get(&url).body(Full::<Bytes>::default()).unwrap();
    assert!(matches!(
        stack.oneshot(req).await,
        Err(RetryError::CoolingDown { .. })
    ));
    assert_eq!(api.request_count(), 1, "only the first request was sent");
}

/// Counts its runs in the middleware extensions, as a downstream middleware might.
struct CountRuns;

#[derive(Clone, Debug, PartialEq)]
struct Runs(u32);

#[derive(Clone)]
struct FromCaller(&'static str);

#[async_trait::async_trait]
impl Middleware for CountRuns {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        assert_eq!(extensions.get::<FromCaller>().map(|c| c.0), Some("caller"));
        let runs = extensions.get::<Runs>().map_or(0, |r| r.0) + 1;
        extensions.insert(Runs(runs));
        next.run(req, extensions).await
    }
}

#[tokio::test]
async fn extensions_reach_every_attempt_and_come_back() {
    let server = served().await;
    let api = server.emulator();
    api.push_all([Reply::rate_limited(0), Reply::unavailable()]);
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(InfoPlugMiddleware::new(layer(&server, |r| r)))
        .with(CountRuns)
        .build();
    let mut extensions = Extensions::new();
    extensions.insert(FromCaller("caller"));
    let req = client
        .get(format!("{}/v1/x", server.base_url()))
        .build()
        .unwrap();
    let res = client
        .execute_with_extensions(req, &mut extensions)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.retry_info().attempts(), 3);
    assert_eq!(extensions.get::<Runs>(), Some(&Runs(3)));
    assert!(extensions.get::<FromCaller>().is_some());
}

/// reqwest without a TLS backend cannot send to an `https://` URL: one attempt, and reqwest's
/// own error back (it was tried three times).
#[tokio::test]
async fn a_request_reqwest_cannot_send_is_tried_once() {
    let base = "https://127.0.0.1:9";
    let layer = InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), base)
        .retry(|r| r.jitter(Fixed(0.0)).max_attempts(3))
        .build()
        .unwrap();
    let stack = layer.layer(ReqwestTransport::new().unwrap());
    let get = Request::get(format!("{base}/v1/x"))
        .body(Full::<Bytes>::default())
        .unwrap();
    match stack.oneshot(get).await {
        Err(RetryError::Transport { info, .. }) => assert_eq!(info.attempts(), 1),
        other => panic!("{:?}", other.map(|r| r.status())),
    }
}

#[tokio::test]
async fn a_refused_connection_is_never_sent_and_retried_for_a_post() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let layer = InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), &base)
        .retry(|r| r.jitter(Fixed(0.0)).max_attempts(3))
        .build()
        .unwrap();
    let stack = layer.clone().layer(ReqwestTransport::new().unwrap());
    let post = Request::post(format!("{base}/v1/x"))
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    match stack.oneshot(post).await {
        Err(RetryError::Transport { error, info }) => {
            assert!(error.is_connect(), "{error}");
            assert_eq!(info.attempts(), 3, "never sent: a POST is retried");
        }
        other => panic!("{:?}", other.map(|r| r.status())),
    }
    // Through the middleware, the transport's own error comes back.
    let err = middleware_client(layer)
        .post(format!("{base}/v1/x"))
        .body("{}")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err}");
}

#[tokio::test]
async fn no_redirect_carries_the_key_to_another_origin() {
    let elsewhere = served().await;
    let server = served().await;
    let to_elsewhere = format!("{}/export.csv", elsewhere.base_url());
    let redirect = || Reply::status(302).header("location", &to_elsewhere);

    // The middleware under a client built with `redirect_policy`: the 302 comes back.
    server.emulator().push(redirect());
    let res = middleware_client(layer(&server, |r| r))
        .get(format!("{}/v1/x", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);

    // The transport: redirects off.
    server.emulator().push(redirect());
    let stack = layer(&server, |r| r).layer(ReqwestTransport::new().unwrap());
    let req = Request::get(format!("{}/v1/x", server.base_url()))
        .body(Full::<Bytes>::default())
        .unwrap();
    assert_eq!(stack.oneshot(req).await.unwrap().status(), 302);
    assert_eq!(elsewhere.emulator().request_count(), 0);

    // What the policy prevents: reqwest's default policy copies the header across origins.
    server.emulator().push(redirect());
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(InfoPlugMiddleware::new(layer(&server, |r| r)))
        .build();
    let res = client
        .get(format!("{}/v1/x", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.url().as_str(), to_elsewhere);
    let leaked = elsewhere.emulator().requests();
    assert_eq!(leaked[0].header("x-infoplug-api-key"), Some(TEST_KEY));

    // Within one origin, the policy follows.
    server
        .emulator()
        .push(Reply::status(302).header("location", "/v1/moved"));
    let res = middleware_client(layer(&server, |r| r))
        .get(format!("{}/v1/x", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.url().as_str().ends_with("/v1/moved"));
}
