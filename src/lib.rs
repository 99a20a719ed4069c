//! Tower layers for HTTP clients of the InfoPlug API, and of any API with the same contract (a
//! JSON error body `{"message","parameter","details"}`, 429/503 with `Retry-After`).
//!
//! The layers work over any `Service<http::Request<B>, Response = http::Response<R>>`:
//! hyper-util's client, an axum app's outbound client, reqwest behind an adapter, or your own
//! transport (in memory, recorded, a test double).
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
//!   ClassifyLayer   one classification per attempt; the final response keeps its own
//!     AuthLayer     stamps the current key on every attempt, only for the API origin
//!       transport   hyper-util Client, reqwest adapter, service_fn, ...
//! ```
//!
//! Each layer is useful alone, and every order stays safe: the key is never printed (sensitive
//! header values, redacting `Debug`, and an error body that echoes the key is redacted before
//! it is stored), never sent to another origin, and no order retries more than configured.
//!
//! # Example
//!
//! ```
//! use http::Request;
//! use http_body_util::Empty;
//! use tower::{Layer, ServiceExt};
//! use tower_infoplug::mock::{Emulator, Reply, TEST_KEY};
//! use tower_infoplug::{ApiKey, ErrorCode, InfoPlugLayer, ResponseExt, RetryInfo};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let api = Emulator::new(); // the embedded InfoPlug emulator, in process
//! api.push_all([Reply::rate_limited(2), Reply::status(402)]);
//!
//! let client = InfoPlugLayer::new(ApiKey::new(TEST_KEY)?, "https://api.infoplug.test")?.layer(api.clone());
//!
//! let req = Request::get("https://api.infoplug.test/v1/profile").body(Empty::<bytes::Bytes>::new())?;
//! let res = client.oneshot(req).await?;
//! let err = res.api_error().expect("402 is classified");
//! assert_eq!(err.code(), &ErrorCode::InsufficientCredits);
//! assert!(!err.is_retryable());
//! // The 429 was retried after its Retry-After; the 402 was final.
//! assert_eq!(res.extensions().get::<RetryInfo>().unwrap().attempts(), 2);
//! assert_eq!(api.requests()[0].header("x-infoplug-api-key"), Some(TEST_KEY));
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
//! | `mock` | no | [`mock`]: the embedded emulator, in process and on loopback |
//! | `full` | no | all of the above |
//!
//! The examples in these docs use the emulator, so run the doctests with `--all-features`.

#[cfg(feature = "auth")]
pub mod auth;
#[cfg(feature = "classify")]
pub mod classify;
mod error;
#[cfg(feature = "classify")]
mod frames;
mod key;
#[cfg(feature = "mock")]
pub mod mock;
mod origin;
#[cfg(all(feature = "auth", feature = "retry"))]
mod preset;
#[cfg(feature = "retry")]
pub mod retry;
mod trace;

#[cfg(feature = "auth")]
pub use auth::{AuthHeader, AuthLayer};
#[cfg(feature = "classify")]
pub use classify::{ApiError, BodyIssue, ClassifyLayer, ErrorCode, ResponseExt};
pub use error::ConfigError;
pub use key::{API_KEY_ENV, ApiKey, KeyHandle, KeySource, MAX_KEY_LEN, X_INFOPLUG_API_KEY};
pub use origin::Origin;
#[cfg(all(feature = "auth", feature = "retry"))]
pub use preset::{BASE_URL_ENV, InfoPlugBuilder, InfoPlugLayer};
#[cfg(feature = "retry")]
pub use retry::{RetryInfo, RetryLayer};

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
