//! What the examples share: the command line (`--bind` and the key-source flags), the
//! authenticator those flags describe (dev mode, a key file, a remote JWK Set or OIDC
//! discovery), dev-mode tokens, logging and the shutdown signal.
//!
//! Each example includes it with `#[path = "common/mod.rs"] mod common;` (Cargo does not take
//! a folder without `main.rs` for an example of its own).

use std::future::Future;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;
use tokio::net::TcpListener;
use tower_bearer::jwks::RemoteJwks;
use tower_bearer::keys::{Key, KeySet};

use tower_bearer::dpop::{Dpop, RedisReplay};
use tower_bearer::introspection::Introspection;
use tower_bearer::rate_limit::{Quota, RateLimitLayer, RedisStore};
use tower_bearer::sender::{SenderConstraints, SenderPolicy};
use tower_bearer::testing::{Claims, DpopKey, TestIssuer, claims};
use tower_bearer::validate::Jwt;
use tower_bearer::validate::{Authenticator, Chain};
use tracing_subscriber::EnvFilter;

/// The realm named in every challenge the examples send.
pub(crate) const REALM: &str = "tower-bearer";
/// Issuer and audience of dev-mode tokens (unless `--issuer` / `--audience` say otherwise).
pub(crate) const DEV_NAME: &str = "tower-bearer-dev";
/// Lifetime of dev-mode tokens.
pub(crate) const DEV_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The usage lines of the key-source and claim flags, shared by the examples that take them.
const KEY_FLAGS_HELP: &str = "  --key-file PATH     a PEM public key, or a JWK Set (JSON) file
  --jwks-url URL      a remote JWK Set, fetched at start, refreshed in the background and at
                      once when a token names an unknown `kid`
  --oidc-issuer URL   an OpenID Connect issuer: its keys are found through
                      URL/.well-known/openid-configuration, and `iss` must equal URL
                      (at most one of these three; none = dev mode: a signing key is
                      generated and ready tokens are printed)
  --issuer ISS        required `iss` claim (dev mode default: tower-bearer-dev)
  --audience AUD      required `aud` claim (dev mode default: tower-bearer-dev)
  --rate-limit N/D    per-caller limit keyed on the verified `sub`: N requests at once, then
                      one per D/N (e.g. 5/10s, 100/1m)
  --introspection-url URL --client-id ID --client-secret S
                      also accept opaque (non-JWT) tokens, checked by RFC 7662
                      introspection at URL with HTTP Basic client authentication
  --redis-url URL     keep rate-limit (and, in the server, revocation) state in Redis
                      (redis://127.0.0.1:6379), shared by every instance using it.
                      Redis down: 503
  --require-dpop      every protected route needs DPoP-bound tokens (RFC 9449): the
                      token's cnf.jkt, and a proof signed by that key in the DPoP header
                      (proof jti replay state in Redis with --redis-url)
";

/// The usage lines of `--revocation-cache` (examples that keep revocations).
const REVOCATION_FLAGS_HELP: &str = "  --revocation-cache DURATION
                      with --redis-url: use each \"not revoked\" answer for up to DURATION
                      (e.g. 1s, 500ms): one Redis round trip per token per DURATION, and a
                      revocation made through another instance takes effect here up to
                      DURATION later (default: no cache)
";

/// The command line of one example.
#[derive(Debug)]
pub(crate) struct Cli {
    /// The example's name, for the usage text.
    pub(crate) name: &'static str,
    /// Where it listens without `--bind`.
    pub(crate) default_bind: SocketAddr,
    /// Whether it takes the key-source and claim flags (without them: dev mode only).
    pub(crate) key_flags: bool,
    /// Whether it keeps revocations (and takes `--revocation-cache`).
    pub(crate) revocations: bool,
    /// A paragraph after the flags.
    pub(crate) note: &'static str,
}

/// Where the verification keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// A signing key generated at start; tokens are printed.
    Dev,
    /// `--key-file PATH`.
    File(String),
    /// `--jwks-url URL`.
    JwksUrl(String),
    /// `--oidc-issuer URL`.
    OidcIssuer(String),
}

impl KeySource {
    fn flag(&self) -> &'static str {
        match self {
            KeySource::Dev => "dev mode",
            KeySource::File(_) => "--key-file",
            KeySource::JwksUrl(_) => "--jwks-url",
            KeySource::OidcIssuer(_) => "--oidc-issuer",
        }
    }
}

/// The parsed command line.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) bind: SocketAddr,
    pub(crate) keys: KeySource,
    pub(crate) issuer: Option<String>,
    pub(crate) audience: Option<String>,
    pub(crate) rate_limit: Option<Quota>,
    pub(crate) redis_url: Option<String>,
    pub(crate) revocation_cache: Option<Duration>,
    pub(crate) introspection_url: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<String>,
    pub(crate) require_dpop: bool,
}

/// Why parsing stopped.
#[derive(Debug)]
enum ArgsError {
    Help,
    Usage(String),
}

impl Cli {
    /// The help text.
    fn usage(&self) -> String {
        let bind_help = format!(
            "  --bind ADDR         address to listen on (default {}; port 0 picks one)\n",
            self.default_bind
        );
        let mut out = format!("usage: {} [--bind ADDR]", self.name);
        if self.key_flags {
            let indent = " ".repeat("usage: ".len() + self.name.len());
            out.push_str(" [--key-file PATH | --jwks-url URL | --oidc-issuer URL]\n");
            out.push_str(&format!("{indent} [--issuer ISS] [--audience AUD]\n"));
            out.push_str(&format!(
                "{indent} [--rate-limit N/DURATION] [--redis-url URL] [--require-dpop]\n"
            ));
            if self.revocations {
                out.push_str(&format!("{indent} [--revocation-cache DURATION]\n"));
            }
            out.push('\n');
            out.push_str(&bind_help);
            out.push_str(KEY_FLAGS_HELP);
            if self.revocations {
                out.push_str(REVOCATION_FLAGS_HELP);
            }
        } else {
            out.push_str("\n\n");
            out.push_str(&bind_help);
        }
        out.push_str("  --help              print this help\n");
        if !self.note.is_empty() {
            out.push('\n');
            out.push_str(self.note);
            out.push('\n');
        }
        out
    }

    /// Parses the process arguments. `Err(code)`: exit now with this code (0 after `--help`,
    /// 2 after a usage error, which is printed with the help text on stderr).
    fn parse_env(&self) -> Result<Options, ExitCode> {
        match self.parse(std::env::args().skip(1)) {
            Ok(opts) => Ok(opts),
            Err(ArgsError::Help) => {
                print!("{}", self.usage());
                Err(ExitCode::SUCCESS)
            }
            Err(ArgsError::Usage(msg)) => {
                eprintln!("error: {msg}\n\n{}", self.usage());
                Err(ExitCode::from(2))
            }
        }
    }

    fn parse(&self, mut args: impl Iterator<Item = String>) -> Result<Options, ArgsError> {
        let mut opts = Options {
            bind: self.default_bind,
            keys: KeySource::Dev,
            issuer: None,
            audience: None,
            rate_limit: None,
            redis_url: None,
            revocation_cache: None,
            introspection_url: None,
            client_id: None,
            client_secret: None,
            require_dpop: false,
        };
        while let Some(arg) = args.next() {
            // Accept both `--flag value` and `--flag=value`.
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            if flag == "--help" || flag == "-h" {
                return Err(ArgsError::Help);
            }
            if flag == "--require-dpop" && self.key_flags {
                if inline.is_some() {
                    return Err(ArgsError::Usage("`--require-dpop` takes no value".into()));
                }
                opts.require_dpop = true;
                continue;
            }
            let known = match flag.as_str() {
                "--bind" => true,
                "--key-file"
                | "--jwks-url"
                | "--oidc-issuer"
                | "--issuer"
                | "--audience"
                | "--rate-limit"
                | "--redis-url"
                | "--introspection-url"
                | "--client-id"
                | "--client-secret" => self.key_flags,
                "--revocation-cache" => self.key_flags && self.revocations,
                _ => false,
            };
            if !known {
                return Err(ArgsError::Usage(format!("unknown argument `{arg}`")));
            }
            let Some(value) = inline.or_else(|| args.next()) else {
                return Err(ArgsError::Usage(format!("`{flag}` needs a value")));
            };
            if value.is_empty() {
                return Err(ArgsError::Usage(format!(
                    "`{flag}` needs a non-empty value"
                )));
            }
            let source = match flag.as_str() {
                "--bind" => {
                    opts.bind = value.parse().map_err(|_| {
                        ArgsError::Usage(format!(
                            "`--bind {value}` is not an address like 127.0.0.1:3000"
                        ))
                    })?;
                    continue;
                }
                "--issuer" => {
                    opts.issuer = Some(value);
                    continue;
                }
                "--audience" => {
                    opts.audience = Some(value);
                    continue;
                }
                "--rate-limit" => {
                    opts.rate_limit =
                        Some(Quota::parse(&value).map_err(|e| ArgsError::Usage(e.to_string()))?);
                    continue;
                }
                "--redis-url" => {
                    opts.redis_url = Some(value);
                    continue;
                }
                "--revocation-cache" => {
                    opts.revocation_cache = Some(parse_duration(&value).ok_or_else(|| {
                        ArgsError::Usage(format!(
                            "`--revocation-cache {value}` is not a duration like 1s or 500ms"
                        ))
                    })?);
                    continue;
                }
                "--introspection-url" => {
                    opts.introspection_url = Some(value);
                    continue;
                }
                "--client-id" => {
                    opts.client_id = Some(value);
                    continue;
                }
                "--client-secret" => {
                    opts.client_secret = Some(value);
                    continue;
                }
                "--key-file" => KeySource::File(value),
                "--jwks-url" => KeySource::JwksUrl(value),
                _ => KeySource::OidcIssuer(value),
            };
            if opts.keys != KeySource::Dev {
                return Err(ArgsError::Usage(format!(
                    "`{}` and `{}` cannot be used together: give one key source",
                    opts.keys.flag(),
                    source.flag()
                )));
            }
            opts.keys = source;
        }
        if opts.revocation_cache.is_some() && opts.redis_url.is_none() {
            return Err(ArgsError::Usage(
                "`--revocation-cache` goes with `--redis-url`".into(),
            ));
        }
        let credentials = (opts.client_id.is_some(), opts.client_secret.is_some());
        if opts.introspection_url.is_some() != (credentials == (true, true))
            || credentials.0 != credentials.1
        {
            return Err(ArgsError::Usage(
                "`--introspection-url`, `--client-id` and `--client-secret` go together".into(),
            ));
        }
        Ok(opts)
    }
}

/// `500ms`, `1s`, `2m`: a whole number and a unit.
fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        _ => None,
    }
}

/// A signing key generated at start, and the claims its tokens carry.
#[derive(Debug)]
pub(crate) struct DevMode {
    issuer: TestIssuer,
    iss: String,
    aud: String,
    /// The demo client's DPoP key, the one `--require-dpop` tokens are bound to.
    #[allow(dead_code)] // only the server prints DPoP-bound tokens
    pub(crate) client_key: DpopKey,
}

impl DevMode {
    /// Claims for `sub` with `scope`, with this mode's `iss` and `aud`, valid
    /// [`DEV_TOKEN_LIFETIME`].
    pub(crate) fn claims(&self, sub: &str, scope: &str) -> Claims {
        claims(sub, scope, DEV_TOKEN_LIFETIME)
            .iss(&self.iss)
            .aud(&self.aud)
    }

    /// A signed token.
    pub(crate) fn mint(&self, claims: Claims) -> String {
        self.issuer.mint(claims)
    }

    /// One line saying what dev mode set up.
    pub(crate) fn summary(&self) -> String {
        format!(
            "dev mode: ES256 key \"dev-1\" generated at start; iss \"{}\", aud \"{}\"; tokens valid {} s",
            self.iss,
            self.aud,
            DEV_TOKEN_LIFETIME.as_secs()
        )
    }
}

/// Builds the authenticator the options describe; in dev mode also the key that mints the
/// demo tokens. Fetches the remote key set (and discovery document) first, if any: an error
/// says why it failed.
pub(crate) async fn authenticator(opts: &Options) -> Result<(Jwt, Option<DevMode>), String> {
    let mut builder = Jwt::builder();
    let mut dev = None;
    match &opts.keys {
        KeySource::Dev => {
            let mode = DevMode {
                issuer: TestIssuer::es256().with_kid("dev-1"),
                iss: opts.issuer.clone().unwrap_or_else(|| DEV_NAME.to_owned()),
                aud: opts.audience.clone().unwrap_or_else(|| DEV_NAME.to_owned()),
                client_key: DpopKey::es256(),
            };
            builder = builder
                .key(mode.issuer.key())
                .issuer(mode.iss.as_str())
                .audience(mode.aud.as_str());
            dev = Some(mode);
        }
        KeySource::File(path) => builder = builder.keys(load_key_file(path)?),
        KeySource::JwksUrl(url) => {
            let remote = RemoteJwks::builder(url.as_str())
                .client(http_client()?)
                .build()
                .await
                .map_err(|e| format!("--jwks-url {url}: {e}"))?;
            builder = builder.jwks(remote);
        }
        KeySource::OidcIssuer(issuer) => {
            // Pins `iss` to the discovered issuer; a different `--issuer` fails `build()`.
            let remote = RemoteJwks::discover(issuer.as_str())
                .client(http_client()?)
                .build()
                .await
                .map_err(|e| format!("--oidc-issuer {issuer}: {e}"))?;
            builder = builder.jwks(remote);
        }
    }
    if dev.is_none() {
        if let Some(iss) = &opts.issuer {
            builder = builder.issuer(iss.as_str());
        }
        builder = match &opts.audience {
            Some(aud) => builder.audience(aud.as_str()),
            None => {
                eprintln!(
                    "warning: no --audience given: tokens issued for ANY audience are accepted"
                );
                builder.any_audience()
            }
        };
    }
    let jwt = builder.build().map_err(|e| e.to_string())?;
    Ok((jwt, dev))
}

/// The authenticator for every token: the JWT one, and with `--introspection-url` a chain
/// that sends opaque tokens to RFC 7662 introspection (with the same audience rule).
#[allow(dead_code)] // `hyper` takes no key flags
pub(crate) fn with_opaque_tokens(
    opts: &Options,
    jwt: Jwt,
) -> Result<Arc<dyn Authenticator>, String> {
    let (Some(url), Some(id), Some(secret)) = (
        &opts.introspection_url,
        &opts.client_id,
        &opts.client_secret,
    ) else {
        return Ok(Arc::new(jwt));
    };
    let mut builder = Introspection::builder(url.as_str())
        .client(http_client()?)
        .client_basic(id.as_str(), secret.as_str());
    if let Some(aud) = &opts.audience {
        builder = builder.audience(aud.as_str());
    }
    if let Some(iss) = &opts.issuer {
        builder = builder.issuer(iss.as_str());
    }
    let introspection = builder
        .build()
        .map_err(|e| format!("--introspection-url {url}: {e}"))?;
    Ok(Arc::new(Chain::new().jwt(jwt).fallback(introspection)))
}

/// The per-caller limit the options describe (keyed on the verified subject), in Redis when
/// `--redis-url` is given (connecting first: an error says why it failed), else in memory.
#[allow(dead_code)] // `hyper` takes no limit flags
pub(crate) async fn rate_limit(opts: &Options) -> Result<Option<RateLimitLayer>, String> {
    let Some(quota) = opts.rate_limit else {
        return Ok(None);
    };
    let layer = RateLimitLayer::new(quota);
    Ok(Some(match &opts.redis_url {
        Some(url) => {
            let store = RedisStore::connect(url)
                .await
                .map_err(|e| format!("--redis-url {url}: {e}"))?;
            layer.store(store)
        }
        None => layer,
    }))
}

/// With `--require-dpop`: DPoP proofs verified (algorithms ES256, ES384, EdDSA, PS256,
/// RS256; `htu` from the `Host` header, since the examples serve plain HTTP), their `jti`s
/// remembered in Redis with `--redis-url`, and sender-constrained tokens required on every
/// protected route.
#[allow(dead_code)] // `hyper` takes no key flags
pub(crate) async fn sender_constraints(
    opts: &Options,
) -> Result<Option<SenderConstraints>, String> {
    if !opts.require_dpop {
        return Ok(None);
    }
    let mut dpop = Dpop::builder();
    if let Some(url) = &opts.redis_url {
        dpop = dpop.replay_store(
            RedisReplay::connect(url)
                .await
                .map_err(|e| format!("--redis-url {url}: {e}"))?,
        );
    }
    let dpop = dpop.build().map_err(|e| e.to_string())?;
    Ok(Some(
        SenderConstraints::new()
            .dpop(dpop)
            .policy(SenderPolicy::Require),
    ))
}

/// The HTTP client for key sets and discovery documents (system proxy settings apply).
fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Reads `--key-file`: a JWK Set when it starts with `{`, a PEM public key otherwise.
fn load_key_file(path: &str) -> Result<KeySet, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read key file {path}: {e}"))?;
    if bytes.trim_ascii_start().starts_with(b"{") {
        let text =
            std::str::from_utf8(&bytes).map_err(|_| format!("{path}: a JWK Set must be UTF-8"))?;
        KeySet::from_jwks_json(text).map_err(|e| format!("{path}: {e}"))
    } else {
        let key = Key::from_pem(&bytes, None).map_err(|e| format!("{path}: {e}"))?;
        KeySet::new().with(key).map_err(|e| format!("{path}: {e}"))
    }
}

/// Logs to stderr (colours only on a terminal), filtered by `RUST_LOG` or else `default_filter`.
fn init_tracing(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .init();
}

/// Binds `addr`; returns the listener and the address it got (port 0 picks one).
pub(crate) async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot bind {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    Ok((listener, local))
}

/// Installs the Ctrl-C and SIGTERM handlers now, before `listening on` is printed (so a signal
/// sent right after it is not lost), and resolves on the first of them.
pub(crate) fn shutdown_signal() -> Result<impl Future<Output = ()>, String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let installed = signal(SignalKind::interrupt()).and_then(|interrupt| {
            signal(SignalKind::terminate()).map(|terminate| (interrupt, terminate))
        });
        let (mut interrupt, mut terminate) =
            installed.map_err(|e| format!("cannot install signal handlers: {e}"))?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
            tracing::info!("shutting down");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        })
    }
}

/// The `main` of an example: parses the command line (`--help` exits 0, a usage error 2),
/// starts logging with `default_filter` unless `RUST_LOG` is set, and runs `run` on a Tokio
/// runtime. An error from `run` is printed on stderr and exits 1.
pub(crate) fn main<F, Fut>(cli: &Cli, default_filter: &str, run: F) -> ExitCode
where
    F: FnOnce(Options) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let opts = match cli.parse_env() {
        Ok(opts) => opts,
        Err(code) => return code,
    };
    init_tracing(default_filter);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the Tokio runtime: {e}"))
        .and_then(|runtime| runtime.block_on(run(opts)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
