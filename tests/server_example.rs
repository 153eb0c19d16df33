//! Black-box tests of `examples/server.rs` (and of `examples/grpc.rs`): the built binary is
//! started on an ephemeral port of 127.0.0.1 and driven over the network, as a user would.
//! Every process started here is killed and reaped by a guard, and every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tower_bearer::testing::{TestIssuer, claims};

/// How long the server may take to print `listening on`.
const STARTUP: Duration = Duration::from_secs(60);
/// How long one HTTP exchange may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `cargo build --example NAME` may take when the binary is stale.
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

// --- locating the binary ----------------------------------------------------------------------

/// Waits for `child` up to `timeout`; `None` when it is still running.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The reference server's binary; see [`example_binary`].
fn server_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| locate_and_build("server")).clone()
}

/// The example `name`'s binary, next to this test binary:
/// `target/[TRIPLE/]PROFILE/examples/NAME`.
///
/// A plain `cargo test` builds examples before running integration tests, but
/// `cargo test --test server_example` does not, so this asks cargo for it first, with the
/// crate features this test was built with (a no-op when the binary is fresh).
fn example_binary(name: &str) -> PathBuf {
    match name {
        "server" => server_binary(),
        "grpc" => {
            static BINARY: OnceLock<PathBuf> = OnceLock::new();
            BINARY.get_or_init(|| locate_and_build("grpc")).clone()
        }
        other => panic!("no example {other} here"),
    }
}

fn locate_and_build(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let binary = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    build_example(profile_dir, name);
    assert!(
        binary.is_file(),
        "example binary not found at {}: build it with `cargo build --example {name}` \
         (a plain `cargo test` builds examples)",
        binary.display()
    );
    binary
}

fn build_example(profile_dir: &Path, name: &str) {
    let features: Vec<&str> = [
        ("aws-lc-rs", cfg!(feature = "aws-lc-rs")),
        ("rust-crypto", cfg!(feature = "rust-crypto")),
        ("axum", cfg!(feature = "axum")),
        ("tonic", cfg!(feature = "tonic")),
        ("testing", cfg!(feature = "testing")),
        ("jwks", cfg!(feature = "jwks")),
        ("reqwest", cfg!(feature = "reqwest")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--quiet",
            "--example",
            name,
            "--no-default-features",
        ])
        .args(["--features", &features.join(",")])
        .stdin(Stdio::null());
    // Same target directory, target triple and profile as this test binary.
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    let mut target_dir = profile_dir.parent().expect("target dir");
    if !target_dir.join("CACHEDIR.TAG").exists()
        && let (Some(triple), Some(parent)) = (target_dir.file_name(), target_dir.parent())
        && parent.join("CACHEDIR.TAG").exists()
    {
        cmd.arg("--target").arg(triple);
        target_dir = parent;
    }
    cmd.arg("--target-dir").arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let mut child = cmd.spawn().expect("run cargo build --example");
    match wait_timeout(&mut child, BUILD_TIMEOUT) {
        Some(status) => assert!(
            status.success(),
            "`cargo build --example {name}` failed: {status}"
        ),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`cargo build --example {name}` took longer than {BUILD_TIMEOUT:?}");
        }
    }
}

// --- the server process ------------------------------------------------------------------------

/// The example binary with `args`, its standard input closed, and no proxy settings from the
/// environment (every URL the tests give it is on 127.0.0.1).
fn command(args: &[&str]) -> Command {
    command_of("server", args)
}

/// [`command`] for the example `name`.
fn command_of(name: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(example_binary(name));
    cmd.args(args).stdin(Stdio::null());
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// The lines `reader` yields, read by a thread of its own until EOF (or until the receiver
/// is dropped and another line comes).
fn lines_of(reader: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A running server; killed and reaped when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// Everything printed to stdout up to and including `listening on http://ADDR`.
    stdout: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the reference server with `args` and waits for `listening on http://ADDR`.
    fn start(args: &[&str]) -> Server {
        Server::start_example("server", args)
    }

    /// Starts the example `name` with `args` and waits for `listening on http://ADDR`.
    fn start_example(name: &str, args: &[&str]) -> Server {
        let child = command_of(name, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server example");
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stdout: Vec::new(),
        };
        // Drains stdout for the life of the process.
        let rx = lines_of(server.child.stdout.take().expect("piped stdout"));
        let deadline = Instant::now() + STARTUP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let addr = line.strip_prefix("listening on http://").map(str::to_owned);
                    server.stdout.push(line);
                    if let Some(addr) = addr {
                        server.addr = addr.trim().parse().expect("listening address");
                        assert!(server.addr.ip().is_loopback(), "bound {}", server.addr);
                        assert_ne!(server.addr.port(), 0);
                        return server;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "no `listening on` after {STARTUP:?}; stdout so far: {:#?}",
                        server.stdout
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = wait_timeout(&mut server.child, Duration::from_secs(5));
                    panic!(
                        "the server exited ({status:?}) before listening; stdout: {:#?}",
                        server.stdout
                    )
                }
            }
        }
    }
}

/// Runs the example to completion (for argument errors), bounded in time.
fn run_to_exit(args: &[&str]) -> (ExitStatus, String) {
    let mut child = command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server example");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let Some(status) = wait_timeout(&mut child, Duration::from_secs(30)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("server {args:?} did not exit");
    };
    (status, reader.join().unwrap_or_default())
}

// --- a minimal HTTP/1.1 client -----------------------------------------------------------------

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`), read to the end.
fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Reply {
    http_body(addr, method, path, token, "")
}

/// [`http`] with a JSON body.
fn http_body(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> Reply {
    let authorization = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(a) = &authorization {
        headers.push(("Authorization", a.as_str()));
    }
    http_with(addr, method, path, &headers, body)
}

/// One request with any headers (and a JSON body when `body` is not empty).
fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in extra {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("end of headers");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        s = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

// --- temporary key files -----------------------------------------------------------------------

/// A file in the temp dir with a unique name, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(ext: &str, contents: &str) -> TempFile {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let name = format!(
            "tower-bearer-server-example-{}-{nanos}-{}.{ext}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("UTF-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// --- a JWKS endpoint and an OIDC discovery document -------------------------------------------

/// Serves a JWK Set at `/jwks` and a discovery document at `/.well-known/openid-configuration`
/// on 127.0.0.1, from a Tokio runtime of its own that is shut down when this is dropped.
struct KeyServer {
    state: Arc<KeyServerState>,
    _runtime: tokio::runtime::Runtime,
}

struct KeyServerState {
    /// `http://127.0.0.1:PORT`.
    base: String,
    keys: Mutex<Vec<Value>>,
    /// The issuer the discovery document names (`None`: the base URL, as it should).
    issuer: Mutex<Option<String>>,
    jwks_fetches: AtomicUsize,
}

async fn serve_jwks(State(state): State<Arc<KeyServerState>>) -> Json<Value> {
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys = state.keys.lock().unwrap().clone();
    Json(json!({ "keys": keys }))
}

async fn serve_discovery(State(state): State<Arc<KeyServerState>>) -> Json<Value> {
    let issuer = state.issuer.lock().unwrap().clone();
    Json(json!({
        "issuer": issuer.unwrap_or_else(|| state.base.clone()),
        "jwks_uri": format!("{}/jwks", state.base),
    }))
}

impl KeyServer {
    fn start(keys: &[&TestIssuer]) -> KeyServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(KeyServerState {
            base: format!("http://{addr}"),
            keys: Mutex::new(keys.iter().map(|k| k.jwk()).collect()),
            issuer: Mutex::new(None),
            jwks_fetches: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/jwks", get(serve_jwks))
            .route("/.well-known/openid-configuration", get(serve_discovery))
            .with_state(state.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("Tokio runtime");
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener).expect("Tokio listener")
        };
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        KeyServer {
            state,
            _runtime: runtime,
        }
    }

    /// The issuer URL (and base of both documents).
    fn base(&self) -> &str {
        &self.state.base
    }

    fn jwks_url(&self) -> String {
        format!("{}/jwks", self.state.base)
    }

    /// Publishes one more key.
    fn add(&self, issuer: &TestIssuer) {
        self.state.keys.lock().unwrap().push(issuer.jwk());
    }

    /// Makes the discovery document name `issuer` instead of the base URL.
    fn discover_as(&self, issuer: &str) {
        *self.state.issuer.lock().unwrap() = Some(issuer.to_owned());
    }

    /// How many times the JWK Set was fetched.
    fn fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }
}

/// `http://127.0.0.1:PORT` where nothing listens (the port was bound, then closed).
fn unreachable_base() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}")
}

// --- tests -------------------------------------------------------------------------------------

/// Dev mode: every printed `curl` line, run in order, answers the status it announces.
#[test]
fn dev_mode_curl_lines_answer_as_announced() {
    let server = Server::start(&["--bind", "127.0.0.1:0"]);
    let curls: Vec<(String, u16)> = server
        .stdout
        .iter()
        .filter(|l| l.starts_with("curl "))
        .map(|line| {
            let (cmd, expect) = line
                .rsplit_once("# expect ")
                .unwrap_or_else(|| panic!("curl line without `# expect`: {line}"));
            let expect = expect
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad status in {line}"));
            assert!(
                cmd.contains(&format!("http://{}/", server.addr)),
                "curl line does not target the bound address {}: {line}",
                server.addr
            );
            (cmd.trim_end().to_owned(), expect)
        })
        .collect();

    assert!(
        curls.len() >= 10,
        "only {} curl lines: {:#?}",
        curls.len(),
        server.stdout
    );
    for status in [200, 400, 401, 403, 429] {
        assert!(
            curls.iter().any(|(_, s)| *s == status),
            "no curl line expects {status}"
        );
    }
    // Four ready tokens are printed before the curl lines.
    let tokens = server
        .stdout
        .iter()
        .filter(|l| l.contains("_TOKEN=ey"))
        .count();
    assert!(
        tokens >= 4,
        "expected at least 4 printed tokens, got {tokens}"
    );

    for (i, (cmd, expect)) in curls.iter().enumerate() {
        let cmd = format!("curl --max-time 5 {}", &cmd["curl ".len()..]);
        let out = Command::new("sh")
            .args(["-c", &cmd])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run sh -c curl");
        let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert_eq!(
            got,
            expect.to_string(),
            "curl line {} answered {got}, expected {expect}: {cmd}",
            i + 1
        );
    }
}

/// `--key-file` with a PEM public key: real issuer settings, RFC 6750 challenges.
#[test]
fn key_file_pem_verifies_tokens_and_challenges() {
    let issuer = TestIssuer::rs256().with_kid("rsa-1");
    let pem = TempFile::new("pem", &issuer.public_key_pem().expect("RSA has a PEM"));
    let iss = "https://issuer.test";
    let aud = "api://items";
    let server = Server::start(&[
        "--bind",
        "127.0.0.1:0",
        "--key-file",
        pem.path(),
        "--issuer",
        iss,
        "--audience",
        aud,
    ]);
    // Not dev mode: no tokens printed.
    assert!(
        !server
            .stdout
            .iter()
            .any(|l| l.contains("_TOKEN=") || l.starts_with("curl ")),
        "{:#?}",
        server.stdout
    );

    let health = http(server.addr, "GET", "/health", None);
    assert_eq!(health.status, 200, "{health:?}");

    let token = issuer.mint(
        claims("alice", "items:read", Duration::from_secs(300))
            .iss(iss)
            .aud(aud),
    );
    let me = http(server.addr, "GET", "/me", Some(&token));
    assert_eq!(me.status, 200, "{me:?}");
    let json: serde_json::Value = serde_json::from_str(&me.body).expect("JSON /me");
    assert_eq!(json["sub"], "alice");
    assert_eq!(json["scopes"], serde_json::json!(["items:read"]));
    assert!(json["exp"].is_u64(), "{json}");
    assert_eq!(json["client_id"], serde_json::Value::Null, "{json}");
    // The client id comes from the verified token.
    let with_client = issuer.mint(
        claims("alice", "items:read", Duration::from_secs(300))
            .iss(iss)
            .aud(aud)
            .client_id("mobile-app"),
    );
    let me = http(server.addr, "GET", "/me", Some(&with_client));
    let json: serde_json::Value = serde_json::from_str(&me.body).expect("JSON /me");
    assert_eq!(json["client_id"], "mobile-app", "{json}");

    let items = http(server.addr, "GET", "/items", Some(&token));
    assert_eq!(items.status, 200, "{items:?}");
    let denied = http(server.addr, "DELETE", "/items/1", Some(&token));
    assert_eq!(denied.status, 403, "{denied:?}");
    let challenge = denied.header("www-authenticate").expect("challenge on 403");
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(
        challenge.contains(r#"scope="items:write admin""#),
        "{challenge}"
    );
    assert!(challenge.contains(r#"realm="tower-bearer""#), "{challenge}");

    let other_aud = issuer.mint(
        claims("alice", "items:read", Duration::from_secs(300))
            .iss(iss)
            .aud("api://other"),
    );
    let wrong = http(server.addr, "GET", "/me", Some(&other_aud));
    assert_eq!(wrong.status, 401, "{wrong:?}");
    let challenge = wrong.header("www-authenticate").expect("challenge on 401");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );

    let none = http(server.addr, "GET", "/me", None);
    assert_eq!(none.status, 401, "{none:?}");
    assert_eq!(
        none.header("www-authenticate"),
        Some(r#"Bearer realm="tower-bearer""#)
    );
}

/// `--key-file` with a JWK Set (detected by its leading `{`).
#[test]
fn key_file_jwks_verifies_tokens() {
    let issuer = TestIssuer::rs256().with_kid("rsa-jwks");
    let other = TestIssuer::es256().with_kid("ec-jwks");
    let jwks = TempFile::new("json", &TestIssuer::jwks(&[&issuer, &other]).to_string());
    let server = Server::start(&[
        "--bind",
        "127.0.0.1:0",
        "--key-file",
        jwks.path(),
        "--issuer",
        "https://issuer.test",
        "--audience",
        "api://items",
    ]);
    for signer in [&issuer, &other] {
        let token = signer.mint(
            claims("bob", "", Duration::from_secs(300))
                .iss("https://issuer.test")
                .aud("api://items"),
        );
        let me = http(server.addr, "GET", "/me", Some(&token));
        assert_eq!(me.status, 200, "{me:?}");
        assert!(me.body.contains(r#""sub":"bob""#), "{}", me.body);
    }
}

/// SIGTERM and SIGINT (Ctrl-C) stop either example cleanly (exit status 0).
#[cfg(unix)]
#[test]
fn sigterm_and_sigint_exit_cleanly() {
    for signal in ["TERM", "INT"] {
        signal_after("server", signal, false);
        signal_after("server", signal, true);
        signal_after("grpc", signal, false);
    }
}

#[cfg(unix)]
fn signal_after(example: &str, signal: &str, request_first: bool) {
    let mut server = Server::start_example(example, &["--bind", "127.0.0.1:0"]);
    // Without a request first, the signal follows `listening on` at once: the handlers must
    // already be installed by then.
    if request_first {
        assert_eq!(http(server.addr, "GET", "/health", None).status, 200);
    }
    let pid = server.child.id().to_string();
    let kill = Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -{signal} {pid}: {kill}");
    let status = wait_timeout(&mut server.child, Duration::from_secs(15))
        .unwrap_or_else(|| panic!("{example} did not exit within 15 s of SIG{signal}"));
    assert!(
        status.success(),
        "{example}: exit status after SIG{signal}: {status}"
    );
}

/// Command-line mistakes: usage errors exit 2, configuration errors exit 1.
#[test]
fn bad_arguments_are_refused() {
    for args in [
        &["--bogus"][..],
        &["--bind"],
        &["--bind", "not-an-address"],
        &["--issuer", ""],
        &["--jwks-url"],
        &["--oidc-issuer", ""],
        // A revocation cache needs Redis, and a duration.
        &["--revocation-cache", "1s"],
        &[
            "--revocation-cache",
            "soon",
            "--redis-url",
            "redis://127.0.0.1:9",
        ],
        // One key source at most.
        &[
            "--key-file",
            "key.pem",
            "--jwks-url",
            "http://127.0.0.1:9/jwks",
        ],
        &[
            "--jwks-url",
            "http://127.0.0.1:9/jwks",
            "--oidc-issuer",
            "http://127.0.0.1:9",
        ],
        &[
            "--oidc-issuer",
            "http://127.0.0.1:9",
            "--key-file",
            "key.pem",
        ],
    ] {
        let (status, stderr) = run_to_exit(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {status}; {stderr}");
        assert!(stderr.contains("usage:"), "{args:?}: {stderr}");
    }

    let (status, stderr) = run_to_exit(&["--key-file", "/nonexistent/tower-bearer/key.pem"]);
    assert_eq!(status.code(), Some(1), "{status}; {stderr}");
    assert!(stderr.contains("key.pem"), "{stderr}");

    let garbage = TempFile::new("pem", "not a key\n");
    let (status, stderr) = run_to_exit(&["--key-file", garbage.path()]);
    assert_eq!(status.code(), Some(1), "{status}; {stderr}");

    let (status, _) = run_to_exit(&["--help"]);
    assert!(status.success(), "--help: {status}");
}

/// Without `--audience`, a key-file server warns that any audience is accepted.
#[test]
fn missing_audience_is_warned_about() {
    let issuer = TestIssuer::es256();
    let pem = TempFile::new("pem", &issuer.public_key_pem().expect("EC has a PEM"));
    let mut child = command(&["--bind", "127.0.0.1:0", "--key-file", pem.path()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server example");
    let stderr = child.stderr.take().expect("piped stderr");
    // Kill and reap whatever happens below.
    struct Reap(Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _reap = Reap(child);
    let rx = lines_of(stderr);
    let deadline = Instant::now() + STARTUP;
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("no audience warning on stderr");
        if line.contains("any audience") || line.contains("ANY audience") {
            break;
        }
    }
}

/// Not dev mode: no tokens or `curl` lines printed.
fn assert_no_dev_banner(server: &Server) {
    assert!(
        !server
            .stdout
            .iter()
            .any(|l| l.contains("_TOKEN=") || l.starts_with("curl ")),
        "{:#?}",
        server.stdout
    );
}

/// `--jwks-url`: tokens verified with the keys of a remote JWK Set; a key published after the
/// start is accepted on the first token that names it (the unknown `kid` makes the server
/// fetch the set again).
#[test]
fn jwks_url_verifies_tokens_and_picks_up_a_new_key_on_first_use() {
    let (iss, aud) = ("https://issuer.test", "api://items");
    let first = TestIssuer::es256().with_kid("remote-1");
    let second = TestIssuer::rs256().with_kid("remote-2");
    let mint = |signer: &TestIssuer, sub: &str| {
        signer.mint(
            claims(sub, "items:read", Duration::from_secs(300))
                .iss(iss)
                .aud(aud),
        )
    };
    let keys = KeyServer::start(&[&first]);
    let server = Server::start(&[
        "--bind",
        "127.0.0.1:0",
        "--jwks-url",
        &keys.jwks_url(),
        "--issuer",
        iss,
        "--audience",
        aud,
    ]);
    assert_no_dev_banner(&server);
    assert_eq!(keys.fetches(), 1, "the set is fetched once at start");

    let me = http(server.addr, "GET", "/me", Some(&mint(&first, "alice")));
    assert_eq!(me.status, 200, "{me:?}");
    assert!(me.body.contains(r#""sub":"alice""#), "{}", me.body);
    assert_eq!(keys.fetches(), 1, "a known key needs no fetch");

    // Rotation: the issuer publishes a second key and signs with it at once.
    keys.add(&second);
    let me = http(server.addr, "GET", "/me", Some(&mint(&second, "bob")));
    assert_eq!(me.status, 200, "{me:?}");
    assert!(me.body.contains(r#""sub":"bob""#), "{}", me.body);
    assert_eq!(keys.fetches(), 2, "one fetch for the unknown kid");
    let me = http(server.addr, "GET", "/me", Some(&mint(&first, "alice")));
    assert_eq!(me.status, 200, "the first key still works: {me:?}");

    // A key nobody published stays unknown.
    let stranger = TestIssuer::es256().with_kid("remote-3");
    let refused = http(server.addr, "GET", "/me", Some(&mint(&stranger, "mallory")));
    assert_eq!(refused.status, 401, "{refused:?}");
    let challenge = refused
        .header("www-authenticate")
        .expect("challenge on 401");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
}

/// `--oidc-issuer`: keys found through the discovery document, and `iss` pinned to the issuer.
#[test]
fn oidc_issuer_pins_the_discovered_issuer() {
    let signer = TestIssuer::es256().with_kid("oidc-1");
    let keys = KeyServer::start(&[&signer]);
    let aud = "api://items";
    let mint = |iss: &str| {
        signer.mint(
            claims("alice", "", Duration::from_secs(300))
                .iss(iss)
                .aud(aud),
        )
    };
    let server = Server::start(&[
        "--bind",
        "127.0.0.1:0",
        "--oidc-issuer",
        keys.base(),
        "--audience",
        aud,
    ]);
    assert_no_dev_banner(&server);

    let me = http(server.addr, "GET", "/me", Some(&mint(keys.base())));
    assert_eq!(me.status, 200, "{me:?}");
    assert!(me.body.contains(r#""sub":"alice""#), "{}", me.body);

    let other = http(server.addr, "GET", "/me", Some(&mint("https://other.test")));
    assert_eq!(other.status, 401, "{other:?}");
    let challenge = other.header("www-authenticate").expect("challenge on 401");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    drop(server);

    // `--issuer` may repeat the discovered issuer.
    let server = Server::start(&[
        "--bind",
        "127.0.0.1:0",
        "--oidc-issuer",
        keys.base(),
        "--issuer",
        keys.base(),
        "--audience",
        aud,
    ]);
    let me = http(server.addr, "GET", "/me", Some(&mint(keys.base())));
    assert_eq!(me.status, 200, "{me:?}");
}

/// A remote key source that cannot be loaded at start: a clear message and exit status 1,
/// before the server listens.
#[test]
fn remote_key_sources_that_fail_at_start_exit_1() {
    let signer = TestIssuer::es256().with_kid("oidc-1");
    let keys = KeyServer::start(&[&signer]);

    // `--issuer` contradicting the discovered issuer is a configuration error.
    let (status, stderr) = run_to_exit(&[
        "--bind",
        "127.0.0.1:0",
        "--oidc-issuer",
        keys.base(),
        "--issuer",
        "https://other.test",
    ]);
    assert_eq!(status.code(), Some(1), "{status}; {stderr}");
    assert!(stderr.contains("issuer"), "{stderr}");

    // A discovery document naming another issuer.
    keys.discover_as("https://elsewhere.test");
    let (status, stderr) = run_to_exit(&["--bind", "127.0.0.1:0", "--oidc-issuer", keys.base()]);
    assert_eq!(status.code(), Some(1), "{status}; {stderr}");
    assert!(stderr.contains("discovery"), "{stderr}");
    assert!(stderr.contains("https://elsewhere.test"), "{stderr}");

    // A JWK Set URL that answers 404.
    let missing = format!("{}/no-such-jwks", keys.base());
    let (status, stderr) = run_to_exit(&["--bind", "127.0.0.1:0", "--jwks-url", &missing]);
    assert_eq!(status.code(), Some(1), "{status}; {stderr}");
    assert!(stderr.contains("404"), "{stderr}");

    // Nothing listening at all.
    let nowhere = unreachable_base();
    let url = format!("{nowhere}/jwks");
    let (status, stderr) = run_to_exit(&["--bind", "127.0.0.1:0", "--jwks-url", &url]);
    assert_eq!(status.code(), Some(1), "{status}; {stderr}");
    assert!(stderr.contains("error: --jwks-url"), "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");
    let (status, stderr) = run_to_exit(&["--bind", "127.0.0.1:0", "--oidc-issuer", &nowhere]);
    assert_eq!(status.code(), Some(1), "{status}; {stderr}");
    assert!(stderr.contains("discovery"), "{stderr}");
}

#[path = "support/mod.rs"]
mod support;

/// A PEM-key issuer and the server flags that trust it (`iss` https://issuer.test, `aud`
/// api://items), for the tests of the remaining flags.
struct PemIssuer {
    issuer: TestIssuer,
    pem: TempFile,
}

impl PemIssuer {
    fn new() -> Self {
        let issuer = TestIssuer::rs256().with_kid("rsa-1");
        let pem = TempFile::new("pem", &issuer.public_key_pem().expect("RSA has a PEM"));
        Self { issuer, pem }
    }

    /// Starts the server with this key and `extra` flags.
    fn server(&self, extra: &[&str]) -> Server {
        let mut args = vec![
            "--bind",
            "127.0.0.1:0",
            "--key-file",
            self.pem.path(),
            "--issuer",
            "https://issuer.test",
            "--audience",
            "api://items",
        ];
        args.extend_from_slice(extra);
        Server::start(&args)
    }

    /// A token for `sub` with `scope`, valid 10 minutes.
    fn token(&self, sub: &str, scope: &str) -> String {
        mint_for(&self.issuer, sub, scope)
    }
}

/// A token from `issuer` that the [`PemIssuer`] flags accept if the key is trusted.
fn mint_for(issuer: &TestIssuer, sub: &str, scope: &str) -> String {
    issuer.mint(
        claims(sub, scope, Duration::from_secs(600))
            .iss("https://issuer.test")
            .aud("api://items"),
    )
}

/// `--rate-limit 5/10s`: five requests at once per verified subject, then one per 2 s.
fn assert_rate_limited(servers: &[&Server], issuer: &PemIssuer) {
    let token = |sub: &str| issuer.token(sub, "items:read");
    // A new token of alice's for every request: the quota is the subject's, not a token's.
    let alice = |i: usize| {
        issuer.issuer.mint(
            claims("alice", "items:read", Duration::from_secs(600))
                .iss("https://issuer.test")
                .aud("api://items")
                .set("jti", format!("alice-{i}")),
        )
    };
    for i in 0..5 {
        // Spread over the instances: with Redis they share one quota.
        let server = servers[i % servers.len()];
        let r = http(server.addr, "GET", "/items", Some(&alice(i)));
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_eq!(r.header("ratelimit-policy"), Some(r#""default";q=5;w=10"#));
        // Sequential requests: one quota, whichever instance answers.
        let expected = format!(r#""default";r={};t={}"#, 4 - i, 2 * (i + 1));
        assert_eq!(r.header("ratelimit"), Some(expected.as_str()));
    }
    for (i, server) in servers.iter().enumerate() {
        let r = http(server.addr, "GET", "/items", Some(&alice(5 + i)));
        assert_eq!(r.status, 429, "{r:?}");
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry), "Retry-After {retry}");
    }
    // Another caller has a quota of their own; /health is not limited.
    assert_eq!(
        http(servers[0].addr, "GET", "/items", Some(&token("bob"))).status,
        200
    );
    let health = http(servers[0].addr, "GET", "/health", None);
    assert_eq!(health.status, 200);
    assert!(health.header("ratelimit").is_none());
    // A forged token spends nothing and gets 401.
    let forged = mint_for(
        &TestIssuer::rs256().with_kid("rsa-1"),
        "carol",
        "items:read",
    );
    for _ in 0..10 {
        assert_eq!(
            http(servers[0].addr, "GET", "/items", Some(&forged)).status,
            401
        );
    }
    assert_eq!(
        http(servers[0].addr, "GET", "/items", Some(&token("carol"))).status,
        200
    );
}

#[test]
fn rate_limit_in_memory() {
    let issuer = PemIssuer::new();
    let server = issuer.server(&["--rate-limit", "5/10s"]);
    assert_rate_limited(&[&server], &issuer);
}

#[test]
fn rate_limit_shared_through_redis_by_two_instances() {
    let Some(redis) = support::RedisServer::start() else {
        return;
    };
    let issuer = PemIssuer::new();
    let url = redis.url();
    let args = ["--rate-limit", "5/10s", "--redis-url", url.as_str()];
    let (a, b) = (issuer.server(&args), issuer.server(&args));
    assert_rate_limited(&[&a, &b], &issuer);
}

#[test]
fn rate_limit_flags_are_checked() {
    for args in [
        &["--rate-limit", "5"][..],
        &["--rate-limit", "0/1s"],
        &["--rate-limit", "5/10parsecs"],
    ] {
        let (status, stderr) = run_to_exit(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
    }
    let (status, stderr) = run_to_exit(&[
        "--rate-limit",
        "5/10s",
        "--redis-url",
        &format!(
            "redis://{}",
            unreachable_base().trim_start_matches("http://")
        ),
    ]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--redis-url"), "{stderr}");
}

#[test]
fn revocation_shared_through_redis_by_two_instances() {
    let Some(redis) = support::RedisServer::start() else {
        return;
    };
    let issuer = PemIssuer::new();
    let url = redis.url();
    let (a, b) = (
        issuer.server(&["--redis-url", url.as_str()]),
        issuer.server(&["--redis-url", url.as_str()]),
    );
    let mint = |sub: &str, scope: &str, jti: &str| {
        issuer.issuer.mint(
            claims(sub, scope, Duration::from_secs(600))
                .iss("https://issuer.test")
                .aud("api://items")
                .set("jti", jti),
        )
    };
    let reader = mint("reader", "items:read", "jti-reader-1");
    let admin = mint("admin", "admin", "jti-admin-1");
    assert_eq!(http(b.addr, "GET", "/items", Some(&reader)).status, 200);
    let bad = http_body(a.addr, "POST", "/revoke", Some(&admin), "{not json");
    assert_eq!(bad.status, 400, "{bad:?}");
    let denied = http_body(
        a.addr,
        "POST",
        "/revoke",
        Some(&reader),
        r#"{"jti":"jti-admin-1"}"#,
    );
    assert_eq!(denied.status, 403, "{denied:?}");
    let ok = http_body(
        a.addr,
        "POST",
        "/revoke",
        Some(&admin),
        r#"{"jti":"jti-reader-1"}"#,
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    // Revoked on A, refused on B too.
    for server in [&a, &b] {
        let r = http(server.addr, "GET", "/items", Some(&reader));
        assert_eq!(r.status, 401, "{r:?}");
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .contains(r#"error_description="token revoked""#)
        );
    }
    assert_eq!(
        http(
            b.addr,
            "GET",
            "/items",
            Some(&mint("reader", "items:read", "jti-reader-2"))
        )
        .status,
        200
    );
}

/// An RFC 7662 endpoint on 127.0.0.1 that knows one active opaque token.
struct IntrospectionServer {
    base: String,
    _runtime: tokio::runtime::Runtime,
}

impl IntrospectionServer {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().route(
            "/introspect",
            axum::routing::post(|headers: axum::http::HeaderMap, body: String| async move {
                // Basic base64("rs-client:rs-secret").
                let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
                    == Some("Basic cnMtY2xpZW50OnJzLXNlY3JldA==");
                let active = authorized && body.contains("token=opaque-reader-token");
                Json(if active {
                    json!({"active": true, "sub": "opaque-user", "scope": "items:read",
                           "aud": "api://items", "iss": "https://issuer.test",
                           "exp": SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600})
                } else {
                    json!({"active": false})
                })
            }),
        );
        runtime.spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base,
            _runtime: runtime,
        }
    }
}

#[test]
fn opaque_tokens_through_introspection() {
    let idp = IntrospectionServer::start();
    let issuer = PemIssuer::new();
    let url = format!("{}/introspect", idp.base);
    let server = issuer.server(&[
        "--introspection-url",
        &url,
        "--client-id",
        "rs-client",
        "--client-secret",
        "rs-secret",
    ]);
    let ok = http(server.addr, "GET", "/items", Some("opaque-reader-token"));
    assert_eq!(ok.status, 200, "{ok:?}");
    let me = http(server.addr, "GET", "/me", Some("opaque-reader-token"));
    assert!(me.body.contains("opaque-user"), "{me:?}");
    let inactive = http(server.addr, "GET", "/items", Some("opaque-unknown-token"));
    assert_eq!(inactive.status, 401);
    assert!(
        inactive
            .header("www-authenticate")
            .unwrap()
            .contains("token inactive")
    );
    // JWTs still go to the JWT checks.
    let jwt = issuer.token("alice", "items:read");
    assert_eq!(http(server.addr, "GET", "/items", Some(&jwt)).status, 200);
    // The three flags go together.
    let (status, _) = run_to_exit(&["--introspection-url", &url]);
    assert_eq!(status.code(), Some(2));
}

// --- --require-dpop ----------------------------------------------------------------------------

/// `--require-dpop` in dev mode: the printed tokens are DPoP-bound to the printed client key;
/// requests with a fresh proof signed by it pass, plain bearer tokens, DPoP-bound tokens sent
/// as `Bearer`, missing and replayed proofs do not.
#[test]
fn require_dpop_accepts_only_dpop_bound_tokens_with_proofs() {
    use base64::Engine as _;
    use tower_bearer::testing::DpopKey;

    let server = Server::start(&["--bind", "127.0.0.1:0", "--require-dpop"]);
    let var = |name: &str| -> String {
        server
            .stdout
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} not printed: {:#?}", server.stdout))
            .to_owned()
    };
    let (reader, admin, plain) = (var("READER_TOKEN"), var("ADMIN_TOKEN"), var("PLAIN_TOKEN"));
    let der = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(var("DPOP_KEY"))
        .expect("DPOP_KEY is base64url");
    let key = DpopKey::from_pkcs8(&der).expect("DPOP_KEY is a PKCS#8 key");
    assert!(
        server
            .stdout
            .iter()
            .any(|l| l.contains("--example dpop_client") && l.contains("# expect 200")),
        "the banner shows a DPoP request: {:#?}",
        server.stdout
    );

    let addr = server.addr;
    let url = |path: &str| format!("http://{addr}{path}");
    let dpop = |method: &str, path: &str, token: &str, proof: &str| {
        let auth = format!("DPoP {token}");
        http_with(
            addr,
            method,
            path,
            &[("Authorization", &auth), ("DPoP", proof)],
            "",
        )
    };

    assert_eq!(http(addr, "GET", "/health", None).status, 200);
    // A plain bearer token: sender-constrained tokens are required.
    let r = http(addr, "GET", "/items", Some(&plain));
    assert_eq!(r.status, 401, "{r:?}");
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with(r#"DPoP realm="tower-bearer", error="invalid_token""#)
            && challenge.contains(r#"algs=""#),
        "{challenge}"
    );
    // A DPoP-bound token sent as Bearer.
    let r = http(addr, "GET", "/items", Some(&reader));
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap_or_default()
            .contains("DPoP-bound token presented as Bearer")
    );
    // DPoP scheme without a proof.
    let auth = format!("DPoP {reader}");
    let r = http_with(addr, "GET", "/items", &[("Authorization", &auth)], "");
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap_or_default()
            .contains(r#"error="invalid_dpop_proof""#)
    );

    // A fresh proof for the request: through (and scopes still apply).
    let proof = key
        .proof("GET", &url("/items"))
        .access_token(&reader)
        .sign();
    let r = dpop("GET", "/items", &reader, &proof);
    assert_eq!(r.status, 200, "{r:?}");
    // The same proof again: a replay.
    let r = dpop("GET", "/items", &reader, &proof);
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap_or_default()
            .contains("DPoP proof replayed")
    );
    // A proof for another URL.
    let proof = key.proof("GET", &url("/me")).access_token(&reader).sign();
    assert_eq!(dpop("GET", "/items", &reader, &proof).status, 401);
    // Scopes: reader cannot delete, admin can.
    let proof = key
        .proof("DELETE", &url("/items/1"))
        .access_token(&reader)
        .sign();
    assert_eq!(dpop("DELETE", "/items/1", &reader, &proof).status, 403);
    let proof = key
        .proof("DELETE", &url("/items/1"))
        .access_token(&admin)
        .sign();
    assert_eq!(dpop("DELETE", "/items/1", &admin, &proof).status, 204);
}

// --- examples/grpc.rs ---------------------------------------------------------------------------

/// The token printed on the line after `label` in dev mode.
fn printed_token(stdout: &[String], label: &str) -> String {
    let at = stdout
        .iter()
        .position(|l| l.trim() == label)
        .unwrap_or_else(|| panic!("no {label:?} in {stdout:#?}"));
    stdout[at + 1].trim().to_owned()
}

#[test]
fn grpc_example_answers_as_its_docs_say() {
    use tonic::Code;
    use tonic::metadata::MetadataValue;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

    let server = Server::start_example("grpc", &["--bind", "127.0.0.1:0", "--rate-limit", "2/60s"]);
    let with_scope = printed_token(&server.stdout, "token with scope health:read:");
    let without_scope = printed_token(&server.stdout, "token without scopes:");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = tokio::time::timeout(
            IO_TIMEOUT,
            tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
                .unwrap()
                .connect(),
        )
        .await
        .expect("connect in time")
        .expect("connect");
        let check = |token: Option<&str>| {
            let mut client = HealthClient::new(channel.clone());
            let mut req = tonic::Request::new(HealthCheckRequest {
                service: String::new(),
            });
            if let Some(t) = token {
                let value: MetadataValue<_> = format!("Bearer {t}").parse().unwrap();
                req.metadata_mut().insert("authorization", value);
            }
            async move {
                tokio::time::timeout(IO_TIMEOUT, client.check(req))
                    .await
                    .expect("answered in time")
                    .map(tonic::Response::into_inner)
            }
        };
        let code = |r: Result<HealthCheckResponse, tonic::Status>| r.unwrap_err().code();
        assert_eq!(code(check(None).await), Code::Unauthenticated);
        assert_eq!(
            code(check(Some("not.a.token")).await),
            Code::Unauthenticated
        );
        assert_eq!(
            code(check(Some(&without_scope)).await),
            Code::PermissionDenied
        );
        // `--rate-limit 2/60s` counts authorized calls only: two pass, the third is 8.
        for _ in 0..2 {
            let ok = check(Some(&with_scope)).await.expect("SERVING");
            assert_eq!(ok.status, ServingStatus::Serving as i32);
        }
        let limited = check(Some(&with_scope)).await.unwrap_err();
        assert_eq!(limited.code(), Code::ResourceExhausted);
        assert!(
            limited.metadata().get("retry-after").is_some(),
            "{limited:?}"
        );
    });
}
