//! Whether a request goes to the API's origin: the comparison that scopes the key to it (the
//! auth layer's).

use http::uri::Scheme;
use http::{HeaderMap, Uri, header::HOST};

use super::{Origin, default_port, normalise_host};

impl Origin {
    /// Whether a request for `uri` (with `headers`) goes to this origin.
    ///
    /// An absolute URI is compared by scheme, host and port. A URI without an authority (a
    /// relative request for a transport that adds the base URL itself) is compared by its
    /// `Host` header when it has one, and is taken as same-origin when it has none: such a
    /// request has no other destination than the one the transport is built for.
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

/// Splits a `Host` header value into host and optional port; `None` when it is not one.
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
    fn host_header_values_split_into_host_and_port() {
        assert_eq!(split_host_port("a:1"), Some(("a", Some(1))));
        assert_eq!(split_host_port("a"), Some(("a", None)));
        assert_eq!(split_host_port("[::1]:80"), Some(("[::1]", Some(80))));
        assert_eq!(split_host_port("[::1]x"), None);
        assert_eq!(split_host_port(":80"), None);
        assert_eq!(split_host_port("a:99999"), None);
    }
}
