//! Audit events carry the decision and the fingerprint, never the token or its signature.

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

#[tokio::test]
async fn error_paths_never_log_token_material() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_max_level(tracing::Level::TRACE)
        .json()
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

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

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
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
