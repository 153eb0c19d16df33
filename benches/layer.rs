//! Our stacks beside a bare axum router and beside the peers, all in one run so the ratios
//! hold on a noisy machine.
//!
//! Run with `cargo bench --bench layer` (`-- --quick` for a fast pass), then
//! `python3 scripts/bench-report.py` for the table and the chart in BENCHMARKS.md. Groups:
//! - `router`: a bare axum 0.8 router (one route, a handler answering "ok") and the same
//!   router behind: a layer adding only the outputs of an admitted request (`common::floor`);
//!   our layer with a cache hit (RS256); the full stack (auth + scope guard +
//!   in-memory rate limit) with a reused token, as three layers and as the bearer layer's own
//!   checks (`require_scopes`, `rate_limit`); a first-seen token (cache off) per algorithm;
//!   a rejection; our rate limit alone; tower_governor keyed by the `Authorization` header;
//!   tower-http's static bearer check.
//! - `router_axum07`: a bare axum 0.7 router and the same router behind jwt-authorizer 0.15
//!   (RS256 static key; it only builds against axum 0.7), verifying the very token our RS256
//!   cases reuse.
//! - `decode`: a bare `jsonwebtoken::decode` per algorithm, validation prepared once (the
//!   cryptographic floor of a first-seen token).
//! - `limiter`: the in-memory GCRA decision alone, and from 2 threads at once (distinct
//!   callers and one caller), beside governor's keyed limiter (what tower_governor uses).
//! - `redis`: one Redis limiter round trip (skipped without `redis-server` on PATH).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;
mod peers;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{AUD, ISS, jwt};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, header::AUTHORIZATION};
use serde_json::Value;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::keys::Algorithm;
use tower_bearer::principal::TokenFingerprint;
use tower_bearer::rate_limit::{MemoryStore, Quota, RateLimitLayer, RateLimitStore};
use tower_bearer::scope::{ScopeGuardLayer, ScopePolicy};
use tower_bearer::testing::{TestIssuer, alg_name, claims};
use tower_bearer::{BearerAuthLayer, Principal};

/// A quota no benchmark reaches.
fn unlimited() -> Quota {
    Quota::per(Duration::from_secs(1), 1_000_000_000)
}

fn mint(issuer: &TestIssuer, sub: &str) -> String {
    issuer.mint(
        claims(sub, "items:read", Duration::from_secs(3600))
            .iss(ISS)
            .aud(AUD),
    )
}

/// `GET /items`, with `Authorization: Bearer <token>` when a token is given.
fn request<B: Default>(auth: Option<&HeaderValue>) -> Request<B> {
    let mut req = Request::builder().uri("/items");
    if let Some(value) = auth {
        req = req.header(AUTHORIZATION, value.clone());
    }
    req.body(B::default()).unwrap()
}

fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
}

fn axum_router() -> axum::Router {
    axum::Router::new().route("/items", axum::routing::get(|| async { "ok" }))
}

/// A router as its server runs it: `axum::serve` (`into_make_service`) calls
/// `with_state(())` first, so every route is built into a service once instead of per request.
trait Served {
    fn served(self) -> Self;
}

impl Served for axum::Router {
    fn served(self) -> Self {
        self.with_state(())
    }
}

impl Served for axum07::Router {
    fn served(self) -> Self {
        self.with_state(())
    }
}

/// Benchmarks one request through `app`, finalised as its server would, on a current-thread
/// runtime; building the request is not timed.
fn bench_router<S, B, RB>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    app: S,
    auth: Option<&HeaderValue>,
    expect: u16,
) where
    S: Served + tower::Service<Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
    S::Future: Send,
    B: Default,
    RB: Send,
{
    let app = app.served();
    // Check once, outside the measurement, that the stack answers as expected.
    let res = rt
        .block_on(app.clone().oneshot(request::<B>(auth)))
        .unwrap();
    assert_eq!(res.status().as_u16(), expect, "{name}");
    group.bench_function(name, |b| {
        b.to_async(rt).iter_batched(
            || request::<B>(auth),
            |req| {
                let app = app.clone();
                async move { black_box(app.oneshot(req).await.unwrap()) }
            },
            BatchSize::SmallInput,
        )
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn router_group(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("router");
    group.measurement_time(Duration::from_secs(3));

    let rs = TestIssuer::rs256().with_kid("k");
    let token = mint(&rs, "bench-user");
    let auth = bearer(&token);

    bench_router::<_, axum::body::Body, _>(&mut group, &rt, "bare", axum_router(), None, 200);
    // What any full stack must add to an admitted request, checking nothing: the floor.
    bench_router::<_, axum::body::Body, _>(
        &mut group,
        &rt,
        "floor_outputs_only",
        common::floor(axum_router()),
        None,
        200,
    );
    bench_router::<_, axum::body::Body, _>(
        &mut group,
        &rt,
        "tower_bearer_cache_hit_RS256",
        axum_router().layer(BearerAuthLayer::new(jwt(&rs, true))),
        Some(&auth),
        200,
    );
    bench_router::<_, axum::body::Body, _>(
        &mut group,
        &rt,
        "tower_bearer_full_stack_RS256",
        axum_router().layer(
            ServiceBuilder::new()
                .layer(BearerAuthLayer::new(jwt(&rs, true)))
                .layer(ScopeGuardLayer::parse("items:read").unwrap())
                .layer(RateLimitLayer::new(unlimited())),
        ),
        Some(&auth),
        200,
    );
    // The same checks done as plainly as a hand-written layer would (`common::minimal`): a
    // reference for what they cost at the least, not a peer.
    let (key, validation) = common::decoding(&rs);
    bench_router::<_, axum::body::Body, _>(
        &mut group,
        &rt,
        "minimal_checks_RS256",
        common::minimal::minimal_checks(axum_router(), key, validation, "items:read"),
        Some(&auth),
        200,
    );
    // The same three checks run by the bearer layer itself: one service instead of three.
    bench_router::<_, axum::body::Body, _>(
        &mut group,
        &rt,
        "tower_bearer_full_stack_one_layer_RS256",
        axum_router().layer(
            BearerAuthLayer::new(jwt(&rs, true))
                .require_scopes(ScopePolicy::parse("items:read").unwrap())
                .rate_limit(RateLimitLayer::new(unlimited())),
        ),
        Some(&auth),
        200,
    );
    for alg in [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let issuer = TestIssuer::new(alg).with_kid("k");
        let auth = bearer(&mint(&issuer, "bench-user"));
        bench_router::<_, axum::body::Body, _>(
            &mut group,
            &rt,
            &format!("tower_bearer_cache_miss_{}", alg_name(alg)),
            axum_router().layer(BearerAuthLayer::new(jwt(&issuer, false))),
            Some(&auth),
            200,
        );
    }
    bench_router::<_, axum::body::Body, _>(
        &mut group,
        &rt,
        "tower_bearer_reject_missing",
        axum_router().layer(BearerAuthLayer::new(jwt(&rs, true))),
        None,
        401,
    );

    // Rate limits alone: ours behind a verified principal, tower_governor on the raw header.
    let principal = {
        let claims = serde_json::json!({"sub": "bench-user", "iss": ISS});
        Principal::from_claims(
            claims.as_object().unwrap().clone(),
            TokenFingerprint::of_bytes(token.as_bytes()),
        )
        .unwrap()
    };
    bench_router::<_, axum::body::Body, _>(
        &mut group,
        &rt,
        "tower_bearer_rate_limit_only",
        axum_router().layer(
            ServiceBuilder::new()
                .map_request(move |mut req: Request<axum::body::Body>| {
                    req.extensions_mut().insert(principal.clone());
                    req
                })
                .layer(RateLimitLayer::new(unlimited())),
        ),
        Some(&auth),
        200,
    );
    bench_router::<_, axum::body::Body, _>(
        &mut group,
        &rt,
        "tower_governor_keyed",
        axum_router().layer(peers::governor_layer()),
        Some(&auth),
        200,
    );
    bench_router::<_, axum::body::Body, _>(
        &mut group,
        &rt,
        "tower_http_bearer",
        axum_router().layer(peers::tower_http_bearer(&token)),
        Some(&auth),
        200,
    );
    group.finish();

    let mut group = c.benchmark_group("router_axum07");
    group.measurement_time(Duration::from_secs(3));
    bench_router::<_, axum07::body::Body, _>(
        &mut group,
        &rt,
        "bare",
        peers::axum07_router(),
        None,
        200,
    );
    let pem = rs.public_key_pem().expect("RSA has a PEM");
    let authorizer = rt.block_on(peers::jwt_authorizer_router(&pem, ISS, AUD));
    bench_router::<_, axum07::body::Body, _>(
        &mut group,
        &rt,
        "jwt_authorizer_RS256",
        authorizer,
        Some(&auth),
        200,
    );
    group.finish();
}

fn decode_group(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.measurement_time(Duration::from_secs(3));
    for alg in [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let issuer = TestIssuer::new(alg).with_kid("k");
        let token = mint(&issuer, "bench-user");
        // The floor: jsonwebtoken alone, same token, same key, validation prepared once.
        let (key, validation) = common::decoding(&issuer);
        group.bench_function(format!("jsonwebtoken_{}", alg_name(alg)), |b| {
            b.iter(|| black_box(jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap()))
        });
    }
    group.finish();
}

/// Runs `decide` from two threads at once and reports the time per decision per thread.
fn two_threads(iters: u64, decide: impl Fn(u64) + Sync) -> Duration {
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2 {
            let (decide, done) = (&decide, &done);
            s.spawn(move || {
                for _ in 0..iters {
                    decide(t);
                }
                done.fetch_add(iters, Ordering::Relaxed);
            });
        }
    });
    start.elapsed()
}

fn limiter_group(c: &mut Criterion) {
    let mut group = c.benchmark_group("limiter");
    group.measurement_time(Duration::from_secs(3));
    let store = MemoryStore::new();
    let quota = unlimited();
    let governor = peers::governor_keyed();
    let keys = ["sub\0alice".to_owned(), "sub\0bob".to_owned()];
    group.bench_function("tower_bearer_memory", |b| {
        b.iter(|| black_box(store.decide(&keys[0], &quota)))
    });
    group.bench_function("governor_keyed", |b| {
        b.iter(|| black_box(governor.check_key(&keys[0]).is_ok()))
    });
    for (name, same) in [("distinct_callers", false), ("same_caller", true)] {
        let key = |t: u64| &keys[if same { 0 } else { t as usize }];
        group.bench_function(format!("tower_bearer_memory_2_threads_{name}"), |b| {
            b.iter_custom(|iters| {
                two_threads(iters, |t| {
                    black_box(store.decide(key(t), &quota));
                })
            })
        });
        group.bench_function(format!("governor_keyed_2_threads_{name}"), |b| {
            b.iter_custom(|iters| {
                two_threads(iters, |t| {
                    black_box(governor.check_key(key(t)).is_ok());
                })
            })
        });
    }
    group.finish();
}

/// The token cache alone: a hit for a reused token from one thread, and from two threads at
/// once (on one token both hit the same entry; on two tokens, two entries).
fn cache_group(c: &mut Criterion) {
    use tower_bearer::extract::{BearerToken, TokenSource};
    use tower_bearer::validate::Authenticator;

    let mut group = c.benchmark_group("cache");
    group.measurement_time(Duration::from_secs(3));
    let issuer = TestIssuer::rs256().with_kid("k");
    let jwt = jwt(&issuer, true);
    let tokens = [mint(&issuer, "alice"), mint(&issuer, "bob")];
    for token in &tokens {
        let token = BearerToken::new(token.as_str(), TokenSource::Authorization);
        let Ok(verified) = jwt.authenticate(&token).into_ready() else {
            panic!("a JWT decides at once");
        };
        verified.expect("a valid token");
    }
    let hit = |token: &str| {
        let cached = jwt
            .authenticate_cached(token.as_bytes())
            .expect("a cached token");
        black_box(cached.into_ready().ok());
    };
    group.bench_function("hit", |b| b.iter(|| hit(&tokens[0])));
    for (name, same) in [("distinct_tokens", false), ("same_token", true)] {
        group.bench_function(format!("hit_2_threads_{name}"), |b| {
            b.iter_custom(|iters| {
                two_threads(iters, |t| hit(&tokens[if same { 0 } else { t as usize }]))
            })
        });
    }
    group.finish();
}

fn redis_group(c: &mut Criterion) {
    let Some(redis) = support::RedisServer::start() else {
        return;
    };
    let rt = runtime();
    let store = rt
        .block_on(tower_bearer::rate_limit::RedisStore::connect(&redis.url()))
        .unwrap();
    let quota = unlimited();
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

criterion_group!(
    benches,
    router_group,
    decode_group,
    limiter_group,
    cache_group,
    redis_group
);
criterion_main!(benches);
