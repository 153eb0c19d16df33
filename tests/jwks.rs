//! Remote JWK Sets and OIDC discovery against a real HTTP endpoint on 127.0.0.1.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use support::{REALM, bearer, send};
use tower_bearer::BearerAuthLayer;
use tower_bearer::jwks::RemoteJwks;
use tower_bearer::testing::{TestIssuer, claims};
use tower_bearer::validate::Jwt;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Ok,
    Status500,
    Html,
    BadKeys,
    /// 10 MiB with a `Content-Length`: the endpoint's keys, padded.
    Huge,
    /// The same streamed in chunks, with no `Content-Length`.
    HugeChunked,
    Hang,
}

struct Endpoint {
    base: String,
    keys: Mutex<Vec<Value>>,
    mode: Mutex<Mode>,
    max_age: Mutex<Option<u64>>,
    issuer_override: Mutex<Option<String>>,
    fetches: AtomicUsize,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn jwks(State(ep): State<Arc<Mutex<Option<Arc<Endpoint>>>>>) -> Response {
    let ep = ep.lock().unwrap().clone().unwrap();
    ep.fetches.fetch_add(1, Ordering::SeqCst);
    let mode = *ep.mode.lock().unwrap();
    match mode {
        Mode::Ok => {
            let mut headers = HeaderMap::new();
            if let Some(age) = *ep.max_age.lock().unwrap() {
                headers.insert(
                    "cache-control",
                    HeaderValue::from_str(&format!("public, max-age={age}")).unwrap(),
                );
            }
            let body = json!({"keys": *ep.keys.lock().unwrap()});
            (headers, axum::Json(body)).into_response()
        }
        Mode::Status500 => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        Mode::Html => (
            [("content-type", "text/html")],
            "<html><body>maintenance</body></html>",
        )
            .into_response(),
        Mode::BadKeys => axum::Json(json!({"keys": "x"})).into_response(),
        Mode::Huge | Mode::HugeChunked => {
            // Valid keys, so that only the size can be what refuses it.
            let keys = serde_json::to_string(&*ep.keys.lock().unwrap()).unwrap();
            let head = format!(r#"{{"keys":{keys},"pad":""#);
            if mode == Mode::Huge {
                let big = format!(r#"{head}{}"}}"#, "a".repeat(10 * 1024 * 1024));
                return ([("content-type", "application/json")], big).into_response();
            }
            let pad = (0..160).map(|_| bytes::Bytes::from(vec![b'a'; 64 * 1024]));
            let chunks = std::iter::once(bytes::Bytes::from(head))
                .chain(pad)
                .chain(std::iter::once(bytes::Bytes::from_static(b"\"}")))
                .map(Ok::<_, std::convert::Infallible>);
            let body = axum::body::Body::from_stream(futures_util::stream::iter(chunks));
            ([("content-type", "application/json")], body).into_response()
        }
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late".into_response()
        }
    }
}

async fn discovery(State(ep): State<Arc<Mutex<Option<Arc<Endpoint>>>>>) -> Response {
    let ep = ep.lock().unwrap().clone().unwrap();
    let issuer = ep
        .issuer_override
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| ep.base.clone());
    axum::Json(json!({"issuer": issuer, "jwks_uri": format!("{}/jwks", ep.base)})).into_response()
}

impl Endpoint {
    async fn start(keys: &[&TestIssuer]) -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let slot: Arc<Mutex<Option<Arc<Endpoint>>>> = Arc::default();
        let app = Router::new()
            .route("/jwks", get(jwks))
            .route("/.well-known/openid-configuration", get(discovery))
            .with_state(slot.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let ep = Arc::new(Endpoint {
            base,
            keys: Mutex::new(keys.iter().map(|k| k.jwk()).collect()),
            mode: Mutex::new(Mode::Ok),
            max_age: Mutex::new(None),
            issuer_override: Mutex::new(None),
            fetches: AtomicUsize::new(0),
            server,
        });
        *slot.lock().unwrap() = Some(ep.clone());
        ep
    }

    fn url(&self) -> String {
        format!("{}/jwks", self.base)
    }

    fn set_keys(&self, keys: &[&TestIssuer]) {
        *self.keys.lock().unwrap() = keys.iter().map(|k| k.jwk()).collect();
    }

    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn token(issuer: &TestIssuer) -> String {
    issuer.mint(claims("alice", "items:read", Duration::from_secs(600)).aud("api"))
}

fn layer(remote: RemoteJwks) -> BearerAuthLayer {
    let jwt = Jwt::builder().jwks(remote).audience("api").build().unwrap();
    BearerAuthLayer::new(jwt).realm(REALM)
}

async fn remote(ep: &Endpoint) -> RemoteJwks {
    RemoteJwks::builder(ep.url())
        .client(reqwest::Client::new())
        .refresh_cooldown(Duration::from_secs(60))
        .timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_key_added_at_the_issuer_is_accepted_on_first_use_with_one_refetch() {
    let k1 = TestIssuer::rs256().with_kid("k1");
    let k2 = TestIssuer::es256().with_kid("k2");
    let ep = Endpoint::start(&[&k1]).await;
    let remote = remote(&ep).await;
    assert_eq!(ep.fetches(), 1, "fetched at start");
    let l = layer(remote.clone());
    send(&l, bearer(&token(&k1))).await.assert_ok();
    assert_eq!(ep.fetches(), 1, "known keys need no fetch");

    ep.set_keys(&[&k1, &k2]);
    send(&l, bearer(&token(&k2))).await.assert_ok();
    assert_eq!(ep.fetches(), 2, "one refetch for the new kid");
    send(&l, bearer(&token(&k2))).await.assert_ok();
    assert_eq!(ep.fetches(), 2);
    assert_eq!(remote.stats().keys, Some(2));
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_at_most_once_per_cooldown() {
    let k1 = TestIssuer::rs256().with_kid("k1");
    let ep = Endpoint::start(&[&k1]).await;
    let remote = RemoteJwks::builder(ep.url())
        .client(reqwest::Client::new())
        .refresh_cooldown(Duration::from_secs(3))
        .build()
        .await
        .unwrap();
    let l = layer(remote);
    let c = claims("mallory", "", Duration::from_secs(600)).aud("api");
    // Minted before any timing matters: RS256 signing in a debug build is slow, and only the
    // sends must fall inside (or after) the cooldown.
    let forged: Vec<Vec<String>> = (0..3)
        .map(|round| {
            (0..1000)
                .map(|i| {
                    let header = json!({"alg": "RS256", "kid": format!("forged-{round}-{i}")});
                    k1.mint_with_header(&header, &c.clone().into())
                })
                .collect()
        })
        .collect();
    let flood = |round: usize| {
        let l = l.clone();
        let tokens = &forged[round];
        async move {
            let reqs = tokens.iter().map(|t| {
                let l = l.clone();
                async move { send(&l, bearer(t)).await }
            });
            for out in futures_util::future::join_all(reqs).await {
                out.assert_invalid_token("unknown signing key");
            }
        }
    };
    flood(0).await;
    assert_eq!(
        ep.fetches(),
        2,
        "start + one on-demand fetch for 1,000 forged kids"
    );
    flood(1).await;
    assert_eq!(ep.fetches(), 2, "still inside the cooldown");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    flood(2).await;
    assert_eq!(ep.fetches(), 3, "one more after the cooldown");
    // Known keys were never blocked by any of it.
    send(&l, bearer(&token(&k1))).await.assert_ok();
}

#[tokio::test]
async fn a_failing_endpoint_keeps_the_last_good_set() {
    let k1 = TestIssuer::es256().with_kid("k1");
    let ep = Endpoint::start(&[&k1]).await;
    let remote = remote(&ep).await;
    let l = layer(remote.clone());
    // A new key the failing answers carry (the huge ones): never adopted from them.
    let k2 = TestIssuer::es256().with_kid("k2");
    ep.set_keys(&[&k1, &k2]);
    for mode in [
        Mode::Status500,
        Mode::Html,
        Mode::BadKeys,
        Mode::Huge,
        Mode::HugeChunked,
        Mode::Hang,
    ] {
        ep.set_mode(mode);
        let refresh = tokio::spawn({
            let remote = remote.clone();
            async move { remote.refresh().await }
        });
        // While the fetch is in flight (hanging, for Mode::Hang), known keys keep passing
        // without waiting for it.
        let out = tokio::time::timeout(Duration::from_millis(250), send(&l, bearer(&token(&k1))))
            .await
            .unwrap_or_else(|_| {
                panic!("{mode:?}: a request with a known key waited for the fetch")
            });
        out.assert_ok();
        let result = tokio::time::timeout(Duration::from_secs(5), refresh)
            .await
            .expect("the fetch is bounded by its timeout")
            .unwrap();
        let Err(e) = result else {
            panic!("{mode:?} must count as a failed refresh");
        };
        assert_eq!(remote.stats().keys, Some(1), "{mode:?}");
        send(&l, bearer(&token(&k1))).await.assert_ok();
        if matches!(mode, Mode::Huge | Mode::HugeChunked) {
            assert!(e.to_string().contains("body larger than"), "{mode:?}: {e}");
            send(&l, bearer(&token(&k2)))
                .await
                .assert_invalid_token("unknown signing key");
        }
    }
    assert!(remote.stats().failures >= 6);
}

#[tokio::test]
async fn a_removed_key_stops_validating_after_the_next_refresh() {
    let k1 = TestIssuer::ed25519().with_kid("k1");
    let k2 = TestIssuer::ed25519().with_kid("k2");
    let ep = Endpoint::start(&[&k1, &k2]).await;
    let remote = remote(&ep).await;
    let l = layer(remote.clone());
    send(&l, bearer(&token(&k2))).await.assert_ok();
    ep.set_keys(&[&k1]);
    remote.refresh().await.unwrap();
    send(&l, bearer(&token(&k2)))
        .await
        .assert_invalid_token("unknown signing key");
    send(&l, bearer(&token(&k1))).await.assert_ok();
}

#[tokio::test]
async fn background_refresh_honours_max_age_within_bounds() {
    let k1 = TestIssuer::es256().with_kid("k1");
    let k2 = TestIssuer::es256().with_kid("k2");
    let ep = Endpoint::start(&[&k1]).await;
    *ep.max_age.lock().unwrap() = Some(0);
    let remote = RemoteJwks::builder(ep.url())
        .client(reqwest::Client::new())
        .refresh_interval_bounds(Duration::from_millis(200), Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    ep.set_keys(&[&k1, &k2]);
    // No request at all: the background task picks the new key up (max-age 0 → the 200 ms
    // lower bound).
    let mut waited = 0;
    while remote.stats().keys != Some(2) {
        assert!(waited < 50, "background refresh did not happen");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert!(ep.fetches() >= 2);
}

#[tokio::test]
async fn never_loaded_means_503_and_grpc_unavailable() {
    let ep = Endpoint::start(&[]).await;
    ep.set_mode(Mode::Status500);
    let err = RemoteJwks::builder(ep.url())
        .client(reqwest::Client::new())
        .build()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("initial JWKS fetch failed"),
        "{err}"
    );

    let remote = RemoteJwks::builder(ep.url())
        .client(reqwest::Client::new())
        .refresh_cooldown(Duration::from_secs(60))
        .start_empty()
        .build()
        .await
        .unwrap();
    assert_eq!(remote.stats().keys, None);
    let l = layer(remote);
    let k = TestIssuer::es256().with_kid("k1");
    let out = send(&l, bearer(&token(&k))).await;
    assert_eq!(out.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!out.called);
    let grpc = http::Request::builder()
        .header("content-type", "application/grpc")
        .header("authorization", format!("Bearer {}", token(&k)))
        .body(Default::default())
        .unwrap();
    let out = send(&l, grpc).await;
    assert_eq!(out.headers["grpc-status"], "14");
    // Once the endpoint recovers, the keys load and requests pass.
    ep.set_mode(Mode::Ok);
    ep.set_keys(&[&k]);
    let mut waited = 0;
    loop {
        let out = send(&l, bearer(&token(&k))).await;
        if out.status == StatusCode::OK {
            break;
        }
        assert!(waited < 50, "keys never loaded after recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
}

#[tokio::test]
async fn oidc_discovery_pins_the_issuer() {
    let k1 = TestIssuer::rs256().with_kid("k1");
    let ep = Endpoint::start(&[&k1]).await;
    let remote = RemoteJwks::discover(ep.base.clone())
        .client(reqwest::Client::new())
        .build()
        .await
        .unwrap();
    assert_eq!(remote.issuer(), Some(ep.base.as_str()));
    assert_eq!(remote.url(), ep.url());
    let l = layer(remote.clone());
    let c = claims("alice", "", Duration::from_secs(600)).aud("api");
    send(&l, bearer(&k1.mint(c.clone().iss(&ep.base))))
        .await
        .assert_ok();
    send(&l, bearer(&k1.mint(c.clone().iss("https://evil.example"))))
        .await
        .assert_invalid_token("invalid issuer");
    send(&l, bearer(&k1.mint(c.clone())))
        .await
        .assert_invalid_token("missing iss claim");
    // A configured issuer that contradicts discovery is a configuration error.
    let conflict = Jwt::builder()
        .jwks(remote)
        .issuer("https://other.example")
        .audience("api")
        .build();
    assert!(conflict.is_err());

    // A discovery document naming another issuer fails the build.
    *ep.issuer_override.lock().unwrap() = Some("https://impostor.example".into());
    let err = RemoteJwks::discover(ep.base.clone())
        .client(reqwest::Client::new())
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("discovery"), "{err}");
}

#[tokio::test]
async fn several_issuers_each_with_its_own_remote_keys() {
    use tower_bearer::validate::MultiIssuer;
    let ka = TestIssuer::rs256().with_kid("shared-kid");
    let kb = TestIssuer::es256().with_kid("shared-kid");
    let (a, b) = (Endpoint::start(&[&ka]).await, Endpoint::start(&[&kb]).await);
    let jwt = |remote: RemoteJwks, iss: &str| {
        Jwt::builder()
            .jwks(remote)
            .issuer(iss)
            .audience("api")
            .build()
            .unwrap()
    };
    let multi = MultiIssuer::builder()
        .issuer(&a.base, jwt(remote(&a).await, &a.base))
        .issuer(&b.base, jwt(remote(&b).await, &b.base))
        .build()
        .unwrap();
    let l = BearerAuthLayer::new(multi).realm(REALM);
    let c = claims("alice", "", Duration::from_secs(600)).aud("api");
    let p = send(&l, bearer(&ka.mint(c.clone().iss(&a.base)))).await;
    assert_eq!(p.assert_ok().issuer(), Some(a.base.as_str()));
    send(&l, bearer(&kb.mint(c.clone().iss(&b.base))))
        .await
        .assert_ok();
    // B's key claiming to be A: A's keys decide, and refuse it (same kid, other algorithm).
    send(&l, bearer(&kb.mint(c.clone().iss(&a.base))))
        .await
        .assert_invalid_token("algorithm not allowed");
    send(
        &l,
        bearer(&ka.mint(c.clone().iss("https://unknown.example"))),
    )
    .await
    .assert_invalid_token("invalid issuer");
    send(&l, bearer(&ka.mint(c.clone())))
        .await
        .assert_invalid_token("missing iss claim");
    // Every entry must pin its own issuer.
    let unpinned = Jwt::builder()
        .jwks(remote(&a).await)
        .audience("api")
        .build()
        .unwrap();
    assert!(
        MultiIssuer::builder()
            .issuer(&a.base, unpinned)
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn weak_and_unusable_entries_are_skipped_and_duplicates_keep_the_first() {
    let good = TestIssuer::es256().with_kid("dup");
    let other = TestIssuer::es256().with_kid("dup");
    // A 1024-bit RSA modulus (n = 2^1023 + 1, e = 65537).
    let mut n = vec![0x80u8];
    n.extend([0u8; 126]);
    n.push(1);
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let weak = json!({"kty": "RSA", "kid": "weak", "n": b64(&n), "e": "AQAB", "alg": "RS256"});
    let unknown = json!({"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"});
    let ep = Endpoint::start(&[]).await;
    *ep.keys.lock().unwrap() = vec![weak, unknown, good.jwk(), other.jwk()];
    let remote = remote(&ep).await;
    assert_eq!(remote.stats().keys, Some(1));
    let l = layer(remote);
    send(&l, bearer(&token(&good))).await.assert_ok();
    send(&l, bearer(&token(&other)))
        .await
        .assert_invalid_token("invalid signature");
}
