use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::layer::Config;
use super::{AuthLayer, ResponseFuture};
use crate::{KeySource, Origin};

/// Adds the API key to requests; built by [`AuthLayer`]. See the [module docs](crate::auth).
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Auth<S> {
    /// Wraps `inner`, sending `key` in `X-INFOPLUG-API-KEY`; for the other options build an
    /// [`AuthLayer`] and call [`Layer::layer`](tower_layer::Layer::layer).
    pub fn new(inner: S, key: impl Into<KeySource>) -> Self {
        AuthLayer::new(key).layer(inner)
    }

    /// Wraps `inner`, sending `key` only to requests for `origin`.
    pub fn for_origin(inner: S, key: impl Into<KeySource>, origin: Origin) -> Self {
        AuthLayer::new(key).for_origin(origin).layer(inner)
    }

    pub(super) fn from_config(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let sent = self.config.stamp_request(&mut req);
        ResponseFuture::new(self.inner.call(req), sent)
    }
}

impl<S: fmt::Debug> fmt::Debug for Auth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .field("config", &*self.config)
            .finish()
    }
}
