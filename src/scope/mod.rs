//! Scope guards: per-route and per-gRPC-method authorization (RFC 6750 §3.1).
//!
//! A [`ScopePolicy`] says what a resource needs: one scope, all of several, any of several,
//! nested (`items:write AND (admin OR owner)`), built in code or parsed from that string form.
//! Matching is exact and case-sensitive: `items:readonly` does not grant `items:read`.
//!
//! [`ScopeGuardLayer`] enforces a policy behind the bearer layer. A token lacking a scope gets
//! 403 with `error="insufficient_scope"` and `scope="…"` naming the scopes the policy mentions
//! (gRPC: PERMISSION_DENIED with the policy in the message); a bad token never gets this far
//! (401 from the bearer layer); a request without a principal, because the route is not
//! behind the bearer layer, gets 401, never a pass. For gRPC, a [`MethodScopes`] table maps
//! `/package.Service/Method` (or `/package.Service/*`, or a default) to policies. With feature
//! `axum`, the `RequireScopes` extractor enforces a policy at the handler instead.
//!
//! Where the scopes come from is set on the authenticator: `scope` (space-delimited) or
//! `scp` (array or string) by default, or any claim or path
//! ([`JwtBuilder::scope_claim`](crate::validate::JwtBuilder::scope_claim), e.g. Auth0's
//! `permissions` or Keycloak's `realm_access.roles`).
//!
//! ## axum
//!
//! ```
//! use axum::{Router, routing::{delete, get}};
//! use tower_bearer::BearerAuthLayer;
//! use tower_bearer::scope::ScopeGuardLayer;
//! # use tower_bearer::{keys::{Algorithm, Key}, validate::Jwt};
//! # let jwt = Jwt::builder().key(Key::hmac(&[7; 32], Algorithm::HS256).unwrap()).any_audience().build().unwrap();
//!
//! let app: Router = Router::new()
//!     .route("/items", get(|| async { "items" })
//!         .route_layer(ScopeGuardLayer::parse("items:read").unwrap()))
//!     .route("/items/{id}", delete(|| async { "deleted" })
//!         .route_layer(ScopeGuardLayer::parse("items:write AND admin").unwrap()))
//!     .layer(BearerAuthLayer::new(jwt));
//! ```
//!
//! ## tonic
//!
//! ```
//! use tower_bearer::scope::{MethodScopes, ScopeGuardLayer, ScopePolicy};
//!
//! let guard = ScopeGuardLayer::methods(
//!     MethodScopes::new()
//!         .method("/grpc.health.v1.Health/Check", ScopePolicy::scope("health:read"))
//!         .method("/inventory.v1.Items/*", ScopePolicy::parse("items:write AND admin").unwrap())
//!         .default_policy(ScopePolicy::authenticated()),
//! )
//! .unwrap();
//! // tonic::transport::Server::builder()
//! //     .layer(BearerAuthLayer::new(jwt))   // outer: authenticates
//! //     .layer(guard)                       // inner: authorizes per method
//! //     .add_service(...)
//! # let _ = guard;
//! ```

mod guard;
mod policy;

pub(crate) use guard::check;
pub use guard::{MethodScopes, ResponseFuture, ScopeGuard, ScopeGuardLayer};
pub use policy::{MAX_POLICY_DEPTH, ScopePolicy};

impl ScopePolicy {
    /// Granted to any authenticated caller (all of nothing).
    pub fn authenticated() -> Self {
        ScopePolicy::All(Vec::new())
    }
}
