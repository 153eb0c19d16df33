//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! With the feature on, the crate records the counters and the histogram below into whatever
//! recorder the application installed (Prometheus, StatsD, OpenTelemetry… through their
//! `metrics` exporters); with no recorder installed, recording costs a thread-local read and
//! an atomic load (an admitted request through the bearer layer with a rate limit records four
//! times: about 300 instructions in all, `BENCH_FEATURES=metrics scripts/instructions.sh`).
//! Without the feature, nothing is recorded and `metrics` is not a dependency; the names
//! below stay available either way.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | [`tower_bearer_decisions_total`](DECISIONS) | counter | `outcome` = `allowed` / `rejected`, `reason` = `ok` or the [`AuthErrorKind`](crate::reject::AuthErrorKind) name (`expired`, `invalid_signature`, `insufficient_scope`…) |
//! | [`tower_bearer_rejections_total`](REJECTIONS) | counter | `class` = `unauthenticated` / `invalid_request` / `invalid_token` / `insufficient_scope` / `rate_limited` / `unavailable` / `forbidden` |
//! | [`tower_bearer_cache_total`](CACHE) | counter | `cache` = `jwt`, `result` = `hit` / `miss` |
//! | [`tower_bearer_key_refresh_total`](KEY_REFRESH) | counter | `result` = `ok` / `error` |
//! | [`tower_bearer_rate_limit_total`](RATE_LIMIT) | counter | `decision` = `allowed` / `limited` / `store_error` |
//! | [`tower_bearer_layer_seconds`](LAYER_SECONDS) | histogram, seconds | `outcome` = `allowed` / `rejected` |
//!
//! Every label value is one of a fixed set of static strings: never a subject, client id,
//! token, fingerprint, key id or URL, so an attacker cannot create series, and nothing
//! secret reaches the metrics backend.
//!
//! What is counted:
//!
//! - **Decisions**: each layer of the crate counts its own. The bearer layer counts one per
//!   request, `allowed` (`reason="ok"`) or `rejected`; a scope guard, a `RequireScopes`
//!   extractor or a rate limiter behind it counts only its refusals. A request that
//!   authenticates and then lacks a scope therefore counts once as `allowed` and once as
//!   `rejected` with `reason="insufficient_scope"`. Every refusal also counts once in
//!   [`REJECTIONS`], by the class it is rendered as (the HTTP status / gRPC code family).
//! - **Cache**: one lookup of the verified-token cache of a
//!   [`Jwt`](crate::validate::Jwt) per token it sees while its key set is loaded (the same
//!   counts as [`Jwt::cache_stats`](crate::validate::Jwt::cache_stats), summed over every
//!   `Jwt`).
//! - **Key refresh**: each fetch of a remote JWK Set (feature `jwks`), at start, in the
//!   background, on an unknown `kid` or through `RemoteJwks::refresh`.
//! - **Rate limit**: each store decision of a
//!   [`RateLimitLayer`](crate::rate_limit::RateLimitLayer), summed over every limiter (a
//!   request through two stacked limiters counts twice); `store_error` whichever the fail
//!   policy.
//! - **Latency**: the time the bearer layer spends deciding, from the request's arrival to
//!   the decision (a remote key fetch the request waited for included; the inner service not
//!   included).
//!
//! ```
//! # #[cfg(feature = "metrics")] {
//! use metrics_util::debugging::DebuggingRecorder;
//! use tower_bearer::metrics::{CACHE, describe};
//! use tower_bearer::testing::{TestIssuer, claims};
//! use tower_bearer::validate::Jwt;
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshot = recorder.snapshotter();
//! metrics::with_local_recorder(&recorder, || {
//!     describe(); // help texts and units, for exporters that show them
//!     let issuer = TestIssuer::es256();
//!     let jwt = Jwt::builder().key(issuer.key()).audience("api").build().unwrap();
//!     let token = issuer.mint(claims("alice", "", std::time::Duration::from_secs(60)).aud("api"));
//!     jwt.verify(&token).unwrap(); // miss
//!     jwt.verify(&token).unwrap(); // hit
//! });
//! let hits: u64 = snapshot
//!     .snapshot()
//!     .into_vec()
//!     .into_iter()
//!     .filter(|(k, ..)| k.key().name() == CACHE && k.key().labels().any(|l| l.value() == "hit"))
//!     .map(|(.., v)| match v {
//!         metrics_util::debugging::DebugValue::Counter(n) => n,
//!         _ => 0,
//!     })
//!     .sum();
//! assert_eq!(hits, 1);
//! # }
//! ```

use crate::audit::Started;
use crate::reject::AuthError;

/// Counter of decisions, by `outcome` (`allowed` / `rejected`) and `reason` (`ok` or the
/// [`AuthErrorKind::as_str`](crate::reject::AuthErrorKind::as_str) name).
pub const DECISIONS: &str = "tower_bearer_decisions_total";
/// Counter of refusals, by `class`: `unauthenticated` (no credentials, 401),
/// `invalid_request` (400), `invalid_token` (401), `insufficient_scope` (403), `forbidden`
/// (403 that no token would fix, e.g. a client address not allowed), `rate_limited` (429),
/// `unavailable` (503).
pub const REJECTIONS: &str = "tower_bearer_rejections_total";
/// Counter of verified-token cache lookups, by `cache` (`jwt`) and `result` (`hit` / `miss`).
pub const CACHE: &str = "tower_bearer_cache_total";
/// Counter of remote JWK Set fetches, by `result` (`ok` / `error`).
pub const KEY_REFRESH: &str = "tower_bearer_key_refresh_total";
/// Counter of rate-limit store decisions, by `decision` (`allowed` / `limited` /
/// `store_error`).
pub const RATE_LIMIT: &str = "tower_bearer_rate_limit_total";
/// Histogram of the time the bearer layer spends deciding, in seconds, by `outcome`
/// (`allowed` / `rejected`).
pub const LAYER_SECONDS: &str = "tower_bearer_layer_seconds";

/// Registers the help text and unit of every metric with the installed recorder, for
/// exporters that show them (Prometheus `# HELP`). Optional; call it once after installing
/// the recorder. Does nothing without the feature `metrics`.
pub fn describe() {
    #[cfg(feature = "metrics")]
    {
        use ::metrics::{Unit, describe_counter, describe_histogram};
        describe_counter!(
            DECISIONS,
            Unit::Count,
            "Bearer-token decisions by outcome and reason"
        );
        describe_counter!(REJECTIONS, Unit::Count, "Refused requests by class");
        describe_counter!(CACHE, Unit::Count, "Verified-token cache lookups");
        describe_counter!(KEY_REFRESH, Unit::Count, "Remote JWK Set fetches");
        describe_counter!(RATE_LIMIT, Unit::Count, "Rate-limit store decisions");
        describe_histogram!(
            LAYER_SECONDS,
            Unit::Seconds,
            "Time the bearer layer spends deciding"
        );
    }
}

/// The recording side: static keys (no allocation per event, with or without a recorder).
#[cfg(feature = "metrics")]
mod emit {
    use ::metrics::{Key, Label, Level, Metadata};

    use crate::reject::{AuthErrorKind, ErrorClass};

    pub(super) static METADATA: Metadata<'static> =
        Metadata::new("tower_bearer", Level::INFO, Some(module_path!()));

    /// A `&'static Key` built at compile time.
    macro_rules! key {
        ($name:expr, $($k:literal => $v:literal),+) => {{
            const LABELS: &[::metrics::Label] = &[$(::metrics::Label::from_static_parts($k, $v)),+];
            static KEY: ::metrics::Key = ::metrics::Key::from_static_parts($name, LABELS);
            &KEY
        }};
    }
    pub(super) use key;

    /// The static key of a refusal in [`DECISIONS`](super::DECISIONS), for the kinds listed
    /// here (the unit test checks each label against [`AuthErrorKind::as_str`]); other kinds
    /// get a key built per event by [`decision_key_owned`].
    pub(super) fn decision_key(kind: AuthErrorKind) -> Option<&'static Key> {
        use AuthErrorKind::*;
        macro_rules! rejected {
            ($reason:literal) => {
                Some(key!(super::DECISIONS, "outcome" => "rejected", "reason" => $reason))
            };
        }
        match kind {
            MissingCredentials => rejected!("missing_credentials"),
            MultipleCredentials => rejected!("multiple_credentials"),
            MalformedCredentials => rejected!("malformed_credentials"),
            TokenTooLarge => rejected!("token_too_large"),
            MalformedToken => rejected!("malformed_token"),
            AlgorithmNotAllowed => rejected!("algorithm_not_allowed"),
            UnknownKey => rejected!("unknown_key"),
            InvalidSignature => rejected!("invalid_signature"),
            Expired => rejected!("expired"),
            NotYetValid => rejected!("not_yet_valid"),
            IssuedInFuture => rejected!("issued_in_future"),
            MissingClaim => rejected!("missing_claim"),
            InvalidClaimType => rejected!("invalid_claim_type"),
            InvalidIssuer => rejected!("invalid_issuer"),
            InvalidAudience => rejected!("invalid_audience"),
            UnsupportedCritical => rejected!("unsupported_crit"),
            InvalidTokenType => rejected!("invalid_token_type"),
            LifetimeExceeded => rejected!("lifetime_exceeded"),
            Revoked => rejected!("revoked"),
            Inactive => rejected!("inactive"),
            InvalidToken => rejected!("invalid_token"),
            InsufficientScope => rejected!("insufficient_scope"),
            RateLimited => rejected!("rate_limited"),
            Unavailable => rejected!("unavailable"),
            InvalidDpopProof => rejected!("invalid_dpop_proof"),
            UseDpopNonce => rejected!("use_dpop_nonce"),
            KeyBindingMismatch => rejected!("key_binding_mismatch"),
            SenderConstraintRequired => rejected!("sender_constraint_required"),
            InsecureTransport => rejected!("insecure_transport"),
            InvalidForwarded => rejected!("invalid_forwarded"),
            AddressNotAllowed => rejected!("address_not_allowed"),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The key of a refusal in [`DECISIONS`](super::DECISIONS) for any kind: the same labels
    /// as [`decision_key`], in a key built on the spot (still no token material: the reason
    /// is the kind's static name).
    pub(super) fn decision_key_owned(kind: AuthErrorKind) -> Key {
        Key::from_parts(
            super::DECISIONS,
            vec![
                Label::from_static_parts("outcome", "rejected"),
                Label::from_static_parts("reason", kind.as_str()),
            ],
        )
    }

    /// The key of a refusal in [`REJECTIONS`](super::REJECTIONS).
    pub(super) fn class_key(class: ErrorClass) -> &'static Key {
        macro_rules! class {
            ($class:literal) => {
                key!(super::REJECTIONS, "class" => $class)
            };
        }
        match class {
            ErrorClass::Unauthenticated => class!("unauthenticated"),
            ErrorClass::InvalidRequest => class!("invalid_request"),
            ErrorClass::InvalidToken => class!("invalid_token"),
            ErrorClass::InsufficientScope => class!("insufficient_scope"),
            ErrorClass::RateLimited => class!("rate_limited"),
            ErrorClass::Unavailable => class!("unavailable"),
            ErrorClass::Forbidden => class!("forbidden"),
            #[allow(unreachable_patterns)]
            _ => class!("other"),
        }
    }

    pub(super) fn count(key: &Key) {
        ::metrics::with_recorder(|r| r.register_counter(key, &METADATA).increment(1));
    }

    pub(super) fn observe(key: &'static Key, latency: std::time::Duration) {
        ::metrics::with_recorder(|r| r.register_histogram(key, &METADATA).record(latency));
    }
}

/// A request the bearer layer let through, and the time it took.
#[inline]
pub(crate) fn allowed(start: Started) {
    #[cfg(feature = "metrics")]
    {
        use emit::key;
        emit::count(key!(DECISIONS, "outcome" => "allowed", "reason" => "ok"));
        emit::observe(key!(LAYER_SECONDS, "outcome" => "allowed"), start.elapsed());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = start;
}

/// A refusal by any layer of the crate.
#[inline]
pub(crate) fn refused(err: &AuthError) {
    #[cfg(feature = "metrics")]
    {
        let kind = err.kind();
        match emit::decision_key(kind) {
            Some(key) => emit::count(key),
            None => emit::count(&emit::decision_key_owned(kind)),
        }
        emit::count(emit::class_key(kind.class()));
    }
    #[cfg(not(feature = "metrics"))]
    let _ = err;
}

/// The time the bearer layer took to refuse a request.
#[inline]
pub(crate) fn rejected_latency(start: Started) {
    #[cfg(feature = "metrics")]
    emit::observe(
        emit::key!(LAYER_SECONDS, "outcome" => "rejected"),
        start.elapsed(),
    );
    #[cfg(not(feature = "metrics"))]
    let _ = start;
}

/// One lookup of the JWT verified-token cache.
#[inline]
pub(crate) fn jwt_cache(hit: bool) {
    #[cfg(feature = "metrics")]
    {
        use emit::key;
        emit::count(if hit {
            key!(CACHE, "cache" => "jwt", "result" => "hit")
        } else {
            key!(CACHE, "cache" => "jwt", "result" => "miss")
        });
    }
    #[cfg(not(feature = "metrics"))]
    let _ = hit;
}

/// One fetch of a remote JWK Set.
#[cfg(feature = "jwks")]
#[inline]
pub(crate) fn key_refresh(ok: bool) {
    #[cfg(feature = "metrics")]
    {
        use emit::key;
        emit::count(if ok {
            key!(KEY_REFRESH, "result" => "ok")
        } else {
            key!(KEY_REFRESH, "result" => "error")
        });
    }
    #[cfg(not(feature = "metrics"))]
    let _ = ok;
}

/// What a rate-limit store decided.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RateLimitDecision {
    Allowed,
    Limited,
    StoreError,
}

/// One rate-limit store decision.
#[inline]
pub(crate) fn rate_limit(decision: RateLimitDecision) {
    #[cfg(feature = "metrics")]
    {
        use emit::key;
        emit::count(match decision {
            RateLimitDecision::Allowed => key!(RATE_LIMIT, "decision" => "allowed"),
            RateLimitDecision::Limited => key!(RATE_LIMIT, "decision" => "limited"),
            RateLimitDecision::StoreError => key!(RATE_LIMIT, "decision" => "store_error"),
        });
    }
    #[cfg(not(feature = "metrics"))]
    let _ = decision;
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;
    use crate::reject::{AuthErrorKind, ErrorClass};

    #[test]
    fn every_reason_label_is_the_kind_name() {
        use AuthErrorKind::*;
        let kinds = [
            MissingCredentials,
            MultipleCredentials,
            MalformedCredentials,
            TokenTooLarge,
            MalformedToken,
            AlgorithmNotAllowed,
            UnknownKey,
            InvalidSignature,
            Expired,
            NotYetValid,
            IssuedInFuture,
            MissingClaim,
            InvalidClaimType,
            InvalidIssuer,
            InvalidAudience,
            UnsupportedCritical,
            InvalidTokenType,
            LifetimeExceeded,
            Revoked,
            Inactive,
            InvalidToken,
            InsufficientScope,
            RateLimited,
            Unavailable,
            InsecureTransport,
            InvalidForwarded,
            AddressNotAllowed,
            InvalidDpopProof,
            UseDpopNonce,
            KeyBindingMismatch,
            SenderConstraintRequired,
        ];
        for kind in kinds {
            let key =
                emit::decision_key(kind).unwrap_or_else(|| panic!("no static key for {kind:?}"));
            assert_eq!(*key, emit::decision_key_owned(kind), "{kind:?}");
            assert_eq!(key.name(), DECISIONS);
            let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
            assert_eq!(
                labels,
                [("outcome", "rejected"), ("reason", kind.as_str())],
                "{kind:?}"
            );
        }
    }

    #[test]
    fn every_class_has_its_own_label() {
        let classes = [
            ErrorClass::Unauthenticated,
            ErrorClass::InvalidRequest,
            ErrorClass::InvalidToken,
            ErrorClass::InsufficientScope,
            ErrorClass::RateLimited,
            ErrorClass::Unavailable,
            ErrorClass::Forbidden,
        ];
        let labels: std::collections::HashSet<_> = classes
            .iter()
            .map(|c| emit::class_key(*c).labels().next().unwrap().value())
            .collect();
        assert_eq!(labels.len(), classes.len());
    }
}
