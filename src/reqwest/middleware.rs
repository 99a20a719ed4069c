use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use ::reqwest_middleware::{Middleware, Next};
use http::Extensions;
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::retry::ReplayBody;
use crate::{BoxError, ClassifyBody, ConfigError, InfoPlugLayer, RetryError};

/// The whole stack as a `reqwest_middleware::Middleware`: the key, the classification and
/// the retries of [`InfoPlugLayer`], for `ClientWithMiddleware` users. See the
/// [module docs](super).
///
/// Clones, and every request through them, share one state (gates, pacing, budget), as
/// clones of the layer do. A request's middleware extensions reach the middlewares below
/// on every attempt, and what they add comes back after the last one.
///
/// A transport error is returned as reqwest-middleware's own error, unchanged (so
/// `is_connect()`, `is_timeout()` and the like still work); the retry layer's own refusals
/// (a deadline, a shut gate) come back as `reqwest_middleware::Error::Middleware` holding the
/// [`RetryError`].
#[derive(Clone)]
pub struct InfoPlugMiddleware {
    layer: InfoPlugLayer,
}

impl InfoPlugMiddleware {
    /// The middleware for a configured stack.
    pub fn new(layer: InfoPlugLayer) -> Self {
        Self { layer }
    }

    /// The key from `INFOPLUG_API_KEY` and the base URL from `INFOPLUG_BASE_URL`, as
    /// [`InfoPlugLayer::from_env`] reads them.
    pub fn from_env() -> Result<Self, ConfigError> {
        InfoPlugLayer::from_env().map(Self::new)
    }

    /// The stack this middleware runs.
    pub fn layer(&self) -> &InfoPlugLayer {
        &self.layer
    }

    /// The URL of `path_and_query` under the base URL, as reqwest's `get` and `post` take it,
    /// with exactly one `/` between them whatever slashes the two bring (see
    /// [`InfoPlugLayer::uri`]): a base URL ending in `/` does not send `//v1/profile`.
    ///
    /// ```
    /// use tower_infoplug::{ApiKey, InfoPlugLayer, reqwest::InfoPlugMiddleware};
    ///
    /// let layer = InfoPlugLayer::new(ApiKey::new("ip_live_key")?, "https://api.infoplug.io/")?;
    /// let infoplug = InfoPlugMiddleware::new(layer);
    /// assert_eq!(infoplug.url("/v1/profile")?, "https://api.infoplug.io/v1/profile");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn url(&self, path_and_query: &str) -> Result<String, http::uri::InvalidUri> {
        self.layer.uri(path_and_query).map(|uri| uri.to_string())
    }
}

impl From<InfoPlugLayer> for InfoPlugMiddleware {
    fn from(layer: InfoPlugLayer) -> Self {
        Self::new(layer)
    }
}

impl fmt::Debug for InfoPlugMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfoPlugMiddleware")
            .field("layer", &self.layer)
            .finish()
    }
}

#[async_trait::async_trait]
impl Middleware for InfoPlugMiddleware {
    async fn handle(
        &self,
        req: ::reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> ::reqwest_middleware::Result<::reqwest::Response> {
        let req = http::Request::<::reqwest::Body>::try_from(req)?;
        let shared = Arc::new(Mutex::new(std::mem::take(extensions)));
        let mut stack = self.layer.layer(NextService {
            next,
            extensions: Arc::clone(&shared),
        });
        let outcome = std::future::poll_fn(|cx| {
            Service::<http::Request<::reqwest::Body>>::poll_ready(&mut stack, cx)
        })
        .await;
        let outcome = match outcome {
            Ok(()) => stack.call(req).await,
            Err(error) => Err(error),
        };
        *extensions = std::mem::take(&mut *shared.lock().unwrap_or_else(PoisonError::into_inner));
        match outcome {
            Ok(res) => Ok(into_reqwest(res)),
            Err(RetryError::Transport { error, .. }) => Err(error),
            Err(other) => Err(::reqwest_middleware::Error::middleware(other)),
        }
    }
}

/// The URL reqwest reports for a response, kept across the trip through `http` types.
#[derive(Clone)]
struct FinalUrl(::reqwest::Url);

fn into_reqwest(res: http::Response<ClassifyBody<::reqwest::Body>>) -> ::reqwest::Response {
    use ::reqwest::ResponseBuilderExt;
    let mut res = res.map(::reqwest::Body::wrap);
    if let Some(FinalUrl(url)) = res.extensions_mut().remove() {
        // reqwest keeps a response's URL in an extension only its builder method can set.
        if let Ok(carrier) = http::Response::builder().url(url).body(()) {
            res.extensions_mut()
                .extend(carrier.into_parts().0.extensions);
        }
    }
    ::reqwest::Response::from(res)
}

/// The rest of the middleware chain as the transport under the stack: one run per attempt.
#[derive(Clone)]
struct NextService<'a> {
    next: Next<'a>,
    extensions: Arc<Mutex<Extensions>>,
}

type Attempt<'a> = Pin<
    Box<
        dyn Future<Output = Result<http::Response<::reqwest::Body>, ::reqwest_middleware::Error>>
            + Send
            + 'a,
    >,
>;

impl<'a, B> Service<http::Request<ReplayBody<B>>> for NextService<'a>
where
    B: Body + Send + Sync + 'static,
    B::Data: Send + Sync,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<::reqwest::Body>;
    type Error = ::reqwest_middleware::Error;
    type Future = Attempt<'a>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<ReplayBody<B>>) -> Self::Future {
        let next = self.next.clone();
        let shared = Arc::clone(&self.extensions);
        Box::pin(async move {
            let req = ::reqwest::Request::try_from(req.map(::reqwest::Body::wrap))?;
            // Each attempt runs with its own copy, so an attempt dropped midway (a timeout)
            // loses nothing; a completed one's additions are kept for the next and the caller.
            let mut extensions = lock(&shared).clone();
            let res = next.run(req, &mut extensions).await;
            *lock(&shared) = extensions;
            let res = res?;
            let url = FinalUrl(res.url().clone());
            let mut res = http::Response::from(res);
            res.extensions_mut().insert(url);
            Ok(res)
        })
    }
}

fn lock(extensions: &Mutex<Extensions>) -> std::sync::MutexGuard<'_, Extensions> {
    extensions.lock().unwrap_or_else(PoisonError::into_inner)
}
