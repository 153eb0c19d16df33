//! axum integration (feature `axum`): [`Principal`] as an extractor.
//!
//! `Principal` implements `FromRequestParts` (a request without one, because the route is not
//! behind the bearer layer, is refused with 401, never let through) and
//! `OptionalFromRequestParts` (`Option<Principal>` for routes where a token is optional).
//! [`RequireScopes`] enforces a [`ScopePolicy`] at the handler, for those who prefer it to a
//! [`ScopeGuardLayer`](crate::scope::ScopeGuardLayer) on the route:
//!
//! ```
//! use tower_bearer::axum::RequireScopes;
//!
//! tower_bearer::scope_requirement!(
//!     /// `items:write` and `admin`.
//!     pub ItemsAdmin = "items:write AND admin"
//! );
//!
//! async fn delete_item(caller: RequireScopes<ItemsAdmin>) -> String {
//!     format!("deleted by {}", caller.subject().unwrap_or("?"))
//! }
//! # let _: axum::routing::MethodRouter = axum::routing::delete(delete_item);
//! ```
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
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use axum_core::body::Body;
use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use crate::principal::Principal;
use crate::reject::{AuthError, AuthErrorKind, Renderer};
use crate::scope::ScopePolicy;

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

/// Renders with the default [`Renderer`] (realm `api`), marked as
/// [`Renderer::render_inside`] marks its refusals: a handler's refusal behind a bearer layer
/// answers in that layer's renderer (its realm, its body), as the layer's own refusals do.
impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let mut res = Renderer::default()
            .render_http::<axum_core::body::Body>(self)
            .map(axum_core::body::Body::new);
        Renderer::mark_default(&mut res);
        res
    }
}

/// A scope requirement known at compile time, for [`RequireScopes`]; define one with
/// [`scope_requirement!`](crate::scope_requirement).
pub trait ScopeRequirement: Send + Sync + 'static {
    /// The policy.
    fn policy() -> &'static ScopePolicy;
}

/// Defines a [`ScopeRequirement`] type from a policy string (see [`ScopePolicy::parse`]). The
/// string is parsed once, on first use; a malformed one panics there, so cover each
/// requirement with a test (`MyRequirement::policy()`).
#[macro_export]
macro_rules! scope_requirement {
    ($(#[$meta:meta])* $vis:vis $name:ident = $policy:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        $vis struct $name;

        impl $crate::axum::ScopeRequirement for $name {
            fn policy() -> &'static $crate::scope::ScopePolicy {
                static POLICY: ::std::sync::OnceLock<$crate::scope::ScopePolicy> =
                    ::std::sync::OnceLock::new();
                POLICY.get_or_init(|| {
                    $crate::scope::ScopePolicy::parse($policy).expect("invalid scope policy")
                })
            }
        }
    };
}

/// The verified [`Principal`], extracted only when it satisfies `R`'s policy: 403
/// `insufficient_scope` otherwise, 401 when the route is not behind the bearer layer.
/// Rejections use the bearer layer's [`Renderer`] (realm) when there is one.
pub struct RequireScopes<R>(Principal, PhantomData<fn() -> R>);

impl<R> RequireScopes<R> {
    /// The principal.
    pub fn into_inner(self) -> Principal {
        self.0
    }
}

impl<R> Deref for RequireScopes<R> {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<R> fmt::Debug for RequireScopes<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequireScopes").field(&self.0).finish()
    }
}

impl<S: Send + Sync, R: ScopeRequirement> FromRequestParts<S> for RequireScopes<R> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let principal = parts.extensions.get::<Principal>();
        match crate::scope::check(principal, Some(R::policy())) {
            Ok(()) => Ok(Self(principal.cloned().expect("checked"), PhantomData)),
            Err(err) => {
                crate::audit::denied(principal, &err, crate::audit::Started::NONE);
                // An extractor answers HTTP requests only: the same as `render_inside`.
                Err(match parts.extensions.get::<Renderer>() {
                    Some(renderer) => renderer.render_http::<Body>(err),
                    // Marked: the bearer layer around renders it again in its own renderer.
                    None => err.into_response(),
                })
            }
        }
    }
}
