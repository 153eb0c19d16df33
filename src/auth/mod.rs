//! The bearer-authentication middleware: [`BearerAuthLayer`] / [`BearerAuth`] /
//! [`ResponseFuture`].
//!
//! For each request the service extracts the credential ([`Extractor`]), asks the
//! [`Authenticator`], and either calls the inner service with the [`Principal`] in the
//! request extensions (refusals rendered further in through [`Renderer::render_inside`], as
//! the guards do, are rendered again in the layer's [`Renderer`] on the way out, so they
//! answer in the same realm), or answers the rejection itself through the [`Renderer`]
//! (RFC 6750 for HTTP, a trailers-only status for gRPC). A rejected request never reaches the
//! inner service.
//! Rejections are `Ok(response)`: the service's error type stays the inner one. Every decision
//! is audited (see [`audit`](crate::audit)). A scope policy and a rate limit that apply to
//! every route behind the layer can run in this service too
//! ([`BearerAuthLayer::require_scopes`], [`BearerAuthLayer::rate_limit`]).
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::{BearerAuthLayer, Principal};
//! use tower_bearer::keys::{Algorithm, Key};
//! use tower_bearer::validate::Jwt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let jwt = Jwt::builder()
//!     .key(Key::hmac(b"0123456789abcdef0123456789abcdef", Algorithm::HS256).unwrap())
//!     .audience("api")
//!     .build()
//!     .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(jwt).realm("example"))
//!     .service(service_fn(|req: Request<Full<Bytes>>| async move {
//!         let who = req.extensions().get::<Principal>().unwrap().subject().unwrap_or("").to_owned();
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(who))))
//!     }));
//!
//! let res = svc.oneshot(Request::new(Full::default())).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="example""#);
//! # }
//! ```

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::BearerAuthLayer;
pub use service::BearerAuth;

#[allow(unused_imports)]
use crate::{extract::Extractor, principal::Principal, reject::Renderer, validate::Authenticator};
