//! Instruction counts per request, for `scripts/instructions.sh` (callgrind): unlike times,
//! they do not move with the machine's load, so two builds compare exactly.
//!
//! `cargo bench --bench instructions -- CASE [N]` runs CASE on N prebuilt requests (default
//! 2,000) after 200 of warm-up; under `valgrind --tool=callgrind
//! --toggle-collect='instructions::measured*'` only the measured requests count. Cases:
//! `bare` (the axum router alone, no credential), `floor` (the same router behind a layer that
//! checks nothing and only adds the extension and the two response fields every admitted
//! request of the full stack carries, see `common::floor`), `minimal` (the checks of the full
//! stack done as plainly as a hand-written layer would, see `common::minimal`), `hit` (the
//! bearer layer, reused RS256 token), `hit_realm` (the same with a realm of its own),
//! `layers` (bearer layer, scope guard and memory rate limit as three layers),
//! `one_layer` (the same checks in the bearer layer), `revocation` and `idle` (a cache hit
//! through a `Lifecycle` with a memory revocation list, or an idle timeout), `miss_hs256` (a
//! first-seen HS256 token, cache off), `decode_hs256` (`jsonwebtoken::decode` of that token
//! alone, its floor). Every
//! router is finalised as `axum::serve` does. Run natively it just runs the loop and prints
//! the time per request.

mod common;

use std::time::{Duration, Instant};

use common::{AUD, ISS, jwt};
use http::{HeaderValue, Request, header::AUTHORIZATION};
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::BearerAuthLayer;
use tower_bearer::keys::Algorithm;
use tower_bearer::lifecycle::{Lifecycle, MemoryRevocations};
use tower_bearer::rate_limit::{Quota, RateLimitLayer};
use tower_bearer::scope::{ScopeGuardLayer, ScopePolicy};
use tower_bearer::testing::{TestIssuer, claims};

fn router() -> axum::Router {
    axum::Router::new().route("/items", axum::routing::get(|| async { "ok" }))
}

fn unlimited() -> RateLimitLayer {
    RateLimitLayer::new(Quota::per(Duration::from_secs(1), 1_000_000_000))
}

fn main() {
    // `cargo bench` passes `--bench`; the case and the count are the other arguments.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    const CASES: [&str; 11] = [
        "bare",
        "floor",
        "minimal",
        "hit",
        "hit_realm",
        "layers",
        "one_layer",
        "revocation",
        "idle",
        "miss_hs256",
        "decode_hs256",
    ];
    let case = args.first().map_or("hit", String::as_str);
    if !CASES.contains(&case) {
        // `cargo bench -- FILTER` passes criterion's arguments here too: nothing to run.
        println!(
            "instructions: no case {case:?} (cases: {})",
            CASES.join(", ")
        );
        return;
    }
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2_000);
    let alg = if case.ends_with("hs256") {
        Algorithm::HS256
    } else {
        Algorithm::RS256
    };
    let issuer = TestIssuer::new(alg).with_kid("k");
    let token = issuer.mint(
        claims("bench-user", "items:read", Duration::from_secs(3600))
            .iss(ISS)
            .aud(AUD),
    );
    if case == "decode_hs256" {
        decode_floor(&issuer, &token, n);
        return;
    }
    let app: axum::Router = match case {
        "bare" => router(),
        "floor" => common::floor(router()),
        "minimal" => {
            let (key, validation) = common::decoding(&issuer);
            common::minimal::minimal_checks(router(), key, validation, "items:read")
        }
        "hit" => router().layer(BearerAuthLayer::new(jwt(&issuer, true))),
        "hit_realm" => {
            router().layer(BearerAuthLayer::new(jwt(&issuer, true)).realm("api.example"))
        }
        "layers" => router().layer(
            ServiceBuilder::new()
                .layer(BearerAuthLayer::new(jwt(&issuer, true)))
                .layer(ScopeGuardLayer::parse("items:read").unwrap())
                .layer(unlimited()),
        ),
        "one_layer" => router().layer(
            BearerAuthLayer::new(jwt(&issuer, true))
                .require_scopes(ScopePolicy::parse("items:read").unwrap())
                .rate_limit(unlimited()),
        ),
        "revocation" => router().layer(BearerAuthLayer::new(
            Lifecycle::new(jwt(&issuer, true)).revocations(MemoryRevocations::default()),
        )),
        "idle" => router().layer(BearerAuthLayer::new(
            Lifecycle::new(jwt(&issuer, true)).idle_timeout(Duration::from_secs(900)),
        )),
        "miss_hs256" => router().layer(BearerAuthLayer::new(jwt(&issuer, false))),
        _ => unreachable!("checked above"),
    }
    // As `axum::serve` does (`into_make_service`): routes become services once, not per
    // request.
    .with_state(());
    let auth = (!matches!(case, "bare" | "floor"))
        .then(|| HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    let requests = |n: usize| -> Vec<Request<axum::body::Body>> {
        (0..n)
            .map(|_| {
                let mut req = Request::builder().uri("/items");
                if let Some(auth) = &auth {
                    req = req.header(AUTHORIZATION, auth.clone());
                }
                req.body(axum::body::Body::empty()).unwrap()
            })
            .collect()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    run(&rt, &app, requests(200));
    let batch = requests(n);
    let start = Instant::now();
    measured(&rt, &app, batch);
    println!(
        "{case}: {n} requests, {:?} per request",
        start.elapsed() / u32::try_from(n).unwrap()
    );
}

/// The floor for `miss_hs256`: `jsonwebtoken::decode` alone on the same token, its key and
/// `Validation` prepared once (as `benches/layer.rs` measures it).
fn decode_floor(issuer: &TestIssuer, token: &str, n: usize) {
    let (key, validation) = common::decoding(issuer);
    let decode = |n: usize| {
        for _ in 0..n {
            std::hint::black_box(
                jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).unwrap(),
            );
        }
    };
    decode(200);
    let start = Instant::now();
    measured_decode(decode, n);
    println!(
        "decode_hs256: {n} decodes, {:?} per decode",
        start.elapsed() / u32::try_from(n).unwrap()
    );
}

/// The decodes counted (callgrind collects inside `measured*` functions only).
#[inline(never)]
fn measured_decode(decode: impl Fn(usize), n: usize) {
    decode(n);
    std::hint::black_box(());
}

/// The requests counted: callgrind collects inside this function only.
#[inline(never)]
fn measured(
    rt: &tokio::runtime::Runtime,
    app: &axum::Router,
    requests: Vec<Request<axum::body::Body>>,
) {
    run(rt, app, requests);
    std::hint::black_box(());
}

#[inline(never)]
fn run(rt: &tokio::runtime::Runtime, app: &axum::Router, requests: Vec<Request<axum::body::Body>>) {
    rt.block_on(async {
        for req in requests {
            let res = app.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), 200);
            std::hint::black_box(res);
        }
    });
}
