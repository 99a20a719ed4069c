//! The API origin (scheme, host, port) and the comparison that scopes the key to it.

use std::fmt;

use http::uri::Scheme;
use http::{HeaderMap, Uri, header::HOST};

use crate::ConfigError;

/// The origin of an API: scheme, host and port, as browsers compare them.
///
/// The host is compared case-insensitively and without a trailing dot; a missing port means the
/// scheme's default (80 for `http`, 443 for `https`). Only `http` and `https` are accepted.
///
/// ```
/// use tower_infoplug::Origin;
///
/// let api = Origin::parse("https://API.infoplug.io/v1")?;
/// assert_eq!(api.to_string(), "https://api.infoplug.io");
/// assert_eq!(api, Origin::parse("https://api.infoplug.io:443")?);
/// assert_ne!(api, Origin::parse("http://api.infoplug.io")?);
/// # Ok::<(), tower_infoplug::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    https: bool,
    host: Box<str>,
    port: u16,
    /// `host:port`, and `host` alone when the port is the scheme's default: the spellings of
    /// this origin's authority that a request URI compares equal to without parsing.
    with_port: Box<str>,
    bare: Option<Box<str>>,
}

impl Origin {
    /// Parses the origin of a base URL such as `https://api.infoplug.io/v1` (the path is
    /// ignored).
    ///
    /// A URL without a scheme or host, with another scheme than `http`/`https`, or with
    /// credentials in it (`https://user:pass@host`) is rejected; the error repeats the input
    /// without its query and credentials.
    pub fn parse(base_url: &str) -> Result<Self, ConfigError> {
        let invalid = |reason| ConfigError::InvalidOrigin {
            input: shown(base_url),
            reason,
        };
        let uri: Uri = base_url
            .parse()
            .map_err(|_| invalid("it is not a valid absolute URL"))?;
        Self::from_uri(&uri).map_err(|err| match err {
            ConfigError::InvalidOrigin { reason, .. } => invalid(reason),
            other => other,
        })
    }

    /// The origin of an absolute URI.
    pub fn from_uri(uri: &Uri) -> Result<Self, ConfigError> {
        let (https, host, port) = parts(uri)?;
        Ok(Self {
            https,
            with_port: format!("{host}:{port}").into_boxed_str(),
            bare: (port == default_port(https)).then(|| host.clone().into_boxed_str()),
            host: host.into_boxed_str(),
            port,
        })
    }

    /// `"https"` or `"http"`.
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// The host, lower-cased, IPv6 addresses in brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, the scheme's default when the URL named none.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether a request for `uri` (with `headers`) goes to this origin.
    ///
    /// An absolute URI is compared by scheme, host and port. A URI without an authority (a
    /// relative request for a transport that adds the base URL itself) is compared by its
    /// `Host` header when it has one, and is taken as same-origin when it has none: such a
    /// request has no other destination than the one the transport is built for.
    #[cfg_attr(not(feature = "auth"), allow(dead_code))]
    pub(crate) fn matches(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        if let Some(authority) = uri.authority() {
            // `http::Scheme` compares its two standard schemes without looking at text, and
            // any spelling of them parses to those.
            let https = match uri.scheme() {
                Some(s) if *s == Scheme::HTTPS => true,
                Some(s) if *s == Scheme::HTTP => false,
                // Another scheme (ws, ftp, ...) is never the API.
                Some(_) => return false,
                // Authority form (`CONNECT host:port`): no scheme to compare.
                None => self.https,
            };
            if https != self.https {
                return false;
            }
            // The common case, without parsing: the authority is spelled as ours (exactly, which
            // is a memcmp, then ignoring case).
            let raw = authority.as_str();
            let spelled = |ours: &str| raw == ours || raw.eq_ignore_ascii_case(ours);
            // Without the port first: how a request for the default port is usually spelled.
            if self.bare.as_deref().is_some_and(spelled) || spelled(&self.with_port) {
                return true;
            }
            return self.host_is(authority.host())
                && authority.port_u16().unwrap_or(default_port(https)) == self.port;
        }
        let Some(host) = headers.get(HOST) else {
            return true;
        };
        let Some((host, port)) = host.to_str().ok().and_then(split_host_port) else {
            return false;
        };
        self.host_is(host) && port.unwrap_or(default_port(self.https)) == self.port
    }

    fn host_is(&self, host: &str) -> bool {
        normalise_host(host).eq_ignore_ascii_case(&self.host)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme(), self.host)?;
        if self.port != default_port(self.https) {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Origin({self})")
    }
}

impl std::str::FromStr for Origin {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The scheme (`true` for https), the lower-cased host and the port of a URI that names an
/// origin; the error says why it does not.
fn parts(uri: &Uri) -> Result<(bool, String, u16), ConfigError> {
    let invalid = |reason| ConfigError::InvalidOrigin {
        input: shown(&uri.to_string()),
        reason,
    };
    let https = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => true,
        Some(s) if s.eq_ignore_ascii_case("http") => false,
        Some(_) => return Err(invalid("only http and https URLs are supported")),
        None => return Err(invalid("it needs a scheme (https:// or http://)")),
    };
    let Some(authority) = uri.authority() else {
        return Err(invalid("it needs a host"));
    };
    if authority.as_str().contains('@') {
        return Err(invalid("it must not carry credentials"));
    }
    let host = normalise_host(authority.host());
    if host.is_empty() {
        return Err(invalid("it needs a host"));
    }
    let port = authority.port_u16().unwrap_or(default_port(https));
    Ok((https, host.to_ascii_lowercase(), port))
}

/// The origin a request URI names, as a key of the retry layer's shared state: what
/// [`Origin`] compares (scheme, lower-cased host, port) in one allocation, without the
/// spellings an `Origin` keeps to match requests fast. Displayed as an `Origin` is.
#[cfg_attr(not(feature = "retry"), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Site {
    https: bool,
    host: Box<str>,
    port: u16,
}

#[cfg_attr(not(feature = "retry"), allow(dead_code))]
impl Site {
    /// `None` when the URI names no http(s) origin.
    pub(crate) fn of(uri: &Uri) -> Option<Self> {
        let (https, host, port) = parts(uri).ok()?;
        Some(Self {
            https,
            host: host.into_boxed_str(),
            port,
        })
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.host
        )?;
        if self.port != default_port(self.https) {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

fn default_port(https: bool) -> u16 {
    if https { 443 } else { 80 }
}

/// `example.com.` and `example.com` are the same DNS name.
fn normalise_host(host: &str) -> &str {
    host.strip_suffix('.').unwrap_or(host)
}

/// Splits a `Host` header value into host and optional port; `None` when it is not one.
#[cfg_attr(not(feature = "auth"), allow(dead_code))]
fn split_host_port(value: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if value.starts_with('[') {
        // IPv6 literal: `[::1]` or `[::1]:8080`.
        let end = value.find(']')?;
        let (host, rest) = value.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match value.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    match port {
        None => Some((host, None)),
        Some(port) => Some((host, Some(port.parse().ok()?))),
    }
}

/// The input as an error may repeat it: no query or fragment, no credentials, bounded.
fn shown(input: &str) -> String {
    let cut = input.split(['?', '#']).next().unwrap_or_default();
    let start = cut.find("://").map_or(0, |i| i + 3);
    let shown = match cut.rfind('@') {
        Some(at) if at >= start => {
            format!(
                "{}***{}",
                cut.get(..start).unwrap_or_default(),
                cut.get(at..).unwrap_or_default()
            )
        }
        _ => cut.to_owned(),
    };
    shown.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(s: &str) -> Origin {
        Origin::parse(s).unwrap()
    }

    fn matches(origin: &Origin, uri: &str, host: Option<&str>) -> bool {
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(HOST, host.parse().unwrap());
        }
        origin.matches(&uri.parse().unwrap(), &headers)
    }

    #[test]
    fn a_site_is_named_and_compared_as_its_origin() {
        for uri in [
            "https://Api.InfoPlug.io/v1/x",
            "https://api.infoplug.io:443/v1",
            "https://api.infoplug.io.:8443/v1",
            "http://127.0.0.1:8080/x?q=1",
            "HTTP://[::1]/x",
        ] {
            let uri: Uri = uri.parse().unwrap();
            let site = Site::of(&uri).unwrap();
            assert_eq!(
                site.to_string(),
                Origin::from_uri(&uri).unwrap().to_string()
            );
        }
        let same =
            |a: &str, b: &str| Site::of(&a.parse().unwrap()) == Site::of(&b.parse().unwrap());
        assert!(same(
            "https://API.infoplug.io./a",
            "https://api.infoplug.io:443/b"
        ));
        assert!(!same(
            "https://api.infoplug.io/a",
            "http://api.infoplug.io/a"
        ));
        for uri in ["ftp://h/x", "https://user@h/x", "/v1/x"] {
            assert_eq!(Site::of(&uri.parse().unwrap()), None, "{uri}");
        }
    }

    #[test]
    fn default_ports_and_host_case_are_normalised() {
        let api = origin("https://Api.InfoPlug.io");
        assert_eq!(api.port(), 443);
        assert_eq!(api.host(), "api.infoplug.io");
        assert!(matches(&api, "https://api.infoplug.io:443/v1/x", None));
        assert!(matches(&api, "HTTPS://API.INFOPLUG.IO/v1/x", None));
        assert!(matches(&api, "https://api.infoplug.io./v1", None));
        assert_eq!(origin("http://h").port(), 80);
        assert_eq!(origin("http://h:8080/base").to_string(), "http://h:8080");
    }

    #[test]
    fn other_scheme_host_or_port_is_another_origin() {
        let api = origin("https://api.infoplug.io");
        assert!(!matches(&api, "http://api.infoplug.io/v1", None));
        assert!(!matches(&api, "https://api.infoplug.io:8443/v1", None));
        assert!(!matches(&api, "https://files.infoplug.io/v1", None));
        assert!(!matches(
            &api,
            "https://api.infoplug.io.evil.example/v1",
            None
        ));
        assert!(!matches(&api, "https://evil.example/api.infoplug.io", None));
        assert!(!matches(&api, "wss://api.infoplug.io/v1", None));
        // Userinfo does not change the host the request goes to.
        assert!(!matches(
            &api,
            "https://api.infoplug.io@evil.example/",
            None
        ));
    }

    #[test]
    fn relative_requests_are_judged_by_their_host_header() {
        let api = origin("http://127.0.0.1:3000");
        assert!(matches(&api, "/v1/profile", None));
        assert!(matches(&api, "/v1/profile", Some("127.0.0.1:3000")));
        assert!(!matches(&api, "/v1/profile", Some("127.0.0.1")));
        assert!(!matches(&api, "/v1/profile", Some("evil.example:3000")));
        assert!(!matches(&api, "/v1/profile", Some("127.0.0.1:notaport")));
        let v6 = origin("http://[::1]:3000");
        assert!(matches(&v6, "/x", Some("[::1]:3000")));
        assert!(!matches(&v6, "/x", Some("[::1]")));
        assert!(!matches(&v6, "/x", Some("[::1")));
    }

    #[test]
    fn unusable_base_urls_are_rejected_without_echoing_secrets() {
        for (input, reason) in [
            ("api.infoplug.io", "scheme"),
            ("ftp://api.infoplug.io", "only http"),
            ("/v1", "scheme"),
            ("not a url", "valid"),
            (
                "https://user:hunter2@api.infoplug.io/v1?key=s3cret",
                "credentials",
            ),
        ] {
            let err = Origin::parse(input).unwrap_err().to_string();
            assert!(err.contains(reason), "{input}: {err}");
            assert!(!err.contains("hunter2") && !err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn host_header_values_split_into_host_and_port() {
        assert_eq!(split_host_port("a:1"), Some(("a", Some(1))));
        assert_eq!(split_host_port("a"), Some(("a", None)));
        assert_eq!(split_host_port("[::1]:80"), Some(("[::1]", Some(80))));
        assert_eq!(split_host_port("[::1]x"), None);
        assert_eq!(split_host_port(":80"), None);
        assert_eq!(split_host_port("a:99999"), None);
    }
}
