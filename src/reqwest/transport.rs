use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::BoxError;
use crate::retry::ReplayBody;

/// A tower transport over a `reqwest::Client`: `Service<http::Request<ReplayBody<B>>>`
/// answering `http::Response<reqwest::Body>`, with `reqwest::Error` as its error (which
/// [`DefaultPolicy`](crate::DefaultPolicy) reads: a refused connection is "never sent").
///
/// Bodies are handed over as they are, not copied: the request body streams from the replay
/// buffer, the response body is reqwest's.
///
/// ```
/// use tower::Layer;
/// use tower_infoplug::{ApiKey, InfoPlugLayer, InfoPlugService};
/// use tower_infoplug::reqwest::ReqwestTransport;
///
/// let layer = InfoPlugLayer::new(ApiKey::new("ip_live_key")?, "https://api.infoplug.io")?;
/// let client: InfoPlugService<ReqwestTransport> = layer.layer(ReqwestTransport::new()?);
/// # let _ = client;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ReqwestTransport {
    client: ::reqwest::Client,
}

impl ReqwestTransport {
    /// A transport over a new `reqwest::Client` with redirects off (a 3xx comes back to the
    /// caller), so no header follows a redirect to another host.
    pub fn new() -> Result<Self, ::reqwest::Error> {
        let client = ::reqwest::Client::builder()
            .redirect(::reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { client })
    }

    /// A transport over a client you built. Build it with redirects off, or with
    /// [`redirect_policy`](super::redirect_policy): reqwest follows redirects below the auth
    /// layer and copies `X-INFOPLUG-API-KEY` to the host a redirect names.
    pub fn from_client(client: ::reqwest::Client) -> Self {
        Self { client }
    }

    /// The client underneath.
    pub fn client(&self) -> &::reqwest::Client {
        &self.client
    }
}

impl fmt::Debug for ReqwestTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReqwestTransport").finish_non_exhaustive()
    }
}

impl<B> Service<Request<ReplayBody<B>>> for ReqwestTransport
where
    B: Body + Send + Sync + 'static,
    B::Data: Send + Sync,
    B::Error: Into<BoxError>,
{
    type Response = Response<::reqwest::Body>;
    type Error = ::reqwest::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // reqwest's pool queues internally.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReplayBody<B>>) -> Self::Future {
        let state = match ::reqwest::Request::try_from(req.map(::reqwest::Body::wrap)) {
            Ok(req) => State::Pending(Box::pin(self.client.execute(req))),
            Err(error) => State::Invalid(Some(error)),
        };
        ResponseFuture { state }
    }
}

type Pending = Pin<Box<dyn Future<Output = Result<::reqwest::Response, ::reqwest::Error>> + Send>>;

/// The future of a [`ReqwestTransport`] call.
pub struct ResponseFuture {
    state: State,
}

enum State {
    // reqwest's own future cannot be named, so it is boxed (reqwest boxes its futures too).
    Pending(Pending),
    // The request could not be made a reqwest request (a URI reqwest's URL parser refuses).
    Invalid(Option<::reqwest::Error>),
}

impl Future for ResponseFuture {
    type Output = Result<Response<::reqwest::Body>, ::reqwest::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Pending(pending) => pending.as_mut().poll(cx).map_ok(Response::from),
            State::Invalid(error) => match error.take() {
                Some(error) => Poll::Ready(Err(error)),
                // Polled again after it completed: it stays pending, as a fused future would.
                None => Poll::Pending,
            },
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
