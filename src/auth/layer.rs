use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::audit;
use crate::audit::Started;
use crate::extract::Extractor;
use crate::network::TransportPolicy;
use crate::principal::Principal;
use crate::rate_limit::{Check, Fields, Limited, Limiter, Outcome, Quota, RateLimitLayer};
use crate::reject::{AuthError, Renderer};
use crate::scope::ScopePolicy;
use crate::sender::SenderConstraints;
use crate::validate::Authenticator;

use super::BearerAuth;

/// Configuration shared by every clone of the service.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) extractor: Extractor,
    pub(crate) renderer: Renderer,
    /// Checked first, before any token is read; `None`: any scheme.
    pub(crate) transport: Option<TransportPolicy>,
    /// Remove the credential before calling the inner service.
    pub(crate) strip_credentials: bool,
    /// DPoP and mTLS-bound tokens; `None`: bearer tokens only, no `cnf` check.
    pub(crate) sender: Option<SenderConstraints>,
    /// Required of every verified caller before the inner service runs.
    pub(crate) scopes: Option<ScopePolicy>,
    /// Spent by every verified caller that passed `scopes`.
    pub(crate) limit: Option<Limiter>,
}

/// What [`Shared::admit`] decided for a verified caller.
pub(crate) enum Admission {
    /// Call the inner service; add these rate-limit fields to its response.
    Pass(Option<Fields>),
    /// Answer this refusal (with these fields; rendered by this renderer rather than the
    /// layer's: a rate limit's own).
    Refuse(AuthError, Option<Fields>, Option<Renderer>),
    /// The rate-limit store answers later.
    Pending(Check, Quota),
}

impl Shared {
    /// The checks this layer runs after authentication: the scope policy, then the rate
    /// limit; each refusal is audited as its own layer would audit it.
    pub(crate) fn admit(&self, p: &Principal, start: Started) -> Admission {
        if let Some(policy) = &self.scopes
            && let Err(err) = crate::scope::check(Some(p), Some(policy))
        {
            audit::denied(Some(p), &err, Started::NONE);
            return Admission::Refuse(err, None, None);
        }
        match self.limit.as_ref().map(|l| l.decide(p)) {
            None => Admission::Pass(None),
            Some(Limited::Now(outcome)) => self.limited(p, outcome, start),
            Some(Limited::Pending(check, quota)) => Admission::Pending(check, quota),
        }
    }

    /// The admission once the rate limit decided.
    pub(crate) fn limited(&self, p: &Principal, outcome: Outcome, start: Started) -> Admission {
        match outcome {
            Outcome::Pass(fields) => Admission::Pass(fields),
            Outcome::Refuse(err, fields) => {
                audit::denied(Some(p), &err, start);
                let renderer = self.limit.as_ref().and_then(Limiter::renderer).cloned();
                Admission::Refuse(err, fields, renderer)
            }
        }
    }
}

/// Applies [`BearerAuth`] to a service. Holds configuration only; cheap to clone.
#[derive(Clone)]
#[must_use]
pub struct BearerAuthLayer {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for BearerAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("extractor", &self.shared.extractor)
            .field("renderer", &self.shared.renderer)
            .field("transport", &self.shared.transport)
            .field("strip_authorization", &self.shared.strip_credentials)
            .field("sender_constraints", &self.shared.sender)
            .field("scopes", &self.shared.scopes)
            .field("rate_limit", &self.shared.limit.is_some())
            .finish_non_exhaustive()
    }
}

impl BearerAuthLayer {
    /// A layer authenticating with `authenticator`, reading `Authorization: Bearer` only, with
    /// the realm `api`.
    pub fn new(authenticator: impl Authenticator) -> Self {
        Self::from_arc(crate::validate::shared(authenticator))
    }

    /// A layer around an already shared authenticator.
    pub fn from_arc(authenticator: Arc<dyn Authenticator>) -> Self {
        Self {
            shared: Arc::new(Shared {
                authenticator,
                extractor: Extractor::new(),
                renderer: Renderer::default(),
                transport: None,
                strip_credentials: false,
                sender: None,
                scopes: None,
                limit: None,
            }),
        }
    }

    fn update(mut self, f: impl FnOnce(&mut Shared)) -> Self {
        f(Arc::make_mut(&mut self.shared));
        self
    }

    /// Where credentials are read from, and the size cap.
    pub fn extractor(self, extractor: Extractor) -> Self {
        self.update(|s| s.extractor = extractor)
    }

    /// How rejections are rendered.
    pub fn renderer(self, renderer: Renderer) -> Self {
        self.update(|s| {
            let algs = s.sender.as_ref().and_then(SenderConstraints::dpop_algs);
            s.renderer = renderer.with_dpop_algs(algs);
        })
    }

    /// Accepts sender-constrained tokens, DPoP (RFC 9449) and certificate-bound (RFC 8705),
    /// and sets the policy of every route behind the layer; see [`crate::sender`]. Off by
    /// default: only plain bearer tokens are accepted, and a token bound to a key or a
    /// certificate (any `cnf` member) is refused, since nothing checks its binding.
    pub fn sender_constraints(self, constraints: SenderConstraints) -> Self {
        self.update(|s| {
            s.renderer = s.renderer.clone().with_dpop_algs(constraints.dpop_algs());
            s.sender = Some(constraints);
        })
    }

    /// The realm named in challenges (keeps any custom body already set).
    pub fn realm(self, realm: impl Into<String>) -> Self {
        self.update(|s| s.renderer = s.renderer.clone().with_realm(realm))
    }

    /// Refuses requests that did not arrive over HTTPS (judged from the connection, or from a
    /// trusted proxy's forwarding header), before any token is read: 400 `invalid_request`.
    /// Off by default; see [`TransportPolicy`] for the rules and the loopback exemption.
    pub fn transport(self, policy: TransportPolicy) -> Self {
        self.update(|s| s.transport = Some(policy))
    }

    /// Requires `policy` of every verified caller, as a [`ScopeGuardLayer`] right inside this
    /// layer would (403 `insufficient_scope`, gRPC PERMISSION_DENIED), but without a service
    /// of its own: for a policy that covers every route behind the layer. Per-route policies
    /// stay with [`ScopeGuardLayer`] on the routes.
    ///
    /// [`ScopeGuardLayer`]: crate::scope::ScopeGuardLayer
    pub fn require_scopes(self, policy: ScopePolicy) -> Self {
        self.update(|s| s.scopes = Some(policy))
    }

    /// Spends one request of `limit` for every verified caller (after
    /// [`require_scopes`](Self::require_scopes)), as the same [`RateLimitLayer`] right inside
    /// this layer would, with the same fields, refusals and store, but without a service of
    /// its own. A stack of three layers pays three clones of the inner service, three lookups
    /// of the principal and three response futures per request; this pays one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use axum::{Router, routing::get};
    /// use tower_bearer::BearerAuthLayer;
    /// use tower_bearer::rate_limit::{Quota, RateLimitLayer};
    /// use tower_bearer::scope::ScopePolicy;
    /// # use tower_bearer::{keys::{Algorithm, Key}, validate::Jwt};
    /// # let jwt = Jwt::builder().key(Key::hmac(&[7; 32], Algorithm::HS256).unwrap()).any_audience().build().unwrap();
    ///
    /// let app: Router = Router::new().route("/items", get(|| async { "items" })).layer(
    ///     BearerAuthLayer::new(jwt)
    ///         .require_scopes(ScopePolicy::parse("items:read").unwrap())
    ///         .rate_limit(RateLimitLayer::new(Quota::per(Duration::from_secs(10), 5))),
    /// );
    /// ```
    ///
    /// [`RateLimitLayer`]: crate::rate_limit::RateLimitLayer
    pub fn rate_limit(self, limit: RateLimitLayer) -> Self {
        self.update(|s| s.limit = Some(limit.limiter()))
    }

    /// With `true`, removes the credential from the request before the inner service sees
    /// it: the `Authorization` header, and the cookie, custom header or `access_token` query
    /// parameter the token was read from. Off by default. Credential headers are marked
    /// [sensitive](http::HeaderValue::set_sensitive) either way.
    pub fn strip_authorization(self, strip: bool) -> Self {
        self.update(|s| s.strip_credentials = strip)
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth::new(inner, self.shared.clone())
    }
}
