//! Whether an attempt's outcome is worth another attempt: the decision table, as a policy.

use std::error::Error;
use std::fmt;
use std::io;
use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};

use crate::ApiError;

/// What happened to an attempt, as a policy sees it. See [`RetryPolicy`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Attempt<'a, E> {
    /// The request's method.
    pub method: &'a Method,
    /// The request's headers (to look for an `Idempotency-Key`, say).
    pub request_headers: &'a HeaderMap,
    /// Which attempt this was, from 1.
    pub number: u32,
    /// What came back.
    pub outcome: Outcome<'a, E>,
}

/// What an attempt came back with.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome<'a, E> {
    /// A response (any status).
    Response {
        /// Its status.
        status: StatusCode,
        /// Its headers.
        headers: &'a HeaderMap,
        /// Its classification, when a [`ClassifyLayer`](crate::ClassifyLayer) below ran.
        api_error: Option<&'a ApiError>,
        /// The server's wait hint (`Retry-After`, ...), if it gave a valid one.
        hint: Option<Duration>,
    },
    /// No response: the transport failed, or the attempt timed out.
    Failed {
        /// The transport's error; `None` when the retry layer's own attempt timeout fired.
        error: Option<&'a E>,
        /// How far the request got.
        failure: Failure,
    },
}

/// How far a failed attempt got, which decides whether re-sending it is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The request never reached the server (connection refused, no route): always safe to
    /// send again.
    NeverSent,
    /// The request may have reached the server (connection reset while waiting for the
    /// response, a body error): only safe for idempotent requests.
    ResponsePhase,
    /// The attempt took longer than its timeout: the server may be working on it.
    TimedOut,
    /// The transport refused the request before sending anything, for a reason sending it
    /// again cannot cure (an `https://` URL given to a plain-HTTP client, a URL without a
    /// host, a method or version the client does not support): never retried, whatever the
    /// method; the transport's error is returned at once.
    Unsendable,
}

impl Failure {
    /// Reads a transport error's source chain: connection refused (and the like) is
    /// [`NeverSent`](Failure::NeverSent), a timed-out I/O error is
    /// [`TimedOut`](Failure::TimedOut), anything else
    /// [`ResponsePhase`](Failure::ResponsePhase), the cautious answer.
    ///
    /// With the `http2` feature, an HTTP/2 stream the server refused (`RST_STREAM` with
    /// `REFUSED_STREAM`) or left unprocessed when it went away gracefully (`GOAWAY` with
    /// `NO_ERROR`) is [`NeverSent`](Failure::NeverSent) too: the protocol says the server did
    /// not process it. (A `GOAWAY` error does not carry the stream's id: a server that sends a
    /// graceful `GOAWAY` and then drops streams it had accepted breaks that promise, and such
    /// a stream is read as never sent as well.)
    ///
    /// With the `hyper` feature, a request hyper canceled before it was sent (its connection
    /// closed first) is [`NeverSent`](Failure::NeverSent).
    ///
    /// A request the transport refused before any I/O is [`Unsendable`](Failure::Unsendable):
    /// hyper-util's connector's URL errors (`invalid URL, scheme is not http`, `... scheme is
    /// missing`, `... host is missing`; its error type is private, its messages are not) and
    /// its client's `User...` errors (an unsupported method or version, a relative URL), and
    /// with the `reqwest` feature a `reqwest::Error` that is a builder error.
    ///
    /// Works with hyper-util's client errors, `std::io::Error`, `h2::Error`, and any error
    /// whose chain reaches one; for a boxed error use `Failure::of(&*boxed)`.
    pub fn of(error: &(dyn Error + 'static)) -> Self {
        let mut next = Some(error);
        while let Some(error) = next {
            if unsendable(error) {
                return Self::Unsendable;
            }
            #[cfg(feature = "hyper")]
            if error
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_canceled)
            {
                return Self::NeverSent;
            }
            #[cfg(feature = "http2")]
            if let Some(h2) = error.downcast_ref::<h2::Error>()
                && unprocessed(h2)
            {
                return Self::NeverSent;
            }
            if let Some(io) = error.downcast_ref::<io::Error>() {
                match io.kind() {
                    io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::AddrNotAvailable
                    | io::ErrorKind::NetworkUnreachable
                    | io::ErrorKind::HostUnreachable => return Self::NeverSent,
                    io::ErrorKind::TimedOut => return Self::TimedOut,
                    _ => {}
                }
            }
            next = error.source();
        }
        Self::ResponsePhase
    }

    /// Its name in events, metrics and spans (`error.type`).
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::NeverSent => "never_sent",
            Self::ResponsePhase => "response_phase",
            Self::TimedOut => "timed_out",
            Self::Unsendable => "unsendable",
        }
    }
}

/// Whether `error` (one link of a chain) is a transport's refusal to send the request at all.
fn unsendable(error: &(dyn Error + 'static)) -> bool {
    #[cfg(feature = "reqwest")]
    if error
        .downcast_ref::<reqwest::Error>()
        .is_some_and(reqwest::Error::is_builder)
    {
        return true;
    }
    // hyper-util's messages (on errors with no cause), read without formatting more than
    // their first bytes.
    const REFUSALS: [&str; 2] = ["invalid URL, ", "client error (User"];
    error.source().is_none() && REFUSALS.iter().any(|prefix| starts(error, prefix))
}

/// Whether `error`'s message starts with `prefix`; formatting stops once that is known.
fn starts(error: &dyn Error, prefix: &str) -> bool {
    /// What of the prefix is still to be matched.
    struct Prefix<'a>(&'a [u8]);
    impl fmt::Write for Prefix<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let n = s.len().min(self.0.len());
            if s.as_bytes().get(..n) != self.0.get(..n) {
                return Err(fmt::Error);
            }
            self.0 = self.0.get(n..).unwrap_or_default();
            // Matched in full, or not: either way, known.
            if self.0.is_empty() {
                Err(fmt::Error)
            } else {
                Ok(())
            }
        }
    }
    let mut rest = Prefix(prefix.as_bytes());
    let _ = fmt::write(&mut rest, format_args!("{error}"));
    rest.0.is_empty()
}

/// Whether an HTTP/2 error says the server did not process the stream.
#[cfg(feature = "http2")]
fn unprocessed(error: &h2::Error) -> bool {
    match error.reason() {
        Some(h2::Reason::REFUSED_STREAM) => error.is_reset() && error.is_remote(),
        Some(h2::Reason::NO_ERROR) => error.is_go_away() && error.is_remote(),
        _ => false,
    }
}

/// The retry decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send the request again (if attempts, budget, deadline and body allow).
    Retry,
    /// Return this outcome to the caller.
    Stop,
}

/// Decides whether an attempt's outcome is worth another attempt.
///
/// The retry layer enforces everything else (attempt count, budget, deadline, hint cap,
/// whether the body can be replayed); a policy only says whether retrying is *safe and
/// useful*. [`DefaultPolicy`] implements the contract's table; [`policy_fn`] adapts a closure.
pub trait RetryPolicy<E> {
    /// The decision for one attempt.
    fn decide(&self, attempt: &Attempt<'_, E>) -> Decision;

    /// How far a request that failed with `error` got. The default,
    /// [`ResponsePhase`](Failure::ResponsePhase), is the cautious answer; [`DefaultPolicy`]
    /// reads the error's source chain with [`Failure::of`].
    fn failure(&self, error: &E) -> Failure {
        let _ = error;
        Failure::ResponsePhase
    }
}

/// The decision table of the InfoPlug contract.
///
/// | outcome | GET, HEAD, PUT, DELETE, OPTIONS, TRACE | POST, PATCH, others |
/// |---|---|---|
/// | 429 | retry | retry (the server did not do the work) |
/// | 503 | retry | retry only with a wait hint, or opted in |
/// | 500, 502, 504 | retry | only opted in, or with an `Idempotency-Key` |
/// | never sent | retry | retry |
/// | response-phase error, timeout | retry | only opted in, or with an `Idempotency-Key` |
/// | anything else | stop | stop |
///
/// A 4xx or 5xx carrying `x-should-retry` overrides the status column, as the SDKs of the
/// servers that send it do: `false` stops (a 429 included), `true` retries any 4xx or 5xx (the
/// server vouches that repeating the request is safe). Turn that off with
/// [`should_retry_header`](Self::should_retry_header); read a vendor's verdict header as well
/// (`Stripe-Should-Retry`) with [`verdict_headers`](Self::verdict_headers).
///
/// The classified error body can only make it stricter, whatever the header says: an answer
/// whose body names a cause that sending again cannot cure (`insufficient_credits`,
/// `unauthorized`, `invalid_parameter`, `not_found`, ...) is not retried, a 429 included (see
/// [`ApiError::is_retryable`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultPolicy {
    retry_non_idempotent: bool,
    ignore_should_retry: bool,
    /// A pointer, not the list: the policy is copied into every request's future.
    verdicts: Option<&'static VerdictHeaders>,
}

/// Verdict headers a [`DefaultPolicy`] reads besides `x-should-retry`; see
/// [`DefaultPolicy::verdict_headers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerdictHeaders(&'static [&'static str]);

impl VerdictHeaders {
    /// Headers named `names` (any case; a name that is not a valid header name matches
    /// nothing).
    pub const fn new(names: &'static [&'static str]) -> Self {
        Self(names)
    }
}

impl DefaultPolicy {
    /// The table above.
    pub fn new() -> Self {
        Self::default()
    }

    /// Treats every request as idempotent: POST and PATCH are retried like GET. Only for
    /// endpoints that are safe to repeat (InfoPlug's look-ups are), or behind a
    /// de-duplicating server.
    pub fn retry_non_idempotent(mut self, yes: bool) -> Self {
        self.retry_non_idempotent = yes;
        self
    }

    /// Whether an error response's `x-should-retry: true|false` (and the
    /// [`verdict_headers`](Self::verdict_headers)) override the status table (default: yes).
    /// Other values, or lines that disagree, are ignored.
    pub fn should_retry_header(mut self, yes: bool) -> Self {
        self.ignore_should_retry = !yes;
        self
    }

    /// Also reads these headers as the server's verdict, like `x-should-retry` (`true` or
    /// `false`, any case): a vendor's own, such as `stripe-should-retry` (default: none).
    /// Every line of every verdict header must agree, or none counts. Off with
    /// `x-should-retry` ([`should_retry_header(false)`](Self::should_retry_header)).
    ///
    /// ```
    /// use tower_infoplug::retry::{DefaultPolicy, VerdictHeaders};
    /// const STRIPE: &VerdictHeaders = &VerdictHeaders::new(&["stripe-should-retry"]);
    /// let policy = DefaultPolicy::new().verdict_headers(STRIPE);
    /// # let _ = policy;
    /// ```
    pub fn verdict_headers(mut self, headers: &'static VerdictHeaders) -> Self {
        self.verdicts = Some(headers);
        self
    }

    /// The same table for transports whose error is a [`BoxError`](super::BoxError)
    /// (`tower::timeout`, a `Buffer` below the retry layer, a boxed custom transport): the
    /// boxed error's source chain is read as [`Failure::of`] reads any error, so a connection
    /// that was refused is still "never sent".
    pub fn boxed(self) -> BoxedPolicy {
        BoxedPolicy(self)
    }

    /// The table, for an attempt whose failure (if any) is already classified; for policies
    /// that wrap this one.
    pub fn decide_with<E>(&self, attempt: &Attempt<'_, E>) -> Decision {
        // Below 400 nothing is retried: the usual answer decides before anything is read.
        if let Outcome::Response { status, .. } = &attempt.outcome
            && status.as_u16() < 400
        {
            return Decision::Stop;
        }
        let repeatable = || {
            self.retry_non_idempotent
                || is_idempotent(attempt.method)
                || attempt.request_headers.contains_key("idempotency-key")
        };
        let retry = match &attempt.outcome {
            Outcome::Response {
                status,
                headers,
                api_error,
                hint,
            } => {
                // The body may only veto: a lasting cause is final whoever vouches, and then
                // no header is read.
                let vetoed = api_error.is_some_and(|e| e.names_lasting_cause());
                // Only an error answer is asked: a 2xx pays no header look-up.
                let verdict = (!vetoed && status.as_u16() >= 400 && !self.ignore_should_retry)
                    .then(|| {
                        super::hints::should_retry(headers, self.verdicts.map_or(&[], |v| v.0))
                    })
                    .flatten();
                !vetoed
                    && verdict.unwrap_or_else(|| match status.as_u16() {
                        429 => true,
                        503 => repeatable() || hint.is_some_and(|h| !h.is_zero()),
                        500 | 502 | 504 => repeatable(),
                        _ => false,
                    })
            }
            Outcome::Failed { failure, .. } => match failure {
                Failure::NeverSent => true,
                Failure::ResponsePhase | Failure::TimedOut => repeatable(),
                Failure::Unsendable => false,
            },
        };
        if retry {
            Decision::Retry
        } else {
            Decision::Stop
        }
    }
}

impl<E: Error + 'static> RetryPolicy<E> for DefaultPolicy {
    fn decide(&self, attempt: &Attempt<'_, E>) -> Decision {
        self.decide_with(attempt)
    }

    fn failure(&self, error: &E) -> Failure {
        Failure::of(error)
    }
}

/// [`DefaultPolicy`] for transports with boxed errors; see [`DefaultPolicy::boxed`].
///
/// ```
/// use tower_infoplug::retry::{DefaultPolicy, RetryLayer};
///
/// // Above `tower::timeout::Timeout` or a `Buffer`, whose errors are boxed.
/// let layer = RetryLayer::new().with_policy(DefaultPolicy::new().boxed());
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct BoxedPolicy(DefaultPolicy);

impl RetryPolicy<super::BoxError> for BoxedPolicy {
    fn decide(&self, attempt: &Attempt<'_, super::BoxError>) -> Decision {
        self.0.decide_with(attempt)
    }

    fn failure(&self, error: &super::BoxError) -> Failure {
        Failure::of(&**error)
    }
}

/// GET, HEAD, PUT, DELETE, OPTIONS and TRACE.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// A [`RetryPolicy`] from a closure; see [`policy_fn`].
#[derive(Clone, Copy)]
pub struct PolicyFn<F>(F);

/// Makes a policy of a closure, for example to retry a boxed-error transport with the default
/// table:
///
/// ```
/// use tower::BoxError;
/// use tower_infoplug::retry::{Attempt, DefaultPolicy, Decision, policy_fn};
///
/// let policy = policy_fn(|attempt: &Attempt<'_, BoxError>| {
///     // Never retry DELETEs, whatever the table says.
///     if attempt.method == http::Method::DELETE {
///         return Decision::Stop;
///     }
///     DefaultPolicy::new().decide_with(attempt)
/// });
/// # let _ = policy;
/// ```
pub fn policy_fn<F>(f: F) -> PolicyFn<F> {
    PolicyFn(f)
}

impl<F, E> RetryPolicy<E> for PolicyFn<F>
where
    F: Fn(&Attempt<'_, E>) -> Decision,
{
    fn decide(&self, attempt: &Attempt<'_, E>) -> Decision {
        (self.0)(attempt)
    }
}

impl<F> fmt::Debug for PolicyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PolicyFn")
    }
}

#[cfg(test)]
mod tests {
    use super::super::BoxError;
    use super::*;

    type E = io::Error;

    fn decide(method: &Method, outcome: Outcome<'_, E>) -> Decision {
        decide_with_headers(method, &HeaderMap::new(), outcome)
    }

    fn decide_with_headers(
        method: &Method,
        headers: &HeaderMap,
        outcome: Outcome<'_, E>,
    ) -> Decision {
        let attempt = Attempt {
            method,
            request_headers: headers,
            number: 1,
            outcome,
        };
        RetryPolicy::<E>::decide(&DefaultPolicy::new(), &attempt)
    }

    fn response(status: u16, hint: Option<u64>, api_error: Option<&ApiError>) -> Outcome<'_, E> {
        static EMPTY: std::sync::OnceLock<HeaderMap> = std::sync::OnceLock::new();
        Outcome::Response {
            status: StatusCode::from_u16(status).unwrap(),
            headers: EMPTY.get_or_init(HeaderMap::new),
            api_error,
            hint: hint.map(Duration::from_secs),
        }
    }

    fn failed(failure: Failure) -> Outcome<'static, E> {
        Outcome::Failed {
            error: None,
            failure,
        }
    }

    use Decision::{Retry, Stop};

    #[test]
    fn the_decision_table_per_status_and_method() {
        let idempotent = [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ];
        let unsafe_ = [Method::POST, Method::PATCH];
        for (status, hint, for_idempotent, for_unsafe) in [
            (429, None, Retry, Retry),
            (429, Some(2), Retry, Retry),
            (503, None, Retry, Stop),
            (503, Some(0), Retry, Stop),
            (503, Some(2), Retry, Retry),
            (500, None, Retry, Stop),
            (502, Some(1), Retry, Stop),
            (504, None, Retry, Stop),
            (400, None, Stop, Stop),
            (401, None, Stop, Stop),
            (402, None, Stop, Stop),
            (404, None, Stop, Stop),
            (409, None, Stop, Stop),
            (501, None, Stop, Stop),
            (505, None, Stop, Stop),
            (200, None, Stop, Stop),
        ] {
            for m in &idempotent {
                assert_eq!(
                    decide(m, response(status, hint, None)),
                    for_idempotent,
                    "{m} {status}"
                );
            }
            for m in &unsafe_ {
                assert_eq!(
                    decide(m, response(status, hint, None)),
                    for_unsafe,
                    "{m} {status}"
                );
            }
        }
    }

    #[test]
    fn x_should_retry_overrides_the_status_column_on_errors_only() {
        let credits = ApiError::from_body(
            StatusCode::CONFLICT,
            None,
            br#"{"message":"insufficient_credits"}"#,
        );
        let decide_as = |policy: DefaultPolicy, status: u16, verdict: &str, body| {
            let mut headers = HeaderMap::new();
            headers.insert("x-should-retry", verdict.parse().unwrap());
            let attempt = Attempt::<E> {
                method: &Method::POST,
                request_headers: &HeaderMap::new(),
                number: 1,
                outcome: Outcome::Response {
                    status: StatusCode::from_u16(status).unwrap(),
                    headers: &headers,
                    api_error: body,
                    hint: None,
                },
            };
            RetryPolicy::<E>::decide(&policy, &attempt)
        };
        let on = DefaultPolicy::new();
        let off = DefaultPolicy::new().should_retry_header(false);
        for (status, verdict, with_header, without) in [
            (429, "false", Stop, Retry),
            (409, "true", Retry, Stop),
            (500, "true", Retry, Stop),
            (400, "TRUE", Retry, Stop),
            (503, "false", Stop, Stop),
            (429, "maybe", Retry, Retry),
            (200, "true", Stop, Stop),
            (302, "true", Stop, Stop),
        ] {
            assert_eq!(
                decide_as(on, status, verdict, None),
                with_header,
                "{status} {verdict}"
            );
            assert_eq!(
                decide_as(off, status, verdict, None),
                without,
                "{status} {verdict} off"
            );
        }
        // The body's veto stands whatever the server's header says.
        assert_eq!(decide_as(on, 409, "true", Some(&credits)), Stop);
    }

    /// A vendor's verdict header is read like `x-should-retry` once named (its name in any
    /// case); before, only `x-should-retry` was, and a POST answered 500 with
    /// `Stripe-Should-Retry: true` was not retried.
    #[test]
    fn a_vendors_verdict_header_is_read_once_named() {
        let decide_as = |policy: DefaultPolicy, lines: &[(&'static str, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in lines {
                headers.append(*name, value.parse().unwrap());
            }
            let attempt = Attempt::<E> {
                method: &Method::POST,
                request_headers: &HeaderMap::new(),
                number: 1,
                outcome: Outcome::Response {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    headers: &headers,
                    api_error: None,
                    hint: None,
                },
            };
            RetryPolicy::<E>::decide(&policy, &attempt)
        };
        let stripe = [("stripe-should-retry", "true")];
        assert_eq!(decide_as(DefaultPolicy::new(), &stripe), Stop);
        const STRIPE: &VerdictHeaders = &VerdictHeaders::new(&["Stripe-Should-Retry"]);
        let named = DefaultPolicy::new().verdict_headers(STRIPE);
        assert_eq!(decide_as(named, &stripe), Retry);
        // Lines that disagree, across headers too, say nothing: the status column decides.
        let split = [("stripe-should-retry", "true"), ("x-should-retry", "false")];
        assert_eq!(decide_as(named, &split), Stop);
        let both = [("stripe-should-retry", "true"), ("x-should-retry", "TRUE")];
        assert_eq!(decide_as(named, &both), Retry);
        // A name that is no header name matches nothing; the switch turns them all off.
        const BAD: &VerdictHeaders = &VerdictHeaders::new(&["no such\nheader"]);
        let bad = DefaultPolicy::new().verdict_headers(BAD);
        assert_eq!(decide_as(bad, &stripe), Stop);
        assert_eq!(decide_as(named.should_retry_header(false), &stripe), Stop);
    }

    #[test]
    fn the_boxed_policy_keeps_every_row_of_the_table() {
        let boxed = DefaultPolicy::new().boxed();
        let refused: BoxError = Box::new(io::Error::from(io::ErrorKind::ConnectionRefused));
        let timed_out: BoxError = Box::new(io::Error::from(io::ErrorKind::TimedOut));
        let other: BoxError = "broken pipe".into();
        assert_eq!(boxed.failure(&refused), Failure::NeverSent);
        assert_eq!(boxed.failure(&timed_out), Failure::TimedOut);
        assert_eq!(boxed.failure(&other), Failure::ResponsePhase);
        for (status, get, post) in [(429, Retry, Retry), (500, Retry, Stop), (400, Stop, Stop)] {
            for (method, expected) in [(Method::GET, get), (Method::POST, post)] {
                let attempt = Attempt::<BoxError> {
                    method: &method,
                    request_headers: &HeaderMap::new(),
                    number: 1,
                    outcome: Outcome::Response {
                        status: StatusCode::from_u16(status).unwrap(),
                        headers: &HeaderMap::new(),
                        api_error: None,
                        hint: None,
                    },
                };
                assert_eq!(boxed.decide(&attempt), expected, "{method} {status}");
            }
        }
    }

    #[test]
    fn transport_failures_per_method() {
        for (failure, get, post) in [
            (Failure::NeverSent, Retry, Retry),
            (Failure::ResponsePhase, Retry, Stop),
            (Failure::TimedOut, Retry, Stop),
        ] {
            assert_eq!(decide(&Method::GET, failed(failure)), get);
            assert_eq!(decide(&Method::POST, failed(failure)), post);
        }
    }

    #[test]
    fn the_body_can_only_veto() {
        let credits = ApiError::from_body(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            br#"{"message":"insufficient_credits"}"#,
        );
        assert_eq!(
            decide(&Method::GET, response(429, Some(1), Some(&credits))),
            Stop
        );
        let unauthorized = ApiError::from_body(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            br#"{"message":"unauthorized"}"#,
        );
        assert_eq!(
            decide(&Method::GET, response(429, None, Some(&unauthorized))),
            Stop
        );
        // A 400 that claims to be rate limiting is still a 400.
        let liar = ApiError::from_body(
            StatusCode::BAD_REQUEST,
            None,
            br#"{"message":"rate_limit_exceeded"}"#,
        );
        assert_eq!(
            decide(&Method::GET, response(400, Some(1), Some(&liar))),
            Stop
        );
    }

    #[test]
    fn an_idempotency_key_or_the_opt_in_makes_post_repeatable() {
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", "abc".parse().unwrap());
        assert_eq!(
            decide_with_headers(&Method::POST, &headers, response(500, None, None)),
            Retry
        );
        assert_eq!(
            decide_with_headers(&Method::POST, &headers, failed(Failure::TimedOut)),
            Retry
        );
        let attempt = Attempt::<E> {
            method: &Method::POST,
            request_headers: &HeaderMap::new(),
            number: 1,
            outcome: response(502, None, None),
        };
        assert_eq!(
            DefaultPolicy::new()
                .retry_non_idempotent(true)
                .decide_with(&attempt),
            Retry
        );
    }

    /// Compiles only while `RetryPolicy` can be a trait object (`Box<dyn RetryPolicy<E>>`).
    #[test]
    fn the_policy_trait_stays_object_safe() {
        let policies: Vec<Box<dyn RetryPolicy<E>>> = vec![
            Box::new(DefaultPolicy::new()),
            Box::new(policy_fn(|_: &Attempt<'_, E>| Stop)),
        ];
        let attempt = Attempt {
            method: &Method::GET,
            request_headers: &HeaderMap::new(),
            number: 1,
            outcome: response(429, None, None),
        };
        let decisions: Vec<_> = policies.iter().map(|p| p.decide(&attempt)).collect();
        assert_eq!(decisions, [Retry, Stop]);
    }

    /// A client's error around the one it met, as hyper-util's wraps the connector's.
    #[derive(Debug)]
    struct Wrapper<E>(E);
    impl<E> fmt::Display for Wrapper<E> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("client error (Connect)")
        }
    }
    impl<E: Error + 'static> Error for Wrapper<E> {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn failures_are_read_from_the_error_chain() {
        let refused = Wrapper(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(Failure::of(&refused), Failure::NeverSent);
        let timeout = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(Failure::of(&timeout), Failure::TimedOut);
        let reset = Wrapper(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(Failure::of(&reset), Failure::ResponsePhase);
    }

    #[test]
    fn a_request_the_transport_refused_to_send_is_unsendable_and_final() {
        /// An error whose message is written in pieces, with an optional cause.
        #[derive(Debug)]
        struct Said(&'static [&'static str], Option<io::Error>);
        impl fmt::Display for Said {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.iter().try_for_each(|piece| f.write_str(piece))
            }
        }
        impl Error for Said {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                self.1.as_ref().map(|e| e as _)
            }
        }
        let unsendable = [
            Said(&["invalid URL, scheme is not http"], None),
            Said(&["invalid ", "URL, ", "host is missing"], None),
            Said(&["client error (UserUnsupportedVersion)"], None),
        ];
        for said in unsendable {
            let what = said.to_string();
            assert_eq!(Failure::of(&Wrapper(said)), Failure::Unsendable, "{what}");
        }
        // Only the message of an error with no cause: one with a cause says what it met.
        let caused = Said(
            &["invalid URL, but"],
            Some(io::Error::from(io::ErrorKind::ConnectionReset)),
        );
        assert_eq!(Failure::of(&caused), Failure::ResponsePhase);
        for other in [
            Said(&["invalid"], None),
            Said(&["invalid url, scheme is not http"], None),
            Said(&["dns error"], None),
            Said(&[], None),
        ] {
            assert_eq!(Failure::of(&other), Failure::ResponsePhase, "{other}");
        }
        let policy = DefaultPolicy::new();
        for method in [Method::GET, Method::POST] {
            let attempt = Attempt::<io::Error> {
                method: &method,
                request_headers: &HeaderMap::new(),
                number: 1,
                outcome: failed(Failure::Unsendable),
            };
            assert_eq!(policy.decide(&attempt), Stop, "{method}");
        }
    }
}
