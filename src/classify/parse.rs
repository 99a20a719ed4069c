//! Error-body parsing: a pure function of status, content type and bytes.

use std::borrow::Cow;
use std::fmt;

use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{ApiError, BodyIssue, ErrorCode};

/// How reading a body for classification ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome<'a> {
    /// The whole body, as read.
    Complete(&'a [u8]),
    /// The body is longer than the limit.
    TooLarge,
    /// The stream failed before the end.
    Incomplete,
    /// The deadline passed before the end.
    TimedOut,
    /// The body was read, but its content coding could not be undone (corrupt data).
    Malformed,
    /// The body was read, but it is compressed with this coding, which cannot be undone here.
    Encoded(&'a str),
}

/// Whether a response with `status` is classified: client and server errors.
pub(crate) fn is_classified(status: StatusCode) -> bool {
    status.is_client_error() || status.is_server_error()
}

/// The longest `Content-Type` kept in [`BodyIssue::NotJson`].
const MAX_CONTENT_TYPE: usize = 200;

impl ApiError {
    /// Classifies a complete error body, as the [`ClassifyLayer`](crate::ClassifyLayer) does.
    ///
    /// Never fails and never panics, whatever the bytes: a body that cannot be used is
    /// reported through [`ApiError::body_issue`], with the code taken from the status. The
    /// outcomes are pinned by tests:
    ///
    /// - a leading UTF-8 byte-order mark and surrounding white space are accepted;
    /// - a duplicated field takes its last value;
    /// - a field of the wrong type (`"parameter": 3`) counts as absent, and a missing or
    ///   non-string `message` makes the body [`Malformed`](BodyIssue::Malformed);
    /// - trailing garbage makes it `Malformed`, and so does a number out of `f64` range in one
    ///   of the three fields; deep nesting and huge numbers elsewhere are skipped (without
    ///   recursion, so no body can exhaust the stack);
    /// - a body that does not parse is [`NotJson`](BodyIssue::NotJson) when its content type
    ///   says it is not JSON, or when it has none and does not start like JSON; otherwise
    ///   `Malformed`.
    ///
    /// ```
    /// use http::StatusCode;
    /// use tower_infoplug::{ApiError, ErrorCode};
    ///
    /// let body = br#"{"message":"invalid_parameter","parameter":"linkedin_url","details":"Missing"}"#;
    /// let err = ApiError::from_body(StatusCode::BAD_REQUEST, None, body);
    /// assert_eq!(err.code(), &ErrorCode::InvalidParameter);
    /// assert_eq!(err.parameter(), Some("linkedin_url"));
    /// assert!(err.body_issue().is_none());
    /// ```
    pub fn from_body(status: StatusCode, content_type: Option<&HeaderValue>, body: &[u8]) -> Self {
        classify(status, content_type, Outcome::Complete(body))
    }
}

/// Builds the classification for one response.
pub(crate) fn classify(
    status: StatusCode,
    content_type: Option<&HeaderValue>,
    outcome: Outcome<'_>,
) -> ApiError {
    let error = ApiError::new(status, None);
    let body = match outcome {
        Outcome::Complete(body) => body,
        Outcome::TooLarge => return error.because(BodyIssue::TooLarge),
        Outcome::Incomplete => return error.because(BodyIssue::Incomplete),
        Outcome::TimedOut => return error.because(BodyIssue::TimedOut),
        Outcome::Malformed => return error.because(BodyIssue::Malformed),
        Outcome::Encoded(encoding) => {
            return error.because(BodyIssue::Encoded {
                encoding: encoding.chars().take(MAX_CONTENT_TYPE).collect(),
            });
        }
    };
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let body = body.trim_ascii();
    if body.is_empty() {
        return error.because(BodyIssue::Empty);
    }
    let Ok(fields) = serde_json::from_slice::<Fields<'_>>(body) else {
        let declared = content_type.map(is_json);
        let looks_like_json = matches!(body.first(), Some(b'{' | b'['));
        let issue = match declared {
            Some(false) => BodyIssue::NotJson {
                content_type: content_type.map(shown_content_type),
            },
            None if !looks_like_json => BodyIssue::NotJson { content_type: None },
            _ => BodyIssue::Malformed,
        };
        return error.because(issue);
    };
    let mut error = error;
    error.set_texts([
        fields.message.as_deref(),
        fields.parameter.as_deref(),
        fields.details.as_deref(),
    ]);
    match fields.message.as_deref().map(ErrorCode::from_message) {
        Some(Some(code)) => {
            error.code = code;
            error
        }
        Some(None) => error,
        None => error.because(BodyIssue::Malformed),
    }
}

impl ApiError {
    fn because(mut self, issue: BodyIssue) -> Self {
        self.body_issue = Some(issue);
        self
    }
}

/// `application/json`, or any `*/*+json`, parameters ignored.
fn is_json(content_type: &HeaderValue) -> bool {
    let bytes = content_type.as_bytes();
    let essence = bytes
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    essence.eq_ignore_ascii_case(b"application/json")
        || essence.len() >= 5
            && essence
                .get(essence.len() - 5..)
                .is_some_and(|tail| tail.eq_ignore_ascii_case(b"+json"))
}

fn shown_content_type(content_type: &HeaderValue) -> String {
    String::from_utf8_lossy(content_type.as_bytes())
        .chars()
        .take(MAX_CONTENT_TYPE)
        .collect()
}

/// The contract's three fields; anything else in the object is skipped without being kept.
/// Borrowed from the body when the JSON string has no escapes: the error copies them once,
/// into its one buffer.
#[derive(Default)]
struct Fields<'de> {
    message: Option<Cow<'de, str>>,
    parameter: Option<Cow<'de, str>>,
    details: Option<Cow<'de, str>>,
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an error object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            let slot = match key {
                Key::Message => &mut fields.message,
                Key::Parameter => &mut fields.parameter,
                Key::Details => &mut fields.details,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value::<MaybeString<'_>>()?.0;
        }
        Ok(fields)
    }
}

enum Key {
    Message,
    Parameter,
    Details,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "message" => Key::Message,
                    "parameter" => Key::Parameter,
                    "details" => Key::Details,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// A string, or `None` for a value of any other type (which is still parsed, so its syntax
/// and depth are checked like the rest of the body).
struct MaybeString<'de>(Option<Cow<'de, str>>);

impl<'de> Deserialize<'de> for MaybeString<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MaybeStringVisitor;
        impl<'de> Visitor<'de> for MaybeStringVisitor {
            type Value = MaybeString<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MaybeString(Some(Cow::Borrowed(v))))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MaybeString(Some(Cow::Owned(v.to_owned()))))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(MaybeString(Some(Cow::Owned(v))))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeString(None))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MaybeString(None))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MaybeString(None))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybeString(None))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MaybeString(None))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MaybeString(None))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(MaybeString(None))
            }
        }
        deserializer.deserialize_any(MaybeStringVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(status: u16, content_type: Option<&str>, body: &[u8]) -> ApiError {
        let ct = content_type.map(|c| HeaderValue::from_str(c).unwrap());
        ApiError::from_body(StatusCode::from_u16(status).unwrap(), ct.as_ref(), body)
    }

    #[test]
    fn escaped_and_plain_fields_read_alike_and_compare_by_value() {
        let plain = parse(
            400,
            None,
            br#"{"message":"invalid_parameter","parameter":"url","details":"a \"b\"\u00e9"}"#,
        );
        assert_eq!(plain.message(), Some("invalid_parameter"));
        assert_eq!(plain.parameter(), Some("url"));
        assert_eq!(plain.details(), Some("a \"b\"\u{e9}"));
        // The same fields, spelled with escapes and in another order: the same error.
        let escaped = parse(
            400,
            None,
            br#"{"details":"a \"b\"\u00e9","parameter":"u\u0072l","message":"invalid_\u0070arameter"}"#,
        );
        assert_eq!(escaped, plain);
        assert_eq!(format!("{escaped:?}"), format!("{plain:?}"));
        assert_eq!(escaped.to_string(), plain.to_string());
        // Empty fields are there, and empty.
        let empty = parse(400, None, br#"{"message":"","details":""}"#);
        assert_eq!(
            (empty.message(), empty.parameter(), empty.details()),
            (Some(""), None, Some(""))
        );
    }

    #[test]
    fn every_contract_message_maps_to_its_code() {
        for (status, message, code) in [
            (400, "invalid_parameter", ErrorCode::InvalidParameter),
            (400, "payload_is_empty", ErrorCode::PayloadIsEmpty),
            (400, "limit_out_of_range", ErrorCode::LimitOutOfRange),
            (401, "unauthorized", ErrorCode::Unauthorized),
            (402, "insufficient_credits", ErrorCode::InsufficientCredits),
            (404, "not_found", ErrorCode::NotFound),
            (429, "rate_limit_exceeded", ErrorCode::RateLimitExceeded),
            (500, "error", ErrorCode::ServerError),
            (400, "error", ErrorCode::Unspecified),
            (418, "teapot", ErrorCode::Unknown("teapot".into())),
        ] {
            let body = format!(r#"{{"message":"{message}","details":"d"}}"#);
            let err = parse(status, Some("application/json"), body.as_bytes());
            assert_eq!(err.code(), &code, "{message}");
            assert_eq!(err.message(), Some(message));
            assert_eq!(err.details(), Some("d"));
            assert_eq!(err.body_issue(), None);
        }
    }

    #[test]
    fn empty_bodies_fall_back_to_the_status() {
        for (status, code) in [
            (400, ErrorCode::Unspecified),
            (401, ErrorCode::Unauthorized),
            (402, ErrorCode::InsufficientCredits),
            (404, ErrorCode::NotFound),
            (429, ErrorCode::RateLimitExceeded),
            (500, ErrorCode::ServerError),
            (503, ErrorCode::ServerError),
        ] {
            let err = parse(status, None, b"");
            assert_eq!(err.code(), &code);
            assert_eq!(err.body_issue(), Some(&BodyIssue::Empty));
        }
        assert_eq!(
            parse(429, None, b"\xEF\xBB\xBF \r\n").body_issue(),
            Some(&BodyIssue::Empty)
        );
    }

    #[test]
    fn pinned_outcomes_for_awkward_bodies() {
        let bom = parse(
            429,
            None,
            b"\xEF\xBB\xBF{\"message\":\"rate_limit_exceeded\"}\n",
        );
        assert_eq!(bom.code(), &ErrorCode::RateLimitExceeded);
        assert_eq!(bom.body_issue(), None);

        let dup = parse(
            400,
            None,
            br#"{"message":"not_found","message":"invalid_parameter"}"#,
        );
        assert_eq!(dup.code(), &ErrorCode::InvalidParameter);

        let wrong = parse(
            400,
            None,
            br#"{"message":"invalid_parameter","parameter":3,"details":{"a":[1]}}"#,
        );
        assert_eq!(wrong.code(), &ErrorCode::InvalidParameter);
        assert_eq!((wrong.parameter(), wrong.details()), (None, None));
        assert_eq!(wrong.body_issue(), None);

        let no_message = parse(402, None, br#"{"message":7,"details":"top up"}"#);
        assert_eq!(no_message.code(), &ErrorCode::InsufficientCredits);
        assert_eq!(no_message.details(), Some("top up"));
        assert_eq!(no_message.body_issue(), Some(&BodyIssue::Malformed));

        for body in [
            &br#"{"message":"not_found"} trailing"#[..],
            br#"{"message":"not_found"}{}"#,
            br#"{"message":"#,
            br#"["not_found"]"#,
            b"{}",
        ] {
            let err = parse(404, Some("application/json"), body);
            assert_eq!(err.body_issue(), Some(&BodyIssue::Malformed), "{body:?}");
            assert_eq!(err.code(), &ErrorCode::NotFound);
        }

        // Deep nesting is skipped without recursion, so it cannot exhaust the stack, and the
        // fields around it are kept; unbalanced, it is malformed.
        let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
        for body in [
            format!(r#"{{"message":"not_found","x":{deep}}}"#),
            format!(r#"{{"message":"not_found","details":{deep}}}"#),
        ] {
            let err = parse(404, None, body.as_bytes());
            assert_eq!(err.body_issue(), None);
            assert_eq!(err.message(), Some("not_found"));
        }
        let unbalanced = format!(r#"{{"message":"not_found","x":{}}}"#, "[".repeat(50_000));
        assert_eq!(
            parse(404, None, unbalanced.as_bytes()).body_issue(),
            Some(&BodyIssue::Malformed)
        );
        // Huge numbers: skipped unchecked in a field the contract does not have; in one of its
        // fields, a number out of f64 range makes the body malformed.
        let huge = format!(r#"{{"message":"not_found","n":1{}}}"#, "0".repeat(400));
        assert_eq!(parse(404, None, huge.as_bytes()).body_issue(), None);
        let ignored = parse(404, None, br#"{"message":"not_found","n":1e999}"#);
        assert_eq!(ignored.body_issue(), None);
        let in_field = parse(404, None, br#"{"message":"not_found","parameter":1e999}"#);
        assert_eq!(in_field.body_issue(), Some(&BodyIssue::Malformed));
        assert_eq!(in_field.code(), &ErrorCode::NotFound);
    }

    #[test]
    fn html_from_a_proxy_is_not_json() {
        let html = b"<html><body><h1>502 Bad Gateway</h1></body></html>";
        let err = parse(502, Some("text/html; charset=utf-8"), html);
        assert_eq!(err.code(), &ErrorCode::ServerError);
        assert_eq!(
            err.body_issue(),
            Some(&BodyIssue::NotJson {
                content_type: Some("text/html; charset=utf-8".into())
            })
        );
        let err = parse(502, None, html);
        assert_eq!(
            err.body_issue(),
            Some(&BodyIssue::NotJson { content_type: None })
        );
        let err = parse(502, Some("application/problem+json"), html);
        assert_eq!(err.body_issue(), Some(&BodyIssue::Malformed));
        // A JSON error object is used even when mislabelled.
        let err = parse(
            429,
            Some("text/plain"),
            br#"{"message":"rate_limit_exceeded"}"#,
        );
        assert_eq!(err.body_issue(), None);
    }

    #[test]
    fn retryable_only_when_the_body_names_no_permanent_cause() {
        let retryable = |status, body: &[u8]| parse(status, None, body).is_retryable();
        assert!(retryable(429, br#"{"message":"rate_limit_exceeded"}"#));
        assert!(retryable(429, b""));
        assert!(retryable(503, b"<html>"));
        assert!(retryable(500, br#"{"message":"error"}"#));
        assert!(!retryable(429, br#"{"message":"insufficient_credits"}"#));
        assert!(!retryable(429, br#"{"message":"unauthorized"}"#));
        assert!(!retryable(400, br#"{"message":"rate_limit_exceeded"}"#));
        assert!(!retryable(402, b""));
        assert!(!retryable(501, b""));
    }

    #[test]
    fn an_echoed_credential_is_redacted_everywhere() {
        let mut err = parse(
            401,
            None,
            br#"{"message":"sk-live-9","parameter":"Bearer sk-live-9","details":"bad key sk-live-9"}"#,
        );
        err.redact(&HeaderValue::from_static("Bearer sk-live-9"));
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("sk-live-9"), "{shown}");
        assert_eq!(err.details(), Some("bad key [REDACTED]"));
        assert_eq!(err.parameter(), Some("[REDACTED]"));
    }

    #[test]
    fn display_is_one_informative_line() {
        let err = parse(
            400,
            None,
            br#"{"message":"invalid_parameter","parameter":"linkedin_url","details":"Missing or invalid linkedin_url"}"#,
        );
        assert_eq!(
            err.to_string(),
            "InfoPlug API error 400 Bad Request: invalid_parameter (parameter `linkedin_url`): \
             Missing or invalid linkedin_url"
        );
        assert_eq!(
            parse(502, Some("text/html"), b"<p>").to_string(),
            "InfoPlug API error 502 Bad Gateway: server_error [body is not JSON (text/html)]"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            status in 400u16..600,
            body in proptest::collection::vec(any::<u8>(), 0..512),
            ct in proptest::option::of("[ -~]{0,40}"),
        ) {
            let err = parse(status, ct.as_deref(), &body);
            prop_assert_eq!(err.status().as_u16(), status);
            // Either the body was used (a string message) or the reason is given.
            prop_assert!(err.message().is_some() != err.body_issue().is_some());
        }

        #[test]
        fn any_contract_body_round_trips(
            message in "[a-z_]{1,30}",
            parameter in proptest::option::of(".{0,30}"),
            details in proptest::option::of(".{0,60}"),
        ) {
            let mut object = serde_json::Map::new();
            object.insert("message".into(), message.clone().into());
            if let Some(p) = &parameter { object.insert("parameter".into(), p.clone().into()); }
            if let Some(d) = &details { object.insert("details".into(), d.clone().into()); }
            let body = serde_json::to_vec(&object).unwrap();
            let err = parse(400, Some("application/json"), &body);
            prop_assert_eq!(err.message(), Some(message.as_str()));
            prop_assert_eq!(err.parameter(), parameter.as_deref());
            prop_assert_eq!(err.details(), details.as_deref());
            prop_assert_eq!(err.body_issue(), None);
        }
    }
}
