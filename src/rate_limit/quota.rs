use std::fmt;
use std::time::Duration;

use crate::error::ConfigError;

/// A GCRA quota: `burst` requests at once, then one request every `period / burst`: on
/// average `burst` requests per `period`.
///
/// `Quota::per(Duration::from_secs(10), 5)` allows 5 requests at once, then one every 2 s.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    period: Duration,
    burst: u32,
}

impl Quota {
    /// `burst` requests per `period`. Panics if either is zero (see [`Quota::try_per`]).
    pub fn per(period: Duration, burst: u32) -> Self {
        Self::try_per(period, burst).expect("a quota needs a non-zero period and burst")
    }

    /// `burst` requests per `period`, or an error if either is zero or the period is over a
    /// year.
    pub fn try_per(period: Duration, burst: u32) -> Result<Self, ConfigError> {
        if burst == 0 || period.is_zero() || period > Duration::from_secs(366 * 86_400) {
            return Err(ConfigError::new(
                "a quota needs a burst of at least 1 and a period between 1 ns and a year",
            ));
        }
        Ok(Self { period, burst })
    }

    /// Parses `N/DURATION`, e.g. `5/10s`, `100/1m`, `1000/1h`, `10/500ms` (also `100/s`).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = || {
            ConfigError::new(format!(
                "invalid rate limit {text:?}: expected N/DURATION, e.g. 5/10s"
            ))
        };
        let (n, d) = text.trim().split_once('/').ok_or_else(bad)?;
        let burst: u32 = n.trim().parse().map_err(|_| bad())?;
        let d = d.trim();
        let split = d.find(|c: char| !c.is_ascii_digit()).unwrap_or(d.len());
        let (num, unit) = d.split_at(split);
        let num: u64 = if num.is_empty() {
            1
        } else {
            num.parse().map_err(|_| bad())?
        };
        let period = match unit {
            "ms" => Duration::from_millis(num),
            "s" => Duration::from_secs(num),
            "m" => Duration::from_secs(num.saturating_mul(60)),
            "h" => Duration::from_secs(num.saturating_mul(3600)),
            "d" => Duration::from_secs(num.saturating_mul(86_400)),
            _ => return Err(bad()),
        };
        Self::try_per(period, burst)
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The burst: requests allowed at once, and per period on average.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The emission interval `period / burst`, in nanoseconds (at least 1).
    pub(crate) fn interval_nanos(&self) -> u64 {
        let nanos = u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX);
        (nanos / u64::from(self.burst)).max(1)
    }
}

impl fmt::Debug for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quota({}/{:?})", self.burst, self.period)
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:?}", self.burst, self.period)
    }
}

/// A limiter's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted.
    Allow {
        /// Requests still admissible right now.
        remaining: u32,
        /// Until the quota is whole again.
        reset: Duration,
    },
    /// Refused.
    Deny {
        /// Until one request will be admitted.
        retry_after: Duration,
        /// Until the quota is whole again.
        reset: Duration,
    },
}

/// One GCRA step. `tat` is the stored theoretical arrival time (ns, 0 when none); returns the
/// decision and the new TAT to store (unchanged on a refusal).
pub(crate) fn gcra(quota: &Quota, tat: u64, now: u64) -> (Decision, u64) {
    let t = quota.interval_nanos();
    let window = t.saturating_mul(u64::from(quota.burst));
    let tat = tat.max(now);
    let new_tat = tat.saturating_add(t);
    let used = new_tat - now;
    if used <= window {
        let remaining = (window - used) / t;
        (
            Decision::Allow {
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                reset: Duration::from_nanos(used),
            },
            new_tat,
        )
    } else {
        (
            Decision::Deny {
                retry_after: Duration::from_nanos(used - window),
                reset: Duration::from_nanos(tat - now),
            },
            tat,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_quotas() {
        assert_eq!(
            Quota::parse("5/10s").unwrap(),
            Quota::per(Duration::from_secs(10), 5)
        );
        assert_eq!(
            Quota::parse("100/1m").unwrap(),
            Quota::per(Duration::from_secs(60), 100)
        );
        assert_eq!(
            Quota::parse("100/s").unwrap(),
            Quota::per(Duration::from_secs(1), 100)
        );
        assert_eq!(
            Quota::parse("10/500ms").unwrap(),
            Quota::per(Duration::from_millis(500), 10)
        );
        for bad in ["", "5", "0/1s", "5/0s", "x/1s", "5/1w", "5/-1s", "5/10"] {
            assert!(Quota::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn burst_then_one_per_interval() {
        let q = Quota::per(Duration::from_secs(10), 5);
        let s = 1_000_000_000u64;
        let mut tat = 0;
        let now = 1000 * s;
        for i in 0..5 {
            let (d, t) = gcra(&q, tat, now);
            assert!(
                matches!(d, Decision::Allow { remaining, .. } if remaining == 4 - i),
                "{d:?}"
            );
            tat = t;
        }
        let (d, t) = gcra(&q, tat, now);
        assert_eq!(
            d,
            Decision::Deny {
                retry_after: Duration::from_secs(2),
                reset: Duration::from_secs(10)
            }
        );
        assert_eq!(t, tat, "a refusal does not spend quota");
        // One interval later, exactly one more.
        let (d, t) = gcra(&q, tat, now + 2 * s);
        assert!(matches!(d, Decision::Allow { remaining: 0, .. }));
        let (d, _) = gcra(&q, t, now + 2 * s);
        assert!(matches!(d, Decision::Deny { .. }));
        // After a whole period, the full burst again.
        let (d, _) = gcra(&q, t, now + 20 * s);
        assert!(matches!(d, Decision::Allow { remaining: 4, .. }));
    }
}
