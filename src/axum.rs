//! axum integration (feature `axum`): [`Principal`] as an extractor.
//!
//! `Principal` implements `FromRequestParts` (a request without one, because the route is not
//! behind the bearer layer, is refused with 401, never let through) and
//! `OptionalFromRequestParts` (`Option<Principal>` for routes where a token is optional).
//!
//! ```
//! use axum::{Json, Router, routing::get};
//! use tower_bearer::{BearerAuthLayer, Principal};
//! use tower_bearer::keys::{Algorithm, Key};
//! use tower_bearer::validate::Jwt;
//!
//! async fn me(principal: Principal) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({ "sub": principal.subject() }))
//! }
//!
//! let jwt = Jwt::builder()
//!     .key(Key::hmac(b"0123456789abcdef0123456789abcdef", Algorithm::HS256).unwrap())
//!     .audience("api")
//!     .build()
//!     .unwrap();
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .layer(BearerAuthLayer::new(jwt));
//! ```

use std::convert::Infallible;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use crate::principal::Principal;
use crate::reject::{AuthError, AuthErrorKind, Renderer};

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| AuthError::new(AuthErrorKind::MissingCredentials))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}

/// Renders with the default [`Renderer`] (realm `api`).
impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        Renderer::default()
            .render_http::<axum_core::body::Body>(self)
            .map(axum_core::body::Body::new)
    }
}
