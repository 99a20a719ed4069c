//! The whole stack in one layer: retry → auth → classify, configured once.

use std::fmt;

use tower_layer::Layer;

use crate::auth::Auth;
use crate::classify::{Classify, ClassifyBuilder};
use crate::retry::{Retry, RetryBuilder, RetryLayer};
use crate::{AuthHeader, AuthLayer, ClassifyLayer, ConfigError, KeySource, Origin};

/// The environment variable [`InfoPlugLayer::from_env`] reads the base URL from.
pub const BASE_URL_ENV: &str = "INFOPLUG_BASE_URL";

/// The service [`InfoPlugLayer`] makes of a transport `S`, to name in a struct field or an
/// axum `State`: `InfoPlugService<Client<HttpConnector, ReplayBody<Body>>>`. Its response is
/// `http::Response<ClassifyBody<S's response body>>` and its error [`RetryError<S::Error>`](crate::RetryError).
///
/// A field that must not name the transport holds the stack boxed: tower's
/// `BoxCloneSyncService` is `Clone + Send + Sync`, as axum's `State` asks.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Empty;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower::util::BoxCloneSyncService;
/// use tower::{BoxError, Layer, ServiceExt};
/// use tower_infoplug::{ApiKey, ClassifyBody, InfoPlugLayer};
///
/// type Api = BoxCloneSyncService<
///     http::Request<Empty<Bytes>>,
///     http::Response<ClassifyBody<hyper::body::Incoming>>,
///     BoxError,
/// >;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let infoplug = InfoPlugLayer::new(ApiKey::new("ip_live_key")?, "http://127.0.0.1:3000")?;
/// let stack = infoplug.layer(Client::builder(TokioExecutor::new()).build_http());
/// let api: Api = BoxCloneSyncService::new(stack.map_err(BoxError::from));
/// # let _ = api;
/// # Ok(())
/// # }
/// ```
pub type InfoPlugService<S> = Retry<Auth<Classify<S>>>;

/// The recommended stack in one layer: [`RetryLayer`] over [`AuthLayer`] over
/// [`ClassifyLayer`], with the key scoped to the API's origin. Auth over the classifier, so
/// the auth layer redacts the credential from the classified error as the response passes.
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::{BodyExt, Full};
/// use tower::{Layer, ServiceExt, service_fn};
/// use tower_infoplug::{ApiKey, InfoPlugLayer, ResponseExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Stands in for the network: reports which key arrived.
/// let transport = service_fn(|req: Request<_>| async move {
///     let key = req.headers().get("x-infoplug-api-key").map(|v| v.to_str().unwrap().to_owned());
///     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(key.unwrap_or_default()))))
/// });
///
/// let client = InfoPlugLayer::builder(ApiKey::new("ip_live_key")?, "https://api.infoplug.test")
///     .retry(|r| r.max_attempts(4))
///     .build()?
///     .layer(transport);
///
/// let req = Request::get("https://api.infoplug.test/v1/profile").body(Full::<Bytes>::default())?;
/// let res = client.clone().oneshot(req).await?;
/// assert_eq!(res.retry_info().attempts(), 1);
/// assert_eq!(res.into_body().collect().await?.to_bytes(), "ip_live_key");
///
/// // Another origin (a download link, a redirect target) never gets the key.
/// let req = Request::get("https://cdn.example/export.csv").body(Full::<Bytes>::default())?;
/// assert!(client.oneshot(req).await?.into_body().collect().await?.to_bytes().is_empty());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct InfoPlugLayer {
    /// The base URL without trailing slashes.
    base_url: std::sync::Arc<str>,
    retry: RetryLayer,
    classify: ClassifyLayer,
    auth: AuthLayer,
}

impl InfoPlugLayer {
    /// The stack with default limits, sending `key` to `base_url`'s origin only.
    pub fn new(key: impl Into<KeySource>, base_url: &str) -> Result<Self, ConfigError> {
        Self::builder(key, base_url).build()
    }

    /// The key from `INFOPLUG_API_KEY` and the base URL from `INFOPLUG_BASE_URL`. With both
    /// missing, the error names both, and what to set each to.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(crate::key::env_var)
    }

    /// [`from_env`](Self::from_env) with the variables read by `var`.
    fn from_vars(var: impl Fn(&str) -> Result<String, ConfigError>) -> Result<Self, ConfigError> {
        let key = var(crate::API_KEY_ENV).and_then(crate::ApiKey::new);
        match (key, var(BASE_URL_ENV)) {
            (Ok(key), Ok(base_url)) => Self::new(key, &base_url),
            (
                Err(ConfigError::MissingEnvVar { name: a }),
                Err(ConfigError::MissingEnvVar { name: b }),
            ) => Err(ConfigError::MissingEnvVars { names: vec![a, b] }),
            (Err(err), _) | (_, Err(err)) => Err(err),
        }
    }

    /// Other settings.
    pub fn builder(key: impl Into<KeySource>, base_url: &str) -> InfoPlugBuilder {
        InfoPlugBuilder {
            key: key.into(),
            base_url: base_url.to_owned(),
            header: AuthHeader::default(),
            retry: RetryLayer::builder(),
            classify: ClassifyLayer::builder(),
        }
    }

    /// The retry layer (its clones share its budget and cooldown).
    pub fn retry(&self) -> &RetryLayer {
        &self.retry
    }

    /// A [`KeyGuardLayer`](crate::KeyGuardLayer) for this stack's key and origin, to place next
    /// to the transport when a redirect follower sits between this layer and the transport.
    pub fn guard(&self) -> crate::KeyGuardLayer {
        self.auth.guard_unchecked()
    }

    /// The origin the key is scoped to.
    pub fn origin(&self) -> Option<&Origin> {
        self.auth.origin()
    }

    /// The base URL the layer was built with, without trailing slashes.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The URI of `path_and_query` under the base URL, with exactly one `/` between them
    /// whatever slashes the two bring: `https://api.infoplug.io/` and `/v1/profile` give
    /// `https://api.infoplug.io/v1/profile`.
    ///
    /// ```
    /// use tower_infoplug::{ApiKey, InfoPlugLayer};
    ///
    /// let layer = InfoPlugLayer::new(ApiKey::new("ip_live_key")?, "https://api.infoplug.io/")?;
    /// assert_eq!(layer.uri("/v1/profile?x=1")?, "https://api.infoplug.io/v1/profile?x=1");
    /// assert_eq!(layer.uri("v1/jobs")?, "https://api.infoplug.io/v1/jobs");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn uri(&self, path_and_query: &str) -> Result<http::Uri, http::uri::InvalidUri> {
        format!(
            "{}/{}",
            self.base_url,
            path_and_query.trim_start_matches('/')
        )
        .parse()
    }
}

impl<S> Layer<S> for InfoPlugLayer {
    type Service = InfoPlugService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.retry
            .layer(self.auth.layer(self.classify.layer(inner)))
    }
}

impl fmt::Debug for InfoPlugLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfoPlugLayer")
            .field("base_url", &self.base_url)
            .field("retry", &self.retry)
            .field("classify", &self.classify)
            .field("auth", &self.auth)
            .finish()
    }
}

/// Builds an [`InfoPlugLayer`]; every setting is checked in [`build`](Self::build).
#[must_use = "call `build` to get the layer"]
pub struct InfoPlugBuilder {
    key: KeySource,
    base_url: String,
    header: AuthHeader,
    retry: RetryBuilder,
    classify: ClassifyBuilder,
}

impl InfoPlugBuilder {
    /// The header that carries the key (default `X-INFOPLUG-API-KEY`).
    pub fn header(mut self, header: AuthHeader) -> Self {
        self.header = header;
        self
    }

    /// The retry settings (attempts, hint cap, deadline, pacing, ...): see [`RetryBuilder`].
    pub fn retry(mut self, configure: impl FnOnce(RetryBuilder) -> RetryBuilder) -> Self {
        self.retry = configure(self.retry);
        self
    }

    /// Any classifier setting.
    pub fn classify(mut self, configure: impl FnOnce(ClassifyBuilder) -> ClassifyBuilder) -> Self {
        self.classify = configure(self.classify);
        self
    }

    /// Checks everything and builds the layer.
    pub fn build(self) -> Result<InfoPlugLayer, ConfigError> {
        let origin = Origin::parse(&self.base_url)?;
        #[cfg(feature = "redis")]
        let retry = {
            // A fleet names partitions by credential; the preset's requests carry none until
            // the auth layer below stamps the key, so the key's hash tells fleets apart.
            let mut sha = sha1_smol::Sha1::new();
            sha.update(b"tower-infoplug key\0");
            self.key.with_key(|key| sha.update(key.raw().as_bytes()));
            self.retry.fleet_credential(&sha.digest().bytes())
        };
        #[cfg(not(feature = "redis"))]
        let retry = self.retry;
        Ok(InfoPlugLayer {
            base_url: self.base_url.trim_end_matches('/').into(),
            retry: retry.build()?,
            classify: self.classify.build()?,
            auth: AuthLayer::new(self.key)
                .header(self.header)
                .for_origin(origin),
        })
    }
}

impl fmt::Debug for InfoPlugBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfoPlugBuilder")
            .field("key", &self.key)
            .field("header", &self.header)
            .field("retry", &self.retry)
            .field("classify", &self.classify)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// `from_env` over a made-up environment of `set` variables.
    fn from(set: &[(&str, &str)]) -> Result<InfoPlugLayer, ConfigError> {
        InfoPlugLayer::from_vars(|name| {
            set.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
                .ok_or_else(|| ConfigError::MissingEnvVar {
                    name: name.to_owned(),
                })
        })
    }

    #[test]
    fn from_env_names_every_missing_variable_at_once() {
        let err = from(&[]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::MissingEnvVars {
                names: vec![crate::API_KEY_ENV.into(), BASE_URL_ENV.into()]
            }
        );
        assert!(
            err.to_string()
                .contains("set INFOPLUG_BASE_URL to the API's base URL")
        );
        // One missing: that one, with what to set it to.
        let err = from(&[(BASE_URL_ENV, "https://api.test")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("INFOPLUG_API_KEY is not set: set it to your InfoPlug API key"),
            "{err}"
        );
        let err = from(&[(crate::API_KEY_ENV, "ip_k")]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::MissingEnvVar {
                name: BASE_URL_ENV.into()
            }
        );
        // A key that is set but unusable is that error, not a missing one.
        let err = from(&[(crate::API_KEY_ENV, "bad key")]).unwrap_err();
        assert!(matches!(err, ConfigError::InvalidApiKey { .. }), "{err}");
        assert!(
            from(&[
                (crate::API_KEY_ENV, "ip_k"),
                (BASE_URL_ENV, "https://api.test")
            ])
            .is_ok()
        );
    }
}
