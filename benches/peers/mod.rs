//! The peers, each doing the same job as one of our stacks, on its own bare router.
//!
//! - `jwt-authorizer` 0.15 (RS256, static PEM key) only builds against axum 0.7, so it runs on
//!   an axum 0.7 router (the `axum07` dev-dependency) and is compared with that router bare.
//! - `tower_governor` 0.8, keyed by the raw `Authorization` header (how its users key on a
//!   token), and tower-http's deprecated static bearer check, both on the axum 0.8 router.
//! - `governor`'s keyed limiter decision alone, beside our in-memory store's decision.

use std::sync::Arc;

use tower_governor::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;

/// A bare axum 0.7 router with the same route and handler as the axum 0.8 baseline.
pub(crate) fn axum07_router() -> axum07::Router {
    axum07::Router::new().route("/items", axum07::routing::get(|| async { "ok" }))
}

/// `axum07_router` behind jwt-authorizer, verifying RS256 tokens against `public_pem` with
/// the same issuer and audience our stacks require.
pub(crate) async fn jwt_authorizer_router(
    public_pem: &str,
    iss: &str,
    aud: &str,
) -> axum07::Router {
    use jwt_authorizer::{IntoLayer, JwtAuthorizer, RegisteredClaims, Validation};
    let authorizer = JwtAuthorizer::<RegisteredClaims>::from_rsa_pem_text(public_pem)
        .validation(Validation::new().iss(&[iss]).aud(&[aud]))
        .build()
        .await
        .expect("jwt-authorizer builds");
    axum07_router().layer(authorizer.into_layer())
}

/// Keys tower_governor on the raw `Authorization` header value, as its users do for tokens.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AuthorizationHeader;

impl KeyExtractor for AuthorizationHeader {
    type Key = String;

    fn extract<T>(&self, req: &http::Request<T>) -> Result<String, GovernorError> {
        req.headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

/// A tower_governor layer keyed by [`AuthorizationHeader`] with a quota nobody reaches.
pub(crate) fn governor_layer() -> tower_governor::GovernorLayer<
    AuthorizationHeader,
    governor::middleware::NoOpMiddleware<governor::clock::QuantaInstant>,
    axum::body::Body,
> {
    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .key_extractor(AuthorizationHeader)
        .finish()
        .expect("valid governor config");
    tower_governor::GovernorLayer::new(Arc::new(config))
}

/// governor's keyed limiter (what tower_governor uses), for the decision alone.
pub(crate) fn governor_keyed() -> governor::DefaultKeyedRateLimiter<String> {
    governor::RateLimiter::keyed(
        governor::Quota::per_second(std::num::NonZeroU32::new(u32::MAX).unwrap())
            .allow_burst(std::num::NonZeroU32::new(u32::MAX).unwrap()),
    )
}

/// tower-http's static bearer check (deprecated upstream as too basic; the floor of what a
/// bearer check costs).
#[allow(deprecated)]
pub(crate) fn tower_http_bearer(
    token: &str,
) -> tower_http::validate_request::ValidateRequestHeaderLayer<
    tower_http::auth::require_authorization::Bearer<axum::body::Body>,
> {
    tower_http::validate_request::ValidateRequestHeaderLayer::bearer(token)
}
