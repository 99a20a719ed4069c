//! [`ResponseExt`]: what the layers left on a response, read in one call each, on
//! `http::Response<B>` and (feature `reqwest`) `reqwest::Response`.
//!
//! The classifier's [`ApiError`](crate::ApiError) is always there to read; what the retry
//! layer recorded ([`RetryInfo`](crate::RetryInfo)) and the server's remaining quota
//! ([`RateLimitStatus`](crate::RateLimitStatus)) need the `retry` feature, as the types they
//! return do.

use http::Response;

use crate::ApiError;

/// Reads the classification off a response.
///
/// ```
/// use http::{Response, StatusCode};
/// use tower_infoplug::{ApiError, ErrorCode, ResponseExt};
///
/// let res = Response::builder().status(402).body(()).unwrap();
/// // Without a ClassifyLayer in the stack there is no extension...
/// assert!(res.api_error().is_none());
/// // ...but `error_for_status` still turns a 4xx/5xx into an error for `?`.
/// let err: ApiError = res.error_for_status().unwrap_err();
/// assert_eq!(err.code(), &ErrorCode::InsufficientCredits);
/// ```
// `ApiError` is large for an error type (about 140 bytes), but it is built once per failed
// response, never on the success path; boxing it would cost every caller a deref to save a copy.
#[allow(clippy::result_large_err)]
pub trait ResponseExt: Sized {
    /// The [`ApiError`] a classifier attached, if any.
    fn api_error(&self) -> Option<&ApiError>;

    /// `Ok(self)` for a 1xx/2xx/3xx response; for a 4xx/5xx the attached [`ApiError`], or one
    /// made from the status ([`BodyIssue::NotRead`](crate::BodyIssue::NotRead)) when no classifier ran. The body is
    /// dropped in the error case.
    fn error_for_status(self) -> Result<Self, ApiError>;

    /// What the retry layer did: the [`RetryInfo`](crate::RetryInfo) it attached when
    /// anything happened beyond one plain attempt, else that one attempt.
    #[cfg(feature = "retry")]
    fn retry_info(&self) -> crate::RetryInfo;

    /// What the server says is left of its rate limit, from its `RateLimit` or
    /// `X-RateLimit-*` fields (see [`RateLimitStatus`](crate::RateLimitStatus)); read from the
    /// headers when called. `None` when the response names nothing left.
    #[cfg(feature = "retry")]
    fn rate_limit(&self) -> Option<crate::RateLimitStatus>;
}

/// Implements [`ResponseExt`] for a response type with `http::Response`'s accessors
/// (`status`, `headers`, `extensions`, `extensions_mut`): `http::Response<B>` here, and
/// `reqwest::Response` with the `reqwest` feature, from one body.
macro_rules! impl_response_ext {
    ($response:ty $(, for <$param:ident>)?) => {
        #[allow(clippy::result_large_err)]
        impl$(<$param>)? $crate::ResponseExt for $response {
            fn api_error(&self) -> Option<&$crate::ApiError> {
                self.extensions().get()
            }

            fn error_for_status(mut self) -> Result<Self, $crate::ApiError> {
                let status = self.status();
                if !$crate::classify::parse::is_classified(status) {
                    return Ok(self);
                }
                Err(self
                    .extensions_mut()
                    .remove::<$crate::ApiError>()
                    .unwrap_or_else(|| $crate::ApiError::from_status(status)))
            }

            #[cfg(feature = "retry")]
            fn retry_info(&self) -> $crate::RetryInfo {
                self.extensions()
                    .get::<$crate::RetryInfo>()
                    .cloned()
                    .unwrap_or($crate::RetryInfo::ONE_ATTEMPT)
            }

            #[cfg(feature = "retry")]
            fn rate_limit(&self) -> Option<$crate::RateLimitStatus> {
                $crate::RateLimitStatus::from_headers(self.headers(), std::time::SystemTime::now())
            }
        }
    };
}
#[cfg(feature = "reqwest")]
pub(crate) use impl_response_ext;

impl_response_ext!(Response<B>, for <B>);
