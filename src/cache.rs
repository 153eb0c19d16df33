//! The verified-token cache: a token seen before costs a hash and a lookup, not a signature
//! check.
//!
//! [`Jwt`](crate::validate::Jwt) keeps each verified [`Principal`] under the SHA-256 digest of
//! the whole token (so a token differing in any byte can never hit, and the cache never holds
//! a token), together with the key set that verified it and the instant its `exp` (plus
//! leeway) passes. A hit re-checks that expiry against the authenticator's clock and that the
//! key set is still the current one (a key rotation or removal re-verifies every token); the
//! checks that can change after verification (revocation, idle limits) live in
//! [`Lifecycle`](crate::lifecycle::Lifecycle), outside the cache, and run on every request.
//!
//! Only verified tokens are cached, so attackers cannot fill it with forgeries; it is bounded
//! in entries (default 10,000) and each entry leaves when its token expires.
//!
//! ```
//! use tower_bearer::testing::{TestIssuer, claims};
//! use tower_bearer::validate::Jwt;
//!
//! let issuer = TestIssuer::es256();
//! let jwt = Jwt::builder().key(issuer.key()).audience("api").build().unwrap();
//! let token = issuer.mint(claims("alice", "", std::time::Duration::from_secs(60)).aud("api"));
//! jwt.verify(&token).unwrap();
//! jwt.verify(&token).unwrap();
//! let stats = jwt.cache_stats().unwrap();
//! assert_eq!((stats.hits, stats.misses), (1, 1));
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::principal::Principal;

/// The default number of tokens the cache keeps.
pub const DEFAULT_CACHE_ENTRIES: u64 = 10_000;

#[derive(Clone)]
struct Entry {
    principal: Principal,
    /// Unix seconds after which the token is expired (`exp` + leeway).
    valid_until: f64,
    /// The id of the key set that verified it.
    key_set: u64,
}

/// Counters of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that needed a full verification.
    pub misses: u64,
    /// Entries held (approximate).
    pub entries: u64,
}

struct ExpireAtValidUntil(Arc<dyn Clock>);

impl moka::Expiry<[u8; 32], Entry> for ExpireAtValidUntil {
    fn expire_after_create(
        &self,
        _k: &[u8; 32],
        e: &Entry,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        let left = (e.valid_until - self.0.unix_seconds()).clamp(0.0, 366.0 * 86_400.0);
        Some(Duration::from_secs_f64(left))
    }
}

/// The cache; see the [module docs](self).
pub(crate) struct TokenCache {
    map: moka::sync::Cache<[u8; 32], Entry>,
    clock: Arc<dyn Clock>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("stats", &self.stats())
            .finish()
    }
}

/// The cache key of a token.
pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenCache {
    pub(crate) fn new(capacity: u64, clock: Arc<dyn Clock>) -> Self {
        Self {
            map: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(ExpireAtValidUntil(clock.clone()))
                .build(),
            clock,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached principal, if the token is cached, unexpired and was verified by `key_set`.
    pub(crate) fn get(&self, key: &[u8; 32], key_set: u64) -> Option<Principal> {
        let hit = self
            .map
            .get(key)
            .filter(|e| e.key_set == key_set && self.clock.unix_seconds() < e.valid_until)
            .map(|e| e.principal);
        let counter = if hit.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    pub(crate) fn insert(
        &self,
        key: [u8; 32],
        principal: Principal,
        valid_until: f64,
        key_set: u64,
    ) {
        self.map.insert(
            key,
            Entry {
                principal,
                valid_until,
                key_set,
            },
        );
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.map.entry_count(),
        }
    }
}
