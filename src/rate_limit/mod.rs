//! Per-caller rate limits: GCRA keyed on the verified principal, in memory or on Redis.
//!
//! [`RateLimitLayer`] goes *inside* the bearer layer: it reads the [`Principal`] the bearer
//! layer verified and spends one request of the caller's [`Quota`]. The key comes only from
//! verified data ([`KeyBy`]: subject by default, or client id, token id, or your function of
//! the principal); a request without a principal is refused with 401, so forged or
//! unverified tokens never touch limiter state.
//!
//! - Admitted responses carry `RateLimit-Policy` and `RateLimit` fields
//!   (draft-ietf-httpapi-ratelimit-headers: `"name";q=5;w=10` and `"name";r=4;t=2`).
//! - Refused requests get 429 with `Retry-After` in whole seconds, rounded up, and the same
//!   fields; gRPC calls get RESOURCE_EXHAUSTED (8) with `retry-after` in the metadata.
//! - A store failure (Redis down or slow) applies the configured policy at once: fail open
//!   (admit, log a warning) or fail closed (503, gRPC UNAVAILABLE; the default).
//!
//! Quotas can depend on the caller ([`RateLimitLayer::quota_by`], e.g. a `plan` claim), and
//! limits stack: a second layer with its own [`name`](RateLimitLayer::name) on a route keeps
//! its own state.
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use tower_bearer::BearerAuthLayer;
//! use tower_bearer::rate_limit::{Quota, RateLimitLayer};
//! # use tower_bearer::{keys::{Algorithm, Key}, validate::Jwt};
//! # let jwt = Jwt::builder().key(Key::hmac(&[7; 32], Algorithm::HS256).unwrap()).any_audience().build().unwrap();
//!
//! let app: Router = Router::new()
//!     .route("/items", get(|| async { "items" }))
//!     .layer(RateLimitLayer::new(Quota::per(Duration::from_secs(10), 5))) // inner: limits
//!     .layer(BearerAuthLayer::new(jwt));                                    // outer: verifies
//! ```

mod quota;
#[cfg(feature = "redis")]
mod redis;
mod store;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

pub use quota::{Decision, Quota};
#[cfg(feature = "redis")]
pub use redis::RedisStore;
pub(crate) use store::Slot;
pub use store::{Check, DEFAULT_MAX_KEYS, MemoryStore, RateLimitStore, StoreError};

use crate::audit;
use crate::body::FromRejection;
use crate::maybe_ready::poll_waiting;
use crate::metrics::{self, RateLimitDecision};
use crate::principal::Principal;
use crate::reject::{AuthError, AuthErrorKind, Renderer, retry_after_secs};

/// The `RateLimit-Policy` field name.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The `RateLimit` field name.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// What identifies a caller. Only verified data: never the raw token, unverified claims or
/// client-supplied headers.
#[derive(Clone)]
pub enum KeyBy {
    /// The subject (`sub`); a token without one falls back to its fingerprint.
    Subject,
    /// The client id (`client_id` / `azp`); falls back to the subject, then the fingerprint.
    ClientId,
    /// The token id (`jti`); falls back to the fingerprint.
    TokenId,
    /// Your function of the verified principal; `None` falls back to the fingerprint.
    Custom(Arc<KeyFn>),
}

/// A custom key function over the verified principal.
pub type KeyFn = dyn Fn(&Principal) -> Option<String> + Send + Sync;

impl fmt::Debug for KeyBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyBy::Subject => "Subject",
            KeyBy::ClientId => "ClientId",
            KeyBy::TokenId => "TokenId",
            KeyBy::Custom(_) => "Custom",
        })
    }
}

impl KeyBy {
    /// Writes the limiter key of `p` into `key` (cleared first): the policy name, the
    /// issuer (the same subject at two issuers is two callers), the kind of value and the
    /// value, separated by NUL bytes; the token's fingerprint when the principal has no such
    /// value.
    fn write_key(&self, name: &str, p: &Principal, key: &mut String) {
        use std::fmt::Write as _;
        let custom;
        let found = match self {
            KeyBy::Subject => p.subject().map(|s| ("sub", s)),
            KeyBy::ClientId => p
                .client_id()
                .map(|c| ("cid", c))
                .or_else(|| p.subject().map(|s| ("sub", s))),
            KeyBy::TokenId => p.token_id().map(|j| ("jti", j)),
            KeyBy::Custom(f) => {
                custom = f(p);
                custom.as_deref().map(|k| ("fn", k))
            }
        };
        key.clear();
        match found {
            Some((kind, value)) => {
                let issuer = p.issuer().unwrap_or("");
                for (i, part) in [name, issuer, kind, value].into_iter().enumerate() {
                    if i > 0 {
                        key.push('\u{0}');
                    }
                    key.push_str(part);
                }
            }
            None => {
                let _ = write!(key, "{name}\u{0}fp\u{0}{}", p.fingerprint());
            }
        }
    }

    /// The key a principal keeps (built once).
    fn kept_key(&self, name: &str, p: &Principal) -> Box<str> {
        let mut key = String::new();
        self.write_key(name, p, &mut key);
        key.into_boxed_str()
    }

    /// Calls `f` with the limiter key of `p` under the limit `id` named `name`: the key kept
    /// by the principal (a cached token's principal serves every request it makes), else one
    /// built in a buffer reused per thread. A [custom](KeyBy::Custom) key is built per request:
    /// the function may read more than the principal.
    fn with_key<R>(&self, id: u64, name: &str, p: &Principal, f: impl FnOnce(&str) -> R) -> R {
        if !matches!(self, KeyBy::Custom(_)) {
            let kept = p.limit_key(id, || self.kept_key(name, p));
            if let Some(key) = kept {
                return f(key);
            }
        }
        thread_local! {
            static BUF: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        BUF.with(|buf| match buf.try_borrow_mut() {
            Ok(mut buf) => {
                self.write_key(name, p, &mut buf);
                let result = f(&buf);
                // Keep the buffer small: a huge subject must not pin memory per thread.
                if buf.capacity() > 1024 {
                    *buf = String::new();
                }
                result
            }
            // A store calling back into a limiter on the same thread: build a fresh one.
            Err(_) => {
                let mut key = String::new();
                self.write_key(name, p, &mut key);
                f(&key)
            }
        })
    }
}

/// A fresh id for a limit's configuration: the tag of the keys principals keep for it.
fn next_config_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

type QuotaFn = dyn Fn(&Principal) -> Quota + Send + Sync;

struct Config {
    /// Unique per configuration (a change makes a new one): keys kept by principals are
    /// tagged with it.
    id: u64,
    name: Arc<str>,
    store: Arc<dyn RateLimitStore>,
    /// `store`, when it is a [`MemoryStore`]: a principal then keeps its caller's state.
    memory: Option<MemoryStore>,
    quota: Quota,
    /// The `RateLimit-Policy` field of `quota`, rendered once.
    policy: HeaderValue,
    quota_by: Option<Arc<QuotaFn>>,
    key_by: KeyBy,
    fail_open: bool,
    renderer: Option<Renderer>,
}

/// Applies [`RateLimit`]. See the [module docs](self).
#[derive(Clone)]
#[must_use]
pub struct RateLimitLayer {
    config: Arc<Config>,
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("name", &self.config.name)
            .field("quota", &self.config.quota)
            .field("key_by", &self.config.key_by)
            .field("fail_open", &self.config.fail_open)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// Every caller gets `quota`, counted in a [`MemoryStore`], keyed by subject, named
    /// `default`.
    pub fn new(quota: Quota) -> Self {
        let memory = MemoryStore::new();
        Self {
            config: Arc::new(Config {
                id: next_config_id(),
                name: Arc::from("default"),
                store: Arc::new(memory.clone()),
                memory: Some(memory),
                quota,
                policy: interned_policy_field("default", &quota),
                quota_by: None,
                key_by: KeyBy::Subject,
                fail_open: false,
                renderer: None,
            }),
        }
    }

    fn update(mut self, f: impl FnOnce(&mut Config)) -> Self {
        let c = &*self.config;
        let mut next = Config {
            id: next_config_id(),
            name: c.name.clone(),
            store: c.store.clone(),
            memory: c.memory.clone(),
            quota: c.quota,
            policy: c.policy.clone(),
            quota_by: c.quota_by.clone(),
            key_by: c.key_by.clone(),
            fail_open: c.fail_open,
            renderer: c.renderer.clone(),
        };
        f(&mut next);
        next.policy = interned_policy_field(&next.name, &next.quota);
        self.config = Arc::new(next);
        self
    }

    /// Where state is kept (default: a new [`MemoryStore`]). Share one store between layers
    /// only if they have different [`name`](Self::name)s.
    pub fn store(self, store: impl RateLimitStore) -> Self {
        // A memory store (or an `Arc` of one) lets a cached token's principal keep its
        // caller's state: a clone is the same store.
        let any = &store as &dyn std::any::Any;
        let memory = any.downcast_ref::<MemoryStore>().cloned().or_else(|| {
            any.downcast_ref::<Arc<MemoryStore>>()
                .map(|m| MemoryStore::clone(m))
        });
        let store: Arc<dyn RateLimitStore> = Arc::new(store);
        self.update(|c| {
            c.store = store;
            c.memory = memory;
        })
    }

    /// The policy name: shown in the `RateLimit*` fields and part of every key, so stacked
    /// limiters keep separate state. Must be a token of letters, digits, `-`, `_`, `.`.
    pub fn name(self, name: &str) -> Self {
        let clean: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        self.update(|c| c.name = Arc::from(if clean.is_empty() { "default" } else { &clean }))
    }

    /// Which verified datum identifies the caller (default: the subject).
    pub fn key_by(self, key_by: KeyBy) -> Self {
        self.update(|c| c.key_by = key_by)
    }

    /// Chooses the quota per caller, from verified claims (tiers).
    pub fn quota_by(self, f: impl Fn(&Principal) -> Quota + Send + Sync + 'static) -> Self {
        let f: Arc<QuotaFn> = Arc::new(f);
        self.update(|c| c.quota_by = Some(f))
    }

    /// Tiers from a string claim: callers whose `claim` names a tier get its quota, others the
    /// layer's quota.
    pub fn tiers_by_claim<'a>(
        self,
        claim: &str,
        tiers: impl IntoIterator<Item = (&'a str, Quota)>,
    ) -> Self {
        let claim = claim.to_owned();
        let tiers: HashMap<String, Quota> =
            tiers.into_iter().map(|(k, q)| (k.to_owned(), q)).collect();
        let base = self.config.quota;
        self.quota_by(move |p| {
            p.claim(&claim)
                .and_then(|v| v.as_str())
                .and_then(|t| tiers.get(t).copied())
                .unwrap_or(base)
        })
    }

    /// Admits requests when the store fails (default: refuse them with 503).
    pub fn fail_open(self, open: bool) -> Self {
        self.update(|c| c.fail_open = open)
    }

    /// Renders 429/503 with `renderer` (default: the bearer layer's, from the request).
    pub fn renderer(self, renderer: Renderer) -> Self {
        self.update(|c| c.renderer = Some(renderer))
    }
}

impl RateLimitLayer {
    pub(crate) fn limiter(&self) -> Limiter {
        Limiter(self.config.clone())
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The rate-limiting service. Per-caller limits reject in `call` (the key is known only once
/// the request is read), so `poll_ready` is the inner service's.
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

/// The `RateLimit-Policy` and `RateLimit` fields of one decision, pre-rendered.
#[derive(Clone, Debug)]
pub(crate) struct Fields {
    policy: HeaderValue,
    limit: HeaderValue,
}

impl Fields {
    /// Adds the fields to a response.
    pub(crate) fn apply<B>(self, res: &mut Response<B>) {
        res.headers_mut().insert(RATELIMIT_POLICY, self.policy);
        res.headers_mut().insert(RATELIMIT, self.limit);
    }
}

/// A rate limit run inside the bearer layer (`BearerAuthLayer::rate_limit`) rather than as a
/// service of its own: the same configuration and decisions as [`RateLimit`].
#[derive(Clone)]
pub(crate) struct Limiter(Arc<Config>);

/// What a [`Limiter`] decided: now, or once the store answers.
pub(crate) enum Limited {
    Now(Outcome),
    Pending(Check, Quota),
}

impl Limiter {
    /// Spends one request of `p`'s quota.
    pub(crate) fn decide(&self, p: &Principal) -> Limited {
        self.0.decide(p)
    }

    /// The outcome once a pending check answered.
    pub(crate) fn finish(
        &self,
        p: &Principal,
        quota: &Quota,
        result: Result<Decision, StoreError>,
    ) -> Outcome {
        self.0.outcome(p, quota, result)
    }

    /// The renderer configured on the limit, if any.
    pub(crate) fn renderer(&self) -> Option<&Renderer> {
        self.0.renderer.as_ref()
    }
}

fn ceil_secs(d: Duration) -> u64 {
    retry_after_secs(d)
}

/// `"name";q=burst;w=window`.
fn policy_field(name: &str, quota: &Quota) -> HeaderValue {
    let policy = format!(
        "\"{name}\";q={};w={}",
        quota.burst(),
        ceil_secs(quota.period()).max(1)
    );
    HeaderValue::try_from(policy).unwrap_or(HeaderValue::from_static(""))
}

/// The `RateLimit-Policy` field of a layer's own quota, interned (see [`crate::intern`]): a
/// static value, added to every response without a shared reference count for threads to
/// contend on.
fn interned_policy_field(name: &str, quota: &Quota) -> HeaderValue {
    let field = policy_field(name, quota);
    match field.to_str().ok().and_then(crate::intern::intern) {
        Some(text) => HeaderValue::from_static(text),
        None => field,
    }
}

impl Config {
    fn fields(&self, quota: &Quota, remaining: u32, reset: Duration) -> Fields {
        let policy = if *quota == self.quota {
            self.policy.clone()
        } else {
            policy_field(&self.name, quota)
        };
        // `"name";r=remaining;t=reset`, built by hand: this runs on every request.
        let (mut r, mut t) = (itoa::Buffer::new(), itoa::Buffer::new());
        let (r, t) = (r.format(remaining), t.format(ceil_secs(reset)));
        let mut limit = String::with_capacity(self.name.len() + r.len() + t.len() + 8);
        for part in ["\"", &self.name, "\";r=", r, ";t=", t] {
            limit.push_str(part);
        }
        Fields {
            policy,
            limit: HeaderValue::from_maybe_shared(bytes::Bytes::from(limit))
                .unwrap_or(HeaderValue::from_static("")),
        }
    }
}

/// A rate-limit decision: admit (with the fields to add), or refuse.
pub(crate) enum Outcome {
    Pass(Option<Fields>),
    Refuse(AuthError, Option<Fields>),
}

impl Config {
    /// Spends one request of `p`'s quota.
    fn decide(&self, p: &Principal) -> Limited {
        let quota = self.quota_by.as_ref().map_or(self.quota, |f| f(p));
        // In memory, a principal keeps its caller's state: decided without a lookup.
        if let Some(memory) = &self.memory
            && !matches!(self.key_by, KeyBy::Custom(_))
            && let Some((key, slot)) = p.limit_slot(self.id, || self.key_by.kept_key(&self.name, p))
        {
            let decision = memory.decide_kept(key, &quota, slot);
            return Limited::Now(self.outcome(p, &quota, Ok(decision)));
        }
        let check = self
            .key_by
            .with_key(self.id, &self.name, p, |key| self.store.check(key, &quota));
        match check.into_ready() {
            Ok(result) => Limited::Now(self.outcome(p, &quota, result)),
            Err(pending) => Limited::Pending(pending, quota),
        }
    }

    fn outcome(
        &self,
        principal: &Principal,
        quota: &Quota,
        result: Result<Decision, StoreError>,
    ) -> Outcome {
        match result {
            Ok(Decision::Allow { remaining, reset }) => {
                metrics::rate_limit(RateLimitDecision::Allowed);
                Outcome::Pass(Some(self.fields(quota, remaining, reset)))
            }
            Ok(Decision::Deny { retry_after, reset }) => {
                metrics::rate_limit(RateLimitDecision::Limited);
                Outcome::Refuse(
                    AuthError::rate_limited(retry_after),
                    Some(self.fields(quota, 0, reset)),
                )
            }
            Err(e) => {
                metrics::rate_limit(RateLimitDecision::StoreError);
                tracing::warn!(
                    target: "tower_bearer::rate_limit",
                    policy = %self.name,
                    subject = principal.subject(),
                    error = %e,
                    fail_open = self.fail_open,
                    "rate-limit store failed"
                );
                if self.fail_open {
                    Outcome::Pass(None)
                } else {
                    Outcome::Refuse(
                        AuthError::new(AuthErrorKind::Unavailable)
                            .with_description("rate limiting temporarily unavailable"),
                        None,
                    )
                }
            }
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: FromRejection,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // An admitted request reads no clock here: the latency of this layer's own refusals
        // (its decision, a few tens of nanoseconds) is not worth a clock read per request; a
        // wait for the store is timed from its start.
        // Borrowed, not cloned: on the synchronous path nothing outlives `call` but the
        // decision (a clone is a write to the principal's shared counter, which under load
        // moves between cores on every request).
        let Some(principal) = req.extensions().get::<Principal>() else {
            let err = AuthError::new(AuthErrorKind::MissingCredentials);
            audit::denied(None, &err, audit::Started::NONE);
            return ResponseFuture::rejected(Rejection::new(&self.config, &req, err, None));
        };
        let c = &*self.config;
        let outcome = match c.decide(principal) {
            Limited::Now(outcome) => outcome,
            Limited::Pending(pending, quota) => {
                // The future drives the instance that `poll_ready` made ready; a fresh clone
                // is left behind.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let principal = principal.clone();
                return ResponseFuture {
                    state: State::Checking {
                        waiting: Some(Box::new(Checking {
                            fut: pending,
                            quota,
                            inner,
                            req,
                            config: self.config.clone(),
                            principal,
                            start: audit::Started::now(),
                        })),
                    },
                };
            }
        };
        match outcome {
            // Decided here: the ready instance is called here, nothing is cloned.
            Outcome::Pass(fields) => ResponseFuture::calling(self.inner.call(req), fields),
            Outcome::Refuse(err, fields) => {
                ResponseFuture::refused(c, &req, principal, err, fields, audit::Started::NONE)
            }
        }
    }
}

/// A refusal decided in `call`, rendered when the future is polled.
struct Rejection {
    error: AuthError,
    fields: Option<Fields>,
    grpc: bool,
    renderer: Renderer,
    /// The default renderer, for want of another (see [`Renderer::inside`]).
    by_default: bool,
}

impl Rejection {
    fn new<ReqBody>(
        config: &Config,
        req: &Request<ReqBody>,
        error: AuthError,
        fields: Option<Fields>,
    ) -> Self {
        let (renderer, by_default) = Renderer::inside(config.renderer.as_ref(), req);
        Self {
            error,
            fields,
            grpc: Renderer::is_grpc(req),
            renderer: renderer.into_owned(),
            by_default,
        }
    }

    fn render<B: FromRejection>(self) -> Response<B> {
        let mut res = if self.grpc {
            self.renderer.render_grpc(self.error)
        } else {
            self.renderer.render_http(self.error)
        };
        if self.by_default {
            Renderer::mark_default(&mut res);
        }
        if let Some(f) = self.fields {
            f.apply(&mut res);
        }
        res
    }
}

pin_project! {
    /// Response future of [`RateLimit`].
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        // The store answers later (Redis, or any store that does). Boxed: it holds a request
        // and an inner service, and must not make every request's future bigger than the
        // inner future. Where every request waits, the box is one allocation beside the wait.
        Checking {
            waiting: Option<Box<Checking<S, ReqBody>>>,
        },
        Calling {
            #[pin]
            fut: S::Future,
            fields: Option<Fields>,
        },
        Rejected {
            rejection: Option<Rejection>,
        },
    }
}

/// What the `Checking` state holds while the store answers.
struct Checking<S, ReqBody> {
    fut: Check,
    quota: Quota,
    inner: S,
    req: Request<ReqBody>,
    config: Arc<Config>,
    principal: Principal,
    start: audit::Started,
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn rejected(rejection: Rejection) -> Self {
        Self {
            state: State::Rejected {
                rejection: Some(rejection),
            },
        }
    }

    #[inline]
    fn calling(fut: S::Future, fields: Option<Fields>) -> Self {
        Self {
            state: State::Calling { fut, fields },
        }
    }

    fn refused(
        config: &Config,
        req: &Request<ReqBody>,
        principal: &Principal,
        err: AuthError,
        fields: Option<Fields>,
        start: audit::Started,
    ) -> Self {
        audit::denied(Some(principal), &err, start);
        Self::rejected(Rejection::new(config, req, err, fields))
    }
}

impl<S, ReqBody> fmt::Debug for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Checking { .. } => "Checking",
            State::Calling { .. } => "Calling",
            State::Rejected { .. } => "Rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: FromRejection,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Most requests are in this state from the start: answered without leaving it.
        if matches!(self.state, State::Calling { .. }) {
            return self.poll_calling(cx);
        }
        self.poll_other(cx)
    }
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: FromRejection,
{
    /// The inner service's response, with the fields added where the inner future wrote it
    /// (no copies on its way out).
    #[inline(always)]
    fn poll_calling(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Response<ResBody>, S::Error>> {
        let StateProj::Calling { fut, fields } = self.project().state.project() else {
            unreachable!("only called in the Calling state");
        };
        let mut out = fut.poll(cx);
        if let Poll::Ready(Ok(res)) = &mut out
            && let Some(f) = fields.take()
        {
            f.apply(res);
        }
        out
    }

    #[inline(never)]
    fn poll_other(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Response<ResBody>, S::Error>> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Checking { waiting } => {
                    let (w, result) =
                        ready!(poll_waiting(waiting, |w| Pin::new(&mut w.fut).poll(cx)));
                    let Checking {
                        quota,
                        mut inner,
                        req,
                        config,
                        principal,
                        start,
                        ..
                    } = w;
                    let next = match config.outcome(&principal, &quota, result) {
                        Outcome::Pass(fields) => Self::calling(inner.call(req), fields),
                        Outcome::Refuse(err, fields) => {
                            Self::refused(&config, &req, &principal, err, fields, start)
                        }
                    };
                    // Move into the new state (its own pinned field is fresh).
                    let ResponseFuture { state } = next;
                    this.state.set(state);
                }
                StateProj::Calling { .. } => return self.poll_calling(cx),
                StateProj::Rejected { rejection } => {
                    let rejection = rejection
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(rejection.render()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_fields_are_interned() {
        let quota = Quota::per(Duration::from_secs(60), 100);
        let a = interned_policy_field("interning", &quota);
        assert_eq!(a, "\"interning\";q=100;w=60");
        assert_eq!(a, interned_policy_field("interning", &quota));
        // Interned or not (the table is bounded: `intern`'s own test fills it, and this one
        // must not, or that test could find it full), the field is right.
        for i in 0..20 {
            let name = format!("interning-{i}");
            assert_eq!(
                interned_policy_field(&name, &quota),
                format!("\"{name}\";q=100;w=60").as_str()
            );
        }
    }

    fn principal(claims: serde_json::Value) -> Principal {
        let claims = claims.as_object().unwrap().clone();
        Principal::from_claims(claims, crate::TokenFingerprint::of_bytes(b"t")).unwrap()
    }

    fn key_of(layer: &RateLimitLayer, p: &Principal) -> String {
        let c = &layer.config;
        c.key_by.with_key(c.id, &c.name, p, str::to_owned)
    }

    /// A principal keeps the key of the first limit that asked, and every other limit (another
    /// name, another `KeyBy`, another layer built from the same one) still gets its own.
    #[test]
    fn a_kept_key_serves_only_its_own_limit() {
        let p = principal(serde_json::json!({
            "iss": "https://issuer", "sub": "alice", "jti": "t-1", "client_id": "web"
        }));
        let quota = Quota::per(Duration::from_secs(60), 1);
        let a = RateLimitLayer::new(quota).name("a");
        let expected = "a\0https://issuer\0sub\0alice";
        assert_eq!(key_of(&a, &p), expected);
        // Kept, and served again.
        assert_eq!(p.limit_key(a.config.id, || unreachable!()), Some(expected));
        assert_eq!(key_of(&a, &p), expected);
        assert_eq!(key_of(&a.clone(), &p), expected);
        assert_eq!(
            key_of(&RateLimitLayer::new(quota).name("b"), &p),
            "b\0https://issuer\0sub\0alice"
        );
        assert_eq!(
            key_of(&a.clone().key_by(KeyBy::TokenId), &p),
            "a\0https://issuer\0jti\0t-1"
        );
        assert_eq!(
            key_of(&a.clone().key_by(KeyBy::ClientId), &p),
            "a\0https://issuer\0cid\0web"
        );
        let f: Arc<KeyFn> = Arc::new(|p: &Principal| p.subject().map(str::to_uppercase));
        assert_eq!(
            key_of(&a.clone().key_by(KeyBy::Custom(f)), &p),
            "a\0https://issuer\0fn\0ALICE"
        );
        // The first limit's key is still the one kept.
        assert_eq!(key_of(&a, &p), expected);
    }

    /// A store that is not a memory store decides every request, even for a principal that
    /// keeps its caller's state for another limit or store; a memory store given to `store`
    /// (bare or in an `Arc`) is the one that counts, with or without a kept state.
    #[test]
    fn the_configured_store_decides() {
        struct Down;
        impl RateLimitStore for Down {
            fn check(&self, _: &str, _: &Quota) -> Check {
                Check::ready(Err(StoreError::new("down")))
            }
        }
        let quota = Quota::per(Duration::from_secs(3600), 2);
        let refused = |l: &Limiter, p: &Principal| match l.decide(p) {
            Limited::Now(Outcome::Pass(_)) => false,
            Limited::Now(Outcome::Refuse(e, _)) => {
                assert_eq!(e.kind(), AuthErrorKind::Unavailable);
                true
            }
            Limited::Pending(..) => unreachable!("both stores decide at once"),
        };
        // The default memory store first, then the failing one in its place, for a principal
        // that has kept nothing yet.
        let memory = RateLimitLayer::new(quota);
        let alice = principal(serde_json::json!({"iss": "https://issuer", "sub": "alice"}));
        assert!(!refused(&memory.clone().limiter(), &alice));
        let down = memory.store(Down).limiter();
        let carol = principal(serde_json::json!({"iss": "https://issuer", "sub": "carol"}));
        for _ in 0..3 {
            assert!(
                refused(&down, &carol),
                "the failing store answers every request"
            );
            assert!(refused(&down, &alice));
        }
        for shared in [true, false] {
            let p = principal(serde_json::json!({"iss": "https://issuer", "sub": "bob"}));
            let store = MemoryStore::new();
            let layer = RateLimitLayer::new(quota);
            let layer = if shared {
                layer.store(Arc::new(store.clone()))
            } else {
                layer.store(store.clone())
            };
            assert!(matches!(
                layer.limiter().decide(&p),
                Limited::Now(Outcome::Pass(_))
            ));
            assert_eq!(store.len(), 1, "counted in the given store");
            let key = layer.config.key_by.kept_key(&layer.config.name, &p);
            assert!(matches!(store.decide(&key, &quota), Decision::Allow { .. }));
            assert!(matches!(
                layer.limiter().decide(&p),
                Limited::Now(Outcome::Refuse(..))
            ));
        }
    }

    /// Two limits sharing one store (allowed when their names differ) count separately for a
    /// principal that keeps the first one's key.
    #[test]
    fn limits_sharing_a_store_count_apart() {
        let p = principal(serde_json::json!({"iss": "https://issuer", "sub": "alice"}));
        let store = MemoryStore::new();
        let quota = Quota::per(Duration::from_secs(3600), 1);
        let a = RateLimitLayer::new(quota)
            .name("a")
            .store(store.clone())
            .limiter();
        let b = RateLimitLayer::new(quota).name("b").store(store).limiter();
        let passed = |l: &Limiter| match l.decide(&p) {
            Limited::Now(Outcome::Pass(_)) => true,
            Limited::Now(Outcome::Refuse(..)) => false,
            Limited::Pending(..) => unreachable!("the memory store decides at once"),
        };
        assert!(passed(&a));
        assert!(passed(&b));
        assert!(!passed(&a));
        assert!(!passed(&b));
    }
}
