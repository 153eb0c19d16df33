//! Audit events: one `tracing` event per decision, never the token.
//!
//! Every request the bearer layer decides on emits an event with target
//! `tower_bearer::audit` ([`TARGET`]): allowed requests at `DEBUG`, refusals at `INFO`
//! (`WARN` when a dependency is unavailable). Fields:
//!
//! | field | value |
//! |---|---|
//! | `outcome` | `allow` or `reject` |
//! | `reason` | `ok`, or the [`AuthErrorKind`](crate::reject::AuthErrorKind) name (`expired`, `invalid_signature`…) |
//! | `status` | the HTTP status sent (or that a gRPC status maps from) |
//! | `subject`, `client_id` | from the verified token (allowed requests only) |
//! | `fingerprint` | the token fingerprint: 32 hex digits of a SHA-256 of the signed content |
//! | `kid` | the key id (verified for allowed requests; as named by the token for refusals, cut to 64 characters) |
//! | `latency_us` | time spent by the layer deciding (0 for the guards, which decide at once) |
//!
//! The clock behind `latency_us` is read only when something may report it: a subscriber
//! taking any events at `WARN` or more verbose, or the latency histogram of [`metrics`].
//!
//! The raw token and its signature are never part of an event: the only form of a token the
//! crate ever logs is its [`TokenFingerprint`](crate::principal::TokenFingerprint).
//!
//! The same decisions feed the counters and the latency histogram of
//! [`metrics`] (feature `metrics`), labelled by outcome and reason only.
//!
//! ```
//! // Route audit events to their own output with a target filter, e.g.
//! // RUST_LOG=tower_bearer::audit=debug
//! assert_eq!(tower_bearer::audit::TARGET, "tower_bearer::audit");
//! ```

use std::time::Duration;

use quanta::Instant; // TSC-based: a few ns per read; `std`'s costs tens on VMs.

use crate::metrics;
use crate::principal::Principal;
use crate::reject::{AuthError, ErrorClass};

/// The `tracing` target of audit events.
pub const TARGET: &str = "tower_bearer::audit";

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Whether a `tracing` subscriber may record an audit event: one takes events at `WARN` or
/// more verbose, for any target. The global level hint, not this callsite's interest, so
/// that filters by field or by exact level are never mistaken for "off" (they may read the
/// clock for nothing). Events that `tracing`'s `log` feature forwards to `log` with no
/// subscriber set carry `latency_us = 0`.
fn events_may_be_recorded() -> bool {
    use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
    STATIC_MAX_LEVEL >= LevelFilter::WARN && LevelFilter::current() >= LevelFilter::WARN
}

/// When a layer started deciding, for the `latency_us` of its audit event and the latency
/// histogram: the clock is read only when something may report it (feature `metrics`, or
/// [`events_may_be_recorded`]), and each event reads it again only if it is recorded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started(Option<Instant>);

impl Started {
    /// Now, if a latency may be reported.
    #[inline]
    pub(crate) fn now() -> Self {
        Self((cfg!(feature = "metrics") || events_may_be_recorded()).then(Instant::now))
    }

    /// For decisions whose latency is not reported (`latency_us = 0`).
    pub(crate) const NONE: Self = Self(None);

    /// The time since [`Started::now`]; zero if no latency was to be reported then (audit
    /// events switched on in the middle of a request).
    pub(crate) fn elapsed(self) -> Duration {
        self.0.map_or(Duration::ZERO, |start| start.elapsed())
    }
}

/// A request the bearer layer let through.
pub(crate) fn allowed(principal: &Principal, start: Started) {
    metrics::allowed(start);
    tracing::debug!(
        target: "tower_bearer::audit",
        outcome = "allow",
        reason = "ok",
        subject = principal.subject(),
        client_id = principal.client_id(),
        fingerprint = %principal.fingerprint(),
        kid = principal.key_id(),
        // Evaluated only when the event is recorded.
        latency_us = micros(start.elapsed()),
        "bearer token accepted"
    );
}

/// A refusal by a layer behind the bearer layer (scope guard, extractor, rate limiter), with
/// the caller it refused when there is one.
pub(crate) fn denied(principal: Option<&Principal>, err: &AuthError, start: Started) {
    metrics::refused(err);
    let Some(principal) = principal else {
        return rejection_event(err, start);
    };
    tracing::info!(
        target: "tower_bearer::audit",
        outcome = "reject",
        reason = err.kind().as_str(),
        status = err.status().as_u16(),
        subject = principal.subject(),
        client_id = principal.client_id(),
        fingerprint = %principal.fingerprint(),
        kid = principal.key_id(),
        required_scope = err.required_scope(),
        latency_us = micros(start.elapsed()),
        "scope check failed"
    );
}

/// A request the bearer layer refused.
pub(crate) fn rejected(err: &AuthError, start: Started) {
    metrics::refused(err);
    metrics::rejected_latency(start);
    rejection_event(err, start);
}

fn rejection_event(err: &AuthError, start: Started) {
    let fingerprint = err.fingerprint().map(|f| f.to_string());
    macro_rules! event {
        ($level:ident) => {
            tracing::$level!(
                target: "tower_bearer::audit",
                outcome = "reject",
                reason = err.kind().as_str(),
                status = err.status().as_u16(),
                fingerprint = fingerprint.as_deref(),
                kid = err.kid(),
                latency_us = micros(start.elapsed()),
                "bearer token rejected"
            )
        };
    }
    if err.class() == ErrorClass::Unavailable {
        event!(warn);
    } else {
        event!(info);
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn subscriber(filter: &str) -> impl tracing::Subscriber + Send + Sync {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::sink)
            .finish()
    }

    /// One test, not several: the level hint is global to the process, raised by every
    /// subscriber alive.
    #[test]
    fn the_clock_is_read_only_when_a_subscriber_may_record_the_event() {
        // A subscriber taking nothing (as no subscriber at all: the level hint stays off until
        // one is set).
        tracing::subscriber::with_default(subscriber("off"), || {
            assert!(!events_may_be_recorded());
            assert_eq!(Started::now().0.is_some(), cfg!(feature = "metrics"));
        });
        // Audit events at any level, by target or by field.
        for filter in [
            "off,tower_bearer::audit=warn",
            "off,tower_bearer::audit=debug",
            "off,tower_bearer::audit[{outcome}]=info",
        ] {
            tracing::subscriber::with_default(subscriber(filter), || {
                assert!(events_may_be_recorded(), "{filter}");
                assert!(Started::now().0.is_some(), "{filter}");
            });
        }
        // A filter taking only `DEBUG` events gives no level hint: it may record them.
        let debug_only = tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .finish()
            .with(tracing_subscriber::filter::filter_fn(|m| {
                *m.level() == tracing::Level::DEBUG
            }));
        tracing::subscriber::with_default(debug_only, || assert!(events_may_be_recorded()));
    }

    #[test]
    fn a_latency_not_read_is_zero() {
        assert_eq!(Started::NONE.elapsed(), Duration::ZERO);
        let start = Started(Some(Instant::now()));
        std::thread::sleep(Duration::from_millis(2));
        assert!(start.elapsed() >= Duration::from_millis(1));
    }
}
