//! A bounded soak: a steady stream of requests through the whole stack over loopback HTTP,
//! against an emulator that answers a realistic share of them with faults.
//!
//! Checked: every request gets exactly one outcome (a response whose body was read to its end,
//! or an error), responses are not mixed up, live heap memory and the number of tasks are as
//! flat at the end as after warm-up, and retries stay within the budget's bound.
//!
//! `cargo test --all-features --test soak` runs it for a few seconds (CI does);
//! `cargo test --all-features --test soak -- --ignored --nocapture` runs it for a
//! minute and prints the figures docs/hostile-conditions.md reports.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tower::{Layer, ServiceExt};
use tower_infoplug::retry::{ReplayBody, RetryLayer};
use tower_infoplug::{ApiKey, InfoPlugLayer};
use tower_infoplug_mock::{Emulator, EmulatorServer, Reply, TEST_KEY};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// One dhat profiler per process: the soaks take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

const MS: Duration = Duration::from_millis(1);

/// The budget the stack runs with: a share of successes plus a floor per second.
const RATIO: f64 = 0.2;
const FLOOR: u32 = 10;

/// What the soak saw.
#[derive(Debug, Default)]
struct Figures {
    sent: usize,
    responses: usize,
    errors: usize,
    body_errors: usize,
    server_requests: usize,
    successes: usize,
    /// Live heap bytes and alive tasks at each quiet point (all requests answered).
    heap: Vec<usize>,
    tasks: Vec<usize>,
}

/// A deterministic spread of faults: 15 in 128 requests (about 12%) meet one.
fn fault(n: u64, hint: &Reply) -> Option<Reply> {
    let roll = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57; // 0..128
    Some(match roll {
        0..=4 => Reply::unavailable(),
        5..=6 => Reply::proxy_html(502),
        7..=8 => hint.clone(),
        9 => Reply::status(500).truncate_after(10),
        10 => Reply::ok(r#"{"data":"cut short"}"#).truncate_after(10),
        11 => Reply::status(400).chunked(8).chunk_delay(2 * MS),
        12 => Reply::echoing_key(401),
        13 => Reply::malformed(400),
        14 => Reply::ok("{}").delay(20 * MS),
        _ => return None,
    })
}

async fn soak(duration: Duration, rate: u32) -> Figures {
    let _turn = ONE_AT_A_TIME.lock().await;
    let _profiler = dhat::Profiler::builder().testing().build();

    let api = Emulator::builder()
        .credits(u64::MAX)
        .no_rate_limit()
        .build();
    let server = api.serve().await.unwrap();
    // 429s name a date 20 ms after the stack's wall clock: short, real cooldowns.
    let date = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let hint = Reply::status(429).header("retry-after", &httpdate::fmt_http_date(date));
    let retry = RetryLayer::builder()
        .backoff(MS, 20 * MS)
        .hint_jitter(20 * MS)
        .budget(RATIO, FLOOR)
        .wall_clock(move || date - 20 * MS);
    let client = InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), &server.base_url())
        .retry(|_| retry)
        .build()
        .unwrap()
        .layer(common::http_client_for::<ReplayBody<Full<Bytes>>>());

    let figures = Arc::new(std::sync::Mutex::new(Figures::default()));
    let mut in_flight = Vec::new();
    let period = Duration::from_secs(1) / rate;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let start = Instant::now();
    let mut next_quiet = start + Duration::from_secs(1);
    let mut n = 0u64;

    while start.elapsed() < duration {
        tick.tick().await;
        if let Some(reply) = fault(n, &hint) {
            api.push(reply);
        }
        let req = request(&server, n);
        figures.lock().unwrap().sent += 1;
        let (client, tally) = (client.clone(), figures.clone());
        in_flight.push(tokio::spawn(async move {
            let outcome = client.oneshot(req).await;
            let body = match outcome {
                Ok(res) => Some((res.status(), common::read_body(res.into_body()).await)),
                Err(_) => None,
            };
            let mut f = tally.lock().unwrap();
            match body {
                None => f.errors += 1,
                Some((status, body)) => {
                    f.responses += 1;
                    match body {
                        Ok(body) if status == StatusCode::OK && body.len() > 2 => {
                            // The emulator describes the request it answered: ours.
                            let text = std::str::from_utf8(&body).unwrap();
                            assert!(text.contains(&format!("/v1/soak/{n}\"")), "{text}");
                            f.successes += 1;
                        }
                        Ok(_) => {}
                        Err(_) => f.body_errors += 1,
                    }
                }
            }
        }));
        n += 1;

        // Now and then, let everything in flight finish and take the measures.
        if Instant::now() >= next_quiet {
            quiet(&mut in_flight, &api, &figures).await;
            next_quiet = Instant::now() + duration / 6;
        }
    }
    quiet(&mut in_flight, &api, &figures).await;
    drop(client);
    drop(server);
    Arc::try_unwrap(figures)
        .expect("every task has ended")
        .into_inner()
        .unwrap()
}

fn request(server: &EmulatorServer, n: u64) -> Request<Full<Bytes>> {
    let uri = server.uri(&format!("/v1/soak/{n}")).unwrap();
    if n.is_multiple_of(5) {
        Request::post(uri)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!("{{\"n\":{n}}}"))))
            .unwrap()
    } else {
        Request::get(uri).body(Full::default()).unwrap()
    }
}

/// Waits until every request in flight has its outcome (a failed check in one of them fails
/// the soak here), then records the server's count, the heap and the tasks.
async fn quiet(
    in_flight: &mut Vec<JoinHandle<()>>,
    api: &Emulator,
    figures: &std::sync::Mutex<Figures>,
) {
    for task in in_flight.drain(..) {
        task.await.unwrap();
    }
    let seen = api.take_requests().len();
    let heap = dhat::HeapStats::get().curr_bytes;
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let mut f = figures.lock().unwrap();
    f.server_requests += seen;
    f.heap.push(heap);
    f.tasks.push(tasks);
}

fn check(figures: &Figures, duration: Duration) {
    eprintln!("{figures:#?}");
    let Figures {
        sent,
        responses,
        errors,
        body_errors,
        server_requests,
        successes,
        ref heap,
        ref tasks,
    } = *figures;
    // Nothing lost: one outcome per request.
    assert_eq!(responses + errors, sent);
    assert!(successes > sent * 3 / 4, "{successes} of {sent}");
    // Truncated bodies end in an error, never in a clean short body.
    assert!(body_errors > 0);
    // Retries within the budget's bound: a share of the successes plus the floor for the run
    // (and one ten-second window of it at the start).
    let retries = server_requests - sent;
    let bound = RATIO * successes as f64 + f64::from(FLOOR) * (duration.as_secs_f64() + 10.0);
    assert!(
        (retries as f64) <= bound,
        "{retries} retries, bound {bound}"
    );
    assert!(retries > 0, "faults were met and retried");
    // Flat: the last quiet point holds no more than the first after warm-up, give or take
    // the connection pool's size, which follows the peak concurrency.
    let (first_heap, last_heap) = (heap[1], heap[heap.len() - 1]);
    assert!(
        last_heap <= first_heap + first_heap / 2 + 256 * 1024,
        "heap grew: {heap:?}"
    );
    let (first_tasks, last_tasks) = (tasks[1], tasks[tasks.len() - 1]);
    assert!(last_tasks <= first_tasks * 2 + 8, "tasks grew: {tasks:?}");
    eprintln!(
        "{sent} requests in {duration:?}: amplification {:.3}, {retries} retries (bound {bound:.0}), \
         heap {} -> {} KiB, tasks {first_tasks} -> {last_tasks}",
        server_requests as f64 / sent as f64,
        first_heap / 1024,
        last_heap / 1024,
    );
}

#[tokio::test]
async fn a_short_soak_loses_nothing_and_stays_flat() {
    let duration = Duration::from_secs(3);
    let figures = soak(duration, 200).await;
    check(&figures, duration);
}

#[tokio::test]
#[ignore = "a minute long; run with --ignored --nocapture"]
async fn a_one_minute_soak_loses_nothing_and_stays_flat() {
    let duration = Duration::from_secs(60);
    let figures = soak(duration, 200).await;
    check(&figures, duration);
}
