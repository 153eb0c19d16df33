//! Audit events carry the decision and the fingerprint, never the token or its signature: for
//! the authenticator's refusals, and for every refusal and failure after it.

mod support;

use std::io;
use std::sync::{Arc, Mutex};

use serde_json::json;
use support::{REALM, bearer, get, send};
use tower_bearer::BearerAuthLayer;
use tower_bearer::testing::{TestIssuer, claims};
use tower_bearer::validate::Jwt;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    /// Everything logged on this thread, as JSON lines, until the guard is dropped.
    fn install() -> (Capture, tracing::subscriber::DefaultGuard) {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(capture.clone())
            .with_max_level(tracing::Level::TRACE)
            .json()
            .finish();
        (capture, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test]
async fn error_paths_never_log_token_material() {
    let (capture, _guard) = Capture::install();

    let issuer = TestIssuer::rs256().with_kid("k1");
    let other = TestIssuer::rs256().with_kid("k1");
    let layer = BearerAuthLayer::new(
        Jwt::builder()
            .key(issuer.key())
            .audience("api")
            .build()
            .unwrap(),
    )
    .realm(REALM);
    let c = claims("alice", "s", std::time::Duration::from_secs(600)).aud("api");
    let good = issuer.mint(&c);
    let tokens = vec![
        good.clone(),
        other.mint(&c),
        issuer.mint(c.clone().set("exp", json!(1))),
        issuer.mint(c.clone().aud("elsewhere")),
        issuer.mint_with_header(
            &json!({"alg": "RS256", "kid": "k-unknown"}),
            &c.clone().into(),
        ),
        issuer.mint_with_header(&json!({"alg": "HS256", "kid": "k1"}), &c.clone().into()),
        issuer.mint_with_header(&json!({"alg": "RS256", "crit": ["x"]}), &c.clone().into()),
        format!("{good}.extra"),
        format!("{}.", good.rsplit_once('.').unwrap().0),
        "a".repeat(9000),
    ];
    for t in &tokens {
        send(&layer, bearer(t)).await;
    }
    send(&layer, get(Some("Bearer a b"))).await;
    send(&layer, get(None)).await;

    let logs = capture.text();
    let events: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        events.len(),
        tokens.len() + 2,
        "one event per decision:\n{logs}"
    );
    for t in &tokens {
        for part in t.split('.') {
            if part.len() > 8 {
                assert!(!logs.contains(part), "token material in logs:\n{logs}");
            }
        }
    }
    // The accepted request is logged with its subject and fingerprint.
    let allow = &events[0]["fields"];
    assert_eq!(allow["outcome"], "allow");
    assert_eq!(allow["subject"], "alice");
    assert_eq!(allow["kid"], "k1");
    assert_eq!(allow["fingerprint"].as_str().unwrap().len(), 32);
    // Refusals carry their reason.
    let reasons: Vec<&str> = events[1..]
        .iter()
        .map(|e| e["fields"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "invalid_signature",
            "expired",
            "invalid_audience",
            "unknown_key",
            "algorithm_not_allowed",
            "unsupported_crit",
            "malformed_token",
            "malformed_token",
            "token_too_large",
            "malformed_credentials",
            "missing_credentials",
        ]
    );
    for e in &events[1..] {
        assert_eq!(e["target"], "tower_bearer::audit");
        assert_eq!(e["fields"]["outcome"], "reject");
        assert!(e["fields"]["latency_us"].is_u64());
    }
    // A refused JWT still gets a fingerprint, so operators can correlate without the token.
    assert_eq!(
        events[1]["fields"]["fingerprint"].as_str().unwrap().len(),
        32
    );
    assert_eq!(events[4]["fields"]["kid"], "k-unknown");
}

#[tokio::test]
async fn refusals_after_verification_and_failing_stores_never_log_token_material() {
    use std::time::Duration;

    use http_body_util::Full;
    use tower_bearer::dpop::Dpop;
    use tower_bearer::lifecycle::{Lifecycle, MemoryRevocations, RedisRevocations};
    use tower_bearer::rate_limit::{Quota, RateLimitLayer, RedisStore};
    use tower_bearer::scope::ScopePolicy;
    use tower_bearer::sender::SenderConstraints;
    use tower_bearer::testing::DpopKey;
    use tower_bearer::validate::StaticTokens;

    let (capture, _guard) = Capture::install();

    let issuer = TestIssuer::es256().with_kid("k1");
    let jwt = || {
        Jwt::builder()
            .key(issuer.key())
            .audience("api")
            .build()
            .unwrap()
    };
    let c = |sub: &str, scope: &str| claims(sub, scope, Duration::from_secs(600)).aud("api");
    let mut secrets: Vec<String> = Vec::new();

    // The scope policy and the rate limit refuse a verified caller.
    let t = issuer.mint(c("alice", "items:read"));
    let scoped = BearerAuthLayer::new(jwt())
        .realm(REALM)
        .require_scopes(ScopePolicy::parse("admin").unwrap());
    assert_eq!(send(&scoped, bearer(&t)).await.status, 403);
    let limited = BearerAuthLayer::new(jwt())
        .realm(REALM)
        .rate_limit(RateLimitLayer::new(Quota::per(
            Duration::from_secs(3600),
            1,
        )));
    assert_eq!(send(&limited, bearer(&t)).await.status, 200);
    assert_eq!(send(&limited, bearer(&t)).await.status, 429);
    secrets.push(t);

    // A revoked token.
    let lc = Lifecycle::new(jwt()).revocations(MemoryRevocations::default());
    let revocable = BearerAuthLayer::new(lc.clone()).realm(REALM);
    let t = issuer.mint(c("bob", ""));
    let p = send(&revocable, bearer(&t)).await.principal.unwrap();
    lc.revoke_token(&p).await.unwrap();
    assert_eq!(send(&revocable, bearer(&t)).await.status, 401);
    secrets.push(t);

    // A DPoP-bound token sent as a bearer token, then with a proof for another URL.
    let key = DpopKey::es256();
    let t = issuer.mint(c("carol", "").dpop_bound(&key));
    assert_eq!(send(&scoped, bearer(&t)).await.status, 401);
    let dpop = BearerAuthLayer::new(jwt())
        .realm(REALM)
        .sender_constraints(SenderConstraints::new().dpop(Dpop::builder().build().unwrap()));
    let proof = key
        .proof("GET", "https://elsewhere.example/x")
        .access_token(&t)
        .sign();
    let req = http::Request::builder()
        .uri("/r")
        .header("host", "svc.local")
        .header("authorization", format!("DPoP {t}"))
        .header("dpop", &proof)
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&dpop, req).await.status, 401);
    secrets.push(t);
    secrets.push(proof);

    // Static API keys: one accepted, one unknown.
    let api_key = "svc-key-0123456789-abcdefghijkl";
    let keys = StaticTokens::builder()
        .token(api_key, json!({"sub": "billing"}))
        .build()
        .unwrap();
    let static_layer = BearerAuthLayer::new(keys).realm(REALM);
    assert_eq!(send(&static_layer, bearer(api_key)).await.status, 200);
    let unknown = "svc-key-9876543210-zyxwvutsrqpo";
    assert_eq!(send(&static_layer, bearer(unknown)).await.status, 401);
    secrets.push(api_key.to_owned());
    secrets.push(unknown.to_owned());

    // Redis down: the revocation check and the rate limit fail closed, and say why.
    if let Some(mut redis) = support::RedisServer::start() {
        let revocations = RedisRevocations::connect(&redis.url()).await.unwrap();
        let store = RedisStore::connect(&redis.url())
            .await
            .unwrap()
            .timeout(Duration::from_millis(300));
        redis.kill();
        let t = issuer.mint(c("dave", ""));
        let checked = BearerAuthLayer::new(Lifecycle::new(jwt()).revocations(revocations));
        assert_eq!(send(&checked, bearer(&t)).await.status, 503);
        let counted = BearerAuthLayer::new(jwt())
            .rate_limit(RateLimitLayer::new(Quota::per(Duration::from_secs(60), 5)).store(store));
        assert_eq!(send(&counted, bearer(&t)).await.status, 503);
        secrets.push(t);
        let logs = capture.text();
        assert!(logs.contains("revocation check failed"), "{logs}");
        assert!(logs.contains("rate-limit store failed"), "{logs}");
    }

    let logs = capture.text();
    for reason in [
        "insufficient_scope",
        "rate_limited",
        "revoked",
        "key_binding_mismatch",
        "invalid_dpop_proof",
        "invalid_token",
    ] {
        assert!(logs.contains(reason), "no {reason} event:\n{logs}");
    }
    for secret in &secrets {
        for part in secret.split('.') {
            if part.len() > 8 {
                assert!(!logs.contains(part), "token material in logs:\n{logs}");
            }
        }
    }
}
