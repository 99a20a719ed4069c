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
//! - `InfoPlugLayer` as it comes;
//! - `InfoPlugLayer` told the quota (`quota(q, 1 s)`): paced from the first request;
//! - `InfoPlugLayer` against a server that announces its quota on every answer (`RateLimit`,
//!   `RateLimit-Policy`): followed from each answer (`GOODPUT_ONLY=announced` runs these
//!   beside the stack against a server that does not).
//!
//! Then the same with a fleet: 4 stacks, each with the given number in flight, on one quota:
//! each with its own state, and (row "+ Redis fleet") sharing it through a `redis-server`
//! the bench starts on a free loopback port (or `GOODPUT_REDIS`). `GOODPUT_ONLY=fleet` runs
//! the fleet's tables alone; `GOODPUT_ONLY=quota` only the `InfoPlugLayer` rows, told the
//! quota and not, in every table.
//!
//! Then two priority classes on one saturated quota (`GOODPUT_ONLY=priority`): a batch and
//! an interactive caller, with and without `Priority`; and two endpoints with quotas of their
//! own (`GOODPUT_ONLY=endpoints`): one endpoint's batch alone and beside the other's
//! saturated quota, reading the draft's fields and not. Both on one stack, then (with a
//! `redis-server`) over a Redis fleet of 4 stacks; `GOODPUT_FLEET_ONLY=1` runs the fleet's
//! rows alone.
//!
//! Last, the same clients against Debian's nginx `limit_req` (20 a second, no burst; bare
//! refusals and `Retry-After: 1`), when `/usr/sbin/nginx` exists: 400 requests
//! (`GOODPUT_NGINX_N`), 16 and 64 in flight; `GOODPUT_ONLY=nginx` runs those alone, and
//! `GOODPUT_ONLY=stack` the one-stack tables alone.
//!
//! `GOODPUT_ONLY=cluster`: the fleet of 4, each alone, through one Redis, and through a
//! Redis Cluster of three masters the bench creates (needs `redis-server` and `redis-cli`).
//!
//! `GOODPUT_ONLY=fleet-down`: the fleet of 4 told the quota, with its Redis killed half way
//! through, beside four stacks each planning alone at the whole quota.
//!
//! Then outages without hints (`GOODPUT_ONLY=outage` runs them alone): 30 s
//! (`GOODPUT_OUTAGE_SECS`) of 500s from the emulator, or of refused connections (it stops
//! listening), then 5 s of recovery, 16 and 64 callers each sending a request every 100 ms;
//! `tower::retry`, reqwest-retry, and `InfoPlugLayer` with and without its circuit breaker.
//! Columns: requests the callers started during the outage after its first second; the
//! attempts their clients sent then (counted below each client's retries), over those
//! requests; the time from the recovery to the first 200; requests started after that first
//! 200 that did not end in one; p50 latency during the outage.
//!
//! Columns of the quota tables: requests that ended in a 200; makespan over the ideal (N over the quota); calls
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
use tower_infoplug::retry::{Jitter, Priority, RandomJitter, RedisFleet, RetryBuilder};
use tower_infoplug::{ApiKey, AuthLayer, InfoPlugLayer};
use tower_infoplug_mock::{Emulator, Quota, TEST_KEY};

#[path = "../tests/common/nginx.rs"]
mod nginx;

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
    /// `InfoPlugLayer` told the quota (`quota(q, 1 s)`).
    Configured,
    /// The same, its state shared through Redis (the fleet only).
    ConfiguredFleet,
    /// `InfoPlugLayer` with its state shared through a Redis Cluster (the fleet only).
    ClusterFleet,
    /// `InfoPlugLayer` against a server that announces its quota on every answer
    /// (`RateLimit`, `RateLimit-Policy`).
    Announced,
    /// The same, its state shared through Redis (the fleet only).
    AnnouncedFleet,
}

/// The quota of the run, in requests a second, for the rows told it.
static QUOTA: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(200);

impl Row {
    const ALL: [Row; 10] = [
        Row::NoRetry,
        Row::TowerRetry,
        Row::ReqwestRetry,
        Row::Unpaced,
        Row::InfoPlug,
        Row::Fleet,
        Row::Configured,
        Row::ConfiguredFleet,
        Row::Announced,
        Row::AnnouncedFleet,
    ];

    /// Whether the row needs a shared store.
    fn shares(self) -> bool {
        matches!(
            self,
            Row::Fleet | Row::ConfiguredFleet | Row::ClusterFleet | Row::AnnouncedFleet
        )
    }

    /// Whether the server announces its quota on every answer in this row.
    fn announced(self) -> bool {
        matches!(self, Row::Announced | Row::AnnouncedFleet)
    }

    fn name(self) -> &'static str {
        match self {
            Row::NoRetry => "no retry",
            Row::TowerRetry => "`tower::retry`, exponential backoff",
            Row::ReqwestRetry => "reqwest-retry (default policy)",
            Row::Unpaced => "`RetryLayer`, pacing off",
            Row::InfoPlug => "`InfoPlugLayer`",
            Row::Fleet => "`InfoPlugLayer` + Redis fleet",
            Row::Configured => "`InfoPlugLayer`, `quota(q, 1 s)`",
            Row::ConfiguredFleet => "`InfoPlugLayer`, `quota(q, 1 s)` + Redis fleet",
            Row::ClusterFleet => "`InfoPlugLayer` + Redis Cluster fleet",
            Row::Announced => "`InfoPlugLayer`, the server announces",
            Row::AnnouncedFleet => "`InfoPlugLayer`, the server announces + Redis fleet",
        }
    }

    /// A fresh client of the API at `base` (its own state, its own connection pool); for the
    /// fleet row, its own handle on the Redis at `redis` under `prefix`.
    fn client(self, base: &str, redis: Option<(&str, &str)>) -> Sender {
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
                reqwest_sender(client)
            }
            Row::Unpaced
            | Row::InfoPlug
            | Row::Fleet
            | Row::Configured
            | Row::ConfiguredFleet
            | Row::ClusterFleet
            | Row::Announced
            | Row::AnnouncedFleet => {
                // A cluster's nodes are given comma-separated.
                let fleet = redis.filter(|_| self.shares()).map(|(url, prefix)| {
                    let builder = if self == Row::ClusterFleet {
                        let nodes: Vec<&str> = url.split(',').collect();
                        RedisFleet::cluster(&nodes)
                    } else {
                        RedisFleet::builder(url)
                    };
                    // `GOODPUT_FLEET_TIMEOUT_MS`: the fleet's Redis timeout (default 50 ms).
                    let timeout = std::env::var("GOODPUT_FLEET_TIMEOUT_MS")
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .map_or(
                            tower_infoplug::retry::DEFAULT_FLEET_TIMEOUT,
                            Duration::from_millis,
                        );
                    builder.prefix(prefix).timeout(timeout).build().unwrap()
                });
                let quota = QUOTA.load(Ordering::Relaxed);
                let layer = InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), base)
                    .retry(|r| {
                        let r = r
                            .pacing(self != Row::Unpaced)
                            .rate_limit_headers(self.announced());
                        let r = match self {
                            Row::Configured | Row::ConfiguredFleet => {
                                r.quota(quota, Duration::from_secs(1))
                            }
                            _ => r,
                        };
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

/// A reqwest-middleware client as a [`Sender`], sending the key.
fn reqwest_sender(client: reqwest_middleware::ClientWithMiddleware) -> Sender {
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
    /// Of the 429s, those the server sent after the lane had its first answer (a later
    /// request of the lane, or its first again after a refusal); emulator rows only.
    after_first: usize,
    latencies: Vec<Duration>,
}

impl Outcome {
    /// The table row: 200s, makespan over `ideal`, calls over `n`, the `throttled` column as
    /// given, p50 and p99.
    fn print(&self, row: Row, n: usize, ideal: Duration, throttled: &str) {
        println!(
            "| {} | {} | {:.2} | {:.3} | {throttled} | {:.0} ms | {:.0} ms |",
            row.name(),
            self.ok,
            self.makespan.as_secs_f64() / ideal.as_secs_f64(),
            self.calls as f64 / n as f64,
            percentile(&self.latencies, 0.5).as_secs_f64() * 1000.0,
            percentile(&self.latencies, 0.99).as_secs_f64() * 1000.0,
        );
    }
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
    let api = Emulator::builder()
        .quota(quota)
        .credits(CREDITS)
        .rate_limit_headers(row.announced())
        .build();
    // A fresh prefix per run: nothing one run learned carries over to the next.
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let prefix = format!(
        "goodput-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    );
    let server = api.serve().await.unwrap();
    let uri = server.uri("/v1/profile").unwrap().to_string();
    let clients: Vec<Sender> = (0..workers)
        .map(|_| row.client(&server.base_url(), redis.map(|url| (url, prefix.as_str()))))
        .collect();
    let (ok, makespan, latencies) = drive(row, &clients, &uri, n, in_flight).await;
    let calls = api.request_count();
    let admitted = (CREDITS - api.credits()) as usize;
    Outcome {
        ok,
        makespan,
        calls,
        throttled: calls - admitted,
        after_first: refused_after_first(&api.requests()),
        latencies,
    }
}

/// Of the 429s among `requests`, those sent after their lane's first answer: a lane's later
/// request (`drive` names each `lane=L&seq=K` in the query), or its first again.
fn refused_after_first(requests: &[tower_infoplug_mock::Recorded]) -> usize {
    let mut firsts = std::collections::HashSet::new();
    requests
        .iter()
        .filter(|r| {
            let query = r.uri.query().unwrap_or_default();
            let first = query.ends_with("&seq=1");
            // A lane's first request answered once already comes again only as a retry.
            let again = first && !firsts.insert(query.to_owned());
            r.status == StatusCode::TOO_MANY_REQUESTS && (!first || again)
        })
        .count()
}

/// Sends `n` GETs to `uri`, `in_flight` lanes per client, each lane sending its next as soon
/// as its last ended; stops at `GOODPUT_LIMIT_SECS` (default 120) whatever happens. Returns
/// how many ended in a 200, the makespan, and every request's latency, sorted.
async fn drive(
    row: Row,
    clients: &[Sender],
    uri: &str,
    n: usize,
    in_flight: usize,
) -> (usize, Duration, Vec<Duration>) {
    let next = Arc::new(AtomicUsize::new(0));
    let limit = Duration::from_secs(
        std::env::var("GOODPUT_LIMIT_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(120),
    );
    let start = Instant::now();
    // Counted as they end: a row stopped at the limit still counts what its lanes finished.
    let succeeded = Arc::new(AtomicUsize::new(0));
    let mut lanes = Vec::new();
    for client in clients {
        for _ in 0..in_flight {
            let (client, next, uri) = (Arc::clone(client), Arc::clone(&next), uri.to_owned());
            let succeeded = Arc::clone(&succeeded);
            // Each request names its lane and its place in it (see `refused_after_first`).
            let lane = lanes.len();
            lanes.push(tokio::spawn(async move {
                let mut done = Vec::new();
                let mut seq = 0;
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let sent = Instant::now();
                    seq += 1;
                    let sep = if uri.contains('?') { '&' } else { '?' };
                    let status = client(format!("{uri}{sep}lane={lane}&seq={seq}")).await;
                    if status == Some(StatusCode::OK) {
                        succeeded.fetch_add(1, Ordering::Relaxed);
                    }
                    done.push(sent.elapsed());
                }
                done
            }));
        }
    }
    let mut latencies = Vec::with_capacity(n);
    let all = async {
        for lane in lanes {
            latencies.extend(lane.await.unwrap());
        }
    };
    if tokio::time::timeout(limit, all).await.is_err() {
        println!("  ({} stopped at the {limit:?} limit)", row.name());
    }
    let ok = succeeded.load(Ordering::Relaxed);
    let makespan = start.elapsed();
    latencies.sort_unstable();
    (ok, makespan, latencies)
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
    QUOTA.store(per_second, Ordering::Relaxed);
    let ideal = Duration::from_secs_f64(n as f64 / f64::from(per_second));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "N = {n}, quota {per_second}/s, ideal makespan {:.1} s",
        ideal.as_secs_f64()
    );
    // `GOODPUT_ONLY=fleet` runs the fleet's tables alone, `GOODPUT_ONLY=nginx` nginx's.
    let only = std::env::var("GOODPUT_ONLY").unwrap_or_default();
    if only == "nginx" {
        runtime.block_on(against_nginx());
        return;
    }
    if only == "outage" {
        runtime.block_on(outages());
        return;
    }
    if only == "cluster" {
        runtime.block_on(on_a_cluster(n, per_second, ideal));
        return;
    }
    if only == "fleet-down" {
        runtime.block_on(losing_redis(n, per_second, ideal));
        return;
    }
    // The fleet's Redis rows: a redis-server started here on a free loopback port (or
    // `GOODPUT_REDIS=redis://...`); without either, those rows are skipped.
    let mut started = None;
    let redis = std::env::var("GOODPUT_REDIS").ok().or_else(|| {
        let (child, url) = start_redis()?;
        started = Some(child);
        Some(url)
    });
    let stop_redis = |started: Option<std::process::Child>| {
        if let Some(mut child) = started {
            let _ = child.kill();
            let _ = child.wait();
        }
    };
    if only == "priority" || only == "endpoints" {
        if only == "priority" {
            runtime.block_on(priorities(n, per_second, redis.as_deref()));
        } else {
            runtime.block_on(endpoints(n / 4, per_second, redis.as_deref()));
        }
        stop_redis(started);
        return;
    }
    if redis.is_none() {
        println!(
            "(no redis-server on the PATH and no GOODPUT_REDIS: the Redis fleet row is skipped)"
        );
    }
    let only_fleet = only == "fleet";
    let only_stack = only == "stack";
    // `GOODPUT_ONLY=quota`: the rows told the quota, beside the stack as it comes.
    let only_quota = only == "quota";
    // `GOODPUT_ONLY=announced`: the rows against a server that announces its quota, beside
    // the stack against one that does not.
    let only_announced = only == "announced" || only == "announced-fleet";
    let quotas = [
        (
            "fixed window",
            Quota::fixed_window(per_second, Duration::from_secs(1)),
        ),
        ("token bucket", Quota::token_bucket(per_second, per_second)),
    ];
    for (workers, title) in [(1, "one stack"), (4, "a fleet of 4 stacks on one quota")] {
        if ((only_fleet || only == "announced-fleet") && workers == 1)
            || (only_stack && workers > 1)
        {
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
                    if row.shares() && (workers == 1 || redis.is_none()) {
                        continue;
                    }
                    let stack = matches!(
                        row,
                        Row::InfoPlug | Row::Fleet | Row::Configured | Row::ConfiguredFleet
                    );
                    if only_quota && !stack {
                        continue;
                    }
                    if only_announced
                        && !(row.announced() || matches!(row, Row::InfoPlug | Row::Fleet))
                    {
                        continue;
                    }
                    if only == "announced-fleet" && row != Row::AnnouncedFleet {
                        continue;
                    }
                    let out =
                        runtime.block_on(run(row, quota, n, in_flight, workers, redis.as_deref()));
                    let throttled = if row.announced() {
                        format!(
                            "{} ({} after a first answer)",
                            out.throttled, out.after_first
                        )
                    } else {
                        out.throttled.to_string()
                    };
                    out.print(row, n, ideal, &throttled);
                }
            }
        }
    }
    let rest = !only_fleet && !only_stack && !only_quota && !only_announced;
    if rest {
        runtime.block_on(priorities(n, per_second, redis.as_deref()));
        runtime.block_on(endpoints(n / 4, per_second, redis.as_deref()));
    }
    stop_redis(started);
    if rest {
        runtime.block_on(against_nginx());
        runtime.block_on(outages());
    }
}

/// Two priority classes on one saturated quota (`GOODPUT_ONLY=priority`): `n` batch requests
/// over 16 or 64 lanes keep the quota busy while an interactive caller sends one request every
/// tenth of a second's quota (a tenth of the quota), one stack, over loopback against a fixed
/// window. With and without `Priority` on the requests (`BATCH`, `INTERACTIVE`), told the quota
/// (`quota(q, 1 s)`) or learning it from 429s. Then, with a Redis at `redis`, the same over a
/// fleet of 4 stacks: the batch lanes spread over the four, the caller on the first.
async fn priorities(n: usize, per_second: u32, redis: Option<&str>) {
    let interval = Duration::from_secs_f64(1.0 / f64::from(per_second));
    println!(
        "\ntwo priority classes, fixed window of {per_second}/s, an interactive request every {} ms\n",
        interval.as_millis() * 10
    );
    println!(
        "| pace, batch lanes | priorities | interactive p50 | interactive p99 | p99 ÷ slot interval | batch rate ÷ what the interactive left | 429s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for fleet in setups(redis) {
        for told in [true, false] {
            for in_flight in [16, 64] {
                for prioritised in [false, true] {
                    priority_row(n, per_second, told, in_flight, prioritised, fleet).await;
                }
            }
        }
    }
}

/// The setups a table runs: one stack (`None`), then with a Redis at `redis` a fleet of 4
/// on it; the fleet alone with `GOODPUT_FLEET_ONLY`.
fn setups(redis: Option<&str>) -> Vec<Option<&str>> {
    match redis {
        None => vec![None],
        Some(_) if std::env::var("GOODPUT_FLEET_ONLY").is_ok() => vec![redis],
        Some(_) => vec![None, redis],
    }
}

/// How a table row names its setup (see [`setups`]).
fn setup_name(fleet: Option<&str>) -> &'static str {
    if fleet.is_some() {
        "Redis fleet of 4, "
    } else {
        ""
    }
}

/// The layers of 4 stacks on the API at `base`, each with its own handle on the Redis at
/// `redis` under `prefix` (one stack without a Redis), `configure`d.
fn stacks(
    base: &str,
    redis: Option<&str>,
    prefix: &str,
    configure: impl Fn(RetryBuilder) -> RetryBuilder,
) -> Vec<InfoPlugLayer> {
    let count = if redis.is_some() { 4 } else { 1 };
    (0..count)
        .map(|_| {
            let fleet = redis.map(|url| RedisFleet::builder(url).prefix(prefix).build().unwrap());
            InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), base)
                .retry(|r| {
                    let r = configure(r);
                    match fleet {
                        Some(fleet) => r.fleet(fleet),
                        None => r,
                    }
                })
                .build()
                .unwrap()
        })
        .collect()
}

/// A prefix no other row of this run uses.
fn fresh_prefix(name: &str) -> String {
    static ROWS: AtomicUsize = AtomicUsize::new(0);
    format!(
        "goodput-{name}-{}-{}",
        std::process::id(),
        ROWS.fetch_add(1, Ordering::Relaxed)
    )
}

async fn priority_row(
    n: usize,
    per_second: u32,
    told: bool,
    in_flight: usize,
    prioritised: bool,
    redis: Option<&str>,
) {
    let api = Emulator::builder()
        .quota(Quota::fixed_window(per_second, Duration::from_secs(1)))
        .credits(CREDITS)
        .build();
    let server = api.serve().await.unwrap();
    let svcs: Vec<_> = stacks(&server.base_url(), redis, &fresh_prefix("priority"), |r| {
        if told {
            r.quota(per_second, Duration::from_secs(1))
        } else {
            r
        }
    })
    .into_iter()
    .map(|layer| layer.layer(Client::builder(TokioExecutor::new()).build_http()))
    .collect();
    let uri = server.uri("/v1/profile").unwrap();
    let send = move |priority: Priority, stack: usize| {
        let (svc, uri) = (svcs[stack % svcs.len()].clone(), uri.clone());
        async move {
            let mut req = Request::get(uri).body(Full::<Bytes>::default()).unwrap();
            if prioritised {
                req.extensions_mut().insert(priority);
            }
            let sent = Instant::now();
            let ok = match svc.oneshot(req).await {
                Ok(res) => {
                    res.status() == StatusCode::OK && res.into_body().collect().await.is_ok()
                }
                Err(_) => false,
            };
            (ok, sent.elapsed())
        }
    };
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start = Instant::now();
    let lanes: Vec<_> = (0..in_flight)
        .map(|lane| {
            let (send, next) = (send.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                let mut ok = 0;
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    ok += usize::from(send(Priority::BATCH, lane).await.0);
                }
                ok
            })
        })
        .collect();
    // The interactive caller: one request every ten slot intervals while the batch runs
    // (bounded: never more than the batch's own count).
    let caller = {
        let (send, done) = (send.clone(), Arc::clone(&done));
        let every = Duration::from_secs_f64(10.0 / f64::from(per_second));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            let mut latencies = Vec::new();
            let mut failed = 0;
            for _ in 0..n {
                ticks.tick().await;
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let (ok, latency) = send(Priority::INTERACTIVE, 0).await;
                failed += usize::from(!ok);
                latencies.push(latency);
            }
            (latencies, failed)
        })
    };
    let mut batch_ok = 0;
    for lane in lanes {
        batch_ok += lane.await.unwrap();
    }
    let makespan = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let (mut latencies, failed) = caller.await.unwrap();
    latencies.sort_unstable();
    let interactive_rate = latencies.len() as f64 / makespan.as_secs_f64();
    let left = f64::from(per_second) - interactive_rate;
    let batch_rate = batch_ok as f64 / makespan.as_secs_f64();
    let calls = api.request_count();
    let admitted = (CREDITS - api.credits()) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(per_second));
    let p99 = percentile(&latencies, 0.99);
    println!(
        "| {}{}, {in_flight} | {} | {:.1} ms | {:.1} ms | {:.1} | {:.2} ({batch_ok} of {n}{}) | {} |",
        setup_name(redis),
        if told {
            "told `quota(q, 1 s)`"
        } else {
            "learned from 429s"
        },
        if prioritised {
            "**batch `BATCH`, caller `INTERACTIVE`**"
        } else {
            "none"
        },
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0,
        p99.as_secs_f64() / interval.as_secs_f64(),
        batch_rate / left,
        if failed > 0 {
            format!(", caller lost {failed}")
        } else {
            String::new()
        },
        calls - admitted,
    );
}

/// Two endpoints with quotas of their own (`GOODPUT_ONLY=endpoints`): `n` (a quarter of the
/// run's N: a search quota that holds the whole origin makes them take ten times as long)
/// requests to
/// `/v1/profile` (the key's quota, `per_second`), alone and while 16 lanes keep
/// `/v1/search` (a tenth of it, its own quota, 429s asking for the rest of its second)
/// saturated, one stack, over loopback; the server names each quota in the draft's fields.
/// `InfoPlugLayer` reading them, and not. Then, with a Redis at `redis`, the same over a fleet
/// of 4 stacks (the profile lanes and the searches spread over the four).
async fn endpoints(n: usize, per_second: u32, redis: Option<&str>) {
    println!(
        "\ntwo endpoints: /v1/profile {per_second}/s, /v1/search {}/s saturated beside it\n",
        per_second / 10
    );
    println!(
        "| fields read, profile lanes | profile alone | beside the searches | ratio | search 429s |"
    );
    println!("|---|---:|---:|---:|---:|");
    for fleet in setups(redis) {
        for read in [false, true] {
            for in_flight in [16, 64] {
                let run =
                    |searching| endpoints_run(n, per_second, read, in_flight, searching, fleet);
                let (alone, _) = run(false).await;
                let (beside, refused) = run(true).await;
                println!(
                    "| {}{}, {in_flight} | {:.2} s | {:.2} s | {:.2} | {refused} |",
                    setup_name(fleet),
                    if read {
                        "**`rate_limit_headers(true)`**"
                    } else {
                        "off"
                    },
                    alone.as_secs_f64(),
                    beside.as_secs_f64(),
                    alone.as_secs_f64() / beside.as_secs_f64(),
                );
            }
        }
    }
}

/// The profile batch's makespan, and the 429s the server sent.
async fn endpoints_run(
    n: usize,
    per_second: u32,
    read: bool,
    in_flight: usize,
    searching: bool,
    redis: Option<&str>,
) -> (Duration, usize) {
    let second = Duration::from_secs(1);
    let api = Emulator::builder()
        .quota(Quota::fixed_window(per_second, second))
        .endpoint_quota(
            "/v1/search",
            "search",
            Quota::fixed_window((per_second / 10).max(1), second),
        )
        .rate_limit_headers(true)
        .credits(CREDITS)
        .build();
    let server = api.serve().await.unwrap();
    let clients: Vec<Sender> = stacks(&server.base_url(), redis, &fresh_prefix("endpoints"), |r| {
        r.rate_limit_headers(read)
    })
    .into_iter()
    .map(|layer| boxed(layer.layer(Client::builder(TokioExecutor::new()).build_http())))
    .collect();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The searches: 16 lanes until the profile batch is done (each bounded by `n`).
    let searches: Vec<_> = (0..if searching { 16 } else { 0 })
        .map(|lane| {
            let client = Arc::clone(&clients[lane % clients.len()]);
            let done = Arc::clone(&done);
            let uri = server.uri("/v1/search?q=x").unwrap().to_string();
            tokio::spawn(async move {
                for _ in 0..n {
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    client(uri.clone()).await;
                }
            })
        })
        .collect();
    if searching {
        // The search quota is saturated before the batch starts.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let uri = server.uri("/v1/profile").unwrap().to_string();
    // The same lanes in all: spread over a fleet's stacks.
    let each = in_flight / clients.len();
    let (ok, makespan, _) = drive(Row::InfoPlug, &clients, &uri, n, each).await;
    if ok < n {
        println!("  ({} of {n} profile requests ended in a 200)", ok);
    }
    done.store(true, Ordering::Relaxed);
    for search in searches {
        let _ = search.await;
    }
    let calls = api.request_count();
    let admitted = (CREDITS - api.credits()) as usize;
    (makespan, calls - admitted)
}

/// A `redis-server` on a free loopback port, and its URL; `None` without one on the PATH.
fn start_redis() -> Option<(std::process::Child, String)> {
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
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Some((child, format!("redis://127.0.0.1:{port}")))
}

/// Three `redis-server --cluster-enabled yes` masters on free loopback ports (their processes
/// pushed on `children`, for the caller to stop whatever happens), made a cluster with
/// `redis-cli --cluster create`; the nodes' URLs comma-separated, and the directory of their
/// `nodes.conf` files.
fn start_cluster(children: &mut Vec<std::process::Child>) -> Option<(String, std::path::PathBuf)> {
    use std::process::{Command, Stdio};
    let dir = std::env::temp_dir().join(format!("goodput-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--cluster-enabled",
                "yes",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--cluster-config-file")
            .arg(dir.join(format!("nodes-{port}.conf")))
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        children.push(child);
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        addrs.push(format!("127.0.0.1:{port}"));
    }
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .status()
        .ok()?;
    if !created.success() {
        return None;
    }
    // Until every node says the cluster is ok.
    for addr in &addrs {
        let port = addr.rsplit(':').next()?;
        for _ in 0..600 {
            let out = Command::new("redis-cli")
                .args(["-p", port, "cluster", "info"])
                .output()
                .ok()?;
            if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let urls: Vec<String> = addrs.iter().map(|a| format!("redis://{a}")).collect();
    Some((urls.join(","), dir))
}

/// The fleet of 4 on one quota, sharing through one Redis and through a Redis Cluster of
/// three masters, beside four stacks each alone (`GOODPUT_ONLY=cluster`).
async fn on_a_cluster(n: usize, per_second: u32, ideal: Duration) {
    let Some((mut single, redis)) = start_redis() else {
        println!("\n(no redis-server on the PATH: the cluster rows are skipped)");
        return;
    };
    let mut children = Vec::new();
    let Some((nodes, dir)) = start_cluster(&mut children) else {
        for mut child in children.into_iter().chain([single]) {
            let _ = child.kill();
            let _ = child.wait();
        }
        println!("\n(no Redis Cluster could be made: the cluster rows are skipped)");
        return;
    };
    let quotas = [
        (
            "fixed window",
            Quota::fixed_window(per_second, Duration::from_secs(1)),
        ),
        ("token bucket", Quota::token_bucket(per_second, per_second)),
    ];
    for (quota_name, quota) in quotas {
        for in_flight in [16, 64] {
            println!(
                "\na fleet of 4 stacks on one quota, {quota_name}, {in_flight} in flight each\n"
            );
            println!("| row | 200s | makespan ÷ ideal | calls ÷ N | 429s sent | p50 | p99 |");
            println!("|---|---:|---:|---:|---:|---:|---:|");
            for (row, url) in [
                (Row::InfoPlug, &redis),
                (Row::Fleet, &redis),
                (Row::ClusterFleet, &nodes),
            ] {
                let out = run(row, quota, n, in_flight, 4, Some(url)).await;
                out.print(row, n, ideal, &out.throttled.to_string());
            }
        }
    }
    let _ = single.kill();
    let _ = single.wait();
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The fleet of 4 told the quota, fixed window, 16 in flight each, with Redis killed half
/// way through the ideal makespan (`GOODPUT_ONLY=fleet-down`); beside it the four stacks
/// each planning alone at the whole quota from the start, as a process that lost the fleet
/// used to for the rest of the run.
async fn losing_redis(n: usize, per_second: u32, ideal: Duration) {
    let quota = Quota::fixed_window(per_second, Duration::from_secs(1));
    println!(
        "
a fleet of 4 stacks told the quota, fixed window, 16 in flight each; Redis killed at {:.1} s
",
        ideal.as_secs_f64() / 2.0
    );
    println!("| row | 200s | makespan ÷ ideal | calls ÷ N | 429s sent | p50 | p99 |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in [Row::ConfiguredFleet, Row::Configured] {
        let Some((mut child, url)) = start_redis() else {
            println!("(no redis-server on the PATH: skipped)");
            return;
        };
        let killer = async {
            tokio::time::sleep(ideal / 2).await;
            let _ = child.kill();
            let _ = child.wait();
        };
        let (out, ()) = tokio::join!(run(row, quota, n, 16, 4, Some(&url)), killer);
        let name = match row {
            Row::ConfiguredFleet => "`quota(q, 1 s)` + Redis fleet, Redis killed mid-run",
            _ => "`quota(q, 1 s)`, each stack alone",
        };
        println!(
            "| {name} | {} | {:.2} | {:.3} | {} | {:.0} ms | {:.0} ms |",
            out.ok,
            out.makespan.as_secs_f64() / ideal.as_secs_f64(),
            out.calls as f64 / n as f64,
            out.throttled,
            percentile(&out.latencies, 0.5).as_secs_f64() * 1000.0,
            percentile(&out.latencies, 0.99).as_secs_f64() * 1000.0,
        );
    }
}

/// The outage rows' clients.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Guard {
    TowerRetry,
    ReqwestRetry,
    Breaker,
    NoBreaker,
}

impl Guard {
    fn name(self) -> &'static str {
        match self {
            Guard::TowerRetry => "`tower::retry`, exponential backoff",
            Guard::ReqwestRetry => "reqwest-retry (default policy)",
            Guard::Breaker => "`InfoPlugLayer` (circuit breaker on, the default)",
            Guard::NoBreaker => "`InfoPlugLayer`, `no_circuit_breaker()`",
        }
    }

    /// A client of `base` whose every attempt and answer below its retries is counted in
    /// `counts` (as the nginx rows count theirs).
    fn client(self, base: &str, counts: Arc<Counts>) -> Sender {
        match self {
            Guard::TowerRetry => counted(Row::TowerRetry, base, counts, |r| r),
            Guard::ReqwestRetry => counted(Row::ReqwestRetry, base, counts, |r| r),
            Guard::Breaker => counted(Row::InfoPlug, base, counts, |r| r),
            Guard::NoBreaker => counted(Row::InfoPlug, base, counts, |r| r.no_circuit_breaker()),
        }
    }
}

/// The outage tables: 500s, then refused connections; 16 and 64 callers.
async fn outages() {
    let secs: u64 = std::env::var("GOODPUT_OUTAGE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    for refused in [false, true] {
        for callers in [16, 64] {
            let kind = if refused {
                "refused connections"
            } else {
                "500s without a hint"
            };
            println!(
                "
outage: {secs} s of {kind}, then 5 s of recovery; {callers} callers, a request every 100 ms each
"
            );
            println!(
                "| row | requests in the outage | attempts ÷ requests | first 200 after recovery | not 200 after it | p50 in the outage |"
            );
            println!("|---|---:|---:|---:|---:|---:|");
            for guard in [
                Guard::TowerRetry,
                Guard::ReqwestRetry,
                Guard::NoBreaker,
                Guard::Breaker,
            ] {
                outage_row(guard, refused, callers, Duration::from_secs(secs)).await;
            }
        }
    }
}

/// One outage row: a fresh emulator and client; the outage from the start for `outage`,
/// then 5 s of recovery.
async fn outage_row(guard: Guard, refused: bool, callers: usize, outage: Duration) {
    let api = Emulator::builder().no_rate_limit().credits(CREDITS).build();
    let mut server = Some(api.serve().await.unwrap());
    let addr = server.as_ref().unwrap().addr();
    let base = format!("http://{addr}");
    let counts = Arc::new(Counts::default());
    let client = guard.client(&base, Arc::clone(&counts));
    let sent = || counts.attempts.load(Ordering::Relaxed);
    let uri = format!("{base}/v1/profile");
    if refused {
        server.take().unwrap().shutdown().await;
    } else {
        api.set_outage(Some(tower_infoplug_mock::Reply::status(500)));
    }
    let start = Instant::now();
    let (counted_from, recovered) = (start + Duration::from_secs(1), start + outage);
    let end = recovered + Duration::from_secs(5);
    // Each request: when it started, when it ended, whether it ended in a 200.
    let lanes: Vec<_> = (0..callers)
        .map(|i| {
            let (client, uri) = (Arc::clone(&client), uri.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100) * i as u32 / callers as u32).await;
                let mut done = Vec::new();
                while Instant::now() < end {
                    let at = Instant::now();
                    let status = client(uri.clone()).await;
                    done.push((at, Instant::now(), status == Some(StatusCode::OK)));
                    tokio::time::sleep_until(at + Duration::from_millis(100)).await;
                }
                done
            })
        })
        .collect();
    tokio::time::sleep_until(counted_from).await;
    let sent_before = sent();
    tokio::time::sleep_until(recovered).await;
    let sent_in_outage = sent() - sent_before;
    if refused {
        server = Some(api.serve_on(addr).await.unwrap());
    } else {
        api.set_outage(None);
    }
    let mut all = Vec::new();
    for lane in lanes {
        all.extend(lane.await.unwrap());
    }
    drop(server);
    let started_in =
        |from: Instant, to: Instant| all.iter().filter(move |r| r.0 >= from && r.0 < to);
    let attempted = started_in(counted_from, recovered).count();
    let mut outage_latencies: Vec<Duration> = started_in(counted_from, recovered)
        .map(|r| r.1 - r.0)
        .collect();
    outage_latencies.sort_unstable();
    let first_200 = all
        .iter()
        .filter(|r| r.2 && r.1 >= recovered)
        .map(|r| r.1)
        .min();
    let (first, not_200) = match first_200 {
        Some(first) => (
            format!("{:.0} ms", (first - recovered).as_secs_f64() * 1000.0),
            started_in(first, end).filter(|r| !r.2).count().to_string(),
        ),
        None => ("none".to_owned(), "-".to_owned()),
    };
    println!(
        "| {} | {attempted} | {:.3} | {first} | {not_200} | {:.0} ms |",
        guard.name(),
        sent_in_outage as f64 / attempted.max(1) as f64,
        percentile(&outage_latencies, 0.5).as_secs_f64() * 1000.0,
    );
}

/// The same clients against Debian's nginx `limit_req` (a leaky bucket, 20 a second, no
/// burst): 400 requests (`GOODPUT_NGINX_N`), 16 and 64 in flight, refusals bare (nginx's
/// default) and with `Retry-After: 1`. Calls and 429s are counted below each client, from
/// the answers it got.
async fn against_nginx() {
    const RATE: u32 = 20;
    if !std::path::Path::new(nginx::NGINX).exists() {
        println!(
            "\n(no {}: the nginx `limit_req` rows are skipped)",
            nginx::NGINX
        );
        return;
    }
    let n: usize = std::env::var("GOODPUT_NGINX_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let ideal = Duration::from_secs_f64(n as f64 / f64::from(RATE));
    for (refusal, name) in [
        (nginx::Refusal::Bare, "no hint"),
        (nginx::Refusal::RetryAfterOne, "`Retry-After: 1`"),
    ] {
        for in_flight in [16, 64] {
            println!(
                "\nnginx `limit_req` {RATE}r/s, no burst, {name}, N = {n}, {in_flight} in flight, ideal {:.0} s\n",
                ideal.as_secs_f64()
            );
            println!("| row | 200s | makespan ÷ ideal | calls ÷ N | 429s ÷ calls | p50 | p99 |");
            println!("|---|---:|---:|---:|---:|---:|---:|");
            for row in [Row::TowerRetry, Row::ReqwestRetry, Row::InfoPlug] {
                let server = nginx::Nginx::start(RATE, 0, refusal);
                let out = nginx_run(row, &server.base_url(), n, in_flight).await;
                let share = out.throttled as f64 / out.calls.max(1) as f64;
                out.print(row, n, ideal, &format!("{share:.3}"));
            }
        }
    }
}

/// `n` requests to nginx's `/data.json` through `row`, `in_flight` at a time; calls and 429s
/// are the answers counted below the client (on its transport, or for reqwest below its
/// retry middleware).
async fn nginx_run(row: Row, base: &str, n: usize, in_flight: usize) -> Outcome {
    let counts = Arc::new(Counts::default());
    let client = counted(row, base, Arc::clone(&counts), |r| r);
    let uri = format!("{base}/data.json");
    let (ok, makespan, latencies) = drive(row, &[client], &uri, n, in_flight).await;
    Outcome {
        ok,
        makespan,
        calls: counts.calls.load(Ordering::Relaxed),
        throttled: counts.refused.load(Ordering::Relaxed),
        after_first: 0,
        latencies,
    }
}

/// What a client sent and got below its retries: its attempts (answered or not), and the
/// answers it got (the calls the server saw) and how many were 429s.
#[derive(Default)]
struct Counts {
    attempts: AtomicUsize,
    calls: AtomicUsize,
    refused: AtomicUsize,
}

impl Counts {
    fn answer(&self, status: StatusCode) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Counts each request it passes on, in `counts.attempts`.
fn attempt_counter<B>(counts: &Arc<Counts>) -> impl Fn(Request<B>) -> Request<B> + Clone + use<B> {
    let counts = Arc::clone(counts);
    move |req| {
        counts.attempts.fetch_add(1, Ordering::Relaxed);
        req
    }
}

/// `row`'s client (the `InfoPlugLayer` ones with `retry`'s settings) with every attempt and
/// every answer of its transport counted.
fn counted(
    row: Row,
    base: &str,
    counts: Arc<Counts>,
    retry: impl FnOnce(RetryBuilder) -> RetryBuilder,
) -> Sender {
    use tower::ServiceBuilder;
    let middleware = CountAnswers(Arc::clone(&counts));
    let attempts = Arc::clone(&counts);
    let count = move |res: Response<hyper::body::Incoming>| {
        counts.answer(res.status());
        res
    };
    match row {
        Row::TowerRetry => boxed(
            tower::retry::RetryLayer::new(Backoff::default()).layer(
                ServiceBuilder::new()
                    .layer(AuthLayer::new(ApiKey::new(TEST_KEY).unwrap()))
                    .map_request(attempt_counter(&attempts))
                    .map_response(count)
                    .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>()),
            ),
        ),
        Row::ReqwestRetry => {
            use reqwest_retry::{RetryTransientMiddleware, policies::ExponentialBackoff};
            let policy = ExponentialBackoff::builder().build_with_max_retries(3);
            let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                .with(RetryTransientMiddleware::new_with_policy(policy))
                .with(middleware)
                .build();
            reqwest_sender(client)
        }
        _ => {
            let layer = InfoPlugLayer::builder(ApiKey::new(TEST_KEY).unwrap(), base)
                .retry(retry)
                .build()
                .unwrap();
            boxed(
                layer.layer(
                    ServiceBuilder::new()
                        .map_request(attempt_counter(&attempts))
                        .map_response(count)
                        .service(Client::builder(TokioExecutor::new()).build_http()),
                ),
            )
        }
    }
}

/// Counts each attempt and each answer below reqwest-retry.
struct CountAnswers(Arc<Counts>);

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for CountAnswers {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        self.0.attempts.fetch_add(1, Ordering::Relaxed);
        let res = next.run(req, extensions).await?;
        self.0.answer(res.status());
        Ok(res)
    }
}
