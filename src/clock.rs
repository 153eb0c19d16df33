//! Time, behind a trait so tests can move it.
//!
//! Every time-based check of the crate (`exp`, `nbf`, `iat`, maximum lifetime) reads the
//! [`Clock`] configured on the authenticator, never the system clock directly. Production code
//! uses [`SystemClock`]; tests use [`ManualClock`] and move time with
//! [`ManualClock::advance`].
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use tower_bearer::clock::{Clock, ManualClock};
//!
//! let clock = ManualClock::at_unix(1_700_000_000);
//! clock.advance(Duration::from_secs(30));
//! assert_eq!(clock.now().duration_since(UNIX_EPOCH).unwrap().as_secs(), 1_700_000_030);
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// The current time as fractional seconds since the Unix epoch (a JWT `NumericDate`).
    fn unix_seconds(&self) -> f64 {
        match self.now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        }
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Clone, Default)]
pub struct ManualClock {
    micros: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock frozen at the current system time.
    pub fn new() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self::at(UNIX_EPOCH + now)
    }

    /// A clock frozen at `time` (times before the epoch are clamped to it).
    pub fn at(time: SystemTime) -> Self {
        let micros = time
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        Self {
            micros: Arc::new(AtomicU64::new(u64::try_from(micros).unwrap_or(u64::MAX))),
        }
    }

    /// A clock frozen at `secs` seconds after the Unix epoch.
    pub fn at_unix(secs: u64) -> Self {
        Self::at(UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(by, Ordering::SeqCst);
    }

    /// Sets the clock to `time`.
    pub fn set(&self, time: SystemTime) {
        let micros = time
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        self.micros
            .store(u64::try_from(micros).unwrap_or(u64::MAX), Ordering::SeqCst);
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("unix_micros", &self.micros.load(Ordering::SeqCst))
            .finish()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.micros.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::at_unix(100);
        let copy = clock.clone();
        assert_eq!(clock.unix_seconds(), 100.0);
        copy.advance(Duration::from_millis(1500));
        assert_eq!(clock.unix_seconds(), 101.5);
        clock.set(UNIX_EPOCH + Duration::from_secs(7));
        assert_eq!(copy.unix_seconds(), 7.0);
    }
}
