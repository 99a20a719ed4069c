//! Tower layers for HTTP clients of the InfoPlug API, and of any API with the same contract (a
//! JSON error body `{"message","parameter","details"}`, 429/503 with `Retry-After`).
//!
//! The layers work over any `Service<http::Request<B>, Response = http::Response<R>>`:
//! hyper-util's client, an axum app's outbound client, reqwest (feature `reqwest`, also as a
//! reqwest-middleware middleware), or your own transport (in memory, recorded, a test double).
//!
//! | layer | job |
//! |---|---|
//! | [`AuthLayer`] | puts the API key on every request for the API's origin, safely |
//! | [`RetryLayer`] | retries what is safe to retry, honours `Retry-After`, shares a cooldown and a budget between concurrent requests, replays any request body |
//! | [`ClassifyLayer`] | reads a 4xx/5xx body (bounded), parses it into a typed [`ApiError`] in the response extensions, and hands the body on intact |
//!
//! [`InfoPlugLayer`] stacks all three in the recommended order, outermost first:
//!
//! ```text
//! RetryLayer        sees classified responses; decides, waits, replays
//!   AuthLayer       stamps the current key on every attempt, only for the API origin;
//!                   redacts it from the classified error on the way back
//!     ClassifyLayer one classification per attempt; the final response keeps its own
//!       transport   hyper-util Client, reqwest adapter, service_fn, ...
//! ```
//!
//! Each layer is useful alone, and every order stays safe: the key is never printed (sensitive
//! header values, redacting `Debug`, and an error body that echoes the key is redacted before
//! it is stored), never sent to another origin, and no order retries more than configured.
//!
//! # Quick start
//!
//! The preset, [`InfoPlugLayer`], over hyper-util's client: the real client type, with the
//! body type the retry layer needs ([`ReplayBody`] around yours, so a request can be sent
//! again). Here it talks to the emulator (the `tower-infoplug-mock` crate, a dev-dependency)
//! on a loopback port; an application reads its key and base URL from the environment with
//! [`InfoPlugLayer::from_env`] (`INFOPLUG_API_KEY`, `INFOPLUG_BASE_URL`).
//!
//! ```
//! use bytes::Bytes;
//! use http::Request;
//! use http_body_util::Empty;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_infoplug::{ApiKey, ErrorCode, InfoPlugLayer, ReplayBody, ResponseExt};
//! use tower_infoplug_mock::{Emulator, TEST_KEY};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let emulator = Emulator::new();
//! let server = emulator.serve().await?;
//!
//! // In an application: `InfoPlugLayer::from_env()?`.
//! let infoplug = InfoPlugLayer::new(ApiKey::new(TEST_KEY)?, &server.base_url())?;
//! let url = infoplug.uri("/v1/profile")?; // one `/` between base and path, always
//! let out_of_range = infoplug.uri("/v1/search?limit=0")?;
//! let client = ServiceBuilder::new()
//!     .layer(infoplug)
//!     .service(Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Empty<Bytes>>>());
//!
//! // A 200: one attempt.
//! let res = client.clone().oneshot(Request::get(url).body(Empty::new())?).await?;
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.retry_info().attempts(), 1);
//!
//! // A 400 the API explains: not retried, read into a typed error.
//! let res = client.oneshot(Request::get(out_of_range).body(Empty::new())?).await?;
//! let err = res.api_error().expect("a 400 is classified");
//! assert_eq!(err.code(), &ErrorCode::LimitOutOfRange);
//! assert_eq!(err.parameter(), Some("limit"));
//! assert_eq!(res.retry_info().attempts(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Over any transport
//!
//! The layers need nothing of a transport but `tower::Service<http::Request<B>>`: here a
//! `service_fn` stands in for the network.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{Layer, ServiceExt, service_fn};
//! use tower_infoplug::{ApiKey, ErrorCode, InfoPlugLayer, ResponseExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Stands in for the network: a 429 asking for 2 s, then a 402, each with the contract's body.
//! static CALLS: AtomicUsize = AtomicUsize::new(0);
//! let api = service_fn(|req: Request<_>| async move {
//!     assert_eq!(req.headers()["x-infoplug-api-key"], "ip_live_key");
//!     let res = match CALLS.fetch_add(1, Ordering::SeqCst) {
//!         0 => Response::builder().status(429).header("retry-after", "2")
//!             .body(Full::new(Bytes::from_static(br#"{"message":"rate_limit_exceeded"}"#))),
//!         _ => Response::builder().status(402)
//!             .body(Full::new(Bytes::from_static(br#"{"message":"insufficient_credits"}"#))),
//!     };
//!     res
//! });
//!
//! let client = InfoPlugLayer::new(ApiKey::new("ip_live_key")?, "https://api.infoplug.test")?.layer(api);
//!
//! let req = Request::get("https://api.infoplug.test/v1/profile").body(Full::<Bytes>::default())?;
//! let res = client.oneshot(req).await?;
//! let err = res.api_error().expect("402 is classified");
//! assert_eq!(err.code(), &ErrorCode::InsufficientCredits);
//! assert!(!err.is_retryable());
//! // The 429 was retried after its Retry-After; the 402 was final.
//! assert_eq!(res.retry_info().attempts(), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | feature | default | what it gates |
//! |---|---|---|
//! | `auth` | yes | [`AuthLayer`] |
//! | `classify` | yes | [`ClassifyLayer`], [`ApiError`] (pulls `tokio` with its timer, `serde`, `serde_json`) |
//! | `retry` | yes | [`RetryLayer`] (needs `classify`; pulls `httpdate`), and with `auth` the [`InfoPlugLayer`] preset |
//! | `tracing` | yes | `tracing` events for the layers' decisions (never with the key) |
//! | `decompress` | no | the classifier decodes gzip-, deflate- and br-encoded error bodies (pulls `flate2`, `brotli-decompressor`) |
//! | `metrics` | no | counters, histograms and a gauge of the retry layer's decisions through the `metrics` facade (pulls `metrics`; names in [`guide::telemetry`]) |
//! | `redis` | no | [`RetryBuilder::fleet`](retry::RetryBuilder::fleet): gates, pacing and the retry budget shared by every process on one key through Redis (pulls `redis`, `sha1_smol`) |
//! | `reqwest` | no | [`reqwest`](mod@reqwest): a transport over `reqwest::Client` and a `reqwest_middleware::Middleware` (pulls `reqwest` without TLS, `reqwest-middleware`) |
//! | `redis-cluster` | no | [`RedisFleet::cluster`](retry::RedisFleet): the fleet on a Redis Cluster |
//! | `http2` | no | HTTP/2 streams the server refused (`REFUSED_STREAM`, a graceful `GOAWAY`) are sent again, a POST included (reads `h2`'s errors) |
//! | `hyper` | no | requests hyper canceled before sending them are sent again, a POST included (reads `hyper::Error`) |
//! | `full` | no | all of the above |
//!
//! The emulator the examples and the tests run against is a crate of its own,
//! `tower-infoplug-mock`: add it as a dev-dependency to test your code against the API's
//! contract with no network and no real key.
//!
//! # Guides
//!
//! - [`guide::contract`]: what the API answers, what each layer reads, the layers' order;
//! - [`guide::rate_limits`]: gates, probes, pacing, configured quotas, the circuit breaker,
//!   fleets through Redis;
//! - [`guide::telemetry`]: spans, events, metric names and hooks;
//! - [`guide::hostile_conditions`]: each promise under faults and the test that holds it;
//! - [`guide::pitfalls`]: what goes wrong most often, and what to do instead.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "auth", feature = "classify"))]
#[macro_use]
mod macros;

#[cfg(feature = "auth")]
pub mod auth;
#[cfg(feature = "classify")]
pub mod classify;
mod error;
#[cfg(feature = "classify")]
mod frames;
#[cfg(all(fuzzing, feature = "retry"))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "classify")]
mod handoff;
mod key;
mod origin;
#[cfg(all(feature = "auth", feature = "retry"))]
mod preset;
#[cfg(feature = "reqwest")]
pub mod reqwest;
#[cfg(feature = "classify")]
mod response;
#[cfg(feature = "retry")]
pub mod retry;
#[cfg(any(feature = "auth", feature = "classify"))]
mod trace;

/// The guides: the pages of the repository's `docs/` folder, here so they are versioned with
/// the crate and their examples are compiled as doctests.
pub mod guide {
    #[doc = include_str!("../docs/contract.md")]
    pub mod contract {}
    // Its fleet example needs the `redis` feature: compiled as a doctest only with it.
    #[cfg_attr(any(not(doctest), feature = "redis"), doc = include_str!("../docs/rate-limits.md"))]
    pub mod rate_limits {}
    #[doc = include_str!("../docs/telemetry.md")]
    pub mod telemetry {}
    #[doc = include_str!("../docs/hostile-conditions.md")]
    pub mod hostile_conditions {}
    #[doc = include_str!("../docs/pitfalls.md")]
    pub mod pitfalls {}
}

#[cfg(feature = "auth")]
pub use auth::{AuthHeader, AuthLayer, KeyGuardLayer};
#[cfg(feature = "classify")]
pub use classify::{ApiError, BodyIssue, ClassifyBody, ClassifyLayer, ErrorCode};
pub use error::ConfigError;
pub use key::{API_KEY_ENV, ApiKey, KeyHandle, KeySource, MAX_KEY_LEN, X_INFOPLUG_API_KEY};
pub use origin::Origin;
#[cfg(all(feature = "auth", feature = "retry"))]
pub use preset::{BASE_URL_ENV, InfoPlugBuilder, InfoPlugLayer, InfoPlugService};
#[cfg(feature = "classify")]
pub use response::ResponseExt;
#[cfg(feature = "retry")]
pub use retry::{
    BoxError, DefaultPolicy, RateLimitStatus, ReplayBody, RetryError, RetryInfo, RetryLayer,
    StopReason,
};

/// The README's examples, compiled as doctests so they cannot rot (its reqwest example needs
/// the `reqwest` feature).
#[cfg(all(doctest, feature = "reqwest"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
