//! `tracing` events and spans when the `tracing` feature is on, nothing when it is off.

use std::fmt;

#[cfg(feature = "tracing")]
#[allow(unused_imports)] // unused in builds with no layer
pub(crate) use tracing::debug;

#[cfg(not(feature = "tracing"))]
#[allow(unused_macros)] // unused in builds with no layer
macro_rules! debug {
    ($($anything:tt)*) => {};
}
#[cfg(not(feature = "tracing"))]
#[allow(unused_imports)]
pub(crate) use debug;

#[cfg(feature = "tracing")]
#[allow(unused_imports)] // used by the fleet only
pub(crate) use tracing::warn as warn_event;

#[cfg(not(feature = "tracing"))]
#[allow(unused_macros)]
macro_rules! warn_event {
    ($($anything:tt)*) => {};
}
#[cfg(not(feature = "tracing"))]
#[allow(unused_imports)]
pub(crate) use warn_event;

/// An event at a level chosen at run time (`tracing`'s macros take a constant one).
#[cfg(feature = "tracing")]
#[allow(unused_macros)]
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
#[allow(unused_macros)]
macro_rules! event_at {
    ($level:expr, $($anything:tt)*) => {{
        let _: $crate::trace::Level = $level;
    }};
}
#[allow(unused_imports)]
pub(crate) use event_at;

/// A request's URI as events show it: scheme, host, port and path; never the user-info, the
/// query (which may carry a key or personal data) or the fragment.
#[allow(dead_code)] // unused in builds with no layer
pub(crate) struct Target<'a>(pub(crate) &'a http::Uri);

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

/// The span of one request through the retry layer (`infoplug.request`, at DEBUG), with the
/// OpenTelemetry field `http.request.resend_count` recorded once an attempt is a resend.
/// A pointer wide, and no allocation, while no subscriber wants the span (a `tracing::Span`
/// inline would add 32 bytes to every response future); zero-sized without the `tracing`
/// feature.
#[derive(Debug)]
#[cfg_attr(not(feature = "retry"), allow(dead_code))]
pub(crate) struct RequestSpan {
    #[cfg(feature = "tracing")]
    span: Option<Box<tracing::Span>>,
}

#[allow(unused_variables)] // without the `tracing` feature
#[cfg_attr(not(feature = "retry"), allow(dead_code))]
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
            span: (!span.is_none()).then(|| Box::new(span)),
        }
    }

    /// Enters the span until the guard is dropped, so events (the layers', the transport's)
    /// are attributed to it.
    pub(crate) fn enter(&self) -> Entered<'_> {
        Entered {
            #[cfg(feature = "tracing")]
            _entered: self.span.as_deref().map(tracing::Span::enter),
            _span: std::marker::PhantomData,
        }
    }

    /// Attempt `attempt` (from 1) is about to be sent.
    pub(crate) fn sending(&self, attempt: u32) {
        #[cfg(feature = "tracing")]
        if let Some(span) = &self.span
            && attempt > 1
        {
            span.record("http.request.resend_count", u64::from(attempt - 1));
        }
    }
}

/// The guard of [`RequestSpan::enter`].
#[cfg_attr(not(feature = "retry"), allow(dead_code))]
pub(crate) struct Entered<'a> {
    #[cfg(feature = "tracing")]
    _entered: Option<tracing::span::Entered<'a>>,
    _span: std::marker::PhantomData<&'a RequestSpan>,
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
#[cfg_attr(not(feature = "retry"), allow(dead_code))]
pub(crate) struct Levels {
    /// A retry, or a request held for a gate or pacing.
    pub(crate) retry: Level,
    /// A request returned or failed because retrying was not possible (attempts, budget, a
    /// hint too long, a deadline, a shut gate, a body that cannot be replayed), or a transport
    /// error returned after retries.
    pub(crate) give_up: Level,
}

#[cfg_attr(not(feature = "retry"), allow(dead_code))]
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

#[cfg(test)]
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
