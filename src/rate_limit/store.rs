use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::quota::{Decision, Quota, gcra};
use crate::clock::{Clock, SystemClock};
use crate::maybe_ready::MaybeReady;

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

/// The outcome of [`RateLimitStore::check`]: known now (memory) or a future (Redis).
#[must_use]
pub struct Check(MaybeReady<Result<Decision, StoreError>>);

impl Check {
    /// A decision known at once.
    pub fn ready(result: Result<Decision, StoreError>) -> Self {
        Self(MaybeReady::ready(result))
    }

    /// A decision that needs I/O.
    pub fn pending(
        fut: impl Future<Output = Result<Decision, StoreError>> + Send + 'static,
    ) -> Self {
        Self(MaybeReady::pending(fut))
    }

    /// The decision if already known, else `Err(self)`.
    pub fn into_ready(self) -> Result<Result<Decision, StoreError>, Self> {
        self.0.into_ready().map_err(Self)
    }
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_ready() {
            "Check::Ready"
        } else {
            "Check::Pending"
        })
    }
}

impl Future for Check {
    type Output = Result<Decision, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.poll(cx)
    }
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

/// A 128-bit digest of a limiter key: fixed-size map keys whatever the subject's length.
pub(crate) fn key_digest(key: &str) -> [u8; 16] {
    let d = Sha256::digest(key.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// The default number of callers the memory store tracks (about 330 bytes each, measured:
/// the default store stays under 64 MiB whatever the number of callers).
pub const DEFAULT_MAX_KEYS: u64 = 100_000;

/// In-process limiter state: a bounded, concurrent map from caller to GCRA arrival time.
///
/// Bounded two ways: a caller idle for longer than the idle timeout (default 1 h; set it to at
/// least your longest quota period) is forgotten, and at most `max_keys` callers are kept
/// (default 100,000, about 33 MiB at the measured ~330 bytes per caller; when full, the cache's TinyLFU policy evicts the least useful entries,
/// and an evicted caller starts again with a full quota). Keys are stored as 16-byte digests,
/// so memory per caller does not depend on the subject's length. Each decision is atomic per
/// key (sharded locks, no global lock).
#[derive(Clone)]
pub struct MemoryStore {
    cache: moka::sync::Cache<[u8; 16], u64>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store with the default bounds and the system clock.
    pub fn new() -> Self {
        Self::with_bounds(DEFAULT_MAX_KEYS, Duration::from_secs(3600))
    }

    /// A store keeping at most `max_keys` callers, each forgotten after `idle` without a
    /// request.
    pub fn with_bounds(max_keys: u64, idle: Duration) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(max_keys)
                .time_to_idle(idle)
                .build(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The clock GCRA reads (tests use [`ManualClock`](crate::clock::ManualClock)).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Callers currently tracked (approximate, as the cache reports it).
    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Whether no caller is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Spends one request synchronously.
    pub fn decide(&self, key: &str, quota: &Quota) -> Decision {
        let now = self
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let mut decision = None;
        self.cache.entry(key_digest(key)).and_compute_with(|entry| {
            let tat = entry.map_or(0, |e| e.into_value());
            let (d, new_tat) = gcra(quota, tat, now);
            decision = Some(d);
            match d {
                Decision::Allow { .. } => moka::ops::compute::Op::Put(new_tat),
                Decision::Deny { .. } => moka::ops::compute::Op::Nop,
            }
        });
        decision.expect("compute ran")
    }
}

impl RateLimitStore for MemoryStore {
    fn check(&self, key: &str, quota: &Quota) -> Check {
        Check::ready(Ok(self.decide(key, quota)))
    }
}
