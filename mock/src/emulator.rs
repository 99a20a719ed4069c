use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower_service::Service;

use crate::quota::{Limiter, Quota, Refusal, Verdict, ceil_secs};
use crate::reply::{MockBody, Reply};
use tower_infoplug::{ApiKey, X_INFOPLUG_API_KEY};

/// The key an [`Emulator`] accepts unless told otherwise.
pub const TEST_KEY: &str = "ip_test_emulator_key";

/// An in-process InfoPlug API, scriptable and recording. See the [crate docs](crate).
///
/// Clones share one state: script a reply on one clone, and the server or service built from
/// another answers with it.
///
/// ```
/// use http::Request;
/// use tower::ServiceExt;
/// use tower_infoplug_mock::{Emulator, Reply, TEST_KEY};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let api = Emulator::builder().credits(10).build();
/// api.push(Reply::rate_limited(2)); // the next request gets a 429, then the API answers
///
/// // In process, as a tower service...
/// let req = Request::get("/v1/profile").header("x-infoplug-api-key", TEST_KEY).body(String::new())?;
/// assert_eq!(api.clone().oneshot(req).await?.status(), 429);
///
/// // ... or on a loopback port, for a real HTTP client.
/// let server = api.serve().await?;
/// println!("try: curl -H 'x-infoplug-api-key: {TEST_KEY}' {}/v1/profile", server.base_url());
/// assert_eq!(api.request_count(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Emulator {
    shared: Arc<Shared>,
}

struct Shared {
    config: Config,
    state: Mutex<State>,
}

#[derive(Clone)]
struct Config {
    key: ApiKey,
    credits: u64,
    rate_limit: Option<Quota>,
    /// Quotas of their own: paths under the prefix, the policy's name, its quota.
    endpoints: Vec<(String, String, Quota)>,
    rate_limit_headers: bool,
    x_rate_limit_headers: bool,
    /// At most this many of a key's requests in flight at once.
    concurrency: Option<u32>,
    /// How long the API takes to answer a request it serves.
    latency: Duration,
    accept_authorization: bool,
}

struct State {
    script: VecDeque<Reply>,
    /// Answers every request the script does not, while set.
    outage: Option<Reply>,
    requests: Vec<Recorded>,
    credits: u64,
    /// Each key's use of each quota: by key and policy name.
    limiters: HashMap<(String, String), Limiter>,
    /// Each key's requests in flight, while a concurrency limit is set.
    in_flight: HashMap<String, u32>,
}

/// A request as the emulator received it.
///
/// Its `Debug` output shows header names but not the values of credential headers
/// (`x-infoplug-api-key`, `authorization`, cookies), so a failing assertion does not print a key.
#[derive(Clone)]
#[non_exhaustive]
pub struct Recorded {
    /// The method.
    pub method: Method,
    /// The request target (path and query; absolute when sent to an in-process service with
    /// an absolute URI).
    pub uri: Uri,
    /// The headers, as received.
    pub headers: HeaderMap,
    /// The body, as received.
    pub body: Bytes,
    /// Whether the body arrived whole (false when the client's stream failed).
    pub body_complete: bool,
    /// When the request arrived, on Tokio's clock (so paused-time tests can compare).
    pub at: Instant,
    /// The status it was answered with (scripted, or the API's behaviour).
    pub status: StatusCode,
}

impl Recorded {
    /// A header's value as text, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl fmt::Debug for Recorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Headers<'a>(&'a HeaderMap);
        impl fmt::Debug for Headers<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let secret = |name: &http::HeaderName| {
                    [
                        X_INFOPLUG_API_KEY,
                        AUTHORIZATION,
                        http::header::PROXY_AUTHORIZATION,
                        http::header::COOKIE,
                    ]
                    .contains(name)
                };
                f.debug_map()
                    .entries(self.0.iter().map(|(name, value)| {
                        let shown: &dyn fmt::Debug = if secret(name) || value.is_sensitive() {
                            &"<redacted>"
                        } else {
                            value
                        };
                        (name, shown)
                    }))
                    .finish()
            }
        }
        f.debug_struct("Recorded")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .field("headers", &Headers(&self.headers))
            .field("body_len", &self.body.len())
            .field("body_complete", &self.body_complete)
            .field("at", &self.at)
            .field("status", &self.status)
            .finish()
    }
}

/// Builds an [`Emulator`].
#[derive(Clone)]
#[must_use = "call `build` to get the emulator"]
pub struct EmulatorBuilder {
    config: Config,
}

impl EmulatorBuilder {
    /// The key the emulator accepts (default [`TEST_KEY`]).
    pub fn key(mut self, key: ApiKey) -> Self {
        self.config.key = key;
        self
    }

    /// How many successful requests the account can pay for (default 1000); each 200 costs
    /// one credit, and at zero the answer is 402 `insufficient_credits`.
    pub fn credits(mut self, credits: u64) -> Self {
        self.config.credits = credits;
        self
    }

    /// Admits at most `requests` per `window` (a fixed window starting at the first request
    /// after the previous one ended); the rest get 429 `rate_limit_exceeded` with a
    /// `Retry-After` of the seconds left in the window, rounded up. Default: 100 per second.
    /// The same as `quota(Quota::fixed_window(requests, window))`.
    pub fn rate_limit(self, requests: u32, window: Duration) -> Self {
        self.quota(Quota::fixed_window(requests, window))
    }

    /// The rate limit of each key: a fixed window, a sliding window or a token bucket (see
    /// [`Quota`]).
    pub fn quota(mut self, quota: Quota) -> Self {
        self.config.rate_limit = Some(quota);
        self
    }

    /// Paths under `prefix` (`"/v1/search"`) count against a quota of their own, named `name`
    /// in the `RateLimit` fields, instead of the key's [`quota`](Self::quota): one
    /// endpoint's use does not spend another's. Several may be given; the first whose prefix
    /// matches counts. A name that is not a plain token is shown as `"endpoint"`.
    pub fn endpoint_quota(mut self, prefix: &str, name: &str, quota: Quota) -> Self {
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let name = if plain && name != "default" {
            name
        } else {
            "endpoint"
        };
        self.config
            .endpoints
            .push((prefix.to_owned(), name.to_owned(), quota));
        self
    }

    /// At most `requests` of a key's requests in flight at once (from its arrival to its
    /// answer; see [`latency`](Self::latency)): one more is answered 429 at once, and with
    /// [`rate_limit_headers`](Self::rate_limit_headers) every answer names the limit as a
    /// policy counted in requests in flight (`"conc";q=<requests>;qu="concurrent-requests"`
    /// in `RateLimit-Policy`). Default: none.
    pub fn concurrency_limit(mut self, requests: u32) -> Self {
        self.config.concurrency = Some(requests);
        self
    }

    /// How long the API takes over a request it serves (a 200 or an error of its own; not a
    /// scripted reply, which has its own delay). Default: none.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.config.latency = latency;
        self
    }

    /// Whether answers carry the draft IETF `RateLimit` (`"default";r=<remaining>;t=<seconds>`)
    /// and `RateLimit-Policy` (`"default";q=<quota>;w=<seconds>`) fields (default: no).
    pub fn rate_limit_headers(mut self, yes: bool) -> Self {
        self.config.rate_limit_headers = yes;
        self
    }

    /// Whether answers carry the common `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
    /// `X-RateLimit-Reset` (seconds until the quota is whole again) fields (default: no).
    pub fn x_rate_limit_headers(mut self, yes: bool) -> Self {
        self.config.x_rate_limit_headers = yes;
        self
    }

    /// No rate limit.
    pub fn no_rate_limit(mut self) -> Self {
        self.config.rate_limit = None;
        self
    }

    /// Whether the key is also accepted in `Authorization` (raw or `Bearer`), as earlier
    /// versions of the API documented (default: yes).
    pub fn accept_authorization(mut self, yes: bool) -> Self {
        self.config.accept_authorization = yes;
        self
    }

    /// The emulator.
    pub fn build(self) -> Emulator {
        Emulator {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    script: VecDeque::new(),
                    outage: None,
                    requests: Vec::new(),
                    credits: self.config.credits,
                    limiters: HashMap::new(),
                    in_flight: HashMap::new(),
                }),
                config: self.config,
            }),
        }
    }
}

impl Emulator {
    /// An emulator with the defaults: key [`TEST_KEY`], 1000 credits, 100 requests a second.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Other settings.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder {
            config: Config {
                key: test_key(),
                credits: 1000,
                rate_limit: Some(Quota::fixed_window(100, Duration::from_secs(1))),
                endpoints: Vec::new(),
                rate_limit_headers: false,
                x_rate_limit_headers: false,
                concurrency: None,
                latency: Duration::ZERO,
                accept_authorization: true,
            },
        }
    }

    /// The key this emulator accepts.
    pub fn key(&self) -> &ApiKey {
        &self.shared.config.key
    }

    /// Queues `reply` as the answer to a coming request, after those already queued.
    pub fn push(&self, reply: Reply) {
        self.state().script.push_back(reply);
    }

    /// Queues several replies, in order.
    pub fn push_all(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state().script.extend(replies);
    }

    /// Answers every request with `reply` (after any queued replies) until called again with
    /// `None`: an outage, a proxy down, a long rate limit. Requests answered this way do not
    /// use credits or count against the rate limit.
    pub fn set_outage(&self, reply: Option<Reply>) {
        self.state().outage = reply;
    }

    /// How many scripted replies are still queued.
    pub fn pending_replies(&self) -> usize {
        self.state().script.len()
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Every request received since the last call, in order of arrival, and forgets them: a
    /// long-running test keeps the recording from growing.
    pub fn take_requests(&self) -> Vec<Recorded> {
        std::mem::take(&mut self.state().requests)
    }

    /// How many requests were received so far (since the last [`take_requests`](Self::take_requests)).
    pub fn request_count(&self) -> usize {
        self.state().requests.len()
    }

    /// Credits left.
    pub fn credits(&self) -> u64 {
        self.state().credits
    }

    /// Sets the credits left (to drive an account to 402 and back).
    pub fn set_credits(&self, credits: u64) {
        self.state().credits = credits;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while the lock was held leaves a state that is still consistent
        // (each update is a single assignment or push), so keep serving.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers one request: records it, then takes the next scripted reply or behaves as the
    /// API does.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<MockBody>
    where
        B: Body,
    {
        let at = Instant::now();
        let (parts, body) = req.into_parts();
        let (body, body_complete) = match body.collect().await {
            Ok(collected) => (collected.to_bytes(), true),
            Err(_) => (Bytes::new(), false),
        };
        let mut recorded = Recorded {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
            body_complete,
            at,
            status: StatusCode::OK,
        };
        let key = self.presented_key(&recorded.headers).map(str::to_owned);
        let (reply, served) = {
            let mut state = self.state();
            let reply = match (state.script.pop_front(), &state.outage) {
                (Some(reply), _) => (reply, None),
                (None, Some(outage)) => (outage.clone(), None),
                (None, None) => {
                    let (reply, counted) = self.behave(&mut state, &recorded, at);
                    (reply, Some(counted))
                }
            };
            recorded.status = reply.0.status;
            state.requests.push(recorded);
            reply
        };
        // In flight until answered, or until the caller gives up on the answer.
        let behaved = served.is_some();
        let _in_flight = served.flatten().map(|key| InFlight(self, key));
        if behaved && !self.shared.config.latency.is_zero() {
            tokio::time::sleep(self.shared.config.latency).await;
        }
        let (delay, res) = reply.into_response(key.as_deref());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        res
    }

    /// The key the request presents, from `x-infoplug-api-key` or (when accepted)
    /// `Authorization`.
    fn presented_key<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        if let Some(key) = headers.get(X_INFOPLUG_API_KEY) {
            return key.to_str().ok();
        }
        if !self.shared.config.accept_authorization {
            return None;
        }
        let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
        Some(bearer_token(value).unwrap_or_else(|| value.trim()))
    }

    /// The API's own behaviour, and the key whose request it counts in flight (the caller
    /// ends it once answered): the concurrency limit, then [`api`](Self::api).
    fn behave(&self, state: &mut State, req: &Recorded, now: Instant) -> (Reply, Option<String>) {
        let config = &self.shared.config;
        let key = (self.presented_key(&req.headers))
            .filter(|presented| config.key.matches(presented.as_bytes()));
        let (Some(limit), Some(key)) = (config.concurrency, key) else {
            return (self.api(state, req, now), None);
        };
        let in_flight = state.in_flight.get(key).copied().unwrap_or(0);
        // The limit as the draft names it, beside any other policy in the fields.
        let announce = |mut reply: Reply, left: u32| {
            if config.rate_limit_headers {
                for (name, field) in [
                    (
                        "ratelimit",
                        format!("\"conc\";r={left};t=0;qu=\"concurrent-requests\""),
                    ),
                    (
                        "ratelimit-policy",
                        format!("\"conc\";q={limit};qu=\"concurrent-requests\""),
                    ),
                ] {
                    let joined = match reply.headers.get(name).and_then(|v| v.to_str().ok()) {
                        Some(other) => format!("{other}, {field}"),
                        None => field,
                    };
                    reply = reply.header(name, &joined);
                }
            }
            reply
        };
        if in_flight >= limit {
            return (announce(Reply::status(429), 0), None);
        }
        let key = key.to_owned();
        state.in_flight.insert(key.clone(), in_flight + 1);
        let reply = self.api(state, req, now);
        (announce(reply, limit - in_flight - 1), Some(key))
    }

    /// One request of `key` is answered: it is no longer in flight.
    fn answered(&self, key: &str) {
        if let Some(n) = self.state().in_flight.get_mut(key) {
            *n = n.saturating_sub(1);
        }
    }

    /// The API's own behaviour: key, rate limit, parameters, credits, in that order.
    fn api(&self, state: &mut State, req: &Recorded, now: Instant) -> Reply {
        let config = &self.shared.config;
        let Some(key) = (self.presented_key(&req.headers))
            .filter(|presented| config.key.matches(presented.as_bytes()))
        else {
            return Reply::status(401);
        };
        let mut rate_limit = Vec::new();
        let path = req.uri.path();
        let counted = match config
            .endpoints
            .iter()
            .find(|(p, ..)| path.starts_with(p.as_str()))
        {
            Some((_, name, quota)) => Some((name.as_str(), quota)),
            None => config.rate_limit.as_ref().map(|quota| ("default", quota)),
        };
        if let Some((name, quota)) = counted {
            let id = (key.to_owned(), name.to_owned());
            let limiter = state.limiters.entry(id).or_insert_with(|| quota.limiter());
            let announce = |remaining: u32, reset: u64| {
                let mut fields = Vec::new();
                if config.rate_limit_headers {
                    let field = format!("\"{name}\";r={remaining};t={reset}");
                    fields.push(("ratelimit", field));
                    fields.push(("ratelimit-policy", quota.policy(name)));
                }
                if config.x_rate_limit_headers {
                    fields.push(("x-ratelimit-limit", quota.limit().0.to_string()));
                    fields.push(("x-ratelimit-remaining", remaining.to_string()));
                    fields.push(("x-ratelimit-reset", reset.to_string()));
                }
                fields
            };
            match limiter.admit(now) {
                Verdict::Refused { wait } => {
                    let secs = ceil_secs(wait).max(1);
                    let reply = match quota.refusal() {
                        Refusal::Exact => Reply::rate_limited(secs),
                        Refusal::Constant(secs) => Reply::rate_limited(secs),
                        Refusal::Bare => Reply::status(429),
                    };
                    return announce(0, secs)
                        .into_iter()
                        .fold(reply, |reply, (name, value)| reply.header(name, &value));
                }
                Verdict::Admitted { remaining, reset } => {
                    rate_limit = announce(remaining, ceil_secs(reset));
                }
            }
        }
        if let Some(reply) = validate(req) {
            return reply;
        }
        if state.credits == 0 {
            return Reply::status(402);
        }
        state.credits -= 1;
        let mut data = serde_json::Map::new();
        data.insert("method".into(), req.method.as_str().into());
        data.insert("path".into(), req.uri.path().into());
        data.insert("query".into(), req.uri.query().unwrap_or_default().into());
        data.insert("body_len".into(), req.body.len().into());
        let mut body = serde_json::Map::new();
        body.insert("data".into(), data.into());
        body.insert("credits_remaining".into(), state.credits.into());
        let reply = Reply::ok(serde_json::Value::Object(body).to_string())
            .header("x-credits-remaining", &state.credits.to_string());
        rate_limit
            .into_iter()
            .fold(reply, |reply, (name, value)| reply.header(name, &value))
    }
}

/// A request counted in flight, until dropped.
struct InFlight<'a>(&'a Emulator, String);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.answered(&self.1);
    }
}

/// The parameter rules of the API, as far as the emulator knows them.
fn validate(req: &Recorded) -> Option<Reply> {
    let path = req.uri.path();
    if !path.starts_with("/v1/") || path.split('/').any(|segment| segment == "missing") {
        return Some(Reply::error(
            404,
            "not_found",
            None,
            "Profile, company, or job doesn't exist",
        ));
    }
    let has_body = matches!(req.method, Method::POST | Method::PUT | Method::PATCH);
    if has_body && req.body.iter().all(u8::is_ascii_whitespace) {
        return Some(Reply::error(
            400,
            "payload_is_empty",
            None,
            "Include required JSON body in POST requests",
        ));
    }
    if has_body && serde_json::from_slice::<serde_json::Value>(&req.body).is_err() {
        return Some(Reply::error(
            400,
            "invalid_parameter",
            Some("body"),
            "The request body is not valid JSON",
        ));
    }
    for (name, value) in req
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
    {
        match name {
            "limit" if !value.parse::<u32>().is_ok_and(|n| (1..=2500).contains(&n)) => {
                return Some(Reply::error(
                    400,
                    "limit_out_of_range",
                    Some("limit"),
                    "Use a limit within 1-2500",
                ));
            }
            "linkedin_url" if !value.starts_with("https") => {
                return Some(Reply::error(
                    400,
                    "invalid_parameter",
                    Some("linkedin_url"),
                    "Missing or invalid linkedin_url",
                ));
            }
            _ => {}
        }
    }
    None
}

/// The emulator's default key.
fn test_key() -> ApiKey {
    match ApiKey::new(TEST_KEY) {
        Ok(key) => key,
        // A constant, checked by `the_test_key_is_valid`.
        Err(_) => unreachable!("TEST_KEY is a valid key"),
    }
}

impl Default for Emulator {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Emulator")
            .field("requests", &state.requests.len())
            .field("pending_replies", &state.script.len())
            .field("credits", &state.credits)
            .field("rate_limit", &self.shared.config.rate_limit)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for EmulatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorBuilder")
            .field("credits", &self.config.credits)
            .field("rate_limit", &self.config.rate_limit)
            .finish_non_exhaustive()
    }
}

/// The in-process service: the emulator answers requests without a network.
impl<B> Service<Request<B>> for Emulator
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    type Response = Response<MockBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<MockBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let emulator = self.clone();
        Box::pin(async move { Ok(emulator.handle(req).await) })
    }
}

/// The token of a `Bearer <token>` credential (the scheme in any case), trimmed; `None` for
/// any other credential.
fn bearer_token(credential: &str) -> Option<&str> {
    let scheme = credential.get(..7)?;
    scheme
        .eq_ignore_ascii_case("bearer ")
        .then(|| credential.get(7..).map(str::trim))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_key_is_valid() {
        assert!(ApiKey::new(TEST_KEY).is_ok());
        assert!(Emulator::new().key().matches(TEST_KEY.as_bytes()));
    }

    #[tokio::test]
    async fn recordings_keep_the_status_each_request_was_answered_with() {
        let api = Emulator::builder()
            .quota(Quota::fixed_window(1, Duration::from_secs(60)))
            .build();
        for _ in 0..2 {
            let req = Request::get("/v1/x")
                .header(X_INFOPLUG_API_KEY, TEST_KEY)
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap();
            api.handle(req).await;
        }
        api.push(Reply::status(503));
        let req = Request::get("/v1/x")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        api.handle(req).await;
        let statuses: Vec<u16> = api.requests().iter().map(|r| r.status.as_u16()).collect();
        assert_eq!(statuses, [200, 429, 503]);
    }

    #[test]
    fn recordings_never_print_credentials() {
        let mut headers = HeaderMap::new();
        headers.insert(X_INFOPLUG_API_KEY, "k-secret".parse().unwrap());
        headers.insert(AUTHORIZATION, "Bearer b-secret".parse().unwrap());
        headers.insert("x-trace", "visible".parse().unwrap());
        let recorded = Recorded {
            method: Method::GET,
            uri: Uri::from_static("/v1/x"),
            headers,
            body: Bytes::new(),
            body_complete: true,
            at: Instant::now(),
            status: StatusCode::OK,
        };
        let shown = format!("{recorded:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("visible"), "{shown}");
    }

    #[test]
    fn bearer_tokens_are_read_in_any_case() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bEaReR  abc "), Some("abc"));
        assert_eq!(bearer_token("Bearer "), Some(""));
        assert_eq!(bearer_token("abc"), None);
        assert_eq!(bearer_token("Basic abcdef"), None);
        assert_eq!(bearer_token("Beare\u{e9}x"), None);
    }
}
