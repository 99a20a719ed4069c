use std::fmt;
use std::sync::Arc;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Uri};
use tower_layer::Layer;

use super::{Auth, KeyGuardLayer};
use crate::{ApiKey, ConfigError, KeySource, Origin, X_INFOPLUG_API_KEY};

/// Which header carries the key, and in which form.
///
/// ```
/// use tower_infoplug::AuthHeader;
///
/// assert_eq!(AuthHeader::default(), AuthHeader::api_key());
/// assert_eq!(AuthHeader::bearer().name(), "authorization");
/// assert!(AuthHeader::custom("x-api-key").is_ok());
/// assert!(AuthHeader::custom("content-length").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthHeader {
    name: HeaderName,
    bearer: bool,
}

impl Default for AuthHeader {
    fn default() -> Self {
        Self::api_key()
    }
}

impl AuthHeader {
    /// `X-INFOPLUG-API-KEY: <key>`, what the current API documents (the default).
    pub fn api_key() -> Self {
        Self {
            name: X_INFOPLUG_API_KEY,
            bearer: false,
        }
    }

    /// `Authorization: <key>`, what earlier versions of the API documented.
    pub fn authorization() -> Self {
        Self {
            name: header::AUTHORIZATION,
            bearer: false,
        }
    }

    /// `Authorization: Bearer <key>`.
    pub fn bearer() -> Self {
        Self {
            name: header::AUTHORIZATION,
            bearer: true,
        }
    }

    /// `<name>: <key>`, for a gateway or compatible API that reads another header.
    ///
    /// Names that HTTP itself gives a meaning to (`host`, `content-length`, `connection`, ...)
    /// are rejected.
    pub fn custom(name: &str) -> Result<Self, ConfigError> {
        let invalid = || ConfigError::InvalidHeaderName {
            name: name.chars().take(100).collect(),
        };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let reserved = [
            header::HOST,
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
            header::UPGRADE,
            header::TE,
            header::TRAILER,
        ];
        if reserved.contains(&name) {
            return Err(invalid());
        }
        Ok(Self {
            name,
            bearer: false,
        })
    }

    /// The header's name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    fn value<'k>(&self, key: &'k ApiKey) -> &'k HeaderValue {
        if self.bearer { key.bearer() } else { key.raw() }
    }
}

/// Adds the API key to requests. See the [module docs](crate::auth).
///
/// ```
/// use http::{Request, Response};
/// use tower::{Layer, ServiceExt, service_fn};
/// use tower_infoplug::{ApiKey, AuthHeader, AuthLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Echoes the Authorization header it receives.
/// let transport = service_fn(|req: Request<()>| async move {
///     Ok::<_, std::convert::Infallible>(Response::new(req.headers().get("authorization").cloned()))
/// });
/// let client = AuthLayer::new(ApiKey::new("ip_live_key")?)
///     .header(AuthHeader::bearer())
///     .for_origin("https://api.infoplug.io".parse()?)
///     .layer(transport);
///
/// let req = Request::get("https://api.infoplug.io/v1/profile").body(())?;
/// let sent = client.oneshot(req).await?.into_body().expect("stamped");
/// assert_eq!(sent, "Bearer ip_live_key");
/// assert!(sent.is_sensitive()); // never printed by a TraceLayer
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AuthLayer {
    pub(super) config: Arc<Config>,
}

pub(super) struct Config {
    key: KeySource,
    header: AuthHeader,
    override_existing: bool,
    origin: Option<Origin>,
}

impl AuthLayer {
    /// Sends `key` (an [`ApiKey`] or a rotatable [`KeyHandle`](crate::KeyHandle)) in
    /// `X-INFOPLUG-API-KEY` on every request.
    pub fn new(key: impl Into<KeySource>) -> Self {
        Self {
            config: Arc::new(Config {
                key: key.into(),
                header: AuthHeader::default(),
                override_existing: false,
                origin: None,
            }),
        }
    }

    /// Sends the key in `header` instead of `X-INFOPLUG-API-KEY`.
    pub fn header(mut self, header: AuthHeader) -> Self {
        self.config_mut().header = header;
        self
    }

    /// Whether the layer's key replaces one the caller already set on the request.
    ///
    /// Off by default: a caller-set key wins, so one stack can serve several accounts. Either
    /// way the header never ends up with two values.
    pub fn override_existing(mut self, yes: bool) -> Self {
        self.config_mut().override_existing = yes;
        self
    }

    /// Sends the key only to requests for `origin`, and strips it from requests for any other.
    ///
    /// Without an origin the key goes on every request the layer sees: fine for a transport
    /// that can only reach the API, risky under a redirect follower or for download URLs.
    pub fn for_origin(mut self, origin: Origin) -> Self {
        self.config_mut().origin = Some(origin);
        self
    }

    /// The origin the key is scoped to, if any.
    pub fn origin(&self) -> Option<&Origin> {
        self.config.origin.as_ref()
    }

    /// A [`KeyGuardLayer`] for this layer's key, to place next to the transport when a
    /// redirect follower (or anything else that re-sends requests) sits between this layer and
    /// the transport.
    ///
    /// Fails with [`ConfigError::MissingOrigin`] when the layer has no
    /// [origin](Self::for_origin): without one, every request is taken to be for the API.
    pub fn guard(&self) -> Result<KeyGuardLayer, ConfigError> {
        if self.config.has_origin() {
            Ok(self.guard_unchecked())
        } else {
            Err(ConfigError::MissingOrigin)
        }
    }

    /// [`Self::guard`] for a layer known to have an origin (without one it removes nothing).
    pub(crate) fn guard_unchecked(&self) -> KeyGuardLayer {
        KeyGuardLayer::from_config(Arc::clone(&self.config))
    }

    fn config_mut(&mut self) -> &mut Config {
        // Builder methods run before the layer is shared; a clone that is already shared gets
        // its own copy (copying a key copies no key bytes).
        Arc::make_mut(&mut self.config)
    }
}

impl Clone for Config {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            header: self.header.clone(),
            override_existing: self.override_existing,
            origin: self.origin.clone(),
        }
    }
}

impl Config {
    /// Puts the key on a request for the API origin and keeps it off any other; returns the
    /// credential the request carries afterwards, so an error that echoes it can be redacted.
    /// In place: the request is not taken apart and put together again (two moves of its
    /// head).
    pub(super) fn stamp_request<B>(&self, req: &mut Request<B>) -> Option<HeaderValue> {
        if !self.for_us(req.uri(), req.headers()) {
            self.take_ours_off(req.headers_mut());
            return None;
        }
        self.put_key(req.headers_mut())
    }

    /// [`Config::stamp_request`] on a request's parts.
    #[cfg(test)]
    pub(super) fn stamp(&self, uri: &Uri, headers: &mut HeaderMap) -> Option<HeaderValue> {
        if self.keep_off(uri, headers) {
            return None;
        }
        self.put_key(headers)
    }

    /// Puts the key on a request for the API origin, unless the caller set one and the layer
    /// does not override it; returns the credential the request carries now.
    fn put_key(&self, headers: &mut HeaderMap) -> Option<HeaderValue> {
        let name = self.header.name();
        // `get_mut` then `insert` rather than the entry API: on the usual empty map `get_mut`
        // returns before hashing, and the entry API measured slower.
        if !self.override_existing
            && let Some(existing) = headers.get_mut(name)
        {
            existing.set_sensitive(true);
            return Some(existing.clone());
        }
        let value = self.key.with_key(|key| self.header.value(key).clone());
        headers.insert(name.clone(), value.clone());
        Some(value)
    }

    /// Whether the key may go with a request for `uri`.
    fn for_us(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        self.origin.as_ref().is_none_or(|o| o.matches(uri, headers))
    }

    /// For a request that is not for the API origin, takes any credential of ours off it and
    /// returns `true`; returns `false` for a request the key may go to.
    ///
    /// "Ours" is any value of `X-INFOPLUG-API-KEY` (whichever header the layer uses) and of a
    /// custom header the layer uses, so that a per-request tenant key copied by a redirect
    /// follower does not travel either; in `Authorization`, it is our key, or one a rotated
    /// [`KeyHandle`](crate::KeyHandle) replaced (a request stamped before the rotation may
    /// still be on its way). A different `Authorization` value stays: it may be that origin's
    /// own credential, and redirect followers already drop `Authorization` across origins.
    pub(super) fn keep_off(&self, uri: &Uri, headers: &mut HeaderMap) -> bool {
        if self.for_us(uri, headers) {
            return false;
        }
        self.take_ours_off(headers);
        true
    }

    /// The removal half of [`Config::keep_off`], for a request known not to be for the API.
    fn take_ours_off(&self, headers: &mut HeaderMap) {
        let name = self.header.name();
        let ours = headers.get(name).is_some_and(|sent| {
            *name != header::AUTHORIZATION || self.key.any_key(|key| sent == self.header.value(key))
        });
        if ours {
            headers.remove(name);
            crate::trace::debug!(header = %name, "removed the API key from a request for another origin");
        }
        if *name != X_INFOPLUG_API_KEY && headers.remove(X_INFOPLUG_API_KEY).is_some() {
            crate::trace::debug!(header = %X_INFOPLUG_API_KEY, "removed the API key from a request for another origin");
        }
    }

    /// Whether the key is scoped to an origin.
    pub(super) fn has_origin(&self) -> bool {
        self.origin.is_some()
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth::from_config(inner, Arc::clone(&self.config))
    }
}

impl fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("key", &self.key)
            .field("header", &self.header)
            .field("override_existing", &self.override_existing)
            .field("origin", &self.origin)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyHandle;

    fn layer() -> AuthLayer {
        AuthLayer::new(ApiKey::new("k-123").unwrap())
    }

    fn stamp(layer: &AuthLayer, uri: &str, headers: &mut HeaderMap) -> Option<HeaderValue> {
        layer.config.stamp(&uri.parse().unwrap(), headers)
    }

    #[test]
    fn every_header_form_carries_the_key_once() {
        for (header, name, value) in [
            (AuthHeader::api_key(), "x-infoplug-api-key", "k-123"),
            (AuthHeader::authorization(), "authorization", "k-123"),
            (AuthHeader::bearer(), "authorization", "Bearer k-123"),
            (
                AuthHeader::custom("X-Api-Key").unwrap(),
                "x-api-key",
                "k-123",
            ),
        ] {
            let layer = layer().header(header).override_existing(true);
            let mut headers = HeaderMap::new();
            headers.append(name, "stale-1".parse().unwrap());
            headers.append(name, "stale-2".parse().unwrap());
            let sent = stamp(&layer, "/v1/x", &mut headers).unwrap();
            assert_eq!(sent, value);
            let values: Vec<_> = headers.get_all(name).iter().collect();
            assert_eq!(values, [value], "{name}");
            assert!(values.iter().all(|v| v.is_sensitive()));
        }
    }

    #[test]
    fn a_caller_set_key_wins_unless_overridden() {
        let mut headers = HeaderMap::new();
        headers.insert(X_INFOPLUG_API_KEY, "tenant-7".parse().unwrap());
        let sent = stamp(&layer(), "/v1/x", &mut headers).unwrap();
        assert_eq!(sent, "tenant-7");
        assert_eq!(headers[&X_INFOPLUG_API_KEY], "tenant-7");
        assert!(headers[&X_INFOPLUG_API_KEY].is_sensitive());

        let sent = stamp(&layer().override_existing(true), "/v1/x", &mut headers).unwrap();
        assert_eq!(sent, "k-123");
        assert_eq!(headers.get_all(&X_INFOPLUG_API_KEY).iter().count(), 1);
    }

    #[test]
    fn the_key_stays_on_its_origin() {
        let layer = layer().for_origin(Origin::parse("https://api.infoplug.io").unwrap());
        let mut headers = HeaderMap::new();
        assert!(stamp(&layer, "https://api.infoplug.io/v1", &mut headers).is_some());
        // The same headers copied to a redirect target lose our key...
        assert!(stamp(&layer, "https://evil.example/v1", &mut headers).is_none());
        assert!(headers.get(&X_INFOPLUG_API_KEY).is_none());
        // ...and so does a tenant's key, which the same follower would copy as well.
        headers.insert(X_INFOPLUG_API_KEY, "tenant-7".parse().unwrap());
        assert!(stamp(&layer, "https://evil.example/v1", &mut headers).is_none());
        assert!(headers.get(&X_INFOPLUG_API_KEY).is_none());
    }

    #[test]
    fn another_origins_own_authorization_stays_but_ours_goes() {
        let layer = layer()
            .header(AuthHeader::bearer())
            .for_origin(Origin::parse("https://api.infoplug.io").unwrap());
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer k-123".parse().unwrap());
        assert!(stamp(&layer, "https://evil.example/v1", &mut headers).is_none());
        assert!(headers.get(header::AUTHORIZATION).is_none());
        headers.insert(
            header::AUTHORIZATION,
            "Bearer storage-token".parse().unwrap(),
        );
        assert!(stamp(&layer, "https://storage.example/f", &mut headers).is_none());
        assert_eq!(headers[header::AUTHORIZATION], "Bearer storage-token");
    }

    #[test]
    fn a_rotated_key_is_used_from_the_next_request_on() {
        let handle = KeyHandle::new(ApiKey::new("first").unwrap());
        let layer = AuthLayer::new(&handle).header(AuthHeader::bearer());
        let mut headers = HeaderMap::new();
        assert_eq!(stamp(&layer, "/", &mut headers).unwrap(), "Bearer first");
        handle.rotate(ApiKey::new("second").unwrap());
        let mut headers = HeaderMap::new();
        assert_eq!(stamp(&layer, "/", &mut headers).unwrap(), "Bearer second");
    }

    #[test]
    fn custom_header_names_are_checked() {
        assert!(AuthHeader::custom("bad header").is_err());
        assert!(AuthHeader::custom("").is_err());
        assert!(AuthHeader::custom("Host").is_err());
        assert_eq!(
            AuthHeader::custom("Authorization").unwrap(),
            AuthHeader::authorization()
        );
    }

    #[test]
    fn debug_of_a_configured_layer_shows_no_key() {
        let layer = layer()
            .header(AuthHeader::bearer())
            .for_origin(Origin::parse("https://api.infoplug.io").unwrap());
        let shown = format!("{layer:?} {:?}", layer.layer(()));
        assert!(!shown.contains("k-123"), "{shown}");
        assert!(shown.contains("api.infoplug.io"), "{shown}");
    }
}
