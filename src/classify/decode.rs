//! Compressed error bodies: `Content-Encoding: gzip`, `deflate` and `br`, decoded for the
//! parser only, and bounded in what they decode to.
//!
//! The body handed on stays as the transport produced it (still encoded); only the copy the
//! parser reads is decoded. Decoding stops one byte past the classifier's limit, so a
//! decompression bomb costs that much and ends as [`TooLarge`](Decoded::TooLarge). The
//! decoders are compiled in with the `decompress` feature; without it, or for a coding this
//! crate does not know, the body is reported as [`BodyIssue::Encoded`](super::BodyIssue) and
//! not parsed.

use http::HeaderMap;
use http::header::CONTENT_ENCODING;

/// A body after its content codings were undone.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decoded {
    /// The decoded bytes, at most the limit.
    Body(Vec<u8>),
    /// It decodes to more than the limit.
    #[cfg_attr(not(feature = "decompress"), allow(dead_code))]
    TooLarge,
    /// It is not valid data of its coding.
    #[cfg_attr(not(feature = "decompress"), allow(dead_code))]
    Invalid,
    /// A coding this build cannot undo.
    Unsupported(String),
}

/// The codings of a response, in the order they were applied; empty when there are none (or
/// only `identity`).
pub(super) fn codings(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|coding| coding.trim().to_ascii_lowercase())
        .filter(|coding| !coding.is_empty() && coding != "identity")
        .collect()
}

/// Undoes `codings` (last applied first), producing at most `limit` bytes.
pub(super) fn decode(codings: &[String], raw: &[u8], limit: usize) -> Decoded {
    let mut body = raw.to_vec();
    for coding in codings.iter().rev() {
        body = match undo(coding, &body, limit) {
            Decoded::Body(decoded) => decoded,
            other => return other,
        };
    }
    Decoded::Body(body)
}

#[cfg(feature = "decompress")]
fn undo(coding: &str, data: &[u8], limit: usize) -> Decoded {
    use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};
    match coding {
        "gzip" | "x-gzip" => bounded(MultiGzDecoder::new(data), limit),
        // HTTP's `deflate` is the zlib format; some servers send raw deflate instead.
        "deflate" => match bounded(ZlibDecoder::new(data), limit) {
            Decoded::Invalid => bounded(DeflateDecoder::new(data), limit),
            decoded => decoded,
        },
        "br" => bounded(brotli_decompressor::Decompressor::new(data, 4096), limit),
        other => Decoded::Unsupported(other.to_owned()),
    }
}

#[cfg(not(feature = "decompress"))]
fn undo(coding: &str, _data: &[u8], _limit: usize) -> Decoded {
    Decoded::Unsupported(coding.to_owned())
}

/// Reads `decoder` to its end, or to one byte past `limit`.
#[cfg(feature = "decompress")]
fn bounded(decoder: impl std::io::Read, limit: usize) -> Decoded {
    use std::io::Read;
    let mut out = Vec::new();
    let most = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    match decoder.take(most).read_to_end(&mut out) {
        Ok(_) if out.len() > limit => Decoded::TooLarge,
        Ok(_) => Decoded::Body(out),
        Err(_) => Decoded::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(CONTENT_ENCODING, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn codings_are_read_in_order_without_identity() {
        assert!(codings(&headers(&[])).is_empty());
        assert!(codings(&headers(&["identity"])).is_empty());
        assert_eq!(codings(&headers(&["GZIP"])), ["gzip"]);
        assert_eq!(
            codings(&headers(&["deflate, br", "x-custom"])),
            ["deflate", "br", "x-custom"]
        );
    }

    #[test]
    fn an_unknown_coding_is_reported_not_guessed() {
        assert_eq!(
            decode(&["zstd".to_owned()], b"whatever", 100),
            Decoded::Unsupported("zstd".to_owned())
        );
    }

    #[cfg(feature = "decompress")]
    mod with_decoders {
        use super::super::*;
        use std::io::Write;

        const BODY: &[u8] = br#"{"message":"insufficient_credits"}"#;

        fn gzip(data: &[u8]) -> Vec<u8> {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        }

        fn zlib(data: &[u8]) -> Vec<u8> {
            let mut encoder =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        }

        fn raw_deflate(data: &[u8]) -> Vec<u8> {
            let mut encoder =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        }

        fn brotli(data: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let mut encoder = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            encoder.write_all(data).unwrap();
            drop(encoder);
            out
        }

        fn one(coding: &str) -> Vec<String> {
            vec![coding.to_owned()]
        }

        #[test]
        fn every_coding_decodes_to_the_body() {
            for (coding, encoded) in [
                ("gzip", gzip(BODY)),
                ("x-gzip", gzip(BODY)),
                ("deflate", zlib(BODY)),
                ("deflate", raw_deflate(BODY)),
                ("br", brotli(BODY)),
            ] {
                assert_eq!(
                    decode(&one(coding), &encoded, 1024),
                    Decoded::Body(BODY.to_vec()),
                    "{coding}"
                );
            }
            // Codings applied in turn are undone in reverse.
            let both = brotli(&gzip(BODY));
            assert_eq!(
                decode(&["gzip".to_owned(), "br".to_owned()], &both, 1024),
                Decoded::Body(BODY.to_vec())
            );
        }

        #[test]
        fn a_bomb_ends_as_too_large_after_limit_plus_one_bytes() {
            let bomb = gzip(&vec![b' '; 10 * 1024 * 1024]);
            assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
            assert_eq!(decode(&one("gzip"), &bomb, 64 * 1024), Decoded::TooLarge);
            assert_eq!(
                decode(&one("br"), &brotli(&[b'x'; 5000]), 4999),
                Decoded::TooLarge
            );
        }

        #[test]
        fn garbage_is_invalid_not_a_panic() {
            for coding in ["gzip", "deflate", "br"] {
                assert_eq!(
                    decode(&one(coding), b"\x00\x01 not compressed", 1024),
                    Decoded::Invalid,
                    "{coding}"
                );
            }
        }
    }
}
