//! The emulator behaves like the API's contract, in process and over loopback HTTP.
use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::{empty, http_client, read_body};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use tower::ServiceExt;
use tower_infoplug_mock::{Emulator, Quota, Reply, TEST_KEY};

fn request(method: Method, uri: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("x-infoplug-api-key", TEST_KEY)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

async fn status_and_message(emulator: &Emulator, req: Request<Full<Bytes>>) -> (u16, String) {
    let res = emulator.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let body = read_body(res.into_body()).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let message = json["message"].as_str().unwrap_or("ok").to_owned();
    (status, message)
}

#[tokio::test]
async fn the_api_rules_apply_in_contract_order() {
    let emulator = Emulator::builder().credits(1).build();
    let no_key = Request::get("/v1/profile").body(empty()).unwrap();
    let cases = [
        (no_key, (401, "unauthorized")),
        (request(Method::GET, "/v2/x", ""), (404, "not_found")),
        (
            request(Method::GET, "/v1/company/missing", ""),
            (404, "not_found"),
        ),
        (
            request(Method::POST, "/v1/search", " "),
            (400, "payload_is_empty"),
        ),
        (
            request(Method::POST, "/v1/search", "{oops"),
            (400, "invalid_parameter"),
        ),
        (
            request(Method::GET, "/v1/jobs?limit=2501", ""),
            (400, "limit_out_of_range"),
        ),
        (
            request(Method::GET, "/v1/jobs?limit=0", ""),
            (400, "limit_out_of_range"),
        ),
        (
            request(Method::GET, "/v1/profile?linkedin_url=x", ""),
            (400, "invalid_parameter"),
        ),
        (request(Method::GET, "/v1/jobs?limit=2500", ""), (200, "ok")),
        (
            request(Method::GET, "/v1/jobs", ""),
            (402, "insufficient_credits"),
        ),
    ];
    for (req, (status, message)) in cases {
        let uri = req.uri().clone();
        let got = status_and_message(&emulator, req).await;
        assert_eq!(got, (status, message.to_owned()), "{uri}");
    }
    assert_eq!(emulator.credits(), 0);
    emulator.set_credits(5);
    let got = status_and_message(&emulator, request(Method::GET, "/v1/jobs", "")).await;
    assert_eq!(got.0, 200);
}

#[tokio::test]
async fn the_key_is_accepted_in_every_documented_header() {
    let emulator = Emulator::new();
    for (name, value) in [
        ("x-infoplug-api-key", TEST_KEY.to_owned()),
        ("authorization", TEST_KEY.to_owned()),
        ("authorization", format!("Bearer {TEST_KEY}")),
    ] {
        let req = Request::get("/v1/profile")
            .header(name, value)
            .body(empty())
            .unwrap();
        assert_eq!(status_and_message(&emulator, req).await.0, 200, "{name}");
    }
    let strict = Emulator::builder().accept_authorization(false).build();
    let req = Request::get("/v1/profile")
        .header("authorization", TEST_KEY)
        .body(empty())
        .unwrap();
    assert_eq!(status_and_message(&strict, req).await.0, 401);
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_answers_429_with_the_seconds_left() {
    let emulator = Emulator::builder()
        .rate_limit(2, Duration::from_secs(10))
        .build();
    let send = || emulator.clone().oneshot(request(Method::GET, "/v1/x", ""));
    assert_eq!(send().await.unwrap().status(), 200);
    assert_eq!(send().await.unwrap().status(), 200);
    let limited = send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "10");
    tokio::time::advance(Duration::from_millis(3500)).await;
    assert_eq!(send().await.unwrap().headers()["retry-after"], "7");
    tokio::time::advance(Duration::from_millis(6500)).await;
    assert_eq!(send().await.unwrap().status(), 200);
    // Rate-limited requests are recorded too, with their arrival time.
    let times: Vec<_> = emulator.requests().iter().map(|r| r.at).collect();
    assert_eq!(times.len(), 5);
    assert_eq!(times[4] - times[0], Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn quotas_name_the_moment_a_request_would_be_admitted_and_can_say_so_in_fields() {
    let ms = Duration::from_millis;
    for (quota, burst, retry_after) in [
        (Quota::sliding_window(2, Duration::from_secs(3)), 2, "3"),
        (Quota::token_bucket(1, 2), 2, "1"),
    ] {
        let emulator = Emulator::builder()
            .quota(quota)
            .rate_limit_headers(true)
            .build();
        let send = || emulator.clone().oneshot(request(Method::GET, "/v1/x", ""));
        for left in (0..burst).rev() {
            let res = send().await.unwrap();
            assert_eq!(res.status(), 200, "{quota:?}");
            let field = res.headers()["ratelimit"].to_str().unwrap().to_owned();
            assert!(
                field.starts_with(&format!("\"default\";r={left};t=")),
                "{field}"
            );
            assert!(res.headers().contains_key("ratelimit-policy"));
        }
        let limited = send().await.unwrap();
        assert_eq!(limited.status(), 429, "{quota:?}");
        assert_eq!(limited.headers()["retry-after"], retry_after, "{quota:?}");
        assert_eq!(
            limited.headers()["ratelimit"],
            format!("\"default\";r=0;t={retry_after}").as_str()
        );
        tokio::time::advance(ms(3000)).await;
        assert_eq!(send().await.unwrap().status(), 200, "{quota:?}");
    }
    // Without the option, no fields.
    let plain = Emulator::new();
    let res = plain
        .oneshot(request(Method::GET, "/v1/x", ""))
        .await
        .unwrap();
    assert!(!res.headers().contains_key("ratelimit"));
}

/// Over loopback, a quota announces itself on every answer in the fields asked for: the
/// draft's `RateLimit` / `RateLimit-Policy`, the common `X-RateLimit-*`, or both.
#[tokio::test]
async fn a_quota_announces_itself_over_loopback_in_either_family_of_fields() {
    for (draft, x) in [(true, false), (false, true), (true, true)] {
        let emulator = Emulator::builder()
            .quota(Quota::fixed_window(2, Duration::from_secs(60)))
            .rate_limit_headers(draft)
            .x_rate_limit_headers(x)
            .build();
        let server = emulator.serve().await.unwrap();
        let client = http_client();
        let get = || {
            Request::get(server.uri("/v1/profile").unwrap())
                .header("x-infoplug-api-key", TEST_KEY)
                .body(empty())
                .unwrap()
        };
        let run = format!("draft {draft}, x {x}");
        for (remaining, status) in [(1, 200), (0, 200), (0, 429)] {
            let res = client.request(get()).await.unwrap();
            assert_eq!(res.status(), status, "{run}");
            let field = |name: &str| {
                res.headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
            };
            // A minute's window, just begun: 60 s until it is whole again.
            assert_eq!(
                field("ratelimit"),
                draft.then(|| format!("\"default\";r={remaining};t=60")),
                "{run}"
            );
            assert_eq!(
                field("ratelimit-policy"),
                draft.then(|| "\"default\";q=2;w=60".to_owned()),
                "{run}"
            );
            assert_eq!(
                field("x-ratelimit-limit"),
                x.then(|| "2".to_owned()),
                "{run}"
            );
            assert_eq!(
                field("x-ratelimit-remaining"),
                x.then(|| remaining.to_string()),
                "{run}"
            );
            assert_eq!(
                field("x-ratelimit-reset"),
                x.then(|| "60".to_owned()),
                "{run}"
            );
        }
    }
}

#[tokio::test]
async fn every_request_is_recorded_over_loopback() {
    let emulator = Emulator::new();
    let server = emulator.serve().await.unwrap();
    let client = http_client();
    let req = Request::post(server.uri("/v1/search?limit=5").unwrap())
        .header("x-infoplug-api-key", TEST_KEY)
        .body(Full::new(Bytes::from_static(b"{\"q\":\"rust\"}")))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-credits-remaining"], "999");

    let [seen] = &emulator.requests()[..] else {
        panic!("one request")
    };
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.uri.path(), "/v1/search");
    assert_eq!(seen.uri.query(), Some("limit=5"));
    assert_eq!(&seen.body[..], b"{\"q\":\"rust\"}");
    assert!(seen.body_complete);
    assert_eq!(seen.header("x-infoplug-api-key"), Some(TEST_KEY));
    // Recordings can be printed in assertion messages without showing the key.
    assert!(!format!("{seen:?}").contains(TEST_KEY));
}

#[tokio::test]
async fn scripted_faults_reach_a_real_client() {
    let emulator = Emulator::new();
    let server = emulator.serve().await.unwrap();
    let client = http_client();
    emulator.push_all([
        Reply::proxy_html(502),
        Reply::status(500).truncate_after(10),
        Reply::oversized(503, 200_000),
        Reply::malformed(429).header("retry-after", "1"),
    ]);
    let get = || client.get(server.uri("/v1/x").unwrap());

    let res = get().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    let res = get().await.unwrap();
    assert_eq!(res.status(), 500);
    assert!(
        read_body(res.into_body()).await.is_err(),
        "a truncated body fails"
    );

    let res = get().await.unwrap();
    assert_eq!(read_body(res.into_body()).await.unwrap().len(), 200_000);

    let res = get().await.unwrap();
    assert_eq!(res.headers()["retry-after"], "1");
    let body = read_body(res.into_body()).await.unwrap();
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());

    assert_eq!(emulator.pending_replies(), 0);
    assert_eq!(emulator.request_count(), 4);
}

#[tokio::test(start_paused = true)]
async fn slow_replies_follow_tokio_time() {
    let emulator = Emulator::new();
    emulator.push(
        Reply::ok("abcd")
            .delay(Duration::from_secs(3))
            .chunk_delay(Duration::from_secs(1)),
    );
    let start = tokio::time::Instant::now();
    let res = emulator
        .clone()
        .oneshot(request(Method::GET, "/v1/x", ""))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    let body = read_body(res.into_body()).await.unwrap();
    assert_eq!(&body[..], b"abcd");
    assert_eq!(start.elapsed(), Duration::from_secs(6));
}

#[tokio::test]
async fn a_dropped_server_stops_accepting() {
    let emulator = Emulator::new();
    let server = emulator.serve().await.unwrap();
    let addr = server.addr();
    server.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn an_outage_answers_after_the_script_until_it_ends() {
    let emulator = Emulator::builder().credits(5).build();
    emulator.push(Reply::status(500));
    emulator.set_outage(Some(Reply::unavailable()));
    let send = || emulator.clone().oneshot(request(Method::GET, "/v1/x", ""));
    assert_eq!(send().await.unwrap().status(), 500);
    for _ in 0..3 {
        assert_eq!(send().await.unwrap().status(), 503);
    }
    emulator.set_outage(None);
    assert_eq!(send().await.unwrap().status(), 200);
    // Only the request the API itself answered used a credit.
    assert_eq!(emulator.credits(), 4);
    assert_eq!(emulator.request_count(), 5);
}

/// Over loopback, an endpoint with a quota of its own spends only that quota and names it in
/// its `RateLimit` fields: `/v1/search` refused while `/v1/profile` (the key's quota) is not.
#[tokio::test]
async fn an_endpoint_with_its_own_quota_spends_and_names_only_that_quota() {
    let emulator = Emulator::builder()
        .quota(Quota::fixed_window(3, Duration::from_secs(60)))
        .endpoint_quota(
            "/v1/search",
            "search",
            Quota::fixed_window(1, Duration::from_secs(60)),
        )
        .rate_limit_headers(true)
        .build();
    let server = emulator.serve().await.unwrap();
    let client = http_client();
    let get = |path: &str| {
        Request::get(server.uri(path).unwrap())
            .header("x-infoplug-api-key", TEST_KEY)
            .body(empty())
            .unwrap()
    };
    let field = |res: &http::Response<_>, name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    for (path, status, named, policy) in [
        (
            "/v1/search?q=a",
            200,
            "\"search\";r=0;t=60",
            "\"search\";q=1;w=60",
        ),
        (
            "/v1/search?q=b",
            429,
            "\"search\";r=0;t=60",
            "\"search\";q=1;w=60",
        ),
        (
            "/v1/profile",
            200,
            "\"default\";r=2;t=60",
            "\"default\";q=3;w=60",
        ),
        (
            "/v1/search/more",
            429,
            "\"search\";r=0;t=60",
            "\"search\";q=1;w=60",
        ),
        (
            "/v1/profile",
            200,
            "\"default\";r=1;t=60",
            "\"default\";q=3;w=60",
        ),
    ] {
        let res = client.request(get(path)).await.unwrap();
        assert_eq!(res.status(), status, "{path}");
        assert_eq!(field(&res, "ratelimit").as_deref(), Some(named), "{path}");
        assert_eq!(
            field(&res, "ratelimit-policy").as_deref(),
            Some(policy),
            "{path}"
        );
    }
}

/// A concurrency limit: a key's requests in flight (from arrival to answer) beyond it are
/// refused at once, and every answer names the limit as a policy counted in requests in
/// flight; one answered (or given up on) frees its place.
#[tokio::test(start_paused = true)]
async fn a_concurrency_limit_refuses_what_is_beyond_it_and_names_itself() {
    let emulator = Emulator::builder()
        .concurrency_limit(2)
        .latency(Duration::from_millis(100))
        .rate_limit_headers(true)
        .build();
    let send = || emulator.clone().oneshot(request(Method::GET, "/v1/x", ""));
    let field = |res: &http::Response<_>, name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (a, b, c) = tokio::join!(send(), send(), async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        send().await
    });
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(
        (a.status(), b.status(), c.status()),
        (
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        )
    );
    let policy = "\"conc\";q=2;qu=\"concurrent-requests\"";
    for res in [&a, &b, &c] {
        assert!(
            field(res, "ratelimit-policy").contains(policy),
            "{:?}",
            res.headers()
        );
    }
    assert!(field(&c, "ratelimit").contains("\"conc\";r=0;t=0;qu=\"concurrent-requests\""));
    // The key's quota is announced beside it.
    assert!(field(&a, "ratelimit-policy").starts_with("\"default\";q=100;w=1, "));
    // Answered: their places are free again; one given up on frees its own.
    let given_up = tokio::time::timeout(Duration::from_millis(10), send()).await;
    assert!(given_up.is_err());
    let (d, e) = tokio::join!(send(), send());
    assert_eq!(
        (d.unwrap().status(), e.unwrap().status()),
        (StatusCode::OK, StatusCode::OK)
    );
}
