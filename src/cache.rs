//! The verified-token cache: a token seen before costs a hash and a lookup, not a signature
//! check.
//!
//! [`Jwt`](crate::validate::Jwt) keeps each verified [`Principal`] together with a copy of the
//! whole token, the key set that verified it and the instant its `exp` (plus leeway) passes.
//! Entries are found by a fast keyed hash of the token (foldhash, seeded at random per cache,
//! so nobody can aim collisions at it) and confirmed by comparing the whole token, so a token
//! differing in any byte can never hit. A hit re-checks that expiry against the
//! authenticator's clock and that the key set is still the current one (a key rotation or
//! removal re-verifies every token); the checks that can change after verification
//! (revocation, idle limits) live in [`Lifecycle`](crate::lifecycle::Lifecycle), outside the
//! cache, and run on every request.
//!
//! Only verified tokens are cached, so attackers cannot fill it with forgeries; it is bounded
//! in entries (default 10,000) and each entry leaves when its token expires. An entry holds
//! the token and its claims, so the cache's memory is at most about the number of entries
//! times twice the largest token the [extractor](crate::extract::Extractor) admits (8 KiB by
//! default); with typical 1 KiB tokens, 10,000 entries take about 20 MiB.
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

use std::hash::BuildHasher;

use crate::clock::Clock;
use crate::principal::Principal;

/// The default number of tokens the cache keeps.
pub const DEFAULT_CACHE_ENTRIES: u64 = 10_000;

/// What the cache holds per token, shared (a lookup clones an `Arc`, not the token).
struct Entry {
    /// The whole token, compared on every hit.
    token: Box<str>,
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

impl moka::Expiry<u64, Arc<Entry>> for ExpireAtValidUntil {
    fn expire_after_create(
        &self,
        _k: &u64,
        e: &Arc<Entry>,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        let left = (e.valid_until - self.0.unix_seconds()).clamp(0.0, 366.0 * 86_400.0);
        Some(Duration::from_secs_f64(left))
    }
}

/// The cache; see the [module docs](self).
pub(crate) struct TokenCache {
    map: moka::sync::Cache<u64, Arc<Entry>>,
    /// Seeded at random per cache: the slot of a token cannot be predicted from outside.
    hasher: foldhash::quality::RandomState,
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

impl TokenCache {
    pub(crate) fn new(capacity: u64, clock: Arc<dyn Clock>) -> Self {
        Self {
            map: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(ExpireAtValidUntil(clock.clone()))
                .build(),
            hasher: foldhash::quality::RandomState::default(),
            clock,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The slot of `token`: pass it to [`get`](Self::get) and [`insert`](Self::insert).
    pub(crate) fn key(&self, token: &str) -> u64 {
        self.hasher.hash_one(token.as_bytes())
    }

    /// The cached principal, if this very token is cached, unexpired and was verified by
    /// `key_set`.
    pub(crate) fn get(&self, key: u64, token: &str, key_set: u64) -> Option<Principal> {
        let hit = self
            .map
            .get(&key)
            .filter(|e| {
                // The hash finds the slot; only the whole token proves it is this token. A
                // plain comparison is safe: reaching another token's entry at all needs a
                // collision of a 64-bit hash under a secret seed.
                *e.token == *token
                    && e.key_set == key_set
                    && self.clock.unix_seconds() < e.valid_until
            })
            .map(|e| e.principal.clone());
        let counter = if hit.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        crate::metrics::jwt_cache(hit.is_some());
        hit
    }

    pub(crate) fn insert(
        &self,
        key: u64,
        token: &str,
        principal: Principal,
        valid_until: f64,
        key_set: u64,
    ) {
        let entry = Entry {
            token: token.into(),
            principal,
            valid_until,
            key_set,
        };
        self.map.insert(key, Arc::new(entry));
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.map.entry_count(),
        }
    }
}
