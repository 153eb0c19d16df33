//! The test keys shared by the token suites, each made once per test binary, and the issuer,
//! audience and frozen time their tokens use.

use std::sync::OnceLock;

use tower_bearer::testing::TestIssuer;

/// The issuer the suites require.
pub const ISS: &str = "https://issuer.test";
/// The audience the suites require.
pub const AUD: &str = "api://test";
/// The frozen "now" of time-sensitive tests.
pub const T: u64 = 1_800_000_000;

/// RS256, kid `rsa-1`.
pub fn rsa() -> &'static TestIssuer {
    static K: OnceLock<TestIssuer> = OnceLock::new();
    K.get_or_init(|| TestIssuer::rs256().with_kid("rsa-1"))
}

/// ES256, kid `ec-1`.
pub fn ec() -> &'static TestIssuer {
    static K: OnceLock<TestIssuer> = OnceLock::new();
    K.get_or_init(|| TestIssuer::es256().with_kid("ec-1"))
}

/// EdDSA (Ed25519), kid `ed-1`.
pub fn ed() -> &'static TestIssuer {
    static K: OnceLock<TestIssuer> = OnceLock::new();
    K.get_or_init(|| TestIssuer::ed25519().with_kid("ed-1"))
}

/// HS256, kid `hs-1`.
pub fn hs() -> &'static TestIssuer {
    static K: OnceLock<TestIssuer> = OnceLock::new();
    K.get_or_init(|| TestIssuer::hs256().with_kid("hs-1"))
}
