//! Token lifecycle: revocation, idle tokens and maximum age, around any authenticator.
//!
//! [`Lifecycle`] wraps an [`Authenticator`] (a [`Jwt`](crate::validate::Jwt), introspection,
//! a chain…) and, after it has verified a token, refuses it with 401 `invalid_token` when:
//!
//! - it is **revoked** ([`RevocationStore`]): by token id (`jti`), by fingerprint (tokens
//!   without `jti`; the fingerprint covers the signed content, not the malleable signature),
//!   or by subject (every token issued at or before a time). [`MemoryRevocations`] keeps
//!   them in this process; `RedisRevocations` (feature `redis`) shares them between
//!   instances. Stores hold digests only, and drop each entry when the tokens it concerns
//!   expire. Every revocation is audited (target `tower_bearer::audit`, outcome `revoke`);
//! - it is **idle**: unused for longer than [`Lifecycle::idle_timeout`], the gateway practice
//!   of ending inactive tokens. Tracked per token id (or fingerprint) in a bounded map
//!   (default 100,000 tokens; an entry is kept until its token expires; when full, the
//!   least-recently-used entries go first and such a token is then treated as new);
//! - it is **too old**: issued longer ago than [`Lifecycle::max_age`] (needs `iat`).
//!
//! When the revocation store fails (Redis down), requests get 503 / UNAVAILABLE, or pass if
//! [`Lifecycle::fail_open`] was chosen.
//!
//! ```
//! use std::time::Duration;
//! use tower_bearer::BearerAuthLayer;
//! use tower_bearer::lifecycle::{Lifecycle, MemoryRevocations};
//! use tower_bearer::testing::{TestIssuer, claims};
//! use tower_bearer::validate::Jwt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let issuer = TestIssuer::es256();
//! let jwt = Jwt::builder().key(issuer.key()).audience("api").build().unwrap();
//! let lifecycle = Lifecycle::new(jwt)
//!     .revocations(MemoryRevocations::default())
//!     .idle_timeout(Duration::from_secs(15 * 60))
//!     .max_age(Duration::from_secs(24 * 3600));
//! let token = issuer.mint(claims("alice", "", Duration::from_secs(60)).aud("api"));
//! let principal = lifecycle.verify(&token).await.unwrap();
//! lifecycle.revoke_token(&principal).await.unwrap();
//! assert!(lifecycle.verify(&token).await.is_err());
//! let _layer = BearerAuthLayer::new(lifecycle);
//! # }
//! ```

#[cfg(feature = "redis")]
mod redis;
mod store;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

#[cfg(feature = "redis")]
pub use redis::RedisRevocations;
pub use store::{
    DEFAULT_MAX_REVOCATIONS, Lookup, MemoryRevocations, Revocation, RevocationStore, WriteFuture,
};

use crate::clock::{Clock, SystemClock};
use crate::extract::{BearerToken, TokenSource};
use crate::principal::Principal;
use crate::rate_limit::StoreError;
use crate::reject::{AuthError, AuthErrorKind};
use crate::validate::{Authentication, Authenticator};

/// The default number of tokens the idle tracker follows.
pub const DEFAULT_IDLE_ENTRIES: u64 = 100_000;

/// Token key → (last use in unix nanoseconds, token expiry in unix seconds).
type IdleMap = moka::sync::Cache<[u8; 16], (u64, u64)>;

#[derive(Clone)]
struct Inner {
    auth: Arc<dyn Authenticator>,
    revocations: Option<Arc<dyn RevocationStore>>,
    idle: Option<(Duration, IdleMap)>,
    max_age: Option<Duration>,
    fail_open: bool,
    clock: Arc<dyn Clock>,
}

/// An authenticator with revocation, idle and maximum-age checks. See the
/// [module docs](self).
#[derive(Clone)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

impl fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lifecycle")
            .field("revocations", &self.inner.revocations.is_some())
            .field("idle_timeout", &self.inner.idle.as_ref().map(|(d, _)| d))
            .field("max_age", &self.inner.max_age)
            .field("fail_open", &self.inner.fail_open)
            .finish_non_exhaustive()
    }
}

/// Per-entry expiry of the idle tracker: an entry (last use, then the seconds until its token
/// expires, by the lifecycle's clock when it was made) lives until its token expires.
struct UntilExpiry;

impl moka::Expiry<[u8; 16], (u64, u64)> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 16],
        value: &(u64, u64),
        _at: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(value.1.clamp(1, 366 * 86_400)))
    }
}

impl Lifecycle {
    /// Wraps `auth`; no check is on until configured.
    pub fn new(auth: impl Authenticator) -> Self {
        Self {
            inner: Arc::new(Inner {
                auth: crate::validate::shared(auth),
                revocations: None,
                idle: None,
                max_age: None,
                fail_open: false,
                clock: Arc::new(SystemClock),
            }),
        }
    }

    fn update(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        f(Arc::make_mut(&mut self.inner));
        self
    }

    /// Checks every verified token against `store`.
    #[must_use]
    pub fn revocations(self, store: impl RevocationStore) -> Self {
        let store: Arc<dyn RevocationStore> = Arc::new(store);
        self.update(|i| i.revocations = Some(store))
    }

    /// Refuses tokens unused for longer than `timeout` (tracks up to
    /// [`DEFAULT_IDLE_ENTRIES`] tokens; see [`Lifecycle::idle_timeout_with_capacity`]).
    ///
    /// A use is recorded at most once a second (once per 1/16 of `timeout` when that is
    /// shorter), so that a token used many times a second costs a lookup per request, not a
    /// write: a token can be ended up to that much early, never late.
    #[must_use]
    pub fn idle_timeout(self, timeout: Duration) -> Self {
        self.idle_timeout_with_capacity(timeout, DEFAULT_IDLE_ENTRIES)
    }

    /// [`Lifecycle::idle_timeout`] tracking at most `capacity` tokens.
    #[must_use]
    pub fn idle_timeout_with_capacity(self, timeout: Duration, capacity: u64) -> Self {
        // Least recently used out first, as documented: TinyLFU (moka's default) could
        // refuse to admit a new token at all when full.
        let cache = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .expire_after(UntilExpiry)
            .build();
        self.update(|i| i.idle = Some((timeout, cache)))
    }

    /// Refuses tokens issued (`iat`) longer than `max` ago; tokens without `iat` are refused.
    #[must_use]
    pub fn max_age(self, max: Duration) -> Self {
        self.update(|i| i.max_age = Some(max))
    }

    /// Lets requests pass when the revocation store fails (default: 503).
    #[must_use]
    pub fn fail_open(self, open: bool) -> Self {
        self.update(|i| i.fail_open = open)
    }

    /// The clock for idle and age checks.
    #[must_use]
    pub fn clock(self, clock: impl Clock) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        self.update(|i| i.clock = clock)
    }

    /// Revokes the token `principal` came from: by `jti` when it has one, else by
    /// fingerprint; until the token expires (or a day, if it has no `exp`).
    pub async fn revoke_token(&self, principal: &Principal) -> Result<(), StoreError> {
        let until = principal
            .expires_at()
            // A day from now by this clock or the system's, whichever is later: the store
            // may go by either, and the revocation must hold a day by both.
            .unwrap_or_else(|| {
                self.inner.clock.now().max(std::time::SystemTime::now())
                    + Duration::from_secs(86_400)
            });
        let r = match principal.token_id() {
            Some(jti) => Revocation::TokenId {
                jti: jti.to_owned(),
                until,
            },
            None => Revocation::Fingerprint {
                fingerprint: principal.fingerprint(),
                until,
            },
        };
        self.revoke(r).await
    }

    /// Records a revocation in the configured store, and audits it.
    pub async fn revoke(&self, revocation: Revocation) -> Result<(), StoreError> {
        let store = self
            .inner
            .revocations
            .as_ref()
            .ok_or_else(|| StoreError::new("no revocation store configured"))?;
        let kind = match &revocation {
            Revocation::TokenId { .. } => "token_id",
            Revocation::Fingerprint { .. } => "fingerprint",
            Revocation::Subject { .. } => "subject",
        };
        let expires = store::unix(revocation.until());
        let result = store.revoke(revocation).await;
        tracing::info!(
            target: "tower_bearer::audit",
            outcome = "revoke",
            kind,
            until_unix = expires,
            ok = result.is_ok(),
            "revocation recorded"
        );
        result
    }

    /// Verifies a token string through the wrapped authenticator and every lifecycle check:
    /// what the layer does, for code outside a Tower stack.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.authenticate(&BearerToken::new(token, TokenSource::Authorization))
            .await
    }

    fn now_nanos(&self) -> u64 {
        self.inner
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// The checks that need no I/O: age first, then idle (which also records the use).
    fn local_checks(&self, p: &Principal) -> Result<(), AuthError> {
        if let Some(max) = self.inner.max_age {
            let fail = || {
                AuthError::new(AuthErrorKind::LifetimeExceeded)
                    .with_description("token too old")
                    .with_context(p.fingerprint())
            };
            let iat = p.issued_at().ok_or_else(fail)?;
            let age = self
                .inner
                .clock
                .now()
                .duration_since(iat)
                .unwrap_or_default();
            if age > max {
                return Err(fail());
            }
        }
        if let Some((timeout, cache)) = &self.inner.idle {
            let key = store::keys_of(p)[0].unwrap_or_else(|| {
                let mut k = [0u8; 16];
                k.copy_from_slice(p.fingerprint().as_bytes());
                k
            });
            let now = self.now_nanos();
            let limit = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
            // A use is recorded when the last record is older than this: a token used many
            // times a second costs a lookup, not a write, per request. The record can so lag
            // the last use by up to `step`, which only ever ends a token early, by at most
            // 1/16 of the timeout and never more than a second.
            let step = (limit / 16).min(1_000_000_000);
            let last = cache.get(&key).map(|(last, _)| last);
            let idle = last.is_some_and(|last| now.saturating_sub(last) > limit);
            if !idle && last.is_none_or(|last| now.saturating_sub(last) >= step) {
                // How long the record may matter: until the token expires, by this clock.
                let ttl = p.expires_at().map_or(u64::MAX, |exp| {
                    exp.duration_since(self.inner.clock.now())
                        .map_or(0, |d| d.as_secs())
                });
                cache.insert(key, (now, ttl));
            }
            if idle {
                return Err(AuthError::new(AuthErrorKind::Inactive)
                    .with_description("token idle for too long")
                    .with_context(p.fingerprint()));
            }
        }
        Ok(())
    }

    fn store_failed(&self, p: Principal, e: StoreError) -> Result<Principal, AuthError> {
        tracing::warn!(
            target: "tower_bearer::lifecycle",
            error = %e,
            fail_open = self.inner.fail_open,
            "revocation check failed"
        );
        if self.inner.fail_open {
            Ok(p)
        } else {
            Err(AuthError::new(AuthErrorKind::Unavailable)
                .with_description("revocation check temporarily unavailable"))
        }
    }

    fn revoked(p: &Principal) -> AuthError {
        AuthError::new(AuthErrorKind::Revoked).with_context(p.fingerprint())
    }

    /// Everything after verification, answering synchronously when the store does.
    fn after(&self, p: Principal) -> Authentication {
        if let Err(e) = self.local_checks(&p) {
            return Authentication::ready(Err(e));
        }
        let Some(store) = &self.inner.revocations else {
            return Authentication::ready(Ok(p));
        };
        match store.is_revoked(&p).into_ready() {
            Ok(Ok(false)) => Authentication::ready(Ok(p)),
            Ok(Ok(true)) => Authentication::ready(Err(Self::revoked(&p))),
            Ok(Err(e)) => Authentication::ready(self.store_failed(p, e)),
            Err(lookup) => {
                let this = self.clone();
                Authentication::pending(async move {
                    match lookup.await {
                        Ok(false) => Ok(p),
                        Ok(true) => Err(Self::revoked(&p)),
                        Err(e) => this.store_failed(p, e),
                    }
                })
            }
        }
    }
}

impl Authenticator for Lifecycle {
    fn authenticate(&self, token: &BearerToken) -> Authentication {
        self.then_after(self.inner.auth.authenticate(token))
    }

    fn authenticate_cached(&self, credential: &[u8]) -> Option<Authentication> {
        // A cached verification still goes through every lifecycle check.
        let verified = self.inner.auth.authenticate_cached(credential)?;
        Some(self.then_after(verified))
    }
}

impl Lifecycle {
    /// [`after`](Self::after), once `verified` answers.
    fn then_after(&self, verified: Authentication) -> Authentication {
        match verified.into_ready() {
            Ok(Ok(p)) => self.after(p),
            Ok(Err(e)) => Authentication::ready(Err(e)),
            Err(pending) => {
                let this = self.clone();
                Authentication::pending(async move {
                    let p = pending.await?;
                    this.after(p).await
                })
            }
        }
    }
}
