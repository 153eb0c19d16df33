//! What the fuzz targets share: the interoperability vectors of `tests/vectors/` as the only
//! tokens anyone outside the process could hold a valid signature for, test issuers whose keys
//! are generated per process (so no committed input can carry a valid signature by them), and
//! the configured verifier with a frozen clock.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::Value;
use tower_bearer::clock::ManualClock;
use tower_bearer::keys::{Algorithm, Key, KeySet};
use tower_bearer::testing::TestIssuer;
use tower_bearer::validate::Jwt;

const TOKENS: &str = include_str!("../../tests/vectors/tokens.json");
const JWKS: &str = include_str!("../../tests/vectors/jwks.json");
const SECRET: &str = include_str!("../../tests/vectors/secret.txt");

/// The frozen "now" (2027-01-15): the valid vectors (exp 2100) are valid then.
pub const NOW: u64 = 1_800_000_000;
pub const ISS: &str = "https://issuer.example";
pub const AUD: &str = "api://vectors";

pub fn spec() -> &'static Value {
    static S: OnceLock<Value> = OnceLock::new();
    S.get_or_init(|| serde_json::from_str(TOKENS).expect("tokens.json"))
}

/// The signing inputs (`header.payload`) of the vectors PyJWT signed and that are meant to
/// pass: the only signed content an input can legitimately carry.
pub fn valid_signing_inputs() -> &'static HashSet<String> {
    static S: OnceLock<HashSet<String>> = OnceLock::new();
    S.get_or_init(|| {
        spec()["vectors"]
            .as_array()
            .expect("vectors")
            .iter()
            .filter(|v| v["expect"] == "valid")
            .map(|v| {
                let t = v["token"].as_str().expect("token");
                t.rsplit_once('.').expect("three parts").0.to_owned()
            })
            .collect()
    })
}

/// An HS256 issuer generated in this process.
pub fn hs() -> &'static TestIssuer {
    static K: OnceLock<TestIssuer> = OnceLock::new();
    K.get_or_init(|| TestIssuer::hs256().with_kid("fz-hs"))
}

/// An ES256 issuer generated in this process.
pub fn ec() -> &'static TestIssuer {
    static K: OnceLock<TestIssuer> = OnceLock::new();
    K.get_or_init(|| TestIssuer::es256().with_kid("fz-ec"))
}

fn keys() -> KeySet {
    let mut keys = KeySet::from_jwks_json(JWKS).expect("jwks.json");
    keys.push(
        Key::hmac(SECRET.trim_end().as_bytes(), Algorithm::HS256)
            .expect("secret")
            .with_kid(spec()["hmac_kid"].as_str().expect("hmac_kid")),
    )
    .expect("hmac key");
    keys.push(hs().key()).expect("fz-hs");
    keys.push(ec().key()).expect("fz-ec");
    keys
}

/// Two configurations: the defaults (leeway 60 s, cache on), and a strict one (leeway 0,
/// RFC 9068 `typ`, a one-hour maximum lifetime, cache off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Default,
    Strict,
}

pub fn jwt(profile: Profile) -> &'static Jwt {
    static D: OnceLock<Jwt> = OnceLock::new();
    static S: OnceLock<Jwt> = OnceLock::new();
    let base = || {
        Jwt::builder()
            .keys(keys())
            .issuer(ISS)
            .audience(AUD)
            .clock(ManualClock::at_unix(NOW))
    };
    match profile {
        Profile::Default => D.get_or_init(|| base().build().expect("jwt")),
        Profile::Strict => S.get_or_init(|| {
            base()
                .leeway(Duration::ZERO)
                .require_at_jwt()
                .max_lifetime(Duration::from_secs(3600))
                .cache_entries(0)
                .build()
                .expect("jwt")
        }),
    }
}

/// Decodes a part that must be canonical unpadded base64url.
pub fn canonical_part(part: &str) -> Vec<u8> {
    let bytes = B64.decode(part).expect("accepted part is base64url");
    assert_eq!(
        B64.encode(&bytes),
        part,
        "accepted part is canonical base64url"
    );
    bytes
}

/// With `FUZZ_TRACE` set, prints one line per input (e.g. to see which seeds are accepted:
/// `FUZZ_TRACE=1 cargo +nightly fuzz run token fuzz/seeds/token -- -runs=0`).
pub fn trace(args: std::fmt::Arguments<'_>) {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some()) {
        eprintln!("{args}");
    }
}

fn number(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

/// An independent statement of what an accepted token must satisfy: the checks of
/// ACCEPTANCE §3, written without the crate's code. Panics when `token` breaks one.
pub fn assert_acceptable(token: &str, profile: Profile) {
    let mut parts = token.split('.');
    let (h, p, s) = (
        parts.next().unwrap(),
        parts.next().expect("two dots"),
        parts.next().expect("two dots"),
    );
    assert!(parts.next().is_none(), "exactly three parts");
    assert!(!s.is_empty(), "a signature");
    canonical_part(s);
    let header: Value = serde_json::from_slice(&canonical_part(h)).expect("header JSON");
    let claims: Value = serde_json::from_slice(&canonical_part(p)).expect("claims JSON");
    let header = header.as_object().expect("header object");
    let claims = claims.as_object().expect("claims object");

    let alg = header["alg"].as_str().expect("string alg");
    assert!(
        ["HS256", "RS256", "ES256", "ES384", "EdDSA", "PS256"].contains(&alg),
        "alg {alg:?} accepted"
    );
    for banned in ["crit", "enc", "zip"] {
        assert!(!header.contains_key(banned), "{banned} accepted");
    }

    let now = NOW as f64;
    let leeway = match profile {
        Profile::Default => 60.0,
        Profile::Strict => 0.0,
    };
    let exp = number(claims.get("exp")).expect("numeric exp");
    assert!(now < exp + leeway, "expired token accepted");
    for name in ["nbf", "iat"] {
        if let Some(v) = claims.get(name) {
            let t = v.as_f64().expect("numeric nbf/iat");
            assert!(t <= now + leeway, "{name} in the future accepted");
        }
    }
    assert_eq!(claims.get("iss").and_then(Value::as_str), Some(ISS), "iss");
    match claims.get("aud").expect("aud") {
        Value::String(a) => assert_eq!(a, AUD),
        Value::Array(v) => {
            assert!(v.iter().all(Value::is_string), "aud array of strings");
            assert!(v.iter().any(|a| a == AUD), "aud contains the audience");
        }
        other => panic!("aud {other} accepted"),
    }
    if profile == Profile::Strict {
        let typ = header["typ"].as_str().expect("typ").to_ascii_lowercase();
        assert!(typ == "at+jwt" || typ == "application/at+jwt", "typ {typ}");
        let iat = number(claims.get("iat")).expect("iat with a maximum lifetime");
        assert!(exp - iat <= 3600.0, "lifetime");
    }
}
