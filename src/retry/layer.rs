use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use tower_layer::Layer;

use super::backoff::{Jitter, RandomJitter, SystemClock, WallClock};
use super::budget::Budget;
use super::hints::{HintFields, ResetFormat};
use super::hooks::Hooks;
use super::state::State;
use super::store::Store;
use super::{DefaultPolicy, Retry};
use super::{RetryEvent, RetryInfo, ThrottleEvent};
use crate::ConfigError;

/// Validated settings.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) max_attempts: u32,
    pub(super) base_backoff: Duration,
    pub(super) max_backoff: Duration,
    pub(super) max_retry_after: Duration,
    pub(super) hint_jitter: Duration,
    pub(super) hint_fields: HintFields,
    /// The longest a gate stays shut without a probe (the builder's `None`: `max_retry_after`).
    pub(super) max_cooldown: Duration,
    pub(super) pacing: bool,
    pub(super) deadline: Option<Duration>,
    pub(super) attempt_timeout: Option<Duration>,
    pub(super) replay_limit: usize,
    pub(super) drain_limit: usize,
    pub(super) drain_timeout: Duration,
    pub(super) levels: super::trace::Levels,
    pub(super) idempotency_keys: bool,
    /// A quota the user configured: requests a second, and how many may go at once.
    pub(super) quota: Option<Quota>,
    /// The header that carries the attempt's number, and whether the first attempt has it.
    pub(super) attempt_header: Option<(HeaderName, bool)>,
    pub(super) hooks: Hooks,
    /// The circuit breaker for un-hinted failures, if on.
    pub(super) breaker: Option<Breaker>,
    /// The most partitions the shared state keeps at once.
    pub(super) max_partitions: usize,
}

/// The most partitions (origin and credential) the shared state keeps at once by default.
pub const DEFAULT_MAX_PARTITIONS: usize = 10_000;

/// A partition's circuit breaker: it trips after `failures` un-hinted failures in a row, and
/// then lets one probe go every `probe_every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Breaker {
    pub(super) failures: u32,
    pub(super) probe_every: Duration,
}

/// The circuit breaker's defaults: ten un-hinted failures in a row trip it, and a probe goes
/// every second.
pub const DEFAULT_BREAKER: (u32, Duration) = (10, Duration::from_secs(1));

/// A configured quota, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Quota {
    /// Requests a second.
    pub(super) rate: f64,
    /// How many may go at once after an idle spell (1: none ahead of the pace).
    pub(super) burst: u32,
}

/// What every clone of a layer, and every service and future built from it, shares.
pub(super) struct Shared {
    pub(super) settings: Settings,
    pub(super) state: Store,
    pub(super) jitter: Arc<dyn Jitter>,
    pub(super) clock: Arc<dyn WallClock>,
}

impl Shared {
    /// A jitter sample in `[0, 1]`, whatever the (user-supplied) source returns: NaN counts as
    /// 0, and out-of-range values are clamped, so no wait arithmetic can panic on them.
    pub(super) fn sample(&self) -> f64 {
        super::backoff::unit(self.jitter.sample())
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("settings", &self.settings)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Retries what is safe to retry, honouring the server's wait hints. See the
/// [module docs](crate::retry).
///
/// Clones share one retry budget and one cooldown: build the layer once and use it (or
/// services made from it) for every request to the API.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use http::{Request, Response};
/// use http_body_util::Empty;
/// use bytes::Bytes;
/// use tower::{Layer, ServiceExt, service_fn};
/// use tower_infoplug::{ResponseExt, RetryLayer};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A 503 asking for a second, then a 200.
/// static CALLS: AtomicUsize = AtomicUsize::new(0);
/// let transport = service_fn(|_req| async {
///     let busy = CALLS.fetch_add(1, Ordering::SeqCst) == 0;
///     Response::builder()
///         .status(if busy { 503 } else { 200 })
///         .header("retry-after", "1")
///         .body(Empty::<Bytes>::new())
/// });
/// let client = RetryLayer::new().layer(transport);
/// let res = client.oneshot(Request::post("/v1/search").body(Empty::<Bytes>::new())?).await?;
/// assert_eq!(res.status(), 200);
/// assert_eq!(res.retry_info().attempts(), 2); // a POST's 503 with a hint is retried
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RetryLayer<P = DefaultPolicy> {
    pub(super) shared: Arc<Shared>,
    pub(super) policy: P,
}

impl RetryLayer {
    /// The defaults: 3 attempts, backoff from 100 ms doubling up to 10 s, hints up to 60 s
    /// honoured, a budget of 20% of healthy answers plus 10 retries a second, shared gates
    /// shut for 60 s at most without a probe, pacing after a 429, request bodies replayed (by
    /// reference for `Bytes` data, copied up to 64 KiB otherwise).
    pub fn new() -> Self {
        match Self::builder().build() {
            Ok(layer) => layer,
            // The defaults are valid; `defaults_are_valid` checks it.
            Err(_) => unreachable!("the default retry settings are valid"),
        }
    }

    /// Other settings, checked when built.
    pub fn builder() -> RetryBuilder {
        RetryBuilder::default()
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> RetryLayer<P> {
    /// The same settings (and the same shared budget and cooldown) with another policy.
    pub fn with_policy<Q>(self, policy: Q) -> RetryLayer<Q> {
        RetryLayer {
            shared: self.shared,
            policy,
        }
    }
}

impl<S, P: Clone> Layer<S> for RetryLayer<P> {
    type Service = Retry<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_parts(inner, self.policy.clone(), Arc::clone(&self.shared))
    }
}

impl<P: fmt::Debug> fmt::Debug for RetryLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("shared", &self.shared)
            .field("policy", &self.policy)
            .finish()
    }
}

/// Builds a [`RetryLayer`]; every setting is checked in [`build`](Self::build).
///
/// ```
/// use std::time::Duration;
/// use tower_infoplug::retry::RetryLayer;
///
/// let layer = RetryLayer::builder()
///     .max_attempts(5)
///     .backoff(Duration::from_millis(50), Duration::from_secs(5))
///     .max_retry_after(Duration::from_secs(30))
///     .deadline(Duration::from_secs(60))
///     .build()?;
/// # let _ = layer;
/// assert!(RetryLayer::builder().max_attempts(0).build().is_err());
/// # Ok::<(), tower_infoplug::ConfigError>(())
/// ```
#[derive(Clone)]
#[must_use = "call `build` to get the layer"]
pub struct RetryBuilder {
    settings: Settings,
    max_cooldown: Option<Duration>,
    /// `quota(requests, per)` as given, checked at `build`.
    quota: Option<(u32, Duration)>,
    quota_burst: u32,
    budget: Option<(f64, u32)>,
    shared_cooldown: bool,
    /// `attempt_header(name)` as given, checked at `build`; and whether the first attempt
    /// carries it too.
    attempt_header: Option<String>,
    attempt_header_first: bool,
    policy: DefaultPolicy,
    #[cfg(feature = "redis")]
    fleet: Option<super::RedisFleet>,
    /// Mixed into the fleet's partition names: which key the layer's requests go out with
    /// when they carry none yet (the preset's), as a hash.
    #[cfg(feature = "redis")]
    fleet_salt: Vec<u8>,
    jitter: Arc<dyn Jitter>,
    clock: Arc<dyn WallClock>,
}

impl Default for RetryBuilder {
    fn default() -> Self {
        Self {
            settings: Settings {
                max_attempts: 3,
                base_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(10),
                max_retry_after: Duration::from_secs(60),
                hint_jitter: Duration::from_secs(1),
                hint_fields: HintFields::default(),
                max_cooldown: Duration::ZERO,
                pacing: true,
                deadline: None,
                attempt_timeout: None,
                replay_limit: 64 * 1024,
                drain_limit: 64 * 1024,
                drain_timeout: Duration::from_millis(100),
                levels: super::trace::Levels::default(),
                idempotency_keys: false,
                quota: None,
                attempt_header: None,
                hooks: Hooks::default(),
                breaker: Some(Breaker {
                    failures: DEFAULT_BREAKER.0,
                    probe_every: DEFAULT_BREAKER.1,
                }),
                max_partitions: DEFAULT_MAX_PARTITIONS,
            },
            quota: None,
            quota_burst: 1,
            max_cooldown: None,
            budget: Some((0.2, 10)),
            shared_cooldown: true,
            attempt_header: None,
            attempt_header_first: false,
            policy: DefaultPolicy::new(),
            #[cfg(feature = "redis")]
            fleet: None,
            #[cfg(feature = "redis")]
            fleet_salt: Vec::new(),
            jitter: Arc::new(RandomJitter::new()),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Headers the attempt header may not be: the credential's, and the request's framing.
const RESERVED: [&str; 8] = [
    "authorization",
    "proxy-authorization",
    "x-infoplug-api-key",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "idempotency-key",
];

/// The share of a configured quota the layer paces at: a send that timer lateness pushes
/// past a fixed window's edge then finds room in the next window (a window's quota overrun
/// costs a 429 whose `Retry-After` rounds up to a whole second).
const QUOTA_HEADROOM: f64 = 0.99;

/// The largest `max_attempts` accepted.
pub const MAX_ATTEMPTS: u32 = 100;

/// The largest request body replay buffer accepted: 16 MiB.
pub const MAX_REPLAY_LIMIT: usize = 16 * 1024 * 1024;

impl RetryBuilder {
    /// Attempts in all, the first included (1 to 100; default 3). 1 means no retries.
    ///
    /// A 429 to an attempt the layer sent at a pacing slot (a throttled partition's rate,
    /// which it finds by now and then going past it when the server announces none) is the
    /// pacer's miss rather than the request's: up to `max_attempts - 1` of those are not
    /// counted, so a request against a refusing server makes at most `2 * max_attempts - 1`
    /// calls.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.settings.max_attempts = attempts;
        self
    }

    /// Full-jitter exponential backoff: the wait before retry *n* is uniform in
    /// `[0, min(max, base * 2^(n-1))]` (defaults 100 ms and 10 s; `base` > 0, `max` ≥ `base`).
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.settings.base_backoff = base;
        self.settings.max_backoff = max;
        self
    }

    /// The longest server hint honoured (default 60 s). A response asking for a longer wait is
    /// returned at once, with the hint in its [`RetryInfo`](super::RetryInfo).
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.settings.max_retry_after = max;
        self
    }

    /// At most how much later than the server asked a retry (or a request held by a gate)
    /// goes, at random, so one caller is not back on the exact second (default 1 s). With
    /// pacing on, the spread of a wait `w` is at most `max(w / 10, 100 ms)` within this bound:
    /// spreading a crowd is the pacer's job. With pacing off, it is at most `min(w, jitter)`.
    pub fn hint_jitter(mut self, jitter: Duration) -> Self {
        self.settings.hint_jitter = jitter;
        self
    }

    /// The longest a shared gate stays shut without a probe (default: `max_retry_after`).
    ///
    /// A 429 or 503 asking for a longer wait shuts the gate for this long; then one request
    /// at a time goes through as a probe. An answer without a hint reopens the gate, another
    /// hint shuts it again by the same rule. Requests that meet the gate meanwhile wait if
    /// what the server asked fits their `max_retry_after` and deadline, and otherwise fail at
    /// once with [`RetryError::CoolingDown`](super::RetryError::CoolingDown), which says how
    /// long the server asked for. No hint can shut an origin for longer.
    pub fn max_cooldown(mut self, max: Duration) -> Self {
        self.max_cooldown = Some(max);
        self
    }

    /// Whether a partition's requests are paced after a 429 (default: yes).
    ///
    /// After a 429, new requests to the same origin and credential are released at a rate
    /// learned from what the server admitted (or, with
    /// [`rate_limit_headers`](Self::rate_limit_headers), the quota its `RateLimit-Policy`
    /// states), instead of all at once when the wait ends; the rate is held, then recovers
    /// gradually, and pacing ends once it has doubled without another 429. Off: the server's
    /// wait is honoured, and a crowd comes back spread by [`hint_jitter`](Self::hint_jitter)
    /// alone. Nothing is paced, no timer touched and no lock taken while no partition is
    /// throttled.
    pub fn pacing(mut self, yes: bool) -> Self {
        self.settings.pacing = yes;
        self
    }

    /// Paces every partition (origin and credential) at a quota you know, `requests` per
    /// `per`, from the first request: no 429 is needed to find it (default: none).
    ///
    /// Requests are released one interval apart (`per / requests`, less 1%: a send that timer
    /// lateness pushes past a fixed window's edge then still finds room in the next window),
    /// which every kind of limiter of that quota admits (fixed or sliding window, token or
    /// leaky bucket); with
    /// [`quota_burst`](Self::quota_burst), up to that many go at once after an idle spell.
    /// A 429 still paces as without a quota (the server's word wins), never above it. With a
    /// fleet, the quota is the fleet's: one schedule in Redis for every process (the burst
    /// does not apply there). Requests wait for their slot under `max_retry_after` and their
    /// deadline like any other wait, and fail at once with [`RetryError::CoolingDown`]
    /// (status 429) when it is further off.
    ///
    /// `requests` from 1, `per` from 1 ms to 24 hours. With a quota every request takes the
    /// shared state's lock (to take its slot), which an unconfigured layer does only while
    /// throttled.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_infoplug::retry::RetryLayer;
    ///
    /// // The plan allows 120 requests a minute: two a second, none ahead of the pace.
    /// let layer = RetryLayer::builder().quota(120, Duration::from_secs(60)).build()?;
    /// assert!(RetryLayer::builder().quota(0, Duration::from_secs(1)).build().is_err());
    /// # Ok::<(), tower_infoplug::ConfigError>(())
    /// ```
    ///
    /// [`RetryError::CoolingDown`]: super::RetryError::CoolingDown
    pub fn quota(mut self, requests: u32, per: Duration) -> Self {
        self.quota = Some((requests, per));
        self
    }

    /// With [`quota`](Self::quota): how many requests may go at once after an idle spell
    /// (default 1: none ahead of the pace; at most the quota's `requests`). A fixed window
    /// or a token bucket admits a burst; a leaky bucket (nginx's `limit_req` without
    /// `burst`) does not.
    pub fn quota_burst(mut self, requests: u32) -> Self {
        self.quota_burst = requests;
        self
    }

    /// Reads `retry-after-ms` (milliseconds; a fraction rounds up) before `Retry-After`, as the
    /// more precise form of the same hint, under the same cap and floor rules (default: on).
    pub fn retry_after_ms(mut self, yes: bool) -> Self {
        self.settings.hint_fields.retry_after_ms = yes;
        self
    }

    /// Gives every POST and PATCH without an `Idempotency-Key` one (a random UUID), generated
    /// once and sent with every attempt (default: off). The decision table then retries it
    /// as it retries a GET: a 500, a 502, a 504, a 503 without a hint, a failure after
    /// sending. Only for an API that de-duplicates on the key; a caller's own key is kept.
    pub fn idempotency_keys(mut self, yes: bool) -> Self {
        self.settings.idempotency_keys = yes;
        self
    }

    /// The options of the decision table the layer is built with (default
    /// [`DefaultPolicy::new`]): [`retry_non_idempotent`](DefaultPolicy::retry_non_idempotent),
    /// [`should_retry_header`](DefaultPolicy::should_retry_header). For another policy
    /// altogether, see [`RetryLayer::with_policy`].
    pub fn policy(mut self, policy: DefaultPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Reads the IETF draft's `RateLimit` and `RateLimit-Policy` fields (default: off).
    ///
    /// On every healthy answer, what a policy counted in requests says is left (`r`) before
    /// its reset (`t`) becomes the partition's *allowance*: no more requests start before the
    /// reset than that, counting those already on their way (the draft: a client SHOULD NOT
    /// exceed `r` before `t`). Of several policies the one with the fewest left binds; one in
    /// another unit (`qu="content-bytes"`, `qu="concurrent-requests"`) is never read as a
    /// request count. When `RateLimit-Policy` states the policy's quota and window, the
    /// allowance refills to it at the reset. A 429's `t=` (or `reset=`, and `RateLimit-Reset`)
    /// is a wait when `Retry-After` is absent or invalid.
    ///
    /// The policies an answer names (and their `pk`) say which quota its endpoint counts
    /// against: requests to that path are then held only by what that quota's answers said
    /// (its 429s, its pace, its allowance), so a saturated search quota does not hold the
    /// rest of the API. A path ending in an id (a last segment with a digit) counts as its
    /// siblings did; a path not answered yet counts against the origin and credential as a
    /// whole. Not with [`quota`](Self::quota): a quota you configure is the key's.
    ///
    /// A policy counted in requests in flight (`RateLimit-Policy: "c";q=4;qu="concurrent-requests"`)
    /// is kept as such: from the first answer that states it (and for a minute after the last),
    /// a request of that partition takes one of `q` places to be sent and gives it back at its
    /// answer (or when dropped); the others wait for a place, first come, first served, no
    /// longer than `max_retry_after` or their deadline (then
    /// [`CoolingDown`](super::RetryError::CoolingDown), 429, unsent). A
    /// place is held until the response's head, so a server that counts a request until its
    /// body is read may still see one more. Not shared through a fleet.
    ///
    /// A refusal of a request sent under the allowance shows that the quota is not this
    /// client's alone: the allowance is then no longer refilled, the quota a 429 states is not
    /// taken as this client's rate, and the pace learned from the refusals holds too. With a
    /// [`RedisFleet`](super::RedisFleet) the allowance is the fleet's, kept in Redis, where
    /// each request that goes takes its ticket, so every process's requests on their way are
    /// counted.
    ///
    /// Off by default, though it costs a look-up of one header per answer when the server
    /// sends none (2.4% of the whole stack's success path, by instruction count): clients
    /// that spend one quota without sharing their state (processes on one key without a
    /// fleet) each take what is left as theirs, and in the goodput bench four such processes
    /// lost up to 1.4% of their requests to 429s where, not reading the fields, they lost
    /// none. Turn it on for one client per key, or for a fleet.
    pub fn rate_limit_headers(mut self, yes: bool) -> Self {
        self.settings.hint_fields.rate_limit = yes;
        self
    }

    /// Also reads `X-RateLimit-Reset` (seconds, or Unix seconds) when no other hint is there,
    /// and with `X-RateLimit-Remaining` on every healthy answer follows what is left as
    /// [`rate_limit_headers`](Self::rate_limit_headers) does (without a stated window, the
    /// allowance lapses at the reset rather than refilling). Default: off, as these fields'
    /// meaning varies between servers (some send the limit's window, not the time left).
    pub fn x_rate_limit_reset(mut self, yes: bool) -> Self {
        self.settings.hint_fields.x_rate_limit_reset = yes;
        self
    }

    /// Sends the attempt's number (`2` on the first retry, `3` on the next) in the header
    /// `name` on every retry, so the server can tell a retry from a new request (default:
    /// none; the first attempt goes without it unless
    /// [`attempt_header_on_first`](Self::attempt_header_on_first)). A name that is not a valid
    /// header name, or one that would overwrite the credential or the request's framing
    /// (`authorization`, `x-infoplug-api-key`, `host`, `content-length`, ...), is refused by
    /// [`build`](Self::build).
    ///
    /// ```
    /// use tower_infoplug::retry::RetryLayer;
    /// let layer = RetryLayer::builder().attempt_header("x-infoplug-attempt").build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_infoplug::ConfigError>(())
    /// ```
    pub fn attempt_header(mut self, name: &str) -> Self {
        self.attempt_header = Some(name.to_owned());
        self
    }

    /// With [`attempt_header`](Self::attempt_header): the first attempt carries it too (`1`)
    /// (default: no).
    pub fn attempt_header_on_first(mut self, yes: bool) -> Self {
        self.attempt_header_first = yes;
        self
    }

    /// The circuit breaker for failures the server gives no reason or wait for (a 5xx
    /// without a hint, a 503 without `Retry-After`, a transport error, a timeout): after
    /// `failures` of them in a row (none more than ten seconds after the last) on one origin
    /// and credential, the partition's breaker trips, and its requests fail at once with
    /// [`StopReason::CircuitOpen`] instead of joining the outage, while one probe goes every
    /// `probe_every`; the probe's answer closes it (or trips it again). Shared by every clone
    /// of the layer, and through the fleet when one is set. Default: on, 10 failures, a probe a
    /// second ([`DEFAULT_BREAKER`]); `failures` from 1 to 1000, `probe_every` from 1 ms (cut
    /// to `max_cooldown`, the longest any gate holds without a probe).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_infoplug::retry::RetryLayer;
    /// let layer = RetryLayer::builder()
    ///     .circuit_breaker(10, Duration::from_millis(500))
    ///     .build()?;
    /// # let _ = layer;
    /// assert!(RetryLayer::builder().circuit_breaker(0, Duration::from_secs(1)).build().is_err());
    /// # Ok::<(), tower_infoplug::ConfigError>(())
    /// ```
    ///
    /// [`StopReason::CircuitOpen`]: super::StopReason::CircuitOpen
    pub fn circuit_breaker(mut self, failures: u32, probe_every: Duration) -> Self {
        self.settings.breaker = Some(Breaker {
            failures,
            probe_every,
        });
        self
    }

    /// The most partitions (origin and credential) the shared state keeps at once (default
    /// [`DEFAULT_MAX_PARTITIONS`], 1 to 10 million). A partition is kept while something
    /// holds it back (a gate, pacing, a configured quota, a streak of failures); past the
    /// cap, the least recently throttled tenth is forgotten at once: their requests are no
    /// longer held (none is lost), and the server's next 429 throttles them again. A tenant
    /// per credential in one process is the case this bounds.
    pub fn max_partitions(mut self, partitions: usize) -> Self {
        self.settings.max_partitions = partitions;
        self
    }

    /// No circuit breaker: every request is sent whatever the last ones met (the retry
    /// budget still bounds the retries).
    pub fn no_circuit_breaker(mut self) -> Self {
        self.settings.breaker = None;
        self
    }

    /// Calls `hook` for every retry the layer schedules, with the attempt retried, what it
    /// met and how long the retry will wait (default: none). It runs on the request's task
    /// after every lock of the crate is released; keep it short (count, log, record), and
    /// do not panic in it: that panics the request's future.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use tower_infoplug::retry::RetryLayer;
    /// let retries = Arc::new(AtomicU32::new(0));
    /// let counted = Arc::clone(&retries);
    /// let layer = RetryLayer::builder()
    ///     .on_retry(move |event| {
    ///         counted.fetch_add(1, Ordering::Relaxed);
    ///         let _ = (event.attempt, event.after, event.wait);
    ///     })
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_infoplug::ConfigError>(())
    /// ```
    pub fn on_retry(mut self, hook: impl Fn(&RetryEvent<'_>) + Send + Sync + 'static) -> Self {
        self.settings.hooks.set_on_retry(hook);
        self
    }

    /// Calls `hook` when the layer gives a request up for a reason of its own (attempts or
    /// budget exhausted, a hint too long, a deadline too close, a shut gate, a body that
    /// cannot be sent again), with the request's [`RetryInfo`] (default: none). Not when
    /// the policy decided an outcome is final. Same rules as [`on_retry`](Self::on_retry).
    pub fn on_give_up(mut self, hook: impl Fn(&RetryInfo) + Send + Sync + 'static) -> Self {
        self.settings.hooks.set_on_give_up(hook);
        self
    }

    /// Calls `hook` when a 429 or 503 shuts its partition's gate or sets its pacing, or the
    /// partition's circuit breaker trips (`event.tripped`), with how long the gate is shut
    /// and the rate it is paced at (default: none): the moment a dashboard or an alert
    /// wants, once per throttling answer rather than once per request held. Same rules as
    /// [`on_retry`](Self::on_retry).
    ///
    /// ```
    /// use tower_infoplug::retry::RetryLayer;
    /// let layer = RetryLayer::builder()
    ///     .on_throttle(|event| {
    ///         if let Some(shut) = event.gated_for {
    ///             eprintln!("{} for {shut:?}", event.status);
    ///         }
    ///     })
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_infoplug::ConfigError>(())
    /// ```
    pub fn on_throttle(
        mut self,
        hook: impl Fn(&ThrottleEvent<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.settings.hooks.set_on_throttle(hook);
        self
    }

    /// Also reads a server's own reset headers, in this order, when no other hint is there
    /// (default: none): each with how it names its time, such as
    /// `&[("x-app-rate-limit-reset", ResetFormat::Seconds)]`. Read under the same rules as
    /// `Retry-After` (a floor for the wait, capped by `max_retry_after`; of several lines the
    /// largest valid one). A name that is not a valid header name matches nothing.
    ///
    /// ```
    /// use tower_infoplug::retry::{ResetFormat, RetryLayer};
    /// let layer = RetryLayer::builder()
    ///     .reset_headers(&[
    ///         ("x-app-rate-limit-reset", ResetFormat::Seconds),
    ///         ("x-quota-reset-at", ResetFormat::EpochSeconds),
    ///     ])
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_infoplug::ConfigError>(())
    /// ```
    pub fn reset_headers(mut self, headers: &'static [(&'static str, ResetFormat)]) -> Self {
        self.settings.hint_fields.resets = headers;
        self
    }

    /// An overall deadline per request, from the call: no wait that would cross it is
    /// started. A request's own [`Deadline`](super::Deadline) extension, if earlier, wins.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.settings.deadline = Some(deadline);
        self
    }

    /// A timeout per attempt; an attempt that takes longer is dropped and counts as a
    /// [`Failure::TimedOut`](super::Failure::TimedOut).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.settings.attempt_timeout = Some(timeout);
        self
    }

    /// The shared retry budget: `ratio` retries per recent success (0 to 100; default 0.2)
    /// plus `min_per_sec` retries a second regardless (default 10). `budget(0.0, 0)` allows no
    /// retries at all.
    pub fn budget(mut self, ratio: f64, min_per_sec: u32) -> Self {
        self.budget = Some((ratio, min_per_sec));
        self
    }

    /// No retry budget: only `max_attempts` bounds retries. Risky during an outage.
    pub fn no_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// How much of a request body may be copied to send it again (0 to 16 MiB; default
    /// 64 KiB), plus a few dozen bytes of bookkeeping per kept frame. `Bytes` data
    /// (`Full<Bytes>`, hyper's and axum's bodies) is kept by reference and costs only the
    /// bookkeeping, whatever its size. A body past the limit is sent once and not retried.
    pub fn replay_limit(mut self, bytes: usize) -> Self {
        self.settings.replay_limit = bytes;
        self
    }

    /// How much of a retried response's body is read (so the connection can be reused), and
    /// for how long at most past the wait (defaults 64 KiB and 100 ms).
    pub fn drain(mut self, bytes: usize, timeout: Duration) -> Self {
        self.settings.drain_limit = bytes;
        self.settings.drain_timeout = timeout;
        self
    }

    /// Whether a 429 or 503 with a hint closes a gate on its partition (origin and credential)
    /// for every request through this layer's clones, until the hint has passed or, for a
    /// longer hint, until [`max_cooldown`](Self::max_cooldown) and a probe (default: yes).
    pub fn shared_cooldown(mut self, yes: bool) -> Self {
        self.shared_cooldown = yes;
        self
    }

    /// The levels of the layer's `tracing` events: `retry` for a retry or a request held by a
    /// gate or the pacing (default DEBUG), `give_up` for a request returned or failed because
    /// retrying was not possible (attempts, budget, a hint too long, a deadline, a shut gate,
    /// a body that cannot be replayed) or a transport error returned after retries (default
    /// WARN). Each event carries the method, the URL without its query, the attempt, and the
    /// status, error code, wait and reason that apply.
    #[cfg(feature = "tracing")]
    pub fn trace_levels(mut self, retry: tracing::Level, give_up: tracing::Level) -> Self {
        self.settings.levels = super::trace::Levels { retry, give_up };
        self
    }

    /// Shares the gates, the pacing and the retry budget with every process whose layer has
    /// a fleet with the same prefix: see [`RedisFleet`](super::RedisFleet). Without one
    /// (the default), the layer's clones share them within the process.
    #[cfg(feature = "redis")]
    pub fn fleet(mut self, fleet: super::RedisFleet) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// A hash of the key the layer's requests are sent with by an auth layer below it, so
    /// fleets on different keys under one prefix keep apart (the preset sets it).
    #[cfg(feature = "redis")]
    #[cfg(feature = "auth")]
    pub(crate) fn fleet_credential(mut self, hash: &[u8]) -> Self {
        self.fleet_salt = hash.to_vec();
        self
    }

    /// The jitter source (default: [`RandomJitter`]).
    pub fn jitter(mut self, jitter: impl Jitter) -> Self {
        self.jitter = Arc::new(jitter);
        self
    }

    /// The wall clock HTTP-date hints are read against (default: the system clock).
    pub fn wall_clock(mut self, clock: impl WallClock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<RetryLayer, ConfigError> {
        let s = &self.settings;
        let out_of_range = |setting, expected: &str| {
            Err(ConfigError::OutOfRange {
                setting,
                expected: expected.to_owned(),
            })
        };
        if !(1..=MAX_ATTEMPTS).contains(&s.max_attempts) {
            return out_of_range("max_attempts", &format!("1 to {MAX_ATTEMPTS}"));
        }
        if s.base_backoff.is_zero() || s.max_backoff < s.base_backoff {
            return out_of_range("backoff", "a positive base and a max no smaller than it");
        }
        if s.max_retry_after.is_zero() {
            return out_of_range("max_retry_after", "a positive duration");
        }
        if self.max_cooldown.is_some_and(|d| d.is_zero()) {
            return out_of_range("max_cooldown", "a positive duration");
        }
        if s.deadline.is_some_and(|d| d.is_zero()) {
            return out_of_range("deadline", "a positive duration");
        }
        if s.attempt_timeout.is_some_and(|d| d.is_zero()) {
            return out_of_range("attempt_timeout", "a positive duration");
        }
        if s.replay_limit > MAX_REPLAY_LIMIT {
            return out_of_range("replay_limit", &format!("at most {MAX_REPLAY_LIMIT} bytes"));
        }
        if let Some((ratio, _)) = self.budget
            && !(ratio.is_finite() && (0.0..=100.0).contains(&ratio))
        {
            return out_of_range("budget", "a ratio from 0 to 100");
        }
        let quota = match self.quota {
            None if self.quota_burst != 1 => {
                return out_of_range("quota_burst", "a quota to go with it");
            }
            None => None,
            Some((requests, per)) => {
                if requests == 0 {
                    return out_of_range("quota", "at least 1 request");
                }
                if per < Duration::from_millis(1) || per > Duration::from_secs(24 * 3600) {
                    return out_of_range("quota", "a period from 1 ms to 24 hours");
                }
                if !(1..=requests).contains(&self.quota_burst) {
                    return out_of_range("quota_burst", "1 to the quota's requests");
                }
                Some(Quota {
                    rate: f64::from(requests) / per.as_secs_f64() * QUOTA_HEADROOM,
                    burst: self.quota_burst,
                })
            }
        };
        if !(1..=10_000_000).contains(&s.max_partitions) {
            return out_of_range("max_partitions", "1 to 10 million partitions");
        }
        let max_cooldown = self.max_cooldown.unwrap_or(s.max_retry_after);
        if let Some(breaker) = s.breaker {
            if !(1..=1000).contains(&breaker.failures) {
                return out_of_range("circuit_breaker", "1 to 1000 failures");
            }
            if breaker.probe_every < Duration::from_millis(1) {
                return out_of_range("circuit_breaker", "a probe interval of 1 ms or more");
            }
        }
        let attempt_header = match &self.attempt_header {
            None => None,
            Some(name) => {
                let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
                    return Err(ConfigError::InvalidHeaderName { name: name.clone() });
                };
                if RESERVED.contains(&header.as_str()) {
                    return out_of_range(
                        "attempt_header",
                        "a header that is neither the credential's nor the request's framing",
                    );
                }
                Some((header, self.attempt_header_first))
            }
        };
        let settings = Settings {
            max_cooldown,
            quota,
            attempt_header,
            ..self.settings
        };
        let local = State::new(
            &settings,
            self.shared_cooldown,
            self.budget.map(|(ratio, min)| Budget::new(ratio, min)),
        );
        #[cfg(feature = "redis")]
        let state = match &self.fleet {
            Some(fleet) => {
                let salt = [fleet.prefix().as_bytes(), b"\0", &self.fleet_salt].concat();
                Store::Fleet(super::fleet::FleetState::new(
                    local.with_stable_partitions(&salt),
                    fleet,
                    self.budget,
                    settings.hint_fields.follows(),
                ))
            }
            None => Store::Local(local),
        };
        #[cfg(not(feature = "redis"))]
        let state = Store::Local(local);
        Ok(RetryLayer {
            shared: Arc::new(Shared {
                state,
                settings,
                jitter: self.jitter,
                clock: self.clock,
            }),
            policy: self.policy,
        })
    }
}

impl fmt::Debug for RetryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBuilder")
            .field("settings", &self.settings)
            .field("max_cooldown", &self.max_cooldown)
            .field("quota", &self.quota)
            .field("quota_burst", &self.quota_burst)
            .field("budget", &self.budget)
            .field("shared_cooldown", &self.shared_cooldown)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(RetryBuilder::default().build().is_ok());
    }

    #[test]
    fn every_invalid_setting_is_a_build_time_error() {
        let ms = Duration::from_millis;
        let cases = [
            ("max_attempts", RetryLayer::builder().max_attempts(0)),
            ("max_attempts", RetryLayer::builder().max_attempts(101)),
            ("backoff", RetryLayer::builder().backoff(ms(0), ms(10))),
            ("backoff", RetryLayer::builder().backoff(ms(10), ms(5))),
            (
                "max_retry_after",
                RetryLayer::builder().max_retry_after(ms(0)),
            ),
            ("deadline", RetryLayer::builder().deadline(ms(0))),
            ("max_cooldown", RetryLayer::builder().max_cooldown(ms(0))),
            (
                "attempt_timeout",
                RetryLayer::builder().attempt_timeout(ms(0)),
            ),
            (
                "replay_limit",
                RetryLayer::builder().replay_limit(MAX_REPLAY_LIMIT + 1),
            ),
            ("budget", RetryLayer::builder().budget(-1.0, 0)),
            ("budget", RetryLayer::builder().budget(f64::NAN, 0)),
            ("budget", RetryLayer::builder().budget(101.0, 0)),
            ("quota", RetryLayer::builder().quota(0, ms(1000))),
            ("quota", RetryLayer::builder().quota(10, ms(0))),
            (
                "quota",
                RetryLayer::builder().quota(10, Duration::from_secs(86_401)),
            ),
            (
                "quota_burst",
                RetryLayer::builder().quota(10, ms(1000)).quota_burst(0),
            ),
            (
                "quota_burst",
                RetryLayer::builder().quota(10, ms(1000)).quota_burst(11),
            ),
            ("quota_burst", RetryLayer::builder().quota_burst(5)),
        ];
        for (setting, builder) in cases {
            match builder.build() {
                Err(ConfigError::OutOfRange { setting: got, .. }) => assert_eq!(got, setting),
                other => panic!("{setting}: {other:?}"),
            }
        }
        assert!(RetryLayer::builder().budget(0.0, 0).build().is_ok());
        assert!(RetryLayer::builder().replay_limit(0).build().is_ok());
    }
}
