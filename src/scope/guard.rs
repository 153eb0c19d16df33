use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::ScopePolicy;
use crate::audit;
use crate::body::FromRejection;
use crate::error::ConfigError;
pub use crate::guard::ResponseFuture;
use crate::intern::Interned;
use crate::principal::Principal;
use crate::reject::{AuthError, AuthErrorKind, Renderer};

/// A table from gRPC method path to the policy it needs: exact methods
/// (`/package.Service/Method`), then per-service wildcards (`/package.Service/*`), then a
/// default. A method that matches nothing, with no default, is denied.
#[derive(Clone, Default)]
pub struct MethodScopes {
    methods: HashMap<Box<str>, ScopePolicy>,
    services: HashMap<Box<str>, ScopePolicy>,
    default: Option<ScopePolicy>,
    errors: Vec<ConfigError>,
}

impl fmt::Debug for MethodScopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MethodScopes")
            .field("methods", &self.methods)
            .field("services", &self.services)
            .field("default", &self.default)
            .finish()
    }
}

impl MethodScopes {
    /// An empty table: every method denied until configured.
    pub fn new() -> Self {
        Self::default()
    }

    /// The policy of one method, `/package.Service/Method`; `/package.Service/*` sets the
    /// policy of every method of the service not listed on its own.
    #[must_use]
    pub fn method(mut self, path: &str, policy: ScopePolicy) -> Self {
        let valid = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .is_some_and(|(svc, m)| {
                !svc.is_empty() && !m.is_empty() && !m.contains('/') && !svc.contains('*')
            });
        if !valid {
            self.errors.push(ConfigError::new(format!(
                "not a gRPC method path (/package.Service/Method): {path:?}"
            )));
            return self;
        }
        let (svc, m) = path[1..].split_once('/').expect("checked");
        let (map, key) = if m == "*" {
            (&mut self.services, svc)
        } else {
            (&mut self.methods, path)
        };
        if map.insert(key.into(), policy).is_some() {
            self.errors
                .push(ConfigError::new(format!("{path:?} configured twice")));
        }
        self
    }

    /// The policy of methods that match nothing else (e.g. [`ScopePolicy::authenticated`]).
    #[must_use]
    pub fn default_policy(mut self, policy: ScopePolicy) -> Self {
        self.default = Some(policy);
        self
    }

    /// The policy for a request path; `None` when the method is not in the table.
    pub fn policy_for(&self, path: &str) -> Option<&ScopePolicy> {
        if let Some(p) = self.methods.get(path) {
            return Some(p);
        }
        let service = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .map(|(s, _)| s);
        service
            .and_then(|s| self.services.get(s))
            .or(self.default.as_ref())
    }
}

/// What a guard decides by. axum and tonic clone the layered service for every request, so
/// a rule shared through an `Arc` would have its reference count written by every request.
#[derive(Clone, Debug)]
enum Rule {
    /// Interned (see [`Interned`]): a policy is small, and cloning it is then a copy.
    Fixed(Interned<ScopePolicy>),
    /// A table can be large: shared through an `Arc`, never kept beyond its last guard.
    Methods(Arc<MethodScopes>),
}

/// Applies [`ScopeGuard`]: put it *after* (inside) [`BearerAuthLayer`](crate::BearerAuthLayer),
/// e.g. with axum's `route_layer`, or in front of a tonic server with a [`MethodScopes`] table.
#[derive(Clone, Debug)]
#[must_use]
pub struct ScopeGuardLayer {
    rule: Rule,
    renderer: Option<Renderer>,
}

impl ScopeGuardLayer {
    /// Every request needs `policy`.
    ///
    /// The policy is interned: a process keeps one copy of each distinct policy its guards
    /// were built with, for its whole life, up to 256 policies (later ones are shared through
    /// an `Arc` and freed with their last guard). A guard's clone, which axum makes for every
    /// request, then writes to no shared reference count. Build guards from configuration,
    /// not per request.
    pub fn new(policy: ScopePolicy) -> Self {
        Self {
            rule: Rule::Fixed(Interned::new(policy)),
            renderer: None,
        }
    }

    /// Every request needs the policy written as `text` (see [`ScopePolicy::parse`]); the
    /// policy is interned as by [`new`](Self::new).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        ScopePolicy::parse(text).map(Self::new)
    }

    /// Each gRPC method needs the policy the table gives it.
    pub fn methods(table: MethodScopes) -> Result<Self, ConfigError> {
        if let Some(e) = table.errors.first() {
            return Err(e.clone());
        }
        Ok(Self {
            rule: Rule::Methods(Arc::new(table)),
            renderer: None,
        })
    }

    /// Renders rejections with `renderer`; by default the one of the bearer layer in front
    /// (see [`Renderer::render_inside`]), so both speak of the same realm.
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.renderer = Some(renderer);
        self
    }
}

impl<S> Layer<S> for ScopeGuardLayer {
    type Service = ScopeGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ScopeGuard {
            inner,
            rule: self.rule.clone(),
            renderer: self.renderer.clone(),
        }
    }
}

/// Lets a request through only when its [`Principal`] satisfies the policy: 403
/// `insufficient_scope` (gRPC PERMISSION_DENIED) naming the scopes otherwise, and 401 when the
/// request carries no principal at all (the route is not behind the bearer layer): never a
/// pass.
#[derive(Clone, Debug)]
pub struct ScopeGuard<S> {
    inner: S,
    rule: Rule,
    renderer: Option<Renderer>,
}

/// Decides a request against a policy; `Err` is the rejection.
pub(crate) fn check(
    principal: Option<&Principal>,
    policy: Option<&ScopePolicy>,
) -> Result<(), AuthError> {
    let Some(principal) = principal else {
        return Err(AuthError::new(AuthErrorKind::MissingCredentials));
    };
    match policy {
        Some(p) if p.is_satisfied_by(principal.scopes()) => Ok(()),
        Some(p) => Err(AuthError::insufficient_scope(p.mentioned().join(" "))
            .with_description(format!("insufficient scope: requires {p}"))),
        None => Err(AuthError::insufficient_scope("")
            .with_description("insufficient scope: method not allowed")),
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ScopeGuard<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: FromRejection,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let policy = match &self.rule {
            Rule::Fixed(p) => Some(&**p),
            Rule::Methods(t) => t.policy_for(req.uri().path()),
        };
        let principal = req.extensions().get::<Principal>();
        match check(principal, policy) {
            // Decided here: the instance `poll_ready` made ready is called here, so nothing
            // is cloned (the future never calls the inner service).
            Ok(()) => ResponseFuture::calling(self.inner.call(req)),
            Err(err) => {
                // The check is a set lookup: no clock read on the hot path for it.
                audit::denied(principal, &err, crate::audit::Started::NONE);
                ResponseFuture::rejected(self.renderer.as_ref(), &req, err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_table_lookup() {
        let read = ScopePolicy::scope("r");
        let admin = ScopePolicy::scope("admin");
        let t = MethodScopes::new()
            .method("/pkg.Svc/Get", read.clone())
            .method("/pkg.Svc/*", admin.clone());
        assert_eq!(t.policy_for("/pkg.Svc/Get"), Some(&read));
        assert_eq!(t.policy_for("/pkg.Svc/Delete"), Some(&admin));
        assert_eq!(t.policy_for("/other.Svc/Get"), None);
        let t = t.default_policy(ScopePolicy::authenticated());
        assert_eq!(
            t.policy_for("/other.Svc/Get"),
            Some(&ScopePolicy::authenticated())
        );
    }

    #[test]
    fn bad_method_paths() {
        for bad in [
            "pkg.Svc/Get",
            "/pkg.Svc",
            "/pkg.Svc/",
            "//Get",
            "/a/b/c",
            "/*/Get",
        ] {
            assert!(
                ScopeGuardLayer::methods(MethodScopes::new().method(bad, ScopePolicy::scope("x")))
                    .is_err(),
                "{bad}"
            );
        }
        let twice = MethodScopes::new()
            .method("/a.B/C", ScopePolicy::scope("x"))
            .method("/a.B/C", ScopePolicy::scope("y"));
        assert!(ScopeGuardLayer::methods(twice).is_err());
    }
}
