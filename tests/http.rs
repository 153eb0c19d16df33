//! ACCEPTANCE.md §2 (credentials on the wire), §3 (token checks) and §9 (never), through
//! `tower::ServiceExt::oneshot`. Every rejection asserts the status, the exact challenge and
//! that the inner service did not run.

mod support;

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use support::{REALM, bearer, get, send};
use tower_bearer::BearerAuthLayer;
use tower_bearer::clock::ManualClock;
use tower_bearer::extract::Extractor;
use tower_bearer::keys::{Algorithm, Key, KeySet};
use tower_bearer::testing::{TestIssuer, alg_name};
use tower_bearer::validate::{Jwt, JwtBuilder};

const ISS: &str = "https://issuer.test";
const AUD: &str = "api://test";
/// The frozen "now" of time-sensitive tests.
const T: u64 = 1_800_000_000;

fn rsa() -> &'static TestIssuer {
    static K: OnceLock<TestIssuer> = OnceLock::new();
    K.get_or_init(|| TestIssuer::rs256().with_kid("rsa-1"))
}

fn ec() -> &'static TestIssuer {
    static K: OnceLock<TestIssuer> = OnceLock::new();
    K.get_or_init(|| TestIssuer::es256().with_kid("ec-1"))
}

fn ed() -> &'static TestIssuer {
    static K: OnceLock<TestIssuer> = OnceLock::new();
    K.get_or_init(|| TestIssuer::ed25519().with_kid("ed-1"))
}

fn hs() -> &'static TestIssuer {
    static K: OnceLock<TestIssuer> = OnceLock::new();
    K.get_or_init(|| TestIssuer::hs256().with_kid("hs-1"))
}

/// A key nobody configured.
fn foreign() -> &'static TestIssuer {
    static K: OnceLock<TestIssuer> = OnceLock::new();
    K.get_or_init(|| TestIssuer::rs256().with_kid("rsa-1"))
}

/// The standard builder: every test key, issuer and audience, clock frozen at `T`.
fn builder() -> JwtBuilder {
    Jwt::builder()
        .key(rsa().key())
        .key(ec().key())
        .key(ed().key())
        .key(hs().key())
        .issuer(ISS)
        .audience(AUD)
        .clock(ManualClock::at_unix(T))
}

fn layer_with(b: JwtBuilder) -> BearerAuthLayer {
    BearerAuthLayer::new(b.build().unwrap()).realm(REALM)
}

fn layer() -> BearerAuthLayer {
    layer_with(builder())
}

/// Valid claims at `T`.
fn claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "client_id": "web",
        "iat": T - 10, "exp": T + 600, "jti": "id-1", "scope": "items:read profile"
    })
}

fn with(mut v: Value, k: &str, x: Value) -> Value {
    v[k] = x;
    v
}

fn without(mut v: Value, k: &str) -> Value {
    v.as_object_mut().unwrap().remove(k);
    v
}

fn b64json(v: &Value) -> String {
    B64.encode(serde_json::to_vec(v).unwrap())
}

async fn expect_invalid(token: &str, description: &str) {
    let out = send(&layer(), bearer(token)).await;
    out.assert_invalid_token(description);
    out.assert_no_token_material(token);
}

// ---------------------------------------------------------------- §2 credentials on the wire

#[tokio::test]
async fn valid_tokens_of_every_key_type_pass_with_their_principal() {
    for issuer in [rsa(), ec(), ed(), hs()] {
        let out = send(&layer(), bearer(&issuer.mint(claims()))).await;
        let p = out.assert_ok();
        assert_eq!(p.subject(), Some("alice"));
        assert_eq!(p.client_id(), Some("web"));
        assert_eq!(p.token_id(), Some("id-1"));
        assert_eq!(p.issuer(), Some(ISS));
        assert_eq!(p.key_id(), issuer.kid());
        assert!(p.scopes().contains("items:read"));
        assert_eq!(
            p.expires_at().unwrap(),
            std::time::UNIX_EPOCH + Duration::from_secs(T + 600)
        );
        assert_eq!(p.claim("sub"), Some(&json!("alice")));
    }
}

#[tokio::test]
async fn no_credentials_get_a_bare_challenge() {
    send(&layer(), get(None)).await.assert_no_credentials();
}

#[tokio::test]
async fn other_schemes_get_the_bearer_challenge() {
    for v in [
        "Basic dXNlcjpwYXNz",
        "Digest username=\"x\"",
        "Bearerish abc",
    ] {
        send(&layer(), get(Some(v))).await.assert_no_credentials();
    }
}

#[tokio::test]
async fn scheme_is_case_insensitive_and_spaces_may_repeat() {
    let token = rsa().mint(claims());
    for scheme in ["Bearer ", "bearer ", "BEARER ", "bEaReR    "] {
        send(&layer(), get(Some(&format!("{scheme}{token}"))))
            .await
            .assert_ok();
    }
}

#[tokio::test]
async fn empty_or_out_of_charset_tokens_are_invalid_requests() {
    for v in [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer abc,def",
        "Bearer ab=c",
        "Bearer =",
        "Bearer a\"b",
        "Bearer ab;c",
    ] {
        send(&layer(), get(Some(v)))
            .await
            .assert_invalid_request("malformed bearer credentials");
    }
}

#[tokio::test]
async fn more_than_one_credential_is_an_invalid_request() {
    let token = rsa().mint(claims());
    let req = Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    send(&layer(), req)
        .await
        .assert_invalid_request("more than one credential");

    let with_query = layer().extractor(Extractor::new().query(true));
    let req = Request::builder()
        .uri(format!("/r?access_token={token}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    send(&with_query, req)
        .await
        .assert_invalid_request("more than one credential");
}

#[tokio::test]
async fn query_tokens_are_off_unless_enabled() {
    let token = rsa().mint(claims());
    let req = || {
        Request::builder()
            .uri(format!("/r?access_token={token}"))
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    send(&layer(), req()).await.assert_no_credentials();
    let enabled = layer().extractor(Extractor::new().query(true));
    send(&enabled, req()).await.assert_ok();
}

#[tokio::test]
async fn cookie_and_custom_header_sources() {
    let token = rsa().mint(claims());
    let l = layer().extractor(
        Extractor::new()
            .cookie("at")
            .header(http::HeaderName::from_static("x-token")),
    );
    let req = Request::builder()
        .header("cookie", format!("theme=dark; at={token}"))
        .body(Full::default())
        .unwrap();
    send(&l, req).await.assert_ok();
    let req = Request::builder()
        .header("x-token", &token)
        .body(Full::default())
        .unwrap();
    send(&l, req).await.assert_ok();
    // Not read when not configured.
    let req = Request::builder()
        .header("x-token", &token)
        .body(Full::default())
        .unwrap();
    send(&layer(), req).await.assert_no_credentials();
}

#[tokio::test]
async fn oversized_tokens_are_refused_before_decoding() {
    // 8 KiB + 1 of valid charset: refused by size, not by parsing.
    let big = "a".repeat(8 * 1024 + 1);
    send(&layer(), bearer(&big))
        .await
        .assert_invalid_request("token too large");
    // The cap is configurable.
    let token = rsa().mint(claims());
    let small = layer().extractor(Extractor::new().max_token_len(token.len() - 1));
    send(&small, bearer(&token))
        .await
        .assert_invalid_request("token too large");
    let exact = layer().extractor(Extractor::new().max_token_len(token.len()));
    send(&exact, bearer(&token)).await.assert_ok();
}

// ---------------------------------------------------------------- §3 structure

#[tokio::test]
async fn only_compact_jws_with_three_parts() {
    let token = rsa().mint(claims());
    let parts: Vec<&str> = token.split('.').collect();
    for bad in [
        format!("{}.{}", parts[0], parts[1]),
        format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2]),
        format!(
            "{}.{}.{}.{}.{}",
            parts[0], parts[1], parts[2], parts[1], parts[2]
        ),
        format!("{}.{}.", parts[0], parts[1]),
        format!(".{}.{}", parts[1], parts[2]),
        "garbage".to_owned(),
        "a.b.c".to_owned(),
    ] {
        expect_invalid(&bad, "malformed token").await;
    }
}

#[tokio::test]
async fn padded_or_non_canonical_base64_is_refused() {
    // Padding inside the token is outside the b64token charset: an invalid request.
    let h = b64json(&rsa().header());
    let p = b64json(&claims());
    let signed_padded = rsa().sign_parts(&format!("{h}=="), &p);
    send(&layer(), bearer(&signed_padded))
        .await
        .assert_invalid_request("malformed bearer credentials");
    // Padding at the end is b64token, but not base64url as JWS requires.
    expect_invalid(&format!("{}==", rsa().mint(claims())), "malformed token").await;

    // A payload whose last character carries non-zero trailing bits, correctly signed: a lax
    // decoder would accept it as the same claims.
    let mut c = claims();
    while serde_json::to_vec(&c).unwrap().len().is_multiple_of(3) {
        c["pad"] = json!(format!("{}x", c["pad"].as_str().unwrap_or("")));
    }
    let canonical = b64json(&c);
    let mut bytes = canonical.into_bytes();
    let last = bytes.last_mut().unwrap();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.iter().position(|c| c == last).unwrap();
    *last = alphabet[idx + 1];
    let noncanonical = String::from_utf8(bytes).unwrap();
    let token = rsa().sign_parts(&h, &noncanonical);
    expect_invalid(&token, "malformed token").await;

    // A signature with non-canonical trailing bits.
    let good = ec().mint(claims());
    let (input, sig) = good.rsplit_once('.').unwrap();
    let mut sig = sig.as_bytes().to_vec();
    let last = sig.last_mut().unwrap();
    let idx = alphabet.iter().position(|c| c == last).unwrap();
    *last = alphabet[idx ^ 1];
    let token = format!("{input}.{}", String::from_utf8(sig).unwrap());
    expect_invalid(&token, "invalid signature").await;
}

#[tokio::test]
async fn duplicate_json_members_are_refused() {
    let h = B64.encode(br#"{"alg":"RS256","kid":"rsa-1","alg":"HS256"}"#);
    let token = rsa().sign_parts(&h, &b64json(&claims()));
    expect_invalid(&token, "malformed token").await;

    let body = serde_json::to_string(&claims()).unwrap();
    let dup = format!(r#"{{"sub":"mallory",{}"#, &body[1..]);
    let token = rsa().sign_parts(&b64json(&rsa().header()), &B64.encode(dup));
    expect_invalid(&token, "malformed token").await;
}

#[tokio::test]
async fn header_and_claims_must_be_json_objects() {
    for (h, p) in [
        (B64.encode(b"[]"), b64json(&claims())),
        (b64json(&rsa().header()), B64.encode(b"\"str\"")),
        (b64json(&rsa().header()), B64.encode(b"{not json")),
        (B64.encode(br#"{"alg":256}"#), b64json(&claims())),
        (
            B64.encode(br#"{"alg":"RS256","kid":7}"#),
            b64json(&claims()),
        ),
    ] {
        expect_invalid(&rsa().sign_parts(&h, &p), "malformed token").await;
    }
}

// ---------------------------------------------------------------- §3 algorithms and keys

#[tokio::test]
async fn alg_none_in_any_casing_is_refused() {
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = b64json(&json!({"alg": alg, "typ": "JWT"}));
        let p = b64json(&claims());
        expect_invalid(&format!("{h}.{p}."), "malformed token").await;
        expect_invalid(&format!("{h}.{p}.AAAA"), "algorithm not allowed").await;
    }
}

#[tokio::test]
async fn unknown_algorithms_and_algorithm_swaps_are_refused() {
    for alg in ["HS999", "RS1", "ES512", "rs256", ""] {
        let header = json!({"alg": alg, "kid": "rsa-1"});
        expect_invalid(
            &rsa().mint_with_header(&header, &claims()),
            "algorithm not allowed",
        )
        .await;
    }
    // The token says PS256, the key is for RS256: refused even though the key is RSA.
    let ps = TestIssuer::new(Algorithm::PS256);
    let set = Jwt::builder()
        .key(
            Key::rsa_der(&rsa_der(&ps), Algorithm::RS256)
                .unwrap()
                .with_kid("k"),
        )
        .audience(AUD)
        .clock(ManualClock::at_unix(T));
    let header = json!({"alg": "PS256", "kid": "k"});
    let out = send(
        &layer_with(set),
        bearer(&ps.mint_with_header(&header, &claims())),
    )
    .await;
    out.assert_invalid_token("algorithm not allowed");
}

/// The PKCS#1 DER of an RSA issuer's public key, read back from its JWK.
fn rsa_der(issuer: &TestIssuer) -> Vec<u8> {
    let jwk = issuer.jwk();
    let n = B64.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = B64.decode(jwk["e"].as_str().unwrap()).unwrap();
    fn int(v: &[u8]) -> Vec<u8> {
        let mut body = v.to_vec();
        if body[0] & 0x80 != 0 {
            body.insert(0, 0);
        }
        let mut out = vec![0x02];
        out.extend(len(body.len()));
        out.extend(body);
        out
    }
    fn len(l: usize) -> Vec<u8> {
        if l < 0x80 {
            vec![l as u8]
        } else if l < 0x100 {
            vec![0x81, l as u8]
        } else {
            vec![0x82, (l >> 8) as u8, l as u8]
        }
    }
    let mut seq = int(&n);
    seq.extend(int(&e));
    let mut out = vec![0x30];
    out.extend(len(seq.len()));
    out.extend(seq);
    out
}

#[tokio::test]
async fn hmac_keyed_with_the_public_key_is_refused() {
    // The classic confusion: HS256 with the RSA public key (PEM) as the secret.
    let pem = rsa().public_key_pem().unwrap();
    let h = b64json(&json!({"alg": "HS256", "kid": "rsa-1"}));
    let p = b64json(&claims());
    let input = format!("{h}.{p}");
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, pem.as_bytes()),
        input.as_bytes(),
    );
    let token = format!("{input}.{}", B64.encode(tag.as_ref()));
    expect_invalid(&token, "algorithm not allowed").await;
}

#[test]
fn short_hmac_secrets_are_refused_at_build_time() {
    let err = Key::hmac(&[7u8; 31], Algorithm::HS256).unwrap_err();
    assert!(err.to_string().contains("at least 32"), "{err}");
    assert!(Key::from_jwk_json(r#"{"kty":"oct","alg":"HS256","k":"c2hvcnQ"}"#).is_err());
    assert!(
        Jwt::builder().build().is_err(),
        "no keys is a configuration error"
    );
}

#[tokio::test]
async fn unknown_kid_and_foreign_keys_are_refused() {
    let h = json!({"alg": "RS256", "kid": "nope"});
    expect_invalid(
        &rsa().mint_with_header(&h, &claims()),
        "unknown signing key",
    )
    .await;
    // Same kid as a configured key, signed by another key.
    expect_invalid(&foreign().mint(claims()), "invalid signature").await;
}

#[tokio::test]
async fn tampered_payloads_are_refused() {
    let token = rsa().mint(claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = b64json(&with(claims(), "sub", json!("admin")));
    expect_invalid(&parts.join("."), "invalid signature").await;
    // Signature stripped.
    expect_invalid(&format!("{}.{}.", parts[0], parts[1]), "malformed token").await;
}

#[tokio::test]
async fn embedded_and_remote_key_headers_are_never_used() {
    // A listener standing in for the URLs a token might point at: nothing may connect to it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/keys", listener.local_addr().unwrap());
    let attacker = TestIssuer::rs256();
    for header in [
        json!({"alg": "RS256", "jwk": attacker.jwk()}),
        json!({"alg": "RS256", "kid": "attacker", "jwk": attacker.jwk()}),
        json!({"alg": "RS256", "kid": "attacker", "jku": url}),
        json!({"alg": "RS256", "kid": "attacker", "x5u": url}),
        json!({"alg": "RS256", "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
    ] {
        let out = send(
            &layer(),
            bearer(&attacker.mint_with_header(&header, &claims())),
        )
        .await;
        assert_eq!(out.status, StatusCode::UNAUTHORIZED);
        assert!(out.challenge().contains(r#"error="invalid_token""#));
        assert!(!out.called);
    }
    assert!(
        listener.accept().is_err(),
        "a token header made the server connect out"
    );
    // The headers are ignored, not fatal: a token signed by the configured key still passes.
    let header = json!({"alg": "RS256", "kid": "rsa-1", "jku": url});
    send(
        &layer(),
        bearer(&rsa().mint_with_header(&header, &claims())),
    )
    .await
    .assert_ok();
}

#[tokio::test]
async fn crit_is_enforced() {
    // jsonwebtoken parses `crit` but never enforces it: a token naming an extension we do not
    // implement must be refused even with a good signature.
    for crit in [
        json!(["exp"]),
        json!(["b64"]),
        json!(["urn:example:ext"]),
        json!([]),
    ] {
        let header = json!({"alg": "RS256", "kid": "rsa-1", "crit": crit});
        let token = rsa().mint_with_header(&header, &claims());
        expect_invalid(&token, "unsupported critical header").await;
    }
}

#[tokio::test]
async fn jwks_entries_not_for_signatures_or_with_another_alg_are_not_used() {
    let issuer = TestIssuer::es256().with_kid("k-enc");
    let mut enc = issuer.jwk();
    enc["use"] = json!("enc");
    let other = TestIssuer::es256().with_kid("k-alg");
    let mut wrong_alg = other.jwk();
    wrong_alg["alg"] = json!("ES384");
    let good = TestIssuer::es256().with_kid("k-ok");
    let jwks = json!({"keys": [enc, wrong_alg, good.jwk()]}).to_string();
    let set = KeySet::from_jwks_json(&jwks).unwrap();
    assert_eq!(set.len(), 1);
    let l = layer_with(
        Jwt::builder()
            .keys(set)
            .audience(AUD)
            .clock(ManualClock::at_unix(T)),
    );
    let c = without(claims(), "iss");
    for (i, msg) in [
        (&issuer, "unknown signing key"),
        (&other, "unknown signing key"),
    ] {
        let out = send(&l, bearer(&i.mint(c.clone()))).await;
        out.assert_invalid_token(msg);
    }
    send(&l, bearer(&good.mint(c))).await.assert_ok();
    // jsonwebtoken's own from_jwk ignores `use`: ours refuses it.
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(json!({
        "kty": "OKP", "crv": "Ed25519", "use": "enc",
        "x": "Zywzf8y_zBShYSALloNT8MQ7X_GJwiZrW8v6rddc3RE"
    }))
    .unwrap();
    assert!(jsonwebtoken::DecodingKey::from_jwk(&jwk).is_ok());
    assert!(Key::from_jwk(&jwk).is_err());
}

#[tokio::test]
async fn kid_less_tokens_need_exactly_one_key_for_their_algorithm() {
    let c = claims();
    // One RSA key configured: a kid-less RS256 token finds it.
    let header = json!({"alg": "RS256"});
    send(&layer(), bearer(&rsa().mint_with_header(&header, &c)))
        .await
        .assert_ok();
    // Two RS256 keys: ambiguous, refused.
    let second = TestIssuer::rs256().with_kid("rsa-2");
    let l = layer_with(builder().key(second.key()));
    send(&l, bearer(&rsa().mint_with_header(&header, &c)))
        .await
        .assert_invalid_token("unknown signing key");
}

#[tokio::test]
async fn ecdsa_malleability_gives_the_same_fingerprint() {
    // P-256 group order.
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let token = ec().mint(claims());
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = B64.decode(sig).unwrap();
    let (r, s) = sig.split_at(32);
    let mut flipped = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(N[i]) - i16::from(s[i]) - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        flipped[i] = d as u8;
    }
    let twin = format!("{input}.{}", B64.encode([r, &flipped[..]].concat()));
    assert_ne!(twin, token);
    let a = send(&layer(), bearer(&token)).await;
    let b = send(&layer(), bearer(&twin)).await;
    let (pa, pb) = (a.assert_ok(), b.assert_ok());
    assert_eq!(
        pa.fingerprint(),
        pb.fingerprint(),
        "fingerprint must not depend on the signature"
    );
}

#[tokio::test]
async fn psychic_signatures_are_refused() {
    let token = ec().mint(claims());
    let (input, _) = token.rsplit_once('.').unwrap();
    expect_invalid(
        &format!("{input}.{}", B64.encode([0u8; 64])),
        "invalid signature",
    )
    .await;
    let es384 = TestIssuer::new(Algorithm::ES384);
    let l = layer_with(builder().key(es384.key().with_kid("p384")));
    let t = es384.mint_with_header(&json!({"alg": "ES384", "kid": "p384"}), &claims());
    send(&l, bearer(&t)).await.assert_ok();
    let (input, _) = t.rsplit_once('.').unwrap();
    send(&l, bearer(&format!("{input}.{}", B64.encode([0u8; 96]))))
        .await
        .assert_invalid_token("invalid signature");
}

// ---------------------------------------------------------------- §3 time claims

#[tokio::test]
async fn exp_is_required_and_numeric() {
    expect_invalid(&rsa().mint(without(claims(), "exp")), "missing exp claim").await;
    for bad in [
        json!("1900000000"),
        json!(null),
        json!(true),
        json!([T + 600]),
    ] {
        expect_invalid(
            &rsa().mint(with(claims(), "exp", bad)),
            "invalid time claim",
        )
        .await;
    }
}

#[tokio::test]
async fn exp_boundary_with_default_leeway() {
    // Default leeway 60 s: valid while now < exp + 60.
    let c = with(claims(), "exp", json!(T - 59));
    send(&layer(), bearer(&rsa().mint(c))).await.assert_ok();
    let c = with(claims(), "exp", json!(T - 60));
    expect_invalid(&rsa().mint(c), "token expired").await;
}

#[tokio::test]
async fn exp_equal_to_now_is_expired_with_zero_leeway() {
    // jsonwebtoken accepts a token at exp == now; RFC 7519 §4.1.4 says "on or after".
    let l = layer_with(builder().leeway(Duration::ZERO));
    let c = with(with(claims(), "exp", json!(T)), "iat", json!(T - 10));
    send(&l, bearer(&rsa().mint(c)))
        .await
        .assert_invalid_token("token expired");
    let c = with(claims(), "exp", json!(T + 1));
    send(&l, bearer(&rsa().mint(c))).await.assert_ok();
    // Fractional NumericDate.
    let c = with(claims(), "exp", json!(T as f64 + 0.5));
    send(&l, bearer(&rsa().mint(c))).await.assert_ok();

    // Show the gap this closes, with the system clock: jsonwebtoken alone accepts exp == now.
    let now = support::now();
    let token = hs().mint(json!({"exp": now, "sub": "x"}));
    let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
    v.leeway = 0;
    v.validate_aud = false;
    let lax = jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(hs().secret().unwrap()),
        &v,
    );
    if support::now() == now {
        assert!(lax.is_ok(), "jsonwebtoken accepts exp == now");
    }
}

#[tokio::test]
async fn expiry_follows_the_clock() {
    let clock = ManualClock::at_unix(T);
    let l = layer_with(builder().clock(clock.clone()).leeway(Duration::ZERO));
    let token = rsa().mint(with(claims(), "exp", json!(T + 5)));
    send(&l, bearer(&token)).await.assert_ok();
    clock.advance(Duration::from_secs(5));
    send(&l, bearer(&token))
        .await
        .assert_invalid_token("token expired");
}

#[tokio::test]
async fn nbf_is_checked_with_leeway() {
    // jsonwebtoken does not check nbf by default.
    expect_invalid(
        &rsa().mint(with(claims(), "nbf", json!(T + 61))),
        "token not yet valid",
    )
    .await;
    send(
        &layer(),
        bearer(&rsa().mint(with(claims(), "nbf", json!(T + 60)))),
    )
    .await
    .assert_ok();
    expect_invalid(
        &rsa().mint(with(claims(), "nbf", json!("soon"))),
        "invalid time claim",
    )
    .await;
}

#[tokio::test]
async fn future_iat_is_refused() {
    // jsonwebtoken never checks iat.
    expect_invalid(
        &rsa().mint(with(claims(), "iat", json!(T + 61))),
        "token issued in the future",
    )
    .await;
    send(
        &layer(),
        bearer(&rsa().mint(with(claims(), "iat", json!(T + 60)))),
    )
    .await
    .assert_ok();
    expect_invalid(
        &rsa().mint(with(claims(), "iat", json!({}))),
        "invalid time claim",
    )
    .await;
}

#[tokio::test]
async fn maximum_lifetime() {
    let l = layer_with(builder().max_lifetime(Duration::from_secs(3600)));
    let ok = with(with(claims(), "iat", json!(T)), "exp", json!(T + 3600));
    send(&l, bearer(&rsa().mint(ok))).await.assert_ok();
    let long = with(with(claims(), "iat", json!(T)), "exp", json!(T + 3601));
    send(&l, bearer(&rsa().mint(long)))
        .await
        .assert_invalid_token("token lifetime exceeded");
    send(&l, bearer(&rsa().mint(without(claims(), "iat"))))
        .await
        .assert_invalid_token("missing iat claim");
}

// ---------------------------------------------------------------- §3 iss / aud / typ

#[tokio::test]
async fn issuer_is_required_typed_and_exact() {
    // jsonwebtoken lets a missing or non-string iss through unless listed as required.
    expect_invalid(&rsa().mint(without(claims(), "iss")), "missing iss claim").await;
    expect_invalid(
        &rsa().mint(with(claims(), "iss", json!(42))),
        "invalid iss claim",
    )
    .await;
    expect_invalid(
        &rsa().mint(with(claims(), "iss", json!([ISS]))),
        "invalid iss claim",
    )
    .await;
    expect_invalid(
        &rsa().mint(with(claims(), "iss", json!("https://evil.test"))),
        "invalid issuer",
    )
    .await;
    expect_invalid(
        &rsa().mint(with(claims(), "iss", json!(format!("{ISS}/")))),
        "invalid issuer",
    )
    .await;
    expect_invalid(
        &rsa().mint(with(claims(), "iss", json!(ISS.to_uppercase()))),
        "invalid issuer",
    )
    .await;
}

#[tokio::test]
async fn audience_is_required_typed_and_may_be_an_array() {
    // jsonwebtoken lets a missing aud through when it is not a required claim.
    expect_invalid(&rsa().mint(without(claims(), "aud")), "missing aud claim").await;
    expect_invalid(
        &rsa().mint(with(claims(), "aud", json!(1))),
        "invalid aud claim",
    )
    .await;
    expect_invalid(
        &rsa().mint(with(claims(), "aud", json!([AUD, 1]))),
        "invalid aud claim",
    )
    .await;
    expect_invalid(
        &rsa().mint(with(claims(), "aud", json!("api://other"))),
        "invalid audience",
    )
    .await;
    expect_invalid(
        &rsa().mint(with(claims(), "aud", json!([]))),
        "invalid audience",
    )
    .await;
    expect_invalid(
        &rsa().mint(with(claims(), "aud", json!(["a", "b"]))),
        "invalid audience",
    )
    .await;
    send(
        &layer(),
        bearer(&rsa().mint(with(claims(), "aud", json!(["other", AUD])))),
    )
    .await
    .assert_ok();
}

#[tokio::test]
async fn missing_aud_passes_jsonwebtoken_but_not_us() {
    let token = hs().mint(json!({"exp": support::now() + 600, "sub": "x"}));
    let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
    v.set_audience(&[AUD]);
    v.set_issuer(&[ISS]);
    let lax = jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(hs().secret().unwrap()),
        &v,
    );
    assert!(lax.is_ok(), "jsonwebtoken lets missing aud/iss through");
    let l = layer_with(builder().clock(tower_bearer::clock::SystemClock));
    let out = send(&l, bearer(&token)).await;
    assert_eq!(out.status, StatusCode::UNAUTHORIZED);
    assert!(!out.called);
}

#[tokio::test]
async fn a_token_with_aud_needs_a_configured_audience_or_an_explicit_opt_out() {
    let strict = Jwt::builder()
        .key(rsa().key())
        .clock(ManualClock::at_unix(T));
    send(&layer_with(strict), bearer(&rsa().mint(claims())))
        .await
        .assert_invalid_token("invalid audience");
    let any = Jwt::builder()
        .key(rsa().key())
        .any_audience()
        .clock(ManualClock::at_unix(T));
    send(&layer_with(any), bearer(&rsa().mint(claims())))
        .await
        .assert_ok();
}

#[tokio::test]
async fn rfc9068_typ_profile() {
    let l = layer_with(builder().require_at_jwt());
    for typ in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        let h = json!({"alg": "RS256", "kid": "rsa-1", "typ": typ});
        send(&l, bearer(&rsa().mint_with_header(&h, &claims())))
            .await
            .assert_ok();
    }
    for h in [
        json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}),
        json!({"alg": "RS256", "kid": "rsa-1"}),
    ] {
        send(&l, bearer(&rsa().mint_with_header(&h, &claims())))
            .await
            .assert_invalid_token("invalid token type");
    }
}

#[tokio::test]
async fn wrong_claim_types_are_never_a_silent_pass() {
    for (k, v, d) in [
        ("sub", json!(12), "invalid sub claim"),
        ("scope", json!(["items:read"]), "invalid scope claim"),
        ("scp", json!([1, 2]), "invalid scp claim"),
        ("jti", json!(5), "invalid jti claim"),
        ("client_id", json!(false), "invalid client_id claim"),
    ] {
        expect_invalid(&rsa().mint(with(claims(), k, v)), d).await;
    }
    let l = layer_with(builder().require_claim("tenant"));
    send(&l, bearer(&rsa().mint(claims())))
        .await
        .assert_invalid_token("required claim missing");
}

#[tokio::test]
async fn scopes_from_scp_arrays() {
    let c = with(
        without(claims(), "scope"),
        "scp",
        json!(["a:read", "b:write"]),
    );
    let out = send(&layer(), bearer(&rsa().mint(c))).await;
    let p = out.assert_ok();
    assert!(p.scopes().contains_all(["a:read", "b:write"]));
    assert!(!p.scopes().contains("A:read"));
}

#[tokio::test]
async fn error_descriptions_are_safe_printable_ascii() {
    let tokens = [
        rsa().mint(with(claims(), "exp", json!(T - 1000))),
        foreign().mint(claims()),
        rsa().mint(with(claims(), "iss", json!("x\"y"))),
        "e30.e30.e30".to_owned(),
    ];
    for token in tokens {
        let out = send(&layer(), bearer(&token)).await;
        let challenge = out.challenge();
        let desc = challenge
            .split("error_description=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches('"');
        assert!(!desc.is_empty());
        assert!(
            desc.chars()
                .all(|c| matches!(c, ' '..='~') && c != '"' && c != '\\')
        );
        let body: Value = serde_json::from_str(&out.body).unwrap();
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(out.headers["cache-control"], "no-store");
    }
}

// ---------------------------------------------------------------- rendering

#[tokio::test]
async fn grpc_requests_get_trailers_only_unauthenticated() {
    let req = Request::builder()
        .uri("/pkg.Svc/Method")
        .header("content-type", "application/grpc+proto")
        .header("authorization", "Bearer abc.def.ghi")
        .body(Full::default())
        .unwrap();
    let out = send(&layer(), req).await;
    assert_eq!(out.status, StatusCode::OK);
    assert_eq!(out.headers["content-type"], "application/grpc");
    assert_eq!(out.headers["grpc-status"], "16");
    assert_eq!(out.headers["grpc-message"], "malformed token");
    assert!(out.body.is_empty());
    assert!(!out.called);
    let req = Request::builder()
        .header("content-type", "application/grpc")
        .body(Full::default())
        .unwrap();
    let out = send(&layer(), req).await;
    assert_eq!(out.headers["grpc-status"], "16");
    assert_eq!(out.headers["grpc-message"], "bearer token required");
}

#[tokio::test]
async fn custom_bodies_keep_the_headers() {
    use tower_bearer::reject::{RejectionBody, Renderer};
    let renderer = Renderer::new(REALM).with_body(|err| RejectionBody {
        content_type: http::HeaderValue::from_static("application/problem+json"),
        body: Bytes::from(
            json!({"type": "about:blank", "title": err.description(), "status": err.status().as_u16()})
                .to_string(),
        ),
    });
    let l = layer().renderer(renderer);
    let out = send(&l, bearer("x.y.z")).await;
    out.assert_invalid_token("malformed token");
    assert_eq!(out.headers["content-type"], "application/problem+json");
    let body: Value = serde_json::from_str(&out.body).unwrap();
    assert_eq!(body["status"], 401);
}

#[tokio::test]
async fn the_error_is_in_the_response_extensions() {
    use tower::{Layer, ServiceExt, service_fn};
    let svc = layer().layer(service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::default()))
    }));
    let res = svc.oneshot(get(None)).await.unwrap();
    let err = res.extensions().get::<tower_bearer::AuthError>().unwrap();
    assert_eq!(err.kind(), tower_bearer::AuthErrorKind::MissingCredentials);
}

#[tokio::test]
async fn async_authenticators_work_through_the_layer() {
    use tower_bearer::extract::BearerToken;
    use tower_bearer::{AuthError, Principal, TokenFingerprint};
    let auth = |token: &BearerToken| {
        let ok = token.as_str() == "opaque-1";
        let fp = TokenFingerprint::of_bytes(token.as_str().as_bytes());
        async move {
            tokio::task::yield_now().await;
            if ok {
                Principal::from_claims(json!({"sub": "svc"}).as_object().unwrap().clone(), fp)
            } else {
                Err(AuthError::invalid_token("unknown token"))
            }
        }
    };
    let l = BearerAuthLayer::new(auth).realm(REALM);
    let out = send(&l, bearer("opaque-1")).await;
    assert_eq!(out.assert_ok().subject(), Some("svc"));
    send(&l, bearer("opaque-2"))
        .await
        .assert_invalid_token("unknown token");
}

// ---------------------------------------------------------------- §9 never

#[tokio::test]
async fn arbitrary_input_never_panics_never_500_never_reaches_the_service() {
    // A deterministic pseudo-random walk over header bytes and token shapes.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"ABCxyz019-_.~+/= \t\"',;eyJ";
    let good = rsa().mint(claims());
    for i in 0..600 {
        let len = (next() % 200) as usize;
        let mut token: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        if i % 3 == 0 {
            // Mutate a real token: flip, cut or insert.
            token = good.as_bytes().to_vec();
            let at = (next() % token.len() as u64) as usize;
            match next() % 3 {
                0 => token[at] = alphabet[(next() % alphabet.len() as u64) as usize],
                1 => token.truncate(at),
                _ => token.insert(at, b'.'),
            }
        }
        let Ok(value) = http::HeaderValue::from_bytes(&[b"Bearer ".as_slice(), &token].concat())
        else {
            continue;
        };
        let req = Request::builder()
            .header("authorization", value)
            .body(Full::default())
            .unwrap();
        let out = send(&layer(), req).await;
        if out.called {
            assert_eq!(out.status, StatusCode::OK);
            continue;
        }
        assert!(
            matches!(out.status.as_u16(), 400 | 401),
            "{i}: {:?}",
            out.status
        );
        assert!(out.challenge().starts_with("Bearer realm="));
    }
}

#[test]
fn debug_output_never_shows_the_token() {
    use tower_bearer::extract::{BearerToken, TokenSource};
    let token = rsa().mint(claims());
    let signature = token.rsplit('.').next().unwrap();
    let bt = BearerToken::new(token.as_str(), TokenSource::Authorization);
    let jwt = builder().build().unwrap();
    let principal = jwt.verify(&token).unwrap();
    let err = jwt.verify(&foreign().mint(claims())).unwrap_err();
    for text in [
        format!("{bt:?}"),
        format!("{principal:?}"),
        format!("{err:?}"),
        format!("{err}"),
        format!("{jwt:?}"),
        format!("{:?}", layer()),
    ] {
        assert!(!text.contains(&token), "{text}");
        assert!(!text.contains(signature), "{text}");
        assert!(!text.contains(&token[..20]), "{text}");
    }
}

#[test]
fn alg_names_round_trip() {
    for alg in [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        assert_eq!(alg_name(alg).parse::<Algorithm>().unwrap(), alg);
    }
}
