//! API key material: validated once, prepared as header values, never printed.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use crate::ConfigError;

/// Finding a credential in text a server sent back: for the classifier's redaction and the
/// auth layer's marking of echoed headers.
#[cfg(any(feature = "auth", feature = "classify"))]
mod secrets;
#[cfg(feature = "auth")]
pub(crate) use secrets::mark_echoes;
#[cfg(feature = "classify")]
pub(crate) use secrets::{Secrets, occurs};

/// The environment variable [`ApiKey::from_env`] reads.
pub const API_KEY_ENV: &str = "INFOPLUG_API_KEY";

/// The header the InfoPlug API reads the key from: `x-infoplug-api-key`.
pub const X_INFOPLUG_API_KEY: HeaderName = HeaderName::from_static("x-infoplug-api-key");

/// The longest API key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 4096;

/// A validated InfoPlug API key.
///
/// Building one checks the key once (non-empty, at most [`MAX_KEY_LEN`] bytes, visible ASCII
/// only: no control characters, CR/LF, spaces or non-ASCII) and prepares the header values the
/// auth layer sends, marked [sensitive](HeaderValue::set_sensitive). Cloning it copies no key
/// bytes. Its `Debug` output is a placeholder: the key cannot reach a log through this type.
///
/// ```
/// use tower_infoplug::ApiKey;
///
/// let key = ApiKey::new("ip_live_0123456789abcdef")?;
/// assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
///
/// // A stray newline from a secrets file is a clear error, and the error never quotes the key.
/// let err = ApiKey::new("ip_live_0123456789abcdef\n").unwrap_err();
/// assert!(!err.to_string().contains("ip_live"));
/// # Ok::<(), tower_infoplug::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct ApiKey {
    raw: HeaderValue,
    /// `Bearer <key>`, made once: only the auth layer sends it.
    #[cfg(feature = "auth")]
    bearer: HeaderValue,
}

impl ApiKey {
    /// Validates `key` and prepares it for sending.
    pub fn new(key: impl Into<String>) -> Result<Self, ConfigError> {
        let key = key.into();
        validate(key.as_bytes())?;
        Ok(Self {
            #[cfg(feature = "auth")]
            bearer: prepared([&b"Bearer "[..], key.as_bytes()].concat())?,
            raw: prepared(key.into_bytes())?,
        })
    }

    /// Reads the key from the `INFOPLUG_API_KEY` environment variable.
    ///
    /// A missing or non-Unicode variable, or a value that [`ApiKey::new`] rejects, is an error
    /// that names the variable, never its value.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_var(API_KEY_ENV)
    }

    /// Reads the key from the environment variable `name`.
    pub fn from_env_var(name: &str) -> Result<Self, ConfigError> {
        Self::new(env_var(name)?)
    }

    /// Whether `presented` (a credential as a request carried it, without any scheme) is
    /// this key, byte for byte. For servers that check keys (the emulator, a gateway); the
    /// comparison takes the same time wherever the first difference is.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let key = self.raw.as_bytes();
        key.len() == presented.len()
            && key
                .iter()
                .zip(presented)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }

    /// The key as a header value (`<key>`), marked sensitive.
    #[cfg(feature = "auth")]
    pub(crate) fn raw(&self) -> &HeaderValue {
        &self.raw
    }

    /// The key as a bearer credential (`Bearer <key>`), marked sensitive.
    #[cfg(feature = "auth")]
    pub(crate) fn bearer(&self) -> &HeaderValue {
        &self.bearer
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl std::str::FromStr for ApiKey {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A shared, rotatable API key.
///
/// Every clone of a handle sees the same key; [`KeyHandle::rotate`] replaces it for every layer
/// built from any clone, from the next request on, without rebuilding the stack. Requests
/// already sent keep the key they were sent with, so the handle also remembers the last
/// [`KeyHandle::REMEMBERED`] keys it replaced: the layers keep those off other origins too (a
/// redirect hop of a request stamped before a rotation carries the old key). They are never
/// sent again.
///
/// ```
/// use tower_infoplug::{ApiKey, KeyHandle};
///
/// let handle = KeyHandle::new(ApiKey::new("old-key")?);
/// let for_the_stack = handle.clone();
/// handle.rotate(ApiKey::new("new-key")?);
/// # let _ = for_the_stack;
/// # Ok::<(), tower_infoplug::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct KeyHandle {
    keys: Arc<RwLock<Keys>>,
}

struct Keys {
    current: ApiKey,
    /// The keys replaced, newest first, at most [`KeyHandle::REMEMBERED`].
    previous: VecDeque<ApiKey>,
}

impl KeyHandle {
    /// How many replaced keys a handle remembers, to keep them off other origins.
    pub const REMEMBERED: usize = 8;

    /// A handle holding `key`.
    pub fn new(key: ApiKey) -> Self {
        Self {
            keys: Arc::new(RwLock::new(Keys {
                current: key,
                previous: VecDeque::new(),
            })),
        }
    }

    /// Replaces the key for every holder of this handle.
    pub fn rotate(&self, key: ApiKey) {
        // A writer cannot leave the keys half-written, so a poisoned lock still holds valid
        // keys: recover them instead of panicking.
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(&mut keys.current, key);
        keys.previous.push_front(old);
        keys.previous.truncate(Self::REMEMBERED);
    }

    /// The key in force now.
    pub fn current(&self) -> ApiKey {
        self.read().current.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for KeyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHandle(<redacted>)")
    }
}

/// Where a layer takes its key from: a fixed [`ApiKey`] or a rotatable [`KeyHandle`].
///
/// Built with `From`, so layer constructors accept either.
#[derive(Clone)]
pub struct KeySource(Source);

#[derive(Clone)]
#[cfg_attr(not(feature = "auth"), allow(dead_code))] // read by the auth layer only
enum Source {
    Fixed(ApiKey),
    Shared(KeyHandle),
}

impl KeySource {
    /// Calls `f` with the key in force now, without copying it.
    #[cfg(feature = "auth")]
    pub(crate) fn with_key<T>(&self, f: impl FnOnce(&ApiKey) -> T) -> T {
        match &self.0 {
            Source::Fixed(key) => f(key),
            Source::Shared(handle) => f(&handle.read().current),
        }
    }

    /// Whether `f` holds for the key in force or for one it replaced (and remembers).
    #[cfg(feature = "auth")]
    pub(crate) fn any_key(&self, f: impl Fn(&ApiKey) -> bool) -> bool {
        match &self.0 {
            Source::Fixed(key) => f(key),
            Source::Shared(handle) => {
                let keys = handle.read();
                f(&keys.current) || keys.previous.iter().any(f)
            }
        }
    }
}

impl From<ApiKey> for KeySource {
    fn from(key: ApiKey) -> Self {
        Self(Source::Fixed(key))
    }
}

impl From<KeyHandle> for KeySource {
    fn from(handle: KeyHandle) -> Self {
        Self(Source::Shared(handle))
    }
}

impl From<&KeyHandle> for KeySource {
    fn from(handle: &KeyHandle) -> Self {
        Self(Source::Shared(handle.clone()))
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Source::Fixed(_) => f.write_str("KeySource::Fixed(<redacted>)"),
            Source::Shared(_) => f.write_str("KeySource::Shared(<redacted>)"),
        }
    }
}

/// The value of the environment variable `name`; a missing or non-Unicode one is an error
/// naming the variable (never its value).
pub(crate) fn env_var(name: &str) -> Result<String, ConfigError> {
    std::env::var(name).map_err(|err| match err {
        std::env::VarError::NotPresent => ConfigError::MissingEnvVar {
            name: name.to_owned(),
        },
        std::env::VarError::NotUnicode(_) => ConfigError::NonUnicodeEnvVar {
            name: name.to_owned(),
        },
    })
}

/// Checks key material: non-empty, bounded, visible ASCII only.
fn validate(key: &[u8]) -> Result<(), ConfigError> {
    if key.is_empty() {
        return Err(ConfigError::EmptyApiKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ConfigError::ApiKeyTooLong { len: key.len() });
    }
    match key.iter().position(|b| !b.is_ascii_graphic()) {
        Some(position) => Err(ConfigError::InvalidApiKey { position }),
        None => Ok(()),
    }
}

/// A sensitive header value whose clones share one allocation, so stamping it on a request
/// costs a reference-count increment, not a copy.
fn prepared(bytes: Vec<u8>) -> Result<HeaderValue, ConfigError> {
    // `validate` has already restricted the bytes to visible ASCII (plus the single space of
    // "Bearer "), which every header value accepts; the error arm is unreachable but mapped
    // rather than unwrapped.
    let mut value = HeaderValue::from_maybe_shared(Bytes::from_owner(bytes))
        .map_err(|_| ConfigError::InvalidApiKey { position: 0 })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "auth")] // the prepared values are the auth layer's
    fn a_handle_remembers_the_keys_it_replaced_up_to_a_bound() {
        let key = |n: usize| ApiKey::new(format!("key-{n}")).unwrap();
        let handle = KeyHandle::new(key(0));
        let source = KeySource::from(&handle);
        for n in 1..=10 {
            handle.rotate(key(n));
        }
        let had = |n: usize| source.any_key(|k| k.raw() == key(n).raw());
        assert!(had(10), "the key in force");
        assert!(
            (2..10).all(had),
            "the last {} replaced",
            KeyHandle::REMEMBERED
        );
        assert!(!had(1) && !had(0), "older keys are forgotten");
        assert_eq!(handle.current().raw(), key(10).raw());
    }

    #[test]
    #[cfg(feature = "auth")] // the prepared values are the auth layer's
    fn visible_ascii_keys_are_accepted_and_prepared_sensitive() {
        let key = ApiKey::new("abc-DEF_123.~!").unwrap();
        assert_eq!(key.raw().as_bytes(), b"abc-DEF_123.~!");
        assert_eq!(key.bearer().as_bytes(), b"Bearer abc-DEF_123.~!");
        assert!(key.raw().is_sensitive());
        assert!(key.bearer().is_sensitive());
    }

    #[test]
    fn bad_key_material_is_rejected_with_its_position_only() {
        assert_eq!(ApiKey::new("").unwrap_err(), ConfigError::EmptyApiKey);
        for (key, position) in [
            ("secret\r\n", 6),
            ("sec ret", 3),
            ("\tsecret", 0),
            ("secr\u{e9}t", 4),
            ("secret\0", 6),
            ("secret\x7f", 6),
        ] {
            let err = ApiKey::new(key).unwrap_err();
            assert_eq!(err, ConfigError::InvalidApiKey { position }, "{key:?}");
            assert!(!err.to_string().contains("secr"), "{err}");
        }
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert_eq!(
            ApiKey::new(long).unwrap_err(),
            ConfigError::ApiKeyTooLong {
                len: MAX_KEY_LEN + 1
            }
        );
        assert!(ApiKey::new("k".repeat(MAX_KEY_LEN)).is_ok());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = ApiKey::new("supersecret").unwrap();
        let handle = KeyHandle::new(key.clone());
        let source = KeySource::from(handle.clone());
        for shown in [
            format!("{key:?}"),
            format!("{handle:?}"),
            format!("{source:?}"),
            format!("{:?}", KeySource::from(key)),
        ] {
            assert!(!shown.contains("supersecret"), "{shown}");
        }
    }

    #[test]
    #[cfg(feature = "auth")] // the prepared values are the auth layer's
    fn rotation_is_seen_by_every_clone_of_a_handle() {
        let handle = KeyHandle::new(ApiKey::new("one").unwrap());
        let source = KeySource::from(&handle);
        assert_eq!(source.with_key(|k| k.raw().clone()), "one");
        handle.rotate(ApiKey::new("two").unwrap());
        assert_eq!(source.with_key(|k| k.raw().clone()), "two");
        assert_eq!(handle.current().bearer(), "Bearer two");
    }

    #[test]
    #[cfg(feature = "auth")] // the prepared values are the auth layer's
    fn a_set_variable_is_read_validated_and_prepared() {
        // Cargo sets CARGO_PKG_NAME for the test process: a set variable we need not (and,
        // with `unsafe` forbidden, cannot) set ourselves.
        let key = ApiKey::from_env_var("CARGO_PKG_NAME").unwrap();
        assert_eq!(key.raw(), "tower-infoplug");
        assert_eq!(key.bearer(), "Bearer tower-infoplug");
        // A value with a space is rejected like any bad key material, without echoing it.
        let err = ApiKey::from_env_var("CARGO_PKG_DESCRIPTION").unwrap_err();
        assert!(matches!(err, ConfigError::InvalidApiKey { .. }), "{err}");
        assert!(!err.to_string().contains("InfoPlug"), "{err}");
    }

    #[test]
    fn a_key_matches_only_itself_byte_for_byte() {
        let key = ApiKey::new("k-secret").unwrap();
        assert!(key.matches(b"k-secret"));
        assert!(!key.matches(b"k-secreT"));
        assert!(!key.matches(b"k-secret "));
        assert!(!key.matches(b"k-secre"));
        assert!(!key.matches(b""));
    }

    #[test]
    fn env_errors_name_the_variable_not_the_value() {
        let err = ApiKey::from_env_var("TOWER_INFOPLUG_TEST_SURELY_UNSET").unwrap_err();
        assert_eq!(
            err,
            ConfigError::MissingEnvVar {
                name: "TOWER_INFOPLUG_TEST_SURELY_UNSET".into()
            }
        );
        assert!(err.to_string().contains("TOWER_INFOPLUG_TEST_SURELY_UNSET"));
    }
}
