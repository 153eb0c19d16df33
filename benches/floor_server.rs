//! The floor of the load test (`scripts/loadtest.sh`): a server on 127.0.0.1 answering
//! `GET /health` bare and `GET /floor`, the same handler behind `common::floor` (a layer that
//! checks nothing and only adds what every request the full stack admits carries: the caller
//! in the request extensions and the two rate-limit fields). `/floor` over `/health` under
//! `wrk` is the share of the bare route's requests/s left once those outputs are paid for.
//!
//! `cargo bench --bench floor_server -- serve` prints `listening on http://ADDR` and serves
//! until it is killed; without `serve` (as when `cargo bench` runs every bench) it returns at
//! once.

#[allow(dead_code)] // The JWT helpers are for the other benches.
mod common;

use axum::{Json, Router, routing::get};
use serde_json::{Value, json};

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
    rt.block_on(async {
        let app = Router::new()
            .route("/health", get(health))
            .merge(common::floor(Router::new().route("/floor", get(health))));
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
