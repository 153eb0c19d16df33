//! DPoP (RFC 9449) through the bearer layer: proofs generated at test time with ES256 and
//! EdDSA keys, every refusal checked for its status, challenge, and that the inner service
//! did not run; replays in memory and across two instances sharing a real Redis; nonces;
//! per-route policies.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use support::{REALM, RedisServer};
use tower::{Layer, ServiceExt, service_fn};
use tower_bearer::clock::{Clock, ManualClock};
use tower_bearer::dpop::{Dpop, DpopBuilder, DpopNonces, MemoryReplay, RedisReplay};
use tower_bearer::keys::Algorithm;
use tower_bearer::sender::{SenderConstraints, SenderGuardLayer, SenderPolicy, SenderProof};
use tower_bearer::testing::{DpopKey, TestIssuer, claims};
use tower_bearer::validate::Jwt;
use tower_bearer::{BearerAuthLayer, Principal};

const BASE: &str = "https://api.example";
const ALGS: &str = "ES256 ES384 EdDSA PS256 RS256";

fn issuer() -> &'static TestIssuer {
    static K: OnceLock<TestIssuer> = OnceLock::new();
    K.get_or_init(|| TestIssuer::es256().with_kid("as"))
}

fn jwt() -> Jwt {
    Jwt::builder()
        .key(issuer().key())
        .any_audience()
        .build()
        .unwrap()
}

fn builder(clock: &ManualClock) -> DpopBuilder {
    Dpop::builder().external_base_url(BASE).clock(clock.clone())
}

fn layer_with(dpop: Dpop) -> BearerAuthLayer {
    BearerAuthLayer::new(jwt())
        .realm(REALM)
        .sender_constraints(SenderConstraints::new().dpop(dpop))
}

fn layer(clock: &ManualClock) -> BearerAuthLayer {
    layer_with(builder(clock).build().unwrap())
}

/// A token bound to `key`.
fn bound(key: &DpopKey) -> String {
    issuer().mint(claims("alice", "items:read", Duration::from_secs(600)).dpop_bound(key))
}

fn unbound() -> String {
    issuer().mint(claims("bob", "items:read", Duration::from_secs(600)))
}

fn request(method: &str, path: &str, authorization: &str, proofs: &[&str]) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", authorization);
    for p in proofs {
        b = b.header("dpop", *p);
    }
    b.body(Full::default()).unwrap()
}

/// `GET /r` with `Authorization: DPoP token` and one proof.
fn dpop_get(token: &str, proof: &str) -> Request<Full<Bytes>> {
    request("GET", "/r", &format!("DPoP {token}"), &[proof])
}

#[derive(Debug)]
struct Outcome {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
    called: bool,
    principal: Option<Principal>,
    proof: Option<SenderProof>,
}

impl Outcome {
    fn challenges(&self) -> Vec<String> {
        self.headers
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[track_caller]
    fn assert_ok(&self) -> &SenderProof {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert!(self.called && self.principal.is_some());
        self.proof.as_ref().expect("SenderProof in the extensions")
    }

    /// A 401 with one `DPoP` challenge of `error` and `description`; inner service not run.
    #[track_caller]
    fn assert_dpop_error(&self, error: &str, description: &str) {
        assert_eq!(self.status, StatusCode::UNAUTHORIZED, "{self:?}");
        assert_eq!(
            self.challenges(),
            [format!(
                r#"DPoP realm="{REALM}", error="{error}", error_description="{description}", algs="{ALGS}""#
            )]
        );
        assert!(!self.called, "inner service must not run");
    }

    #[track_caller]
    fn assert_invalid_proof(&self, description: &str) {
        self.assert_dpop_error("invalid_dpop_proof", description);
    }

    #[track_caller]
    fn assert_no_material(&self, secrets: &[&str]) {
        let mut text = self.body.clone();
        for (_, v) in &self.headers {
            text.push_str(&String::from_utf8_lossy(v.as_bytes()));
        }
        for secret in secrets {
            for part in secret.split('.') {
                if part.len() > 8 {
                    assert!(!text.contains(part), "material leaked: {text}");
                }
            }
        }
    }
}

async fn send(layer: &BearerAuthLayer, req: Request<Full<Bytes>>) -> Outcome {
    type Seen = Option<(Option<Principal>, Option<SenderProof>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let seen2 = seen.clone();
    let inner = service_fn(move |req: Request<Full<Bytes>>| {
        let seen = seen2.clone();
        async move {
            *seen.lock().unwrap() = Some((
                req.extensions().get::<Principal>().cloned(),
                req.extensions().get::<SenderProof>().cloned(),
            ));
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner"))))
        }
    });
    let res = layer.layer(inner).oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let seen = seen.lock().unwrap().take();
    Outcome {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        called: seen.is_some(),
        principal: seen.as_ref().and_then(|s| s.0.clone()),
        proof: seen.and_then(|s| s.1),
    }
}

/// The clock's time in whole seconds.
fn unix(clock: &ManualClock) -> u64 {
    clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// --- valid proofs -------------------------------------------------------------------------------

#[tokio::test]
async fn valid_proofs_with_es256_and_eddsa_keys() {
    let clock = ManualClock::new();
    let layer = layer(&clock);
    for key in [DpopKey::es256(), DpopKey::ed25519()] {
        let token = bound(&key);
        let proof = key
            .proof("GET", "https://api.example/r")
            .access_token(&token)
            .sign();
        let out = send(&layer, dpop_get(&token, &proof)).await;
        let proven = out.assert_ok();
        assert_eq!(proven.dpop_jkt(), Some(key.thumbprint().as_str()));
        assert!(proven.is_sender_constrained());
        assert_eq!(out.principal.as_ref().unwrap().subject(), Some("alice"));
    }
}

#[tokio::test]
async fn htu_is_compared_after_normalisation_and_without_query() {
    let clock = ManualClock::new();
    let layer = layer(&clock);
    let key = DpopKey::es256();
    let token = bound(&key);
    for htu in [
        "HTTPS://API.EXAMPLE:443/r",
        "https://api.example/./r",
        "https://api.example/%72?a=b#c",
    ] {
        let proof = key.proof("GET", htu).access_token(&token).sign();
        let req = request("GET", "/r?x=1", &format!("DPoP {token}"), &[&proof]);
        send(&layer, req).await.assert_ok();
    }
}

#[tokio::test]
async fn without_a_base_url_the_host_header_names_the_origin() {
    let clock = ManualClock::new();
    let layer = layer_with(Dpop::builder().clock(clock.clone()).build().unwrap());
    let key = DpopKey::ed25519();
    let token = bound(&key);
    let proof = key
        .proof("GET", "http://svc.local:8080/r")
        .access_token(&token)
        .sign();
    let mut req = dpop_get(&token, &proof);
    req.headers_mut()
        .insert("host", "svc.local:8080".parse().unwrap());
    send(&layer, req).await.assert_ok();

    // Over TLS (the acceptor's `Scheme` extension), the origin is `https://`: a proof for
    // `http://` no longer matches.
    let tls_get = |proof: &str| {
        let mut req = dpop_get(&token, proof);
        req.headers_mut()
            .insert("host", "svc.local".parse().unwrap());
        req.extensions_mut()
            .insert(tower_bearer::network::Scheme::Https);
        req
    };
    let https = key
        .proof("GET", "https://svc.local/r")
        .access_token(&token)
        .sign();
    send(&layer, tls_get(&https)).await.assert_ok();
    let http = key
        .proof("GET", "http://svc.local/r")
        .access_token(&token)
        .sign();
    send(&layer, tls_get(&http))
        .await
        .assert_invalid_proof("DPoP proof is for another URL");
}

#[tokio::test]
async fn a_base_url_with_a_path_prefix() {
    let clock = ManualClock::new();
    let dpop = Dpop::builder()
        .external_base_url("https://gw.example/api/")
        .clock(clock.clone())
        .build()
        .unwrap();
    let layer = layer_with(dpop);
    let key = DpopKey::es256();
    let token = bound(&key);
    let proof = key
        .proof("GET", "https://gw.example/api/r")
        .access_token(&token)
        .sign();
    send(&layer, dpop_get(&token, &proof)).await.assert_ok();
    let proof = key
        .proof("GET", "https://gw.example/r")
        .access_token(&token)
        .sign();
    send(&layer, dpop_get(&token, &proof))
        .await
        .assert_invalid_proof("DPoP proof is for another URL");
}

// --- proofs for another request ------------------------------------------------------------------

#[tokio::test]
async fn wrong_method_url_and_ath() {
    let clock = ManualClock::new();
    let layer = layer(&clock);
    let key = DpopKey::es256();
    let token = bound(&key);

    let proof = key
        .proof("POST", "https://api.example/r")
        .access_token(&token)
        .sign();
    let out = send(&layer, dpop_get(&token, &proof)).await;
    out.assert_invalid_proof("DPoP proof is for another method");
    out.assert_no_material(&[&token, &proof]);

    for htu in [
        "https://api.example/other",
        "http://api.example/r",
        "https://evil.example/r",
        "https://api.example:8443/r",
    ] {
        let proof = key.proof("GET", htu).access_token(&token).sign();
        send(&layer, dpop_get(&token, &proof))
            .await
            .assert_invalid_proof("DPoP proof is for another URL");
    }

    let other = bound(&key);
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&other)
        .sign();
    send(&layer, dpop_get(&token, &proof))
        .await
        .assert_invalid_proof("DPoP proof ath does not match the token");
    let proof = key.proof("GET", "https://api.example/r").sign();
    send(&layer, dpop_get(&token, &proof))
        .await
        .assert_invalid_proof("DPoP proof needs ath");
}

#[tokio::test]
async fn a_proof_by_another_key_than_the_token_is_bound_to() {
    let clock = ManualClock::new();
    let layer = layer(&clock);
    let (holder, thief) = (DpopKey::es256(), DpopKey::ed25519());
    let token = bound(&holder);
    let proof = thief
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .sign();
    let out = send(&layer, dpop_get(&token, &proof)).await;
    out.assert_dpop_error("invalid_token", "DPoP proof key does not match the token");
}

#[tokio::test]
async fn a_jwk_that_did_not_sign_the_proof() {
    let clock = ManualClock::new();
    let layer = layer(&clock);
    let (signer, other) = (DpopKey::es256(), DpopKey::es256());
    let token = bound(&other);
    let proof = signer
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .header("jwk", other.jwk())
        .sign();
    send(&layer, dpop_get(&token, &proof))
        .await
        .assert_invalid_proof("invalid DPoP proof signature");
}

// --- time ---------------------------------------------------------------------------------------

#[tokio::test]
async fn stale_and_future_iat() {
    let clock = ManualClock::new();
    let layer = layer(&clock);
    let key = DpopKey::es256();
    let token = bound(&key);
    let now = support::now();
    // The clock is frozen: the default window is 60 s back, the leeway 5 s ahead.
    for (iat, ok) in [
        (now - 60, true),
        (now - 61, false),
        (now + 5, true),
        (now + 6, false),
    ] {
        clock.set(std::time::UNIX_EPOCH + Duration::from_secs(now));
        let proof = key
            .proof("GET", "https://api.example/r")
            .access_token(&token)
            .iat(iat)
            .sign();
        let out = send(&layer, dpop_get(&token, &proof)).await;
        match (ok, iat < now) {
            (true, _) => {
                out.assert_ok();
            }
            (false, true) => out.assert_invalid_proof("DPoP proof too old"),
            (false, false) => out.assert_invalid_proof("DPoP proof issued in the future"),
        }
    }
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .claim("iat", "now")
        .sign();
    send(&layer, dpop_get(&token, &proof))
        .await
        .assert_invalid_proof("DPoP proof needs a numeric iat");
}

// --- replay ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_replayed_jti_is_refused_until_the_window_has_passed() {
    let clock = ManualClock::new();
    let layer = layer(&clock);
    let key = DpopKey::ed25519();
    let token = bound(&key);
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .sign();
    send(&layer, dpop_get(&token, &proof)).await.assert_ok();
    send(&layer, dpop_get(&token, &proof))
        .await
        .assert_invalid_proof("DPoP proof replayed");
    // A new proof with the same jti is a replay too.
    let jti = "fixed-jti";
    let first = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .jti(jti)
        .sign();
    send(&layer, dpop_get(&token, &first)).await.assert_ok();
    let again = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .jti(jti)
        .sign();
    send(&layer, dpop_get(&token, &again))
        .await
        .assert_invalid_proof("DPoP proof replayed");
    // The same jti from another client's key is that client's own.
    let other = DpopKey::es256();
    let other_token = bound(&other);
    let theirs = other
        .proof("GET", "https://api.example/r")
        .access_token(&other_token)
        .jti(jti)
        .sign();
    send(&layer, dpop_get(&other_token, &theirs))
        .await
        .assert_ok();
}

#[tokio::test]
async fn a_rejected_request_does_not_burn_the_jti() {
    let clock = ManualClock::new();
    let layer = layer(&clock);
    let key = DpopKey::es256();
    let token = bound(&key);
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .sign();
    // Presented with a token it is not bound to (same ath would not match anyway): refused
    // before the replay check, so the same proof still works with its own token.
    let other =
        issuer().mint(claims("eve", "", Duration::from_secs(600)).dpop_bound(&DpopKey::es256()));
    let req = request("GET", "/r", &format!("DPoP {other}"), &[&proof]);
    assert_eq!(send(&layer, req).await.status, StatusCode::UNAUTHORIZED);
    send(&layer, dpop_get(&token, &proof)).await.assert_ok();
}

#[tokio::test]
async fn replay_across_two_instances_sharing_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let clock = ManualClock::new();
    let a = layer_with(
        builder(&clock)
            .replay_store(RedisReplay::connect(&redis.url()).await.unwrap())
            .build()
            .unwrap(),
    );
    let b = layer_with(
        builder(&clock)
            .replay_store(RedisReplay::connect(&redis.url()).await.unwrap())
            .build()
            .unwrap(),
    );
    let key = DpopKey::es256();
    let token = bound(&key);
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .sign();
    send(&a, dpop_get(&token, &proof)).await.assert_ok();
    send(&b, dpop_get(&token, &proof))
        .await
        .assert_invalid_proof("DPoP proof replayed");
    send(&a, dpop_get(&token, &proof))
        .await
        .assert_invalid_proof("DPoP proof replayed");
    // A fresh proof passes on either.
    let fresh = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .sign();
    send(&b, dpop_get(&token, &fresh)).await.assert_ok();

    // Redis gone: the replay check cannot be made, so 503, never a pass.
    let mut redis = redis;
    redis.kill();
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .sign();
    let out = send(&a, dpop_get(&token, &proof)).await;
    assert_eq!(out.status, StatusCode::SERVICE_UNAVAILABLE, "{out:?}");
    assert!(!out.called);
}

#[tokio::test]
async fn a_full_memory_replay_store_fails_closed() {
    let clock = ManualClock::new();
    let layer = layer_with(
        builder(&clock)
            .replay_store(MemoryReplay::new(16))
            .build()
            .unwrap(),
    );
    let key = DpopKey::es256();
    let token = bound(&key);
    let mut refused = 0;
    for _ in 0..200 {
        let proof = key
            .proof("GET", "https://api.example/r")
            .access_token(&token)
            .sign();
        let out = send(&layer, dpop_get(&token, &proof)).await;
        match out.status {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(!out.called);
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refused > 0, "a 16-entry store cannot hold 200 live jtis");
    // Once the window has passed, there is room again.
    clock.advance(Duration::from_secs(120));
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .iat(support::now() + 120)
        .sign();
    send(&layer, dpop_get(&token, &proof)).await.assert_ok();
}

// --- hostile proofs ---------------------------------------------------------------------------------

#[tokio::test]
async fn none_and_hmac_proofs_are_refused() {
    let clock = ManualClock::new();
    let layer = layer(&clock);
    let key = DpopKey::es256();
    let token = bound(&key);
    let claims = json!({"jti": "n1", "htm": "GET", "htu": "https://api.example/r",
        "iat": support::now(), "ath": "x"});
    for alg in ["none", "None", "NONE"] {
        let header = json!({"typ": "dpop+jwt", "alg": alg, "jwk": key.jwk()});
        let h = B64.encode(serde_json::to_vec(&header).unwrap());
        let p = B64.encode(serde_json::to_vec(&claims).unwrap());
        for proof in [format!("{h}.{p}."), format!("{h}.{p}.AAAA")] {
            let out = send(&layer, dpop_get(&token, &proof)).await;
            assert_eq!(out.status, StatusCode::UNAUTHORIZED, "{alg}");
            assert!(!out.called);
            assert!(out.challenges()[0].contains(r#"error="invalid_dpop_proof""#));
        }
    }
    // HS256 with the secret in an `oct` jwk: the proof does not get to pick its algorithm.
    let hmac = TestIssuer::hs256();
    let header = json!({"typ": "dpop+jwt", "alg": "HS256",
        "jwk": {"kty": "oct", "k": B64.encode(hmac.secret().unwrap())}});
    let proof = hmac.mint_with_header(&header, &claims);
    send(&layer, dpop_get(&token, &proof))
        .await
        .assert_invalid_proof("DPoP proof algorithm not allowed");
    let header = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": key.jwk()});
    let proof = hmac.mint_with_header(&header, &claims);
    send(&layer, dpop_get(&token, &proof))
        .await
        .assert_invalid_proof("DPoP proof algorithm not allowed");
    // And it cannot be configured.
    assert!(
        Dpop::builder()
            .algorithms([Algorithm::ES256, Algorithm::HS256])
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn a_private_key_in_the_proof_jwk_is_refused() {
    let clock = ManualClock::new();
    let layer = layer(&clock);
    let key = DpopKey::es256();
    let token = bound(&key);
    let mut jwk = key.jwk();
    jwk["d"] = json!(B64.encode([7u8; 32]));
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .header("jwk", jwk)
        .sign();
    send(&layer, dpop_get(&token, &proof))
        .await
        .assert_invalid_proof("DPoP proof jwk must not hold a private key");
}

#[tokio::test]
async fn malformed_proof_headers() {
    let clock = ManualClock::new();
    let layer = layer(&clock);
    let key = DpopKey::es256();
    let token = bound(&key);
    let base = || {
        key.proof("GET", "https://api.example/r")
            .access_token(&token)
    };
    for (proof, description) in [
        (
            base().header("typ", "JWT").sign(),
            "DPoP proof typ must be dpop+jwt",
        ),
        (
            base().header("crit", json!(["x"])).sign(),
            "DPoP proof has an unsupported critical header",
        ),
        (
            base().header("jwk", "not an object").sign(),
            "DPoP proof has no jwk",
        ),
        (
            base().header("alg", "ES384").sign(),
            "DPoP proof jwk does not fit its algorithm",
        ),
        (
            base().header("alg", "EdDSA").sign(),
            "DPoP proof jwk does not fit its algorithm",
        ),
        (base().remove_claim("jti").sign(), "DPoP proof needs a jti"),
        (base().claim("jti", "").sign(), "DPoP proof needs a jti"),
        ("junk".to_owned(), "malformed DPoP proof"),
        ("a.b.c".to_owned(), "malformed DPoP proof"),
        ("a.b.c.d".to_owned(), "malformed DPoP proof"),
    ] {
        send(&layer, dpop_get(&token, &proof))
            .await
            .assert_invalid_proof(description);
    }
    // Duplicate header members are refused (strict JSON).
    let good = base().sign();
    let (h, rest) = good.split_once('.').unwrap();
    let header = String::from_utf8(B64.decode(h).unwrap()).unwrap();
    let dup = header.replacen('{', r#"{"typ":"dpop+jwt","#, 1);
    let forged = format!("{}.{rest}", B64.encode(dup));
    send(&layer, dpop_get(&token, &forged))
        .await
        .assert_invalid_proof("malformed DPoP proof");
    // A proof over the size cap is refused before any decoding.
    let small = layer_with(builder(&clock).max_proof_len(64).build().unwrap());
    send(&small, dpop_get(&token, &good))
        .await
        .assert_invalid_proof("DPoP proof too large");
}

#[tokio::test]
async fn exactly_one_proof() {
    let clock = ManualClock::new();
    let layer = layer(&clock);
    let key = DpopKey::es256();
    let token = bound(&key);
    let p1 = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .sign();
    let p2 = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .sign();
    send(&layer, request("GET", "/r", &format!("DPoP {token}"), &[]))
        .await
        .assert_invalid_proof("missing DPoP proof");
    send(
        &layer,
        request("GET", "/r", &format!("DPoP {token}"), &[&p1, &p2]),
    )
    .await
    .assert_invalid_proof("more than one DPoP proof");
}

#[tokio::test]
async fn the_algorithm_allowlist_is_announced_and_enforced() {
    let clock = ManualClock::new();
    let layer = layer_with(
        builder(&clock)
            .algorithms([Algorithm::EdDSA])
            .build()
            .unwrap(),
    );
    let key = DpopKey::es256();
    let token = bound(&key);
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .sign();
    let out = send(&layer, dpop_get(&token, &proof)).await;
    assert_eq!(out.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        out.challenges(),
        [format!(
            r#"DPoP realm="{REALM}", error="invalid_dpop_proof", error_description="DPoP proof algorithm not allowed", algs="EdDSA""#
        )]
    );
}

// --- schemes --------------------------------------------------------------------------------------

#[tokio::test]
async fn a_dpop_bound_token_sent_as_bearer_is_refused() {
    let clock = ManualClock::new();
    let layer = layer(&clock);
    let key = DpopKey::es256();
    let token = bound(&key);
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .sign();
    for proofs in [vec![], vec![proof.as_str()]] {
        let out = send(
            &layer,
            request("GET", "/r", &format!("Bearer {token}"), &proofs),
        )
        .await;
        out.assert_dpop_error("invalid_token", "DPoP-bound token presented as Bearer");
        out.assert_no_material(&[&token, &proof]);
    }
}

/// A 401 `invalid_token` with a Bearer challenge naming `description`; inner service not run.
#[track_caller]
fn assert_bearer_refusal(out: &Outcome, description: &str) {
    assert_eq!(out.status, StatusCode::UNAUTHORIZED, "{out:?}");
    let challenges = out.challenges();
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    assert!(challenges[0].starts_with("Bearer "), "{challenges:?}");
    assert!(
        challenges[0].contains(r#"error="invalid_token""#),
        "{challenges:?}"
    );
    assert!(challenges[0].contains(description), "{challenges:?}");
    assert!(!out.called, "inner service must not run");
}

#[tokio::test]
async fn bound_tokens_are_refused_where_their_binding_is_not_checked() {
    let key = DpopKey::es256();
    let dpop_bound = bound(&key);
    let cert_bound = issuer()
        .mint(claims("carol", "items:read", Duration::from_secs(600)).certificate_bound(b"a cert"));
    let jwk_bound = issuer().mint(
        claims("dave", "items:read", Duration::from_secs(600))
            .set("cnf", json!({"jwk": key.jwk()})),
    );
    let not_an_object =
        issuer().mint(claims("erin", "items:read", Duration::from_secs(600)).set("cnf", "x"));

    // No sender constraints at all: a stolen bound token must not work as a bearer token.
    let plain = BearerAuthLayer::new(jwt()).realm(REALM);
    for token in [&dpop_bound, &cert_bound, &jwk_bound] {
        let out = send(
            &plain,
            request("GET", "/r", &format!("Bearer {token}"), &[]),
        )
        .await;
        assert_bearer_refusal(
            &out,
            "sender-constrained token (cnf), but no binding is checked",
        );
    }
    let out = send(
        &plain,
        request("GET", "/r", &format!("Bearer {not_an_object}"), &[]),
    )
    .await;
    assert_bearer_refusal(&out, "invalid cnf claim");
    let out = send(
        &plain,
        request("GET", "/r", &format!("Bearer {}", unbound()), &[]),
    )
    .await;
    assert_eq!(out.status, StatusCode::OK, "{out:?}");

    // DPoP only: a certificate-bound token cannot be checked, nor an unknown method.
    let clock = ManualClock::new();
    let dpop_only = layer(&clock);
    let out = send(
        &dpop_only,
        request("GET", "/r", &format!("Bearer {cert_bound}"), &[]),
    )
    .await;
    assert_bearer_refusal(&out, "client certificates are not checked");
    let out = send(
        &dpop_only,
        request("GET", "/r", &format!("Bearer {jwk_bound}"), &[]),
    )
    .await;
    assert_bearer_refusal(&out, "unsupported confirmation method in cnf");

    // mTLS only: a DPoP-bound token cannot prove its key.
    let mtls_only = BearerAuthLayer::new(jwt())
        .realm(REALM)
        .sender_constraints(SenderConstraints::new().mtls());
    let out = send(
        &mtls_only,
        request("GET", "/r", &format!("Bearer {dpop_bound}"), &[]),
    )
    .await;
    assert_bearer_refusal(&out, "DPoP-bound token, but DPoP is not accepted");
}

#[tokio::test]
async fn an_unbound_token_with_the_dpop_scheme_is_refused_and_plain_bearer_still_works() {
    let clock = ManualClock::new();
    let layer = layer(&clock);
    let key = DpopKey::es256();
    let token = unbound();
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .sign();
    send(&layer, dpop_get(&token, &proof))
        .await
        .assert_dpop_error("invalid_token", "token is not DPoP-bound");
    let out = send(
        &layer,
        request("GET", "/r", &format!("Bearer {token}"), &[]),
    )
    .await;
    assert!(out.assert_ok().is_bearer());
}

#[tokio::test]
async fn token_errors_with_the_dpop_scheme_use_the_dpop_challenge() {
    let clock = ManualClock::new();
    let layer = layer(&clock);
    let key = DpopKey::es256();
    let token = issuer().mint(
        claims("alice", "", Duration::from_secs(600))
            .dpop_bound(&key)
            .set("exp", support::now() - 3600),
    );
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .sign();
    send(&layer, dpop_get(&token, &proof))
        .await
        .assert_dpop_error("invalid_token", "token expired");
}

#[tokio::test]
async fn no_credentials_get_both_challenges() {
    let clock = ManualClock::new();
    let out = send(&layer(&clock), Request::new(Full::default())).await;
    assert_eq!(out.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        out.challenges(),
        [
            format!(r#"Bearer realm="{REALM}""#),
            format!(r#"DPoP realm="{REALM}", algs="{ALGS}""#)
        ]
    );
    assert!(!out.called);
}

#[tokio::test]
async fn the_dpop_scheme_is_not_read_unless_dpop_is_configured() {
    let key = DpopKey::es256();
    let token = bound(&key);
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .sign();
    let plain = BearerAuthLayer::new(jwt()).realm(REALM);
    let out = send(&plain, dpop_get(&token, &proof)).await;
    assert_eq!(out.status, StatusCode::UNAUTHORIZED);
    assert_eq!(out.challenges(), [format!(r#"Bearer realm="{REALM}""#)]);
    assert!(!out.called);
}

#[tokio::test]
async fn grpc_calls_get_unauthenticated() {
    let clock = ManualClock::new();
    let layer = layer(&clock);
    let key = DpopKey::es256();
    let token = bound(&key);
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .sign();
    let mut req = request("POST", "/r", &format!("DPoP {token}"), &[&proof]);
    req.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    let out = send(&layer, req).await;
    assert_eq!(out.status, StatusCode::OK);
    assert_eq!(out.headers["grpc-status"], "16");
    assert!(!out.called);
}

// --- nonces -----------------------------------------------------------------------------------------

#[tokio::test]
async fn nonce_flow() {
    let clock = ManualClock::new();
    let slot = Duration::from_secs(300);
    let nonces = DpopNonces::new(b"0123456789abcdef0123456789abcdef")
        .unwrap()
        .slot(slot);
    let layer = layer_with(builder(&clock).nonces(nonces).build().unwrap());
    let key = DpopKey::ed25519();
    let token = bound(&key);
    let now = || unix(&clock);

    // No nonce: told to use one, and given it.
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .sign();
    let out = send(&layer, dpop_get(&token, &proof)).await;
    out.assert_dpop_error("use_dpop_nonce", "DPoP proof needs the server nonce");
    let nonce = out.headers["dpop-nonce"].to_str().unwrap().to_owned();

    // With it: through, and no new nonce needed.
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .nonce(&nonce)
        .iat(now())
        .sign();
    let out = send(&layer, dpop_get(&token, &proof)).await;
    out.assert_ok();
    assert!(out.headers.get("dpop-nonce").is_none());

    // A forged nonce is not one.
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .nonce("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .iat(now())
        .sign();
    send(&layer, dpop_get(&token, &proof))
        .await
        .assert_dpop_error("use_dpop_nonce", "DPoP proof needs the server nonce");

    // One slot later the nonce still works, and the response carries the next one.
    clock.advance(slot);
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .nonce(&nonce)
        .iat(now())
        .sign();
    let out = send(&layer, dpop_get(&token, &proof)).await;
    out.assert_ok();
    let next = out.headers["dpop-nonce"].to_str().unwrap().to_owned();
    assert_ne!(next, nonce);

    // Two slots later it is stale.
    clock.advance(slot);
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .nonce(&nonce)
        .iat(now())
        .sign();
    let out = send(&layer, dpop_get(&token, &proof)).await;
    out.assert_dpop_error("use_dpop_nonce", "DPoP proof needs the server nonce");
    assert!(out.headers.get("dpop-nonce").is_some());
}

// --- policies ---------------------------------------------------------------------------------------

#[tokio::test]
async fn per_route_policies_with_axum_route_layer() {
    use axum::Router;
    use axum::routing::get;
    let clock = ManualClock::new();
    let app: Router = Router::new()
        .route(
            "/dpop",
            get(|| async { "ok" }).route_layer(SenderGuardLayer::require()),
        )
        .route(
            "/both",
            get(|| async { "ok" }).route_layer(SenderGuardLayer::allow()),
        )
        .route(
            "/bearer",
            get(|| async { "ok" }).route_layer(SenderGuardLayer::bearer_only()),
        )
        .layer(layer(&clock));
    let key = DpopKey::es256();
    let token = bound(&key);
    let plain = unbound();
    let call = |path: &'static str, dpop: bool| {
        let app = app.clone();
        let (token, plain, key) = (&token, &plain, &key);
        let req = if dpop {
            let proof = key
                .proof("GET", &format!("https://api.example{path}"))
                .access_token(token)
                .sign();
            Request::get(path)
                .header("authorization", format!("DPoP {token}"))
                .header("dpop", proof)
        } else {
            Request::get(path).header("authorization", format!("Bearer {plain}"))
        };
        let req = req.body(axum::body::Body::empty()).unwrap();
        async move { app.oneshot(req).await.unwrap() }
    };
    assert_eq!(call("/dpop", true).await.status(), StatusCode::OK);
    let res = call("/dpop", false).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()["www-authenticate"],
        format!(
            r#"DPoP realm="{REALM}", error="invalid_token", error_description="sender-constrained token required", algs="{ALGS}""#
        )
        .as_str()
    );
    assert_eq!(call("/both", true).await.status(), StatusCode::OK);
    assert_eq!(call("/both", false).await.status(), StatusCode::OK);
    assert_eq!(call("/bearer", false).await.status(), StatusCode::OK);
    let res = call("/bearer", true).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()["www-authenticate"],
        format!(
            r#"Bearer realm="{REALM}", error="invalid_token", error_description="sender-constrained tokens are not accepted here""#
        )
        .as_str()
    );
}

#[tokio::test]
async fn a_layer_wide_require_policy() {
    let clock = ManualClock::new();
    let dpop = builder(&clock).build().unwrap();
    let layer = BearerAuthLayer::new(jwt()).realm(REALM).sender_constraints(
        SenderConstraints::new()
            .dpop(dpop)
            .policy(SenderPolicy::Require),
    );
    let out = send(
        &layer,
        request("GET", "/r", &format!("Bearer {}", unbound()), &[]),
    )
    .await;
    out.assert_dpop_error("invalid_token", "sender-constrained token required");
    let key = DpopKey::es256();
    let token = bound(&key);
    let proof = key
        .proof("GET", "https://api.example/r")
        .access_token(&token)
        .sign();
    send(&layer, dpop_get(&token, &proof)).await.assert_ok();
}

#[tokio::test]
async fn a_guard_without_a_principal_refuses() {
    let guard = SenderGuardLayer::allow();
    let inner = service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner"))))
    });
    let res = guard
        .layer(inner)
        .oneshot(Request::new(Full::default()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}
