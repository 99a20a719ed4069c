//! Goodput under a quota: how fast a batch of requests gets done against a rate-limited API,
//! and how many paid calls that costs, for this crate and for what people use instead, all in
//! one run, over loopback against the emulator.
//!
//! ```text
//! cargo bench --bench goodput --all-features
//! ```
//!
//! N requests (default 2000; `GOODPUT_N` sets another) go out 16 and 64 at a time against a
//! quota of 200 requests a second (`GOODPUT_QUOTA`), enforced as a fixed window and as a token
//! bucket. Rows:
//!
//! - no retry: the hyper client with the key, nothing else;
//! - `tower::retry` with exponential backoff (100 ms doubling, full jitter, 4 attempts) that
//!   ignores the server's hints: what people write by hand;
//! - reqwest + reqwest-middleware + reqwest-retry with the policy reqwest-retry documents
//!   (`ExponentialBackoff`, 3 retries);
//! - `RetryLayer` without pacing (the `InfoPlugLayer` with `pacing(false)`);
//! - `InfoPlugLayer` as it comes.
//!
//! Then the same with a fleet: 4 stacks, each with the given number in flight, on one quota:
//! each with its own state, and (row "+ Redis fleet") sharing it through a `redis-server`
//! the bench starts on a free loopback port (or `GOODPUT_REDIS`). `GOODPUT_ONLY=fleet` runs
//! the fleet's tables alone.
//!
//! Columns: requests that ended in a 200; makespan over the ideal (N over the quota); calls
//! the server saw over N; 429s the server sent; p50 and p99 latency of a request, waits
//! included. Every row is bounded: a request makes at most its policy's attempts, and a row
//! stops after `GOODPUT_LIMIT_SECS` (default 120) whatever happens.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::indexing_slicing
)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_infoplug::mock::{Emulator, EmulatorServer, Quota, TEST_KEY};
use tower_infoplug::retry::{Jitter, RandomJitter, RedisFleet};
use tower_infoplug::{ApiKey, AuthLayer, InfoPlugLayer};

const CREDITS: u64 = 1 << 40;

type Call = Pin<Box<dyn Future<Output = Option<StatusCode>> + Send>>;

/// One client under test: sends one GET to the URI and says how it ended (`None`: an error).
type Sender = Arc<dyn Fn(String) -> Call + Send + Sync>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Row {
    NoRetry,
    TowerRetry,
    ReqwestRetry,
    Unpaced,
    InfoPlug,
    /// `InfoPlugLayer` with its state shared through Redis (the fleet only).
    Fleet,
}

impl Row {
    const ALL: [Row; 6] = [
        Row::NoRetry,
        Row::TowerRetry,
        Row::ReqwestRetry,
        Row::Unpaced,
        Row::InfoPlug,
        Row::Fleet,
    ];

    fn name(self) -> &'static str {
        match self {
            Row::NoRetry => "no retry",
            Row::TowerRetry => "`tower::retry`, exponential backoff",
            Row::ReqwestRetry => "reqwest-retry (default policy)",
            Row::Unpaced => "`RetryLayer`, pacing off",
            Row::InfoPlug => "`InfoPlugLayer`",
            Row::Fleet => "`InfoPlugLayer` + Redis fleet",
        }
    }

    /// A fresh client (its own state, its own connection pool); for the fleet row, its own
    /// handle on the Redis at `redis` under `prefix`.
    fn client(self, server: &EmulatorServer, redis: Option<(&str, &str)>) -> Sender {
        let base = server.base_url();
        match self {
            Row::NoRetry => {
                let svc = AuthLayer::new(ApiKey::new(TEST_KEY).unwrap())
                    .layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
                boxed(svc)
            }
            Row::TowerRetry => {
                let svc = tower::retry::RetryLayer::new(Backoff::default()).layer(
                    AuthLayer::new(ApiKey::new(TEST_KEY).unwrap())
                        .layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>()),
                );
                boxed(svc)
            }
            Row::ReqwestRetry => {
                use reqwest_retry::{RetryTransientMiddleware, policies::ExponentialBackoff};
                let policy = ExponentialBackoff::builder().build_with_max_retries(3);
                let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                    .with(RetryTransientMiddleware::new_with_policy(policy))
                    .build();
                Arc::new(move |uri: String| {
                    let client = client.clone();
                    Box::pin(async move {
                        let res = client
                            .get(uri)
                            .header("x-infoplug-api-key", TEST_KEY)
                            .send()
                            .await
                            .ok()?;
                        let status = res.status();
                        res.bytes().await.ok()?;
                        Some(status)
                    })
                })
            }
            Row::Unpaced | Row::InfoPlug | Row::Fleet => {
                let fleet = redis
                    .filter(|_| self == Row::Fleet)
                    .map(|(url, prefix)| RedisFleet::builder(url).prefix(prefix).build().unwrap());
                let layer = InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), &base)
                    .retry(|r| {
                        let r = r.pacing(self != Row::Unpaced);
                        match fleet {
                            Some(fleet) => r.fleet(fleet),
                            None => r,
                        }
                    })
                    .build()
                    .unwrap();
                boxed(layer.layer(Client::builder(TokioExecutor::new()).build_http()))
            }
        }
    }
}

/// A tower client as a [`Sender`].
fn boxed<S, B>(svc: S) -> Sender
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    Arc::new(move |uri: String| {
        let svc = svc.clone();
        Box::pin(async move {
            let req = Request::get(uri).body(Full::default()).unwrap();
            let res = svc.oneshot(req).await.ok()?;
            let status = res.status();
            res.into_body().collect().await.ok()?;
            Some(status)
        })
    })
}

/// What people write by hand with `tower::retry`: exponential backoff with full jitter on
/// 429, 5xx and errors, hints ignored.
#[derive(Clone, Default)]
struct Backoff {
    retries: u32,
}

impl<B, E> tower::retry::Policy<Request<Full<Bytes>>, Response<B>, E> for Backoff {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _req: &mut Request<Full<Bytes>>,
        result: &mut Result<Response<B>, E>,
    ) -> Option<Self::Future> {
        let again = match result {
            Ok(res) => res.status() == 429 || res.status().is_server_error(),
            Err(_) => true,
        };
        if !again || self.retries >= 3 {
            return None;
        }
        self.retries += 1;
        let ceiling = Duration::from_millis(100) * 2u32.pow(self.retries - 1);
        Some(tokio::time::sleep(ceiling.mul_f64(jitter())))
    }

    fn clone_request(&mut self, req: &Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> {
        Some(req.clone())
    }
}

fn jitter() -> f64 {
    static JITTER: std::sync::OnceLock<RandomJitter> = std::sync::OnceLock::new();
    JITTER.get_or_init(RandomJitter::new).sample()
}

struct Outcome {
    ok: usize,
    makespan: Duration,
    calls: usize,
    throttled: usize,
    latencies: Vec<Duration>,
}

/// `n` requests over `clients`, each with `in_flight` lanes, against a fresh emulator.
async fn run(
    row: Row,
    quota: Quota,
    n: usize,
    in_flight: usize,
    workers: usize,
    redis: Option<&str>,
) -> Outcome {
    let api = Emulator::builder().quota(quota).credits(CREDITS).build();
    // A fresh prefix per run: nothing one run learned carries over to the next.
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let prefix = format!(
        "goodput-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    );
    let server = api.serve().await.unwrap();
    let uri = server.uri("/v1/profile").unwrap().to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let limit = Duration::from_secs(
        std::env::var("GOODPUT_LIMIT_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(120),
    );
    let start = Instant::now();
    let mut lanes = Vec::new();
    for _ in 0..workers {
        let client = row.client(&server, redis.map(|url| (url, prefix.as_str())));
        for _ in 0..in_flight {
            let (client, next, uri) = (Arc::clone(&client), Arc::clone(&next), uri.clone());
            lanes.push(tokio::spawn(async move {
                let mut done = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let sent = Instant::now();
                    let status = client(uri.clone()).await;
                    done.push((status == Some(StatusCode::OK), sent.elapsed()));
                }
                done
            }));
        }
    }
    let mut ok = 0;
    let mut latencies = Vec::with_capacity(n);
    let all = async {
        for lane in lanes {
            for (success, latency) in lane.await.unwrap() {
                ok += usize::from(success);
                latencies.push(latency);
            }
        }
    };
    if tokio::time::timeout(limit, all).await.is_err() {
        println!("  ({} stopped at the {limit:?} limit)", row.name());
    }
    let makespan = start.elapsed();
    latencies.sort_unstable();
    let calls = api.request_count();
    let admitted = (CREDITS - api.credits()) as usize;
    Outcome {
        ok,
        makespan,
        calls,
        throttled: calls - admitted,
        latencies,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would run this too: only run when
    // benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = std::env::var("GOODPUT_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let per_second: u32 = std::env::var("GOODPUT_QUOTA")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let ideal = Duration::from_secs_f64(n as f64 / f64::from(per_second));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "N = {n}, quota {per_second}/s, ideal makespan {:.1} s",
        ideal.as_secs_f64()
    );
    // The fleet's Redis row: a redis-server started here on a free loopback port (or
    // `GOODPUT_REDIS=redis://...`); without either, the row is skipped.
    let mut started = None;
    let redis = std::env::var("GOODPUT_REDIS").ok().or_else(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        started = Some(child);
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(format!("redis://127.0.0.1:{port}"))
    });
    if redis.is_none() {
        println!(
            "(no redis-server on the PATH and no GOODPUT_REDIS: the Redis fleet row is skipped)"
        );
    }
    // `GOODPUT_ONLY=fleet` runs the fleet's tables alone.
    let only_fleet = std::env::var("GOODPUT_ONLY").is_ok_and(|v| v == "fleet");
    let quotas = [
        (
            "fixed window",
            Quota::fixed_window(per_second, Duration::from_secs(1)),
        ),
        ("token bucket", Quota::token_bucket(per_second, per_second)),
    ];
    for (workers, title) in [(1, "one stack"), (4, "a fleet of 4 stacks on one quota")] {
        if only_fleet && workers == 1 {
            continue;
        }
        for (quota_name, quota) in quotas {
            for in_flight in [16, 64] {
                println!(
                    "\n{title}, {quota_name}, {in_flight} in flight{}\n",
                    if workers > 1 { " each" } else { "" }
                );
                println!("| row | 200s | makespan ÷ ideal | calls ÷ N | 429s sent | p50 | p99 |");
                println!("|---|---:|---:|---:|---:|---:|---:|");
                for row in Row::ALL {
                    if row == Row::Fleet && (workers == 1 || redis.is_none()) {
                        continue;
                    }
                    let out =
                        runtime.block_on(run(row, quota, n, in_flight, workers, redis.as_deref()));
                    println!(
                        "| {} | {} | {:.2} | {:.3} | {} | {:.0} ms | {:.0} ms |",
                        row.name(),
                        out.ok,
                        out.makespan.as_secs_f64() / ideal.as_secs_f64(),
                        out.calls as f64 / n as f64,
                        out.throttled,
                        percentile(&out.latencies, 0.5).as_secs_f64() * 1000.0,
                        percentile(&out.latencies, 0.99).as_secs_f64() * 1000.0,
                    );
                }
            }
        }
    }
    if let Some(mut child) = started {
        let _ = child.kill();
        let _ = child.wait();
    }
}
