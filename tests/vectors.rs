//! Interoperability: every token of `tests/vectors/` (minted by PyJWT, an independent
//! implementation) replayed through the layer with its expected outcome.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{REALM, bearer, send};
use tower_bearer::BearerAuthLayer;
use tower_bearer::keys::{Algorithm, Key, KeySet};
use tower_bearer::validate::Jwt;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{name}")).unwrap()
}

#[tokio::test]
async fn every_vector_has_its_expected_outcome() {
    let spec: Value = serde_json::from_str(&read("tokens.json")).unwrap();
    let mut keys = KeySet::from_jwks_json(&read("jwks.json")).unwrap();
    let secret = read("secret.txt");
    keys.push(
        Key::hmac(secret.trim_end().as_bytes(), Algorithm::HS256)
            .unwrap()
            .with_kid(spec["hmac_kid"].as_str().unwrap()),
    )
    .unwrap();
    let jwt = Jwt::builder()
        .keys(keys)
        .issuer(spec["issuer"].as_str().unwrap())
        .audience(spec["audience"].as_str().unwrap())
        .leeway(Duration::from_secs(
            spec["leeway_seconds"].as_u64().unwrap(),
        ))
        .build()
        .unwrap();
    let layer = BearerAuthLayer::new(jwt).realm(REALM);

    let vectors = spec["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 30, "all vectors present");
    let mut valid_fingerprints = std::collections::HashMap::new();
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let token = v["token"].as_str().unwrap();
        let out = send(&layer, bearer(token)).await;
        match v["expect"].as_str().unwrap() {
            "valid" => {
                assert_eq!(out.status, 200, "{name}: {out:?}");
                let p = out.principal.as_ref().unwrap();
                assert_eq!(p.subject(), Some("vector-user"), "{name}");
                assert!(p.scopes().contains("items:read"), "{name}");
                valid_fingerprints.insert(name.to_owned(), p.fingerprint());
            }
            "invalid_token" => {
                assert!(!out.called, "{name} reached the service");
                // A token the RFC 6750 charset refuses is an invalid_request; every other
                // vector must be an invalid_token.
                let code = if out.status == 400 {
                    "invalid_request"
                } else {
                    assert_eq!(out.status, 401, "{name}: {out:?}");
                    "invalid_token"
                };
                assert!(
                    out.challenge()
                        .starts_with(&format!(r#"Bearer realm="{REALM}", error="{code}""#)),
                    "{name}: {}",
                    out.challenge()
                );
                out.assert_no_token_material(token);
            }
            other => panic!("{name}: unknown expectation {other}"),
        }
    }
    // The high-S twin is the same token: same fingerprint as the original.
    assert_eq!(
        valid_fingerprints["es256-high-s"],
        valid_fingerprints["es256-valid"]
    );
}

#[test]
fn only_charset_vectors_are_invalid_requests() {
    // Guard for the branch above: only tokens outside b64token may get 400.
    let spec: Value = serde_json::from_str(&read("tokens.json")).unwrap();
    for v in spec["vectors"].as_array().unwrap() {
        let token = v["token"].as_str().unwrap();
        let body_len = token.find('=').unwrap_or(token.len());
        let in_charset = token[..body_len]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
            && token[body_len..].bytes().all(|b| b == b'=');
        assert!(in_charset, "{} is outside b64token", v["name"]);
    }
}
