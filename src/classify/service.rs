use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::layer::Settings;
use super::{ClassifyBody, ClassifyLayer, ResponseFuture};

/// Classifies 4xx/5xx responses; built by [`ClassifyLayer`]. See the
/// [module docs](crate::classify).
#[derive(Debug, Clone)]
pub struct Classify<S> {
    inner: S,
    settings: Settings,
}

impl<S> Classify<S> {
    /// Wraps `inner` with the default limits (64 KiB within 2 s).
    pub fn new(inner: S) -> Self {
        ClassifyLayer::new().layer(inner)
    }

    pub(super) fn from_settings(inner: S, settings: Settings) -> Self {
        Self { inner, settings }
    }

    define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Classify<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<ClassifyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        ResponseFuture::new(self.inner.call(req), self.settings)
    }
}
