//! The embedded InfoPlug emulator: the API's contract, in process or on loopback, scriptable.
//!
//! [`Emulator`] answers as the real API does, so tests and examples need no network and no
//! real key:
//!
//! 1. **key**: the key (default [`TEST_KEY`]) must be in `X-INFOPLUG-API-KEY` (or in
//!    `Authorization`, raw or `Bearer`, as the earlier contract said), else 401
//!    `unauthorized`;
//! 2. **rate limit**: per key, a fixed window (default 100 a second), a sliding window or a
//!    token bucket ([`Quota`]), else 429 `rate_limit_exceeded` with `Retry-After` in whole
//!    seconds until a request would be admitted; optionally announced on every answer, in
//!    the draft's `RateLimit` and `RateLimit-Policy` fields
//!    ([`rate_limit_headers`](EmulatorBuilder::rate_limit_headers)) or the common
//!    `X-RateLimit-Limit`, `-Remaining` and `-Reset`
//!    ([`x_rate_limit_headers`](EmulatorBuilder::x_rate_limit_headers));
//! 3. **parameters**: paths outside `/v1/`, and paths with a `missing` segment, are 404
//!    `not_found`; a POST/PUT/PATCH without a body is 400 `payload_is_empty`, with a body that
//!    is not JSON 400 `invalid_parameter`; `limit` outside 1..=2500 is 400
//!    `limit_out_of_range`; a `linkedin_url` that is not `https` is 400 `invalid_parameter`;
//! 4. **credits**: each 200 costs one credit (default 1000); at zero, 402
//!    `insufficient_credits`;
//! 5. otherwise 200 with a JSON body describing the request.
//!
//! A test scripts the next answers with [`Emulator::push`]: any status, header or body, and the
//! faults a real deployment produces ([`Reply::unavailable`], [`Reply::proxy_html`],
//! [`Reply::malformed`], [`Reply::oversized`], slow bodies with [`Reply::chunk_delay`],
//! truncated ones with [`Reply::truncate_after`], slow heads with [`Reply::delay`]). Scripted
//! replies are sent whatever the request, key check included. [`Emulator::set_outage`] answers
//! every further request with one reply until it is lifted: an outage that ends when the test
//! says so.
//!
//! Every request is recorded ([`Emulator::requests`]: method, URI, headers, body, arrival time
//! on Tokio's clock), so tests can assert from the server's side: how many attempts arrived,
//! with which key, when, with which body.
//!
//! The emulator is a tower [`Service`](tower_service::Service) (in process, no sockets) and
//! serves itself over HTTP/1.1 on `127.0.0.1` with one call, [`Emulator::serve`]. All its
//! waits use Tokio's clock, so paused-time tests control them.
//!
//! # Example
//!
//! ```
//! use http::Request;
//! use http_body_util::Empty;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use tower_infoplug_mock::{Emulator, Reply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let emulator = Emulator::new();
//! let server = emulator.serve().await?;
//! emulator.push(Reply::rate_limited(3));
//!
//! let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
//! let res = client.get(server.uri("/v1/profile")?).await?;
//! assert_eq!(res.status(), 429);
//! assert_eq!(res.headers()["retry-after"], "3");
//!
//! // No scripted reply left: the API's own rules apply, and this request has no key.
//! let res = client.get(server.uri("/v1/profile")?).await?;
//! assert_eq!(res.status(), 401);
//! assert_eq!(emulator.request_count(), 2);
//! # Ok(())
//! # }
//! ```

mod emulator;
mod quota;
mod reply;
mod server;

pub use emulator::{Emulator, EmulatorBuilder, Recorded, TEST_KEY};
pub use quota::Quota;
pub use reply::{MockBody, Reply, Truncated};
pub use server::EmulatorServer;
