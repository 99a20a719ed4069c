//! A fleet of workers on one key and one quota, with each worker's own state or with the
//! fleet's state shared through Redis.
//!
//! ```text
//! cargo run --example fleet --all-features -- --workers 4
//! cargo run --example fleet --all-features -- --redis redis://127.0.0.1:6379 --workers 4
//! cargo run --example fleet --all-features -- --redis-cluster redis://127.0.0.1:7001,redis://127.0.0.1:7002
//! ```
//!
//! Starts the emulator on a free loopback port with a fixed-window quota, then runs the
//! workers: each is its own `InfoPlugLayer` over its own hyper client (as separate processes
//! would be), sending its share of the requests, a few at a time. With `--redis`, their
//! layers share gates, pacing and the retry budget through that Redis; without, each learns
//! the quota alone. Prints what the server saw and how long it took.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_infoplug::retry::RedisFleet;
use tower_infoplug::{ApiKey, InfoPlugLayer, ReplayBody};
use tower_infoplug_mock::{Emulator, Quota, TEST_KEY};

const USAGE: &str = "usage: fleet [--redis URL | --redis-cluster URL[,URL...]] [--workers N] [--requests N] [--in-flight N] [--quota PER_SECOND] [--prefix NAME]

Runs N requests (default 2000) from --workers workers (default 4), each with its own stack
and --in-flight requests at a time (default 16), against the emulator with a fixed-window
quota (default 200 a second). With --redis, the workers share gates, pacing and the retry
budget through that Redis (keys under --prefix, default a fresh one per run); with
--redis-cluster, through the Redis Cluster those nodes belong to (feature redis-cluster);
without either, each keeps its own. Prints the requests that ended in a 200, the calls and 429s the server saw,
and the makespan against the ideal (N over the quota).";

/// Where the fleet's state is shared.
enum Shared {
    Redis(String),
    Cluster(Vec<String>),
}

struct Args {
    redis: Option<Shared>,
    workers: usize,
    requests: usize,
    in_flight: usize,
    quota: u32,
    prefix: Option<String>,
}

/// The arguments, or `None` for `--help`.
fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut parsed = Args {
        redis: None,
        workers: 4,
        requests: 2000,
        in_flight: 16,
        quota: 200,
        prefix: None,
    };
    while let Some(flag) = args.next() {
        if matches!(flag.as_str(), "-h" | "--help") {
            return Ok(None);
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n\n{USAGE}"))?;
        let number = |most: usize| {
            value
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=most).contains(n))
                .ok_or_else(|| format!("{flag}: {value:?} is not a number from 1 to {most}"))
        };
        match flag.as_str() {
            "--redis" => parsed.redis = Some(Shared::Redis(value.clone())),
            "--redis-cluster" => {
                let nodes = value.split(',').map(str::to_owned).collect();
                parsed.redis = Some(Shared::Cluster(nodes));
            }
            "--prefix" => parsed.prefix = Some(value.clone()),
            "--workers" => parsed.workers = number(64)?,
            "--requests" => parsed.requests = number(1_000_000)?,
            "--in-flight" => parsed.in_flight = number(1024)?,
            "--quota" => parsed.quota = u32::try_from(number(100_000)?).unwrap_or(200),
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    Ok(Some(parsed))
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fleet: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let Some(args) = parse(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    let credits = 1 << 40;
    let api = Emulator::builder()
        .credits(credits)
        .quota(Quota::fixed_window(args.quota, Duration::from_secs(1)))
        .build();
    let server = api.serve().await.map_err(|e| format!("emulator: {e}"))?;
    let prefix = args.prefix.clone().unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("fleet-example-{stamp}")
    });
    // One stack per worker, as separate processes would each build theirs.
    let mut stacks = Vec::new();
    let mut fleets = Vec::new();
    for _ in 0..args.workers {
        let fleet = match &args.redis {
            Some(Shared::Redis(url)) => Some(
                RedisFleet::builder(url)
                    .prefix(&prefix)
                    .build()
                    .map_err(|e| format!("--redis: {e}"))?,
            ),
            Some(Shared::Cluster(nodes)) => Some(cluster(nodes, &prefix)?),
            None => None,
        };
        let key = ApiKey::new(TEST_KEY).map_err(|e| e.to_string())?;
        let layer = InfoPlugLayer::builder(key, &server.base_url())
            .retry(|r| match fleet.clone() {
                Some(fleet) => r.fleet(fleet),
                None => r,
            })
            .build()
            .map_err(|e| e.to_string())?;
        fleets.extend(fleet);
        stacks.push(
            layer.layer(
                Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Empty<Bytes>>>(),
            ),
        );
    }
    // Whether Redis answers, said before any request: a fleet that is not one plans alone.
    let state = match fleets.first() {
        None => "each worker's own".to_owned(),
        Some(fleet) if fleet.check().await => "shared through Redis".to_owned(),
        Some(_) => {
            eprintln!("fleet: WARN: Redis did not answer: each worker plans alone until it does");
            "each worker's own (Redis did not answer; the workers join when it does)".to_owned()
        }
    };
    println!(
        "{} requests, {} workers × {} in flight, quota {}/s, state: {state}",
        args.requests, args.workers, args.in_flight, args.quota,
    );
    // Each other fleet handle connects when its worker's first request asks (in the
    // background): the first requests of a fresh process plan alone, as in production.
    let (calls_before, credits_before) = (api.request_count(), api.credits());

    let uri = server.uri("/v1/profile").map_err(|e| e.to_string())?;
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut lanes = tokio::task::JoinSet::new();
    for stack in &stacks {
        for _ in 0..args.in_flight {
            let (stack, next, ok, uri) = (stack.clone(), next.clone(), ok.clone(), uri.clone());
            let n = args.requests;
            lanes.spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let Ok(req) = Request::get(uri.clone()).body(Empty::new()) else {
                        continue;
                    };
                    if let Ok(res) = stack.clone().oneshot(req).await {
                        let status = res.status();
                        if res.into_body().collect().await.is_ok() && status == StatusCode::OK {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    }
    // Bounded: every request ends (attempts and waits are capped); stop at 5 minutes anyway.
    let all = async { while lanes.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(300), all)
        .await
        .is_err()
    {
        println!("stopped at the 5-minute limit");
    }
    let makespan = start.elapsed();
    let calls = api.request_count() - calls_before;
    let admitted = usize::try_from(credits_before - api.credits()).unwrap_or(usize::MAX);
    let ideal = args.requests as f64 / f64::from(args.quota);
    println!(
        "requests that ended in a 200: {}",
        ok.load(Ordering::Relaxed)
    );
    println!(
        "calls the server saw: {calls} ({:.3} per request)",
        calls as f64 / args.requests as f64
    );
    println!("429s the server sent: {}", calls.saturating_sub(admitted));
    println!(
        "makespan: {:.2} s, ideal {ideal:.2} s ({:.2}x)",
        makespan.as_secs_f64(),
        makespan.as_secs_f64() / ideal
    );
    if let Some(fleet) = fleets.first() {
        println!("fleet connected at the end: {}", fleet.is_connected());
    }
    Ok(())
}

/// A fleet on the cluster of `nodes`.
#[cfg(feature = "redis-cluster")]
fn cluster(nodes: &[String], prefix: &str) -> Result<RedisFleet, String> {
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    RedisFleet::cluster(&nodes)
        .prefix(prefix)
        .build()
        .map_err(|e| format!("--redis-cluster: {e}"))
}

#[cfg(not(feature = "redis-cluster"))]
fn cluster(_: &[String], _: &str) -> Result<RedisFleet, String> {
    Err("--redis-cluster needs the redis-cluster feature (--all-features)".to_owned())
}
