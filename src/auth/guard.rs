use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use super::layer::Config;

/// Keeps the API key off requests for other origins; place it next to the transport.
///
/// [`AuthLayer`](crate::AuthLayer) protects the requests that pass through it. A layer below it
/// that sends requests of its own, above all a redirect follower such as tower-http's
/// `FollowRedirect`, copies the stamped headers to the new target where the auth layer never
/// sees them. tower-http drops `Authorization` on a cross-origin hop, but it does not know
/// `X-INFOPLUG-API-KEY`. The guard, built by [`AuthLayer::guard`](crate::AuthLayer::guard) and
/// placed just above the transport, removes the credential from every request that is not for
/// the API origin (the same rule the auth layer applies) and adds nothing. On requests for the
/// API it costs one origin comparison.
///
/// ```
/// use http::{Request, Response};
/// use tower::{Layer, ServiceExt, service_fn};
/// use tower_infoplug::{ApiKey, AuthLayer, Origin};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let auth = AuthLayer::new(ApiKey::new("ip_test_key")?)
///     .for_origin(Origin::parse("https://api.infoplug.io")?);
/// // In a stack: auth.clone(), then FollowRedirectLayer, then auth.guard()?, then the client.
/// let transport = auth.guard()?.layer(service_fn(|req: Request<()>| async move {
///     // Stands in for the network: report which key arrived.
///     let seen = req.headers().get("x-infoplug-api-key").cloned();
///     Ok::<_, std::convert::Infallible>(Response::new(seen))
/// }));
///
/// // What a follower sends after a redirect: the original headers, to the new target.
/// let mut hop = Request::get("https://cdn.example/export.csv").body(())?;
/// hop.headers_mut().insert("x-infoplug-api-key", "ip_test_key".parse()?);
/// assert!(transport.clone().oneshot(hop).await?.into_body().is_none());
///
/// // Requests for the API pass untouched.
/// let mut to_api = Request::get("https://api.infoplug.io/v1/profile").body(())?;
/// to_api.headers_mut().insert("x-infoplug-api-key", "ip_test_key".parse()?);
/// assert_eq!(transport.oneshot(to_api).await?.into_body().unwrap(), "ip_test_key");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct KeyGuardLayer {
    config: Arc<Config>,
}

impl KeyGuardLayer {
    pub(super) fn from_config(config: Arc<Config>) -> Self {
        Self { config }
    }
}

impl<S> Layer<S> for KeyGuardLayer {
    type Service = KeyGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyGuard {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

impl fmt::Debug for KeyGuardLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyGuardLayer")
            .field("config", &*self.config)
            .finish()
    }
}

/// Keeps the API key off requests for other origins; built by [`KeyGuardLayer`].
#[derive(Clone)]
pub struct KeyGuard<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> KeyGuard<S> {
    define_inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for KeyGuard<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        self.config.keep_off(&parts.uri, &mut parts.headers);
        self.inner.call(Request::from_parts(parts, body))
    }
}

impl<S: fmt::Debug> fmt::Debug for KeyGuard<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyGuard")
            .field("inner", &self.inner)
            .field("config", &*self.config)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApiKey, AuthHeader, AuthLayer, ConfigError, Origin, X_INFOPLUG_API_KEY};
    use http::header::AUTHORIZATION;
    use http::{HeaderMap, Response};
    use std::convert::Infallible;
    use std::future::{Ready, ready};

    /// Answers with the headers it received.
    #[derive(Clone, Debug)]
    struct Echo;

    impl Service<Request<()>> for Echo {
        type Response = Response<HeaderMap>;
        type Error = Infallible;
        type Future = Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: Request<()>) -> Self::Future {
            ready(Ok(Response::new(req.into_parts().0.headers)))
        }
    }

    fn sent(guard: &mut KeyGuard<Echo>, uri: &str, headers: &[(&str, &str)]) -> HeaderMap {
        let mut req = Request::get(uri).body(()).unwrap();
        for (name, value) in headers {
            let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            req.headers_mut().insert(name, value.parse().unwrap());
        }
        let fut = guard.call(req);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut fut = std::pin::pin!(fut);
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(res)) => res.into_body(),
            other => panic!("{other:?}"),
        }
    }

    fn auth() -> AuthLayer {
        AuthLayer::new(ApiKey::new("k-123").unwrap())
            .for_origin(Origin::parse("https://api.infoplug.io").unwrap())
    }

    #[test]
    fn a_guard_needs_an_origin() {
        let unscoped = AuthLayer::new(ApiKey::new("k-123").unwrap());
        assert!(matches!(unscoped.guard(), Err(ConfigError::MissingOrigin)));
    }

    #[test]
    fn the_guard_strips_only_requests_for_other_origins_and_adds_nothing() {
        let mut guard = auth().guard().unwrap().layer(Echo);
        let to_api = sent(&mut guard, "https://API.infoplug.io:443/v1", &[]);
        assert!(to_api.is_empty(), "the guard never adds the key");
        let kept = sent(
            &mut guard,
            "https://api.infoplug.io/v1",
            &[("x-infoplug-api-key", "tenant-7")],
        );
        assert_eq!(kept[&X_INFOPLUG_API_KEY], "tenant-7");
        for value in ["k-123", "tenant-7"] {
            let hop = sent(
                &mut guard,
                "https://cdn.example/f",
                &[("x-infoplug-api-key", value), ("accept", "*/*")],
            );
            assert!(hop.get(&X_INFOPLUG_API_KEY).is_none(), "{value}");
            assert_eq!(hop["accept"], "*/*");
        }
        // Another scheme or port is another origin.
        for uri in [
            "http://api.infoplug.io/v1",
            "https://api.infoplug.io:8443/v1",
        ] {
            let hop = sent(&mut guard, uri, &[("x-infoplug-api-key", "k-123")]);
            assert!(hop.is_empty(), "{uri}");
        }
    }

    #[test]
    fn the_guard_follows_the_auth_header_choice() {
        let mut guard = auth()
            .header(AuthHeader::bearer())
            .guard()
            .unwrap()
            .layer(Echo);
        let hop = sent(
            &mut guard,
            "https://cdn.example/f",
            &[("authorization", "Bearer k-123")],
        );
        assert!(hop.get(AUTHORIZATION).is_none());
        let own = sent(
            &mut guard,
            "https://cdn.example/f",
            &[
                ("authorization", "Bearer cdn-token"),
                ("x-infoplug-api-key", "x"),
            ],
        );
        assert_eq!(own[AUTHORIZATION], "Bearer cdn-token");
        // `X-INFOPLUG-API-KEY` only ever carries an InfoPlug key: it never leaves the API.
        assert!(own.get(&X_INFOPLUG_API_KEY).is_none());
    }

    #[test]
    fn debug_of_a_guard_shows_no_key() {
        let layer = auth().guard().unwrap();
        let shown = format!("{layer:?} {:?}", layer.layer(Echo));
        assert!(!shown.contains("k-123"), "{shown}");
        assert!(shown.contains("KeyGuard"), "{shown}");
    }
}
