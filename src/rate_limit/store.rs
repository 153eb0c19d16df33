use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::UNIX_EPOCH;

use super::quota::{Decision, Quota, gcra};
use crate::clock::{Clock, SystemClock};
use crate::hash::PreHashed;

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

/// One shard: caller digest → the caller's [`Slot`] (its GCRA theoretical arrival time, unix
/// nanoseconds), on cache lines of its own (two threads deciding for callers in two shards
/// must not contend).
///
/// A known caller is found without a lock (`papaya`: a lookup writes nothing any other
/// thread reads) and decided with a compare-and-swap on its arrival time, so threads deciding
/// for the same caller never wait for each other and share only that one cache line. Adding
/// and evicting callers (the only changes to the map's shape) take the shard's mutex, one
/// thread at a time, so the bound is exact.
#[repr(align(128))]
struct Shard {
    map: papaya::HashMap<u64, Arc<Slot>, PreHashed>,
    /// Held to add or evict callers.
    changing: std::sync::Mutex<()>,
}

impl Default for Shard {
    fn default() -> Self {
        Self {
            map: papaya::HashMap::builder()
                .hasher(PreHashed::default())
                .build(),
            changing: std::sync::Mutex::default(),
        }
    }
}

impl Shard {
    fn changing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.changing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One caller's state. Shared with the principals of its verified callers (see
/// [`MemoryStore::decide_kept`]), which decide on it directly while it is `live`.
pub(crate) struct Slot {
    /// The GCRA arrival time, unix nanoseconds.
    tat: AtomicU64,
    /// Cleared when the caller is evicted: a principal keeping the slot then goes through the
    /// map again.
    live: AtomicBool,
}

impl Slot {
    fn new(tat: u64) -> Arc<Self> {
        Arc::new(Self {
            tat: AtomicU64::new(tat),
            live: AtomicBool::new(true),
        })
    }
}

/// Spends one request against the arrival time in `tat`, atomically.
fn spend(tat: &AtomicU64, quota: &Quota, now: u64) -> Decision {
    let mut current = tat.load(Ordering::Relaxed);
    loop {
        let (decision, next) = gcra(quota, current, now);
        if !matches!(decision, Decision::Allow { .. }) {
            return decision;
        }
        match tat.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return decision,
            Err(actual) => current = actual,
        }
    }
}

/// In-process limiter state: a sharded map from caller to GCRA arrival time.
///
/// Each decision is a lock-free lookup in one of 64 shards and a compare-and-swap (nothing
/// is ever held across an await): deciding for a known caller never waits for another
/// thread. Behind a rate-limit layer, a cached token's principal keeps its caller's state,
/// so its later decisions are the compare-and-swap alone (the state of an evicted caller,
/// still kept by such principals, is bounded by the token cache's capacity). Keys are 64-bit
/// keyed hashes, seeded at random per store (nobody outside can aim a collision at another
/// caller's state; by chance, two of 100,000 callers share a slot with odds below 1 in 10⁹),
/// so memory per caller does not depend on the subject's length. Bounded: at most
/// `max_keys` callers (default 100,000). When a shard is full, callers whose quota is whole
/// again are dropped first (their state is the same as no state, so nothing is lost); if
/// that is not enough, the callers closest to a whole quota go next, and such a caller
/// starts again with a full quota.
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

    /// A store keeping at most `max_keys` callers (at least 64: one per shard). The bound is
    /// split evenly over the shards, rounding down, so it is never exceeded.
    pub fn with_capacity(max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            per_shard: (max_keys / SHARDS).max(1),
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
        self.shards.iter().map(|s| s.map.len()).sum()
    }

    /// Whether no caller is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Spends one request synchronously.
    pub fn decide(&self, key: &str, quota: &Quota) -> Decision {
        self.decide_in_map(key, quota, self.time.unix_nanos(), None)
    }

    /// [`decide`](Self::decide) for a caller that keeps its slot (`kept`, in its principal):
    /// while the slot is live, the decision is a compare-and-swap on it, with no hash and no
    /// lookup. A slot whose caller was evicted is never used again: that principal's requests
    /// go through the map, as a caller's without a kept slot do (a `OnceLock` is not
    /// replaced; other principals of the caller keep its new slot). A decision racing with the
    /// eviction is lost, as one racing with it in [`decide`](Self::decide) is.
    pub(crate) fn decide_kept(
        &self,
        key: &str,
        quota: &Quota,
        kept: &OnceLock<Arc<Slot>>,
    ) -> Decision {
        let now = self.time.unix_nanos();
        match kept.get() {
            Some(slot) if slot.live.load(Ordering::Acquire) => spend(&slot.tat, quota, now),
            Some(_) => self.decide_in_map(key, quota, now, None),
            None => self.decide_in_map(key, quota, now, Some(kept)),
        }
    }

    /// The decision through the map; the caller's slot is handed to `keep`, if given. (Only
    /// then is its reference count touched: threads deciding for one caller through the map
    /// share nothing but its arrival time.)
    fn decide_in_map(
        &self,
        key: &str,
        quota: &Quota,
        now: u64,
        keep: Option<&OnceLock<Arc<Slot>>>,
    ) -> Decision {
        let found = |slot: &Arc<Slot>| {
            if let Some(keep) = keep {
                let _ = keep.set(slot.clone());
            }
            spend(&slot.tat, quota, now)
        };
        let digest = self.seed.hash_one(key.as_bytes());
        // Middle bits pick the shard: the map itself uses the low bits (bucket) and the top
        // seven (tag), which must stay varied within a shard.
        let shard = &self.shards[(digest >> 32) as usize % SHARDS];
        let map = shard.map.pin();
        if let Some(slot) = map.get(&digest) {
            return found(slot);
        }
        let (decision, tat) = gcra(quota, 0, now);
        if !matches!(decision, Decision::Allow { .. }) {
            return decision;
        }
        let _changing = shard.changing();
        // Another thread may have added the caller meanwhile.
        if let Some(slot) = map.get(&digest) {
            return found(slot);
        }
        if map.len() >= self.per_shard {
            evict(&map, now, self.per_shard);
        }
        let slot = Slot::new(tat);
        if let Some(keep) = keep {
            let _ = keep.set(slot.clone());
        }
        map.insert(digest, slot);
        decision
    }
}

type ShardRef<'a> = papaya::HashMapRef<'a, u64, Arc<Slot>, PreHashed, papaya::LocalGuard<'a>>;

/// Makes room in a full shard (its mutex held) for one more caller: first the callers whose
/// quota is whole again (arrival time passed: the same as no state), then those closest to
/// it, down to 90% of the bound. A decision racing with the removal of its caller is lost:
/// that caller starts again with a full quota, as any evicted caller does.
fn evict(map: &ShardRef<'_>, now: u64, bound: usize) {
    // Every slot removed is marked dead first, for the principals that keep it. `retain` may
    // call its closure again for a value changed meanwhile; values change only under the
    // shard's mutex, which the caller holds, so each is judged (and marked) once.
    let remove = |slot: &Slot| {
        slot.live.store(false, Ordering::Release);
        false
    };
    map.retain(|_, slot| slot.tat.load(Ordering::Relaxed) > now || remove(slot));
    let len = map.len();
    if len < bound {
        return;
    }
    let target = (bound - bound / 10).min(bound - 1);
    let mut tats: Vec<u64> = map
        .values()
        .map(|slot| slot.tat.load(Ordering::Relaxed))
        .collect();
    let cut = (len - target).min(tats.len());
    if cut == 0 {
        return;
    }
    let (_, &mut threshold, _) = tats.select_nth_unstable(cut - 1);
    let mut removed = 0;
    map.retain(|_, slot| {
        if removed < cut && slot.tat.load(Ordering::Relaxed) <= threshold {
            removed += 1;
            remove(slot)
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;

    fn allowed(d: Decision) -> bool {
        matches!(d, Decision::Allow { .. })
    }

    /// A slot kept by a principal is the caller's state in the map: decisions through either
    /// share one quota.
    #[test]
    fn a_kept_slot_and_the_map_share_the_callers_quota() {
        let store = MemoryStore::new().clock(ManualClock::at_unix(1_000));
        let quota = Quota::per(Duration::from_secs(60), 4);
        let (kept, other) = (OnceLock::new(), OnceLock::new());
        let decisions = [
            store.decide_kept("alice", &quota, &kept),
            store.decide("alice", &quota),
            store.decide_kept("alice", &quota, &kept),
            store.decide_kept("alice", &quota, &other),
            store.decide_kept("alice", &quota, &kept),
            store.decide("alice", &quota),
        ];
        let admitted: Vec<bool> = decisions.into_iter().map(allowed).collect();
        assert_eq!(admitted, [true, true, true, true, false, false]);
        assert!(Arc::ptr_eq(kept.get().unwrap(), other.get().unwrap()));
        assert_eq!(store.len(), 1);
    }

    /// An evicted caller's kept slot is dead: its principal's decisions go through the map,
    /// where the caller starts again (as every evicted caller does) and shares its new state
    /// with every other principal of the caller.
    #[test]
    fn an_evicted_callers_kept_slot_is_never_used_again() {
        // One caller per shard: adding a caller to a shard evicts the one there.
        let store = MemoryStore::with_capacity(SHARDS).clock(ManualClock::at_unix(1_000));
        let quota = Quota::per(Duration::from_secs(60), 2);
        let kept = OnceLock::new();
        assert!(allowed(store.decide_kept("alice", &quota, &kept)));
        assert!(allowed(store.decide_kept("alice", &quota, &kept)));
        assert!(!allowed(store.decide_kept("alice", &quota, &kept)));
        let slot = kept.get().unwrap().clone();
        for i in 0..2_000 {
            if !slot.live.load(Ordering::Relaxed) {
                break;
            }
            assert!(allowed(store.decide(&format!("caller-{i}"), &quota)));
        }
        assert!(!slot.live.load(Ordering::Relaxed), "alice was evicted");
        // Started again: one quota, shared by the principal with the dead slot and a new one.
        let fresh = OnceLock::new();
        assert!(allowed(store.decide_kept("alice", &quota, &kept)));
        assert!(allowed(store.decide_kept("alice", &quota, &fresh)));
        assert!(!allowed(store.decide_kept("alice", &quota, &kept)));
        assert!(!allowed(store.decide("alice", &quota)));
        assert!(
            Arc::ptr_eq(kept.get().unwrap(), &slot),
            "the dead slot stays kept"
        );
        assert!(fresh.get().unwrap().live.load(Ordering::Relaxed));
    }

    /// Threads deciding for one caller at once (the compare-and-swap path) admit exactly the
    /// burst, and so do threads racing to add the same new callers (the mutex path).
    #[test]
    fn exactly_the_burst_from_four_threads_at_once() {
        let store = MemoryStore::new().clock(ManualClock::at_unix(1_000));
        let quota = Quota::per(Duration::from_secs(3600), 1_000);
        let admitted = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..2_000 {
                        if allowed(store.decide("sub\0alice", &quota)) {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::Relaxed), 1_000);

        let one = Quota::per(Duration::from_secs(3600), 1);
        let admitted: Vec<AtomicUsize> = (0..500).map(|_| AtomicUsize::new(0)).collect();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for (i, count) in admitted.iter().enumerate() {
                        if allowed(store.decide(&format!("sub\0new-{i}"), &one)) {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert!(admitted.iter().all(|c| c.load(Ordering::Relaxed) == 1));
    }

    /// A known caller is decided without the shard's mutex: the decision goes through while
    /// another thread holds it (as an insertion or an eviction does).
    #[test]
    fn a_known_caller_is_decided_while_its_shard_changes() {
        let store = MemoryStore::new().clock(ManualClock::at_unix(1_000));
        let quota = Quota::per(Duration::from_secs(60), 100);
        assert!(allowed(store.decide("sub\0alice", &quota)));
        let digest = store.seed.hash_one("sub\0alice".as_bytes());
        let _changing = store.shards[(digest >> 32) as usize % SHARDS].changing();
        let (tx, rx) = std::sync::mpsc::channel();
        let other = store.clone();
        std::thread::spawn(move || {
            let _ = tx.send(other.decide("sub\0alice", &quota));
        });
        let decision = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a known caller's decision waited for the shard's mutex");
        assert!(allowed(decision));
    }

    /// Threads adding distinct callers at once never take the store past its bound: adding
    /// and evicting are one thread at a time per shard.
    #[test]
    fn concurrent_new_callers_never_exceed_the_bound() {
        let store = MemoryStore::with_capacity(640).clock(ManualClock::at_unix(1_000));
        let quota = Quota::per(Duration::from_secs(3600), 10);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (store, most) = (&store, &most);
                s.spawn(move || {
                    for i in 0..5_000 {
                        assert!(allowed(store.decide(&format!("sub\0{t}-{i}"), &quota)));
                        most.fetch_max(store.len(), Ordering::Relaxed);
                    }
                });
            }
        });
        assert!(most.load(Ordering::Relaxed) <= 640, "{most:?}");
        // Every shard got many more callers than its 10: each keeps 9 or 10 of them.
        assert!(store.len() >= 64 * 9, "{}", store.len());
    }
}
