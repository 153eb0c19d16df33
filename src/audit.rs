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
//! The clock behind `latency_us` is read only when something will report it: a subscriber
//! that takes these events, or the latency histogram of [`metrics`].
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

/// When a layer started deciding, for the `latency_us` of its audit event and the latency
/// histogram: the clock is read only when something will report it (feature `metrics`, or a
/// subscriber taking audit events), and each event reads it again only if it is recorded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started(Option<Instant>);

impl Started {
    /// Now, if a latency will be reported.
    #[inline]
    pub(crate) fn now() -> Self {
        // Refusals are events at `WARN` or `INFO`: a filter taking any audit event takes `WARN`.
        let reported = cfg!(feature = "metrics")
            || tracing::enabled!(target: "tower_bearer::audit", tracing::Level::WARN);
        Self(reported.then(Instant::now))
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
    use super::*;

    fn subscriber(filter: &str) -> impl tracing::Subscriber + Send + Sync {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::sink)
            .finish()
    }

    #[test]
    fn the_clock_is_read_only_for_a_latency_someone_reports() {
        let metrics = cfg!(feature = "metrics");
        // No subscriber: only the metrics histogram wants the latency.
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            assert_eq!(Started::now().0.is_some(), metrics);
        });
        // A subscriber that drops audit events, and one that takes only the warnings.
        tracing::subscriber::with_default(subscriber("info,tower_bearer::audit=off"), || {
            assert_eq!(Started::now().0.is_some(), metrics);
        });
        tracing::subscriber::with_default(subscriber("off,tower_bearer::audit=warn"), || {
            assert!(Started::now().0.is_some());
        });
    }

    #[test]
    fn a_latency_not_read_is_zero() {
        assert_eq!(Started::NONE.elapsed(), Duration::ZERO);
        let start = Started(Some(Instant::now()));
        std::thread::sleep(Duration::from_millis(2));
        assert!(start.elapsed() >= Duration::from_millis(1));
    }
}
