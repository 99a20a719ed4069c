//! The `metrics` feature: what each decision counts, read with the `metrics` debugging
//! recorder, under paused time against the in-process emulator.

use crate::common;

use std::io;
use std::time::Duration;

use bytes::Bytes;
use common::{Fixed, get};
use http::Response;
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::{Layer, ServiceExt, service_fn};
use tower_infoplug::retry::RetryBuilder;
use tower_infoplug::{ApiKey, InfoPlugLayer, ReplayBody};
use tower_infoplug_mock::{Emulator, Reply, TEST_KEY};

const S: Duration = Duration::from_secs(1);

/// Runs `test` on a current-thread runtime with paused time, with `recorder` as this thread's
/// recorder, so tests running in parallel count apart.
fn with_recorder<F: Future<Output = ()>>(test: impl FnOnce(Snapshotter) -> F) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || runtime.block_on(test(snapshotter)));
}

/// What was recorded since the last reading (the debugging recorder's snapshot drains
/// counters and histograms), by name and labels (`name{label=value}`), and each gauge's last
/// value.
fn read(snapshotter: &Snapshotter) -> Vec<(String, DebugValue)> {
    let mut all: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn counter(all: &[(String, DebugValue)], name: &str) -> u64 {
    all.iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| match v {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
}

fn stack(
    api: &Emulator,
    retry: impl FnOnce(RetryBuilder) -> RetryBuilder,
) -> tower_infoplug::InfoPlugService<Emulator> {
    InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), "http://api.test")
        .retry(|r| retry(r.jitter(Fixed(0.0))))
        .build()
        .unwrap()
        .layer(api.clone())
}

#[test]
fn retries_gates_probes_waits_and_outcomes_are_counted() {
    with_recorder(|snapshotter| async move {
        let api = Emulator::new();
        let client = stack(&api, |r| {
            r.max_retry_after(10 * S)
                .max_cooldown(20 * S)
                .rate_limit_headers(true)
        });
        let url = "http://api.test/v1/x";

        // A 429 with a hint and a stated quota, retried: a gate closure, a retry, a wait, an
        // ok, and the paced rate the quota names.
        api.push(
            Reply::rate_limited(2)
                .header("ratelimit", "\"burst\";r=0;t=2")
                .header("ratelimit-policy", "\"burst\";q=5;w=1"),
        );
        client.clone().oneshot(get(url)).await.unwrap();
        let all = read(&snapshotter);
        assert_eq!(
            counter(&all, "infoplug_retries_total{reason=429}"),
            1,
            "{all:?}"
        );
        assert_eq!(
            counter(&all, "infoplug_gate_closures_total{status=429}"),
            1,
            "{all:?}"
        );
        assert_eq!(
            counter(&all, "infoplug_requests_total{outcome=ok}"),
            1,
            "{all:?}"
        );
        let waits = all
            .iter()
            .find(|(n, _)| n == "infoplug_wait_seconds{cause=retry}")
            .map(|(_, v)| v);
        match waits {
            Some(DebugValue::Histogram(values)) => {
                assert_eq!(values.len(), 1);
                assert!(values[0].into_inner() >= 2.0, "{values:?}");
            }
            other => panic!("{other:?}"),
        }
        let rate = all
            .iter()
            .find(|(n, _)| n.starts_with("infoplug_paced_rate{partition=http://api.test#"))
            .map(|(_, v)| v);
        assert!(
            matches!(rate, Some(DebugValue::Gauge(r)) if r.into_inner() == 5.0),
            "{all:?}"
        );

        // Out of attempts on 503s.
        api.push_all([
            Reply::unavailable(),
            Reply::unavailable(),
            Reply::unavailable(),
        ]);
        client.clone().oneshot(get(url)).await.unwrap();
        let all = read(&snapshotter);
        assert_eq!(
            counter(&all, "infoplug_retries_total{reason=503}"),
            2,
            "{all:?}"
        );
        assert_eq!(
            counter(&all, "infoplug_requests_total{outcome=attempts_exhausted}"),
            1,
            "{all:?}"
        );

        // A hint too long: returned at once; the next request meets the shut gate.
        api.push(Reply::rate_limited(3600));
        client.clone().oneshot(get(url)).await.unwrap();
        assert!(client.clone().oneshot(get(url)).await.is_err());
        let all = read(&snapshotter);
        assert_eq!(
            counter(&all, "infoplug_requests_total{outcome=hint_too_long}"),
            1,
            "{all:?}"
        );
        assert_eq!(
            counter(&all, "infoplug_requests_total{outcome=cooling_down}"),
            1,
            "{all:?}"
        );
        assert_eq!(
            counter(&all, "infoplug_gate_closures_total{status=429}"),
            1,
            "{all:?}"
        );

        // Past max_cooldown, one request probes and reopens the gate.
        tokio::time::sleep(21 * S).await;
        let res = client.clone().oneshot(get(url)).await.unwrap();
        assert_eq!(res.status(), 200);
        let all = read(&snapshotter);
        assert_eq!(counter(&all, "infoplug_probes_total{}"), 1, "{all:?}");
        assert_eq!(
            counter(&all, "infoplug_requests_total{outcome=ok}"),
            1,
            "{all:?}"
        );

        // When the pacing ends, its gauge says 0.
        tokio::time::sleep(3600 * S).await;
        client.clone().oneshot(get(url)).await.unwrap();
        api.push(Reply::rate_limited(1));
        let all = read(&snapshotter);
        let rate = all
            .iter()
            .find(|(n, _)| n.starts_with("infoplug_paced_rate{"))
            .map(|(_, v)| v);
        assert!(
            matches!(rate, Some(DebugValue::Gauge(r)) if r.into_inner() == 0.0),
            "{all:?}"
        );
    });
}

#[test]
fn budget_refusals_and_transport_failures_are_counted() {
    with_recorder(|snapshotter| async move {
        let api = Emulator::new();
        let client = stack(&api, |r| r.budget(0.0, 0));
        api.push(Reply::unavailable());
        client.oneshot(get("http://api.test/v1/x")).await.unwrap();
        let all = read(&snapshotter);
        assert_eq!(
            counter(&all, "infoplug_budget_refusals_total{}"),
            1,
            "{all:?}"
        );
        assert_eq!(
            counter(&all, "infoplug_requests_total{outcome=budget_exhausted}"),
            1,
            "{all:?}"
        );

        // A refused connection, retried as never sent, until the attempts run out.
        let refused = service_fn(|_: http::Request<ReplayBody<Full<Bytes>>>| async {
            Err::<Response<Full<Bytes>>, _>(io::Error::from(io::ErrorKind::ConnectionRefused))
        });
        let client = InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), "http://api.test")
            .retry(|r| r.jitter(Fixed(0.0)).max_attempts(2))
            .build()
            .unwrap()
            .layer(refused);
        assert!(client.oneshot(get("http://api.test/v1/x")).await.is_err());
        let all = read(&snapshotter);
        assert_eq!(
            counter(&all, "infoplug_retries_total{reason=never_sent}"),
            1,
            "{all:?}"
        );
        assert_eq!(
            counter(&all, "infoplug_requests_total{outcome=attempts_exhausted}"),
            1,
            "{all:?}"
        );
    });
}

/// Each attempt's duration, from sending to its answer or failure, in the OpenTelemetry
/// HTTP client histogram: labelled by method, status, and `error.type` (the status from 400
/// on, or the failure).
#[test]
fn each_attempt_has_its_duration_in_the_http_client_histogram() {
    with_recorder(|snapshotter| async move {
        let api = Emulator::new();
        let client = stack(&api, |r| r.attempt_timeout(S));
        let ms = Duration::from_millis;
        api.push_all([
            Reply::unavailable().delay(ms(250)),
            Reply::json(418, "{}").delay(ms(50)),
        ]);
        let res = client
            .clone()
            .oneshot(get("http://api.test/v1/x"))
            .await
            .unwrap();
        assert_eq!(res.status(), 418);
        // An attempt past its timeout, then a 200 after 100 ms.
        api.push_all([Reply::ok("{}").delay(5 * S), Reply::ok("{}").delay(ms(100))]);
        let res = client
            .clone()
            .oneshot(get("http://api.test/v1/x"))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);

        let all = read(&snapshotter);
        let name = "http.client.request.duration";
        let seconds = |labels: &str| -> Vec<f64> {
            match all
                .iter()
                .find(|(n, _)| *n == format!("{name}{{{labels}}}"))
            {
                Some((_, DebugValue::Histogram(values))) => {
                    values.iter().map(|v| v.into_inner()).collect()
                }
                other => panic!("{labels}: {other:?} in {all:?}"),
            }
        };
        let method = "http.request.method=GET";
        let status = |code: u16| format!("{method},http.response.status_code={code}");
        assert_eq!(seconds(&format!("{},error.type=503", status(503))), [0.25]);
        assert_eq!(seconds(&format!("{},error.type=418", status(418))), [0.05]);
        assert_eq!(seconds(&format!("{method},error.type=timed_out")), [1.0]);
        assert_eq!(seconds(&status(200)), [0.1]);
        assert_eq!(
            all.iter().filter(|(n, _)| n.starts_with(name)).count(),
            4,
            "{all:?}"
        );
    });
}
