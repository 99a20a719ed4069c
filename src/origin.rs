//! The API origin (scheme, host, port) and the comparison that scopes the key to it.

use std::fmt;

use http::Uri;

use crate::ConfigError;

#[cfg(feature = "auth")]
mod scope;
#[cfg(feature = "retry")]
mod site;
#[cfg(feature = "retry")]
pub(crate) use site::Site;

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

fn default_port(https: bool) -> u16 {
    if https { 443 } else { 80 }
}

/// `example.com.` and `example.com` are the same DNS name.
fn normalise_host(host: &str) -> &str {
    host.strip_suffix('.').unwrap_or(host)
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
}
