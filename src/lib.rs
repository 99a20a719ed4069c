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
//! | [`ClassifyLayer`] | reads a 4xx/5xx body (bounded), parses it into a typed [`ApiError`] in the response extensions, and hands the body on intact |
//!
//! A rate-limit-aware retry layer that honours `Retry-After` and shares a cooldown between
//! concurrent requests is the third layer; it is not in this release yet. The classification
//! is already shaped for it: every attempt's response carries its own [`ApiError`], and
//! [`ApiError::is_retryable`] gives the response's side of the decision.
//!
//! Recommended order, outermost first:
//!
//! ```text
//! (RetryLayer)      sees classified responses; decides, waits, replays
//!   ClassifyLayer   one classification per attempt
//!     AuthLayer     stamps the current key on every attempt, only for the API origin
//!       transport   hyper-util Client, reqwest adapter, service_fn, ...
//! ```
//!
//! Each layer is useful alone, and every order stays safe: the key is never printed (sensitive
//! header values, redacting `Debug`, and an error body that echoes the key is redacted before
//! it is stored) and never sent to another origin.
//!
//! # Example
//!
//! ```
//! use http::Request;
//! use http_body_util::Empty;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_infoplug::mock::{Emulator, Reply, TEST_KEY};
//! use tower_infoplug::{ApiKey, AuthLayer, ClassifyLayer, ErrorCode, Origin, ResponseExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let api = Emulator::new(); // the embedded InfoPlug emulator, in process
//! api.push(Reply::status(402));
//!
//! let client = ServiceBuilder::new()
//!     .layer(ClassifyLayer::new())
//!     .layer(AuthLayer::new(ApiKey::new(TEST_KEY)?).for_origin(Origin::parse("https://api.infoplug.io")?))
//!     .service(api.clone());
//!
//! let req = Request::get("https://api.infoplug.io/v1/profile").body(Empty::<bytes::Bytes>::new())?;
//! let res = client.oneshot(req).await?;
//! let err = res.api_error().expect("402 is classified");
//! assert_eq!(err.code(), &ErrorCode::InsufficientCredits);
//! assert!(!err.is_retryable());
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
//! | `classify` | yes | [`ClassifyLayer`], [`ApiError`] (pulls `tokio` with only its timer, `serde`, `serde_json`) |
//! | `tracing` | yes | `tracing` events for the layers' decisions (never with the key) |
//! | `mock` | no | [`mock`]: the embedded emulator, in process and on loopback |
//! | `full` | no | all of the above |

#[cfg(feature = "auth")]
pub mod auth;
#[cfg(feature = "classify")]
pub mod classify;
mod error;
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
