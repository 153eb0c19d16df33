//! Per-caller rate limits (ACCEPTANCE §6): exact counts, refill, keys from verified data only,
//! headers, gRPC, bounded memory, and Redis (real `redis-server`, several instances, outages).

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;
use support::RedisServer;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::BearerAuthLayer;
use tower_bearer::clock::ManualClock;
use tower_bearer::rate_limit::{
    Decision, KeyBy, MemoryStore, Quota, RateLimitLayer, RateLimitStore, RedisStore,
};
use tower_bearer::testing::{Claims, TestIssuer, claims};
use tower_bearer::validate::Jwt;

type Req = Request<Full<Bytes>>;

fn issuer() -> &'static TestIssuer {
    static K: std::sync::OnceLock<TestIssuer> = std::sync::OnceLock::new();
    K.get_or_init(|| TestIssuer::hs256().with_kid("k"))
}

fn c(sub: &str) -> Claims {
    claims(sub, "", Duration::from_secs(600)).aud("api")
}

fn token(sub: &str) -> String {
    issuer().mint(c(sub))
}

/// The bearer layer, then `limit`, around a counting service.
fn stack(
    limit: RateLimitLayer,
) -> (
    impl Service<Req, Response = Response<impl http_body::Body>, Error = Infallible, Future = impl Send>
    + Clone
    + Send,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let jwt = Jwt::builder()
        .key(issuer().key())
        .audience("api")
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(jwt).realm("limits"))
        .layer(limit)
        .service(service_fn(move |_req: Req| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")))) }
        }));
    (svc, calls)
}

fn req(token: &str) -> Req {
    Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap()
}

fn header(res: &Response<impl http_body::Body>, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn n_plus_one_sequential_requests_admit_n_with_headers() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let store = MemoryStore::new().clock(clock.clone());
    let (svc, calls) =
        stack(RateLimitLayer::new(Quota::per(Duration::from_secs(10), 5)).store(store));
    let t = token("alice");
    for i in 0..5u32 {
        let res = svc.clone().oneshot(req(&t)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "ratelimit-policy"), r#""default";q=5;w=10"#);
        assert_eq!(
            header(&res, "ratelimit"),
            format!(r#""default";r={};t={}"#, 4 - i, 2 * (i + 1))
        );
    }
    let res = svc.clone().oneshot(req(&t)).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), "2");
    assert_eq!(header(&res, "ratelimit"), r#""default";r=0;t=10"#);
    assert_eq!(header(&res, "ratelimit-policy"), r#""default";q=5;w=10"#);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        5,
        "the refused request never reached the service"
    );

    // Retry-After is rounded up: 1.5 s later, 0.5 s remain → 1.
    clock.advance(Duration::from_millis(1500));
    let res = svc.clone().oneshot(req(&t)).await.unwrap();
    assert_eq!(header(&res, "retry-after"), "1");
    // Refill at the configured rate: one request per 2 s.
    clock.advance(Duration::from_millis(500));
    assert_eq!(
        svc.clone().oneshot(req(&t)).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        svc.clone().oneshot(req(&t)).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    clock.advance(Duration::from_secs(10));
    for _ in 0..5 {
        assert_eq!(
            svc.clone().oneshot(req(&t)).await.unwrap().status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn exactly_the_quota_out_of_1000_concurrent_requests_in_memory() {
    let (svc, calls) = stack(RateLimitLayer::new(Quota::per(
        Duration::from_secs(3600),
        100,
    )));
    let t = token("alice");
    let tasks: Vec<_> = (0..1000)
        .map(|_| tokio::spawn(svc.clone().oneshot(req(&t))))
        .collect();
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap().unwrap().status() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 100);
    assert_eq!(calls.load(Ordering::SeqCst), 100);
}

#[tokio::test]
async fn keys_come_from_verified_data_only() {
    let (svc, calls) = stack(RateLimitLayer::new(Quota::per(
        Duration::from_secs(3600),
        3,
    )));
    // Forged tokens claiming alice never spend her quota.
    let forged = TestIssuer::hs256().with_kid("k").mint(c("alice"));
    for _ in 0..10 {
        let res = svc.clone().oneshot(req(&forged)).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(res.headers().get("ratelimit").is_none());
    }
    // Two different tokens of alice share one quota (keyed on `sub`, not on the token)...
    let (a1, a2) = (token("alice"), token("alice"));
    assert_ne!(a1, a2);
    for t in [&a1, &a2, &a1] {
        assert_eq!(
            svc.clone().oneshot(req(t)).await.unwrap().status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        svc.clone().oneshot(req(&a2)).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // ...and bob has his own. Client-supplied headers change nothing.
    let mut r = req(&token("bob"));
    r.headers_mut()
        .insert("x-forwarded-for", "10.0.0.1".parse().unwrap());
    assert_eq!(
        svc.clone().oneshot(r).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn key_choices_and_tiers() {
    let by_client =
        RateLimitLayer::new(Quota::per(Duration::from_secs(3600), 1)).key_by(KeyBy::ClientId);
    let (svc, _) = stack(by_client);
    let t1 = issuer().mint(c("alice").client_id("app-1"));
    let t2 = issuer().mint(c("bob").client_id("app-1"));
    assert_eq!(
        svc.clone().oneshot(req(&t1)).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        svc.clone().oneshot(req(&t2)).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    let tiers = RateLimitLayer::new(Quota::per(Duration::from_secs(3600), 1))
        .tiers_by_claim("plan", [("gold", Quota::per(Duration::from_secs(3600), 3))]);
    let (svc, _) = stack(tiers);
    let gold = issuer().mint(c("g").set("plan", "gold"));
    let free = issuer().mint(c("f").set("plan", json!("free")));
    let admitted = |t: String| {
        let svc = svc.clone();
        async move {
            let mut n = 0;
            for _ in 0..5 {
                if svc.clone().oneshot(req(&t)).await.unwrap().status() == StatusCode::OK {
                    n += 1;
                }
            }
            n
        }
    };
    assert_eq!(admitted(gold).await, 3);
    assert_eq!(admitted(free).await, 1);
}

#[tokio::test]
async fn token_id_and_custom_keys() {
    let hour = Duration::from_secs(3600);

    // By token id: one quota per token, whoever holds it.
    let (svc, _) = stack(RateLimitLayer::new(Quota::per(hour, 1)).key_by(KeyBy::TokenId));
    let code = |t: String| {
        let svc = svc.clone();
        async move { svc.oneshot(req(&t)).await.unwrap().status() }
    };
    let a1 = issuer().mint(c("alice").set("jti", "j-1"));
    let a2 = issuer().mint(c("alice").set("jti", "j-2"));
    assert_eq!(code(a1.clone()).await, StatusCode::OK);
    assert_eq!(code(a1).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        code(a2).await,
        StatusCode::OK,
        "another token of the same subject"
    );

    // A custom key from a verified claim: callers of one tenant share its quota; a token
    // without the claim falls back to its own fingerprint.
    let by_tenant = KeyBy::Custom(Arc::new(|p| {
        p.claim("tenant")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    }));
    let (svc, _) = stack(RateLimitLayer::new(Quota::per(hour, 2)).key_by(by_tenant));
    let code = |t: String| {
        let svc = svc.clone();
        async move { svc.oneshot(req(&t)).await.unwrap().status() }
    };
    let acme = |sub: &str| issuer().mint(c(sub).set("tenant", "acme"));
    assert_eq!(code(acme("alice")).await, StatusCode::OK);
    assert_eq!(code(acme("bob")).await, StatusCode::OK);
    assert_eq!(
        code(acme("carol")).await,
        StatusCode::TOO_MANY_REQUESTS,
        "acme's quota is spent"
    );
    assert_eq!(
        code(issuer().mint(c("dave").set("tenant", "other"))).await,
        StatusCode::OK
    );
    let lone = issuer().mint(c("erin"));
    assert_eq!(code(lone.clone()).await, StatusCode::OK);
    assert_eq!(code(lone.clone()).await, StatusCode::OK);
    assert_eq!(code(lone).await, StatusCode::TOO_MANY_REQUESTS);
    // The tenant claim of an unverified token spends nothing: a forged acme token is 401.
    let forged = format!("{}x", acme("mallory"));
    assert_eq!(code(forged).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn stacked_limiters_keep_separate_state() {
    let store = MemoryStore::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let jwt = Jwt::builder()
        .key(issuer().key())
        .audience("api")
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(jwt))
        .layer(RateLimitLayer::new(Quota::per(Duration::from_secs(3600), 5)).store(store.clone()))
        .layer(
            RateLimitLayer::new(Quota::per(Duration::from_secs(3600), 2))
                .name("route")
                .store(store),
        )
        .service(service_fn(move |_req: Req| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())) }
        }));
    let t = token("alice");
    let res = svc.clone().oneshot(req(&t)).await.unwrap();
    assert_eq!(
        header(&res, "ratelimit-policy"),
        r#""default";q=5;w=3600"#,
        "outer fields win"
    );
    svc.clone().oneshot(req(&t)).await.unwrap();
    let res = svc.clone().oneshot(req(&t)).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn grpc_gets_resource_exhausted_with_retry_time() {
    let (svc, _) = stack(RateLimitLayer::new(Quota::per(Duration::from_secs(60), 1)));
    let t = token("alice");
    let grpc = || {
        Request::builder()
            .header("content-type", "application/grpc")
            .header("authorization", format!("Bearer {t}"))
            .body(Full::default())
            .unwrap()
    };
    svc.clone().oneshot(grpc()).await.unwrap();
    let res = svc.clone().oneshot(grpc()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "grpc-status"), "8");
    assert_eq!(header(&res, "retry-after"), "60");
    assert_eq!(header(&res, "grpc-message"), "rate limit exceeded");
}

#[tokio::test]
async fn without_a_principal_the_limiter_refuses() {
    let svc = RateLimitLayer::new(Quota::per(Duration::from_secs(1), 1)).layer(service_fn(
        |_r: Req| async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())) },
    ));
    let res = svc.oneshot(Request::new(Full::default())).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

use tower::Layer;

#[test]
fn a_flood_of_distinct_callers_stays_bounded() {
    // 300,000 distinct callers through a store capped at 20,000 keys.
    let store = MemoryStore::with_capacity(20_000);
    let q = Quota::per(Duration::from_secs(60), 10);
    for i in 0..300_000u32 {
        store.decide(&format!("caller-{i}"), &q);
    }
    let n = store.len();
    assert!(n <= 20_000, "{n} entries kept");
    assert!(n > 15_000, "the store keeps recent callers ({n})");
}

#[test]
fn a_limited_caller_stays_limited_through_a_flood_of_others() {
    // A full store evicts the callers closest to a whole quota first: one who spent all of
    // it is the last to go, so a flood of new callers cannot give it a fresh quota.
    let store = MemoryStore::with_capacity(1_000);
    let q = Quota::per(Duration::from_secs(3600), 10);
    for _ in 0..10 {
        assert!(matches!(store.decide("victim", &q), Decision::Allow { .. }));
    }
    assert!(matches!(store.decide("victim", &q), Decision::Deny { .. }));
    for i in 0..50_000u32 {
        store.decide(&format!("caller-{i}"), &q);
    }
    assert!(store.len() <= 1_000);
    assert!(matches!(store.decide("victim", &q), Decision::Deny { .. }));
}

// ---------------------------------------------------------------- Redis

async fn redis_stack(
    url: String,
    fail_open: bool,
    quota: Quota,
    timeout: Duration,
) -> (
    impl Service<Req, Response = Response<impl http_body::Body>, Error = Infallible, Future = impl Send>
    + Clone
    + Send,
    Arc<AtomicUsize>,
) {
    let store = RedisStore::connect(&url).await.unwrap().timeout(timeout);
    stack(RateLimitLayer::new(quota).store(store).fail_open(fail_open))
}

#[tokio::test]
async fn redis_exact_counts_across_two_instances() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let quota = Quota::per(Duration::from_secs(3600), 100);
    // Generous timeouts: 1,000 concurrent decisions share each connection, in a debug build
    // on a busy 2-core machine; this test is about counts, the outage test about timeouts.
    let patient = Duration::from_secs(5);
    let (a, calls_a) = redis_stack(redis.url(), false, quota, patient).await;
    let (b, calls_b) = redis_stack(redis.url(), false, quota, patient).await;
    // Sequential: N+1 → N.
    let t = token("seq");
    let small = Quota::per(Duration::from_secs(3600), 3);
    let (s, _) = redis_stack(redis.url(), false, small, patient).await;
    for _ in 0..3 {
        assert_eq!(
            s.clone().oneshot(req(&t)).await.unwrap().status(),
            StatusCode::OK
        );
    }
    let res = s.clone().oneshot(req(&t)).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&res, "retry-after").parse::<u64>().unwrap() >= 1199);

    // 1,000 concurrent requests against a quota of 100, split over two instances with their
    // own connections.
    let t = token("alice");
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let svc_a = a.clone();
            let svc_b = b.clone();
            let r = req(&t);
            tokio::spawn(async move {
                if i % 2 == 0 {
                    svc_a.oneshot(r).await.unwrap().status()
                } else {
                    svc_b.oneshot(r).await.unwrap().status()
                }
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        let status = task.await.unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::TOO_MANY_REQUESTS,
            "{status}"
        );
        if status == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 100);
    assert_eq!(
        calls_a.load(Ordering::SeqCst) + calls_b.load(Ordering::SeqCst),
        100
    );
}

#[tokio::test]
async fn redis_refills_in_real_time_and_sets_ttls() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let q = Quota::per(Duration::from_millis(600), 2);
    use tower_bearer::rate_limit::Decision;
    let d = |store: &RedisStore<_>| {
        let f = store.check("k", &q);
        async move { f.await.unwrap() }
    };
    assert!(matches!(
        d(&store).await,
        Decision::Allow { remaining: 1, .. }
    ));
    assert!(matches!(
        d(&store).await,
        Decision::Allow { remaining: 0, .. }
    ));
    let Decision::Deny { retry_after, .. } = d(&store).await else {
        panic!("third must be refused")
    };
    assert!(retry_after <= Duration::from_millis(300));
    tokio::time::sleep(retry_after + Duration::from_millis(30)).await;
    assert!(
        matches!(d(&store).await, Decision::Allow { .. }),
        "refilled"
    );
    // Every key has a TTL.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("tower-bearer:rl:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        keys[0].len(),
        "tower-bearer:rl:".len() + 32,
        "a digest, not the caller key"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 700, "{ttl}");

    // One round trip per decision: one script call (`EVALSHA`, the script loaded), and no
    // other command than the script's own `TIME`, `GET` and `SET`.
    let stats = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("all")
                .query_async(&mut conn)
                .await
                .unwrap();
            let field = |prefix: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(prefix))
                    .map_or(0, |rest| {
                        rest.split(',')
                            .next()
                            .unwrap()
                            .trim()
                            .parse::<u64>()
                            .unwrap()
                    })
            };
            (
                field("cmdstat_evalsha:calls="),
                field("total_commands_processed:"),
            )
        }
    };
    let (scripts, commands) = stats(&mut conn).await;
    for i in 0..20 {
        store.check(&format!("caller-{i}"), &q).await.unwrap();
    }
    let (scripts_after, commands_after) = stats(&mut conn).await;
    assert_eq!(scripts_after - scripts, 20);
    // Each script runs three commands; the second INFO counts itself.
    assert_eq!(commands_after - commands, 20 * 4 + 1);
}

#[tokio::test]
async fn redis_outage_applies_the_policy_at_once_and_recovers() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let port = redis.port;
    let quota = Quota::per(Duration::from_secs(1), 1000);
    let prompt = Duration::from_millis(300);
    let (closed, _) = redis_stack(redis.url(), false, quota, prompt).await;
    let (open, open_calls) = redis_stack(redis.url(), true, quota, prompt).await;
    let t = token("alice");
    assert_eq!(
        closed.clone().oneshot(req(&t)).await.unwrap().status(),
        StatusCode::OK
    );
    redis.kill();
    let started = std::time::Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(3), closed.clone().oneshot(req(&t)))
        .await
        .expect("no hang")
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let res = tokio::time::timeout(Duration::from_secs(3), open.clone().oneshot(req(&t)))
        .await
        .expect("no hang")
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("ratelimit").is_none());
    assert!(open_calls.load(Ordering::SeqCst) >= 1);
    assert!(started.elapsed() < Duration::from_secs(3));

    let _back = RedisServer::start_on(port).unwrap();
    let mut recovered = false;
    for _ in 0..100 {
        let res = closed.clone().oneshot(req(&t)).await.unwrap();
        if res.status() == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "service resumes when Redis returns");
}

/// Resident memory of this process, in KiB (Linux).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_million_distinct_callers_fit_the_documented_bound() {
    // The documented bound: the default store (100,000 keys) stays under 16 MiB however many
    // distinct callers go through it.
    let store = MemoryStore::new();
    let q = Quota::per(Duration::from_secs(60), 10);
    let before = rss_kib();
    let mut key = String::with_capacity(32);
    for i in 0..1_000_000u32 {
        key.clear();
        key.push_str("caller-");
        key.push_str(&i.to_string());
        store.decide(&key, &q);
    }
    let n = store.len();
    assert!(n <= tower_bearer::rate_limit::DEFAULT_MAX_KEYS, "{n}");
    if let (Some(b), Some(a)) = (before, rss_kib()) {
        let grown_mib = a.saturating_sub(b) / 1024;
        eprintln!("1,000,000 callers: {n} entries kept, RSS grew by {grown_mib} MiB");
        assert!(grown_mib < 16, "{grown_mib} MiB");
    }
}

/// The Redis store takes cluster connections as well as single nodes (compile-time check).
#[allow(dead_code)]
fn accepts_a_cluster_connection(
    conn: redis::cluster_async::ClusterConnection,
) -> impl RateLimitStore {
    RedisStore::new(conn)
}
