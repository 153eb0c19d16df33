//! The layer against the bare service, in one run so ratios hold on a noisy machine.
//!
//! Run with `cargo bench --bench layer` (`-- --quick` for a fast pass). Groups:
//! - `layer`: bare service; cache hit; first-seen token (cache miss) per algorithm beside a
//!   bare `jsonwebtoken::decode` of the same token (the cryptographic floor); the full stack
//!   (auth + scope guard + in-memory rate limit) with a reused token; a rejection.
//! - `limiter`: the in-memory GCRA decision alone, and from 2 threads at once.
//! - `redis`: one Redis limiter round trip (skipped without `redis-server` on PATH).

#[path = "../tests/support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response};
use http_body_util::Full;
use serde_json::Value;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::BearerAuthLayer;
use tower_bearer::keys::Algorithm;
use tower_bearer::rate_limit::{MemoryStore, Quota, RateLimitLayer, RateLimitStore};
use tower_bearer::scope::ScopeGuardLayer;
use tower_bearer::testing::{TestIssuer, alg_name, claims};
use tower_bearer::validate::Jwt;

type Req = Request<Full<Bytes>>;

fn inner() -> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible> + Clone {
    service_fn(|_req: Req| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

fn request(token: &str) -> Req {
    Request::builder()
        .uri("/items")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap()
}

fn mint(issuer: &TestIssuer, sub: &str) -> String {
    issuer.mint(
        claims(sub, "items:read", Duration::from_secs(3600))
            .iss("https://issuer.bench")
            .aud("bench"),
    )
}

fn jwt(issuer: &TestIssuer, cache: bool) -> Jwt {
    Jwt::builder()
        .key(issuer.key())
        .issuer("https://issuer.bench")
        .audience("bench")
        .cache_entries(if cache { 10_000 } else { 0 })
        .build()
        .unwrap()
}

/// Drives a service that answers synchronously.
fn call<S>(svc: &S, req: Req) -> S::Response
where
    S: Service<Req, Error = Infallible> + Clone,
{
    svc.clone().oneshot(req).now_or_never().unwrap().unwrap()
}

fn layer_group(c: &mut Criterion) {
    let mut group = c.benchmark_group("layer");
    group.measurement_time(Duration::from_secs(3));

    let bare = inner();
    let req = request("unused");
    group.bench_function("bare", |b| b.iter(|| black_box(call(&bare, req.clone()))));

    let rs = TestIssuer::rs256().with_kid("k");
    let cached = BearerAuthLayer::new(jwt(&rs, true)).layer(inner());
    let token = mint(&rs, "bench-user");
    let req = request(&token);
    group.bench_function("cache_hit_RS256", |b| {
        b.iter(|| {
            let res = call(&cached, req.clone());
            assert_eq!(res.status(), 200);
            black_box(res)
        })
    });

    let full = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(jwt(&rs, true)))
        .layer(ScopeGuardLayer::parse("items:read").unwrap())
        .layer(RateLimitLayer::new(Quota::per(
            Duration::from_secs(1),
            1_000_000_000,
        )))
        .service(inner());
    group.bench_function("full_stack_cache_hit_RS256", |b| {
        b.iter(|| {
            let res = call(&full, req.clone());
            assert_eq!(res.status(), 200);
            black_box(res)
        })
    });

    for alg in [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let issuer = TestIssuer::new(alg).with_kid("k");
        let svc = BearerAuthLayer::new(jwt(&issuer, false)).layer(inner());
        let token = mint(&issuer, "bench-user");
        let req = request(&token);
        let name = alg_name(alg);
        group.bench_function(format!("cache_miss_{name}"), |b| {
            b.iter(|| {
                let res = call(&svc, req.clone());
                assert_eq!(res.status(), 200);
                black_box(res)
            })
        });
        // The floor: jsonwebtoken alone, same token, same key, validation prepared once.
        let key = match alg {
            Algorithm::HS256 => jsonwebtoken::DecodingKey::from_secret(issuer.secret().unwrap()),
            _ => {
                jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(issuer.jwk()).unwrap())
                    .unwrap()
            }
        };
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.set_audience(&["bench"]);
        validation.set_issuer(&["https://issuer.bench"]);
        group.bench_function(format!("jsonwebtoken_decode_{name}"), |b| {
            b.iter(|| black_box(jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap()))
        });
    }

    let missing = Request::builder()
        .uri("/items")
        .body(Full::default())
        .unwrap();
    group.bench_function("reject_missing_credentials", |b| {
        b.iter(|| black_box(call(&cached, missing.clone())))
    });
    group.finish();
}

fn limiter_group(c: &mut Criterion) {
    let mut group = c.benchmark_group("limiter");
    group.measurement_time(Duration::from_secs(3));
    let store = MemoryStore::new();
    let quota = Quota::per(Duration::from_secs(1), 1_000_000_000);
    group.bench_function("memory_decision", |b| {
        b.iter(|| black_box(store.decide("sub\0alice", &quota)))
    });
    // Two threads hammering the same store (one key each, and the same key).
    for (name, same_key) in [
        ("memory_2_threads_distinct_keys", false),
        ("memory_2_threads_same_key", true),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let done = AtomicU64::new(0);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..2 {
                        let store = &store;
                        let done = &done;
                        s.spawn(move || {
                            let key = if same_key {
                                "shared".to_owned()
                            } else {
                                format!("k{t}")
                            };
                            for _ in 0..iters {
                                black_box(store.decide(&key, &quota));
                            }
                            done.fetch_add(iters, Ordering::Relaxed);
                        });
                    }
                });
                // Time per decision per thread: wall time over iterations.
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn redis_group(c: &mut Criterion) {
    let Some(redis) = support::RedisServer::start() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt
        .block_on(tower_bearer::rate_limit::RedisStore::connect(&redis.url()))
        .unwrap();
    let quota = Quota::per(Duration::from_secs(1), 1_000_000_000);
    let mut group = c.benchmark_group("redis");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("decision_round_trip", |b| {
        b.to_async(&rt).iter_batched(
            || store.check("sub\0alice", &quota),
            |check| async move { black_box(check.await.unwrap()) },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, layer_group, limiter_group, redis_group);
criterion_main!(benches);
