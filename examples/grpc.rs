//! The standard gRPC health service (`grpc.health.v1.Health`) behind the bearer layer.
//!
//! Run with
//!
//! ```not_rust
//! cargo run --example grpc
//! cargo run --example grpc -- --bind 127.0.0.1:50051 --key-file jwks.json \
//!     --issuer https://issuer.example --audience api://health
//! cargo run --example grpc -- --jwks-url https://issuer.example/jwks.json \
//!     --issuer https://issuer.example --audience api://health
//! cargo run --example grpc -- --oidc-issuer https://login.example.com --audience api://health
//! ```
//!
//! It takes the flags of the reference server (`cargo run --example grpc -- --help`), with
//! the default bind `127.0.0.1:50051`. Without a key source (`--key-file`: a PEM public key or
//! a JWKS JSON document; `--jwks-url`: a remote JWK Set; `--oidc-issuer`: an issuer's
//! discovery document) the server runs in dev mode: it generates an ES256 signing key, prints
//! a token with scope `health:read` and one without, and accepts tokens with issuer and
//! audience `tower-bearer-dev`.
//!
//! A call without a valid token ends with `UNAUTHENTICATED` (16); `Check` and `Watch` without
//! scope `health:read` end with `PERMISSION_DENIED` (7). Both are trailers-only responses
//! rendered by the layers; the health service never sees those calls.

#[path = "common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use common::{Cli, DevMode, REALM};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tower::layer::util::Identity;
use tower::util::Either;
use tower_bearer::BearerAuthLayer;
use tower_bearer::scope::{MethodScopes, ScopeGuardLayer, ScopePolicy};

const CLI: Cli = Cli {
    name: "grpc",
    default_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50051),
    key_flags: true,
    revocations: false,
    note: "Serves grpc.health.v1.Health; Check and Watch need scope health:read.",
};
const HEALTH_SCOPE: &str = "health:read";

fn print_dev_tokens(dev: &DevMode, addr: SocketAddr) {
    let with_scope = dev.mint(dev.claims("dev-user", HEALTH_SCOPE));
    let without_scope = dev.mint(dev.claims("dev-user", ""));
    println!("{}", dev.summary());
    println!();
    println!("token with scope {HEALTH_SCOPE}:");
    println!("  {with_scope}");
    println!("token without scopes:");
    println!("  {without_scope}");
    println!();
    println!(
        "try it (the server offers no reflection; give grpcurl the grpc/health/v1/health.proto):"
    );
    println!("  grpcurl -plaintext -proto health.proto {addr} grpc.health.v1.Health/Check");
    println!("      -> Unauthenticated (16)");
    println!(
        "  grpcurl -plaintext -proto health.proto -H 'authorization: Bearer {without_scope}' \
         {addr} grpc.health.v1.Health/Check"
    );
    println!("      -> PermissionDenied (7)");
    println!(
        "  grpcurl -plaintext -proto health.proto -H 'authorization: Bearer {with_scope}' \
         {addr} grpc.health.v1.Health/Check"
    );
    println!("      -> {{\"status\": \"SERVING\"}}");
    println!();
}

fn main() -> ExitCode {
    common::main(&CLI, "info,tower_bearer=debug", run)
}

async fn run(opts: common::Options) -> Result<(), String> {
    let (jwt, dev) = common::authenticator(&opts).await?;
    // With `--require-dpop`, every call needs a DPoP-bound token and a proof whose `htm` is
    // POST and whose `htu` is `http://HOST/package.Service/Method`.
    let mut bearer =
        BearerAuthLayer::from_arc(common::with_opaque_tokens(&opts, jwt)?).realm(REALM);
    if let Some(constraints) = common::sender_constraints(&opts).await? {
        bearer = bearer.sender_constraints(constraints);
    }
    // `Check` and `Watch` need the scope; any other method only a valid token. The guard sits
    // inside the bearer layer, which puts the `Principal` in the request extensions, and
    // answers in its realm.
    let guard = ScopeGuardLayer::methods(
        MethodScopes::new()
            .method(
                "/grpc.health.v1.Health/Check",
                ScopePolicy::scope(HEALTH_SCOPE),
            )
            .method(
                "/grpc.health.v1.Health/Watch",
                ScopePolicy::scope(HEALTH_SCOPE),
            )
            .default_policy(ScopePolicy::authenticated()),
    )
    .map_err(|e| e.to_string())?;

    let (listener, addr) = common::bind(opts.bind).await?;
    let shutdown = common::shutdown_signal()?;
    if let Some(dev) = &dev {
        print_dev_tokens(dev, addr);
    }

    // The limit sits inside the bearer layer and the guard: it counts verified, authorized
    // calls. Without `--rate-limit` a no-op stands in its place (same response type).
    let limit = match common::rate_limit(&opts).await? {
        Some(limit) => Either::Left(limit),
        None => Either::Right(Identity::new()),
    };
    let (_reporter, health) = tonic_health::server::health_reporter();
    let server = Server::builder()
        .layer(bearer)
        .layer(guard)
        .layer(limit)
        .add_service(health);

    println!("listening on http://{addr}");
    server
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
        .map_err(|e| format!("server failed: {e}"))
}
