//! The attack suite: every rejection case of the acceptance list (`shared/ACCEPTANCE.md`,
//! beside the repository) §2–§9 and the JWT attack classes (RFC 8725), as tables. Each row
//! is a request, the status it must get, its exact
//! `WWW-Authenticate` challenge (or gRPC status), and, for every row refused, proof that the
//! inner service never ran and that no part of the token is in the response. Rows that must
//! pass are in the same tables, so a stack that refused everything would fail them.
//!
//! Coverage of the acceptance list, by table:
//!
//! | section | tables |
//! |---|---|
//! | §2 credentials on the wire | `credentials_on_the_wire`, `credential_sources_when_enabled`, `huge_headers_and_size_caps` |
//! | §3 token checks | `token_structure_and_base64`, `json_attacks`, `algorithm_none_and_confusion`, `embedded_and_remote_keys`, `kid_injection`, `crit_header`, `ecdsa_signatures`, `time_claims_at_the_leeway_boundaries`, `time_claims_with_zero_leeway`, `maximum_lifetime`, `issuer_audience_and_types`, `rfc9068_typ` |
//! | §4 keys | `jwks_entries_not_for_signatures`; the remote JWKS cases (unknown-`kid` floods, single flight, a failing, hanging or huge endpoint) run against a real loopback endpoint in `tests/jwks.rs` |
//! | §5 scopes | `scopes_on_a_route`, `scopes_per_grpc_method` |
//! | §6 rate limits | `forged_tokens_spend_no_quota` (exact counts, Redis and floods: `tests/rate_limit.rs`) |
//! | §7 lifecycle | `revoked_idle_and_old_tokens`, `static_api_keys` (introspection failures → 503 / 401: `tests/introspection.rs`) |
//! | §8 gRPC | `grpc_status_codes`, `grpc_dependency_down`, and the gRPC rows of §5 and §6 |
//! | §9 never | every row (no token material, never the inner service); `arbitrary_input_never_panics…`, `debug_output_never_shows_the_token`; logs: `tests/audit.rs` |

mod support;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use support::{Outcome, REALM};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_bearer::clock::ManualClock;
use tower_bearer::extract::Extractor;
use tower_bearer::keys::{Algorithm, Key, KeySet};
use tower_bearer::lifecycle::{Lifecycle, MemoryRevocations, Revocation};
use tower_bearer::rate_limit::{MemoryStore, Quota, RateLimitLayer};
use tower_bearer::scope::{MethodScopes, ScopeGuardLayer, ScopePolicy};
use tower_bearer::testing::TestIssuer;
use tower_bearer::validate::{Jwt, JwtBuilder, StaticTokens};
use tower_bearer::{BearerAuthLayer, Principal};

type Req = Request<Full<Bytes>>;

use support::keys::{AUD, ISS, T, ec, ed, hs, rsa};

// ------------------------------------------------------------------------------ keys, claims

/// A key nobody configured, with the id of one that is.
fn foreign() -> &'static TestIssuer {
    static K: OnceLock<TestIssuer> = OnceLock::new();
    K.get_or_init(|| TestIssuer::rs256().with_kid("rsa-1"))
}

/// Every test key, the issuer and the audience, the clock frozen at `T`.
fn builder() -> JwtBuilder {
    builder_at(&ManualClock::at_unix(T))
}

fn builder_at(clock: &ManualClock) -> JwtBuilder {
    Jwt::builder()
        .key(rsa().key())
        .key(ec().key())
        .key(ed().key())
        .key(hs().key())
        .issuer(ISS)
        .audience(AUD)
        .clock(clock.clone())
}

fn layer_with(b: JwtBuilder) -> BearerAuthLayer {
    BearerAuthLayer::new(b.build().unwrap()).realm(REALM)
}

fn layer() -> BearerAuthLayer {
    layer_with(builder())
}

/// Valid claims at `T`.
fn claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "client_id": "web",
        "iat": T - 10, "exp": T + 600, "jti": "id-1", "scope": "items:read profile"
    })
}

fn with(mut v: Value, k: &str, x: Value) -> Value {
    v[k] = x;
    v
}

fn without(mut v: Value, k: &str) -> Value {
    v.as_object_mut().unwrap().remove(k);
    v
}

fn b64json(v: &Value) -> String {
    B64.encode(serde_json::to_vec(v).unwrap())
}

/// An RS256 token over `claims` signed by the configured RSA key.
fn rs(claims: Value) -> String {
    rsa().mint(claims)
}

/// An RS256 token with `header`, signed by the configured RSA key.
fn rs_h(header: Value, claims: Value) -> String {
    rsa().mint_with_header(&header, &claims)
}

/// `claims` with another `sub` and `jti`, for tables where tokens must differ.
fn who(sub: &str, jti: &str) -> Value {
    with(with(claims(), "sub", json!(sub)), "jti", json!(jti))
}

// ------------------------------------------------------------------------------ the tables

/// What a row must produce.
#[derive(Debug, Clone)]
enum Challenge {
    /// `Bearer realm="test"` and nothing else (no credentials, another scheme).
    Bare,
    /// `Bearer realm="test", error="CODE", error_description="DESCRIPTION"`.
    Error(&'static str, String),
    /// The RFC 6750 §3.1 `insufficient_scope` challenge naming `scope` and the policy.
    Insufficient { scope: String, policy: String },
    /// No `WWW-Authenticate` at all (429, 503, gRPC).
    Absent,
}

#[derive(Debug)]
struct Case {
    name: String,
    req: Req,
    /// The token sent, to prove none of it comes back.
    token: Option<String>,
    /// `None`: the request must pass (200 from the inner service).
    refusal: Option<(StatusCode, Challenge)>,
    /// gRPC status and message of a trailers-only refusal.
    grpc: Option<(&'static str, String)>,
    headers: Vec<(&'static str, String)>,
    /// Moves the table's clock before the row is sent.
    advance: Duration,
}

fn request(uri: &str, headers: &[(&str, &str)]) -> Req {
    let mut b = Request::builder().uri(uri);
    for (k, v) in headers {
        b = b.header(*k, HeaderValue::from_bytes(v.as_bytes()).unwrap());
    }
    b.body(Full::default()).unwrap()
}

impl Case {
    fn new(name: impl Into<String>, req: Req) -> Self {
        Self {
            name: name.into(),
            req,
            token: None,
            refusal: None,
            grpc: None,
            headers: Vec::new(),
            advance: Duration::ZERO,
        }
    }

    /// `Authorization: Bearer token`.
    fn bearer(name: impl Into<String>, token: &str) -> Self {
        let mut c = Self::new(
            name,
            request("/r", &[("authorization", &format!("Bearer {token}"))]),
        );
        c.token = Some(token.to_owned());
        c
    }

    /// Any `Authorization` value.
    fn authorization(name: impl Into<String>, value: &str) -> Self {
        Self::new(name, request("/r", &[("authorization", value)]))
    }

    /// A gRPC call to `path` with `Authorization: Bearer token` when a token is given.
    fn grpc_call(name: impl Into<String>, path: &str, token: Option<&str>) -> Self {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/grpc")];
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        let mut c = Self::new(name, request(path, &headers));
        c.token = token.map(str::to_owned);
        c
    }

    fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    fn passes(self) -> Self {
        self
    }

    fn refused(mut self, status: StatusCode, challenge: Challenge) -> Self {
        self.refusal = Some((status, challenge));
        self
    }

    fn invalid_token(self, description: &str) -> Self {
        self.refused(
            StatusCode::UNAUTHORIZED,
            Challenge::Error("invalid_token", description.into()),
        )
    }

    fn invalid_request(self, description: &str) -> Self {
        self.refused(
            StatusCode::BAD_REQUEST,
            Challenge::Error("invalid_request", description.into()),
        )
    }

    fn bare(self) -> Self {
        self.refused(StatusCode::UNAUTHORIZED, Challenge::Bare)
    }

    fn insufficient(self, scope: &str, policy: &str) -> Self {
        self.refused(
            StatusCode::FORBIDDEN,
            Challenge::Insufficient {
                scope: scope.into(),
                policy: policy.into(),
            },
        )
    }

    /// A gRPC trailers-only refusal with this status code and message.
    fn grpc_status(mut self, code: &'static str, message: &str) -> Self {
        self.refusal = Some((StatusCode::OK, Challenge::Absent));
        self.grpc = Some((code, message.into()));
        self
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn after(mut self, d: Duration) -> Self {
        self.advance = d;
        self
    }
}

/// The innermost service: answers 200 and counts its calls.
#[derive(Clone)]
struct Recorder {
    calls: Arc<AtomicUsize>,
    last: Arc<Mutex<Option<Principal>>>,
}

impl Service<Req> for Recorder {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        *self.last.lock().unwrap() = req.extensions().get::<Principal>().cloned();
        ready(Ok(Response::new(Full::new(Bytes::from_static(b"inner")))))
    }
}

type Sent = Pin<Box<dyn Future<Output = (StatusCode, HeaderMap, Bytes)> + Send>>;

/// A stack under test: layers around a [`Recorder`], and the clock rows may move.
struct Target {
    send: Box<dyn Fn(Req) -> Sent + Send + Sync>,
    calls: Arc<AtomicUsize>,
    last: Arc<Mutex<Option<Principal>>>,
    clock: ManualClock,
}

impl Target {
    fn new<L, B>(layer: L) -> Self
    where
        L: Layer<Recorder>,
        L::Service: Service<Req, Response = Response<B>, Error = Infallible> + Clone + Send + Sync,
        L::Service: 'static,
        <L::Service as Service<Req>>::Future: Send,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::fmt::Debug,
    {
        Self::with_clock(layer, ManualClock::at_unix(T))
    }

    fn with_clock<L, B>(layer: L, clock: ManualClock) -> Self
    where
        L: Layer<Recorder>,
        L::Service: Service<Req, Response = Response<B>, Error = Infallible> + Clone + Send + Sync,
        L::Service: 'static,
        <L::Service as Service<Req>>::Future: Send,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::fmt::Debug,
    {
        let recorder = Recorder {
            calls: Arc::default(),
            last: Arc::default(),
        };
        let (calls, last) = (recorder.calls.clone(), recorder.last.clone());
        let svc = layer.layer(recorder);
        Self {
            send: Box::new(move |req| {
                let svc = svc.clone();
                Box::pin(async move {
                    let res = svc.oneshot(req).await.unwrap();
                    let (parts, body) = res.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    (parts.status, parts.headers, body)
                })
            }),
            calls,
            last,
            clock,
        }
    }

    async fn send(&self, req: Req) -> Outcome {
        let before = self.calls.load(Ordering::SeqCst);
        let (status, headers, body) = (self.send)(req).await;
        let called = self.calls.load(Ordering::SeqCst) > before;
        Outcome {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            called,
            principal: if called {
                self.last.lock().unwrap().clone()
            } else {
                None
            },
        }
    }
}

/// Sends every row, in order, and checks it. Returns the outcomes for extra checks.
async fn run(table: &str, target: &Target, cases: Vec<Case>) -> Vec<Outcome> {
    assert!(!cases.is_empty());
    let (mut passed, mut refused) = (0, 0);
    let mut outcomes = Vec::new();
    for case in cases {
        if !case.advance.is_zero() {
            target.clock.advance(case.advance);
        }
        let name = format!("{table} / {}", case.name);
        let out = target.send(case.req).await;
        check(&name, &out, case.refusal.as_ref(), case.grpc.as_ref());
        for (k, v) in &case.headers {
            let got = out.headers.get(*k).map(|v| v.to_str().unwrap());
            assert_eq!(got, Some(v.as_str()), "{name}: header {k}: {out:?}");
        }
        if let Some(token) = &case.token {
            out.assert_no_token_material(token);
        }
        if case.refusal.is_some() {
            refused += 1;
        } else {
            passed += 1;
        }
        outcomes.push(out);
    }
    println!("{table}: {refused} refused, {passed} passing");
    outcomes
}

#[track_caller]
fn check(
    name: &str,
    out: &Outcome,
    refusal: Option<&(StatusCode, Challenge)>,
    grpc: Option<&(&'static str, String)>,
) {
    let Some((status, challenge)) = refusal else {
        assert_eq!(out.status, StatusCode::OK, "{name}: {out:?}");
        assert!(out.called, "{name}: the inner service must run");
        assert_eq!(out.body, "inner", "{name}");
        assert!(out.principal.is_some(), "{name}: a principal");
        return;
    };
    assert!(
        !out.called,
        "{name}: a refused request reached the inner service"
    );
    assert_eq!(out.status, *status, "{name}: {out:?}");
    let expected = match challenge {
        Challenge::Bare => Some(format!(r#"Bearer realm="{REALM}""#)),
        Challenge::Error(code, description) => Some(format!(
            r#"Bearer realm="{REALM}", error="{code}", error_description="{description}""#
        )),
        Challenge::Insufficient { scope, policy } => Some(format!(
            r#"Bearer realm="{REALM}", error="insufficient_scope", error_description="insufficient scope: requires {policy}", scope="{scope}""#
        )),
        Challenge::Absent => None,
    };
    let got = out
        .headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(got, expected, "{name}: challenge");
    if let Some((code, message)) = grpc {
        assert_eq!(out.headers["content-type"], "application/grpc", "{name}");
        assert_eq!(out.headers["grpc-status"], *code, "{name}: {out:?}");
        assert_eq!(out.headers["grpc-message"], message.as_str(), "{name}");
        assert!(out.body.is_empty(), "{name}: trailers-only");
        return;
    }
    assert!(
        !out.headers.contains_key("grpc-status"),
        "{name}: not a gRPC call"
    );
    // The RFC 6750 error and a description in printable ASCII without `"` or `\`.
    let body: Value = serde_json::from_str(&out.body).unwrap();
    if let Challenge::Error(code, description) = challenge {
        assert_eq!(body["error"], *code, "{name}");
        assert_eq!(body["error_description"], description.as_str(), "{name}");
        assert!(
            description
                .chars()
                .all(|c| matches!(c, ' '..='~') && c != '"' && c != '\\'),
            "{name}: description {description:?}"
        );
    }
    assert_eq!(out.headers["cache-control"], "no-store", "{name}");
}

// ---------------------------------------------------------------- §2 credentials on the wire

#[tokio::test]
async fn credentials_on_the_wire() {
    let token = rs(claims());
    let two = request(
        "/r",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("authorization", &format!("Bearer {token}")),
        ],
    );
    let mut cases = vec![
        Case::bearer("a valid token", &token).passes(),
        Case::authorization(
            "lower-case scheme, several spaces",
            &format!("bearer   {token}"),
        )
        .token(&token)
        .passes(),
        Case::new("no credentials", request("/r", &[])).bare(),
        Case::authorization("Basic", "Basic dXNlcjpwYXNz").bare(),
        Case::authorization("Digest", r#"Digest username="x""#).bare(),
        Case::authorization("a longer scheme name", &format!("Bearerish {token}"))
            .token(&token)
            .bare(),
        Case::authorization("a token as the scheme", &token)
            .token(&token)
            .bare(),
        Case::new("two Authorization headers", two)
            .token(&token)
            .invalid_request("more than one credential"),
        Case::new(
            "query tokens are off by default",
            request(&format!("/r?access_token={token}"), &[]),
        )
        .token(&token)
        .bare(),
    ];
    for v in [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer abc,def",
        "Bearer ab=c",
        "Bearer =",
        "Bearer a\"b",
        "Bearer ab;c",
        "Bearer a\tb",
        "Bearer ab%2Ec",
        "Bearer {\"payload\":\"e30\",\"signatures\":[]}",
    ] {
        cases.push(
            Case::authorization(format!("charset: {v:?}"), v)
                .invalid_request("malformed bearer credentials"),
        );
    }
    cases.push(
        Case::authorization(
            "JWS JSON serialization",
            &format!(
                r#"Bearer {{"protected":"{}","payload":"{}","signature":"AAAA"}}"#,
                b64json(&rsa().header()),
                b64json(&claims())
            ),
        )
        .invalid_request("malformed bearer credentials"),
    );
    run("§2 credentials", &Target::new(layer()), cases).await;
}

#[tokio::test]
async fn credential_sources_when_enabled() {
    let token = rs(claims());
    let l = layer().extractor(
        Extractor::new()
            .query(true)
            .cookie("at")
            .header(HeaderName::from_static("x-token")),
    );
    let auth = format!("Bearer {token}");
    let cases = vec![
        Case::new("query", request(&format!("/r?access_token={token}"), &[]))
            .token(&token)
            .passes(),
        Case::new(
            "cookie",
            request("/r", &[("cookie", &format!("theme=dark; at={token}"))]),
        )
        .token(&token)
        .passes(),
        Case::new("custom header", request("/r", &[("x-token", &token)]))
            .token(&token)
            .passes(),
        Case::new(
            "header and query",
            request(
                &format!("/r?access_token={token}"),
                &[("authorization", &auth)],
            ),
        )
        .token(&token)
        .invalid_request("more than one credential"),
        Case::new(
            "two query parameters",
            request(
                &format!("/r?access_token={token}&access_token={token}"),
                &[],
            ),
        )
        .token(&token)
        .invalid_request("more than one credential"),
        Case::new(
            "header and cookie",
            request(
                "/r",
                &[("authorization", &auth), ("cookie", &format!("at={token}"))],
            ),
        )
        .token(&token)
        .invalid_request("more than one credential"),
        Case::new(
            "the cookie twice in one header",
            request("/r", &[("cookie", &format!("at={token}; at={token}"))]),
        )
        .token(&token)
        .invalid_request("more than one credential"),
        Case::new(
            "the cookie in two headers",
            request(
                "/r",
                &[("cookie", &format!("at={token}")), ("cookie", "at=abc")],
            ),
        )
        .token(&token)
        .invalid_request("more than one credential"),
        Case::new(
            "custom header and query",
            request(&format!("/r?access_token={token}"), &[("x-token", &token)]),
        )
        .token(&token)
        .invalid_request("more than one credential"),
        Case::new(
            "custom header twice",
            request("/r", &[("x-token", &token), ("x-token", &token)]),
        )
        .token(&token)
        .invalid_request("more than one credential"),
        Case::new(
            "percent-encoded space in the query token",
            request("/r?access_token=a%20b", &[]),
        )
        .invalid_request("malformed bearer credentials"),
        Case::new("an empty query token", request("/r?access_token=", &[]))
            .invalid_request("malformed bearer credentials"),
        Case::new(
            "out-of-charset cookie",
            request("/r", &[("cookie", "at=a,b")]),
        )
        .invalid_request("malformed bearer credentials"),
    ];
    run("§2 sources", &Target::new(l), cases).await;
}

#[tokio::test]
async fn huge_headers_and_size_caps() {
    let token = rs(claims());
    let big = "a".repeat(8 * 1024 + 1);
    let huge = "eyJ".repeat(350_000);
    let dots = ".".repeat(1 << 20);
    let garbage = "\"".repeat(1 << 20);
    let many: Vec<(&str, String)> = (0..100)
        .map(|_| ("authorization", format!("Bearer {token}")))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cases = vec![
        Case::bearer("8 KiB + 1", &big).invalid_request("token too large"),
        Case::bearer("1 MiB of token charset", &huge).invalid_request("token too large"),
        Case::bearer("1 MiB of dots", &dots).invalid_request("token too large"),
        Case::authorization("1 MiB outside the charset", &format!("Bearer {garbage}"))
            .invalid_request("token too large"),
        Case::new("100 Authorization headers", request("/r", &many))
            .token(&token)
            .invalid_request("more than one credential"),
    ];
    run("§2 huge headers", &Target::new(layer()), cases).await;

    // The cap is configurable, and applies exactly; the query, cookie and custom-header
    // sources cap too.
    let at = |cap: usize| {
        Target::new(
            layer().extractor(
                Extractor::new()
                    .max_token_len(cap)
                    .query(true)
                    .cookie("at")
                    .header(HeaderName::from_static("x-token")),
            ),
        )
    };
    run(
        "§2 cap = len - 1",
        &at(token.len() - 1),
        vec![
            Case::bearer("header", &token).invalid_request("token too large"),
            Case::new("query", request(&format!("/r?access_token={token}"), &[]))
                .token(&token)
                .invalid_request("token too large"),
            Case::new(
                "a 60,000-character query token",
                request(&format!("/r?access_token={}", "a".repeat(60_000)), &[]),
            )
            .invalid_request("token too large"),
            Case::new(
                "cookie",
                request("/r", &[("cookie", &format!("at={token}"))]),
            )
            .token(&token)
            .invalid_request("token too large"),
            Case::new(
                "a 1 MiB cookie",
                request("/r", &[("cookie", &format!("at={}", "a".repeat(1 << 20)))]),
            )
            .invalid_request("token too large"),
            Case::new("custom header", request("/r", &[("x-token", &token)]))
                .token(&token)
                .invalid_request("token too large"),
        ],
    )
    .await;
    run(
        "§2 cap = len",
        &at(token.len()),
        vec![
            Case::bearer("header", &token).passes(),
            Case::new(
                "cookie",
                request("/r", &[("cookie", &format!("at={token}"))]),
            )
            .token(&token)
            .passes(),
            Case::new("custom header", request("/r", &[("x-token", &token)]))
                .token(&token)
                .passes(),
        ],
    )
    .await;
}

// ---------------------------------------------------------------- §3 structure and encoding

/// `b64` with its last character replaced by the next one of the alphabet: the same bytes
/// to a lax decoder when the last character carries unused bits.
fn bump_last(b64: &str, step: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = b64.as_bytes().to_vec();
    let last = bytes.last_mut().unwrap();
    let idx = ALPHABET.iter().position(|c| c == last).unwrap();
    *last = ALPHABET[(idx + step) % 64];
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn token_structure_and_base64() {
    let token = rs(claims());
    let p: Vec<&str> = token.split('.').collect();
    let h = b64json(&rsa().header());
    let body = b64json(&claims());

    // A payload whose encoding ends in a character with unused bits, correctly signed.
    let mut c = claims();
    while serde_json::to_vec(&c).unwrap().len().is_multiple_of(3) {
        c["pad"] = json!(format!("{}x", c["pad"].as_str().unwrap_or("")));
    }
    let noncanonical_payload = rsa().sign_parts(&h, &bump_last(&b64json(&c), 1));
    let ec_token = ec().mint(claims());
    let (ec_input, ec_sig) = ec_token.rsplit_once('.').unwrap();
    let noncanonical_sig = format!("{ec_input}.{}", bump_last(ec_sig, 1));
    let std_alphabet_sig = format!("{}.{}.+{}", p[0], p[1], &p[2][1..]);
    let tampered = format!(
        "{}.{}.{}",
        p[0],
        b64json(&with(claims(), "sub", json!("admin"))),
        p[2]
    );

    let mut cases = vec![Case::bearer("control", &token).passes()];
    for (name, bad) in [
        ("two parts", format!("{}.{}", p[0], p[1])),
        ("four parts", format!("{}.{}.{}.{}", p[0], p[1], p[2], p[2])),
        (
            "five parts (JWE shape)",
            format!("{}.{}.{}.{}.{}", p[0], p[1], p[2], p[1], p[2]),
        ),
        ("signature stripped", format!("{}.{}.", p[0], p[1])),
        ("empty header", format!(".{}.{}", p[1], p[2])),
        ("empty payload", format!("{}..{}", p[0], p[2])),
        ("only dots", "..".to_owned()),
        ("one word", "garbage".to_owned()),
        ("three words", "a.b.c".to_owned()),
        ("empty objects, no alg", "e30.e30.e30".to_owned()),
        ("padding at the end", format!("{token}==")),
        ("standard-alphabet signature", std_alphabet_sig),
        ("payload with unused bits set", noncanonical_payload.clone()),
        (
            "header as an array",
            rsa().sign_parts(&B64.encode(b"[]"), &body),
        ),
        (
            "payload as a string",
            rsa().sign_parts(&h, &B64.encode(b"\"str\"")),
        ),
        (
            "payload not JSON",
            rsa().sign_parts(&h, &B64.encode(b"{not json")),
        ),
        ("payload null", rsa().sign_parts(&h, &B64.encode(b"null"))),
        (
            "payload with trailing data",
            rsa().sign_parts(&h, &B64.encode(format!("{}x", claims()))),
        ),
        (
            "payload not UTF-8",
            rsa().sign_parts(&h, &B64.encode(b"{\"sub\":\"\xff\"}")),
        ),
        (
            "numeric alg",
            rsa().sign_parts(&B64.encode(br#"{"alg":256}"#), &body),
        ),
        (
            "no alg",
            rsa().sign_parts(&B64.encode(br#"{"kid":"rsa-1"}"#), &body),
        ),
        (
            "numeric kid",
            rsa().sign_parts(&B64.encode(br#"{"alg":"RS256","kid":7}"#), &body),
        ),
        (
            "numeric typ",
            rsa().sign_parts(&B64.encode(br#"{"alg":"RS256","typ":1}"#), &body),
        ),
        (
            "enc header (JWE)",
            rs_h(json!({"alg": "RS256", "enc": "A256GCM"}), claims()),
        ),
        (
            "zip header",
            rs_h(
                json!({"alg": "RS256", "kid": "rsa-1", "zip": "DEF"}),
                claims(),
            ),
        ),
    ] {
        cases.push(Case::bearer(name, &bad).invalid_token("malformed token"));
    }
    cases.push(
        Case::bearer(
            "padding inside",
            &rsa().sign_parts(&format!("{h}=="), &body),
        )
        .invalid_request("malformed bearer credentials"),
    );
    cases.push(
        Case::bearer("signature with unused bits set", &noncanonical_sig)
            .invalid_token("invalid signature"),
    );
    cases.push(Case::bearer("payload tampered", &tampered).invalid_token("invalid signature"));
    run("§3 structure", &Target::new(layer()), cases).await;
}

// ---------------------------------------------------------------- §3 JSON

fn nested(depth: usize) -> Value {
    let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)
}

#[tokio::test]
async fn json_attacks() {
    let h = b64json(&rsa().header());
    let text = serde_json::to_string(&claims()).unwrap();
    let dup_claim = |member: &str| format!(r#"{{{member},{}"#, &text[1..]);
    let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let deep_payload = |depth: usize| {
        let json = format!(r#"{{"deep":{},{}"#, deep(depth), &text[1..]);
        rsa().sign_parts(&h, &B64.encode(json))
    };
    let deep_header = |depth: usize| {
        let json = format!(r#"{{"alg":"RS256","kid":"rsa-1","x":{}}}"#, deep(depth));
        rsa().sign_parts(&B64.encode(json), &b64json(&claims()))
    };
    let wide: serde_json::Map<String, Value> =
        (0..100).map(|i| (format!("c{i}"), json!(i))).collect();
    let mut big = claims();
    big["extra"] = Value::Object(wide);
    big["nested"] = nested(100);

    let mut cases = vec![
        Case::bearer("100 extra claims, nesting 100: accepted", &rs(big)).passes(),
        Case::bearer("nesting 120 in the header: accepted", &deep_header(120)).passes(),
    ];
    for (name, token) in [
        (
            "duplicate alg in the header",
            rsa().sign_parts(
                &B64.encode(br#"{"alg":"RS256","kid":"rsa-1","alg":"HS256"}"#),
                &b64json(&claims()),
            ),
        ),
        (
            "duplicate kid in the header",
            rsa().sign_parts(
                &B64.encode(br#"{"alg":"RS256","kid":"hs-1","kid":"rsa-1"}"#),
                &b64json(&claims()),
            ),
        ),
        (
            "duplicate sub",
            rsa().sign_parts(&h, &B64.encode(dup_claim(r#""sub":"mallory""#))),
        ),
        (
            "duplicate exp",
            rsa().sign_parts(&h, &B64.encode(dup_claim(&format!(r#""exp":{}"#, T - 999)))),
        ),
        (
            "duplicate aud",
            rsa().sign_parts(&h, &B64.encode(dup_claim(r#""aud":"api://other""#))),
        ),
        (
            "duplicate scope",
            rsa().sign_parts(&h, &B64.encode(dup_claim(r#""scope":"admin""#))),
        ),
        (
            "duplicate under an escaped name",
            rsa().sign_parts(&h, &B64.encode(dup_claim(r#""\u0073ub":"mallory""#))),
        ),
        (
            "duplicate inside a claim's object (cnf)",
            rsa().sign_parts(&h, &B64.encode(dup_claim(r#""cnf":{"jkt":"a","jkt":"b"}"#))),
        ),
        (
            "duplicate inside an object nested in an array",
            rsa().sign_parts(
                &h,
                &B64.encode(dup_claim(
                    r#""roles":[{"name":"a"},{"name":"b","name":"admin"}]"#,
                )),
            ),
        ),
        (
            "duplicate inside a header member's object",
            rsa().sign_parts(
                &B64.encode(br#"{"alg":"RS256","kid":"rsa-1","jwk":{"kty":"RSA","kty":"EC"}}"#),
                &b64json(&claims()),
            ),
        ),
        ("nesting 200 in the payload", deep_payload(200)),
        ("nesting 2500 in the payload", deep_payload(2500)),
        ("nesting 200 in the header", deep_header(200)),
        (
            "a number beyond f64",
            rsa().sign_parts(&h, &B64.encode(format!(r#"{{"exp":1e400,{}"#, &text[1..]))),
        ),
    ] {
        cases.push(Case::bearer(name, &token).invalid_token("malformed token"));
    }
    run("§3 JSON", &Target::new(layer()), cases).await;

    // A huge but well-formed token, under a raised cap: verified (or refused) in bounded
    // time and memory, without a panic.
    let mut huge = claims();
    huge["blob"] = json!("x".repeat(2 << 20));
    let huge = rs(huge);
    let roomy = layer().extractor(Extractor::new().max_token_len(4 << 20));
    run(
        "§3 JSON, 2 MiB claims under a 4 MiB cap",
        &Target::new(roomy),
        vec![
            Case::bearer("signed", &huge).passes(),
            Case::bearer(
                "signature cut off",
                &format!("{}.", huge.rsplit_once('.').unwrap().0),
            )
            .invalid_token("malformed token"),
        ],
    )
    .await;
}

// ---------------------------------------------------------------- §3 algorithms

/// An HS256 token whose secret is `secret` (e.g. a public key), with `header`.
fn hmac_with(secret: &[u8], header: Value) -> String {
    let input = format!("{}.{}", b64json(&header), b64json(&claims()));
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret),
        input.as_bytes(),
    );
    format!("{input}.{}", B64.encode(tag.as_ref()))
}

/// The PKCS#1 DER of an RSA issuer's public key, read back from its JWK.
fn rsa_der(issuer: &TestIssuer) -> Vec<u8> {
    let jwk = issuer.jwk();
    let n = B64.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = B64.decode(jwk["e"].as_str().unwrap()).unwrap();
    fn int(v: &[u8]) -> Vec<u8> {
        let mut body = v.to_vec();
        if body[0] & 0x80 != 0 {
            body.insert(0, 0);
        }
        let mut out = vec![0x02];
        out.extend(len(body.len()));
        out.extend(body);
        out
    }
    fn len(l: usize) -> Vec<u8> {
        if l < 0x80 {
            vec![l as u8]
        } else if l < 0x100 {
            vec![0x81, l as u8]
        } else {
            vec![0x82, (l >> 8) as u8, l as u8]
        }
    }
    let mut seq = int(&n);
    seq.extend(int(&e));
    let mut out = vec![0x30];
    out.extend(len(seq.len()));
    out.extend(seq);
    out
}

#[tokio::test]
async fn algorithm_none_and_confusion() {
    let rsa_pem = rsa().public_key_pem().unwrap();
    let ec_pem = ec().public_key_pem().unwrap();
    let rsa_jwk_n = rsa().jwk()["n"].as_str().unwrap().to_owned();
    let mut cases = vec![
        Case::bearer("control: RS256", &rs(claims())).passes(),
        Case::bearer("control: ES256", &ec().mint(claims())).passes(),
        Case::bearer("control: EdDSA", &ed().mint(claims())).passes(),
        Case::bearer("control: HS256", &hs().mint(claims())).passes(),
        Case::bearer(
            "control: kid-less RS256 finds the one RS256 key",
            &rs_h(json!({"alg": "RS256"}), claims()),
        )
        .passes(),
    ];
    for alg in ["none", "None", "NONE", "nOnE"] {
        for header in [json!({"alg": alg}), json!({"alg": alg, "kid": "rsa-1"})] {
            let unsigned = format!("{}.{}.", b64json(&header), b64json(&claims()));
            cases.push(
                Case::bearer(format!("{header} unsigned"), &unsigned)
                    .invalid_token("malformed token"),
            );
            let signed = format!("{}AAAA", unsigned);
            cases.push(
                Case::bearer(format!("{header} with a signature"), &signed)
                    .invalid_token("algorithm not allowed"),
            );
        }
    }
    for alg in ["HS999", "RS1", "ES512", "rs256", "", "RS256 ", "none+RS256"] {
        cases.push(
            Case::bearer(
                format!("unknown alg {alg:?}"),
                &rs_h(json!({"alg": alg, "kid": "rsa-1"}), claims()),
            )
            .invalid_token("algorithm not allowed"),
        );
    }
    for (name, token, description) in [
        (
            "HS256 keyed with the RSA public key PEM, kid of the RSA key",
            hmac_with(rsa_pem.as_bytes(), json!({"alg": "HS256", "kid": "rsa-1"})),
            "algorithm not allowed",
        ),
        (
            "HS256 keyed with the RSA modulus, kid of the RSA key",
            hmac_with(
                rsa_jwk_n.as_bytes(),
                json!({"alg": "HS256", "kid": "rsa-1"}),
            ),
            "algorithm not allowed",
        ),
        (
            "HS256 keyed with the EC public key PEM, kid of the EC key",
            hmac_with(ec_pem.as_bytes(), json!({"alg": "HS256", "kid": "ec-1"})),
            "algorithm not allowed",
        ),
        (
            "HS256 keyed with the RSA public key PEM, no kid: the HMAC key refuses it",
            hmac_with(rsa_pem.as_bytes(), json!({"alg": "HS256"})),
            "invalid signature",
        ),
        (
            "RS384 on the RS256 key",
            rs_h(json!({"alg": "RS384", "kid": "rsa-1"}), claims()),
            "algorithm not allowed",
        ),
        (
            "PS256 on the RS256 key",
            rs_h(json!({"alg": "PS256", "kid": "rsa-1"}), claims()),
            "algorithm not allowed",
        ),
        (
            "ES256 naming the Ed25519 key",
            ec().mint_with_header(&json!({"alg": "ES256", "kid": "ed-1"}), &claims()),
            "algorithm not allowed",
        ),
        (
            "EdDSA naming the RSA key",
            ed().mint_with_header(&json!({"alg": "EdDSA", "kid": "rsa-1"}), &claims()),
            "algorithm not allowed",
        ),
        (
            "ES384 with no key for it",
            rs_h(json!({"alg": "ES384"}), claims()),
            "algorithm not allowed",
        ),
        (
            "signed by a foreign key with a configured kid",
            foreign().mint(claims()),
            "invalid signature",
        ),
        (
            "unknown kid",
            rs_h(json!({"alg": "RS256", "kid": "nope"}), claims()),
            "unknown signing key",
        ),
    ] {
        cases.push(Case::bearer(name, &token).invalid_token(description));
    }
    run("§3 algorithms", &Target::new(layer()), cases).await;

    // A PS256 signature on a key configured for RS256: refused although the key is RSA.
    let ps = TestIssuer::new(Algorithm::PS256);
    let rs_key = Key::rsa_der(&rsa_der(&ps), Algorithm::RS256)
        .unwrap()
        .with_kid("k");
    let b = Jwt::builder()
        .key(rs_key)
        .issuer(ISS)
        .audience(AUD)
        .clock(ManualClock::at_unix(T));
    run(
        "§3 algorithms, RSA key bound to RS256",
        &Target::new(layer_with(b)),
        vec![
            Case::bearer(
                "PS256",
                &ps.mint_with_header(&json!({"alg": "PS256", "kid": "k"}), &claims()),
            )
            .invalid_token("algorithm not allowed"),
        ],
    )
    .await;

    // Two keys for one algorithm: a kid-less token is ambiguous.
    let second = TestIssuer::rs256().with_kid("rsa-2");
    run(
        "§3 algorithms, two RS256 keys",
        &Target::new(layer_with(builder().key(second.key()))),
        vec![
            Case::bearer("with kid", &rs(claims())).passes(),
            Case::bearer("kid-less", &rs_h(json!({"alg": "RS256"}), claims()))
                .invalid_token("unknown signing key"),
        ],
    )
    .await;
}

#[test]
fn weak_keys_are_refused_at_build_time() {
    let err = Key::hmac(&[7u8; 31], Algorithm::HS256).unwrap_err();
    assert!(err.to_string().contains("at least 32"), "{err}");
    assert!(Key::hmac(&[7u8; 32], Algorithm::HS256).is_ok());
    assert!(Key::from_jwk_json(r#"{"kty":"oct","alg":"HS256","k":"c2hvcnQ"}"#).is_err());
    assert!(Key::hmac(&[7u8; 32], Algorithm::RS256).is_err());
    assert!(
        Jwt::builder().build().is_err(),
        "no keys is a configuration error"
    );
}

// ---------------------------------------------------------------- §3 embedded keys, jku, x5u

#[tokio::test]
async fn embedded_and_remote_keys() {
    // A listener standing in for the URLs a token might point at: nothing may connect to it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/keys", listener.local_addr().unwrap());
    let attacker = TestIssuer::rs256();
    let attacker_ec = TestIssuer::es256();
    let mut cases = Vec::new();
    for (name, issuer, header, description) in [
        (
            "jwk, no kid",
            &attacker,
            json!({"alg": "RS256", "jwk": attacker.jwk()}),
            "invalid signature",
        ),
        (
            "jwk with the kid of a configured key",
            &attacker,
            json!({"alg": "RS256", "kid": "rsa-1", "jwk": attacker.jwk()}),
            "invalid signature",
        ),
        (
            "jwk with its own kid",
            &attacker,
            json!({"alg": "RS256", "kid": "attacker", "jwk": attacker.jwk()}),
            "unknown signing key",
        ),
        (
            "EC jwk",
            &attacker_ec,
            json!({"alg": "ES256", "jwk": attacker_ec.jwk()}),
            "invalid signature",
        ),
        (
            "jku",
            &attacker,
            json!({"alg": "RS256", "kid": "attacker", "jku": url}),
            "unknown signing key",
        ),
        (
            "jku with the kid of a configured key",
            &attacker,
            json!({"alg": "RS256", "kid": "rsa-1", "jku": url}),
            "invalid signature",
        ),
        (
            "x5u",
            &attacker,
            json!({"alg": "RS256", "kid": "attacker", "x5u": url}),
            "unknown signing key",
        ),
        (
            "x5c",
            &attacker,
            json!({"alg": "RS256", "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
            "invalid signature",
        ),
        (
            "x5t",
            &attacker,
            json!({"alg": "RS256", "x5t": "dGhpcyBpcyBub3QgYSB0aHVtYnByaW50"}),
            "invalid signature",
        ),
    ] {
        cases.push(
            Case::bearer(name, &issuer.mint_with_header(&header, &claims()))
                .invalid_token(description),
        );
    }
    // Ignored, not fatal: a token signed by the configured key passes whatever it points at.
    cases.push(
        Case::bearer(
            "jku on a token signed by the configured key",
            &rs_h(
                json!({"alg": "RS256", "kid": "rsa-1", "jku": url}),
                claims(),
            ),
        )
        .passes(),
    );
    run("§3 embedded keys", &Target::new(layer()), cases).await;
    assert!(
        listener.accept().is_err(),
        "a token header made the server connect out"
    );
}

#[tokio::test]
async fn kid_injection() {
    let long = "k".repeat(4000);
    let mut cases = vec![Case::bearer("control", &rs(claims())).passes()];
    for kid in [
        "../../../../dev/null",
        "/etc/passwd",
        "rsa-1' OR '1'='1",
        "rsa-1\u{0}",
        "RSA-1",
        "rsa-1 ",
        " rsa-1",
        "rsa-1\r\nSet-Cookie: x=y",
        "\"; error=\"none",
        "",
        long.as_str(),
    ] {
        // The kid never comes back: the challenge is exactly the fixed one.
        cases.push(
            Case::bearer(
                format!("kid {:?}", &kid[..kid.len().min(40)]),
                &rs_h(json!({"alg": "RS256", "kid": kid}), claims()),
            )
            .invalid_token("unknown signing key"),
        );
    }
    for (name, kid) in [
        ("kid array", json!(["rsa-1"])),
        ("kid null", json!(null)),
        ("kid object", json!({"kid": "rsa-1"})),
    ] {
        cases.push(
            Case::bearer(name, &rs_h(json!({"alg": "RS256", "kid": kid}), claims()))
                .invalid_token("malformed token"),
        );
    }
    cases.push(
        Case::bearer(
            "kid of the HMAC key on an RS256 token",
            &rs_h(json!({"alg": "RS256", "kid": "hs-1"}), claims()),
        )
        .invalid_token("algorithm not allowed"),
    );
    cases.push(
        Case::bearer(
            "kid of the RSA key on an HS256 token signed with the HMAC key",
            &hs().mint_with_header(&json!({"alg": "HS256", "kid": "rsa-1"}), &claims()),
        )
        .invalid_token("algorithm not allowed"),
    );
    run("§3 kid injection", &Target::new(layer()), cases).await;
}

#[tokio::test]
async fn crit_header() {
    let mut cases = vec![Case::bearer("control", &rs(claims())).passes()];
    for crit in [
        json!(["exp"]),
        json!(["b64"]),
        json!(["urn:example:ext"]),
        json!([]),
        json!("b64"),
        json!(null),
    ] {
        let header = json!({"alg": "RS256", "kid": "rsa-1", "crit": crit, "b64": false});
        cases.push(
            Case::bearer(format!("crit {crit}"), &rs_h(header, claims()))
                .invalid_token("unsupported critical header"),
        );
    }
    run("§3 crit", &Target::new(layer()), cases).await;
}

// ---------------------------------------------------------------- §3 ECDSA signatures

/// P-256 group order.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// `n − s` for a P-256 signature scalar.
fn negate(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(P256_N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out
}

/// A raw `r ‖ s` signature as DER (`SEQUENCE { INTEGER r, INTEGER s }`).
fn der(sig: &[u8]) -> Vec<u8> {
    let int = |v: &[u8]| {
        let mut v = v.to_vec();
        while v.len() > 1 && v[0] == 0 {
            v.remove(0);
        }
        if v[0] & 0x80 != 0 {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let (r, s) = sig.split_at(sig.len() / 2);
    let body = [int(r), int(s)].concat();
    [vec![0x30, body.len() as u8], body].concat()
}

#[tokio::test]
async fn ecdsa_signatures() {
    let token = ec().mint(claims());
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = B64.decode(sig).unwrap();
    let (r, s) = sig.split_at(32);
    let twin = format!("{input}.{}", B64.encode([r, &negate(s)[..]].concat()));
    let with_sig = |bytes: &[u8]| format!("{input}.{}", B64.encode(bytes));
    let one = {
        let mut v = [0u8; 32];
        v[31] = 1;
        v
    };
    let mut cases = vec![
        Case::bearer("control", &token).passes(),
        Case::bearer("the high-S twin is the same token", &twin).passes(),
    ];
    for (name, bad) in [
        ("psychic: r = s = 0", with_sig(&[0u8; 64])),
        ("r = s = n", with_sig(&[P256_N, P256_N].concat())),
        (
            "r = 0, s = the real s",
            with_sig(&[&[0u8; 32][..], s].concat()),
        ),
        (
            "r = the real r, s = 0",
            with_sig(&[r, &[0u8; 32][..]].concat()),
        ),
        ("r = s = 1", with_sig(&[one, one].concat())),
        ("r = n", with_sig(&[&P256_N[..], s].concat())),
        ("DER-encoded", with_sig(&der(&sig))),
        ("truncated", with_sig(&sig[..63])),
        ("one byte longer", with_sig(&[&sig[..], &[0][..]].concat())),
        ("an empty signature decoded", with_sig(&[])),
    ] {
        let description = if bad.ends_with('.') {
            "malformed token"
        } else {
            "invalid signature"
        };
        cases.push(Case::bearer(name, &bad).invalid_token(description));
    }
    let outs = run("§3 ECDSA", &Target::new(layer()), cases).await;
    assert_eq!(
        outs[0].principal.as_ref().unwrap().fingerprint(),
        outs[1].principal.as_ref().unwrap().fingerprint(),
        "the fingerprint does not depend on the signature"
    );

    // P-384: the psychic signature of the larger curve.
    let es384 = TestIssuer::new(Algorithm::ES384);
    let t = es384.mint_with_header(&json!({"alg": "ES384", "kid": "p384"}), &claims());
    let (input, _) = t.rsplit_once('.').unwrap();
    run(
        "§3 ECDSA P-384",
        &Target::new(layer_with(builder().key(es384.key().with_kid("p384")))),
        vec![
            Case::bearer("control", &t).passes(),
            Case::bearer("psychic", &format!("{input}.{}", B64.encode([0u8; 96])))
                .invalid_token("invalid signature"),
        ],
    )
    .await;
}

// ---------------------------------------------------------------- §3 time claims

#[tokio::test]
async fn time_claims_at_the_leeway_boundaries() {
    // Default leeway, 60 s: valid while now < exp + 60; nbf and iat up to now + 60.
    let t = T as f64;
    let mut cases = Vec::new();
    for (name, claim, value, refusal) in [
        ("exp = now", "exp", json!(T), None),
        ("exp = now − 59", "exp", json!(T - 59), None),
        ("exp = now − 59.5", "exp", json!(t - 59.5), None),
        (
            "exp = now − 60",
            "exp",
            json!(T - 60),
            Some("token expired"),
        ),
        (
            "exp = now − 61",
            "exp",
            json!(T - 61),
            Some("token expired"),
        ),
        ("exp negative", "exp", json!(-1), Some("token expired")),
        ("exp zero", "exp", json!(0), Some("token expired")),
        ("nbf = now + 60", "nbf", json!(T + 60), None),
        (
            "nbf = now + 60.5",
            "nbf",
            json!(t + 60.5),
            Some("token not yet valid"),
        ),
        (
            "nbf = now + 61",
            "nbf",
            json!(T + 61),
            Some("token not yet valid"),
        ),
        ("iat = now + 60", "iat", json!(T + 60), None),
        (
            "iat = now + 61",
            "iat",
            json!(T + 61),
            Some("token issued in the future"),
        ),
        (
            "iat far in the future",
            "iat",
            json!(1e300),
            Some("token issued in the future"),
        ),
    ] {
        let case = Case::bearer(name, &rs(with(claims(), claim, value)));
        cases.push(match refusal {
            None => case.passes(),
            Some(d) => case.invalid_token(d),
        });
    }
    cases.push(
        Case::bearer("exp missing", &rs(without(claims(), "exp")))
            .invalid_token("missing exp claim"),
    );
    for (claim, bad) in [
        ("exp", json!("1900000000")),
        ("exp", json!(null)),
        ("exp", json!(true)),
        ("exp", json!([T + 600])),
        ("exp", json!({"value": T + 600})),
        ("nbf", json!("soon")),
        ("nbf", json!(null)),
        ("iat", json!({})),
        ("iat", json!("0")),
    ] {
        cases.push(
            Case::bearer(format!("{claim} = {bad}"), &rs(with(claims(), claim, bad)))
                .invalid_token("invalid time claim"),
        );
    }
    run("§3 time, leeway 60 s", &Target::new(layer()), cases).await;
}

#[tokio::test]
async fn time_claims_with_zero_leeway() {
    let clock = ManualClock::at_unix(T);
    let l = layer_with(builder_at(&clock).leeway(Duration::ZERO));
    let t = T as f64;
    let moving = rs(with(claims(), "exp", json!(T + 5)));
    let mut cases = Vec::new();
    for (name, claim, value, refusal) in [
        ("exp = now", "exp", json!(T), Some("token expired")),
        (
            "exp = now − 0.5",
            "exp",
            json!(t - 0.5),
            Some("token expired"),
        ),
        ("exp = now + 0.5", "exp", json!(t + 0.5), None),
        ("exp = now + 1", "exp", json!(T + 1), None),
        ("nbf = now", "nbf", json!(T), None),
        (
            "nbf = now + 0.5",
            "nbf",
            json!(t + 0.5),
            Some("token not yet valid"),
        ),
        (
            "nbf = now + 1",
            "nbf",
            json!(T + 1),
            Some("token not yet valid"),
        ),
        ("iat = now", "iat", json!(T), None),
        (
            "iat = now + 1",
            "iat",
            json!(T + 1),
            Some("token issued in the future"),
        ),
    ] {
        let case = Case::bearer(name, &rs(with(claims(), claim, value)));
        cases.push(match refusal {
            None => case.passes(),
            Some(d) => case.invalid_token(d),
        });
    }
    // The frozen clock moves: valid at now + 4.999 s, expired at now + 5 s.
    cases.push(Case::bearer("exp = now + 5, at now", &moving).passes());
    cases.push(
        Case::bearer("exp = now + 5, at now + 4.999", &moving)
            .after(Duration::from_millis(4999))
            .passes(),
    );
    cases.push(
        Case::bearer("exp = now + 5, at now + 5 (cached)", &moving)
            .after(Duration::from_millis(1))
            .invalid_token("token expired"),
    );
    run("§3 time, leeway 0", &Target::with_clock(l, clock), cases).await;
}

#[tokio::test]
async fn maximum_lifetime() {
    let l = layer_with(builder().max_lifetime(Duration::from_secs(3600)));
    let life = |iat: Value, exp: Value| with(with(claims(), "iat", iat), "exp", exp);
    let cases = vec![
        Case::bearer("exp − iat = max", &rs(life(json!(T), json!(T + 3600)))).passes(),
        Case::bearer("exp − iat = max + 1", &rs(life(json!(T), json!(T + 3601))))
            .invalid_token("token lifetime exceeded"),
        Case::bearer("exp far away", &rs(life(json!(T), json!(1e300))))
            .invalid_token("token lifetime exceeded"),
        Case::bearer("iat missing", &rs(without(claims(), "iat")))
            .invalid_token("missing iat claim"),
    ];
    run("§3 maximum lifetime", &Target::new(l), cases).await;
}

// ---------------------------------------------------------------- §3 iss, aud, types

#[tokio::test]
async fn issuer_audience_and_types() {
    let mut cases = vec![
        Case::bearer("control", &rs(claims())).passes(),
        Case::bearer(
            "aud array containing the audience",
            &rs(with(claims(), "aud", json!(["other", AUD]))),
        )
        .passes(),
    ];
    for (name, token, description) in [
        (
            "iss missing",
            rs(without(claims(), "iss")),
            "missing iss claim",
        ),
        (
            "iss number",
            rs(with(claims(), "iss", json!(42))),
            "invalid iss claim",
        ),
        (
            "iss array",
            rs(with(claims(), "iss", json!([ISS]))),
            "invalid iss claim",
        ),
        (
            "iss null",
            rs(with(claims(), "iss", json!(null))),
            "invalid iss claim",
        ),
        (
            "iss another",
            rs(with(claims(), "iss", json!("https://evil.test"))),
            "invalid issuer",
        ),
        (
            "iss trailing slash",
            rs(with(claims(), "iss", json!(format!("{ISS}/")))),
            "invalid issuer",
        ),
        (
            "iss upper case",
            rs(with(claims(), "iss", json!(ISS.to_uppercase()))),
            "invalid issuer",
        ),
        (
            "iss with a NUL",
            rs(with(claims(), "iss", json!(format!("{ISS}\u{0}")))),
            "invalid issuer",
        ),
        (
            "iss with a quote",
            rs(with(claims(), "iss", json!("x\"y"))),
            "invalid issuer",
        ),
        (
            "aud missing",
            rs(without(claims(), "aud")),
            "missing aud claim",
        ),
        (
            "aud number",
            rs(with(claims(), "aud", json!(1))),
            "invalid aud claim",
        ),
        (
            "aud array with a number",
            rs(with(claims(), "aud", json!([AUD, 1]))),
            "invalid aud claim",
        ),
        (
            "aud object",
            rs(with(claims(), "aud", json!({ "aud": AUD }))),
            "invalid aud claim",
        ),
        (
            "aud another",
            rs(with(claims(), "aud", json!("api://other"))),
            "invalid audience",
        ),
        (
            "aud empty array",
            rs(with(claims(), "aud", json!([]))),
            "invalid audience",
        ),
        (
            "aud array of others",
            rs(with(claims(), "aud", json!(["a", "b"]))),
            "invalid audience",
        ),
        (
            "aud prefix",
            rs(with(claims(), "aud", json!(format!("{AUD}x")))),
            "invalid audience",
        ),
        (
            "sub number",
            rs(with(claims(), "sub", json!(12))),
            "invalid sub claim",
        ),
        (
            "scope array",
            rs(with(claims(), "scope", json!(["items:read"]))),
            "invalid scope claim",
        ),
        (
            "scp numbers",
            rs(with(claims(), "scp", json!([1, 2]))),
            "invalid scp claim",
        ),
        (
            "jti number",
            rs(with(claims(), "jti", json!(5))),
            "invalid jti claim",
        ),
        (
            "client_id boolean",
            rs(with(claims(), "client_id", json!(false))),
            "invalid client_id claim",
        ),
    ] {
        cases.push(Case::bearer(name, &token).invalid_token(description));
    }
    run("§3 iss / aud / types", &Target::new(layer()), cases).await;

    run(
        "§3 a required claim",
        &Target::new(layer_with(builder().require_claim("tenant"))),
        vec![
            Case::bearer("missing", &rs(claims())).invalid_token("required claim missing"),
            Case::bearer("present", &rs(with(claims(), "tenant", json!("t")))).passes(),
        ],
    )
    .await;

    // No audience configured: a token for some audience is for another service.
    let no_aud = |b: JwtBuilder| Target::new(layer_with(b));
    let base = || {
        Jwt::builder()
            .key(rsa().key())
            .issuer(ISS)
            .clock(ManualClock::at_unix(T))
    };
    run(
        "§3 no audience configured",
        &no_aud(base()),
        vec![
            Case::bearer("token with aud", &rs(claims())).invalid_token("invalid audience"),
            Case::bearer("token without aud", &rs(without(claims(), "aud"))).passes(),
        ],
    )
    .await;
    run(
        "§3 any audience, by explicit choice",
        &no_aud(base().any_audience()),
        vec![Case::bearer("token with aud", &rs(claims())).passes()],
    )
    .await;
}

#[tokio::test]
async fn rfc9068_typ() {
    let l = layer_with(builder().require_at_jwt());
    let typ = |t: Value| rs_h(json!({"alg": "RS256", "kid": "rsa-1", "typ": t}), claims());
    let cases = vec![
        Case::bearer("at+jwt", &typ(json!("at+jwt"))).passes(),
        Case::bearer("application/at+jwt", &typ(json!("application/at+jwt"))).passes(),
        Case::bearer("AT+JWT", &typ(json!("AT+JWT"))).passes(),
        Case::bearer("JWT", &typ(json!("JWT"))).invalid_token("invalid token type"),
        Case::bearer("at+jwt with spaces", &typ(json!(" at+jwt")))
            .invalid_token("invalid token type"),
        Case::bearer("id token", &typ(json!("id_token+jwt"))).invalid_token("invalid token type"),
        Case::bearer(
            "missing",
            &rs_h(json!({"alg": "RS256", "kid": "rsa-1"}), claims()),
        )
        .invalid_token("invalid token type"),
        Case::bearer("number", &typ(json!(1))).invalid_token("malformed token"),
    ];
    run("§3 RFC 9068 typ", &Target::new(l), cases).await;
}

/// jsonwebtoken alone accepts a token at `exp == now` and one without `aud` / `iss`: the gaps
/// the tables above close.
#[test]
fn the_gaps_jsonwebtoken_leaves_open() {
    // Both backends are compiled in with `--all-features`: pick the crate's, whether or not
    // another test of this binary already did.
    #[cfg(all(feature = "aws-lc-rs", feature = "rust-crypto"))]
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let now = support::now();
    let token = hs().mint(json!({"exp": now, "sub": "x"}));
    let key = jsonwebtoken::DecodingKey::from_secret(hs().secret().unwrap());
    let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
    v.leeway = 0;
    v.validate_aud = false;
    let lax = jsonwebtoken::decode::<Value>(&token, &key, &v);
    if support::now() == now {
        assert!(lax.is_ok(), "jsonwebtoken accepts exp == now");
    }
    let token = hs().mint(json!({"exp": now + 600, "sub": "x"}));
    let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
    v.set_audience(&[AUD]);
    v.set_issuer(&[ISS]);
    assert!(
        jsonwebtoken::decode::<Value>(&token, &key, &v).is_ok(),
        "jsonwebtoken lets missing aud / iss through"
    );
    let ours = builder()
        .clock(tower_bearer::clock::SystemClock)
        .build()
        .unwrap();
    assert_eq!(
        ours.verify(&token).unwrap_err().to_string(),
        "missing iss claim"
    );
}

// ---------------------------------------------------------------- §4 keys

#[tokio::test]
async fn jwks_entries_not_for_signatures() {
    let good = TestIssuer::es256().with_kid("k-ok");
    let enc = TestIssuer::es256().with_kid("k-enc");
    let wrong_alg = TestIssuer::es256().with_kid("k-alg");
    let ops = TestIssuer::es256().with_kid("k-ops");
    let private = TestIssuer::es256().with_kid("k-d");
    let rsa_as_ps = TestIssuer::rs256().with_kid("k-rsa-alg");
    let jwk = |i: &TestIssuer, k: &str, v: Value| {
        let mut j = i.jwk();
        j[k] = v;
        j
    };
    let set = json!({"keys": [
        jwk(&enc, "use", json!("enc")),
        jwk(&wrong_alg, "alg", json!("ES384")),
        jwk(&ops, "key_ops", json!(["encrypt"])),
        jwk(&private, "d", json!("AAAA")),
        jwk(&rsa_as_ps, "alg", json!("HS256")),
        {"kty": "oct", "alg": "HS256", "kid": "k-short", "k": "c2hvcnQ"},
        good.jwk(),
    ]});
    let set = KeySet::from_jwks_json(&set.to_string()).unwrap();
    assert_eq!(set.len(), 1);
    let l = layer_with(
        Jwt::builder()
            .keys(set)
            .issuer(ISS)
            .audience(AUD)
            .clock(ManualClock::at_unix(T)),
    );
    let mut cases = vec![Case::bearer("use: sig", &good.mint(claims())).passes()];
    for (name, issuer) in [
        ("use: enc", &enc),
        ("alg of another curve", &wrong_alg),
        ("key_ops without verify", &ops),
        ("private key material", &private),
        ("RSA key with alg HS256", &rsa_as_ps),
    ] {
        cases.push(Case::bearer(name, &issuer.mint(claims())).invalid_token("unknown signing key"));
    }
    run("§4 JWKS entries", &Target::new(l), cases).await;

    // jsonwebtoken's own from_jwk ignores `use`: ours refuses it.
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(jwk(&enc, "use", json!("enc"))).unwrap();
    assert!(jsonwebtoken::DecodingKey::from_jwk(&jwk).is_ok());
    assert!(Key::from_jwk(&jwk).is_err());
}

// ---------------------------------------------------------------- §5 scopes

fn scoped(scope: Value) -> Value {
    with(without(claims(), "scope"), "scope", scope)
}

#[tokio::test]
async fn scopes_on_a_route() {
    let policy = "items:write AND admin";
    let target = Target::new(
        ServiceBuilder::new()
            .layer(layer())
            .layer(ScopeGuardLayer::parse(policy).unwrap())
            .into_inner(),
    );
    let scp = |v: Value| rs(with(without(claims(), "scope"), "scp", v));
    let need = "items:write admin";
    let mut cases = vec![
        Case::bearer("both scopes", &rs(scoped(json!("items:write admin")))).passes(),
        Case::bearer(
            "both scopes and more",
            &rs(scoped(json!("x admin y items:write"))),
        )
        .passes(),
        Case::bearer("scp array", &scp(json!(["items:write", "admin"]))).passes(),
        Case::new("no token", request("/r", &[])).bare(),
        Case::bearer(
            "expired token with the scopes: 401, not 403",
            &rs(with(scoped(json!(need)), "exp", json!(T - 3600))),
        )
        .invalid_token("token expired"),
        Case::bearer(
            "forged token with the scopes: 401, not 403",
            &foreign().mint(scoped(json!(need))),
        )
        .invalid_token("invalid signature"),
        Case::bearer(
            "alg none with the scopes",
            &format!(
                "{}.{}.",
                b64json(&json!({"alg": "none"})),
                b64json(&scoped(json!(need)))
            ),
        )
        .invalid_token("malformed token"),
        Case::bearer(
            "scope of the wrong type",
            &rs(scoped(json!(["items:write", "admin"]))),
        )
        .invalid_token("invalid scope claim"),
    ];
    for (name, token) in [
        ("one of two", rs(scoped(json!("items:write")))),
        ("no scope claim", rs(without(claims(), "scope"))),
        ("empty scope", rs(scoped(json!("")))),
        ("other case", rs(scoped(json!("Items:Write ADMIN")))),
        ("longer names", rs(scoped(json!("items:writeonly admins")))),
        ("prefixes", rs(scoped(json!("items:writ admi")))),
        ("comma-delimited", rs(scoped(json!("items:write,admin")))),
        ("tab-delimited", rs(scoped(json!("items:write\tadmin")))),
        (
            "space smuggled inside one scp entry",
            scp(json!(["items:write admin"])),
        ),
        ("scp with one of two", scp(json!(["items:write"]))),
        (
            "scopes in another claim",
            rs(with(claims(), "roles", json!(["items:write", "admin"]))),
        ),
    ] {
        cases.push(Case::bearer(name, &token).insufficient(need, policy));
    }
    run("§5 scopes, route", &target, cases).await;
}

fn grpc_methods_target() -> Target {
    let table = MethodScopes::new()
        .method(
            "/inv.Items/Delete",
            ScopePolicy::parse("items:write AND admin").unwrap(),
        )
        .method("/inv.Items/*", ScopePolicy::scope("items:read"));
    let guard = ScopeGuardLayer::methods(table).unwrap();
    Target::new(
        ServiceBuilder::new()
            .layer(layer())
            .layer(guard)
            .into_inner(),
    )
}

#[tokio::test]
async fn scopes_per_grpc_method() {
    let reader = rs(scoped(json!("items:read")));
    let admin = rs(scoped(json!("items:read items:write admin")));
    let cases = vec![
        Case::grpc_call("reader: Get", "/inv.Items/Get", Some(&reader)).passes(),
        Case::grpc_call("admin: Delete", "/inv.Items/Delete", Some(&admin)).passes(),
        Case::grpc_call("reader: Delete", "/inv.Items/Delete", Some(&reader))
            .grpc_status("7", "insufficient scope: requires items:write AND admin"),
        Case::grpc_call(
            "admin: a method of no listed service",
            "/other.Svc/Get",
            Some(&admin),
        )
        .grpc_status("7", "insufficient scope: method not allowed"),
        Case::grpc_call("no token", "/inv.Items/Get", None)
            .grpc_status("16", "bearer token required"),
        Case::grpc_call(
            "forged admin: 16, not 7",
            "/inv.Items/Delete",
            Some(&foreign().mint(scoped(json!("items:write admin")))),
        )
        .grpc_status("16", "invalid signature"),
    ];
    run("§5 scopes, gRPC methods", &grpc_methods_target(), cases).await;
}

// ---------------------------------------------------------------- §6 rate limits

#[tokio::test]
async fn forged_tokens_spend_no_quota() {
    let clock = ManualClock::at_unix(T);
    let limit = RateLimitLayer::new(Quota::per(Duration::from_secs(10), 1))
        .store(MemoryStore::new().clock(clock.clone()));
    let target = Target::with_clock(
        ServiceBuilder::new()
            .layer(layer_with(builder_at(&clock)))
            .layer(limit)
            .into_inner(),
        clock.clone(),
    );
    let alice = rs(who("alice", "a1"));
    let alice_again = rs(who("alice", "a2"));
    let bob = ec().mint(who("bob", "b1"));
    let forged = |sub: &str| foreign().mint(who(sub, "f"));
    let unsigned = |sub: &str| {
        format!(
            "{}.{}.",
            b64json(&json!({"alg": "none"})),
            b64json(&who(sub, "u"))
        )
    };
    let with_headers = |token: &str, headers: &[(&str, &str)]| {
        let auth = format!("Bearer {token}");
        let mut all = vec![("authorization", auth.as_str())];
        all.extend_from_slice(headers);
        request("/r", &all)
    };
    let policy = r#""default";q=1;w=10"#;
    let cases = vec![
        // Forged, unsigned and expired tokens naming alice and bob, before any real request:
        // none of them may spend a quota of one.
        Case::bearer("forged alice", &forged("alice")).invalid_token("invalid signature"),
        Case::bearer("forged alice again", &forged("alice")).invalid_token("invalid signature"),
        Case::bearer("unsigned alice", &unsigned("alice")).invalid_token("malformed token"),
        Case::bearer(
            "expired alice",
            &rs(with(who("alice", "e"), "exp", json!(T - 3600))),
        )
        .invalid_token("token expired"),
        Case::bearer("forged bob", &forged("bob")).invalid_token("invalid signature"),
        Case::new(
            "alice with client headers naming others",
            with_headers(
                &alice,
                &[("x-forwarded-for", "10.0.0.1"), ("x-user", "bob")],
            ),
        )
        .token(&alice)
        .passes()
        .header("ratelimit-policy", policy)
        .header("ratelimit", r#""default";r=0;t=10"#),
        // Keyed on the verified subject: another token of alice's, other client headers.
        Case::new(
            "alice's second token, other client headers",
            with_headers(&alice_again, &[("x-forwarded-for", "10.0.0.2")]),
        )
        .token(&alice_again)
        .refused(StatusCode::TOO_MANY_REQUESTS, Challenge::Absent)
        .header("retry-after", "10")
        .header("ratelimit-policy", policy),
        Case::grpc_call("alice over gRPC", "/inv.Items/Get", Some(&alice))
            .grpc_status("8", "rate limit exceeded")
            .header("retry-after", "10"),
        Case::bearer("bob's quota is whole", &bob).passes(),
        Case::bearer("bob over", &bob).refused(StatusCode::TOO_MANY_REQUESTS, Challenge::Absent),
        // Retry-After rounds up: 0.5 s later, 9.5 s remain → 10.
        Case::bearer("alice, 0.5 s later", &alice)
            .after(Duration::from_millis(500))
            .refused(StatusCode::TOO_MANY_REQUESTS, Challenge::Absent)
            .header("retry-after", "10"),
        Case::bearer("alice, 10 s later", &alice)
            .after(Duration::from_millis(9500))
            .passes(),
    ];
    run("§6 rate limits", &target, cases).await;
}

// ---------------------------------------------------------------- §7 lifecycle

#[tokio::test]
async fn revoked_idle_and_old_tokens() {
    let clock = ManualClock::at_unix(T);
    let jwt = builder_at(&clock).build().unwrap();
    let lc = Lifecycle::new(jwt.clone())
        .revocations(MemoryRevocations::default().clock(clock.clone()))
        .idle_timeout(Duration::from_secs(60))
        .max_age(Duration::from_secs(3600))
        .clock(clock.clone());
    let revoked = rs(who("alice", "r1"));
    lc.revoke_token(&jwt.verify(&revoked).unwrap())
        .await
        .unwrap();
    let no_jti = rs(without(who("alice", "x"), "jti"));
    lc.revoke_token(&jwt.verify(&no_jti).unwrap())
        .await
        .unwrap();
    lc.revoke(Revocation::Subject {
        issuer: Some(ISS.into()),
        subject: "mallory".into(),
        issued_before: UNIX_EPOCH + Duration::from_secs(T - 5),
        until: UNIX_EPOCH + Duration::from_secs(T + 3600),
    })
    .await
    .unwrap();
    let same_jti_other_sub = rs(who("bob", "r1"));
    let idle = rs(who("carol", "i1"));
    let fresh = rs(who("carol", "i2"));
    let cases = vec![
        Case::bearer("not revoked", &rs(who("alice", "ok"))).passes(),
        Case::bearer("revoked by jti", &revoked).invalid_token("token revoked"),
        Case::bearer("the revoked jti under another subject", &same_jti_other_sub)
            .invalid_token("token revoked"),
        Case::bearer("revoked by fingerprint", &no_jti).invalid_token("token revoked"),
        Case::bearer("subject revoked, issued before", &rs(who("mallory", "m1")))
            .invalid_token("token revoked"),
        Case::bearer(
            "subject revoked, issued after",
            &rs(with(who("mallory", "m2"), "iat", json!(T))),
        )
        .passes(),
        Case::bearer(
            "older than the maximum age",
            &rs(with(who("dave", "d1"), "iat", json!(T - 3601))),
        )
        .invalid_token("token too old"),
        Case::bearer("idle: first use", &idle).passes(),
        Case::bearer("idle: used again within 60 s", &idle)
            .after(Duration::from_secs(59))
            .passes(),
        Case::bearer("idle: unused for 61 s", &idle)
            .after(Duration::from_secs(61))
            .invalid_token("token idle for too long"),
        Case::bearer("idle: another token is new", &fresh).passes(),
    ];
    run(
        "§7 lifecycle",
        &Target::with_clock(BearerAuthLayer::new(lc).realm(REALM), clock),
        cases,
    )
    .await;
}

#[tokio::test]
async fn static_api_keys() {
    let key = "sk_live_0123456789abcdefABCDEF";
    let keys = StaticTokens::builder()
        .token(key, json!({"sub": "robot"}))
        .build()
        .unwrap();
    let target = Target::new(BearerAuthLayer::new(keys).realm(REALM));
    let mut cases = vec![Case::bearer("the key", key).passes()];
    for (name, bad) in [
        ("upper case", key.to_uppercase()),
        ("a prefix", key[..key.len() - 1].to_owned()),
        ("one more character", format!("{key}0")),
        (
            "last character changed",
            format!("{}0", &key[..key.len() - 1]),
        ),
        ("its SHA-256", StaticTokens::digest_hex(key)),
    ] {
        cases.push(Case::bearer(name, &bad).invalid_token("unknown api key"));
    }
    run("§7 static API keys", &target, cases).await;
}

// ---------------------------------------------------------------- §8 gRPC

#[tokio::test]
async fn grpc_status_codes() {
    let token = rs(claims());
    let two = request(
        "/pkg.Svc/M",
        &[
            ("content-type", "application/grpc"),
            ("authorization", &format!("Bearer {token}")),
            ("authorization", &format!("Bearer {token}")),
        ],
    );
    let proto = request(
        "/pkg.Svc/M",
        &[
            ("content-type", "application/grpc+proto"),
            ("authorization", "Bearer abc.def.ghi"),
        ],
    );
    let cases = vec![
        Case::grpc_call("valid", "/pkg.Svc/M", Some(&token)).passes(),
        Case::grpc_call("no token", "/pkg.Svc/M", None).grpc_status("16", "bearer token required"),
        Case::grpc_call("malformed", "/pkg.Svc/M", Some("abc.def.ghi"))
            .grpc_status("16", "malformed token"),
        Case::new("application/grpc+proto", proto).grpc_status("16", "malformed token"),
        Case::grpc_call(
            "expired",
            "/pkg.Svc/M",
            Some(&rs(with(claims(), "exp", json!(T - 3600)))),
        )
        .grpc_status("16", "token expired"),
        Case::grpc_call("forged", "/pkg.Svc/M", Some(&foreign().mint(claims())))
            .grpc_status("16", "invalid signature"),
        Case::new("two credentials", two)
            .token(&token)
            .grpc_status("16", "more than one credential"),
        Case::grpc_call("charset", "/pkg.Svc/M", Some("a,b"))
            .grpc_status("16", "malformed bearer credentials"),
    ];
    run("§8 gRPC", &Target::new(layer()), cases).await;
}

#[tokio::test]
async fn grpc_dependency_down() {
    use tower_bearer::jwks::RemoteJwks;
    // A key endpoint on a loopback port nobody listens on; no key set ever loaded.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let remote = RemoteJwks::builder(format!("http://127.0.0.1:{port}/jwks"))
        .client(reqwest::Client::new())
        .timeout(Duration::from_millis(500))
        .start_empty()
        .build()
        .await
        .unwrap();
    let jwt = Jwt::builder()
        .jwks(remote)
        .issuer(ISS)
        .audience(AUD)
        .clock(ManualClock::at_unix(T))
        .build()
        .unwrap();
    let token = rs(claims());
    let cases = vec![
        Case::bearer("HTTP", &token).refused(StatusCode::SERVICE_UNAVAILABLE, Challenge::Absent),
        Case::grpc_call("gRPC", "/pkg.Svc/M", Some(&token))
            .grpc_status("14", "authentication temporarily unavailable"),
        Case::grpc_call("gRPC, no token: still 16", "/pkg.Svc/M", None)
            .grpc_status("16", "bearer token required"),
    ];
    run(
        "§8 dependency down",
        &Target::new(BearerAuthLayer::new(jwt).realm(REALM)),
        cases,
    )
    .await;

    // Redis down behind a valid token: the revocation check and the rate limit fail closed,
    // 503 over HTTP and 14 over gRPC, never 16.
    let Some(mut redis) = support::RedisServer::start() else {
        return;
    };
    let revocations = tower_bearer::lifecycle::RedisRevocations::connect(&redis.url())
        .await
        .unwrap();
    let store = tower_bearer::rate_limit::RedisStore::connect(&redis.url())
        .await
        .unwrap()
        .timeout(Duration::from_millis(300));
    redis.kill();
    let revocation_check =
        BearerAuthLayer::new(Lifecycle::new(builder().build().unwrap()).revocations(revocations))
            .realm(REALM);
    let rate_limit = layer()
        .rate_limit(RateLimitLayer::new(Quota::per(Duration::from_secs(60), 5)).store(store));
    for (name, target) in [
        ("§8 Redis down: revocations", revocation_check),
        ("§8 Redis down: rate limit", rate_limit),
    ] {
        let cases = vec![
            Case::bearer("HTTP", &token)
                .refused(StatusCode::SERVICE_UNAVAILABLE, Challenge::Absent),
            Case::grpc_call("gRPC", "/pkg.Svc/M", Some(&token)).grpc_status(
                "14",
                if name.ends_with("revocations") {
                    "revocation check temporarily unavailable"
                } else {
                    "rate limiting temporarily unavailable"
                },
            ),
        ];
        run(name, &Target::new(target), cases).await;
    }
}

// ---------------------------------------------------------------- §9 never

#[tokio::test]
async fn arbitrary_input_never_panics_never_500_never_reaches_the_service() {
    // A deterministic pseudo-random walk over header bytes and token shapes (the fuzz
    // targets in fuzz/ do this at scale).
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"ABCxyz019-_.~+/= \t\"',;eyJ";
    let good = rs(claims());
    let target = Target::new(layer());
    let mut refused = 0;
    for i in 0..600 {
        let len = (next() % 200) as usize;
        let mut token: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        if i % 3 == 0 {
            // Mutate a real token: flip, cut or insert.
            token = good.as_bytes().to_vec();
            let at = (next() % token.len() as u64) as usize;
            match next() % 3 {
                0 => token[at] = alphabet[(next() % alphabet.len() as u64) as usize],
                1 => token.truncate(at),
                _ => token.insert(at, b'.'),
            }
        }
        let Ok(value) = HeaderValue::from_bytes(&[b"Bearer ".as_slice(), &token].concat()) else {
            continue;
        };
        let req = Request::builder()
            .header("authorization", value)
            .body(Full::default())
            .unwrap();
        let out = target.send(req).await;
        if out.called {
            // Only the untouched token (a mutation that changed nothing) may pass.
            assert_eq!(out.status, StatusCode::OK);
            assert_eq!(token, good.as_bytes(), "{i}: a mutated token passed");
            continue;
        }
        refused += 1;
        assert!(
            matches!(out.status.as_u16(), 400 | 401),
            "{i}: {:?}",
            out.status
        );
        assert!(out.challenge().starts_with("Bearer realm="));
        out.assert_no_token_material(&String::from_utf8_lossy(&token));
    }
    assert!(refused > 300, "the walk exercised refusals: {refused}");
}

#[test]
fn debug_output_never_shows_the_token() {
    use tower_bearer::extract::{BearerToken, TokenSource};
    let token = rs(claims());
    let signature = token.rsplit('.').next().unwrap();
    let bt = BearerToken::new(token.as_str(), TokenSource::Authorization);
    let jwt = builder().build().unwrap();
    let principal = jwt.verify(&token).unwrap();
    let err = jwt.verify(&foreign().mint(claims())).unwrap_err();
    for text in [
        format!("{bt:?}"),
        format!("{principal:?}"),
        format!("{err:?}"),
        format!("{err}"),
        format!("{jwt:?}"),
        format!("{:?}", layer()),
    ] {
        assert!(!text.contains(&token), "{text}");
        assert!(!text.contains(signature), "{text}");
        assert!(!text.contains(&token[..20]), "{text}");
    }
}
