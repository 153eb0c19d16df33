//! The bearer layer around a trivial service, against the bare service, in one run.
//!
//! Run with `cargo bench --bench layer`. Every group reports the bare service first, so the
//! cost of the layer reads as a ratio measured on the same machine in the same run.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_bearer::BearerAuthLayer;
use tower_bearer::keys::Algorithm;
use tower_bearer::testing::{TestIssuer, claims};
use tower_bearer::validate::Jwt;

fn inner()
-> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone
{
    service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

fn request(token: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri("/items")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("layer");
    group.measurement_time(Duration::from_secs(4));

    let bare = inner();
    let req = request("unused");
    group.bench_function("bare", |b| {
        b.iter(|| {
            let res = bare.clone().oneshot(req.clone()).now_or_never().unwrap();
            black_box(res.unwrap());
        })
    });

    for alg in [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let issuer = TestIssuer::new(alg).with_kid("k");
        let jwt = Jwt::builder()
            .key(issuer.key())
            .issuer("https://issuer.bench")
            .audience("bench")
            .build()
            .unwrap();
        let svc = BearerAuthLayer::new(jwt).layer(inner());
        let token = issuer.mint(
            claims("bench-user", "items:read", Duration::from_secs(3600))
                .iss("https://issuer.bench")
                .aud("bench"),
        );
        let req = request(&token);
        let name = tower_bearer::testing::alg_name(alg);
        group.bench_function(format!("verify_{name}"), |b| {
            b.iter(|| {
                let res = svc.clone().oneshot(req.clone()).now_or_never().unwrap();
                let res = res.unwrap();
                assert_eq!(res.status(), 200);
                black_box(res);
            })
        });
    }

    let issuer = TestIssuer::hs256();
    let jwt = Jwt::builder()
        .key(issuer.key())
        .audience("bench")
        .build()
        .unwrap();
    let svc = BearerAuthLayer::new(jwt).layer(inner());
    let missing = Request::builder()
        .uri("/items")
        .body(Full::default())
        .unwrap();
    group.bench_function("reject_missing_credentials", |b| {
        b.iter(|| {
            let res = svc.clone().oneshot(missing.clone()).now_or_never().unwrap();
            black_box(res.unwrap());
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
