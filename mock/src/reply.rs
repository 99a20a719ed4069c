use std::collections::VecDeque;
use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// One scripted answer of the [`Emulator`](super::Emulator), or a fault to inject.
///
/// Queue replies with [`Emulator::push`](super::Emulator::push); each request takes the next
/// one, and when the queue is empty the emulator answers as the real API would.
///
/// ```
/// use std::time::Duration;
/// use tower_infoplug_mock::Reply;
///
/// let storm = [
///     Reply::rate_limited(2),
///     Reply::unavailable().header("retry-after", "1"),
///     Reply::proxy_html(502),
///     Reply::ok(r#"{"data":{}}"#).chunk_delay(Duration::from_millis(50)),
/// ];
/// # let _ = storm;
/// ```
#[derive(Clone)]
pub struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    pub(super) chunk_size: Option<usize>,
    pub(super) head_delay: Duration,
    pub(super) chunk_delay: Duration,
    pub(super) truncate_after: Option<usize>,
    pub(super) echo_key: bool,
}

/// A contract error body: `{"message", "parameter", "details"}`.
pub(super) fn error_body(message: &str, parameter: Option<&str>, details: &str) -> Bytes {
    let mut object = serde_json::Map::new();
    object.insert("message".into(), message.into());
    if let Some(parameter) = parameter {
        object.insert("parameter".into(), parameter.into());
    }
    object.insert("details".into(), details.into());
    Bytes::from(serde_json::Value::Object(object).to_string())
}

impl Reply {
    /// A reply with `status`, a JSON `body` and `Content-Type: application/json`.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers,
            body: body.into(),
            chunk_size: None,
            head_delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            truncate_after: None,
            echo_key: false,
        }
    }

    /// A 200 with a JSON `body`.
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Self::json(200, body)
    }

    /// A contract error: `status` with `{"message", "parameter"?, "details"}`.
    pub fn error(status: u16, message: &str, parameter: Option<&str>, details: &str) -> Self {
        Self::json(status, error_body(message, parameter, details))
    }

    /// The contract's answer for `status`: its usual message and a short description (for
    /// example 402 → `insufficient_credits`, 500 → `error`).
    pub fn status(status: u16) -> Self {
        let (message, details) = match status {
            400 => ("invalid_parameter", "Missing or invalid parameter"),
            401 => ("unauthorized", "Missing or invalid API key"),
            402 => ("insufficient_credits", "Account has no credits remaining"),
            404 => ("not_found", "The requested resource does not exist"),
            429 => ("rate_limit_exceeded", "Too many requests in a short time"),
            503 => ("error", "Temporary failure or timeout, retry the request"),
            _ => ("error", "Something went wrong on our end"),
        };
        Self::error(status, message, None, details)
    }

    /// A 429 `rate_limit_exceeded` with `Retry-After: <seconds>`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::status(429).header(RETRY_AFTER, &retry_after_secs.to_string())
    }

    /// A 503 without a `Retry-After`.
    pub fn unavailable() -> Self {
        Self::status(503)
    }

    /// An HTML error page, as a proxy or load balancer in front of the API sends it.
    pub fn proxy_html(status: u16) -> Self {
        let mut reply = Self::json(
            status,
            format!(
                "<html>\r\n<head><title>{status} Bad Gateway</title></head>\r\n\
                 <body>\r\n<center><h1>{status} Bad Gateway</h1></center>\r\n\
                 <hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
            ),
        );
        reply.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        reply
    }

    /// A body labelled JSON that is not: cut off in the middle of a string.
    pub fn malformed(status: u16) -> Self {
        Self::json(status, r#"{"message":"rate_limit_exc"#)
    }

    /// A valid contract error whose `details` makes the body `len` bytes long (at least the
    /// length of the envelope), sent in 16 KiB chunks.
    pub fn oversized(status: u16, len: usize) -> Self {
        let envelope = error_body("error", None, "");
        let padding = len.saturating_sub(envelope.len());
        Self::json(status, error_body("error", None, &"x".repeat(padding))).chunked(16 * 1024)
    }

    /// A 401 whose `details` repeats the credential the request carried, as a careless server
    /// might: for tests that the key is redacted.
    pub fn echoing_key(status: u16) -> Self {
        Self {
            echo_key: true,
            ..Self::status(status)
        }
    }

    /// Adds (or replaces) a header; an invalid name or value is ignored.
    pub fn header(mut self, name: impl TryInto<HeaderName>, value: &str) -> Self {
        if let (Ok(name), Ok(value)) = (name.try_into(), HeaderValue::from_str(value)) {
            self.headers.insert(name, value);
        }
        self
    }

    /// Removes a header (for example the `Content-Type` that [`Reply::json`] sets).
    pub fn without_header(mut self, name: impl TryInto<HeaderName>) -> Self {
        if let Ok(name) = name.try_into() {
            self.headers.remove(name);
        }
        self
    }

    /// Sends the body in chunks of `size` bytes (at least 1).
    pub fn chunked(mut self, size: usize) -> Self {
        self.chunk_size = Some(size.max(1));
        self
    }

    /// Waits `delay` before sending the response head.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.head_delay = delay;
        self
    }

    /// Waits `delay` before each body chunk after the first (a slow body); chunks of 1 byte
    /// unless [`Reply::chunked`] says otherwise.
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        if self.chunk_size.is_none() {
            self.chunk_size = Some(1);
        }
        self
    }

    /// Sends only the first `bytes` of the body, then fails the stream; the response still
    /// announces the whole length, so a client sees a truncated body, never a short clean one.
    pub fn truncate_after(mut self, bytes: usize) -> Self {
        self.truncate_after = Some(bytes);
        self
    }

    /// The status this reply will have.
    pub fn status_code(&self) -> StatusCode {
        self.status
    }

    pub(super) fn into_response(self, key: Option<&str>) -> (Duration, Response<MockBody>) {
        let body = if self.echo_key {
            let details = format!("the key {} is not valid", key.unwrap_or("(none)"));
            error_body("unauthorized", None, &details)
        } else {
            self.body
        };
        let full_len = body.len() as u64;
        let sent = match self.truncate_after {
            Some(n) if n < body.len() => body.slice(..n),
            _ => body,
        };
        let chunks = match self.chunk_size {
            Some(size) => (0..sent.len())
                .step_by(size)
                .map(|start| sent.slice(start..sent.len().min(start + size)))
                .collect(),
            None if sent.is_empty() => VecDeque::new(),
            None => VecDeque::from([sent]),
        };
        let body = MockBody {
            chunks,
            len: full_len,
            sent: 0,
            chunk_delay: self.chunk_delay,
            sleep: None,
            started: false,
            flushed: false,
            fail: self.truncate_after.is_some_and(|n| (n as u64) < full_len),
        };
        let mut res = Response::new(body);
        *res.status_mut() = self.status;
        *res.headers_mut() = self.headers;
        (self.head_delay, res)
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .field("chunk_size", &self.chunk_size)
            .field("head_delay", &self.head_delay)
            .field("chunk_delay", &self.chunk_delay)
            .field("truncate_after", &self.truncate_after)
            .finish_non_exhaustive()
    }
}

/// The body of an emulator response: chunks, optionally slow, optionally cut off by an error.
pub struct MockBody {
    chunks: VecDeque<Bytes>,
    /// The length the response announces (more than it sends when truncated).
    len: u64,
    /// How many bytes it has yielded.
    sent: u64,
    chunk_delay: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    started: bool,
    fail: bool,
    /// Whether the pause before the failure has begun.
    flushed: bool,
}

impl MockBody {
    /// An empty body.
    pub fn empty() -> Self {
        Self {
            chunks: VecDeque::new(),
            len: 0,
            sent: 0,
            chunk_delay: Duration::ZERO,
            sleep: None,
            started: false,
            flushed: false,
            fail: false,
        }
    }
}

/// The error a truncated [`MockBody`] ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncated;

impl fmt::Display for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the emulator cut the response body off")
    }
}

impl std::error::Error for Truncated {}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Truncated;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Truncated>>> {
        let this = &mut *self;
        if this.started && !this.chunk_delay.is_zero() && !this.chunks.is_empty() {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(this.chunk_delay)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        this.started = true;
        match this.chunks.pop_front() {
            Some(chunk) => {
                this.sent += chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            None if this.fail && !this.flushed => {
                // Give a server the chance to flush what it has before the stream fails, so
                // the client sees the head and the first bytes, then the cut.
                this.flushed = true;
                let sleep = this
                    .sleep
                    .insert(Box::pin(tokio::time::sleep(Duration::from_millis(1))));
                let _ = sleep.as_mut().poll(cx);
                Poll::Pending
            }
            None if this.fail => {
                if let Some(sleep) = this.sleep.as_mut()
                    && sleep.as_mut().poll(cx).is_pending()
                {
                    return Poll::Pending;
                }
                this.sleep = None;
                this.fail = false;
                Poll::Ready(Some(Err(Truncated)))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && !self.fail
    }

    fn size_hint(&self) -> SizeHint {
        if self.fail {
            // Announce the whole length, as a server that dies mid-body has done.
            return SizeHint::with_exact(self.len.saturating_sub(self.sent));
        }
        SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
    }
}

impl fmt::Debug for MockBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockBody")
            .field("chunks", &self.chunks.len())
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}
