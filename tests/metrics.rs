//! The `metrics` feature: a mixed workload through the full stack (remote JWKS, cache, scope
//! guard, rate limiter), then exact counts scraped from a `DebuggingRecorder`, and no label
//! value that could carry token material.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode as AxumStatus;
use axum::response::{IntoResponse, Response as AxumResponse};
use axum::routing::get as route_get;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde_json::{Value, json};
use support::{REALM, bearer, get};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_bearer::BearerAuthLayer;
use tower_bearer::jwks::RemoteJwks;
use tower_bearer::metrics::{CACHE, DECISIONS, KEY_REFRESH, LAYER_SECONDS, RATE_LIMIT, REJECTIONS};
use tower_bearer::rate_limit::{Check, Quota, RateLimitLayer, RateLimitStore, StoreError};
use tower_bearer::scope::ScopeGuardLayer;
use tower_bearer::testing::{TestIssuer, claims};
use tower_bearer::validate::Jwt;

/// A JWK Set endpoint on 127.0.0.1 that can be made to fail.
struct Endpoint {
    url: String,
    failing: Arc<AtomicBool>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve_jwks(State((jwks, failing)): State<(Value, Arc<AtomicBool>)>) -> AxumResponse {
    if failing.load(Ordering::SeqCst) {
        (AxumStatus::INTERNAL_SERVER_ERROR, "down").into_response()
    } else {
        axum::Json(jwks).into_response()
    }
}

async fn endpoint(jwks: Value) -> Endpoint {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let failing = Arc::new(AtomicBool::new(false));
    let app = Router::new()
        .route("/jwks", route_get(serve_jwks))
        .with_state((jwks, failing.clone()));
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Endpoint {
        url,
        failing,
        server,
    }
}

/// A rate-limit store that is always down.
struct DownStore;

impl RateLimitStore for DownStore {
    fn check(&self, _key: &str, _quota: &Quota) -> Check {
        Check::ready(Err(StoreError::new("store down")))
    }
}

type Req = Request<Full<Bytes>>;

fn inner() -> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible> + Clone {
    service_fn(|_req: Req| async { Ok::<_, Infallible>(Response::new(Full::from("inner"))) })
}

/// The status `svc` answers `req` with.
async fn status<S, B>(svc: &S, req: Req) -> StatusCode
where
    S: Service<Req, Response = Response<B>, Error = Infallible> + Clone,
{
    svc.clone().oneshot(req).await.unwrap().status()
}

/// A metric series: name and its labels, in order.
type Series = (String, Vec<(String, String)>);

fn series(name: &str, labels: &[(&str, &str)]) -> Series {
    (
        name.to_owned(),
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

#[tokio::test]
async fn a_mixed_workload_is_counted_exactly() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Thread-local: this test's current-thread runtime runs every task (the JWKS fetches
    // included) on this thread, and no other test can add to these counts.
    let _guard = metrics::set_default_local_recorder(&recorder);
    tower_bearer::metrics::describe();

    let issuer = TestIssuer::es256().with_kid("k1");
    let forger = TestIssuer::es256().with_kid("k1");
    let stranger1 = TestIssuer::es256().with_kid("stranger-kid-1");
    let stranger2 = TestIssuer::es256().with_kid("stranger-kid-2");
    let ep = endpoint(TestIssuer::jwks(&[&issuer])).await;
    let keys = RemoteJwks::builder(ep.url.clone())
        .refresh_cooldown(Duration::from_secs(3600))
        .build()
        .await
        .unwrap(); // key refresh ok: 1
    let jwt = Jwt::builder()
        .jwks(keys.clone())
        .audience("api")
        .build()
        .unwrap();
    let auth = BearerAuthLayer::new(jwt).realm(REALM);
    let limited = auth.layer(
        ScopeGuardLayer::parse("items:read")
            .unwrap()
            .layer(RateLimitLayer::new(Quota::per(Duration::from_secs(3600), 2)).layer(inner())),
    );
    let broken = auth.layer(
        RateLimitLayer::new(Quota::per(Duration::from_secs(1), 1))
            .store(DownStore)
            .layer(inner()),
    );

    let life = Duration::from_secs(600);
    let alice = issuer.mint(claims("alice", "items:read", life).aud("api"));
    let bob = issuer.mint(claims("bob", "items:read", life).aud("api"));
    let carol = issuer.mint(claims("carol", "other", life).aud("api"));
    let expired = issuer.mint(
        claims("dave", "items:read", life)
            .aud("api")
            .set("exp", json!(1)),
    );
    let forged = [
        forger.mint(claims("alice", "items:read", life).aud("api")),
        forger.mint(claims("mallory", "items:read", life).aud("api")),
    ];
    let unknown = [
        stranger1.mint(claims("alice", "items:read", life).aud("api")),
        stranger2.mint(claims("alice", "items:read", life).aud("api")),
    ];
    let garbage = "not-a-jwt";

    let mut all_tokens: Vec<&str> = vec![&alice, &bob, &carol, &expired, garbage];
    all_tokens.extend(forged.iter().map(String::as_str));
    all_tokens.extend(unknown.iter().map(String::as_str));

    // alice: miss + 2 hits; admitted twice, then over her burst of 2.
    assert_eq!(status(&limited, bearer(&alice)).await, StatusCode::OK);
    assert_eq!(status(&limited, bearer(&alice)).await, StatusCode::OK);
    assert_eq!(
        status(&limited, bearer(&alice)).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // bob: miss, admitted.
    assert_eq!(status(&limited, bearer(&bob)).await, StatusCode::OK);
    // carol: miss, authenticated, refused by the scope guard.
    assert_eq!(
        status(&limited, bearer(&carol)).await,
        StatusCode::FORBIDDEN
    );
    // expired, forged (known kid, bad signature), garbage: one miss each.
    assert_eq!(
        status(&limited, bearer(&expired)).await,
        StatusCode::UNAUTHORIZED
    );
    for t in &forged {
        assert_eq!(status(&limited, bearer(t)).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        status(&limited, bearer(garbage)).await,
        StatusCode::UNAUTHORIZED
    );
    // Unknown kids: the first refreshes the set (refresh ok: 2) and is looked up twice; the
    // second falls in the cooldown and is looked up once.
    for t in &unknown {
        assert_eq!(status(&limited, bearer(t)).await, StatusCode::UNAUTHORIZED);
    }
    // No credentials, twice; a malformed header once.
    assert_eq!(status(&limited, get(None)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&limited, get(None)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        status(&limited, get(Some("Bearer a b"))).await,
        StatusCode::BAD_REQUEST
    );
    // bob again, through a limiter whose store is down (fail closed): 503.
    assert_eq!(
        status(&broken, bearer(&bob)).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // A refresh while the endpoint fails: refresh error: 1.
    ep.failing.store(true, Ordering::SeqCst);
    assert!(keys.refresh().await.is_err());

    let mut counters: BTreeMap<Series, u64> = BTreeMap::new();
    let mut histograms: BTreeMap<Series, Vec<f64>> = BTreeMap::new();
    for (key, _unit, _desc, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let s: Series = (
            key.name().to_owned(),
            key.labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect(),
        );
        match value {
            DebugValue::Counter(n) => {
                counters.insert(s, n);
            }
            DebugValue::Histogram(v) => {
                histograms.insert(s, v.into_iter().map(|f| f.into_inner()).collect());
            }
            DebugValue::Gauge(_) => panic!("no gauges expected: {s:?}"),
        }
    }

    let decision = |reason| series(DECISIONS, &[("outcome", "rejected"), ("reason", reason)]);
    let expected: BTreeMap<Series, u64> = [
        (
            series(DECISIONS, &[("outcome", "allowed"), ("reason", "ok")]),
            6,
        ),
        (decision("expired"), 1),
        (decision("invalid_signature"), 2),
        (decision("malformed_token"), 1),
        (decision("unknown_key"), 2),
        (decision("missing_credentials"), 2),
        (decision("malformed_credentials"), 1),
        (decision("insufficient_scope"), 1),
        (decision("rate_limited"), 1),
        (decision("unavailable"), 1),
        (series(REJECTIONS, &[("class", "invalid_token")]), 6),
        (series(REJECTIONS, &[("class", "unauthenticated")]), 2),
        (series(REJECTIONS, &[("class", "invalid_request")]), 1),
        (series(REJECTIONS, &[("class", "insufficient_scope")]), 1),
        (series(REJECTIONS, &[("class", "rate_limited")]), 1),
        (series(REJECTIONS, &[("class", "unavailable")]), 1),
        // alice twice.
        (series(CACHE, &[("cache", "jwt"), ("result", "hit")]), 2),
        // alice, bob, carol, expired, 2 forged, garbage, unknown-1 twice, unknown-2, and bob
        // again: the refresh for unknown-1 loaded a new key set, which re-verifies every
        // cached token.
        (series(CACHE, &[("cache", "jwt"), ("result", "miss")]), 11),
        (series(KEY_REFRESH, &[("result", "ok")]), 2),
        (series(KEY_REFRESH, &[("result", "error")]), 1),
        (series(RATE_LIMIT, &[("decision", "allowed")]), 3),
        (series(RATE_LIMIT, &[("decision", "limited")]), 1),
        (series(RATE_LIMIT, &[("decision", "store_error")]), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(counters, expected);

    // The latency histogram: one sample per decision of the bearer layer (the scope guard's
    // and the limiters' own refusals are not the bearer layer's time).
    let allowed = &histograms[&series(LAYER_SECONDS, &[("outcome", "allowed")])];
    let rejected = &histograms[&series(LAYER_SECONDS, &[("outcome", "rejected")])];
    assert_eq!((allowed.len(), rejected.len()), (6, 9));
    assert_eq!(histograms.len(), 2);
    assert!(
        allowed
            .iter()
            .chain(rejected)
            .all(|s| s.is_finite() && *s >= 0.0 && *s < 60.0),
        "{allowed:?} {rejected:?}"
    );

    // Labels: only the documented keys and static values; nothing from a token, a subject or
    // a key id.
    let allowed_keys =
        BTreeSet::from(["outcome", "reason", "class", "cache", "result", "decision"]);
    let mut values = BTreeSet::new();
    for (name, labels) in counters.keys().chain(histograms.keys()) {
        assert!(name.starts_with("tower_bearer_"), "{name}");
        for (k, v) in labels {
            assert!(allowed_keys.contains(k.as_str()), "label key {k}");
            assert!(
                v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "label value {v:?}"
            );
            values.insert(v.clone());
        }
    }
    for v in &values {
        for t in &all_tokens {
            for part in t.split('.') {
                assert!(
                    !(part.len() > 8 && v.contains(part)),
                    "{v} holds token material"
                );
            }
        }
        for secret in [
            "alice",
            "bob",
            "carol",
            "dave",
            "mallory",
            "k1",
            "stranger",
            "127.0.0.1",
        ] {
            assert!(!v.contains(secret), "{v} holds caller data");
        }
    }
}
