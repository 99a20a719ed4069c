//! The auth layer and the classifier, alone and together, over loopback HTTP and in memory.
use crate::common;

use bytes::Bytes;
use common::{empty, http_client, read_body};
use http::{Request, Uri};
use http_body_util::Full;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_infoplug::{
    ApiKey, AuthHeader, AuthLayer, ClassifyLayer, ErrorCode, KeyHandle, ResponseExt,
};
use tower_infoplug_mock::{Emulator, Reply, TEST_KEY};

fn get(uri: Uri) -> Request<Full<Bytes>> {
    Request::get(uri).body(empty()).unwrap()
}

fn test_key() -> ApiKey {
    ApiKey::new(TEST_KEY).unwrap()
}

#[tokio::test]
async fn every_header_form_gets_through_to_the_api() {
    let emulator = Emulator::new();
    let server = emulator.serve().await.unwrap();
    for header in [
        AuthHeader::api_key(),
        AuthHeader::authorization(),
        AuthHeader::bearer(),
    ] {
        let client = AuthLayer::new(test_key())
            .header(header.clone())
            .for_origin(server.origin())
            .layer(http_client());
        let res = client
            .oneshot(get(server.uri("/v1/profile").unwrap()))
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{header:?}");
    }
    let sent: Vec<_> = emulator
        .requests()
        .iter()
        .map(|r| {
            (
                r.header("x-infoplug-api-key").is_some(),
                r.header("authorization").map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            (true, None),
            (false, Some(TEST_KEY.to_owned())),
            (false, Some(format!("Bearer {TEST_KEY}"))),
        ]
    );
}

#[tokio::test]
async fn the_key_never_reaches_another_origin() {
    let api = Emulator::new();
    let api_server = api.serve().await.unwrap();
    let elsewhere = Emulator::new();
    let elsewhere_server = elsewhere.serve().await.unwrap();
    let mut client = AuthLayer::new(test_key())
        .for_origin(api_server.origin())
        .layer(http_client());

    let res = client
        .ready()
        .await
        .unwrap()
        .call(get(api_server.uri("/v1/x").unwrap()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .ready()
        .await
        .unwrap()
        .call(get(elsewhere_server.uri("/v1/x").unwrap()))
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // A redirect follower above the layer copies the original headers to the new target:
    // the layer takes our key off again.
    let mut copied = get(elsewhere_server.uri("/download").unwrap());
    copied
        .headers_mut()
        .insert("x-infoplug-api-key", TEST_KEY.parse().unwrap());
    client.ready().await.unwrap().call(copied).await.unwrap();

    assert_eq!(
        api.requests()[0].header("x-infoplug-api-key"),
        Some(TEST_KEY)
    );
    assert!(
        elsewhere
            .requests()
            .iter()
            .all(|r| r.header("x-infoplug-api-key").is_none()),
        "{:?}",
        elsewhere.requests()
    );
}

#[tokio::test]
async fn a_caller_set_key_wins_and_a_rotated_key_applies_to_the_next_request() {
    let emulator = Emulator::new();
    let server = emulator.serve().await.unwrap();
    let handle = KeyHandle::new(ApiKey::new("stale-key").unwrap());
    let client = ServiceBuilder::new()
        .layer(ClassifyLayer::new())
        .layer(AuthLayer::new(&handle).for_origin(server.origin()))
        .service(http_client());

    let res = client
        .clone()
        .oneshot(get(server.uri("/v1/x").unwrap()))
        .await
        .unwrap();
    assert_eq!(res.api_error().unwrap().code(), &ErrorCode::Unauthorized);

    handle.rotate(test_key());
    let res = client
        .clone()
        .oneshot(get(server.uri("/v1/x").unwrap()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let mut tenant = get(server.uri("/v1/x").unwrap());
    tenant
        .headers_mut()
        .insert("x-infoplug-api-key", "tenant-key".parse().unwrap());
    let res = client.clone().oneshot(tenant).await.unwrap();
    assert_eq!(res.status(), 401);

    let keys: Vec<_> = emulator
        .requests()
        .iter()
        .map(|r| r.header("x-infoplug-api-key").unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["stale-key", TEST_KEY, "tenant-key"]);
}

#[tokio::test]
async fn an_echoed_key_is_redacted_in_either_layer_order() {
    let emulator = Emulator::new();
    let server = emulator.serve().await.unwrap();
    let auth = || AuthLayer::new(test_key()).header(AuthHeader::bearer());
    let classify_outside = ServiceBuilder::new()
        .layer(ClassifyLayer::new())
        .layer(auth())
        .service(http_client());
    let classify_inside = ServiceBuilder::new()
        .layer(auth())
        .layer(ClassifyLayer::new())
        .service(http_client());
    // A classifier on either side: the outer one leaves the error the inner one made, and
    // auth redacted, as it is (it has no note left to redact a new one with).
    let classify_both = ServiceBuilder::new()
        .layer(ClassifyLayer::new())
        .layer(auth())
        .layer(ClassifyLayer::new())
        .service(http_client());

    for round in 0..3 {
        emulator.push(Reply::echoing_key(401));
        let req = get(server.uri("/v1/x").unwrap());
        use http_body_util::BodyExt;
        let res = match round {
            0 => classify_outside
                .clone()
                .oneshot(req)
                .await
                .unwrap()
                .map(BodyExt::boxed),
            1 => classify_inside
                .clone()
                .oneshot(req)
                .await
                .unwrap()
                .map(BodyExt::boxed),
            _ => classify_both
                .clone()
                .oneshot(req)
                .await
                .unwrap()
                .map(BodyExt::boxed),
        };
        let err = res.api_error().unwrap().clone();
        for shown in [
            err.to_string(),
            format!("{err:?}"),
            format!("{:?}", res.extensions()),
        ] {
            assert!(!shown.contains(TEST_KEY), "round {round}: {shown}");
        }
        assert_eq!(err.details(), Some("the key [REDACTED] is not valid"));
        // The body itself is the server's, handed on unchanged.
        let body = read_body(res.into_body()).await.unwrap();
        assert!(std::str::from_utf8(&body).unwrap().contains(TEST_KEY));
    }
}

#[tokio::test]
async fn the_stack_reports_the_contract_in_memory() {
    let emulator = Emulator::builder()
        .credits(1)
        .rate_limit(2, std::time::Duration::from_secs(30))
        .build();
    let client = ServiceBuilder::new()
        .layer(ClassifyLayer::new())
        .layer(AuthLayer::new(test_key()))
        .service(emulator.clone());
    let send = |path: &'static str| client.clone().oneshot(get(Uri::from_static(path)));

    let ok = send("/v1/profile").await.unwrap();
    assert!(ok.api_error().is_none());
    assert!(ok.error_for_status().is_ok());

    let payment = send("/v1/profile").await.unwrap();
    let err = payment.api_error().unwrap();
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (402, &ErrorCode::InsufficientCredits)
    );
    assert!(!err.is_retryable());

    let limited = send("/v1/profile").await.unwrap();
    assert_eq!(limited.headers()["retry-after"], "30");
    let err = limited.api_error().unwrap();
    assert_eq!(err.code(), &ErrorCode::RateLimitExceeded);
    assert!(err.is_retryable());
}

#[test]
fn services_futures_and_bodies_are_send_and_sync_when_their_parts_are() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}

    let transport = http_client();
    let stack = ServiceBuilder::new()
        .layer(ClassifyLayer::new())
        .layer(AuthLayer::new(test_key()))
        .service(transport);
    send_sync(&stack);
    send_sync(&AuthLayer::new(test_key()));
    send_sync(&ClassifyLayer::new());
    send_sync(&KeyHandle::new(test_key()));
    let mut svc = stack.clone();
    let future = svc.call(get(Uri::from_static("http://127.0.0.1:9/")));
    send(&future);
    fn body_is_send<S, B>(_: &S)
    where
        S: Service<Request<B>>,
        S::Response: Send,
    {
    }
    body_is_send::<_, Full<Bytes>>(&stack);
}
