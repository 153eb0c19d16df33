//! The reference server: an axum API behind `BearerAuthLayer`.
//!
//! Run with
//!
//! ```not_rust
//! cargo run --example server
//! ```
//!
//! With no key source this starts in **dev mode**: it generates an ES256 signing key, limits
//! each caller to 5 requests at once then one per 2 s (unless `--rate-limit` says otherwise),
//! prints ready-made tokens with different scopes and `curl` lines (each ending in
//! `# expect STATUS`: 200, 400, 401, 403 and 429), then `listening on http://ADDR`. Paste the `curl` lines in another shell, in order.
//!
//! To verify tokens from a real issuer instead, give one key source:
//!
//! ```not_rust
//! cargo run --example server -- --key-file public.pem --issuer https://issuer.example --audience api://items
//! cargo run --example server -- --key-file jwks.json --issuer https://issuer.example --audience api://items
//! cargo run --example server -- --jwks-url https://issuer.example/jwks.json --issuer https://issuer.example --audience api://items
//! cargo run --example server -- --oidc-issuer https://login.example.com --audience api://items
//! ```
//!
//! Options:
//!
//! ```not_rust
//! --bind ADDR         address to listen on (default 127.0.0.1:3000; port 0 picks one)
//! --key-file PATH     a PEM public key, or a JWK Set (JSON) file
//! --jwks-url URL      a remote JWK Set, fetched at start, refreshed in the background and at
//!                     once when a token names an unknown `kid`
//! --oidc-issuer URL   an OpenID Connect issuer: its keys are found through
//!                     URL/.well-known/openid-configuration, and `iss` must equal URL
//!                     (at most one of these three; none = dev mode)
//! --issuer ISS        required `iss` (dev mode default: tower-bearer-dev)
//! --audience AUD      required `aud` (dev mode default: tower-bearer-dev)
//! --rate-limit N/D    per-caller limit keyed on the verified `sub` (e.g. 5/10s, 100/1m):
//!                     N requests at once, then one per D/N; 429 with Retry-After beyond it
//! --redis-url URL     keep rate-limit and revocation state in Redis, shared by every
//!                     instance using it (Redis unreachable: 503)
//! --require-dpop      every protected route needs DPoP-bound tokens (RFC 9449): `cnf.jkt`
//!                     in the token, and `Authorization: DPoP <token>` with a proof signed
//!                     by that key in the `DPoP` header. Dev mode then prints DPoP-bound
//!                     tokens, the demo client's key, and requests signed with
//!                     `cargo run --example dpop_client`
//! --help              this help
//! ```
//!
//! Usage errors exit with status 2; a key source that cannot be loaded (an unreadable file, a
//! JWK Set or discovery document that cannot be fetched) exits with status 1.
//!
//! Routes:
//!
//! | route | needs |
//! |---|---|
//! | `GET /health` | nothing |
//! | `GET /me` | any valid token |
//! | `GET /ping` | any valid token; the same answer as `/health` (load tests compare the two) |
//! | `GET /items` | scope `items:read` |
//! | `POST /items` (`{"name": "..."}`) | scope `items:write` |
//! | `DELETE /items/{id}` | scopes `items:write` and `admin` |
//! | `POST /revoke` (`{"jti": "..."}`) | scope `admin` |
//!
//! Logs (including the audit events of target `tower_bearer::audit`) go to stderr; set
//! `RUST_LOG` to change the filter, e.g. `RUST_LOG=info,tower_bearer::audit=debug` to see
//! accepted requests too. The server stops cleanly on Ctrl-C and SIGTERM.

#[path = "common/mod.rs"]
mod common;

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use common::{Cli, DevMode, REALM};
use serde_json::{Value, json};
use tower_bearer::lifecycle::{Lifecycle, MemoryRevocations, RedisRevocations, Revocation};
use tower_bearer::rate_limit::Quota;
use tower_bearer::scope::ScopeGuardLayer;
use tower_bearer::{BearerAuthLayer, Principal};

const CLI: Cli = Cli {
    name: "server",
    default_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3000),
    key_flags: true,
    revocations: true,
    note: "",
};
/// How long a revoked token id is remembered: the revocation request carries only the `jti`,
/// not the token's `exp`, so entries are kept for a day, longer than the tokens of common
/// issuers live (a token living longer would be refused for that day only).
const REVOCATION_RETENTION: Duration = Duration::from_secs(24 * 3600);

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

#[derive(Debug)]
struct AppState {
    items: Mutex<Vec<Value>>,
    next_id: Mutex<u64>,
    lifecycle: Lifecycle,
}

type Shared = Arc<AppState>;

/// A refusal from a handler (scope refusals come from the guards, before any handler).
enum Rejection {
    /// A 400 with a JSON error body.
    BadRequest(String),
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Self::BadRequest(description) => {
                let body = json!({"error": "invalid_request", "error_description": description});
                (StatusCode::BAD_REQUEST, Json(body)).into_response()
            }
        }
    }
}

/// A guard for `route_layer`: 403 `insufficient_scope` naming the scopes of `policy`
/// (RFC 6750 §3.1) unless the token satisfies it.
fn guard(policy: &str) -> ScopeGuardLayer {
    ScopeGuardLayer::parse(policy).expect("valid scope policy")
}

/// Parses a JSON object body and reads one string member of it.
fn string_member(body: &Bytes, name: &str) -> Result<String, Rejection> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| Rejection::BadRequest("body must be a JSON object".into()))?;
    match value.get(name) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => Ok(s.clone()),
        _ => Err(Rejection::BadRequest(format!(
            "`{name}` must be a non-empty string of at most 256 bytes"
        ))),
    }
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn me(principal: Principal) -> Json<Value> {
    Json(json!({
        "sub": principal.subject(),
        "client_id": principal.client_id(),
        "scopes": principal.scopes().iter().collect::<Vec<_>>(),
        "exp": principal.expires_at().map(unix_seconds),
    }))
}

async fn list_items(State(state): State<Shared>) -> Result<Json<Value>, Rejection> {
    let items = state.items.lock().expect("items lock").clone();
    Ok(Json(Value::Array(items)))
}

async fn create_item(
    State(state): State<Shared>,
    principal: Principal,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Rejection> {
    let name = string_member(&body, "name")?;
    let id = {
        let mut next = state.next_id.lock().expect("id lock");
        *next += 1;
        *next - 1
    };
    let item = json!({"id": id, "name": name, "created_by": principal.subject()});
    state.items.lock().expect("items lock").push(item.clone());
    Ok((StatusCode::CREATED, Json(item)))
}

async fn delete_item(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<StatusCode, Rejection> {
    let Ok(id) = id.parse::<u64>() else {
        return Ok(StatusCode::NOT_FOUND);
    };
    let mut items = state.items.lock().expect("items lock");
    let before = items.len();
    items.retain(|item| item["id"].as_u64() != Some(id));
    Ok(if items.len() < before {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    })
}

async fn revoke(
    State(state): State<Shared>,
    principal: Principal,
    body: Bytes,
) -> Result<Response, Rejection> {
    let jti = string_member(&body, "jti")?;
    let revocation = Revocation::TokenId {
        jti: jti.clone(),
        until: SystemTime::now() + REVOCATION_RETENTION,
    };
    match state.lifecycle.revoke(revocation).await {
        Ok(()) => {
            tracing::info!(revoked_by = principal.subject(), %jti, "token revoked");
            Ok(Json(json!({"revoked": jti})).into_response())
        }
        Err(e) => Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "temporarily_unavailable", "error_description": e.to_string()})),
        )
            .into_response()),
    }
}

/// Tokens whose "not revoked" answer `--revocation-cache` keeps.
const REVOCATION_CACHE_ENTRIES: usize = 100_000;

/// The most tokens `DEV_LOAD_TOKENS` mints.
const MAX_LOAD_TOKENS: usize = 10_000;

/// Tokens minted in dev mode (and `DEV_LOAD_TOKENS` more, one caller each, for load tests),
/// and the `curl` lines that exercise them.
fn dev_banner(dev: &DevMode, addr: SocketAddr) -> String {
    let mint = |sub: &str, scope: &str| {
        let c = dev.claims(sub, scope).client_id("dev-cli");
        let jti = Value::from(&c)["jti"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (dev.mint(c), jti)
    };
    let (reader, reader_jti) = mint("reader", "items:read");
    let (writer, _) = mint("writer", "items:read items:write");
    let (admin, _) = mint("admin", "items:read items:write admin");
    let (nobody, _) = mint("nobody", "");
    let (burst, _) = mint("burst", "");

    let url = |path: &str| format!("http://{addr}{path}");
    let bearer = |token: &str| format!(" -H 'Authorization: Bearer {token}'");
    let json_body = |body: &str| format!(" -H 'Content-Type: application/json' -d '{body}'");
    let curl = |method: &str, auth: &str, body: &str, path: &str, expect: u16| {
        let method = if method == "GET" {
            String::new()
        } else {
            format!(" -X {method}")
        };
        format!(
            "curl -s -o /dev/null -w '%{{http_code}}\\n'{method}{auth}{body} {}   # expect {expect}\n",
            url(path)
        )
    };

    let mut out = String::new();
    out.push_str(&dev.summary());
    out.push_str("\n\n");
    for (name, scope, token) in [
        ("READER", "items:read", &reader),
        ("WRITER", "items:read items:write", &writer),
        ("ADMIN", "items:read items:write admin", &admin),
        ("NOSCOPE", "", &nobody),
        ("BURST", "", &burst),
    ] {
        out.push_str(&format!("# scope \"{scope}\"\n{name}_TOKEN={token}\n"));
    }
    // `scripts/loadtest.sh` sets this for its many-callers run: one token per caller.
    let load_tokens = match std::env::var("DEV_LOAD_TOKENS") {
        Err(_) => 0,
        Ok(n) => match n.parse::<usize>() {
            Ok(n) if n <= MAX_LOAD_TOKENS => n,
            _ => {
                tracing::warn!(
                    value = %n,
                    "DEV_LOAD_TOKENS wants a number up to {MAX_LOAD_TOKENS}: minting none"
                );
                0
            }
        },
    };
    if load_tokens > 0 {
        out.push_str(&format!(
            "# DEV_LOAD_TOKENS: {load_tokens} callers, scope \"items:read\"\n"
        ));
        for i in 0..load_tokens {
            let (token, _) = mint(&format!("load-{i}"), "items:read");
            out.push_str(&format!("LOAD_TOKEN={token}\n"));
        }
    }
    out.push_str("\n# try it (status codes in order):\n");
    let item = r#"{"name":"pear"}"#;
    let lines = [
        curl("GET", "", "", "/health", 200),
        curl("GET", "", "", "/me", 401),
        curl("GET", &bearer("not-a-jwt"), "", "/me", 401),
        curl("GET", " -H 'Authorization: Bearer ***'", "", "/me", 400),
        curl("GET", &bearer(&reader), "", "/me", 200),
        curl("GET", &bearer(&nobody), "", "/items", 403),
        curl("GET", &bearer(&reader), "", "/items", 200),
        curl("POST", &bearer(&reader), &json_body(item), "/items", 403),
        curl("POST", &bearer(&writer), &json_body(item), "/items", 201),
        curl("DELETE", &bearer(&writer), "", "/items/1", 403),
        curl("DELETE", &bearer(&admin), "", "/items/1", 204),
        curl(
            "POST",
            &bearer(&writer),
            &json_body(&format!(r#"{{"jti":"{reader_jti}"}}"#)),
            "/revoke",
            403,
        ),
        curl(
            "POST",
            &bearer(&admin),
            &json_body("not json"),
            "/revoke",
            400,
        ),
        curl(
            "POST",
            &bearer(&admin),
            &json_body(&format!(r#"{{"jti":"{reader_jti}"}}"#)),
            "/revoke",
            200,
        ),
        curl("GET", &bearer(&reader), "", "/items", 401),
        // The per-caller limit (dev default 5/10s): the sixth request at once is refused.
        curl("GET", &bearer(&burst), "", "/me", 200),
        curl("GET", &bearer(&burst), "", "/me", 200),
        curl("GET", &bearer(&burst), "", "/me", 200),
        curl("GET", &bearer(&burst), "", "/me", 200),
        curl("GET", &bearer(&burst), "", "/me", 200),
        curl("GET", &bearer(&burst), "", "/me", 429),
    ];
    for line in lines {
        out.push_str(&line);
    }
    out.push('\n');
    out
}

/// Dev mode with `--require-dpop`: tokens bound to the demo client's key, the key itself
/// (so `dpop_client` can sign proofs with it), and `curl` lines that make proofs on the fly.
fn dpop_banner(dev: &DevMode, addr: SocketAddr) -> String {
    use base64::Engine as _;
    let key = &dev.client_key;
    let mint = |sub: &str, scope: &str| {
        dev.mint(dev.claims(sub, scope).client_id("dev-cli").dpop_bound(key))
    };
    let reader = mint("reader", "items:read");
    let admin = mint("admin", "items:read items:write admin");
    let plain = dev.mint(dev.claims("plain", "items:read").client_id("dev-cli"));
    let pkcs8 = key
        .to_pkcs8()
        .map(|der| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(der))
        .unwrap_or_default();

    let url = |path: &str| format!("http://{addr}{path}");
    let status = "curl -s -o /dev/null -w '%{http_code}\\n'";
    let dpop_curl = |method: &str, var: &str, path: &str, expect: u16| {
        let method_flag = if method == "GET" {
            String::new()
        } else {
            format!(" -X {method}")
        };
        format!(
            "{status}{method_flag} -H \"Authorization: DPoP ${var}\" \
             -H \"DPoP: $(cargo run -q --example dpop_client -- --key $DPOP_KEY --token ${var} {method} {u})\" \
             {u}   # expect {expect}\n",
            u = url(path)
        )
    };

    let mut out = String::new();
    out.push_str(&dev.summary());
    out.push_str(
        "\n\nDPoP required (--require-dpop): tokens are bound (cnf.jkt) to the demo client's\n",
    );
    out.push_str(&format!(
        "ES256 key, thumbprint {}; each request needs a fresh proof signed by it.\n\n",
        key.thumbprint()
    ));
    out.push_str(&format!(
        "# the client's private key (PKCS#8, base64url)\nDPOP_KEY={pkcs8}\n"
    ));
    out.push_str(&format!(
        "# scope \"items:read\", DPoP-bound\nREADER_TOKEN={reader}\n"
    ));
    out.push_str(&format!(
        "# scope \"items:read items:write admin\", DPoP-bound\nADMIN_TOKEN={admin}\n"
    ));
    out.push_str(&format!(
        "# scope \"items:read\", a plain bearer token\nPLAIN_TOKEN={plain}\n"
    ));
    out.push_str("\n# try it (paste the variables above first):\n");
    out.push_str(&format!("{status} {}   # expect 200\n", url("/health")));
    out.push_str(&format!(
        "{status} -H \"Authorization: Bearer $PLAIN_TOKEN\" {}   # expect 401 (not sender-constrained)\n",
        url("/items")
    ));
    out.push_str(&format!(
        "{status} -H \"Authorization: Bearer $READER_TOKEN\" {}   # expect 401 (DPoP-bound token sent as Bearer)\n",
        url("/items")
    ));
    out.push_str(&format!(
        "{status} -H \"Authorization: DPoP $READER_TOKEN\" {}   # expect 401 (no proof)\n",
        url("/items")
    ));
    out.push_str(&dpop_curl("GET", "READER_TOKEN", "/items", 200));
    out.push_str(&dpop_curl("DELETE", "READER_TOKEN", "/items/1", 403));
    out.push_str(&dpop_curl("DELETE", "ADMIN_TOKEN", "/items/1", 204));
    out.push('\n');
    out
}

/// The per-caller limit of dev mode when `--rate-limit` is not given: 5 at once, then one
/// per 2 s.
fn dev_rate_limit() -> Quota {
    Quota::per(Duration::from_secs(10), 5)
}

fn main() -> ExitCode {
    common::main(&CLI, "info,tower_bearer::audit=info", run)
}

async fn run(mut opts: common::Options) -> Result<(), String> {
    let (jwt, dev) = common::authenticator(&opts).await?;
    if dev.is_some() && opts.rate_limit.is_none() {
        // Dev mode shows a 429 too: 5 requests at once per caller, then one per 2 s.
        opts.rate_limit = Some(dev_rate_limit());
    }

    // The JWT checks, then the lifecycle checks: revocation, in Redis when `--redis-url` is
    // given (shared by every instance), else in this process.
    let lifecycle = Lifecycle::new(common::with_opaque_tokens(&opts, jwt)?);
    let lifecycle = match &opts.redis_url {
        Some(url) => {
            let store = RedisRevocations::connect(url)
                .await
                .map_err(|e| format!("--redis-url {url}: {e}"))?;
            lifecycle.revocations(match opts.revocation_cache {
                Some(max_age) => store.cache_answers(max_age, REVOCATION_CACHE_ENTRIES),
                None => store,
            })
        }
        None => lifecycle.revocations(MemoryRevocations::default()),
    };

    let state = Arc::new(AppState {
        items: Mutex::new(vec![
            json!({"id": 1, "name": "apple", "created_by": "seed"}),
            json!({"id": 2, "name": "banana", "created_by": "seed"}),
        ]),
        next_id: Mutex::new(3),
        lifecycle: lifecycle.clone(),
    });

    // Scope guards run after the bearer layer (they read its `Principal`) and before the
    // handlers, so a request lacking a scope never reaches a handler or has its body read.
    let protected = Router::new()
        .route("/me", get(me))
        .route(
            "/items",
            get(list_items)
                .route_layer(guard("items:read"))
                .merge(post(create_item).route_layer(guard("items:write"))),
        )
        .route(
            "/items/{id}",
            delete(delete_item).route_layer(guard("items:write AND admin")),
        )
        .route("/revoke", post(revoke).route_layer(guard("admin")))
        .with_state(state)
        // The handler of `/health` behind the whole stack: the load test's protected route.
        // Merged in without the state, as `/health` is, so that the two differ only by the
        // layers (a route with state clones its `Arc` on every request).
        .merge(Router::new().route("/ping", get(health)));
    let mut bearer = BearerAuthLayer::new(lifecycle).realm(REALM);
    if let Some(constraints) = common::sender_constraints(&opts).await? {
        bearer = bearer.sender_constraints(constraints);
    }
    // The limit runs in the bearer layer itself: it counts verified callers only, and one
    // service does both jobs.
    if let Some(limit) = common::rate_limit(&opts).await? {
        bearer = bearer.rate_limit(limit);
    }
    let protected = protected.layer(bearer);
    // `/health` is merged in from outside the layer: it never sees a token check.
    let app = Router::new().route("/health", get(health)).merge(protected);

    let (listener, addr) = common::bind(opts.bind).await?;
    let shutdown = common::shutdown_signal()?;

    let mut stdout = std::io::stdout().lock();
    match &dev {
        Some(dev) if opts.require_dpop => {
            let _ = stdout.write_all(dpop_banner(dev, addr).as_bytes());
        }
        Some(dev) => {
            let _ = stdout.write_all(dev_banner(dev, addr).as_bytes());
        }
        None => {}
    }
    let _ = writeln!(stdout, "listening on http://{addr}");
    let _ = stdout.flush();
    drop(stdout);

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("server error: {e}"))
}
