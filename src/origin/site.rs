//! The origin a request URI names, as the retry layer's shared state keys it.

use std::fmt;
use std::sync::Arc;

use http::Uri;

use super::{default_port, parts};

/// The origin a request URI names, as a key of the retry layer's shared state: what
/// [`Origin`] compares (scheme, lower-cased host, port) in one allocation, without the
/// spellings an `Origin` keeps to match requests fast; a clone shares it (the state clones
/// a request's partition key several times while it plans and learns from an answer).
/// Displayed as an `Origin` is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Site {
    https: bool,
    host: Arc<str>,
    port: u16,
}

impl Site {
    /// `None` when the URI names no http(s) origin.
    pub(crate) fn of(uri: &Uri) -> Option<Self> {
        let (https, host, port) = parts(uri).ok()?;
        Some(Self {
            https,
            host: host.into(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Origin;

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
}
