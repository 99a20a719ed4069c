//! Helpers for the bodies that replay frames they already read (the classifier's and the
//! retry layer's).

use bytes::{Buf, Bytes};
use http_body::SizeHint;

/// Data read so far, kept as one contiguous run whatever the framing: the first chunk by
/// reference, and from the second on copied into one buffer. Memory follows the number of
/// bytes, not the number of frames (a body sent a byte a frame costs what one frame of the
/// same bytes costs, not a frame's bookkeeping per byte, nor the transport's read buffers
/// kept alive by one-byte slices).
#[derive(Debug, Default)]
pub(crate) enum Coalesced {
    #[default]
    Empty,
    One(Bytes),
    Many(Vec<u8>),
}

impl Coalesced {
    /// Appends `chunk`; the buffer grows by doubling but never past `most` bytes of capacity
    /// (or what it holds, if more).
    pub(crate) fn push(&mut self, chunk: Bytes, most: usize) {
        if chunk.is_empty() {
            return;
        }
        let mut all = match std::mem::take(self) {
            Self::Empty => {
                *self = Self::One(chunk);
                return;
            }
            Self::One(first) => first.to_vec(),
            Self::Many(all) => all,
        };
        let needed = all.len().saturating_add(chunk.len());
        if needed > all.capacity() {
            let grown = all
                .capacity()
                .saturating_mul(2)
                .max(needed)
                .min(most.max(needed));
            all.reserve_exact(grown - all.len());
        }
        all.extend_from_slice(&chunk);
        *self = Self::Many(all);
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Self::Empty => &[],
            Self::One(bytes) => bytes,
            Self::Many(all) => all,
        }
    }

    /// The data, if there is any.
    pub(crate) fn into_bytes(self) -> Option<Bytes> {
        match self {
            Self::Empty => None,
            Self::One(bytes) => Some(bytes),
            Self::Many(all) => Some(Bytes::from(all)),
        }
    }
}

/// A body's data as `Bytes`: a move when it already is `Bytes`, a copy otherwise.
pub(crate) fn into_bytes<D: Buf>(mut data: D) -> Bytes {
    data.copy_to_bytes(data.remaining())
}

/// A body's data as `Bytes`, and whether that took no copy: `true` when the data already was
/// `Bytes` (or another type whose `copy_to_bytes` shares its storage), so holding on to it
/// costs a reference count, not memory.
#[cfg(feature = "retry")]
pub(crate) fn into_bytes_shared<D: Buf>(mut data: D) -> (Bytes, bool) {
    let len = data.remaining();
    let chunk = data.chunk();
    let contiguous = chunk.len() == len;
    let start = chunk.as_ptr();
    let bytes = data.copy_to_bytes(len);
    // The source is still alive here, so a copy can never start at its address.
    let shared = len > 0 && contiguous && bytes.as_ptr() == start;
    (bytes, shared)
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
    fn coalesced_data_is_the_chunks_in_order_and_one_chunk_is_not_copied() {
        let mut data = Coalesced::default();
        assert_eq!(data.as_slice(), b"");
        let first = Bytes::from_static(b"ab");
        data.push(first.clone(), 8);
        assert!(matches!(&data, Coalesced::One(b) if b.as_ptr() == first.as_ptr()));
        data.push(Bytes::new(), 8);
        data.push(Bytes::from_static(b"c"), 8);
        data.push(Bytes::from_static(b"de"), 8);
        assert_eq!(data.as_slice(), b"abcde");
        assert_eq!(data.into_bytes(), Some(Bytes::from_static(b"abcde")));
        assert_eq!(Coalesced::default().into_bytes(), None);
    }

    #[test]
    fn a_byte_a_frame_never_grows_the_buffer_past_the_bound() {
        let mut data = Coalesced::default();
        for _ in 0..1000 {
            data.push(Bytes::from_static(b"x"), 1000);
            if let Coalesced::Many(all) = &data {
                assert!(all.capacity() <= 1000, "{}", all.capacity());
            }
        }
        assert_eq!(data.as_slice().len(), 1000);
    }

    #[test]
    #[cfg(feature = "retry")]
    fn bytes_are_taken_by_reference_and_other_data_is_copied() {
        let bytes = Bytes::from(vec![7u8; 100]);
        let (taken, shared) = into_bytes_shared(bytes.clone());
        assert!(shared && taken.as_ptr() == bytes.as_ptr());
        let (copied, shared) = into_bytes_shared(&b"static slice"[..]);
        assert!(!shared);
        assert_eq!(copied, &b"static slice"[..]);
        let chained = Buf::chain(&b"ab"[..], &b"cd"[..]);
        let (joined, shared) = into_bytes_shared(chained);
        assert!(!shared);
        assert_eq!(joined, &b"abcd"[..]);
        assert!(!into_bytes_shared(Bytes::new()).1);
    }

    #[test]
    fn buffered_bytes_shift_both_bounds() {
        assert_eq!(hint_plus(&SizeHint::with_exact(5), 3).exact(), Some(8));
        let open = hint_plus(&SizeHint::new(), 3);
        assert_eq!((open.lower(), open.upper()), (3, None));
        let saturated = hint_plus(&SizeHint::with_exact(u64::MAX), 1);
        assert_eq!(saturated.exact(), Some(u64::MAX));
    }
}
