//! What the benches build the same way: the issuer and audience of their tokens, the `Jwt`
//! that verifies them, the floor of any full stack and the minimal checks (`minimal`).

pub(crate) mod minimal;

use tower_bearer::testing::TestIssuer;
use tower_bearer::validate::Jwt;

pub(crate) const ISS: &str = "https://issuer.bench";
pub(crate) const AUD: &str = "bench";

/// `jsonwebtoken`'s key and validation for `issuer`'s tokens, as `jwt` checks them, prepared
/// once. Installs aws-lc as `jsonwebtoken`'s provider, as the crate does, in case both crypto
/// backends are compiled in.
pub(crate) fn decoding(
    issuer: &TestIssuer,
) -> (jsonwebtoken::DecodingKey, jsonwebtoken::Validation) {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let key = match issuer.secret() {
        Some(secret) => jsonwebtoken::DecodingKey::from_secret(secret),
        None => jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(issuer.jwk()).unwrap())
            .unwrap(),
    };
    let mut validation = jsonwebtoken::Validation::new(issuer.algorithm());
    validation.set_audience(&[AUD]);
    validation.set_issuer(&[ISS]);
    (key, validation)
}

/// A `Jwt` for `issuer`'s tokens, with the verified-token cache on or off.
pub(crate) fn jwt(issuer: &TestIssuer, cache: bool) -> Jwt {
    Jwt::builder()
        .key(issuer.key())
        .issuer(ISS)
        .audience(AUD)
        .cache_entries(if cache { 10_000 } else { 0 })
        .build()
        .unwrap()
}

/// `router` behind the floor of any full stack: a layer that checks nothing and only adds
/// what a request it admits must carry, the caller for the handler (one `Arc` in the request
/// extensions) and the two rate-limit fields of the response (`RateLimit-Policy`, a
/// prebuilt value, and `RateLimit`, formatted per request since it changes per request).
/// Ratios against it show what the checks themselves cost.
pub(crate) fn floor(router: axum::Router) -> axum::Router {
    use http::{Request, Response};
    let caller = std::sync::Arc::new(String::from("bench-user"));
    router.layer(
        tower::ServiceBuilder::new()
            .map_response(|mut res: Response<axum::body::Body>| {
                rate_limit_fields(res.headers_mut(), 999);
                res
            })
            .map_request(move |mut req: Request<axum::body::Body>| {
                req.extensions_mut().insert(caller.clone());
                req
            }),
    )
}

/// Adds the two rate-limit fields an admitted request's response carries: `RateLimit-Policy`
/// prebuilt, `RateLimit` formatted as cheaply as the limiter does it (no `format!`).
pub(crate) fn rate_limit_fields(headers: &mut http::HeaderMap, remaining: u32) {
    use http::{HeaderName, HeaderValue};
    const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
    const LIMIT: HeaderName = HeaderName::from_static("ratelimit");
    headers.insert(POLICY, HeaderValue::from_static("\"default\";q=1000;w=1"));
    let mut left = itoa::Buffer::new();
    let left = left.format(remaining);
    let mut limit = String::with_capacity(20 + left.len());
    for part in ["\"default\";r=", left, ";t=1"] {
        limit.push_str(part);
    }
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(limit)) {
        headers.insert(LIMIT, value);
    }
}
