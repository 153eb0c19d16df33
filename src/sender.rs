//! Sender-constrained tokens: DPoP (RFC 9449) and mTLS-bound tokens (RFC 8705), and the
//! per-route policy that requires them.
//!
//! [`SenderConstraints`] turns the checks on in the bearer layer
//! ([`BearerAuthLayer::sender_constraints`](crate::BearerAuthLayer::sender_constraints)):
//!
//! - with [`SenderConstraints::dpop`], `Authorization: DPoP <token>` is accepted together
//!   with a `DPoP` proof header ([`crate::dpop`]). The proof is verified before the token
//!   (a bad proof never costs a token verification), its key thumbprint must equal the
//!   token's `cnf.jkt`, and its `jti` is then recorded against replay. A token with
//!   `cnf.jkt` presented with the `Bearer` scheme is refused, and so is a token without
//!   `cnf.jkt` presented with the `DPoP` scheme;
//! - with [`SenderConstraints::mtls`], a token with `cnf.x5t#S256` is accepted only on a
//!   request whose [`ClientCertificate`] has that thumbprint ([`crate::mtls`]);
//! - a bound token whose binding the layer cannot check is refused, never taken as a bearer
//!   token: a `cnf.jkt` token without [`SenderConstraints::dpop`], a `cnf.x5t#S256` token
//!   without [`SenderConstraints::mtls`], any other `cnf` member (`jwk`, `kid`…), and any
//!   `cnf` at all on a layer without sender constraints (RFC 9449 §7.2, RFC 8705 §3);
//! - [`SenderConstraints::policy`] sets what every route behind the layer needs:
//!   [`SenderPolicy::Allow`] (default: plain bearer tokens and sender-constrained tokens,
//!   each checked as above), [`SenderPolicy::Require`] (sender-constrained tokens only) or
//!   [`SenderPolicy::BearerOnly`] (plain bearer tokens only).
//!
//! What the request proved is put in its extensions as a [`SenderProof`] beside the
//! [`Principal`]. [`SenderGuardLayer`] enforces a policy per route (axum `route_layer`), like
//! [`ScopeGuardLayer`](crate::scope::ScopeGuardLayer) does for scopes.
//!
//! Rejections: a bad proof is 401 `invalid_dpop_proof`, a token bound to another key or
//! certificate (or a DPoP-bound token sent as `Bearer`) 401 `invalid_token`, a missing
//! server nonce 401 `use_dpop_nonce` with a `DPoP-Nonce` header; errors of the DPoP scheme
//! come with `WWW-Authenticate: DPoP …, algs="…"`, and a request without credentials gets
//! both a `Bearer` and a `DPoP` challenge. gRPC: UNAUTHENTICATED.
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//! use tower_bearer::BearerAuthLayer;
//! use tower_bearer::dpop::Dpop;
//! use tower_bearer::sender::{SenderConstraints, SenderGuardLayer, SenderProof};
//! use tower_bearer::testing::{DpopKey, TestIssuer, claims};
//! use tower_bearer::validate::Jwt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let issuer = TestIssuer::es256();
//! let jwt = Jwt::builder().key(issuer.key()).any_audience().build().unwrap();
//! let dpop = Dpop::builder().external_base_url("https://api.example").build().unwrap();
//! let app: Router = Router::new()
//!     .route("/payments", get(|| async { "paid" }).route_layer(SenderGuardLayer::require()))
//!     .route("/news", get(|| async { "news" }))
//!     .layer(BearerAuthLayer::new(jwt).sender_constraints(SenderConstraints::new().dpop(dpop)));
//!
//! // A plain bearer token reads the news, but cannot pay.
//! let bearer = issuer.mint(claims("alice", "", Duration::from_secs(60)));
//! let get = |path: &str, auth: String, proof: Option<String>| {
//!     let mut b = Request::get(path).header("authorization", auth);
//!     if let Some(p) = proof { b = b.header("dpop", p); }
//!     b.body(axum::body::Body::empty()).unwrap()
//! };
//! let res = app.clone().oneshot(get("/news", format!("Bearer {bearer}"), None)).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! let res = app.clone().oneshot(get("/payments", format!("Bearer {bearer}"), None)).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("DPoP "));
//!
//! // A DPoP-bound token with a proof for this request can.
//! let key = DpopKey::es256();
//! let token = issuer.mint(claims("alice", "", Duration::from_secs(60)).dpop_bound(&key));
//! let proof = key.proof("GET", "https://api.example/payments").access_token(&token).sign();
//! let res = app.oneshot(get("/payments", format!("DPoP {token}"), Some(proof))).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use crate::audit;
use crate::body::FromRejection;
use crate::dpop::{Dpop, VerifiedProof, ct_eq, replay_outcome};
use crate::extract::{AuthScheme, BearerToken};
pub use crate::guard::ResponseFuture;
use crate::maybe_ready::MaybeReady;
use crate::mtls::ClientCertificate;
use crate::principal::{Binding, Principal};
use crate::reject::{AuthError, AuthErrorKind, Renderer};
use crate::validate::Authentication;

/// Which tokens a route takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SenderPolicy {
    /// Plain bearer tokens and sender-constrained tokens (each bound token still has to prove
    /// its key or certificate). The default.
    #[default]
    Allow,
    /// Sender-constrained tokens only: DPoP-bound with a valid proof, or certificate-bound on
    /// a connection with that certificate.
    Require,
    /// Plain bearer tokens only.
    BearerOnly,
}

impl SenderPolicy {
    /// Whether a request that proved `proof` satisfies the policy; the error carries the
    /// DPoP challenge when `dpop_offered`.
    fn check(self, proof: &SenderProof, dpop_offered: bool) -> Result<(), AuthError> {
        let err = match self {
            SenderPolicy::Allow => return Ok(()),
            SenderPolicy::Require if proof.is_sender_constrained() => return Ok(()),
            SenderPolicy::BearerOnly if !proof.is_sender_constrained() => return Ok(()),
            SenderPolicy::Require => AuthError::new(AuthErrorKind::SenderConstraintRequired),
            SenderPolicy::BearerOnly => AuthError::new(AuthErrorKind::SenderConstraintRequired)
                .with_description("sender-constrained tokens are not accepted here"),
        };
        Err(if dpop_offered && self == SenderPolicy::Require {
            err.with_dpop_challenge()
        } else {
            err
        })
    }
}

/// What a request proved about its sender, in the request extensions of every request the
/// bearer layer lets through when it has [`SenderConstraints`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SenderProof {
    dpop_jkt: Option<Arc<str>>,
    certificate: Option<Arc<str>>,
}

impl SenderProof {
    /// The thumbprint of the DPoP key the request proved possession of.
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.dpop_jkt.as_deref()
    }

    /// The `x5t#S256` of the client certificate the token is bound to (and the connection
    /// used).
    pub fn certificate_thumbprint(&self) -> Option<&str> {
        self.certificate.as_deref()
    }

    /// Whether the token was sender-constrained (DPoP or certificate), and proven.
    pub fn is_sender_constrained(&self) -> bool {
        self.dpop_jkt.is_some() || self.certificate.is_some()
    }

    /// Whether the token was a plain bearer token.
    pub fn is_bearer(&self) -> bool {
        !self.is_sender_constrained()
    }
}

/// The sender-constraint configuration of a bearer layer; see the [module docs](self).
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct SenderConstraints {
    dpop: Option<Dpop>,
    mtls: bool,
    policy: SenderPolicy,
}

/// The parts of a token's `cnf` claim (RFC 7800) this crate checks.
#[derive(Default)]
struct Cnf<'a> {
    jkt: Option<&'a str>,
    x5t: Option<&'a str>,
    /// A confirmation method other than `jkt` and `x5t#S256` (`jwk`, `kid`, `jku`…): one
    /// this crate cannot check, so the token is refused.
    other: bool,
}

fn cnf_of(p: &Principal) -> Result<Cnf<'_>, AuthError> {
    let wrong =
        || AuthError::new(AuthErrorKind::InvalidClaimType).with_description("invalid cnf claim");
    fn member<'a>(
        m: &'a serde_json::Map<String, Value>,
        name: &str,
    ) -> Result<Option<&'a str>, ()> {
        match m.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(()),
        }
    }
    match p.claim("cnf") {
        None => Ok(Cnf::default()),
        Some(Value::Object(m)) => Ok(Cnf {
            jkt: member(m, "jkt").map_err(|()| wrong())?,
            x5t: member(m, "x5t#S256").map_err(|()| wrong())?,
            other: m.keys().any(|k| k != "jkt" && k != "x5t#S256"),
        }),
        Some(_) => Err(wrong()),
    }
}

fn binding(description: &'static str) -> AuthError {
    AuthError::new(AuthErrorKind::KeyBindingMismatch).with_description(description)
}

/// What the service learned before verifying the token.
pub(crate) struct Precheck {
    dpop_scheme: bool,
    proof: Option<VerifiedProof>,
    certificate: Option<Box<str>>,
}

impl Precheck {
    /// Errors about a token presented with the DPoP scheme answer with the DPoP challenge.
    fn tag(&self, e: AuthError) -> AuthError {
        if self.dpop_scheme {
            e.with_dpop_challenge()
        } else {
            e
        }
    }
}

/// A verified request: the principal, what it proved, and a `DPoP-Nonce` for the response.
pub(crate) struct Verified {
    pub(crate) principal: Principal,
    /// Only with sender constraints; boxed, so that a plain verification, which every
    /// admitted request passes along, stays two pointers wide.
    proved: Option<Box<Proved>>,
}

/// What a sender-constrained request proved, and the `DPoP-Nonce` for its response.
struct Proved {
    proof: SenderProof,
    nonce: Option<HeaderValue>,
}

impl Verified {
    /// A principal verified without sender constraints. A token bound to a key or a
    /// certificate (any `cnf` member) is refused: nothing here can check the binding, and a
    /// stolen bound token must not work as a bearer token (RFC 9449 §7.2, RFC 8705 §3).
    pub(crate) fn plain(principal: Principal) -> Result<Self, AuthError> {
        // Read once, when the principal was built: a cached token asks on every request.
        match principal.binding() {
            Binding::Bearer => {}
            Binding::Bound => {
                return Err(
                    binding("sender-constrained token (cnf), but no binding is checked")
                        .with_context(principal.fingerprint()),
                );
            }
            Binding::Invalid => {
                return Err(AuthError::new(AuthErrorKind::InvalidClaimType)
                    .with_description("invalid cnf claim")
                    .with_context(principal.fingerprint()));
            }
        }
        Ok(Self {
            principal,
            proved: None,
        })
    }

    /// Puts the principal and the proof in the request extensions; returns the nonce header
    /// for the response, if any.
    pub(crate) fn apply<B>(self, req: &mut Request<B>) -> Option<HeaderValue> {
        req.extensions_mut().insert(self.principal);
        let Proved { proof, nonce } = *self.proved?;
        req.extensions_mut().insert(proof);
        nonce
    }
}

/// The outcome of authentication with sender constraints: known now, or a future.
pub(crate) struct Verification(MaybeReady<Result<Verified, AuthError>>);

impl Verification {
    fn ready(result: Result<Verified, AuthError>) -> Self {
        Self(MaybeReady::ready(result))
    }

    pub(crate) fn into_ready(self) -> Result<Result<Verified, AuthError>, Self> {
        self.0.into_ready().map_err(Self)
    }
}

impl Future for Verification {
    type Output = Result<Verified, AuthError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.poll(cx)
    }
}

impl SenderConstraints {
    /// No constraint checked yet, policy [`SenderPolicy::Allow`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts DPoP-bound tokens with proofs verified by `dpop` (RFC 9449), and refuses
    /// DPoP-bound tokens sent with the `Bearer` scheme.
    pub fn dpop(mut self, dpop: Dpop) -> Self {
        self.dpop = Some(dpop);
        self
    }

    /// Checks certificate-bound tokens (`cnf.x5t#S256`, RFC 8705) against the request's
    /// [`ClientCertificate`].
    pub fn mtls(mut self) -> Self {
        self.mtls = true;
        self
    }

    /// What every route behind the layer needs (default [`SenderPolicy::Allow`]); narrow it
    /// per route with [`SenderGuardLayer`].
    pub fn policy(mut self, policy: SenderPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The DPoP verifier, when DPoP is on.
    pub fn dpop_verifier(&self) -> Option<&Dpop> {
        self.dpop.as_ref()
    }

    /// Whether the `DPoP` authorization scheme is read.
    pub(crate) fn accepts_dpop(&self) -> bool {
        self.dpop.is_some()
    }

    /// The `algs` of DPoP challenges.
    pub(crate) fn dpop_algs(&self) -> Option<Arc<str>> {
        self.dpop.as_ref().map(Dpop::algs_param)
    }

    /// The checks that need only the request: the DPoP proof (signature, method, URL, time,
    /// `ath`, nonce), and the client certificate.
    pub(crate) fn precheck<B>(
        &self,
        req: &Request<B>,
        token: &BearerToken,
    ) -> Result<Precheck, AuthError> {
        let dpop_scheme = token.scheme() == AuthScheme::Dpop;
        let proof = match (&self.dpop, dpop_scheme) {
            (Some(dpop), true) => Some(dpop.verify_proof(req, token.as_str())?),
            (None, true) => {
                return Err(AuthError::new(AuthErrorKind::MalformedCredentials)
                    .with_description("the DPoP scheme is not accepted"));
            }
            (_, false) => None,
        };
        let certificate = if self.mtls {
            req.extensions()
                .get::<ClientCertificate>()
                .map(|c| c.thumbprint().into())
        } else {
            None
        };
        Ok(Precheck {
            dpop_scheme,
            proof,
            certificate,
        })
    }

    /// The token's verification, then its binding, the policy and the replay check.
    pub(crate) fn verify(&self, pre: Precheck, auth: Authentication) -> Verification {
        match auth.into_ready() {
            Ok(Ok(p)) => self.bind(pre, p),
            Ok(Err(e)) => Verification::ready(Err(pre.tag(e))),
            Err(pending) => {
                let this = self.clone();
                Verification(MaybeReady::pending(async move {
                    match pending.await {
                        Ok(p) => this.bind(pre, p).await,
                        Err(e) => Err(pre.tag(e)),
                    }
                }))
            }
        }
    }

    fn check_binding(&self, pre: &Precheck, p: &Principal) -> Result<SenderProof, AuthError> {
        let cnf = cnf_of(p).map_err(|e| pre.tag(e))?;
        let mut proof = SenderProof::default();
        match (&pre.proof, cnf.jkt) {
            (Some(vp), Some(jkt)) if ct_eq(vp.jkt(), jkt) => proof.dpop_jkt = Some(jkt.into()),
            (Some(_), Some(_)) => {
                return Err(
                    binding("DPoP proof key does not match the token").with_dpop_challenge()
                );
            }
            (Some(_), None) => {
                return Err(binding("token is not DPoP-bound").with_dpop_challenge());
            }
            (None, Some(_)) if self.dpop.is_some() => {
                return Err(binding("DPoP-bound token presented as Bearer").with_dpop_challenge());
            }
            // RFC 9449 §7.2: a DPoP-bound token is never a bearer token, even here.
            (None, Some(_)) => return Err(binding("DPoP-bound token, but DPoP is not accepted")),
            (None, None) => {}
        }
        if cnf.other {
            return Err(pre.tag(binding("unsupported confirmation method in cnf")));
        }
        if let Some(x5t) = cnf.x5t {
            // RFC 8705 §3: the binding must be checked; without mTLS it cannot be.
            if !self.mtls {
                return Err(pre.tag(binding(
                    "certificate-bound token, but client certificates are not checked",
                )));
            }
            match &pre.certificate {
                Some(tp) if ct_eq(tp, x5t) => proof.certificate = Some(x5t.into()),
                _ => {
                    return Err(pre.tag(binding("client certificate does not match the token")));
                }
            }
        }
        self.policy.check(&proof, self.dpop.is_some())?;
        Ok(proof)
    }

    fn bind(&self, pre: Precheck, principal: Principal) -> Verification {
        let fingerprint = principal.fingerprint();
        let proof = match self.check_binding(&pre, &principal) {
            Ok(proof) => proof,
            Err(e) => return Verification::ready(Err(e.with_context(fingerprint))),
        };
        let (Some(dpop), Some(vp)) = (&self.dpop, pre.proof) else {
            return Verification::ready(Ok(Verified {
                principal,
                proved: Some(Box::new(Proved { proof, nonce: None })),
            }));
        };
        let nonce = if vp.wants_new_nonce() {
            dpop.current_nonce()
                .and_then(|n| HeaderValue::try_from(n).ok())
        } else {
            None
        };
        let done = move |result| {
            replay_outcome(result)
                .map(|()| Verified {
                    principal,
                    proved: Some(Box::new(Proved { proof, nonce })),
                })
                .map_err(|e| e.with_context(fingerprint))
        };
        match dpop.record(&vp).into_ready() {
            Ok(result) => Verification::ready(done(result)),
            Err(pending) => Verification(MaybeReady::pending(async move { done(pending.await) })),
        }
    }
}

/// Applies [`SenderGuard`]: put it *after* (inside) the bearer layer, e.g. with axum's
/// `route_layer`.
#[derive(Clone, Debug)]
#[must_use]
pub struct SenderGuardLayer {
    policy: SenderPolicy,
    renderer: Option<Renderer>,
}

impl SenderGuardLayer {
    /// Every request needs `policy`.
    pub fn new(policy: SenderPolicy) -> Self {
        Self {
            policy,
            renderer: None,
        }
    }

    /// Sender-constrained tokens only ([`SenderPolicy::Require`]).
    pub fn require() -> Self {
        Self::new(SenderPolicy::Require)
    }

    /// Both kinds of tokens ([`SenderPolicy::Allow`]).
    pub fn allow() -> Self {
        Self::new(SenderPolicy::Allow)
    }

    /// Plain bearer tokens only ([`SenderPolicy::BearerOnly`]).
    pub fn bearer_only() -> Self {
        Self::new(SenderPolicy::BearerOnly)
    }

    /// Renders rejections with `renderer`; by default the one of the bearer layer in front.
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.renderer = Some(renderer);
        self
    }
}

impl<S> Layer<S> for SenderGuardLayer {
    type Service = SenderGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SenderGuard {
            inner,
            policy: self.policy,
            renderer: self.renderer.clone(),
        }
    }
}

/// Lets a request through only when what it proved ([`SenderProof`]) satisfies the policy:
/// 401 `invalid_token` otherwise (with the DPoP challenge when sender-constrained tokens are
/// required and the layer accepts DPoP), and 401 when the request carries no principal (the
/// route is not behind the bearer layer). A request through a bearer layer without sender
/// constraints counts as a plain bearer token.
#[derive(Clone, Debug)]
pub struct SenderGuard<S> {
    inner: S,
    policy: SenderPolicy,
    renderer: Option<Renderer>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SenderGuard<S>
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

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The renderer is read here (whether the layer offers DPoP decides the error), and
        // looked up again only to render a refusal.
        let offers_dpop = self
            .renderer
            .as_ref()
            .or_else(|| req.extensions().get::<Renderer>())
            .is_some_and(Renderer::offers_dpop);
        let principal = req.extensions().get::<Principal>();
        let result = match principal {
            None => Err(AuthError::new(AuthErrorKind::MissingCredentials)),
            Some(_) => {
                let bearer = SenderProof::default();
                let proof = req.extensions().get::<SenderProof>().unwrap_or(&bearer);
                self.policy.check(proof, offers_dpop)
            }
        };
        match result {
            // Decided here: the instance `poll_ready` made ready is called here, so nothing
            // is cloned (the future never calls the inner service).
            Ok(()) => ResponseFuture::calling(self.inner.call(req)),
            Err(err) => {
                // Decided at once, as a scope guard does: no latency to report.
                audit::denied(principal, &err, audit::Started::NONE);
                ResponseFuture::rejected(self.renderer.as_ref(), &req, err)
            }
        }
    }
}
