//! Abuse bounds (DESIGN invariant 3 and 6): a million distinct garbage and forged tokens
//! through the full stack leave bounded state behind, and valid cached tokens keep being
//! served while forged ones flood in.
//!
//! The stack: `BearerAuthLayer` (a `Jwt` with its verified-token cache, keys from a remote
//! JWK Set served on 127.0.0.1) → `ScopeGuardLayer` → `RateLimitLayer` (memory store) → a
//! trivial service. Figures are printed (`--nocapture`); only counts and bounds are asserted,
//! never times:
//!
//! ```sh
//! cargo test --all-features --test abuse -- --nocapture
//! cargo test --release --all-features --test abuse -- --nocapture --test-threads 1
//! ```

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get as route_get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_bearer::BearerAuthLayer;
use tower_bearer::jwks::RemoteJwks;
use tower_bearer::rate_limit::{MemoryStore, Quota, RateLimitLayer};
use tower_bearer::scope::ScopeGuardLayer;
use tower_bearer::testing::{TestIssuer, claims};
use tower_bearer::validate::Jwt;

/// Hostile requests sent by the bound test.
const HOSTILE: u64 = 1_000_000;
/// One valid caller (a distinct subject, a distinct token) every this many requests.
const VALID_EVERY: u64 = 250;
/// The verified-token cache bound configured for the test.
const CACHE_ENTRIES: u64 = 1_000;
/// The limiter bound configured for the test (a multiple of the store's 64 shards, so the
/// bound is exact).
const LIMITER_KEYS: usize = 1_024;
/// The cooldown between JWKS fetches triggered by unknown `kid`s.
const COOLDOWN: Duration = Duration::from_secs(2);
/// The documented bound on the growth of the process (RSS) over the whole flood, with the
/// bounds above: the cache holds at most 1,000 principals (a few KiB each), the limiter
/// 1,024 16-byte digests, the key fetcher no per-`kid` state at all; the rest is allocator
/// slack from a million requests on two threads.
const RSS_BOUND_MIB: u64 = 32;

type Req = Request<Full<Bytes>>;

/// Resident memory of this process, in KiB (Linux).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWK Set on 127.0.0.1, dropped with the test.
struct Endpoint {
    url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn endpoint(issuers: &[&TestIssuer]) -> Endpoint {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let jwks = TestIssuer::jwks(issuers);
    let app = Router::new().route(
        "/jwks",
        route_get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Endpoint { url, server }
}

/// The full stack, and handles on its bounded state.
struct Stack<S> {
    svc: S,
    jwt: Jwt,
    limiter: MemoryStore,
    keys: RemoteJwks,
    _endpoint: Endpoint,
}

/// `rsa` signs the forged tokens' `kid` (`k1`); `ec` (`k2`) signs the valid ones.
async fn stack(
    rsa: &TestIssuer,
    ec: &TestIssuer,
) -> Stack<
    impl Service<Req, Response = Response<impl Send>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static,
> {
    let endpoint = endpoint(&[rsa, ec]).await;
    let keys = RemoteJwks::builder(endpoint.url.clone())
        .refresh_cooldown(COOLDOWN)
        .refresh_interval(Duration::from_secs(3600)) // no background fetch during the test
        .build()
        .await
        .unwrap();
    let jwt = Jwt::builder()
        .jwks(keys.clone())
        .audience("api")
        .cache_entries(CACHE_ENTRIES)
        .build()
        .unwrap();
    let limiter = MemoryStore::with_capacity(LIMITER_KEYS);
    let inner = service_fn(|_req: Req| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner"))))
    });
    let svc = BearerAuthLayer::new(jwt.clone()).layer(
        ScopeGuardLayer::parse("items:read").unwrap().layer(
            RateLimitLayer::new(Quota::per(Duration::from_secs(60), 10))
                .store(limiter.clone())
                .layer(inner),
        ),
    );
    Stack {
        svc,
        jwt,
        limiter,
        keys,
        _endpoint: endpoint,
    }
}

/// Pre-encoded parts the hostile tokens are made of.
struct Parts {
    /// A well-formed payload for audience `api`.
    payload: String,
    /// `{"alg":"RS256","kid":"k1"}`: the real key's id.
    known_kid_header: String,
    /// A token body just over the 8 KiB cap.
    oversized: String,
}

impl Parts {
    fn new() -> Self {
        let exp = support::now() + 3600;
        Self {
            payload: b64(format!(
                r#"{{"sub":"mallory","scope":"items:read","aud":"api","exp":{exp}}}"#
            )),
            known_kid_header: b64(r#"{"alg":"RS256","kid":"k1"}"#),
            oversized: "A".repeat(8 * 1024 + 1),
        }
    }
}

/// A few cheap pseudo-random bytes from `seed` (xorshift), for forged signatures.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The `Authorization` value of hostile request `i`: every one distinct. Out of 32:
///
/// - 12 garbage in the b64token charset (reaches the JWT parser: 401 malformed token);
/// - 4 outside that charset (400 from the extractor);
/// - 12 validly shaped JWTs naming a random `kid` (401 unknown key; a refresh at most once
///   per cooldown);
/// - 1 with the real `kid` and a forged RS256 signature (401 after a signature check);
/// - 2 with `alg` `none` or an algorithm the key is not for (401);
/// - 1 over the 8 KiB size cap (400 before any decoding).
fn hostile(i: u64, parts: &Parts) -> String {
    match i % 32 {
        0..=11 => format!("Bearer garbage-{i:x}.{}", b64(noise(i, 12))),
        12..=15 => format!("Bearer bad!{i}"),
        16..=27 => {
            let header = b64(format!(r#"{{"alg":"RS256","kid":"forged-{i:x}"}}"#));
            format!("Bearer {header}.{}.{}", parts.payload, b64(noise(i, 16)))
        }
        28 => format!(
            "Bearer {}.{}.{}",
            parts.known_kid_header,
            parts.payload,
            b64(noise(i, 256))
        ),
        29..=30 => {
            let alg = if i % 32 == 29 { "none" } else { "HS256" };
            let header = b64(format!(r#"{{"alg":"{alg}","kid":"k1","n":{i}}}"#));
            format!("Bearer {header}.{}.{}", parts.payload, b64(noise(i, 16)))
        }
        _ => format!("Bearer {}{i}", parts.oversized),
    }
}

/// How many of `n` hostile requests the extractor refuses with 400 (see [`hostile`]).
fn expected_400(n: u64) -> u64 {
    (0..n).filter(|i| matches!(i % 32, 12..=15 | 31)).count() as u64
}

fn request(authorization: &str) -> Req {
    Request::builder()
        .uri("/items")
        .header("authorization", authorization)
        .body(Full::default())
        .unwrap()
}

/// Counts of what one flooding task saw.
#[derive(Default, Debug)]
struct Tally {
    hostile_400: u64,
    hostile_401: u64,
    valid_200: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_garbage_and_forged_tokens_leave_bounded_state() {
    let rsa = TestIssuer::rs256().with_kid("k1");
    let ec = TestIssuer::es256().with_kid("k2");
    let s = stack(&rsa, &ec).await;
    let parts = Arc::new(Parts::new());
    // Distinct valid callers, interleaved with the flood: more than both bounds.
    let valid: Arc<Vec<String>> = Arc::new(
        (0..HOSTILE / VALID_EVERY)
            .map(|n| {
                ec.mint(
                    claims(
                        &format!("user-{n}"),
                        "items:read",
                        Duration::from_secs(3600),
                    )
                    .aud("api"),
                )
            })
            .collect(),
    );
    assert!(valid.len() as u64 > CACHE_ENTRIES && valid.len() > LIMITER_KEYS);

    let before = rss_kib();
    let started = Instant::now();
    let tasks = 2u64;
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let svc = s.svc.clone();
            let parts = parts.clone();
            let valid = valid.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut i = t;
                while i < HOSTILE {
                    if i.is_multiple_of(VALID_EVERY) {
                        let token = &valid[usize::try_from(i / VALID_EVERY).unwrap()];
                        let res = svc
                            .clone()
                            .oneshot(request(&format!("Bearer {token}")))
                            .await
                            .unwrap();
                        assert_eq!(res.status(), StatusCode::OK, "valid caller {i}");
                        tally.valid_200 += 1;
                    }
                    let res = svc
                        .clone()
                        .oneshot(request(&hostile(i, &parts)))
                        .await
                        .unwrap();
                    match res.status() {
                        StatusCode::BAD_REQUEST => tally.hostile_400 += 1,
                        StatusCode::UNAUTHORIZED => tally.hostile_401 += 1,
                        other => panic!("hostile request {i} got {other}"),
                    }
                    i += tasks;
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for h in handles {
        let t = h.await.unwrap();
        total.hostile_400 += t.hostile_400;
        total.hostile_401 += t.hostile_401;
        total.valid_200 += t.valid_200;
    }
    let elapsed = started.elapsed();
    let after = rss_kib();

    assert_eq!(total.hostile_400 + total.hostile_401, HOSTILE);
    assert_eq!(total.valid_200, valid.len() as u64);
    assert_eq!(total.hostile_400, expected_400(HOSTILE));

    // The bounded structures, exactly.
    let cache = s.jwt.cache_stats().unwrap();
    let limiter = s.limiter.len();
    let jwks = s.keys.stats();
    assert!(cache.entries <= CACHE_ENTRIES, "cache: {cache:?}");
    assert!(limiter <= LIMITER_KEYS, "limiter: {limiter}");
    assert!(
        cache.entries > 0 && limiter > 0,
        "the valid callers were cached and limited"
    );
    // Forged tokens leave no trace: 10,000 more change neither structure (the cache may
    // only shrink, as its maintenance catches up).
    for i in HOSTILE..HOSTILE + 10_000 {
        let forged = hostile(16 + i % 13 + 32 * i, &parts);
        let res = s.svc.clone().oneshot(request(&forged)).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(s.jwt.cache_stats().unwrap().entries <= cache.entries);
    assert_eq!(s.limiter.len(), limiter);
    // Unknown kids: one fetch at start, then at most one per cooldown, however many kids.
    let cooldowns = elapsed.as_secs_f64() / COOLDOWN.as_secs_f64();
    assert!(
        jwks.fetches as f64 <= 2.0 + cooldowns,
        "{} fetches in {elapsed:?}",
        jwks.fetches
    );
    assert_eq!(jwks.failures, 0);

    let grown_mib = match (before, after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) / 1024),
        _ => None,
    };
    eprintln!(
        "abuse: {HOSTILE} hostile + {} valid requests in {:.1} s ({:.1} µs per request, 2 tasks); \
         {} refused 400, {} refused 401; cache {} entries (bound {CACHE_ENTRIES}), \
         {} hits / {} misses; limiter {limiter} callers (bound {LIMITER_KEYS}); \
         {} JWKS fetches ({:.0} cooldowns); RSS {} → {} MiB (grew {} MiB, bound {RSS_BOUND_MIB})",
        total.valid_200,
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / (HOSTILE + total.valid_200) as f64,
        total.hostile_400,
        total.hostile_401,
        cache.entries,
        cache.hits,
        cache.misses,
        jwks.fetches,
        cooldowns,
        before.map_or(0, |k| k / 1024),
        after.map_or(0, |k| k / 1024),
        grown_mib.map_or_else(|| "?".to_owned(), |m| m.to_string()),
    );
    if let Some(grown) = grown_mib {
        assert!(grown < RSS_BOUND_MIB, "RSS grew by {grown} MiB");
    }
}

/// Median and 99th percentile of `samples`, in microseconds.
fn summary(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1e6
    };
    (at(0.5), at(0.99))
}

/// Times `n` requests with one valid, cached token, one after the other.
async fn time_valid<S, B>(svc: &S, token: &str, n: usize) -> Vec<Duration>
where
    S: Service<Req, Response = Response<B>, Error = Infallible> + Clone,
{
    let authorization = format!("Bearer {token}");
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let req = request(&authorization);
        let t = Instant::now();
        let res = svc.clone().oneshot(req).await.unwrap();
        samples.push(t.elapsed());
        assert_eq!(res.status(), StatusCode::OK);
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_cached_tokens_are_served_during_a_forged_token_flood() {
    const N: usize = 20_000;
    let rsa = TestIssuer::rs256().with_kid("k1");
    let ec = TestIssuer::es256().with_kid("k2");
    let s = stack(&rsa, &ec).await;
    let parts = Arc::new(Parts::new());
    let token = ec.mint(claims("alice", "items:read", Duration::from_secs(3600)).aud("api"));
    // The same authenticator (and cache) and limiter store, with a quota this test cannot
    // exhaust: only the layers' own time is measured.
    let unlimited = BearerAuthLayer::new(s.jwt.clone()).layer(
        ScopeGuardLayer::parse("items:read").unwrap().layer(
            RateLimitLayer::new(Quota::per(Duration::from_secs(1), 1_000_000))
                .store(s.limiter.clone())
                .layer(service_fn(|_req: Req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner"))))
                })),
        ),
    );
    time_valid(&unlimited, &token, 1_000).await; // warm-up: cached from here on
    let mut alone = time_valid(&unlimited, &token, N).await;

    let stop = Arc::new(AtomicBool::new(false));
    let forged = Arc::new(AtomicU64::new(0));
    let flood = {
        let svc = s.svc.clone();
        let stop = stop.clone();
        let forged = forged.clone();
        let parts = parts.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Forged tokens only: random kids and forged signatures on the real kid.
                let shaped = 16 + i % 13;
                let res = svc
                    .clone()
                    .oneshot(request(&hostile(shaped + 32 * i, &parts)))
                    .await
                    .unwrap();
                assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
                forged.fetch_add(1, Ordering::Relaxed);
                i += 1;
                if i.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    // Let the flood reach its pace before measuring.
    while forged.load(Ordering::Relaxed) < 1_000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let flood_start = (Instant::now(), forged.load(Ordering::Relaxed));
    let mut under = time_valid(&unlimited, &token, N).await;
    let flood_rate = (forged.load(Ordering::Relaxed) - flood_start.1) as f64
        / flood_start.0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    flood.await.unwrap();

    let (a50, a99) = summary(&mut alone);
    let (u50, u99) = summary(&mut under);
    eprintln!(
        "valid cached token, {N} requests: alone median {a50:.1} µs, p99 {a99:.1} µs; \
         during a flood of forged tokens ({flood_rate:.0} refused/s on the other core): \
         median {u50:.1} µs, p99 {u99:.1} µs"
    );
}
