//! Stamps the API key on every request, safely.
//!
//! [`AuthLayer`] adds the key to each request that goes to the API: by default as
//! `X-INFOPLUG-API-KEY: <key>`, or as `Authorization: <key>`, `Authorization: Bearer <key>` or a
//! header of your choice ([`AuthHeader`]). Compared with tower-http's `SetRequestHeader` or
//! `AddAuthorization`, it:
//!
//! - marks the value [sensitive](http::HeaderValue::set_sensitive) and never prints the key:
//!   every type here that holds one has a redacting `Debug`;
//! - never appends a second value, and by default lets a key the caller already put on the
//!   request win (one stack for many tenants); [`AuthLayer::override_existing`] turns that off;
//! - with [`AuthLayer::for_origin`], adds the key only to requests for the API's own origin
//!   (scheme, host and port), and removes it from requests for any other origin, so a redirect
//!   to another host or a pre-signed download URL does not receive it; when something between
//!   this layer and the transport re-sends requests (a redirect follower), place
//!   [`AuthLayer::guard`] next to the transport so that those requests are checked too;
//! - takes the key from a string, the `INFOPLUG_API_KEY` environment variable, or a
//!   [`KeyHandle`](crate::KeyHandle) that can be rotated while the stack runs;
//! - tells the [`ClassifyLayer`](crate::ClassifyLayer), in either order, which credential was
//!   sent, so an error body that echoes the key is redacted before anyone can print it.
//!
//! Bad key material is rejected when the key is built ([`ApiKey::new`](crate::ApiKey::new)),
//! never on the request path, and the error never quotes the key.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_infoplug::{ApiKey, AuthLayer, Origin};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = ApiKey::new("ip_test_key")?;
//! let client = ServiceBuilder::new()
//!     .layer(AuthLayer::new(key).for_origin(Origin::parse("https://api.infoplug.io")?))
//!     .service(service_fn(|req: Request<()>| async move {
//!         // Stands in for the network: report which key arrived.
//!         let seen = req.headers().get("x-infoplug-api-key").cloned();
//!         Ok::<_, std::convert::Infallible>(Response::new(seen))
//!     }));
//!
//! let to_api = Request::get("https://api.infoplug.io/v1/profile").body(())?;
//! let seen = client.clone().oneshot(to_api).await?.into_body().unwrap();
//! assert_eq!(seen, "ip_test_key");
//! assert!(seen.is_sensitive());
//!
//! let elsewhere = Request::get("https://cdn.example/export.csv").body(())?;
//! assert!(client.oneshot(elsewhere).await?.into_body().is_none());
//! # Ok(())
//! # }
//! ```

mod future;
mod guard;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use guard::{KeyGuard, KeyGuardLayer};
pub use layer::{AuthHeader, AuthLayer};
pub use service::Auth;
