//! The retry layer's `tracing` side: its request and attempt spans, its events' levels (set
//! at run time), and the target events show; nothing but types and no-ops without the
//! `tracing` feature.

/// The fleet's warnings (Redis lost, Redis back).
#[cfg(all(feature = "redis", feature = "tracing"))]
pub(crate) use tracing::warn as warn_event;

#[cfg(all(feature = "redis", not(feature = "tracing")))]
macro_rules! warn_event {
    ($($anything:tt)*) => {};
}
#[cfg(all(feature = "redis", not(feature = "tracing")))]
pub(crate) use warn_event;

/// An event at a level chosen at run time (`tracing`'s macros take a constant one).
#[cfg(feature = "tracing")]
macro_rules! event_at {
    ($level:expr, $($rest:tt)+) => {{
        let level: ::tracing::Level = $level;
        if level == ::tracing::Level::ERROR {
            ::tracing::event!(::tracing::Level::ERROR, $($rest)+)
        } else if level == ::tracing::Level::WARN {
            ::tracing::event!(::tracing::Level::WARN, $($rest)+)
        } else if level == ::tracing::Level::INFO {
            ::tracing::event!(::tracing::Level::INFO, $($rest)+)
        } else if level == ::tracing::Level::DEBUG {
            ::tracing::event!(::tracing::Level::DEBUG, $($rest)+)
        } else {
            ::tracing::event!(::tracing::Level::TRACE, $($rest)+)
        }
    }};
}
#[cfg(not(feature = "tracing"))]
macro_rules! event_at {
    ($level:expr, $($anything:tt)*) => {{
        let _: $crate::retry::trace::Level = $level;
    }};
}
pub(crate) use event_at;

/// A request's URI as events show it: scheme, host, port and path; never the user-info, the
/// query (which may carry a key or personal data) or the fragment.
#[cfg(feature = "tracing")]
pub(crate) struct Target<'a>(pub(crate) &'a http::Uri);

#[cfg(feature = "tracing")]
impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let uri = self.0;
        if let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) {
            write!(f, "{scheme}://{host}")?;
            if let Some(port) = uri.port_u16() {
                write!(f, ":{port}")?;
            }
        }
        f.write_str(uri.path())
    }
}

/// The spans of one request through the retry layer: `infoplug.request` (at DEBUG), with the
/// OpenTelemetry field `http.request.resend_count` recorded once an attempt is a resend, and
/// under it one `infoplug.attempt` CLIENT span per attempt sent (the HTTP client span of the
/// OpenTelemetry conventions: method, URL, resend count, status or `error.type`), from its
/// sending to its answer or failure, entered while the transport's future is polled (not
/// during its `call`: a guard alive across it costs a move of every future). Attempt spans
/// exist while the request's does.
///
/// A pointer wide, and no allocation, while no subscriber wants the request's span (a
/// `tracing::Span` inline would add 32 bytes to every response future); zero-sized without
/// the `tracing` feature.
#[derive(Debug)]
pub(crate) struct RequestSpan {
    #[cfg(feature = "tracing")]
    spans: Option<Box<Spans>>,
}

#[cfg(feature = "tracing")]
#[derive(Debug)]
struct Spans {
    request: tracing::Span,
    /// The attempt in flight's, or a disabled span between attempts. In a cell: the request's
    /// span stays entered (borrowed) while attempts open and close.
    attempt: std::cell::RefCell<tracing::Span>,
}

#[allow(unused_variables)] // without the `tracing` feature
impl RequestSpan {
    pub(crate) fn new(method: &http::Method, uri: &http::Uri) -> Self {
        #[cfg(feature = "tracing")]
        let span = tracing::debug_span!(
            "infoplug.request",
            http.request.method = %method,
            url = %Target(uri),
            http.request.resend_count = tracing::field::Empty,
        );
        Self {
            #[cfg(feature = "tracing")]
            spans: (!span.is_none()).then(|| {
                Box::new(Spans {
                    request: span,
                    attempt: std::cell::RefCell::new(tracing::Span::none()),
                })
            }),
        }
    }

    /// Enters the request's span until the guard is dropped, so events (the layers', the
    /// transport's) are attributed to it.
    #[inline]
    pub(crate) fn enter(&self) -> Entered<'_> {
        Entered {
            #[cfg(feature = "tracing")]
            _entered: self.spans.as_deref().map(|s| s.request.enter()),
            _span: std::marker::PhantomData,
        }
    }

    /// Whether a subscriber wants the spans: only then is an attempt's span entered.
    #[inline(always)]
    pub(crate) fn is_on(&self) -> bool {
        #[cfg(feature = "tracing")]
        return self.spans.is_some();
        #[cfg(not(feature = "tracing"))]
        false
    }

    /// Attempt `attempt` (from 1) of `method` to `uri` is about to be sent: its span opens.
    #[inline]
    pub(crate) fn sending(&self, attempt: u32, method: &http::Method, uri: &http::Uri) {
        #[cfg(feature = "tracing")]
        if let Some(spans) = &self.spans {
            spans.open(attempt, method, uri);
        }
    }

    /// Enters the attempt's span until the guard is dropped (see [`is_on`](Self::is_on)).
    pub(crate) fn enter_attempt(&self) -> AttemptEntered {
        AttemptEntered {
            #[cfg(feature = "tracing")]
            _entered: self
                .spans
                .as_deref()
                .map(|s| s.attempt.borrow().clone().entered()),
        }
    }

    /// The attempt was answered with `status`: its span records it (and, from 400 on, the
    /// status as its `error.type`) and closes.
    #[inline]
    pub(crate) fn answered(&self, status: http::StatusCode) {
        #[cfg(feature = "tracing")]
        if let Some(spans) = &self.spans {
            spans.close(Some(status), None);
        }
    }

    /// The attempt failed without an answer (`error_type`: what the failure is called): its
    /// span records it and closes.
    #[inline]
    pub(crate) fn failed(&self, error_type: &'static str) {
        #[cfg(feature = "tracing")]
        if let Some(spans) = &self.spans {
            spans.close(None, Some(error_type));
        }
    }
}

#[cfg(feature = "tracing")]
impl Spans {
    #[cold]
    fn open(&self, attempt: u32, method: &http::Method, uri: &http::Uri) {
        let resends = (attempt > 1).then(|| u64::from(attempt - 1));
        if let Some(resends) = resends {
            self.request.record("http.request.resend_count", resends);
        }
        *self.attempt.borrow_mut() = tracing::debug_span!(
            parent: &self.request,
            "infoplug.attempt",
            otel.kind = "client",
            http.request.method = %method,
            url.full = %Target(uri),
            http.request.resend_count = resends,
            http.response.status_code = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
        );
    }

    #[cold]
    fn close(&self, status: Option<http::StatusCode>, error_type: Option<&str>) {
        let attempt = self.attempt.replace(tracing::Span::none());
        if let Some(status) = status {
            attempt.record("http.response.status_code", status.as_u16());
            if status.as_u16() >= 400 {
                attempt.record("error.type", status.as_str());
            }
        }
        if let Some(error_type) = error_type {
            attempt.record("error.type", error_type);
        }
    }
}

/// The guard of [`RequestSpan::enter`].
pub(crate) struct Entered<'a> {
    #[cfg(feature = "tracing")]
    _entered: Option<tracing::span::Entered<'a>>,
    _span: std::marker::PhantomData<&'a RequestSpan>,
}

/// The guard of [`RequestSpan::enter_attempt`].
pub(crate) struct AttemptEntered {
    #[cfg(feature = "tracing")]
    _entered: Option<tracing::span::EnteredSpan>,
}

/// An event's level: `tracing`'s, or nothing without the feature.
#[cfg(feature = "tracing")]
pub(crate) type Level = tracing::Level;
/// (A unit struct rather than `()`: passed and bound like a level, it reads as one.)
#[cfg(not(feature = "tracing"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Level;

/// The levels of the retry layer's decision events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Levels {
    /// A retry, or a request held for a gate or pacing.
    pub(crate) retry: Level,
    /// A request returned or failed because retrying was not possible (attempts, budget, a
    /// hint too long, a deadline, a shut gate, a body that cannot be replayed), or a transport
    /// error returned after retries.
    pub(crate) give_up: Level,
}

impl Levels {
    /// The level of an ordinary outcome (a final answer, a single failed attempt).
    #[cfg(feature = "tracing")]
    pub(crate) const DEBUG: Level = tracing::Level::DEBUG;
    #[cfg(not(feature = "tracing"))]
    pub(crate) const DEBUG: Level = Level;
}

impl Default for Levels {
    fn default() -> Self {
        #[cfg(feature = "tracing")]
        return Self {
            retry: tracing::Level::DEBUG,
            give_up: tracing::Level::WARN,
        };
        #[cfg(not(feature = "tracing"))]
        Self {
            retry: Level,
            give_up: Level,
        }
    }
}

#[cfg(all(test, feature = "tracing"))]
mod tests {
    use super::*;

    #[test]
    fn the_target_never_shows_user_info_or_query() {
        let show = |uri: &str| Target(&uri.parse().unwrap()).to_string();
        assert_eq!(
            show("https://user:pw@api.test:8443/v1/x?key=secret#frag"),
            "https://api.test:8443/v1/x"
        );
        assert_eq!(show("http://api.test/v1/x"), "http://api.test/v1/x");
        assert_eq!(show("/v1/x?api_key=secret"), "/v1/x");
    }
}
