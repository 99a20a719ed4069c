//! The secret parts of a credential, and where they occur.

use http::HeaderValue;

/// The secret parts of a credential header value, trimmed: the value itself, and the token
/// of a `Bearer <token>` value. Bytes, so an opaque (non-ASCII) credential has its secrets
/// too.
#[derive(Clone, Copy)]
pub(crate) struct Secrets<'a> {
    full: &'a [u8],
    token: Option<&'a [u8]>,
}

impl<'a> Secrets<'a> {
    pub(crate) fn of(credential: &'a HeaderValue) -> Self {
        let full = credential.as_bytes().trim_ascii();
        let token = full
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
            .and_then(|_| full.get(7..))
            .map(<[u8]>::trim_ascii);
        Self { full, token }
    }

    /// Each secret; never an empty one.
    #[cfg(feature = "classify")]
    pub(crate) fn iter(self) -> impl Iterator<Item = &'a [u8]> {
        [Some(self.full), self.token]
            .into_iter()
            .flatten()
            .filter(|secret| !secret.is_empty())
    }

    /// Whether any secret occurs in `text`.
    pub(crate) fn occur_in(self, text: &[u8]) -> bool {
        // The token is the shorter secret, and inside the full value: it is the one to find.
        match self.token {
            Some(token) if !token.is_empty() => occurs(text, token),
            _ => !self.full.is_empty() && occurs(text, self.full),
        }
    }
}

/// Whether `needle` occurs in `hay`: a plain scan that skips to candidates by their first
/// byte. For the short texts it is used on (header values, an error body's fields of a few
/// dozen bytes) it costs a fraction of setting up a linear-time searcher; `str::contains`
/// takes over past [`SCAN_LIMIT`] bytes, where the plain scan's worst case would grow with
/// the product of the lengths.
pub(crate) fn occurs(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    if hay.len() < needle.len() {
        return false;
    }
    if hay.len() > SCAN_LIMIT
        && let (Ok(hay), Ok(needle)) = (std::str::from_utf8(hay), std::str::from_utf8(needle))
    {
        return hay.contains(needle);
    }
    // Candidates are where the first byte is; `position` on a slice is a tight loop.
    let starts = hay.get(..=hay.len() - needle.len()).unwrap_or_default();
    let mut from = 0;
    while let Some(offset) = starts
        .get(from..)
        .and_then(|tail| tail.iter().position(|&b| b == first))
    {
        let at = from + offset;
        if hay.get(at + 1..at + needle.len()) == Some(rest) {
            return true;
        }
        from = at + 1;
    }
    false
}

/// See [`occurs`].
const SCAN_LIMIT: usize = 256;

/// Marks as sensitive every header whose value contains a secret part of `credential`, so a
/// server that echoes the key in a header (`www-authenticate`, say) does not get it printed
/// by whatever logs headers above (tower-http's `TraceLayer`).
#[cfg(feature = "auth")]
pub(crate) fn mark_echoes(headers: &mut http::HeaderMap, credential: &HeaderValue) {
    let secrets = Secrets::of(credential);
    for value in headers.values_mut() {
        if !value.is_sensitive() && secrets.occur_in(value.as_bytes()) {
            value.set_sensitive(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Short and long haystacks (either side of SCAN_LIMIT), over a small alphabet so that
        // matches and near-matches are common; non-UTF-8 bytes take the plain scan throughout.
        #[test]
        fn occurs_agrees_with_a_window_search(
            hay in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0xff)], 0..600),
            needle in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0xff)], 0..6),
        ) {
            let expected = needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle.as_slice());
            prop_assert_eq!(occurs(&hay, &needle), expected);
        }
    }

    #[test]
    fn occurs_finds_a_secret_at_either_end_and_nowhere_else() {
        assert!(occurs(b"k-123", b"k-123"));
        assert!(occurs(b"xk-123", b"k-123"));
        assert!(occurs(b"k-123x", b"k-123"));
        assert!(!occurs(b"k-12", b"k-123"));
        assert!(!occurs(b"k-12k-13", b"k-123"));
        let long = format!("{}k-123", "k-12".repeat(100));
        assert!(occurs(long.as_bytes(), b"k-123"));
        assert!(!occurs(long.as_bytes().get(..400).unwrap(), b"k-123"));
    }
}
