//! placeholder
#[cfg(feature = "auth")]
pub mod auth;
#[cfg(feature = "classify")]
pub mod classify;
mod error;
mod key;
mod origin;
mod trace;

#[cfg(feature = "auth")]
pub use auth::{AuthHeader, AuthLayer};
#[cfg(feature = "classify")]
pub use classify::{ApiError, BodyIssue, ClassifyLayer, ErrorCode, ResponseExt};
pub use error::ConfigError;
pub use key::{API_KEY_ENV, ApiKey, KeyHandle, KeySource, MAX_KEY_LEN};
pub use origin::Origin;
