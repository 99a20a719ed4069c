//! Helpers for the bodies that replay frames they already read (the classifier's and the
//! retry layer's).

use bytes::{Buf, Bytes};
use http_body::SizeHint;

/// A body's data as `Bytes`: a move when it already is `Bytes`, a copy otherwise.
pub(crate) fn into_bytes<D: Buf>(mut data: D) -> Bytes {
    data.copy_to_bytes(data.remaining())
}

/// `rest`, plus `buffered` bytes that will come before it.
pub(crate) fn hint_plus(rest: &SizeHint, buffered: u64) -> SizeHint {
    let mut hint = SizeHint::new();
    hint.set_lower(rest.lower().saturating_add(buffered));
    if let Some(upper) = rest.upper() {
        hint.set_upper(upper.saturating_add(buffered));
    }
    hint
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_bytes_shift_both_bounds() {
        assert_eq!(hint_plus(&SizeHint::with_exact(5), 3).exact(), Some(8));
        let open = hint_plus(&SizeHint::new(), 3);
        assert_eq!((open.lower(), open.upper()), (3, None));
        let saturated = hint_plus(&SizeHint::with_exact(u64::MAX), 1);
        assert_eq!(saturated.exact(), Some(u64::MAX));
    }
}
