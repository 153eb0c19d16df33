use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::rate_limit::StoreError;

/// The key a proof's `jti` is remembered under: a digest of the proof key's thumbprint and
/// the `jti` (so one client cannot burn another's `jti`s, and no `jti` is stored in clear).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayKey([u8; 16]);

impl ReplayKey {
    /// The key of `jti` in proofs signed by the key with thumbprint `jkt`.
    pub fn of(jkt: &str, jti: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"dpop-jti\0");
        h.update((jkt.len() as u64).to_be_bytes());
        h.update(jkt.as_bytes());
        h.update(jti.as_bytes());
        let d = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&d[..16]);
        Self(out)
    }

    /// The 16 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The digest in lower-case hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplayKey({})", self.to_hex())
    }
}

crate::maybe_ready::maybe_ready_type! {
    /// The outcome of [`ReplayStore::insert_new`]: `true` when the key was new. Known now
    /// (memory) or after I/O (Redis).
    #[must_use]
    pub struct ReplayCheck(Result<bool, StoreError>), "answer";
}

/// Where DPoP proof `jti`s are remembered for the iat window.
pub trait ReplayStore: Send + Sync + 'static {
    /// Records `key` for `ttl` from `now` unless it is already there: `Ok(true)` when it was
    /// new, `Ok(false)` for a replay. Check and insert must be one atomic step.
    fn insert_new(&self, key: ReplayKey, now: SystemTime, ttl: Duration) -> ReplayCheck;
}

impl<S: ReplayStore + ?Sized> ReplayStore for Arc<S> {
    fn insert_new(&self, key: ReplayKey, now: SystemTime, ttl: Duration) -> ReplayCheck {
        (**self).insert_new(key, now, ttl)
    }
}

/// The default capacity of [`MemoryReplay`]: about 40 MB when full.
pub const DEFAULT_REPLAY_ENTRIES: usize = 1_000_000;

const SHARDS: usize = 16;

/// Replay key → expiry, in unix microseconds, and the earliest expiry held (so a full shard
/// is swept only when something in it has expired, not on every insert).
#[derive(Default)]
struct ShardState {
    map: HashMap<[u8; 16], u64>,
    earliest: u64,
}

type Shard = Mutex<ShardState>;

/// `jti`s remembered in this process, in 16 locked shards (no lock is ever held across an
/// await: every call answers at once).
///
/// Bounded: at most `capacity` live entries. An entry lives until its proof's `iat` leaves
/// the window; when a shard is full, its expired entries are dropped, and if it is still full
/// the check fails (the layer answers 503) rather than forget a `jti` that could then be
/// replayed. Only proofs whose token has been verified and bound to the proof key are
/// recorded, so filling it takes valid tokens.
pub struct MemoryReplay {
    shards: Box<[Shard]>,
    per_shard: usize,
}

impl fmt::Debug for MemoryReplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReplay")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish_non_exhaustive()
    }
}

impl Default for MemoryReplay {
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_ENTRIES)
    }
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl MemoryReplay {
    /// A store of at most `capacity` live entries (rounded up to a multiple of 16).
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(ShardState {
                        map: HashMap::new(),
                        earliest: u64::MAX,
                    })
                })
                .collect(),
            per_shard,
        }
    }

    /// Entries held (live or not yet purged).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&self, key: ReplayKey, now: SystemTime, ttl: Duration) -> Result<bool, StoreError> {
        let now = micros(now);
        let until = now.saturating_add(u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX));
        let shard = &self.shards[usize::from(key.0[0]) % SHARDS];
        let mut guard = shard.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        if let Some(exp) = state.map.get_mut(&key.0) {
            if *exp > now {
                return Ok(false);
            }
            *exp = until;
            state.earliest = state.earliest.min(until);
            return Ok(true);
        }
        if state.map.len() >= self.per_shard {
            // Sweep only when something has expired: a full shard of live entries answers
            // at once instead of scanning on every attempt.
            if now >= state.earliest {
                let mut earliest = u64::MAX;
                state.map.retain(|_, exp| {
                    let live = *exp > now;
                    if live {
                        earliest = earliest.min(*exp);
                    }
                    live
                });
                state.earliest = earliest;
            }
            if state.map.len() >= self.per_shard {
                return Err(StoreError::new("DPoP replay cache full"));
            }
        }
        state.map.insert(key.0, until);
        state.earliest = state.earliest.min(until);
        Ok(true)
    }
}

impl ReplayStore for MemoryReplay {
    fn insert_new(&self, key: ReplayKey, now: SystemTime, ttl: Duration) -> ReplayCheck {
        ReplayCheck::ready(self.insert(key, now, ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_use_then_replay_then_expiry() {
        let store = MemoryReplay::new(64);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        let k = ReplayKey::of("jkt", "j1");
        let ttl = Duration::from_secs(60);
        assert!(store.insert(k, t0, ttl).unwrap());
        assert!(!store.insert(k, t0 + Duration::from_secs(59), ttl).unwrap());
        assert!(store.insert(k, t0 + Duration::from_secs(60), ttl).unwrap());
        // Another key's jti is another entry.
        assert!(store.insert(ReplayKey::of("other", "j1"), t0, ttl).unwrap());
    }

    #[test]
    fn memory_is_bounded_and_full_fails_closed() {
        let store = MemoryReplay::new(16);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        let ttl = Duration::from_secs(60);
        let mut full = 0;
        for i in 0..10_000 {
            match store.insert(ReplayKey::of("jkt", &i.to_string()), t0, ttl) {
                Ok(true) => {}
                Ok(false) => panic!("distinct jti seen as a replay"),
                Err(_) => full += 1,
            }
        }
        assert!(store.len() <= 16, "{}", store.len());
        assert!(full > 0);
        // Once the window has passed, expired entries make room again.
        let later = t0 + Duration::from_secs(61);
        assert!(
            store
                .insert(ReplayKey::of("jkt", "new"), later, ttl)
                .unwrap()
        );
    }

    #[test]
    fn keys_do_not_show_their_inputs() {
        let k = ReplayKey::of("thumb", "secret-jti");
        assert!(!format!("{k:?}").contains("secret-jti"));
        assert_eq!(k.to_hex().len(), 32);
    }
}
