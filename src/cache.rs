//! The verified-token cache: a token seen before costs a hash and a lookup, not a signature
//! check.
//!
//! [`Jwt`](crate::validate::Jwt) keeps each verified [`Principal`] together with a copy of the
//! whole token, the key set that verified it and the instant its `exp` (plus leeway) passes.
//! Entries are found by a fast keyed hash of the token's length and its last 64 bytes (the
//! signature, which differs between any two tokens an issuer signs; foldhash, seeded at random
//! per cache, so nobody can aim collisions at it) and confirmed by comparing the whole token,
//! so a token differing in any byte can never hit. A hit re-checks that expiry against the
//! authenticator's clock and that the key set is still the current one (a key rotation or
//! removal re-verifies every token); the checks that can change after verification
//! (revocation, idle limits) live in [`Lifecycle`](crate::lifecycle::Lifecycle), outside the
//! cache, and run on every request.
//!
//! Only verified tokens are cached, so attackers cannot fill it with forgeries; it is bounded
//! in entries (default 10,000). A hit takes no lock (a `papaya` map: threads hitting one
//! token share only its principal's reference count) and marks the entry used; adding tokens
//! takes a mutex, and when the cache is full a CLOCK sweep (second chance) drops a tenth of
//! it: expired entries and those not hit since the last sweep first. Each sweep starts at a
//! random entry and wraps around to it: no entry is favoured by where its slot is. An expired
//! entry is never served: a lookup that finds one removes it, and the first insertion a
//! minute or more after the last sweep drops every expired entry (until then they count
//! against the bound like any other). An entry holds
//! the token, its claims, its signed part (from which the fingerprint is computed when first
//! asked for) and, behind a rate limit, its limiter key (the policy name and at most two
//! claims, kept once derived), so the cache's memory is at most about the number of entries
//! times four times the largest token the [extractor](crate::extract::Extractor) admits
//! (8 KiB by default); with typical 1 KiB tokens, 10,000 entries take about 30 MiB.
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
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::clock::Clock;
use crate::hash::PreHashed;
use crate::principal::Principal;

/// The default number of tokens the cache keeps.
pub const DEFAULT_CACHE_ENTRIES: u64 = 10_000;

/// The map's key: the whole token, and the keyed hash that finds it.
struct Slot {
    hash: u64,
    token: Box<[u8]>,
}

impl Hash for Slot {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash);
    }
}

impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.token == other.token
    }
}

impl Eq for Slot {}

/// A lookup by a borrowed token. The whole token is compared in place, so a hit copies
/// nothing but the principal's reference: every request of a reused token shares that entry,
/// and each line written is one more cache line that moves between the cores serving it.
struct Probe<'a> {
    hash: u64,
    token: &'a [u8],
}

impl Hash for Probe<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash);
    }
}

impl papaya::Equivalent<Slot> for Probe<'_> {
    fn equivalent(&self, key: &Slot) -> bool {
        // The hash finds the slot; only the whole token proves it is this token. A plain
        // (variable-time) comparison is safe: reaching an entry at all takes its token's
        // length and last 64 bytes (or a 64-bit collision under a secret seed), and whoever
        // has seen a token's signature has seen the whole token.
        self.hash == key.hash && *key.token == *self.token
    }
}

/// What the cache holds per token (the token itself is the key).
struct Entry {
    principal: Principal,
    /// Unix seconds after which the token is expired (`exp` + leeway).
    valid_until: f64,
    /// The id of the key set that verified it.
    key_set: u64,
    /// Hit since the last eviction sweep (written only when it changes: a hot entry's line
    /// stays shared between the cores reading it).
    used: AtomicBool,
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

/// How often an insertion sweeps out expired entries, in seconds.
const SWEEP_EVERY: f64 = 60.0;

type Map = papaya::HashMap<Slot, Entry, PreHashed>;

/// The cache; see the [module docs](self).
pub(crate) struct TokenCache {
    map: Map,
    /// The most entries kept.
    capacity: usize,
    /// Held to add entries and to sweep: one thread at a time changes the map's size, so the
    /// bound is exact. It guards the state of the random start of eviction sweeps.
    changing: std::sync::Mutex<u64>,
    /// Seeded at random per cache: the slot of a token cannot be predicted from outside.
    hasher: foldhash::quality::RandomState,
    clock: Arc<dyn Clock>,
    /// Unix seconds of the next sweep of expired entries (an `f64`'s bits).
    next_sweep: AtomicU64,
    hits: ThreadCounter,
    misses: ThreadCounter,
}

/// A counter each thread adds to in a slot of its own, on a cache line of its own: no
/// shared atomic to move between cores on every hit, and no atomic read-modify-write either
/// (only the slot's thread writes it; a sum reads every slot).
#[derive(Default)]
struct ThreadCounter(thread_local::ThreadLocal<PaddedCounter>);

#[derive(Default)]
#[repr(align(128))]
struct PaddedCounter(AtomicU64);

impl ThreadCounter {
    fn add_one(&self) {
        let slot = &self.0.get_or_default().0;
        slot.store(slot.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }
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
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        let next_sweep = clock.unix_seconds() + SWEEP_EVERY;
        let hasher = foldhash::quality::RandomState::default();
        Self {
            map: papaya::HashMap::builder()
                .hasher(PreHashed::default())
                .build(),
            capacity,
            // Seeded per cache: table order comes from the cache's random hasher too.
            changing: std::sync::Mutex::new(hasher.hash_one(capacity)),
            hasher,
            clock,
            next_sweep: AtomicU64::new(next_sweep.to_bits()),
            hits: ThreadCounter::default(),
            misses: ThreadCounter::default(),
        }
    }

    /// The slot of `token`: pass it to [`get`](Self::get) and [`insert`](Self::insert).
    ///
    /// Only the length and the last 64 bytes are hashed: a JWT ends with its signature, so
    /// two tokens that share them are either the same token or a forgery, and the full
    /// comparison in [`get`](Self::get) tells which (a forgery reaching a slot only costs a
    /// miss, as any other forgery does).
    pub(crate) fn key(&self, token: &[u8]) -> u64 {
        let tail = &token[token.len().saturating_sub(64)..];
        self.hasher.hash_one((token.len(), tail))
    }

    /// The cached principal, if this very token is cached, unexpired and was verified by
    /// `key_set`; counts a hit or a miss.
    pub(crate) fn get(&self, key: u64, token: &[u8], key_set: u64) -> Option<Principal> {
        let hit = self.lookup(key, token, key_set);
        self.count(hit.is_some());
        hit
    }

    /// [`get`](Self::get) that counts only a hit: for a first look whose miss is followed by
    /// a [`get`](Self::get) of the same token.
    pub(crate) fn get_hit(&self, token: &[u8], key_set: u64) -> Option<Principal> {
        let hit = self.lookup(self.key(token), token, key_set)?;
        self.count(true);
        Some(hit)
    }

    fn lookup(&self, key: u64, token: &[u8], key_set: u64) -> Option<Principal> {
        let probe = Probe { hash: key, token };
        let map = self.map.pin();
        let entry = map.get(&probe)?;
        if entry.key_set != key_set {
            return None;
        }
        if self.clock.unix_seconds() >= entry.valid_until {
            map.remove(&probe);
            return None;
        }
        if !entry.used.load(Ordering::Relaxed) {
            entry.used.store(true, Ordering::Relaxed);
        }
        Some(entry.principal.clone())
    }

    fn count(&self, hit: bool) {
        if hit {
            self.hits.add_one();
        } else {
            self.misses.add_one();
        }
        crate::metrics::jwt_cache(hit);
    }

    pub(crate) fn insert(
        &self,
        key: u64,
        token: &str,
        principal: Principal,
        valid_until: f64,
        key_set: u64,
    ) {
        let slot = Slot {
            hash: key,
            token: token.as_bytes().into(),
        };
        let entry = Entry {
            principal,
            valid_until,
            key_set,
            used: AtomicBool::new(false),
        };
        let now = self.clock.unix_seconds();
        let mut hand = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let map = self.map.pin();
        if self.sweep_due(now) {
            map.retain(|_, e| now < e.valid_until);
        }
        if map.len() >= self.capacity && !map.contains_key(&slot) {
            self.evict(&map, now, &mut hand);
        }
        map.insert(slot, entry);
        drop(hand);
    }

    /// Makes room (the mutex held) with a CLOCK sweep: drops expired entries and entries not
    /// hit since the last sweep, and gives those hit a second chance (their mark is cleared),
    /// until a tenth of the capacity is free. Each turn starts at a random entry and wraps
    /// around to it, so every entry's mark is looked at in turn wherever it sits in the table
    /// (a sweep always starting at the table's start would drop the entries there again and
    /// again while those at its end live on). A second turn finds every mark cleared unless
    /// the entry was hit again meanwhile; a third, reached only when hits keep re-marking
    /// entries, drops entries whatever their mark, so the bound holds.
    fn evict(
        &self,
        map: &papaya::HashMapRef<'_, Slot, Entry, PreHashed, papaya::LocalGuard<'_>>,
        now: f64,
        hand: &mut u64,
    ) {
        let target = self.capacity - self.capacity.div_ceil(10);
        let start = usize::try_from(next_random(hand) % map.len().max(1) as u64).unwrap_or(0);
        for turn in 0..3 {
            let second_chance = turn < 2;
            for (from, until) in [(start, usize::MAX), (0, start)] {
                let mut excess = map.len().saturating_sub(target);
                if excess == 0 {
                    return;
                }
                if from >= until {
                    continue;
                }
                let mut at = 0;
                map.retain(|_, e| {
                    let here = at;
                    at += 1;
                    if excess == 0 || here < from || here >= until {
                        return true;
                    }
                    let keep = second_chance
                        && now < e.valid_until
                        && e.used.swap(false, Ordering::Relaxed);
                    if !keep {
                        excess -= 1;
                    }
                    keep
                });
            }
        }
    }

    /// Whether the sweep of every expired entry is due (at most once a minute; one insertion
    /// does it): if so, the next one is scheduled.
    fn sweep_due(&self, now: f64) -> bool {
        let due = self.next_sweep.load(Ordering::Relaxed);
        now >= f64::from_bits(due)
            && self
                .next_sweep
                .compare_exchange(
                    due,
                    (now + SWEEP_EVERY).to_bits(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.sum(),
            misses: self.misses.sum(),
            entries: self.map.len() as u64,
        }
    }
}

/// The next of a xorshift sequence: where an eviction sweep starts. Not a secret: only
/// verified tokens are cached, so no caller can aim at a slot.
fn next_random(state: &mut u64) -> u64 {
    // Zero is xorshift's one fixed point.
    let mut x = (*state).max(1);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::principal::TokenFingerprint;

    fn principal() -> Principal {
        let claims = serde_json::json!({"sub": "alice"});
        Principal::from_claims(
            claims.as_object().unwrap().clone(),
            TokenFingerprint::of_bytes(b"t"),
        )
        .unwrap()
    }

    fn put(cache: &TokenCache, token: &[u8], valid_until: f64) {
        let token = std::str::from_utf8(token).unwrap();
        cache.insert(
            cache.key(token.as_bytes()),
            token,
            principal(),
            valid_until,
            1,
        );
    }

    #[test]
    fn a_hit_needs_the_same_bytes_the_same_key_set_and_time_left() {
        let clock = ManualClock::at_unix(1_000);
        let cache = TokenCache::new(10, Arc::new(clock.clone()));
        let token = b"header.payload.signature-that-is-longer-than-sixty-four-bytes-0123456789";
        put(&cache, token, 1_010.0);
        assert!(cache.get_hit(token, 1).is_some());
        // Same length and last 64 bytes: the same slot, but not the same token.
        let mut twin = token.to_vec();
        twin[0] = b'H';
        assert_eq!(cache.key(&twin), cache.key(token));
        assert!(cache.get_hit(&twin, 1).is_none());
        assert!(cache.get_hit(token, 2).is_none(), "another key set");
        clock.advance(Duration::from_secs(10));
        assert!(cache.get_hit(token, 1).is_none(), "expired");
        assert_eq!(
            cache.stats().entries,
            0,
            "an expired entry found is removed"
        );
        assert_eq!(cache.stats().hits, 1);
    }

    /// Every thread counts in its own slot; the sum misses none, from threads still running
    /// or gone.
    #[test]
    fn hits_and_misses_from_many_threads_are_all_counted() {
        let cache = TokenCache::new(10, Arc::new(ManualClock::at_unix(1_000)));
        let token = b"a-token-every-thread-hits";
        put(&cache, token, 2_000.0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..1_000 {
                        assert!(cache.get(cache.key(token), token, 1).is_some());
                        assert!(
                            cache
                                .get(cache.key(b"never-cached"), b"never-cached", 1)
                                .is_none()
                        );
                    }
                });
            }
        });
        assert!(cache.get_hit(token, 1).is_some());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (8_001, 8_000));
    }

    #[test]
    fn expired_entries_are_swept_within_a_minute() {
        let clock = ManualClock::at_unix(1_000);
        let cache = TokenCache::new(100, Arc::new(clock.clone()));
        for i in 0..20 {
            put(&cache, format!("short-lived-{i}").as_bytes(), 1_005.0);
        }
        put(&cache, b"long-lived", 5_000.0);
        assert_eq!(cache.stats().entries, 21);
        clock.advance(Duration::from_secs(61));
        put(&cache, b"another", 5_000.0);
        assert_eq!(cache.stats().entries, 2);
        assert!(cache.get_hit(b"long-lived", 1).is_some());
    }

    #[test]
    fn entries_are_bounded() {
        let cache = TokenCache::new(50, Arc::new(ManualClock::at_unix(1_000)));
        for i in 0..1_000 {
            put(&cache, format!("token-{i}").as_bytes(), 5_000.0);
        }
        assert!(cache.stats().entries <= 50, "{:?}", cache.stats());
    }

    /// A full cache drops the tokens not hit since its last sweep first: a token in use
    /// outlives a stream of tokens seen once.
    #[test]
    fn a_token_in_use_outlives_tokens_seen_once() {
        let cache = TokenCache::new(20, Arc::new(ManualClock::at_unix(1_000)));
        put(&cache, b"in-use", 5_000.0);
        for i in 0..500 {
            assert!(
                cache.get_hit(b"in-use", 1).is_some(),
                "evicted after {i} others"
            );
            put(&cache, format!("once-{i}").as_bytes(), 5_000.0);
            assert!(cache.stats().entries <= 20);
        }
    }

    /// The eviction sweep goes round the table: a token seen once is dropped in its turn,
    /// wherever its slot is, instead of living on at the end of the table while the entries
    /// at its start are dropped again and again.
    #[test]
    fn the_sweep_goes_round_the_table() {
        let cache = TokenCache::new(20, Arc::new(ManualClock::at_unix(1_000)));
        for i in 0..20 {
            put(&cache, format!("first-{i}").as_bytes(), 5_000.0);
        }
        // About 200 sweeps of two entries each: a given entry escapes all of them with a
        // chance of about (1 - 2/20)^200, 7e-10; one of the 20, about 1e-8.
        for i in 0..400 {
            put(&cache, format!("later-{i}").as_bytes(), 5_000.0);
        }
        let left: Vec<String> = (0..20)
            .map(|i| format!("first-{i}"))
            .filter(|t| cache.get_hit(t.as_bytes(), 1).is_some())
            .collect();
        assert!(left.is_empty(), "never swept: {left:?}");
    }

    /// With every entry hit since the last sweep, the sweep clears every mark, then drops a
    /// tenth of the entries: the bound holds.
    #[test]
    fn a_cache_of_entries_all_in_use_still_makes_room() {
        let cache = TokenCache::new(20, Arc::new(ManualClock::at_unix(1_000)));
        let tokens: Vec<String> = (0..20).map(|i| format!("in-use-{i}")).collect();
        for t in &tokens {
            put(&cache, t.as_bytes(), 5_000.0);
        }
        for t in &tokens {
            assert!(cache.get_hit(t.as_bytes(), 1).is_some());
        }
        put(&cache, b"new", 5_000.0);
        assert_eq!(cache.stats().entries, 19, "18 kept, then the new one");
        assert!(cache.get_hit(b"new", 1).is_some());
    }

    /// A hit takes no lock: it goes through while another thread holds the mutex that adding
    /// and sweeping take.
    #[test]
    fn a_hit_goes_through_while_the_cache_changes() {
        let cache = Arc::new(TokenCache::new(10, Arc::new(ManualClock::at_unix(1_000))));
        put(&cache, b"token", 5_000.0);
        let _changing = cache.changing.lock().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let other = cache.clone();
        std::thread::spawn(move || {
            let _ = tx.send(other.get_hit(b"token", 1).is_some());
        });
        let hit = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a hit waited for the cache's mutex");
        assert!(hit);
    }

    /// Threads adding tokens at once never take the cache past its bound.
    #[test]
    fn concurrent_insertions_never_exceed_the_bound() {
        let cache = TokenCache::new(50, Arc::new(ManualClock::at_unix(1_000)));
        let most = AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (cache, most) = (&cache, &most);
                s.spawn(move || {
                    for i in 0..2_000 {
                        put(cache, format!("token-{t}-{i}").as_bytes(), 5_000.0);
                        most.fetch_max(cache.stats().entries, Ordering::Relaxed);
                    }
                });
            }
        });
        assert!(most.load(Ordering::Relaxed) <= 50, "{most:?}");
    }
}
