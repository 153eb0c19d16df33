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
//! | `latency_us` | time spent by the layer deciding |
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

use crate::metrics;
use crate::principal::Principal;
use crate::reject::{AuthError, ErrorClass};

/// The `tracing` target of audit events.
pub const TARGET: &str = "tower_bearer::audit";

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A request the bearer layer let through.
pub(crate) fn allowed(principal: &Principal, latency: Duration) {
    metrics::allowed(latency);
    tracing::debug!(
        target: "tower_bearer::audit",
        outcome = "allow",
        reason = "ok",
        subject = principal.subject(),
        client_id = principal.client_id(),
        fingerprint = %principal.fingerprint(),
        kid = principal.key_id(),
        latency_us = micros(latency),
        "bearer token accepted"
    );
}

/// A refusal by a layer behind the bearer layer (scope guard, extractor, rate limiter), with
/// the caller it refused when there is one.
pub(crate) fn denied(principal: Option<&Principal>, err: &AuthError, latency: Duration) {
    metrics::refused(err);
    let Some(principal) = principal else {
        return rejection_event(err, latency);
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
        latency_us = micros(latency),
        "scope check failed"
    );
}

/// A request the bearer layer refused.
pub(crate) fn rejected(err: &AuthError, latency: Duration) {
    metrics::refused(err);
    metrics::rejected_latency(latency);
    rejection_event(err, latency);
}

fn rejection_event(err: &AuthError, latency: Duration) {
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
                latency_us = micros(latency),
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
