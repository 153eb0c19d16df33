//! The floor of the load test (`scripts/loadtest.sh`): a server on 127.0.0.1 answering
//! `GET /health` bare; `GET /floor`, the same handler behind `common::floor` (a layer that
//! checks nothing and only adds what every request the full stack admits carries: the caller
//! in the request extensions and the two rate-limit fields); and `GET /minimal`, the same
//! handler behind the checks of the full stack done as plainly as a hand-written layer would
//! (`common::minimal`). `/floor` over `/health` under `wrk` is the share of the bare route's
//! requests/s left once those outputs are paid for; `/minimal` over `/health`, once the
//! plainest checks are too.
//!
//! `cargo bench --bench floor_server -- serve` prints `TOKEN=…` (an ES256 token `/minimal`
//! admits), then `listening on http://ADDR`, and serves until it is killed; without `serve`
//! (as when `cargo bench` runs every bench) it returns at once.

#[allow(dead_code)] // Some helpers are for the other benches.
mod common;

use std::time::Duration;

use axum::{Json, Router, routing::get};
use serde_json::{Value, json};
use tower_bearer::testing::{TestIssuer, claims};

/// The reference server's `/health` handler.
async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

fn main() {
    if !std::env::args().any(|a| a == "serve") {
        println!("floor_server: pass `serve` to run the load test's floor server");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // ES256, as the reference server's dev tokens: headers of about the same size.
    let issuer = TestIssuer::es256().with_kid("k");
    let token = issuer.mint(
        claims("load-user", "items:read", Duration::from_secs(24 * 3600))
            .iss(common::ISS)
            .aud(common::AUD),
    );
    let (key, validation) = common::decoding(&issuer);
    println!("TOKEN={token}");
    rt.block_on(async {
        let app = Router::new()
            .route("/health", get(health))
            .merge(common::floor(Router::new().route("/floor", get(health))))
            .merge(common::minimal::minimal_checks(
                Router::new().route("/minimal", get(health)),
                key,
                validation,
                "items:read",
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        println!(
            "listening on http://{}",
            listener.local_addr().expect("address")
        );
        axum::serve(listener, app).await.expect("serve");
    });
}
