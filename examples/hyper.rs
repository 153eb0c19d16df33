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

use std::convert::Infallible;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::{Layer, service_fn};
use tower_bearer::testing::{TestIssuer, claims};
use tower_bearer::validate::Jwt;
use tower_bearer::{BearerAuthLayer, Principal};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "\
usage: hyper [--bind ADDR]

  --bind ADDR   address to listen on (default 127.0.0.1:3001)

Dev mode only: a signing key is generated at start and a token printed.";

const REALM: &str = "tower-bearer";
const DEV_ISSUER: &str = "tower-bearer-dev";
/// How long open connections get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

enum ArgsError {
    Help,
    Usage(String),
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<SocketAddr, ArgsError> {
    let mut bind = SocketAddr::from(([127, 0, 0, 1], 3001));
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg, None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Err(ArgsError::Help),
            "--bind" => {
                let value = inline
                    .or_else(|| args.next())
                    .ok_or_else(|| ArgsError::Usage("--bind needs a value".into()))?;
                bind = value.parse().map_err(|_| {
                    ArgsError::Usage(format!("--bind: not a socket address: {value:?}"))
                })?;
            }
            _ => return Err(ArgsError::Usage(format!("unknown argument {flag:?}"))),
        }
    }
    Ok(bind)
}

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

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,tower_bearer=debug")),
        )
        .init();

    let bind = match parse_args(std::env::args().skip(1)) {
        Ok(bind) => bind,
        Err(ArgsError::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ArgsError::Usage(msg)) => {
            eprintln!("error: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let issuer = TestIssuer::es256().with_kid("dev-1");
    let jwt = match Jwt::builder()
        .key(issuer.key())
        .issuer(DEV_ISSUER)
        .audience(DEV_ISSUER)
        .build()
    {
        Ok(jwt) => jwt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One service for all connections: the layer holds configuration only and clones cheaply.
    let service = BearerAuthLayer::new(jwt)
        .realm(REALM)
        .layer(service_fn(hello));

    let listener = match tokio::net::TcpListener::bind(bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot bind {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(bind);

    let token = issuer.mint(
        claims("alice", "", Duration::from_secs(3600))
            .iss(DEV_ISSUER)
            .aud(DEV_ISSUER),
    );
    println!("dev mode: generated an ES256 key (kid dev-1); issuer and audience {DEV_ISSUER:?}");
    println!();
    println!("token for alice (valid 1 h):");
    println!("  {token}");
    println!();
    println!("try it:");
    println!(
        "  curl -i http://{addr}/                                    # 401 + WWW-Authenticate"
    );
    println!("  curl -i -H 'Authorization: Bearer not-a-jwt' http://{addr}/   # 401 invalid_token");
    println!("  curl -i -H 'Authorization: Bearer {token}' http://{addr}/");
    println!("                                                             # 200 hello, alice");
    println!();
    println!("listening on http://{addr}");

    let builder = auto::Builder::new(TokioExecutor::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let shutdown = shutdown_signal();
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

    tracing::info!("shutting down");
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
    ExitCode::SUCCESS
}
