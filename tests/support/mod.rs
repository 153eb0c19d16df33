//! Shared helpers for the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};
use tower_bearer::testing::TestIssuer;
use tower_bearer::validate::Jwt;
use tower_bearer::{BearerAuthLayer, Principal};

pub mod keys;

/// The realm the tests configure.
pub const REALM: &str = "test";

/// What one request through the layer produced.
#[derive(Debug)]
pub struct Outcome {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    /// Whether the inner service ran.
    pub called: bool,
    /// The principal the inner service saw.
    pub principal: Option<Principal>,
}

impl Outcome {
    /// The `WWW-Authenticate` value ("" when absent).
    pub fn challenge(&self) -> &str {
        self.headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// Asserts a 401 `invalid_token` with this description, and that the inner service did
    /// not run.
    #[track_caller]
    pub fn assert_invalid_token(&self, description: &str) {
        assert_eq!(self.status, StatusCode::UNAUTHORIZED, "{self:?}");
        assert_eq!(
            self.challenge(),
            format!(
                r#"Bearer realm="{REALM}", error="invalid_token", error_description="{description}""#
            )
        );
        assert!(!self.called, "inner service must not run");
    }

    /// Asserts a 400 `invalid_request` with this description, inner service not run.
    #[track_caller]
    pub fn assert_invalid_request(&self, description: &str) {
        assert_eq!(self.status, StatusCode::BAD_REQUEST, "{self:?}");
        assert_eq!(
            self.challenge(),
            format!(
                r#"Bearer realm="{REALM}", error="invalid_request", error_description="{description}""#
            )
        );
        assert!(!self.called, "inner service must not run");
    }

    /// Asserts a 401 with a bare challenge (no credentials), inner service not run.
    #[track_caller]
    pub fn assert_no_credentials(&self) {
        assert_eq!(self.status, StatusCode::UNAUTHORIZED, "{self:?}");
        assert_eq!(self.challenge(), format!(r#"Bearer realm="{REALM}""#));
        assert!(!self.called, "inner service must not run");
    }

    /// Asserts the request went through.
    #[track_caller]
    pub fn assert_ok(&self) -> &Principal {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert!(self.called);
        self.principal.as_ref().expect("principal in extensions")
    }

    /// Asserts no part of `token` longer than 8 characters (its signature in particular) is
    /// in the headers or the body.
    #[track_caller]
    pub fn assert_no_token_material(&self, token: &str) {
        let mut text = self.body.clone();
        for (k, v) in &self.headers {
            text.push_str(k.as_str());
            text.push_str(&String::from_utf8_lossy(v.as_bytes()));
        }
        for part in token.split('.') {
            if part.len() > 8 {
                assert!(!text.contains(part), "token material leaked: {text}");
            }
        }
    }
}

/// Sends `req` through `layer` around a service that records what it saw.
pub async fn send(layer: &BearerAuthLayer, req: Request<Full<Bytes>>) -> Outcome {
    let seen: Arc<Mutex<Option<Option<Principal>>>> = Arc::default();
    let seen2 = seen.clone();
    let inner = service_fn(move |req: Request<Full<Bytes>>| {
        let seen = seen2.clone();
        async move {
            *seen.lock().unwrap() = Some(req.extensions().get::<Principal>().cloned());
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner"))))
        }
    });
    let res = layer.layer(inner).oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let seen = seen.lock().unwrap().take();
    Outcome {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        called: seen.is_some(),
        principal: seen.flatten(),
    }
}

/// The one signing key of the tests that need no other: ES256, key id `k`.
pub fn issuer() -> &'static TestIssuer {
    static K: OnceLock<TestIssuer> = OnceLock::new();
    K.get_or_init(|| TestIssuer::es256().with_kid("k"))
}

/// A `Jwt` for [`issuer`]'s tokens, audience `api`.
pub fn jwt() -> Jwt {
    Jwt::builder()
        .key(issuer().key())
        .audience("api")
        .build()
        .unwrap()
}

/// A GET with optional `Authorization` value.
pub fn get(authorization: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::builder().uri("/r");
    if let Some(v) = authorization {
        b = b.header("authorization", v);
    }
    b.body(Full::default()).unwrap()
}

/// A GET with `Authorization: Bearer token`.
pub fn bearer(token: &str) -> Request<Full<Bytes>> {
    get(Some(&format!("Bearer {token}")))
}

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A `redis-server` started by a test on a free 127.0.0.1 port, persistence off, killed on
/// drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl RedisServer {
    /// Starts one, or returns `None` (with a loud message) when `redis-server` is not on PATH
    /// and `CI` is not set. With `CI` set, a missing `redis-server` is a failure.
    pub fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port)
    }

    /// Starts one on `port` (to restart a killed server on the same address).
    pub fn start_on(port: u16) -> Option<Self> {
        let found = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok();
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is not on PATH (scripts/test.sh installs it)"
            );
            eprintln!(
                "\n!!! SKIPPED: redis-server not on PATH; run scripts/test.sh to install it !!!\n"
            );
            return None;
        }
        let child = std::process::Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let server = Self {
            port,
            child: Some(child),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Some(server)
    }

    /// The `redis://` URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server now.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
