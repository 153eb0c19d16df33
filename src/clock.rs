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

use std::cell::Cell;
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
        system_unix_seconds(self.now())
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }

    fn unix_seconds(&self) -> f64 {
        (**self).unix_seconds()
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    /// The wall clock, read at most once per [`WALL_CLOCK_REREAD`] per thread: in between,
    /// the CPU's time-stamp counter (`quanta`, a few nanoseconds) advances the last reading,
    /// where a wall-clock read costs tens of nanoseconds on virtual machines. A step of the
    /// wall clock is seen within that interval; the counter's drift never accumulates. (Where
    /// the counter stops while a machine is suspended, a thread reads the time from before the
    /// pause for at most that interval after it.)
    fn unix_seconds(&self) -> f64 {
        thread_local! {
            static LAST: Cell<Option<(quanta::Instant, f64)>> = const { Cell::new(None) };
        }
        let now = quanta::Instant::now();
        LAST.with(|last| {
            if let Some((at, secs)) = last.get() {
                let since = now.saturating_duration_since(at);
                if since < WALL_CLOCK_REREAD {
                    return secs + since.as_secs_f64();
                }
            }
            let secs = system_unix_seconds(SystemTime::now());
            last.set(Some((now, secs)));
            secs
        })
    }
}

/// How often [`SystemClock::unix_seconds`] reads the wall clock (per thread, at most).
pub const WALL_CLOCK_REREAD: Duration = Duration::from_millis(10);

fn system_unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
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
    fn system_unix_seconds_follow_the_wall_clock() {
        for _ in 0..3 {
            let wall = system_unix_seconds(SystemTime::now());
            let fast = SystemClock.unix_seconds();
            // Within the re-read interval plus the time between the two reads.
            assert!((fast - wall).abs() < 0.5, "{fast} vs {wall}");
            std::thread::sleep(WALL_CLOCK_REREAD + Duration::from_millis(2));
        }
        // It moves between re-reads too.
        let a = SystemClock.unix_seconds();
        std::thread::sleep(Duration::from_millis(3));
        assert!(SystemClock.unix_seconds() > a);
    }

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
