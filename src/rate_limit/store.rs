use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use super::quota::{Decision, Quota, gcra};
use crate::clock::{Clock, SystemClock};

/// A store failed to decide (Redis down, timed out…). Never holds token material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(String);

impl StoreError {
    /// A store error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

crate::maybe_ready::maybe_ready_type! {
    /// The outcome of [`RateLimitStore::check`]: known now (memory) or a future (Redis).
    #[must_use]
    pub struct Check(Result<Decision, StoreError>), "decision";
}

/// Where limiter state lives. `key` is already namespaced and derived from verified data
/// only; stores may hash it further.
pub trait RateLimitStore: Send + Sync + 'static {
    /// Spends one request of `quota` for `key`, atomically.
    fn check(&self, key: &str, quota: &Quota) -> Check;
}

impl<S: RateLimitStore + ?Sized> RateLimitStore for Arc<S> {
    fn check(&self, key: &str, quota: &Quota) -> Check {
        (**self).check(key, quota)
    }
}

/// The default number of callers the memory store tracks.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

const SHARDS: usize = 64;

/// One shard: caller digest → GCRA theoretical arrival time (unix nanoseconds).
type Shard = std::sync::Mutex<ShardMap>;
type ShardMap = std::collections::HashMap<u64, u64, BuildHasherDefault<PassThrough>>;

/// The map key is already a keyed hash: hashing it again would only cost time.
#[derive(Default)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by the map; fold anything else in, never panic.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// In-process limiter state: a sharded map from caller to GCRA arrival time.
///
/// Each decision locks one of 64 shards (no global lock, never held across an await) for a
/// hash-map lookup. Keys are 64-bit keyed hashes, seeded at random per store (nobody outside
/// can aim a collision at another caller's state; by chance, two of 100,000 callers share a
/// slot with odds below 1 in 10⁹), so memory per caller does not depend on the subject's
/// length. Bounded: at most `max_keys` callers (default 100,000). When a shard is
/// full, callers whose quota is whole again are dropped first (their state is the same as no
/// state, so nothing is lost); if that is not enough, the callers closest to a whole quota go
/// next, and such a caller starts again with a full quota.
#[derive(Clone)]
pub struct MemoryStore {
    shards: Arc<[Shard]>,
    per_shard: usize,
    time: TimeSource,
    /// Seeded at random per store: a caller's slot cannot be predicted from outside.
    seed: foldhash::quality::RandomState,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the memory store reads time.
#[derive(Clone)]
enum TimeSource {
    /// A configured [`Clock`] (tests move a [`ManualClock`](crate::clock::ManualClock)).
    Clock(Arc<dyn Clock>),
    /// The default: a TSC-based monotonic clock (`quanta`, a few nanoseconds per read, where
    /// a wall-clock read costs tens on virtual machines), anchored at the wall clock when the
    /// store was made. State kept in memory only needs time to move forward consistently.
    Fast {
        clock: quanta::Clock,
        start: quanta::Instant,
        start_unix_nanos: u64,
    },
}

fn unix_nanos(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl TimeSource {
    fn fast() -> Self {
        let clock = quanta::Clock::new();
        let start = clock.now();
        Self::Fast {
            clock,
            start,
            start_unix_nanos: unix_nanos(SystemClock.now()),
        }
    }

    fn unix_nanos(&self) -> u64 {
        match self {
            Self::Clock(c) => unix_nanos(c.now()),
            Self::Fast {
                clock,
                start,
                start_unix_nanos,
            } => {
                let since = clock.now().saturating_duration_since(*start);
                start_unix_nanos.saturating_add(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
            }
        }
    }
}

impl MemoryStore {
    /// A store with the default bound, reading a fast monotonic clock.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_MAX_KEYS)
    }

    /// A store keeping at most `max_keys` callers (at least 64).
    pub fn with_capacity(max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| std::sync::Mutex::default()).collect(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            time: TimeSource::fast(),
            seed: Default::default(),
        }
    }

    /// The clock GCRA reads (tests use [`ManualClock`](crate::clock::ManualClock)).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.time = TimeSource::Clock(Arc::new(clock));
        self
    }

    /// Callers currently tracked.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether no caller is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Spends one request synchronously.
    pub fn decide(&self, key: &str, quota: &Quota) -> Decision {
        let now = self.time.unix_nanos();
        let digest = self.seed.hash_one(key.as_bytes());
        // Middle bits pick the shard: the map itself uses the low bits (bucket) and the top
        // seven (tag), which must stay varied within a shard.
        let shard = &self.shards[(digest >> 32) as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        let tat = map.get(&digest).copied().unwrap_or(0);
        let (decision, new_tat) = gcra(quota, tat, now);
        if matches!(decision, Decision::Allow { .. }) {
            map.insert(digest, new_tat);
            if map.len() > self.per_shard {
                evict(&mut map, now, self.per_shard);
            }
        }
        decision
    }
}

/// Makes room in a full shard: first the callers whose quota is whole again (arrival time
/// passed: the same as no state), then those closest to it, down to 90% of the bound.
fn evict(map: &mut ShardMap, now: u64, bound: usize) {
    map.retain(|_, tat| *tat > now);
    if map.len() <= bound {
        return;
    }
    let target = bound - bound / 10;
    let mut tats: Vec<u64> = map.values().copied().collect();
    let cut = map.len() - target;
    let (_, &mut threshold, _) = tats.select_nth_unstable(cut - 1);
    let mut removed = 0;
    map.retain(|_, tat| {
        if removed < cut && *tat <= threshold {
            removed += 1;
            false
        } else {
            true
        }
    });
}

impl RateLimitStore for MemoryStore {
    fn check(&self, key: &str, quota: &Quota) -> Check {
        Check::ready(Ok(self.decide(key, quota)))
    }
}
