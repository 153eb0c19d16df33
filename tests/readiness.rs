//! Every layer calls the inner instance that `poll_ready` made ready (tower's contract), and
//! clones the inner service only when the call has to wait for something (an asynchronous
//! verification, a rate-limit store): a request decided in `call` costs no clone.

mod support;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use serde_json::{Map, Value};
use support::{RedisServer, bearer, issuer, jwt};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_bearer::BearerAuthLayer;
use tower_bearer::extract::BearerToken;
use tower_bearer::network::IpAllowlistLayer;
use tower_bearer::principal::{Principal, TokenFingerprint};
use tower_bearer::rate_limit::{Quota, RateLimitLayer, RedisStore};
use tower_bearer::scope::{ScopeGuardLayer, ScopePolicy};
use tower_bearer::sender::SenderGuardLayer;
use tower_bearer::testing::claims;

/// An inner service that refuses to be called unless `poll_ready` made this very instance
/// ready, and counts its clones and calls.
#[derive(Debug)]
struct Tracked {
    ready: bool,
    clones: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Tracked {
    fn new() -> Self {
        Self {
            ready: false,
            clones: Arc::default(),
            calls: Arc::default(),
        }
    }

    fn counts(&self) -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
        (self.clones.clone(), self.calls.clone())
    }
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::SeqCst);
        // A clone is a new instance: not ready until its own `poll_ready`.
        Self {
            ready: false,
            clones: self.clones.clone(),
            calls: self.calls.clone(),
        }
    }
}

impl Service<Request<Full<Bytes>>> for Tracked {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Full<Bytes>>) -> Self::Future {
        assert!(
            std::mem::take(&mut self.ready),
            "called an instance that poll_ready did not make ready"
        );
        self.calls.fetch_add(1, Ordering::SeqCst);
        ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
    }
}

fn token(sub: &str) -> String {
    issuer().mint(claims(sub, "items:read", Duration::from_secs(600)).aud("api"))
}

/// Sends `reqs` through one instance of `svc`, each after `ready()`, and returns the
/// statuses.
async fn drive<S, B>(svc: &mut S, reqs: Vec<Request<Full<Bytes>>>) -> Vec<u16>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut out = Vec::new();
    for req in reqs {
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        out.push(res.status().as_u16());
    }
    out
}

#[tokio::test]
async fn the_bearer_layer_decides_in_call_and_clones_nothing() {
    let inner = Tracked::new();
    let (clones, calls) = inner.counts();
    let mut svc = BearerAuthLayer::new(jwt())
        .require_scopes(ScopePolicy::parse("items:read").unwrap())
        .rate_limit(RateLimitLayer::new(Quota::per(Duration::from_secs(1), 100)))
        .layer(inner);
    let (a, b) = (token("alice"), token("bob"));
    // First-seen tokens (a static key verifies in `call`), then cache hits, then a refusal.
    let reqs = vec![
        bearer(&a),
        bearer(&b),
        bearer(&a),
        bearer(&a),
        bearer("x.y.z"),
    ];
    assert_eq!(drive(&mut svc, reqs).await, [200, 200, 200, 200, 401]);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(clones.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn stacked_layers_decide_in_call_and_clone_nothing() {
    let inner = Tracked::new();
    let (clones, calls) = inner.counts();
    let allowlist = IpAllowlistLayer::builder()
        .client("batch", ["192.0.2.0/24"])
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(jwt()))
        .layer(ScopeGuardLayer::new(
            ScopePolicy::parse("items:read").unwrap(),
        ))
        .layer(RateLimitLayer::new(Quota::per(Duration::from_secs(1), 100)))
        .layer(SenderGuardLayer::allow())
        .layer(allowlist)
        .service(inner);
    let t = token("alice");
    let reqs = (0..5).map(|_| bearer(&t)).collect();
    assert_eq!(drive(&mut svc, reqs).await, [200; 5]);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(clones.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_asynchronous_verification_drives_the_ready_instance() {
    let inner = Tracked::new();
    let (clones, calls) = inner.counts();
    let authenticator = |token: &BearerToken| {
        let fingerprint = TokenFingerprint::of_bytes(token.as_str().as_bytes());
        async move {
            // Answers on a later poll, as an introspection or JWKS fetch would.
            tokio::task::yield_now().await;
            let mut claims = Map::new();
            claims.insert("sub".into(), Value::from("alice"));
            Principal::from_claims(claims, fingerprint)
        }
    };
    let mut svc = BearerAuthLayer::new(authenticator).layer(inner);
    let reqs = (0..3).map(|_| bearer("opaque-token")).collect();
    assert_eq!(drive(&mut svc, reqs).await, [200; 3]);
    // The future called the instance `poll_ready` made ready (`Tracked` asserts it) and left
    // one fresh clone behind per request.
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(clones.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_rate_limit_waiting_for_redis_drives_the_ready_instance() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    for layered in [false, true] {
        let inner = Tracked::new();
        let (clones, calls) = inner.counts();
        let limit =
            RateLimitLayer::new(Quota::per(Duration::from_secs(10), 100)).store(store.clone());
        let t = token(if layered { "bob" } else { "alice" });
        let reqs: Vec<_> = (0..3).map(|_| bearer(&t)).collect();
        let statuses = if layered {
            let mut svc = ServiceBuilder::new()
                .layer(BearerAuthLayer::new(jwt()))
                .layer(limit)
                .service(inner);
            drive(&mut svc, reqs).await
        } else {
            let mut svc = BearerAuthLayer::new(jwt()).rate_limit(limit).layer(inner);
            drive(&mut svc, reqs).await
        };
        assert_eq!(statuses, [200; 3], "layered: {layered}");
        assert_eq!(calls.load(Ordering::SeqCst), 3, "layered: {layered}");
        assert_eq!(clones.load(Ordering::SeqCst), 3, "layered: {layered}");
    }
}
