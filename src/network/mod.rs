//! Network hardening: HTTPS-only credentials, trusted proxies, per-client IP allowlists.
//!
//! - [`TransportPolicy`], an option of
//!   [`BearerAuthLayer::transport`](crate::BearerAuthLayer::transport): refuses requests that
//!   did not arrive over HTTPS (400 `invalid_request`, before any token is read). Off unless
//!   configured; loopback clients are exempt by default.
//! - [`BearerAuthLayer::strip_authorization`](crate::BearerAuthLayer::strip_authorization):
//!   removes the credential before the inner service sees it. Whether or not it is on, the
//!   layer marks `Authorization`, `DPoP` and the configured cookie / custom header
//!   [sensitive](http::HeaderValue::set_sensitive) on every request it passes on, so an
//!   HTTP/2 encoder never puts them in its compression table.
//! - [`IpAllowlistLayer`]: a guard after authentication, restricting a client id or a claim
//!   value to CIDR ranges (403, gRPC PERMISSION_DENIED).
//!
//! Both judge the client the same way ([`TrustedProxies::resolve`]): the TCP peer
//! ([`PeerAddr::from_extensions`]: a [`PeerAddr`] extension, axum's `ConnectInfo<SocketAddr>`
//! or tonic's `TcpConnectInfo`), and the connection's [`Scheme`] extension (plain HTTP when
//! absent). Forwarding headers (`X-Forwarded-For` / `X-Forwarded-Proto`, or RFC 7239
//! `Forwarded`) are believed only from a peer in the [`TrustedProxies`], walked from the right
//! through further trusted proxies; from anyone else they are ignored, and a malformed one from
//! a trusted proxy is a 400 ([`AuthErrorKind::InvalidForwarded`](crate::AuthErrorKind)).
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::BearerAuthLayer;
//! use tower_bearer::keys::{Algorithm, Key};
//! use tower_bearer::network::{PeerAddr, TransportPolicy, TrustedProxies};
//! use tower_bearer::validate::Jwt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let jwt = Jwt::builder()
//!     .key(Key::hmac(b"0123456789abcdef0123456789abcdef", Algorithm::HS256).unwrap())
//!     .audience("api")
//!     .build()
//!     .unwrap();
//! let layer = BearerAuthLayer::new(jwt)
//!     .transport(
//!         TransportPolicy::https_only()
//!             .trusted_proxies(TrustedProxies::new(["10.0.0.0/8"]).unwrap()),
//!     )
//!     .strip_authorization(true);
//! let svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|req: Request<Full<Bytes>>| async move {
//!         assert!(req.headers().get("authorization").is_none());
//!         Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
//!     }));
//!
//! // A client that reached the proxy over plain HTTP: refused before the token is looked at.
//! let mut req = Request::builder()
//!     .header("authorization", "Bearer abc")
//!     .header("x-forwarded-for", "203.0.113.9")
//!     .header("x-forwarded-proto", "http")
//!     .body(Full::default())
//!     .unwrap();
//! req.extensions_mut().insert(PeerAddr("10.0.0.2:41000".parse().unwrap()));
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::BAD_REQUEST);
//! assert_eq!(
//!     res.headers()["www-authenticate"],
//!     r#"Bearer realm="api", error="invalid_request", error_description="https required""#
//! );
//! # }
//! ```

mod allowlist;
mod cidr;
mod forwarded;
mod transport;

pub use allowlist::{IpAllowlist, IpAllowlistBuilder, IpAllowlistLayer, ResponseFuture};
pub use cidr::Cidr;
pub use forwarded::{ClientInfo, ForwardedHeader, PeerAddr, Scheme, TrustedProxies};
pub use transport::TransportPolicy;

pub(crate) use transport::protect_credentials;
