use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::clock::{Clock, SystemClock};
use crate::principal::{Principal, TokenFingerprint};
use crate::rate_limit::StoreError;

/// What to revoke. Every entry carries `until`: the time after which it no longer matters
/// (the revoked token's expiry, or the longest token lifetime for a subject); stores drop it
/// then, so nothing outlives the tokens it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revocation {
    /// One token, by its `jti`. Token ids are taken as unique across the issuers a service
    /// trusts (a clash could only revoke too much, never too little).
    TokenId {
        /// The token id.
        jti: String,
        /// When the token expires.
        until: SystemTime,
    },
    /// One token without `jti`, by its fingerprint (a digest of the signed content, so the
    /// ECDSA twins of a token are revoked with it).
    Fingerprint {
        /// The fingerprint.
        fingerprint: TokenFingerprint,
        /// When the token expires.
        until: SystemTime,
    },
    /// Every token of a subject issued at or before a time ("log out everywhere").
    Subject {
        /// The issuer, if tokens carry one.
        issuer: Option<String>,
        /// The subject.
        subject: String,
        /// Tokens with `iat` at or before this (or without `iat`) are revoked.
        issued_before: SystemTime,
        /// When the rule can be forgotten: at least the longest token lifetime from now.
        until: SystemTime,
    },
}

impl Revocation {
    /// The time after which the entry no longer matters.
    pub fn until(&self) -> SystemTime {
        match self {
            Revocation::TokenId { until, .. }
            | Revocation::Fingerprint { until, .. }
            | Revocation::Subject { until, .. } => *until,
        }
    }
}

/// The three keys a principal is checked under: its token id, its fingerprint, its subject.
/// Each is a digest, so no store ever holds a subject or token id in clear, let alone a token.
/// Derived once per principal, which the token cache shares across requests.
pub(crate) fn keys_of(p: &Principal) -> [Option<[u8; 16]>; 3] {
    p.revocation_keys(|p| {
        let iss = p.issuer().unwrap_or("");
        [
            p.token_id().map(|j| digest(&["t", j])),
            Some(digest(&["f", &p.fingerprint().to_string()])),
            p.subject().map(|s| digest(&["s", iss, s])),
        ]
    })
}

pub(crate) fn key_of(r: &Revocation) -> [u8; 16] {
    match r {
        Revocation::TokenId { jti, .. } => digest(&["t", jti]),
        Revocation::Fingerprint { fingerprint, .. } => digest(&["f", &fingerprint.to_string()]),
        Revocation::Subject {
            issuer, subject, ..
        } => digest(&["s", issuer.as_deref().unwrap_or(""), subject]),
    }
}

fn digest(parts: &[&str]) -> [u8; 16] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Whether a principal is revoked, given the stored values under its three keys: presence for
/// the token id and fingerprint, the `issued_before` time (unix seconds) for the subject.
pub(crate) fn revoked(
    p: &Principal,
    token: bool,
    fingerprint: bool,
    subject_before: Option<u64>,
) -> bool {
    token
        || fingerprint
        || subject_before.is_some_and(|before| p.issued_at().is_none_or(|iat| unix(iat) <= before))
}

crate::maybe_ready::maybe_ready_type! {
    /// The outcome of [`RevocationStore::is_revoked`]: known now or after I/O.
    #[must_use]
    pub struct Lookup(Result<bool, StoreError>), "answer";
}

/// A boxed future of a store write.
pub type WriteFuture = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'static>>;

/// Where revocations live: in memory ([`MemoryRevocations`]) or in Redis (feature `redis`,
/// shared by every instance).
pub trait RevocationStore: Send + Sync + 'static {
    /// Whether the verified principal's token is revoked.
    fn is_revoked(&self, principal: &Principal) -> Lookup;

    /// Records a revocation.
    fn revoke(&self, revocation: Revocation) -> WriteFuture;
}

impl<S: RevocationStore + ?Sized> RevocationStore for std::sync::Arc<S> {
    fn is_revoked(&self, principal: &Principal) -> Lookup {
        (**self).is_revoked(principal)
    }

    fn revoke(&self, revocation: Revocation) -> WriteFuture {
        (**self).revoke(revocation)
    }
}

/// Revocations in this process. Entries are dropped once their `until` has passed (by the
/// store's [clock](MemoryRevocations::clock), the system's unless set); the store holds at
/// most `max_entries` live entries and refuses new ones beyond that (a full list must never
/// forget a revocation to make room).
#[derive(Debug)]
pub struct MemoryRevocations {
    entries: RwLock<HashMap<[u8; 16], (u64, u64)>>,
    /// How many entries the map holds (written under the write lock): with none, a lookup
    /// takes no lock (a read lock is a write to a shared line, costly under load).
    stored: AtomicUsize,
    max_entries: usize,
    clock: Arc<dyn Clock>,
}

/// The default cap of [`MemoryRevocations`].
pub const DEFAULT_MAX_REVOCATIONS: usize = 1_000_000;

impl Default for MemoryRevocations {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_REVOCATIONS)
    }
}

impl MemoryRevocations {
    /// A store of at most `max_entries` live revocations.
    pub fn new(max_entries: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            stored: AtomicUsize::new(0),
            max_entries,
            clock: Arc::new(SystemClock),
        }
    }

    /// The clock that tells when an entry's `until` has passed: give it the
    /// [`Lifecycle`](crate::lifecycle::Lifecycle)'s when that one is not the system's, so
    /// that both agree on what is past.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn now(&self) -> u64 {
        unix(self.clock.now())
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        let now = self.now();
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|(until, _)| *until > now)
            .count()
    }

    /// Whether no entry is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&self, r: &Revocation) -> Result<(), StoreError> {
        let now = self.now();
        let until = unix(r.until());
        if until <= now {
            return Ok(());
        }
        let value = match r {
            Revocation::Subject { issued_before, .. } => unix(*issued_before),
            _ => 0,
        };
        let mut map = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.max_entries {
            map.retain(|_, (u, _)| *u > now);
            if map.len() >= self.max_entries {
                return Err(StoreError::new("revocation list full"));
            }
        }
        let slot = map.entry(key_of(r)).or_insert((0, 0));
        slot.0 = slot.0.max(until);
        slot.1 = slot.1.max(value);
        self.stored.store(map.len(), Ordering::Release);
        Ok(())
    }
}

impl RevocationStore for MemoryRevocations {
    fn is_revoked(&self, p: &Principal) -> Lookup {
        // A revocation stores the count before `revoke` answers: a request checked after
        // that sees it.
        if self.stored.load(Ordering::Acquire) == 0 {
            return Lookup::ready(Ok(false));
        }
        let now = self.now();
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let live = |k: &Option<[u8; 16]>| {
            k.as_ref()
                .and_then(|k| map.get(k))
                .filter(|(until, _)| *until > now)
                .copied()
        };
        let [t, f, s] = keys_of(p);
        let r = revoked(
            p,
            live(&t).is_some(),
            live(&f).is_some(),
            live(&s).map(|(_, b)| b),
        );
        Lookup::ready(Ok(r))
    }

    fn revoke(&self, revocation: Revocation) -> WriteFuture {
        let result = self.insert(&revocation);
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn entries_live_and_lapse_by_the_stores_clock() {
        // Far from the system's time either way: only the store's clock may decide.
        for at in [1_000_000_000, 4_000_000_000] {
            let clock = ManualClock::at_unix(at);
            let store = MemoryRevocations::new(1).clock(clock.clone());
            let r = |jti: &str| Revocation::TokenId {
                jti: jti.into(),
                until: clock.now() + Duration::from_secs(600),
            };
            store.insert(&r("a")).unwrap();
            assert_eq!(store.len(), 1, "at {at}");
            // Full: a new one is refused, never traded for a live one.
            assert!(store.insert(&r("b")).is_err());
            clock.advance(Duration::from_secs(601));
            assert!(store.is_empty());
            // The lapsed entry makes room.
            store.insert(&r("b")).unwrap();
            assert_eq!(store.len(), 1);
        }
    }
}
