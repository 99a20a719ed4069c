//! Retries what is safe to retry, honours the server's wait hints, and never storms.
//!
//! [`RetryLayer`] re-sends a request when its outcome says a later attempt may succeed, by
//! the contract's table (see [`DefaultPolicy`]): 429 always (the server did no work), 503 for
//! idempotent requests or with a wait hint, 500/502/504 and response-phase transport errors
//! for idempotent requests, and connection errors where the request never left. 4xx answers
//! are final. Compared with `tower::retry`, which leaves all of this to a policy you write:
//!
//! - **Server hints**: `retry-after-ms` (read first: it is the same hint to the millisecond),
//!   `Retry-After` (seconds, and all three HTTP-date forms, read against an injectable wall
//!   clock), and optionally the draft `RateLimit` field and `X-RateLimit-Reset`; a 4xx/5xx's
//!   `x-should-retry: false` vetoes a retry and `true` permits one (see [`DefaultPolicy`]). A hint is a floor: the layer waits `max(hint, backoff)` plus a
//!   bounded upward spread, never earlier than asked. `0` or a date in the past means "no
//!   floor", not "now". Invalid hints are ignored; of several lines, the largest valid one
//!   wins; a `RateLimit` policy with quota left names no wait.
//! - **A hint too long to honour** (above [`max_retry_after`](RetryBuilder::max_retry_after),
//!   60 s by default, or past the request's deadline) is not slept on: the response comes back
//!   at once, its [`RetryInfo`] holding the hint and the reason.
//! - **Shared gates that cannot lock out**: a 429 or 503 the policy would retry, with a hint,
//!   shuts a gate on its *partition* (origin and credential: one tenant's 429 holds no other
//!   tenant) for every request through the layer's clones. Requests that meet it wait if what
//!   the server asked fits their `max_retry_after` and deadline, and otherwise fail at once
//!   with [`RetryError::CoolingDown`], which carries the status and how long the server asked
//!   for; a request already retrying obeys the same cap. No gate stays shut longer than
//!   [`max_cooldown`](RetryBuilder::max_cooldown) (default `max_retry_after`): then one
//!   request goes through as a probe, and an answer without a hint reopens it. A vetoed 429
//!   (`insufficient_credits`) shuts nothing.
//! - **Pacing after a 429**: the partition's requests are then released at a rate learned from
//!   what the server admitted (or the quota its `RateLimit-Policy` states), not all at once
//!   when the gate reopens; the rate is held, then recovers, and pacing ends once it has
//!   doubled without another 429. A lone request waits its hint plus at most
//!   `max(10%, 100 ms)`. While nothing is throttled, none of this takes a lock or touches a
//!   timer.
//! - **A retry budget** shared by clones (a share of recent healthy answers plus a floor per
//!   second), so an outage cannot multiply the load; and `max_attempts` (3 by default).
//! - **Any request body**, not only clonable ones: the body is recorded as it is sent and
//!   replayed. `Bytes` data is kept by reference count, whatever its size; other data is
//!   copied, up to [`replay_limit`](RetryBuilder::replay_limit) (64 KiB by default). A body
//!   past the limit is sent once and not retried; a request is never re-sent with an empty or
//!   short body. See [`ReplayBody`].
//! - **Retried responses' bodies** are drained (bounded in bytes and time) while waiting, so
//!   the connection can be reused.
//! - **A final response** carries a [`RetryInfo`] extension (attempts, time waited, the last
//!   hint, why retrying stopped) when anything happened beyond one plain attempt;
//!   [`ResponseExt::retry_info`](crate::ResponseExt::retry_info) reads it, or the one-attempt
//!   record when it is absent.
//! - **Cancellation**: dropping the response future stops everything; it spawns nothing
//!   (with a `RedisFleet`, the fleet's store writes what requests saw from background tasks
//!   of its own, each bounded by the fleet's timeout).
//!   Readiness is polled again before every attempt, so the layer composes with `Buffer`,
//!   `ConcurrencyLimit` and balancers, and a request held by a gate or the pacing holds no
//!   permit.
//!
//! The rules about when to send live in pure modules, each in one place: the planner (what a
//! request does, from the time, jitter samples, its outcome and a snapshot of the shared
//! state) and the store rules (what an outcome does to the shared state: the gate, its merge,
//! the pacing slot, the cap on any wait, which retries spend the budget), which this
//! process's store and a fleet's both apply. A request's engine takes each decision; the
//! response future only sequences its steps (send, wait while draining, ask a fleet's store,
//! return). No subscriber or metrics recorder runs under the crate's locks.
//!
//! Place it above a [`ClassifyLayer`](crate::ClassifyLayer): the parsed error body of each
//! attempt can then veto a retry (a 429 whose body says `insufficient_credits` is final). The
//! inner service sees `Request<ReplayBody<B>>`, whose data is `Bytes` and whose error is a
//! [`BoxError`], which hyper's client and most transports accept.
//!
//! Timing uses Tokio's clock, so tests run it with paused time.
//!
//! # Example
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_infoplug::retry::{RetryLayer, StopReason};
//! use tower_infoplug::{ClassifyLayer, ResponseExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Stands in for the network: a 429 asking for 2 s, a 503, then a 200.
//! static CALLS: AtomicUsize = AtomicUsize::new(0);
//! let api = service_fn(|_req: Request<_>| async {
//!     let (status, retry_after) = match CALLS.fetch_add(1, Ordering::SeqCst) {
//!         0 => (429, "2"),
//!         1 => (503, ""),
//!         _ => (200, ""),
//!     };
//!     let mut res = Response::builder().status(status);
//!     if !retry_after.is_empty() {
//!         res = res.header("retry-after", retry_after);
//!     }
//!     res.body(Full::<Bytes>::default())
//! });
//!
//! let client = ServiceBuilder::new()
//!     .layer(RetryLayer::new())
//!     .layer(ClassifyLayer::new())
//!     .service(api);
//!
//! let started = tokio::time::Instant::now();
//! let res = client.oneshot(Request::get("/v1/profile").body(Full::<Bytes>::default())?).await?;
//! assert_eq!(res.status(), 200);
//!
//! let info = res.retry_info();
//! assert_eq!(info.attempts(), 3);
//! assert_eq!(info.stop_reason(), StopReason::Final);
//! assert!(started.elapsed() >= Duration::from_secs(2)); // Retry-After: 2 was honoured
//! # Ok(())
//! # }
//! ```
//!
//! # Policies for other error types
//!
//! [`DefaultPolicy`] reads transport errors that implement `std::error::Error` (hyper-util's
//! client, `std::io`, reqwest). For a transport with boxed errors (`tower::timeout`, a `Buffer`
//! below the retry layer), [`DefaultPolicy::boxed`] is the same table:
//!
//! ```
//! use tower_infoplug::retry::{DefaultPolicy, RetryLayer};
//!
//! let layer = RetryLayer::new().with_policy(DefaultPolicy::new().boxed());
//! # let _ = layer;
//! ```
//!
//! Anything else: implement [`RetryPolicy`] (two methods) or wrap a closure with
//! [`policy_fn`], and hand it to [`RetryLayer::with_policy`].

mod backoff;
mod body;
mod budget;
#[cfg(test)]
mod conformance;
mod deadline;
mod engine;
mod error;
#[cfg(feature = "redis")]
mod fleet;
mod future;
pub(crate) mod hints;
mod hooks;
mod idempotency;
mod info;
mod layer;
mod metrics;
mod overrides;
mod pacer;
mod plan;
mod policy;
mod rules;
mod service;
mod state;
mod status;
mod store;
mod telemetry;
mod trace;
mod wait;

pub use backoff::{Jitter, RandomJitter, SystemClock, WallClock};
pub use body::{BoxError, ReplayBody};
pub use deadline::Deadline;
pub(crate) use deadline::later;
pub use error::RetryError;
#[cfg(feature = "redis")]
pub use fleet::{DEFAULT_FLEET_TIMEOUT, RedisFleet, RedisFleetBuilder};
pub use future::ResponseFuture;
pub use hints::ResetFormat;
pub use hooks::{RetriedAfter, RetryEvent, ThrottleEvent};
pub use info::{RetryInfo, StopReason};
pub use layer::{
    DEFAULT_BREAKER, DEFAULT_MAX_PARTITIONS, MAX_ATTEMPTS, MAX_REPLAY_LIMIT, RetryBuilder,
    RetryLayer,
};
pub use overrides::{Priority, RetryOverrides};
pub use policy::{
    Attempt, BoxedPolicy, Decision, DefaultPolicy, Failure, Outcome, PolicyFn, RetryPolicy,
    VerdictHeaders, policy_fn,
};
pub use service::Retry;
pub use status::RateLimitStatus;
