//! What both benches build the same way: the issuer and audience of their tokens, and the
//! `Jwt` that verifies them.

use tower_bearer::testing::TestIssuer;
use tower_bearer::validate::Jwt;

pub(crate) const ISS: &str = "https://issuer.bench";
pub(crate) const AUD: &str = "bench";

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
