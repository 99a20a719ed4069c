//! Heap allocations per request, counted, for the rows of the benchmark.
//!
//! The claims checked: on the success path the layers allocate nothing beyond what their tower
//! and tower-http equivalents allocate; a 2xx body costs no allocation per byte or per frame;
//! an empty request body costs no replay buffer; an error body's memory follows its bytes.
//!
//! One test in its own binary, so no other test's allocations are counted. Run with
//! `--nocapture` to see the table.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service, ServiceBuilder, service_fn};
use tower_infoplug::retry::RetryLayer;
use tower_infoplug::{AuthLayer, ClassifyLayer, InfoPlugLayer, Origin};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[path = "../benches/support/mod.rs"]
mod support;

use support::{
    BASE, CloneOnly, ERROR_BODY, NoJitter, flip as full_flip, key, naive_stack, send_one,
    set_header, transport as full_transport,
};

const REQUESTS: u64 = 200;

fn transport<B>(
    status: u16,
    body: &'static [u8],
    chunks: usize,
) -> impl Service<
    Request<B>,
    Response = Response<Chunks>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Chunks>, Infallible>>,
> + Clone {
    service_fn(move |_req: Request<B>| {
        let mut res = Response::new(Chunks {
            data: body,
            size: body.len().div_ceil(chunks.max(1)).max(1),
        });
        *res.status_mut() = StatusCode::from_u16(status).unwrap();
        std::future::ready(Ok(res))
    })
}

/// A body yielding a static buffer in frames of `size` bytes, without allocating.
struct Chunks {
    data: &'static [u8],
    size: usize,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.size.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(head)))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.data.len() as u64)
    }
}

fn ok<B>() -> impl Service<
    Request<B>,
    Response = Response<Chunks>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Chunks>, Infallible>>,
> + Clone {
    transport(200, b"{\"data\":{}}", 1)
}

/// 200s that announce the quota in the draft's fields, as a server does on every answer.
fn announcing<B>() -> impl Service<
    Request<B>,
    Response = Response<Chunks>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Chunks>, Infallible>>,
> + Clone {
    service_fn(move |_req: Request<B>| {
        let body = &b"{\"data\":{}}"[..];
        let mut res = Response::new(Chunks {
            data: body,
            size: body.len(),
        });
        let headers = res.headers_mut();
        headers.insert("ratelimit", "\"default\";r=1000000;t=60".parse().unwrap());
        headers.insert(
            "ratelimit-policy",
            "\"default\";q=1000000;w=60".parse().unwrap(),
        );
        std::future::ready(Ok(res))
    })
}

fn flip<B>() -> impl Service<
    Request<B>,
    Response = Response<Chunks>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Chunks>, Infallible>>,
> + Clone {
    let limited = Arc::new(AtomicBool::new(false));
    service_fn(move |_req: Request<B>| {
        let was = limited.fetch_xor(true, Ordering::Relaxed);
        let (status, body) = if was {
            (200, &b"{}"[..])
        } else {
            (429, &br#"{"message":"rate_limit_exceeded"}"#[..])
        };
        let mut res = Response::new(Chunks {
            data: body,
            size: body.len(),
        });
        *res.status_mut() = StatusCode::from_u16(status).unwrap();
        std::future::ready(Ok(res))
    })
}

/// Average heap blocks allocated per request through `svc` (request and response included,
/// and the response body read to its end when `read`).
fn per_request<S, B>(mut svc: S, read: bool) -> f64
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut one = || send_one(&mut svc, read);
    for _ in 0..20 {
        one(); // warm-up: one-time allocations (shared key bytes, lazily built state)
    }
    // The least of three rounds: the counter sees every thread of the test process, and a
    // stray allocation elsewhere (now and then, 4 in a round of 200 requests) is not the
    // stack's; an allocation the stack makes per request is in every round.
    (0..3)
        .map(|_| {
            let before = dhat::HeapStats::get().total_blocks;
            for _ in 0..REQUESTS {
                one();
            }
            dhat::HeapStats::get().total_blocks - before
        })
        .min()
        .unwrap_or(u64::MAX) as f64
        / REQUESTS as f64
}

fn preset() -> InfoPlugLayer {
    InfoPlugLayer::builder(key(), BASE)
        .retry(|r| r.jitter(NoJitter))
        .build()
        .unwrap()
}

#[test]
fn allocations_per_request_stay_within_the_claims() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _context = runtime.enter();
    static MIB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let mib: &'static [u8] = MIB.get_or_init(|| vec![b'x'; 1024 * 1024]);
    let error_body = ERROR_BODY;

    let rows = [
        ("success/bare", per_request(ok(), false)),
        (
            "success/set_request_header",
            per_request(set_header().layer(ok()), false),
        ),
        (
            "success/auth",
            per_request(AuthLayer::new(key()).layer(ok()), false),
        ),
        (
            "success/auth_scoped",
            per_request(
                AuthLayer::new(key())
                    .for_origin(Origin::parse(BASE).unwrap())
                    .layer(ok()),
                false,
            ),
        ),
        (
            "success/classify",
            per_request(ClassifyLayer::new().layer(ok()), false),
        ),
        (
            "success/tower_retry",
            per_request(tower::retry::RetryLayer::new(CloneOnly).layer(ok()), false),
        ),
        (
            "success/retry",
            per_request(RetryLayer::new().layer(ok()), false),
        ),
        (
            "success/tower_retry_set_header",
            per_request(
                ServiceBuilder::new()
                    .layer(tower::retry::RetryLayer::new(CloneOnly))
                    .layer(set_header())
                    .service(ok()),
                false,
            ),
        ),
        ("success/stack", per_request(preset().layer(ok()), false)),
        ("announced/bare", per_request(announcing(), false)),
        (
            "announced/stack",
            per_request(
                InfoPlugLayer::builder(key(), BASE)
                    .retry(|r| r.jitter(NoJitter).rate_limit_headers(true))
                    .build()
                    .unwrap()
                    .layer(announcing()),
                false,
            ),
        ),
        (
            "error/bare",
            per_request(transport(400, error_body, 1), false),
        ),
        (
            "error/classify",
            per_request(
                ClassifyLayer::new().layer(transport(400, error_body, 1)),
                false,
            ),
        ),
        (
            "error/stack",
            per_request(preset().layer(transport(400, error_body, 1)), false),
        ),
        (
            "error/naive_stack",
            per_request(naive_stack(full_transport(400, error_body)), false),
        ),
        (
            "retry/tower_retry",
            per_request(
                tower::retry::RetryLayer::new(CloneOnly).layer(flip()),
                false,
            ),
        ),
        (
            "retry/stack",
            per_request(
                InfoPlugLayer::builder(key(), BASE)
                    .retry(|r| r.jitter(NoJitter).no_budget().pacing(false))
                    .build()
                    .unwrap()
                    .layer(flip()),
                false,
            ),
        ),
        (
            "body/bare (1 MiB, 16 frames)",
            per_request(transport(200, mib, 16), true),
        ),
        (
            "body/stack (1 MiB, 16 frames)",
            per_request(preset().layer(transport(200, mib, 16)), true),
        ),
        (
            "body/bare (1 MiB, 256 frames)",
            per_request(transport(200, mib, 256), true),
        ),
        (
            "body/stack (1 MiB, 256 frames)",
            per_request(preset().layer(transport(200, mib, 256)), true),
        ),
    ];
    let rows: Vec<_> = rows
        .into_iter()
        .chain([(
            "retry/naive_stack",
            per_request(naive_stack(full_flip()), false),
        )])
        .collect();
    let get = |id: &str| rows.iter().find(|(row, _)| *row == id).unwrap().1;
    println!("\n| row | allocations/request | beyond the floor |");
    println!("|---|---:|---:|");
    for (row, n) in &rows {
        let floor = if row.starts_with("error") {
            get("error/bare")
        } else if row.starts_with("announced") {
            get("announced/bare")
        } else if row.starts_with("body") && row.ends_with("16 frames)") {
            get("body/bare (1 MiB, 16 frames)")
        } else if row.starts_with("body") {
            get("body/bare (1 MiB, 256 frames)")
        } else {
            get("success/bare")
        };
        println!("| {row} | {n:.1} | {:+.1} |", n - floor);
    }

    // Auth allocates what tower-http's SetRequestHeader allocates (the header map's storage),
    // origin scoping included.
    assert_eq!(get("success/auth"), get("success/set_request_header"));
    assert_eq!(
        get("success/auth_scoped"),
        get("success/set_request_header")
    );
    // The classifier allocates nothing for a 2xx.
    assert_eq!(get("success/classify"), get("success/bare"));
    // The retry layer allocates what tower::retry does: a plain single attempt carries no
    // RetryInfo extension (which costs the extensions map, its table and a box), an empty
    // body no replay buffer, and the future is not boxed.
    assert_eq!(get("success/retry"), get("success/tower_retry"), "{rows:?}");
    assert_eq!(
        get("success/stack"),
        get("success/tower_retry_set_header"),
        "{rows:?}"
    );
    // No allocation per byte or per frame of a 2xx body: reading 1 MiB in 16 or 256 frames
    // through the stack costs what the stack costs for a tiny body.
    let overhead = get("success/stack") - get("success/bare");
    assert_eq!(
        get("body/stack (1 MiB, 16 frames)") - get("body/bare (1 MiB, 16 frames)"),
        overhead
    );
    assert_eq!(
        get("body/stack (1 MiB, 256 frames)") - get("body/bare (1 MiB, 256 frames)"),
        overhead
    );

    // The error path allocates no more than the naive collect-and-parse classifier composed
    // with tower::retry and SetRequestHeader.
    assert!(get("error/stack") <= get("error/naive_stack"), "{rows:?}");
    // And so does the 429 → 200 path: a retried attempt allocates what the transport, the
    // stamped header and classifying the 429's body need, and nothing more.
    assert!(get("retry/stack") <= get("retry/naive_stack"), "{rows:?}");
    // Following a quota the server announces on every answer plans every request: at most
    // two allocations a request beyond the stack's success path (the request's partition,
    // worked out to plan it). It was eight: each walk of the fields split them into a
    // vector, the quota's name was sorted in one, and each copy of the partition key copied
    // its host.
    assert!(
        get("announced/stack") - get("announced/bare")
            <= get("success/stack") - get("success/bare") + 2.0,
        "{rows:?}"
    );

    // The size of each response future, against the hand-built equivalent's (bytes; a future
    // is moved through every layer above it, so this is paid per request).
    macro_rules! future_size {
        ($svc:expr) => {{
            let mut svc = $svc;
            support::now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
            let future = svc.call(support::request());
            let bytes = std::mem::size_of_val(&future);
            drop(future);
            bytes
        }};
    }
    let sizes = [
        ("bare transport", future_size!(full_transport(200, b"{}"))),
        (
            "tower::retry + SetRequestHeader",
            future_size!(
                ServiceBuilder::new()
                    .layer(tower::retry::RetryLayer::new(CloneOnly))
                    .layer(set_header())
                    .service(full_transport(200, b"{}"))
            ),
        ),
        (
            "naive classifier + tower::retry + SetRequestHeader",
            future_size!(naive_stack(full_transport(200, b"{}"))),
        ),
        (
            "AuthLayer",
            future_size!(AuthLayer::new(key()).layer(full_transport(200, b"{}"))),
        ),
        (
            "ClassifyLayer",
            future_size!(ClassifyLayer::new().layer(full_transport(200, b"{}"))),
        ),
        (
            "RetryLayer",
            future_size!(RetryLayer::new().layer(full_transport(200, b"{}"))),
        ),
        (
            "InfoPlugLayer",
            future_size!(preset().layer(full_transport(200, b"{}"))),
        ),
        // Over hyper-util's client, which the future holds a clone of (as tower::retry's
        // does): its size shows in both.
        (
            "tower::retry + SetRequestHeader over hyper-util's Client",
            future_size!(
                ServiceBuilder::new()
                    .layer(tower::retry::RetryLayer::new(CloneOnly))
                    .layer(set_header())
                    .service(hyper_client::<Full<Bytes>>())
            ),
        ),
        (
            "InfoPlugLayer over hyper-util's Client",
            future_size!(preset().layer(hyper_client::<tower_infoplug::ReplayBody<Full<Bytes>>>())),
        ),
    ];
    println!("\n| response future | bytes |\n|---|---:|");
    for (name, bytes) in sizes {
        println!("| {name} | {bytes} |");
    }

    // Memory per error body follows its bytes, not its frames: a 64 KiB error body sent a
    // byte a frame is held, classified and not yet read, in about 64 KiB (as one frame of
    // it is), not in a frame's bookkeeping per byte.
    static ERROR_64K: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let error_64k: &'static [u8] = ERROR_64K.get_or_init(|| vec![b'x'; 64 * 1024]);
    let held = |frames: usize| {
        let mut svc = ClassifyLayer::new().layer(transport(500, error_64k, frames));
        support::now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
        let before = dhat::HeapStats::get().curr_bytes;
        let res = support::now(svc.call(support::request())).unwrap();
        let held = dhat::HeapStats::get().curr_bytes - before;
        assert!(res.extensions().get::<tower_infoplug::ApiError>().is_some());
        drop(res);
        held
    };
    let one_frame = held(1);
    let byte_frames = held(64 * 1024);
    println!(
        "\n64 KiB error body held: {one_frame} bytes in one frame, {byte_frames} a byte a frame"
    );
    assert!(byte_frames <= 64 * 1024 + 4096, "{byte_frames} bytes");
}

/// hyper-util's client, as the README builds it (never polled here: only its futures' sizes
/// are read).
fn hyper_client<B>()
-> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, B>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}
