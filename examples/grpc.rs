//! The standard gRPC health service (`grpc.health.v1.Health`) behind the bearer layer.
//!
//! Run with
//!
//! ```not_rust
//! cargo run --example grpc
//! cargo run --example grpc -- --bind 127.0.0.1:50051 --key-file jwks.json \
//!     --issuer https://issuer.example --audience api://health
//! ```
//!
//! Without `--key-file` the server runs in dev mode: it generates an ES256 signing key, prints a
//! token with scope `health:read` and one without, and accepts tokens with issuer and audience
//! `tower-bearer-dev`. `--key-file` takes a PEM public key or a JWKS JSON document.
//!
//! A call without a valid token ends with `UNAUTHENTICATED` (16); `Check` and `Watch` without
//! scope `health:read` end with `PERMISSION_DENIED` (7). Both are trailers-only responses
//! rendered by the layer; the health service never sees those calls.

use std::future::{Ready, ready};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{Either, MapOk, TryFutureExt};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tower::{Layer, Service};
use tower_bearer::body::AuthBody;
use tower_bearer::keys::{Key, KeySet};
use tower_bearer::reject::Renderer;
use tower_bearer::testing::{TestIssuer, claims};
use tower_bearer::validate::Jwt;
use tower_bearer::{AuthError, AuthErrorKind, BearerAuthLayer, Principal};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "\
usage: grpc [--bind ADDR] [--key-file PATH] [--issuer ISS] [--audience AUD]

  --bind ADDR        address to listen on (default 127.0.0.1:50051)
  --key-file PATH    PEM public key, or JWKS JSON (a file starting with '{');
                     without it: dev mode, with a generated key and printed tokens
  --issuer ISS       required `iss` claim
  --audience AUD     required `aud` claim";

const REALM: &str = "tower-bearer";
const DEV_ISSUER: &str = "tower-bearer-dev";
const HEALTH_SCOPE: &str = "health:read";
/// The methods that need [`HEALTH_SCOPE`].
const GUARDED_PATHS: [&str; 2] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

#[derive(Debug)]
struct Args {
    bind: SocketAddr,
    key_file: Option<PathBuf>,
    issuer: Option<String>,
    audience: Option<String>,
}

enum ArgsError {
    Help,
    Usage(String),
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, ArgsError> {
    let mut parsed = Args {
        bind: SocketAddr::from(([127, 0, 0, 1], 50051)),
        key_file: None,
        issuer: None,
        audience: None,
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Err(ArgsError::Help);
        }
        if !matches!(
            flag.as_str(),
            "--bind" | "--key-file" | "--issuer" | "--audience"
        ) {
            return Err(ArgsError::Usage(format!("unknown argument {flag:?}")));
        }
        let value = inline
            .or_else(|| args.next())
            .ok_or_else(|| ArgsError::Usage(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--bind" => {
                parsed.bind = value.parse().map_err(|_| {
                    ArgsError::Usage(format!("--bind: not a socket address: {value:?}"))
                })?;
            }
            "--key-file" => parsed.key_file = Some(PathBuf::from(value)),
            "--issuer" => parsed.issuer = Some(value),
            _ => parsed.audience = Some(value),
        }
    }
    Ok(parsed)
}

/// Reads a PEM public key, or a JWK Set when the file starts with `{`.
fn load_keys(path: &PathBuf) -> Result<KeySet, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let is_json = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if is_json {
        let text =
            std::str::from_utf8(&bytes).map_err(|_| format!("{}: not UTF-8", path.display()))?;
        KeySet::from_jwks_json(text).map_err(|e| format!("{}: {e}", path.display()))
    } else {
        let key = Key::from_pem(&bytes, None).map_err(|e| format!("{}: {e}", path.display()))?;
        KeySet::new()
            .with(key)
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Builds the authenticator; in dev mode also returns the issuer that mints the demo tokens.
fn authenticator(args: &Args) -> Result<(Jwt, Option<TestIssuer>), String> {
    let builder = Jwt::builder();
    let Some(path) = &args.key_file else {
        let issuer = TestIssuer::es256().with_kid("dev-1");
        let jwt = builder
            .key(issuer.key())
            .issuer(args.issuer.as_deref().unwrap_or(DEV_ISSUER))
            .audience(args.audience.as_deref().unwrap_or(DEV_ISSUER))
            .build()
            .map_err(|e| e.to_string())?;
        return Ok((jwt, Some(issuer)));
    };
    let mut builder = builder.keys(load_keys(path)?);
    if let Some(iss) = &args.issuer {
        builder = builder.issuer(iss.as_str());
    }
    builder = match &args.audience {
        Some(aud) => builder.audience(aud.as_str()),
        None => {
            eprintln!(
                "warning: no --audience given; tokens for any audience are accepted. \
                 Pass --audience to accept only tokens meant for this server."
            );
            builder.any_audience()
        }
    };
    Ok((builder.build().map_err(|e| e.to_string())?, None))
}

fn print_dev_tokens(issuer: &TestIssuer, args: &Args, addr: SocketAddr) {
    let iss = args.issuer.as_deref().unwrap_or(DEV_ISSUER);
    let aud = args.audience.as_deref().unwrap_or(DEV_ISSUER);
    let lifetime = Duration::from_secs(3600);
    let with_scope = issuer.mint(claims("dev-user", HEALTH_SCOPE, lifetime).iss(iss).aud(aud));
    let without_scope = issuer.mint(claims("dev-user", "", lifetime).iss(iss).aud(aud));
    println!("dev mode: generated an ES256 key (kid dev-1); issuer and audience {iss:?} / {aud:?}");
    println!();
    println!("token with scope {HEALTH_SCOPE} (valid 1 h):");
    println!("  {with_scope}");
    println!("token without scopes (valid 1 h):");
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

/// Refuses `Check` and `Watch` unless the verified [`Principal`] holds `health:read`.
///
/// A stand-in, kept in the example on purpose: a real scope guard (a per-gRPC-method scope
/// table in a `scope` module) comes with a later issue. It must sit *inside*
/// [`BearerAuthLayer`], which is what puts the `Principal` in the request extensions.
#[derive(Debug, Clone)]
struct RequireHealthScopeLayer {
    renderer: Renderer,
}

impl<S> Layer<S> for RequireHealthScopeLayer {
    type Service = RequireHealthScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireHealthScope {
            inner,
            renderer: self.renderer.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct RequireHealthScope<S> {
    inner: S,
    renderer: Renderer,
}

type GuardFuture<F, B, E> = Either<
    Ready<Result<http::Response<AuthBody<B>>, E>>,
    MapOk<F, fn(http::Response<B>) -> http::Response<AuthBody<B>>>,
>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RequireHealthScope<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = GuardFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        if GUARDED_PATHS.contains(&req.uri().path()) {
            let refusal = match req.extensions().get::<Principal>() {
                None => Some(AuthError::new(AuthErrorKind::MissingCredentials)),
                Some(p) if !p.scopes().contains(HEALTH_SCOPE) => {
                    Some(AuthError::insufficient_scope(HEALTH_SCOPE))
                }
                Some(_) => None,
            };
            if let Some(err) = refusal {
                return Either::Left(ready(Ok(self.renderer.render_grpc(err))));
            }
        }
        let wrap: fn(http::Response<ResBody>) -> http::Response<AuthBody<ResBody>> =
            |res| res.map(AuthBody::new);
        Either::Right(self.inner.call(req).map_ok(wrap))
    }
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
    tracing::info!("shutting down");
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

    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(ArgsError::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ArgsError::Usage(msg)) => {
            eprintln!("error: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (jwt, dev_issuer) = match authenticator(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };

    let listener = match tokio::net::TcpListener::bind(args.bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot bind {}: {e}", args.bind);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(args.bind);
    if let Some(issuer) = &dev_issuer {
        print_dev_tokens(issuer, &args, addr);
    }

    let (_reporter, health) = tonic_health::server::health_reporter();
    let server = Server::builder()
        .layer(BearerAuthLayer::new(jwt).realm(REALM))
        .layer(RequireHealthScopeLayer {
            renderer: Renderer::default().with_realm(REALM),
        })
        .add_service(health);

    println!("listening on http://{addr}");
    let result = server
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown_signal())
        .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: server failed: {e}");
            ExitCode::FAILURE
        }
    }
}
