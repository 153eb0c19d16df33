//! The checks of the full stack done as plainly as a hand-written layer would do them, as a
//! reference for what the checks cost at the least (`minimal_checks`): none of the crate's
//! hardening, reporting or options, never a layer to deploy.
//!
//! Per request: the `Authorization` header read as `Bearer <token>`; the verified caller found
//! in a map by a hash of the token's length and last 64 bytes, then the whole token compared
//! (as the crate's cache does; a first-seen token is verified by `jsonwebtoken::decode` and
//! added; the map is not bounded); its expiry against the clock the crate reads; its scopes
//! searched for the one required; governor's keyed limiter, keyed by the caller's subject;
//! then the outputs every admitted request carries, as in [`super::floor`]: the caller in the
//! request extensions and the two rate-limit fields. What it leaves out and the crate does:
//! the one-credential and size checks, the cache's bound and key-set check, revocation hooks,
//! audit and metrics, marking credentials sensitive, the renderer's challenge with its realm
//! and error, and a limiter key that never mixes two callers.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use governor::Quota;
use governor::middleware::StateInformationMiddleware;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response, StatusCode};
use jsonwebtoken::{DecodingKey, Validation};
use tower::{Layer, Service};
use tower_bearer::clock::{Clock, SystemClock};

/// A verified caller, as the handler sees it.
#[derive(Debug)]
pub(crate) struct Caller {
    /// `sub`.
    pub(crate) subject: String,
    exp: f64,
    scopes: Vec<Box<str>>,
}

type Limiter = governor::RateLimiter<
    String,
    governor::state::keyed::DefaultKeyedStateStore<String>,
    governor::clock::DefaultClock,
    StateInformationMiddleware,
>;

struct Shared {
    key: DecodingKey,
    validation: Validation,
    scope: &'static str,
    /// By the hash of the token's length and last 64 bytes: the token and its caller.
    callers: papaya::HashMap<u64, (Box<str>, Arc<Caller>), foldhash::fast::RandomState>,
    hasher: foldhash::fast::RandomState,
    limiter: Limiter,
}

/// `router` behind the minimal checks, for tokens `key` verifies with `validation`, requiring
/// `scope`; the limit is too high to refuse, as in the other benches.
pub(crate) fn minimal_checks(
    router: axum::Router,
    key: DecodingKey,
    validation: Validation,
    scope: &'static str,
) -> axum::Router {
    let limiter: Limiter =
        governor::RateLimiter::keyed(Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap()))
            .with_middleware::<StateInformationMiddleware>();
    router.layer(MinimalLayer(Arc::new(Shared {
        key,
        validation,
        scope,
        callers: papaya::HashMap::default(),
        hasher: foldhash::fast::RandomState::default(),
        limiter,
    })))
}

#[derive(Clone)]
struct MinimalLayer(Arc<Shared>);

impl<S> Layer<S> for MinimalLayer {
    type Service = Minimal<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Minimal {
            inner,
            shared: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct Minimal<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl Shared {
    /// The caller and the requests left in its quota, or the status refusing the request.
    fn check(&self, req: &Request<Body>) -> Result<(Arc<Caller>, u32), StatusCode> {
        let token = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(StatusCode::UNAUTHORIZED)?;
        let mut hasher = self.hasher.build_hasher();
        hasher.write_usize(token.len());
        hasher.write(&token.as_bytes()[token.len().saturating_sub(64)..]);
        let slot = hasher.finish();
        let callers = self.callers.pin();
        let caller = match callers.get(&slot) {
            Some((known, caller)) if **known == *token => caller.clone(),
            _ => {
                let data =
                    jsonwebtoken::decode::<serde_json::Value>(token, &self.key, &self.validation)
                        .map_err(|_| StatusCode::UNAUTHORIZED)?;
                let claims = data.claims;
                let caller = Arc::new(Caller {
                    subject: claims["sub"].as_str().unwrap_or_default().to_owned(),
                    exp: claims["exp"].as_f64().unwrap_or_default(),
                    scopes: claims["scope"]
                        .as_str()
                        .unwrap_or_default()
                        .split(' ')
                        .map(Box::from)
                        .collect(),
                });
                callers.insert(slot, (token.into(), caller.clone()));
                caller
            }
        };
        if caller.exp <= SystemClock.unix_seconds() {
            return Err(StatusCode::UNAUTHORIZED);
        }
        if !caller.scopes.iter().any(|s| **s == *self.scope) {
            return Err(StatusCode::FORBIDDEN);
        }
        let state = self
            .limiter
            .check_key(&caller.subject)
            .map_err(|_| StatusCode::TOO_MANY_REQUESTS)?;
        Ok((caller, state.remaining_burst_capacity()))
    }
}

impl<S> Service<Request<Body>> for Minimal<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = MinimalFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        match self.shared.check(&req) {
            Ok((caller, remaining)) => {
                req.extensions_mut().insert(caller);
                MinimalFuture::Calling {
                    fut: self.inner.call(req),
                    remaining,
                }
            }
            Err(status) => MinimalFuture::Refused { status },
        }
    }
}

pin_project_lite::pin_project! {
    #[project = Proj]
    enum MinimalFuture<F> {
        Calling { #[pin] fut: F, remaining: u32 },
        Refused { status: StatusCode },
    }
}

impl<F, E> Future for MinimalFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Calling { fut, remaining } => {
                let mut res = std::task::ready!(fut.poll(cx))?;
                super::rate_limit_fields(res.headers_mut(), *remaining);
                Poll::Ready(Ok(res))
            }
            Proj::Refused { status } => {
                let mut res = Response::new(Body::empty());
                *res.status_mut() = *status;
                if *status == StatusCode::UNAUTHORIZED {
                    res.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer"),
                    );
                }
                Poll::Ready(Ok(res))
            }
        }
    }
}
