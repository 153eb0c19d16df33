//! A plain hyper 1 server (through hyper-util, no framework) behind the bearer layer.
//!
//! Run with
//!
//! ```not_rust
//! cargo run --example hyper
//! cargo run --example hyper -- --bind 127.0.0.1:3001
//! ```
//!
//! Dev mode only: the server generates an ES256 signing key, prints a token and `curl` lines,
//! and answers `hello, <sub>` to every request that carries a valid token (issuer and audience
//! `tower-bearer-dev`). Requests without one get the RFC 6750 challenge from the layer; the
//! handler never sees them.

#[path = "common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use common::{Cli, REALM};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::{Layer, service_fn};
use tower_bearer::{BearerAuthLayer, Principal};

const CLI: Cli = Cli {
    name: "hyper",
    default_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3001),
    key_flags: false,
    revocations: false,
    note: "Dev mode only: a signing key is generated at start and a token printed.",
};
/// How long open connections get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The application: greets the verified subject. The layer put the [`Principal`] there.
async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let who = req
        .extensions()
        .get::<Principal>()
        .and_then(Principal::subject)
        .unwrap_or("unknown");
    Ok(Response::new(Full::new(Bytes::from(format!(
        "hello, {who}"
    )))))
}

fn main() -> ExitCode {
    common::main(&CLI, "info,tower_bearer=debug", run)
}

async fn run(opts: common::Options) -> Result<(), String> {
    let (jwt, dev) = common::authenticator(&opts).await?;
    // One service for all connections: the layer holds configuration only and clones cheaply.
    let service = BearerAuthLayer::new(jwt)
        .realm(REALM)
        .layer(service_fn(hello));

    let (listener, addr) = common::bind(opts.bind).await?;
    let shutdown = common::shutdown_signal()?;
    if let Some(dev) = &dev {
        let token = dev.mint(dev.claims("alice", ""));
        println!("{}", dev.summary());
        println!();
        println!("token for alice:");
        println!("  {token}");
        println!();
        println!("try it:");
        println!(
            "  curl -i http://{addr}/                                    # 401 + WWW-Authenticate"
        );
        println!(
            "  curl -i -H 'Authorization: Bearer not-a-jwt' http://{addr}/   # 401 invalid_token"
        );
        println!("  curl -i -H 'Authorization: Bearer {token}' http://{addr}/");
        println!("                                                             # 200 hello, alice");
        println!();
    }
    println!("listening on http://{addr}");

    let builder = auto::Builder::new(TokioExecutor::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually transient (e.g. too many open files): wait a little, go on.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let builder = builder.clone();
        let service = TowerToHyperService::new(service.clone());
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = async { drop(stop.wait_for(|s| *s).await) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended with an error: {e}");
            }
        });
        // Reap finished connections so the set does not grow with the server's uptime.
        while connections.try_join_next().is_some() {}
    }

    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
        connections.shutdown().await;
    }
    Ok(())
}
