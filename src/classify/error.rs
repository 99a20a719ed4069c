use std::fmt;

use http::{HeaderValue, StatusCode};

/// What the API said went wrong, parsed from a 4xx/5xx response.
///
/// The [`ClassifyLayer`](crate::ClassifyLayer) puts one in the extensions of every 4xx/5xx
/// response; read it with [`ResponseExt::api_error`](crate::ResponseExt::api_error). Each field of the contract's error body
/// (`{"message", "parameter", "details"}`) is here when the body carried it as a string;
/// [`body_issue`](Self::body_issue) says why the body could not be used when it could not, and
/// the [`code`](Self::code) then falls back to the status.
///
/// Its `Display` is one line for logs: status, code, details. Neither `Display` nor `Debug` can
/// show the API key: when the server echoes the credential that was sent, it is replaced by
/// `[REDACTED]` before the error is stored.
#[derive(Clone)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: ErrorCode,
    /// The body's text fields, one after the other, in one allocation (three strings would be
    /// three): the spans below say where each one is.
    texts: Box<str>,
    message: Option<Span>,
    parameter: Option<Span>,
    details: Option<Span>,
    pub(super) body_issue: Option<BodyIssue>,
}

/// Where a text field is in [`ApiError`]'s buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

/// The body's text fields, to store: `message`, `parameter`, `details`.
pub(super) type Texts<'a> = [Option<&'a str>; 3];

/// The error code of the contract, from the body's `message` or else from the status.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `invalid_parameter` (400): a parameter is missing or invalid; see
    /// [`ApiError::parameter`].
    InvalidParameter,
    /// `payload_is_empty` (400): the request needed a JSON body.
    PayloadIsEmpty,
    /// `limit_out_of_range` (400): `limit` is outside its range.
    LimitOutOfRange,
    /// `unauthorized` (401): the key is missing or invalid.
    Unauthorized,
    /// `insufficient_credits` (402): the account has no credits left.
    InsufficientCredits,
    /// `not_found` (404): the profile, company or job does not exist.
    NotFound,
    /// `rate_limit_exceeded` (429): too many requests; wait and retry.
    RateLimitExceeded,
    /// A 5xx without a more specific code.
    ServerError,
    /// The status has no code of its own in the contract (400, 403, 405, ...) and the body
    /// gave none.
    Unspecified,
    /// A `message` this crate does not know, as the server sent it.
    Unknown(String),
}

/// Why the error body could not be used; the code then comes from the status.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BodyIssue {
    /// The body was empty.
    Empty,
    /// The body is not JSON (an HTML page from a proxy, plain text, ...).
    NotJson {
        /// The response's `Content-Type`, when it had one.
        content_type: Option<String>,
    },
    /// The body is JSON-like but not the contract's error object (invalid JSON, trailing
    /// garbage, nesting too deep, not an object, no string `message`).
    Malformed,
    /// The body is longer than the classifier's limit; it was not parsed.
    TooLarge,
    /// The body ended with a transport error before it was complete.
    Incomplete,
    /// The body did not arrive within the classifier's deadline.
    TimedOut,
    /// The body was not read: the response did not go through a
    /// [`ClassifyLayer`](crate::ClassifyLayer).
    NotRead,
    /// The body is compressed (`Content-Encoding`) with a coding this build does not decode:
    /// gzip, deflate and br need the `decompress` feature, others are not known. Nothing was
    /// parsed, and the error is not retryable: the body might have said why not.
    Encoded {
        /// The coding, lower-cased.
        encoding: String,
    },
}

impl ErrorCode {
    /// The code from a body's `message`; `None` for the generic `"error"`, which says no more
    /// than the status does.
    pub fn from_message(message: &str) -> Option<Self> {
        let message = trim(message);
        // Lower-cased on the stack (no known name is longer than the buffer), then one match.
        let mut buffer = [0u8; 24];
        let lower = match buffer.get_mut(..message.len()) {
            Some(lower) => {
                lower.copy_from_slice(message.as_bytes());
                lower.make_ascii_lowercase();
                &*lower
            }
            None => b"",
        };
        Some(match lower {
            b"error" => return None,
            b"invalid_parameter" => Self::InvalidParameter,
            b"payload_is_empty" => Self::PayloadIsEmpty,
            b"limit_out_of_range" => Self::LimitOutOfRange,
            b"unauthorized" => Self::Unauthorized,
            b"insufficient_credits" => Self::InsufficientCredits,
            b"not_found" => Self::NotFound,
            b"rate_limit_exceeded" => Self::RateLimitExceeded,
            b"server_error" | b"internal_server_error" => Self::ServerError,
            _ => Self::Unknown(message.to_owned()),
        })
    }

    /// The code the contract gives `status` when the body names none.
    pub fn from_status(status: StatusCode) -> Self {
        match status.as_u16() {
            401 => Self::Unauthorized,
            402 => Self::InsufficientCredits,
            404 => Self::NotFound,
            429 => Self::RateLimitExceeded,
            500..=599 => Self::ServerError,
            _ => Self::Unspecified,
        }
    }

    /// The code as events show it: the contract's name, or `"unknown"` for
    /// [`ErrorCode::Unknown`]. A message the crate does not know is the server's free text,
    /// which may echo the credential; a layer that emits an event need not know the key (the
    /// classifier below the auth layer never sees it), so no event carries that text.
    pub(crate) fn event_name(&self) -> &'static str {
        match self {
            Self::Unknown(_) => "unknown",
            Self::InvalidParameter => "invalid_parameter",
            Self::PayloadIsEmpty => "payload_is_empty",
            Self::LimitOutOfRange => "limit_out_of_range",
            Self::Unauthorized => "unauthorized",
            Self::InsufficientCredits => "insufficient_credits",
            Self::NotFound => "not_found",
            Self::RateLimitExceeded => "rate_limit_exceeded",
            Self::ServerError => "server_error",
            Self::Unspecified => "unspecified",
        }
    }

    /// The code as the API writes it (`"rate_limit_exceeded"`), or as the server sent it for
    /// [`ErrorCode::Unknown`].
    pub fn as_str(&self) -> &str {
        match self {
            Self::Unknown(raw) => raw,
            known => known.event_name(),
        }
    }
}

/// `str::trim` (Unicode white space), at `trim_ascii`'s cost for the usual ASCII message.
fn trim(text: &str) -> &str {
    let trimmed = text.trim_ascii();
    // `trim_ascii` leaves the vertical tab and non-ASCII white space, which `trim` removes.
    let maybe_more = |byte: Option<&u8>| byte.is_some_and(|&b| b == 0x0b || !b.is_ascii());
    let bytes = trimmed.as_bytes();
    if maybe_more(bytes.first()) || maybe_more(bytes.last()) {
        trimmed.trim()
    } else {
        trimmed
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for BodyIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty body"),
            Self::NotJson {
                content_type: Some(ct),
            } => write!(f, "body is not JSON ({ct})"),
            Self::NotJson { content_type: None } => f.write_str("body is not JSON"),
            Self::Malformed => f.write_str("body is not a valid error object"),
            Self::TooLarge => f.write_str("body too large to classify"),
            Self::Incomplete => f.write_str("body ended with a transport error"),
            Self::TimedOut => f.write_str("body did not arrive in time"),
            Self::NotRead => f.write_str("body not read"),
            Self::Encoded { encoding } => write!(f, "body is {encoding}-encoded, not decoded"),
        }
    }
}

impl ApiError {
    /// An error known only by its status, with the code the contract gives that status.
    pub fn from_status(status: StatusCode) -> Self {
        Self::new(status, Some(BodyIssue::NotRead))
    }

    /// An error with no text fields (yet), its code the status's.
    pub(super) fn new(status: StatusCode, body_issue: Option<BodyIssue>) -> Self {
        Self {
            status,
            code: ErrorCode::from_status(status),
            texts: Box::default(),
            message: None,
            parameter: None,
            details: None,
            body_issue,
        }
    }

    /// Stores the text fields, in one allocation (none if they are all empty or absent). A
    /// field that would end past 4 GiB is left out (no body the classifier reads is that
    /// large).
    pub(super) fn set_texts(&mut self, [message, parameter, details]: Texts<'_>) {
        let len = |text: Option<&str>| text.map_or(0, str::len);
        let mut buffer = String::with_capacity(len(message) + len(parameter) + len(details));
        let mut put = |text: Option<&str>| {
            let text = text?;
            let start = u32::try_from(buffer.len()).ok()?;
            let end = u32::try_from(buffer.len() + text.len()).ok()?;
            buffer.push_str(text);
            Some(Span { start, end })
        };
        self.message = put(message);
        self.parameter = put(parameter);
        self.details = put(details);
        self.texts = buffer.into_boxed_str();
    }

    fn text(&self, span: Option<Span>) -> Option<&str> {
        let span = span?;
        self.texts.get(span.start as usize..span.end as usize)
    }

    fn texts(&self) -> Texts<'_> {
        [
            self.text(self.message),
            self.text(self.parameter),
            self.text(self.details),
        ]
    }

    /// The response's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error code.
    pub fn code(&self) -> &ErrorCode {
        &self.code
    }

    /// The body's `message`, as sent.
    pub fn message(&self) -> Option<&str> {
        self.text(self.message)
    }

    /// The body's `parameter`: the request parameter at fault.
    pub fn parameter(&self) -> Option<&str> {
        self.text(self.parameter)
    }

    /// The body's `details`: a description for people.
    pub fn details(&self) -> Option<&str> {
        self.text(self.details)
    }

    /// Why the body could not be used, when it could not.
    pub fn body_issue(&self) -> Option<&BodyIssue> {
        self.body_issue.as_ref()
    }

    /// Whether the same request may succeed if sent again later: a 429, 500, 502, 503 or 504
    /// whose body does not name a permanent cause (a 429 that says `insufficient_credits` or
    /// `unauthorized` is not retryable).
    ///
    /// This is about the response alone; whether a given request may be re-sent also depends
    /// on its method, which the retry layer weighs.
    /// A body that could not be decoded ([`BodyIssue::Encoded`]) makes it not retryable: it
    /// may have named a permanent cause.
    pub fn is_retryable(&self) -> bool {
        matches!(self.status.as_u16(), 429 | 500 | 502 | 503 | 504) && !self.names_lasting_cause()
    }

    /// Whether the body names a cause that sending again cannot cure (`insufficient_credits`,
    /// `unauthorized`, `invalid_parameter`, ...), or could not be decoded and may have named
    /// one. The retry policy's veto, whatever the status or the server's `x-should-retry`.
    pub(crate) fn names_lasting_cause(&self) -> bool {
        matches!(self.body_issue, Some(BodyIssue::Encoded { .. }))
            || !matches!(
                self.code,
                ErrorCode::RateLimitExceeded
                    | ErrorCode::ServerError
                    | ErrorCode::Unspecified
                    | ErrorCode::Unknown(_)
            )
    }

    /// Replaces every occurrence of the credential that was sent (and, for `Bearer <token>`,
    /// of the token) in the text fields.
    pub(crate) fn redact(&mut self, credential: &HeaderValue) {
        const REDACTED: &str = "[REDACTED]";
        let secrets = crate::key::Secrets::of(credential);
        let scrubbed = |text: &str| -> Option<String> {
            if !secrets.occur_in(text.as_bytes()) {
                return None;
            }
            let mut text = text.to_owned();
            for secret in secrets.iter() {
                if crate::key::occurs(text.as_bytes(), secret) {
                    text = match std::str::from_utf8(secret) {
                        Ok(secret) => text.replace(secret, REDACTED),
                        // Bytes of an opaque credential inside a character: the whole text.
                        Err(_) => REDACTED.to_owned(),
                    };
                }
            }
            Some(text)
        };
        let [message, parameter, details] = self.texts();
        let (m, p, d) = (
            message.and_then(scrubbed),
            parameter.and_then(scrubbed),
            details.and_then(scrubbed),
        );
        if m.is_some() || p.is_some() || d.is_some() {
            let mut error = Self::new(self.status, None);
            error.set_texts([
                m.as_deref().or(message),
                p.as_deref().or(parameter),
                d.as_deref().or(details),
            ]);
            (self.texts, self.message, self.parameter, self.details) =
                (error.texts, error.message, error.parameter, error.details);
        }
        let scrub = |text: &mut String| {
            if let Some(scrubbed) = scrubbed(text) {
                *text = scrubbed;
            }
        };
        if let ErrorCode::Unknown(raw) = &mut self.code {
            scrub(raw);
        }
        match &mut self.body_issue {
            Some(BodyIssue::NotJson {
                content_type: Some(text),
            })
            | Some(BodyIssue::Encoded { encoding: text }) => scrub(text),
            _ => {}
        }
    }
}

// By the fields' values, as a derive on the old representation (three strings) would.
impl PartialEq for ApiError {
    fn eq(&self, other: &Self) -> bool {
        self.status == other.status
            && self.code == other.code
            && self.texts() == other.texts()
            && self.body_issue == other.body_issue
    }
}

impl Eq for ApiError {}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("status", &self.status)
            .field("code", &self.code)
            .field("message", &self.message())
            .field("parameter", &self.parameter())
            .field("details", &self.details())
            .field("body_issue", &self.body_issue)
            .finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoPlug API error {}: {}", self.status, self.code)?;
        if let Some(parameter) = self.parameter() {
            write!(f, " (parameter `{parameter}`)")?;
        }
        if let Some(details) = self.details() {
            write!(f, ": {details}")?;
        }
        if let Some(issue) = &self.body_issue {
            write!(f, " [{issue}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn trim_is_str_trim(
            text in proptest::collection::vec(
                prop_oneof![
                    Just(' '), Just('\t'), Just('\n'), Just('\x0b'), Just('\x0c'), Just('\r'),
                    Just('\u{a0}'), Just('\u{3000}'), Just('\u{85}'), Just('a'), Just('é'),
                ],
                0..12,
            ).prop_map(|chars| chars.into_iter().collect::<String>()),
        ) {
            prop_assert_eq!(trim(&text), text.trim());
        }
    }

    fn error_saying(details: &str) -> ApiError {
        let mut error = ApiError::new(StatusCode::UNAUTHORIZED, None);
        error.set_texts([Some("message"), None, Some(details)]);
        error
    }

    #[test]
    fn redaction_finds_every_form_of_the_credential() {
        let bearer = HeaderValue::from_static("  Bearer tok-123 ");
        let mut error = error_saying("bad token tok-123, and tok-123 again");
        error.redact(&bearer);
        assert_eq!(
            error.details(),
            Some("bad token [REDACTED], and [REDACTED] again")
        );
        // An opaque credential whose bytes sit inside a character: the whole text goes.
        let opaque = HeaderValue::from_bytes(b"\xc3").unwrap();
        let mut error = error_saying("caf\u{e9} k");
        error.redact(&opaque);
        assert_eq!(error.details(), Some("[REDACTED]"));
        let mut error = error_saying("plain ascii");
        error.redact(&opaque);
        assert_eq!(error.details(), Some("plain ascii"));
    }

    #[test]
    fn codes_are_read_through_any_white_space() {
        assert_eq!(
            ErrorCode::from_message("\u{3000}\x0bnot_found\u{a0}"),
            Some(ErrorCode::NotFound)
        );
        assert_eq!(ErrorCode::from_message(" Error "), None);
        assert_eq!(
            ErrorCode::from_message("Rate_Limit_EXCEEDED"),
            Some(ErrorCode::RateLimitExceeded)
        );
        assert_eq!(
            ErrorCode::from_message("internal_server_error_but_longer_than_any_name"),
            Some(ErrorCode::Unknown(
                "internal_server_error_but_longer_than_any_name".into()
            ))
        );
        assert_eq!(
            ErrorCode::from_message(""),
            Some(ErrorCode::Unknown(String::new()))
        );
        assert_eq!(
            ErrorCode::from_message(" internal_server_error"),
            Some(ErrorCode::ServerError)
        );
        assert_eq!(
            ErrorCode::from_message(" quota_gone "),
            Some(ErrorCode::Unknown("quota_gone".into()))
        );
    }
}
