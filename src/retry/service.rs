use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::body::{BoxError, ReplayBody};
use super::layer::Shared;
use super::{Deadline, DefaultPolicy, ResponseFuture, RetryError, RetryLayer, RetryPolicy};

/// Retries requests; built by [`RetryLayer`]. See the [module docs](crate::retry).
#[derive(Clone)]
pub struct Retry<S, P = DefaultPolicy> {
    inner: S,
    policy: P,
    shared: Arc<Shared>,
}

impl<S> Retry<S> {
    /// Wraps `inner` with the default settings; for others, build a [`RetryLayer`].
    pub fn new(inner: S) -> Self {
        RetryLayer::new().layer(inner)
    }
}

impl<S, P> Retry<S, P> {
    pub(super) fn from_parts(inner: S, policy: P, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            policy,
            shared,
        }
    }

    define_inner_service_accessors!();
}

impl<S, P, ReqBody, ResBody> Service<Request<ReqBody>> for Retry<S, P>
where
    S: Service<Request<ReplayBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body,
    P: RetryPolicy<S::Error> + Clone,
{
    type Response = Response<ResBody>;
    type Error = RetryError<S::Error>;
    type Future = ResponseFuture<S, ReqBody, ResBody, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|error| RetryError::Transport {
                error,
                info: super::RetryInfo {
                    attempts: 0,
                    waited: std::time::Duration::ZERO,
                    last_hint: None,
                    retry_after: None,
                    stop: super::StopReason::Final,
                },
            })
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let from_setting = self
            .shared
            .settings
            .deadline
            .map(|d| super::later(Instant::now(), d));
        let from_request = req.extensions().get::<Deadline>().map(|d| d.0);
        let deadline = match (from_setting, from_request) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // The instance that was polled ready goes with this request; a fresh clone stays for
        // the next one (which will be polled ready before it is called).
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        ResponseFuture::new(
            ready,
            req,
            self.policy.clone(),
            Arc::clone(&self.shared),
            deadline,
        )
    }
}

impl<S: fmt::Debug, P: fmt::Debug> fmt::Debug for Retry<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .field("shared", &self.shared)
            .finish()
    }
}
