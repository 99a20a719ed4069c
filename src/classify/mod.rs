//! Reads the JSON error body of a 4xx/5xx response into a typed [`ApiError`], without eating
//! the body.
//!
//! [`ClassifyLayer`] looks at every response:
//!
//! - **1xx, 2xx and 3xx** pass through untouched: the body is not read, not buffered, and the
//!   wrapper forwards each call to it ([`ClassifyBody`] in its pass-through form, with no
//!   allocation).
//! - **4xx and 5xx**: the layer reads the body, at most [`body_limit`](ClassifyBuilder::body_limit)
//!   bytes (64 KiB) within [`read_timeout`](ClassifyBuilder::read_timeout) (2 s), parses it as
//!   the contract's `{"message","parameter","details"}` object, and stores the resulting
//!   [`ApiError`] in the response extensions. The response then gets a body that yields the
//!   frames already read followed by the rest of the stream: downstream reads every byte the
//!   transport produced, with the same trailers, the same `size_hint`, and the same error if
//!   the stream failed.
//!
//! When the body gives nothing usable (empty, an HTML page from a proxy, not the contract's
//! shape, too large, cut off by a transport error, too slow), [`ApiError::body_issue`] says
//! which, and the code falls back to the status (401 → `Unauthorized`, 402 →
//! `InsufficientCredits`, 404 → `NotFound`, 429 → `RateLimitExceeded`, 5xx → `ServerError`).
//!
//! Each attempt of a request is classified separately, so a retry layer outside this one can
//! read the [`ApiError`] of every attempt (it only ever makes a retry *less* likely: a 429
//! whose body says `insufficient_credits` is not worth retrying, see
//! [`ApiError::is_retryable`]).
//!
//! The read deadline uses Tokio's timer; outside a Tokio runtime the limit alone bounds the read.
//! Memory follows the bytes read, not the frames they came in: what was read is kept as one
//! run (plus the frame that passed the limit, and the trailers).
//!
//! **Compressed bodies** (`Content-Encoding: gzip`, `deflate`, `br`) are decoded for the
//! parser with the `decompress` feature, within the same limit counted in decoded bytes (a
//! decompression bomb ends as [`TooLarge`](BodyIssue::TooLarge)); the body handed on stays
//! encoded, as it came. Without the feature, or for another coding, the error says
//! [`Encoded`](BodyIssue::Encoded) and is not retryable. If you use tower-http's
//! `DecompressionLayer`, place it below this layer, next to the transport.
//!
//! tower-http has no equivalent: its `MapResponseBody` could buffer the body, but then the
//! body is gone or has to be collected whole; this layer reads a bounded prefix and replays it.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_infoplug::{ClassifyLayer, ErrorCode, ResponseExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! const BODY: &str = r#"{"message":"invalid_parameter","parameter":"linkedin_url","details":"Missing or invalid linkedin_url"}"#;
//! let client = ServiceBuilder::new()
//!     .layer(ClassifyLayer::new())
//!     .service(service_fn(|_req: Request<()>| async {
//!         let res = Response::builder()
//!             .status(StatusCode::BAD_REQUEST)
//!             .header("content-type", "application/json")
//!             .body(Full::new(Bytes::from_static(BODY.as_bytes())))?;
//!         Ok::<_, http::Error>(res)
//!     }));
//!
//! let res = client.oneshot(Request::get("/v1/profile").body(())?).await?;
//! let err = res.api_error().expect("a 400 is classified");
//! assert_eq!(err.code(), &ErrorCode::InvalidParameter);
//! assert_eq!(err.parameter(), Some("linkedin_url"));
//!
//! // The body is still there, byte for byte.
//! let body = res.into_body().collect().await?.to_bytes();
//! assert_eq!(body, BODY.as_bytes());
//! # Ok(())
//! # }
//! ```

mod body;
mod decode;
pub(crate) mod error;
mod future;
mod layer;
pub(crate) mod parse;
mod service;

pub use body::ClassifyBody;
pub use error::{ApiError, BodyIssue, ErrorCode};
pub use future::ResponseFuture;
pub use layer::{
    ClassifyBuilder, ClassifyLayer, DEFAULT_BODY_LIMIT, DEFAULT_READ_TIMEOUT, MAX_BODY_LIMIT,
};
pub use service::Classify;
