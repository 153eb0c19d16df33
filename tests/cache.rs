//! The verified-token cache: hits skip verification but never the checks that can change.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{REALM, bearer, get, send};
use tower_bearer::BearerAuthLayer;
use tower_bearer::clock::ManualClock;
use tower_bearer::extract::Extractor;
use tower_bearer::lifecycle::{Lifecycle, MemoryRevocations};
use tower_bearer::testing::TestIssuer;
use tower_bearer::validate::{Authenticator, Chain, Jwt, MultiIssuer};

const T: u64 = 1_800_000_000;

fn issuer() -> &'static TestIssuer {
    static K: std::sync::OnceLock<TestIssuer> = std::sync::OnceLock::new();
    K.get_or_init(|| TestIssuer::rs256().with_kid("k"))
}

/// A `Jwt` for audience `api` whose clock stands at `T`.
fn jwt_at_t() -> Jwt {
    Jwt::builder()
        .key(issuer().key())
        .audience("api")
        .clock(ManualClock::at_unix(T))
        .build()
        .unwrap()
}

fn token(exp: u64, jti: &str) -> String {
    issuer().mint(json!({"sub": "alice", "aud": "api", "iat": T - 10, "exp": exp, "jti": jti}))
}

#[tokio::test]
async fn a_reused_token_hits_and_any_changed_byte_misses() {
    let jwt = jwt_at_t();
    let l = BearerAuthLayer::new(jwt.clone()).realm(REALM);
    let t = token(T + 600, "a");
    for _ in 0..3 {
        send(&l, bearer(&t)).await.assert_ok();
    }
    let s = jwt.cache_stats().unwrap();
    assert_eq!((s.hits, s.misses), (2, 1));
    // Every single-byte change misses and is re-verified. A change before the last 64 bytes
    // keeps the token's slot (the slot hashes the length and the tail), so this also checks
    // that a hit takes the whole token.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for at in (0..t.len()).step_by(7) {
        let mut bytes = t.as_bytes().to_vec();
        if bytes[at] == b'.' {
            continue;
        }
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        assert!(alphabet.contains(&bytes[at]));
        let changed = String::from_utf8(bytes).unwrap();
        let before = jwt.cache_stats().unwrap();
        let out = send(&l, bearer(&changed)).await;
        let after = jwt.cache_stats().unwrap();
        assert_eq!(after.hits, before.hits, "byte {at} must not hit");
        assert_eq!(out.status, 401, "byte {at}");
        assert!(!out.called, "byte {at}");
    }
}

#[tokio::test]
async fn expiry_is_rechecked_on_every_hit() {
    let clock = ManualClock::at_unix(T);
    let jwt = Jwt::builder()
        .key(issuer().key())
        .audience("api")
        .leeway(Duration::ZERO)
        .clock(clock.clone())
        .build()
        .unwrap();
    let l = BearerAuthLayer::new(jwt.clone()).realm(REALM);
    let t = token(T + 5, "b");
    send(&l, bearer(&t)).await.assert_ok();
    send(&l, bearer(&t)).await.assert_ok();
    clock.advance(Duration::from_secs(5));
    send(&l, bearer(&t))
        .await
        .assert_invalid_token("token expired");
}

#[tokio::test]
async fn revocation_applies_to_cached_tokens() {
    let jwt = jwt_at_t();
    let lc = Lifecycle::new(jwt.clone()).revocations(MemoryRevocations::default());
    let l = BearerAuthLayer::new(lc.clone()).realm(REALM);
    let t = token(4_102_444_800, "c");
    let p = send(&l, bearer(&t)).await.assert_ok().clone();
    send(&l, bearer(&t)).await.assert_ok();
    assert!(jwt.cache_stats().unwrap().hits >= 1);
    lc.revoke_token(&p).await.unwrap();
    send(&l, bearer(&t))
        .await
        .assert_invalid_token("token revoked");
}

#[test]
fn the_cache_can_be_turned_off() {
    let jwt = Jwt::builder()
        .key(issuer().key())
        .audience("api")
        .cache_entries(0)
        .build()
        .unwrap();
    assert!(jwt.cache_stats().is_none());
}

#[tokio::test]
async fn a_cached_token_still_passes_every_extractor_check() {
    let jwt = jwt_at_t();
    let open = BearerAuthLayer::new(jwt.clone()).realm(REALM);
    let t = token(T + 600, "d");
    send(&open, bearer(&t)).await.assert_ok();
    send(&open, bearer(&t)).await.assert_ok();
    // Any spelling of the scheme and spacing finds the cached token.
    let hits = jwt.cache_stats().unwrap().hits;
    send(&open, get(Some(&format!("bEaReR   {t}  "))))
        .await
        .assert_ok();
    assert_eq!(jwt.cache_stats().unwrap().hits, hits + 1);

    // Another layer sharing the authenticator (and so the cache) keeps its own size cap...
    let small = BearerAuthLayer::new(jwt.clone())
        .realm(REALM)
        .extractor(Extractor::new().max_token_len(t.len() - 1));
    send(&small, bearer(&t))
        .await
        .assert_invalid_request("token too large");
    // ...and still refuses a second credential beside a cached one.
    let cookies = BearerAuthLayer::new(jwt.clone())
        .realm(REALM)
        .extractor(Extractor::new().cookie("session"));
    let mut req = bearer(&t);
    req.headers_mut()
        .insert("cookie", format!("session={t}").parse().unwrap());
    send(&cookies, req)
        .await
        .assert_invalid_request("more than one credential");
    // A cached token in the cookie alone is a hit like any other.
    let hits = jwt.cache_stats().unwrap().hits;
    let mut req = get(None);
    req.headers_mut()
        .insert("cookie", format!("session={t}").parse().unwrap());
    send(&cookies, req).await.assert_ok();
    assert_eq!(jwt.cache_stats().unwrap().hits, hits + 1);
}

#[tokio::test]
async fn the_principal_of_a_hit_carries_the_tokens_fingerprint() {
    let jwt = jwt_at_t();
    let l = BearerAuthLayer::new(jwt.clone()).realm(REALM);
    let t = token(T + 600, "e");
    let signing_input = &t[..t.rfind('.').unwrap()];
    let expected =
        tower_bearer::principal::TokenFingerprint::of_signing_input(signing_input.as_bytes());
    let first = send(&l, bearer(&t)).await.assert_ok().clone();
    let again = send(&l, bearer(&t)).await.assert_ok().clone();
    assert_eq!(first.fingerprint(), expected);
    assert_eq!(again.fingerprint(), expected);
    assert_eq!(jwt.cache_stats().unwrap().hits, 1);
}

/// A `Chain` sends only `eyJ…` tokens to its JWT authenticator, so its cache may not answer
/// for another shape, even one that authenticator verified through another layer.
#[tokio::test]
async fn a_chain_takes_from_the_jwt_cache_only_what_it_would_send_the_jwt_authenticator() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwt = jwt_at_t();
    // A valid token whose header starts with a space: `IH…`, not `eyJ…`.
    let header = URL_SAFE_NO_PAD.encode(r#" {"alg":"RS256","kid":"k"}"#);
    let claims = json!({"sub": "alice", "aud": "api", "iat": T - 10, "exp": T + 600});
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let t = issuer().sign_parts(&header, &payload);
    assert!(!t.starts_with("eyJ"));
    let plain = BearerAuthLayer::new(jwt.clone()).realm(REALM);
    send(&plain, bearer(&t)).await.assert_ok();
    send(&plain, bearer(&t)).await.assert_ok();
    let chain = BearerAuthLayer::new(Chain::new().jwt(jwt.clone())).realm(REALM);
    let out = send(&chain, bearer(&t)).await;
    assert_eq!(out.status, 401, "{out:?}");
    assert!(!out.called);
    // An `eyJ…` token cached the same way is a hit through the chain.
    let t = token(T + 600, "f");
    send(&plain, bearer(&t)).await.assert_ok();
    let hits = jwt.cache_stats().unwrap().hits;
    send(&chain, bearer(&t)).await.assert_ok();
    assert_eq!(jwt.cache_stats().unwrap().hits, hits + 1);
}

#[tokio::test]
async fn a_multi_issuer_answers_reused_tokens_from_its_issuers_caches() {
    let other = TestIssuer::es256().with_kid("o");
    let jwt = |key, iss: &str| {
        Jwt::builder()
            .key(key)
            .issuer(iss)
            .audience("api")
            .clock(ManualClock::at_unix(T))
            .build()
            .unwrap()
    };
    let (a, b) = (
        jwt(issuer().key(), "https://a"),
        jwt(other.key(), "https://b"),
    );
    let multi = MultiIssuer::builder()
        .issuer("https://a", a.clone())
        .issuer("https://b", b.clone())
        .build()
        .unwrap();
    let l = BearerAuthLayer::new(multi.clone()).realm(REALM);
    let claims = |iss: &str| json!({"sub": "alice", "aud": "api", "iss": iss, "iat": T - 10, "exp": T + 600});
    let (ta, tb) = (
        issuer().mint(claims("https://a")),
        other.mint(claims("https://b")),
    );
    // The fast path answers only for tokens an issuer has verified.
    assert!(multi.authenticate_cached(ta.as_bytes()).is_none());
    for _ in 0..3 {
        send(&l, bearer(&ta)).await.assert_ok();
        send(&l, bearer(&tb)).await.assert_ok();
    }
    for jwt in [&a, &b] {
        let s = jwt.cache_stats().unwrap();
        // Each issuer verified its token once; the other four requests hit.
        assert_eq!((s.misses, s.hits), (1, 2), "{s:?}");
    }
    for t in [&ta, &tb] {
        let cached = multi.authenticate_cached(t.as_bytes()).unwrap();
        let principal = cached.into_ready().ok().unwrap().unwrap();
        assert_eq!(principal.subject(), Some("alice"));
    }
    // A token signed by b's key but naming a is still refused (b's cache never saw it).
    let forged = other.mint(claims("https://a"));
    send(&l, bearer(&forged))
        .await
        .assert_invalid_token("unknown signing key");
    assert!(multi.authenticate_cached(forged.as_bytes()).is_none());

    // With more than four issuers, a first-seen token would cost too many lookups: the
    // layer takes the full path (which still uses the issuer's cache).
    let mut many = MultiIssuer::builder();
    for i in 0..5 {
        let iss = format!("https://t{i}");
        many = many.issuer(iss.clone(), jwt(issuer().key(), &iss));
    }
    let many = many.build().unwrap();
    let t0 = issuer().mint(claims("https://t0"));
    let l = BearerAuthLayer::new(many.clone()).realm(REALM);
    send(&l, bearer(&t0)).await.assert_ok();
    assert!(many.authenticate_cached(t0.as_bytes()).is_none());
    send(&l, bearer(&t0)).await.assert_ok();
}
