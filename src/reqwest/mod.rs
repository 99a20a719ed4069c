//! reqwest, first class: a tower transport over `reqwest::Client`, and a
//! `reqwest_middleware::Middleware` for `ClientWithMiddleware` users (feature `reqwest`).
//!
//! Both run the same stack as [`InfoPlugLayer`](crate::InfoPlugLayer): the same decision table, the same planner
//! and the same shared gates, pacing and budget (the middleware's clones, and every request
//! through them, share one [`RetryLayer`](crate::RetryLayer) state).
//!
//! - [`ReqwestTransport`] is the transport below the tower layers, for code that already
//!   speaks `tower::Service<http::Request<_>>`. It converts between reqwest's and `http`'s
//!   types without copying a body, and builds its client with reqwest's own redirects off:
//!   reqwest copies custom headers such as `X-INFOPLUG-API-KEY` to whatever host a redirect
//!   names.
//! - [`InfoPlugMiddleware`] is for code that uses `reqwest_middleware::ClientWithMiddleware`:
//!   `ClientBuilder::new(client).with(InfoPlugMiddleware::from_env()?)`. Responses come back
//!   as `reqwest::Response`s carrying the same extensions ([`ApiError`](crate::ApiError),
//!   [`RetryInfo`](crate::RetryInfo)), read with [`ResponseExt`](crate::ResponseExt).
//!   Build the `reqwest::Client` under it with [`redirect_policy`] (or redirects off).
//!
//! ```no_run
//! use reqwest_middleware::ClientBuilder;
//! use tower_infoplug::ResponseExt;
//! use tower_infoplug::reqwest::{InfoPlugMiddleware, redirect_policy};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let reqwest = reqwest::Client::builder().redirect(redirect_policy()).build()?;
//! let client = ClientBuilder::new(reqwest)
//!     .with(InfoPlugMiddleware::from_env()?) // INFOPLUG_API_KEY, INFOPLUG_BASE_URL
//!     .build();
//!
//! let res = client.get("https://api.infoplug.io/v1/profile").send().await?;
//! println!("{} after {} attempt(s)", res.status(), res.retry_info().attempts());
//! # Ok(())
//! # }
//! ```

mod middleware;
mod transport;

pub use middleware::InfoPlugMiddleware;
pub use transport::{ReqwestTransport, ResponseFuture};

use ::reqwest::redirect::{Attempt, Policy};

// The same reading of a `reqwest::Response` the middleware returns as of an
// `http::Response`.
crate::response::impl_response_ext!(::reqwest::Response);

/// A redirect policy for a `reqwest::Client` under the stack: follows at most 10 redirects
/// within one origin (scheme, host and port) and stops at the first hop to another, returning
/// that 3xx. reqwest strips `Authorization` on a hop to another host but copies other headers,
/// `X-INFOPLUG-API-KEY` included.
pub fn redirect_policy() -> Policy {
    Policy::custom(|attempt: Attempt<'_>| {
        let same_origin = attempt.previous().last().is_some_and(|from| {
            let to = attempt.url();
            from.scheme() == to.scheme()
                && from.host_str() == to.host_str()
                && from.port_or_known_default() == to.port_or_known_default()
        });
        if !same_origin {
            attempt.stop()
        } else if attempt.previous().len() > 10 {
            attempt.error("more than 10 redirects")
        } else {
            attempt.follow()
        }
    })
}
