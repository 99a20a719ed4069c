//! What each layer costs, next to the tower and tower-http building blocks that do the nearest
//! thing, all measured in one run; then the table of ratios benches/README.md shows.
//!
//! ```text
//! cargo bench --bench stack --all-features
//! ```
//!
//! Groups (criterion ids `group/row`):
//!
//! - `success`: a small 200 from an in-memory transport, through each layer alone, the whole
//!   preset, and tower-http's `SetRequestHeader` (sensitive value), `tower::retry` with a
//!   clone-only policy, and both stacked;
//! - `error`: a 400 with a 101-byte contract body, bare, classified, through the whole stack
//!   and through its hand-built equivalent (a naive collect-and-parse classifier with
//!   `tower::retry` and `SetRequestHeader`, in `support`);
//! - `retry`: a 429 then a 200 with zero wait, through `tower::retry`, the hand-built
//!   equivalent, and ours (the
//!   difference from the success row is the cost of one extra attempt; pacing is off there,
//!   since a transport that throttles every other call is, rightly, paced);
//! - `body`: a 200 with a 1 MiB body read to the end, bare and through the preset (no per-byte
//!   work on 2xx bodies means the two are the same);
//! - `loopback`: a keep-alive HTTP/1.1 round trip over 127.0.0.1 with hyper, plain (the key
//!   header set by hand) and through the preset.
//!
//! In-memory futures are ready at once, so they are polled with a no-op waker instead of an
//! executor, which would dominate the figures.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::indexing_slicing
)]

use std::convert::Infallible;
use std::hint::black_box;
use std::path::PathBuf;

use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_infoplug::retry::{ReplayBody, RetryLayer};
use tower_infoplug::{AuthLayer, ClassifyLayer, InfoPlugLayer, Origin};

mod support;

use support::{
    BASE, CloneOnly, ERROR_BODY, NoJitter, flip, key, naive_stack, ok, send_one, set_header,
    transport,
};

/// Requests run for one row in profiling mode.
const PROFILE_REQUESTS: u64 = 100_000;

/// With `INFOPLUG_PROFILE_ROW=<row id>`, that in-memory row alone runs
/// [`PROFILE_REQUESTS`] times without criterion, for `valgrind --tool=callgrind`: instruction
/// counts are repeatable where times on a shared machine are not.
fn profile_row() -> Option<String> {
    std::env::var("INFOPLUG_PROFILE_ROW").ok()
}

/// Benchmarks one request at a time through `svc` (see [`send_one`]), or in profiling mode
/// sends [`PROFILE_REQUESTS`] of them.
fn bench<S, B>(c: &mut Criterion, id: &str, mut svc: S, read: bool)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut one = || send_one(&mut svc, read);
    match profile_row() {
        Some(row) if row == id => (0..PROFILE_REQUESTS).for_each(|_| one()),
        Some(_) => {}
        None => {
            c.bench_function(id, |b| b.iter(&mut one));
        }
    }
}

fn preset() -> InfoPlugLayer {
    InfoPlugLayer::builder(key(), BASE)
        .retry(|r| r.jitter(NoJitter))
        .build()
        .unwrap()
}

fn success(c: &mut Criterion) {
    let origin = Origin::parse(BASE).unwrap();
    bench(c, "success/bare", ok(), false);
    bench(
        c,
        "success/set_request_header",
        set_header().layer(ok()),
        false,
    );
    bench(c, "success/auth", AuthLayer::new(key()).layer(ok()), false);
    bench(
        c,
        "success/auth_scoped",
        AuthLayer::new(key()).for_origin(origin).layer(ok()),
        false,
    );
    bench(
        c,
        "success/classify",
        ClassifyLayer::new().layer(ok()),
        false,
    );
    bench(
        c,
        "success/tower_retry",
        tower::retry::RetryLayer::new(CloneOnly).layer(ok()),
        false,
    );
    bench(c, "success/retry", RetryLayer::new().layer(ok()), false);
    bench(
        c,
        "success/tower_retry_set_header",
        ServiceBuilder::new()
            .layer(tower::retry::RetryLayer::new(CloneOnly))
            .layer(set_header())
            .service(ok()),
        false,
    );
    bench(c, "success/stack", preset().layer(ok()), false);
}

fn error_path(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    // The classifier arms its read deadline on Tokio's timer, as it does in real use.
    let _context = runtime.enter();
    bench(c, "error/bare", transport(400, ERROR_BODY), false);
    bench(
        c,
        "error/classify",
        ClassifyLayer::new().layer(transport(400, ERROR_BODY)),
        false,
    );
    bench(
        c,
        "error/stack",
        preset().layer(transport(400, ERROR_BODY)),
        false,
    );
    bench(
        c,
        "error/naive_stack",
        naive_stack(transport(400, ERROR_BODY)),
        false,
    );
}

fn retry_path(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    let _context = runtime.enter();
    bench(
        c,
        "retry/tower_retry",
        tower::retry::RetryLayer::new(CloneOnly).layer(flip()),
        false,
    );
    let ours = RetryLayer::builder()
        .jitter(NoJitter)
        .no_budget()
        .pacing(false)
        .build()
        .unwrap();
    bench(c, "retry/retry", ours.layer(flip()), false);
    let stack = InfoPlugLayer::builder(key(), BASE)
        .retry(|r| r.jitter(NoJitter).no_budget().pacing(false))
        .build()
        .unwrap();
    bench(c, "retry/stack", stack.layer(flip()), false);
    bench(c, "retry/naive_stack", naive_stack(flip()), false);
}

fn big_body(c: &mut Criterion) {
    static MIB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let body: &'static [u8] = MIB.get_or_init(|| vec![b'x'; 1024 * 1024]);
    bench(c, "body/bare", transport(200, body), true);
    bench(c, "body/stack", preset().layer(transport(200, body)), true);
}

fn loopback(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let addr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"{\"data\":{}}",
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        addr
    });
    let uri = format!("http://{addr}/v1/profile");
    let plain = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    // Plain hyper sends the key by hand, as any client of the API must: the rows then differ
    // by what the layers do, not by a header the in-process server has to parse.
    looped(c, "loopback/plain", || {
        runtime.block_on(async {
            let req = Request::get(uri.as_str())
                .header(tower_infoplug::X_INFOPLUG_API_KEY, support::KEY)
                .body(Full::new(Bytes::new()))
                .unwrap();
            let res = plain.request(req).await.unwrap();
            black_box(res.into_body().collect().await.unwrap());
        });
    });
    let mut stack = InfoPlugLayer::new(key(), &format!("http://{addr}"))
        .unwrap()
        .layer(Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>());
    // The stack held and called, as plain hyper's client is (`clone().oneshot(req)` on a
    // shared stack adds a clone of it and tower's `Oneshot` around the call).
    looped(c, "loopback/stack", || {
        runtime.block_on(async {
            let req = Request::get(uri.as_str())
                .body(Full::new(Bytes::new()))
                .unwrap();
            let res = stack.ready().await.unwrap().call(req).await.unwrap();
            black_box(res.into_body().collect().await.unwrap());
        });
    });
}

/// Benchmarks `one`, or in profiling mode runs it a tenth as many times as in-memory rows.
fn looped(c: &mut Criterion, id: &str, mut one: impl FnMut()) {
    match profile_row() {
        Some(row) if row == id => (0..PROFILE_REQUESTS / 10).for_each(|_| one()),
        Some(_) => {}
        None => {
            c.bench_function(id, |b| b.iter(&mut one));
        }
    }
}

/// The mean of a row of this run, in ns, from criterion's estimates.
fn mean_ns(id: &str) -> Option<f64> {
    let dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    // Criterion names the directory of `group/row` as `group_row`.
    let path = dir
        .join("criterion")
        .join(id.replace('/', "_"))
        .join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

/// Prints the table of benches/README.md: each row, its ratio to the floor, and to its tower/tower-http
/// equivalent, from the estimates this run wrote.
fn print_table() {
    let rows: [(&str, &str, &str, Option<&str>); 21] = [
        (
            "success/bare",
            "bare transport (the floor)",
            "success/bare",
            None,
        ),
        (
            "success/set_request_header",
            "tower-http `SetRequestHeader` (sensitive)",
            "success/bare",
            None,
        ),
        (
            "success/auth",
            "`AuthLayer`",
            "success/bare",
            Some("success/set_request_header"),
        ),
        (
            "success/auth_scoped",
            "`AuthLayer` scoped to an origin",
            "success/bare",
            Some("success/set_request_header"),
        ),
        (
            "success/classify",
            "`ClassifyLayer` (2xx)",
            "success/bare",
            None,
        ),
        (
            "success/tower_retry",
            "`tower::retry`, clone-only policy",
            "success/bare",
            None,
        ),
        (
            "success/retry",
            "`RetryLayer`",
            "success/bare",
            Some("success/tower_retry"),
        ),
        (
            "success/tower_retry_set_header",
            "`tower::retry` + `SetRequestHeader`",
            "success/bare",
            None,
        ),
        (
            "success/stack",
            "`InfoPlugLayer` (whole stack)",
            "success/bare",
            Some("success/tower_retry_set_header"),
        ),
        (
            "error/bare",
            "400 + 101-byte body, bare",
            "error/bare",
            None,
        ),
        (
            "error/classify",
            "400, `ClassifyLayer` (read + parse)",
            "error/bare",
            None,
        ),
        (
            "error/naive_stack",
            "400, naive classifier + `tower::retry` + `SetRequestHeader`",
            "error/bare",
            None,
        ),
        (
            "error/stack",
            "400, `InfoPlugLayer`",
            "error/bare",
            Some("error/naive_stack"),
        ),
        (
            "retry/tower_retry",
            "429 → 200, `tower::retry`",
            "success/bare",
            None,
        ),
        (
            "retry/retry",
            "429 → 200, `RetryLayer` (zero wait)",
            "success/bare",
            Some("retry/tower_retry"),
        ),
        (
            "retry/naive_stack",
            "429 → 200, naive classifier + `tower::retry` + `SetRequestHeader`",
            "success/bare",
            None,
        ),
        (
            "retry/stack",
            "429 → 200, `InfoPlugLayer` (zero wait)",
            "success/bare",
            Some("retry/naive_stack"),
        ),
        (
            "body/bare",
            "200 + 1 MiB body read, bare",
            "body/bare",
            None,
        ),
        (
            "body/stack",
            "200 + 1 MiB body read, `InfoPlugLayer`",
            "body/bare",
            None,
        ),
        (
            "loopback/plain",
            "loopback keep-alive round trip, hyper",
            "loopback/plain",
            None,
        ),
        (
            "loopback/stack",
            "loopback round trip, `InfoPlugLayer`",
            "loopback/plain",
            None,
        ),
    ];
    if mean_ns("success/bare").is_none() {
        return;
    }
    println!("\n| row | ns/request | vs floor | vs tower equivalent |");
    println!("|---|---:|---:|---:|");
    for (id, label, floor, equivalent) in rows {
        let Some(ns) = mean_ns(id) else { continue };
        let ratio =
            |other: &str| mean_ns(other).map_or_else(String::new, |o| format!("{:.2}", ns / o));
        let vs_equivalent =
            equivalent.map_or_else(String::new, |e| format!("{} (`{e}`)", ratio(e)));
        println!("| {label} | {ns:.0} | {} | {vs_equivalent} |", ratio(floor));
    }
    if let (Some(extra), Some(one)) = (mean_ns("retry/stack"), mean_ns("success/stack")) {
        println!(
            "\nOne extra attempt through the stack: {:.0} ns.",
            extra - one
        );
    }
    if let (Some(plain), Some(stack)) = (mean_ns("loopback/plain"), mean_ns("loopback/stack")) {
        println!(
            "Stack overhead on a loopback round trip: {:.0} ns ({:.2}% of {:.1} µs).",
            stack - plain,
            (stack - plain) / plain * 100.0,
            plain / 1000.0
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut c = Criterion::default().configure_from_args();
    success(&mut c);
    error_path(&mut c, &runtime);
    retry_path(&mut c, &runtime);
    big_body(&mut c);
    if profile_row().is_some_and(|row| !row.starts_with("loopback/")) {
        return;
    }
    loopback(&mut c, &runtime);
    c.final_summary();
    print_table();
}
