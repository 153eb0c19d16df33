//! Bearer-token security for Tower stacks (axum, tonic, hyper).
//!
//! [`BearerAuthLayer`] authenticates the bearer token of every request (RFC 6750) and either
//! passes the request on with the verified [`Principal`] in its extensions, or answers the
//! rejection itself: an RFC 6750 `WWW-Authenticate` challenge for HTTP, a trailers-only
//! status for gRPC. A rejected request never reaches the inner service.
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_bearer::{BearerAuthLayer, Principal};
//! use tower_bearer::keys::{Algorithm, Key};
//! use tower_bearer::validate::Jwt;
//!
//! # fn pem() -> Vec<u8> { tower_bearer::testing::TestIssuer::rs256().public_key_pem().unwrap().into_bytes() }
//! let jwt = Jwt::builder()
//!     .key(Key::rsa_pem(&pem(), Algorithm::RS256).unwrap().with_kid("2024-01"))
//!     .issuer("https://issuer.example")
//!     .audience("api://orders")
//!     .build()
//!     .unwrap();
//! let app: Router = Router::new()
//!     .route("/me", get(|p: Principal| async move { p.subject().unwrap_or("").to_owned() }))
//!     .layer(BearerAuthLayer::new(jwt));
//! ```
//!
//! Modules: [`extract`] (finding the credential), [`validate`] (authenticators, JWT),
//! [`keys`], [`principal`], [`reject`] (errors and their rendering), [`audit`], [`clock`],
//! [`auth`] (the middleware), [`network`] (HTTPS-only, trusted proxies, IP allowlists),
//! [`scope`] (authorization), [`rate_limit`], [`lifecycle`]
//! (revocation, idle tokens, maximum age), [`sender`] (sender-constrained tokens: [`dpop`]
//! proofs, RFC 9449, and [`mtls`] certificate-bound tokens, RFC 8705), [`metrics`] (names of the counters recorded with
//! feature `metrics`), and with features: `jwks` (remote keys, OIDC
//! discovery), `introspection` (RFC 7662 opaque tokens), `axum`, `tonic`, `testing`.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
pub mod auth;
pub mod body;
pub mod cache;
mod claims;
pub mod clock;
pub mod dpop;
pub mod error;
pub mod extract;
mod guard;
mod hash;
mod intern;
mod json;
pub mod keys;
pub mod lifecycle;
mod maybe_ready;
pub mod metrics;
pub mod mtls;
pub mod network;
pub mod principal;
pub mod rate_limit;
pub mod reject;
pub mod scope;
pub mod sender;
pub mod validate;

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "introspection")]
pub mod introspection;
#[cfg(feature = "jwks")]
pub mod jwks;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "tonic")]
pub mod tonic;

pub use auth::{BearerAuth, BearerAuthLayer};
pub use error::ConfigError;
pub use principal::{Principal, Scopes, TokenFingerprint};
pub use reject::{AuthError, AuthErrorKind};
