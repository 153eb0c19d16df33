//! Per-client IP allowlists (`IpAllowlistLayer`) behind the bearer layer: by peer address, via
//! a trusted proxy's header (both ways), the 403 and its gRPC code, and on real axum and tonic
//! servers on 127.0.0.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::BearerAuthLayer;
use tower_bearer::network::{
    ForwardedHeader, IpAllowlistLayer, PeerAddr, TransportPolicy, TrustedProxies,
};
use tower_bearer::reject::Renderer;
use tower_bearer::testing::{TestIssuer, claims};
use tower_bearer::validate::Jwt;

const REALM: &str = "test";
const AUDIENCE: &str = "api";
/// Upper bound for any single step of the real-server tests.
const STEP: Duration = Duration::from_secs(10);
const PROXY: &str = "10.0.0.2:41000";

fn jwt(issuer: &TestIssuer) -> Jwt {
    Jwt::builder()
        .key(issuer.key())
        .audience(AUDIENCE)
        .build()
        .unwrap()
}

/// A token of `client_id` (none when empty), with extra claims.
fn token(issuer: &TestIssuer, client_id: &str, extra: &[(&str, serde_json::Value)]) -> String {
    let mut c = claims("alice", "", Duration::from_secs(300)).aud(AUDIENCE);
    if !client_id.is_empty() {
        c = c.client_id(client_id);
    }
    for (k, v) in extra {
        c = c.set(k, v.clone());
    }
    issuer.mint(c)
}

/// `batch` may call from 192.0.2.0/24 only; tenant `acme` from 198.51.100.0/24 only.
fn allowlist() -> tower_bearer::network::IpAllowlistBuilder {
    IpAllowlistLayer::builder()
        .client("batch", ["192.0.2.0/24", "2001:db8:b::/48"])
        .claim("tenant", "acme", ["198.51.100.0/24"])
}

#[derive(Debug)]
struct Outcome {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
    called: bool,
}

impl Outcome {
    #[track_caller]
    fn assert_ok(&self) {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert!(self.called);
    }

    #[track_caller]
    fn assert_denied(&self) {
        assert_eq!(self.status, StatusCode::FORBIDDEN, "{self:?}");
        assert!(
            !self.headers.contains_key("www-authenticate"),
            "another token would not help: no challenge"
        );
        assert_eq!(
            self.body,
            r#"{"error":"access_denied","error_description":"client address not allowed"}"#
        );
        assert!(!self.called, "inner service must not run");
    }
}

async fn send(
    issuer: &TestIssuer,
    guard: IpAllowlistLayer,
    token: Option<&str>,
    peer: Option<&str>,
    headers: &[(&str, &str)],
) -> Outcome {
    let calls = Arc::new(AtomicUsize::new(0));
    let count = calls.clone();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(jwt(issuer)).realm(REALM))
        .layer(guard)
        .service(service_fn(move |_req: Request<Full<Bytes>>| {
            count.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")))) }
        }));
    let mut b = Request::builder().uri("/r");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut req = b.body(Full::default()).unwrap();
    if let Some(p) = peer {
        req.extensions_mut().insert(PeerAddr(p.parse().unwrap()));
    }
    let res = svc.oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Outcome {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        called: calls.load(Ordering::SeqCst) == 1,
    }
}

#[tokio::test]
async fn allowed_and_denied_by_peer_address() {
    let issuer = TestIssuer::hs256();
    let guard = allowlist().build().unwrap();
    let batch = token(&issuer, "batch", &[]);
    for peer in [
        "192.0.2.10:5000",
        "[2001:db8:b:1::9]:5000",
        "[::ffff:192.0.2.10]:1",
    ] {
        send(&issuer, guard.clone(), Some(&batch), Some(peer), &[])
            .await
            .assert_ok();
    }
    for peer in ["192.0.3.10:5000", "[2001:db8:c::1]:5000", "127.0.0.1:1"] {
        send(&issuer, guard.clone(), Some(&batch), Some(peer), &[])
            .await
            .assert_denied();
    }
    // `azp` names the client too.
    let azp = issuer.mint(
        claims("alice", "", Duration::from_secs(300))
            .aud(AUDIENCE)
            .set("azp", "batch"),
    );
    send(
        &issuer,
        guard.clone(),
        Some(&azp),
        Some("203.0.113.1:1"),
        &[],
    )
    .await
    .assert_denied();
    // An unknown address fails every rule.
    send(&issuer, guard, Some(&batch), None, &[])
        .await
        .assert_denied();
}

#[tokio::test]
async fn claim_rules_and_unlisted_principals() {
    let issuer = TestIssuer::hs256();
    let guard = allowlist().build().unwrap();
    let acme = token(&issuer, "web", &[("tenant", "acme".into())]);
    send(
        &issuer,
        guard.clone(),
        Some(&acme),
        Some("198.51.100.5:1"),
        &[],
    )
    .await
    .assert_ok();
    send(
        &issuer,
        guard.clone(),
        Some(&acme),
        Some("192.0.2.10:1"),
        &[],
    )
    .await
    .assert_denied();
    // `batch` of tenant `acme`: both rules apply, no address satisfies both.
    let both = token(&issuer, "batch", &[("tenant", "acme".into())]);
    send(
        &issuer,
        guard.clone(),
        Some(&both),
        Some("192.0.2.10:1"),
        &[],
    )
    .await
    .assert_denied();
    // No rule names `web` of tenant `other`: it passes from anywhere, or nowhere with
    // `deny_unlisted`.
    let other = token(&issuer, "web", &[("tenant", "other".into())]);
    send(&issuer, guard, Some(&other), Some("203.0.113.1:1"), &[])
        .await
        .assert_ok();
    let strict = allowlist().deny_unlisted().build().unwrap();
    send(
        &issuer,
        strict.clone(),
        Some(&other),
        Some("203.0.113.1:1"),
        &[],
    )
    .await
    .assert_denied();
    let batch = token(&issuer, "batch", &[]);
    send(&issuer, strict, Some(&batch), Some("192.0.2.1:1"), &[])
        .await
        .assert_ok();
    // A numeric or boolean claim matches a rule by its JSON text: `42` is ruled by "42".
    let numeric = allowlist()
        .claim("tenant", "42", ["198.51.100.0/24"])
        .build()
        .unwrap();
    for value in [serde_json::json!(42), serde_json::json!([42])] {
        let t = token(&issuer, "web", &[("tenant", value)]);
        send(
            &issuer,
            numeric.clone(),
            Some(&t),
            Some("192.0.2.10:1"),
            &[],
        )
        .await
        .assert_denied();
    }
}

#[tokio::test]
async fn via_a_trusted_proxy_both_ways() {
    let issuer = TestIssuer::hs256();
    let guard = allowlist()
        .trusted_proxies(TrustedProxies::new(["10.0.0.0/8"]).unwrap())
        .build()
        .unwrap();
    let batch = token(&issuer, "batch", &[]);
    // The proxy forwards an allowed client…
    send(
        &issuer,
        guard.clone(),
        Some(&batch),
        Some(PROXY),
        &[("x-forwarded-for", "192.0.2.10, 10.0.0.7")],
    )
    .await
    .assert_ok();
    // …or one outside the ranges: the proxy's own address does not count.
    send(
        &issuer,
        guard.clone(),
        Some(&batch),
        Some(PROXY),
        &[("x-forwarded-for", "203.0.113.9")],
    )
    .await
    .assert_denied();
    // A client prepending an allowed address is judged on the entry its proxy appended.
    send(
        &issuer,
        guard.clone(),
        Some(&batch),
        Some(PROXY),
        &[("x-forwarded-for", "192.0.2.10, 203.0.113.9")],
    )
    .await
    .assert_denied();
    // An untrusted peer cannot claim an allowed address…
    send(
        &issuer,
        guard.clone(),
        Some(&batch),
        Some("203.0.113.9:1"),
        &[
            ("x-forwarded-for", "192.0.2.10"),
            ("forwarded", "for=192.0.2.10"),
            ("x-real-ip", "192.0.2.10"),
        ],
    )
    .await
    .assert_denied();
    // …nor lose its own by sending a foreign one.
    send(
        &issuer,
        guard.clone(),
        Some(&batch),
        Some("192.0.2.10:1"),
        &[("x-forwarded-for", "203.0.113.9")],
    )
    .await
    .assert_ok();
    // A malformed header from the trusted proxy is a 400, not a guess.
    let res = send(
        &issuer,
        guard,
        Some(&batch),
        Some(PROXY),
        &[("x-forwarded-for", "192.0.2.10:x")],
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{res:?}");
    assert!(res.body.contains("malformed forwarding header"), "{res:?}");
    assert!(!res.called);
}

#[tokio::test]
async fn via_a_trusted_proxy_with_forwarded() {
    let issuer = TestIssuer::hs256();
    let guard = allowlist()
        .trusted_proxies(
            TrustedProxies::new(["10.0.0.0/8"])
                .unwrap()
                .header(ForwardedHeader::Forwarded),
        )
        .build()
        .unwrap();
    let batch = token(&issuer, "batch", &[]);
    for (value, ok) in [
        ("for=192.0.2.10", true),
        (r#"for="[2001:db8:b::1]:443""#, true),
        ("for=192.0.2.10, for=10.0.0.9", true),
        ("for=192.0.2.10, for=203.0.113.9", false),
        ("for=unknown", false),
        ("for=_proxy7", false),
    ] {
        let res = send(
            &issuer,
            guard.clone(),
            Some(&batch),
            Some(PROXY),
            &[("forwarded", value)],
        )
        .await;
        if ok {
            res.assert_ok();
        } else {
            res.assert_denied();
        }
    }
    // With `Forwarded` configured, `X-Forwarded-For` proves nothing: the proxy is the client.
    send(
        &issuer,
        guard,
        Some(&batch),
        Some(PROXY),
        &[("x-forwarded-for", "192.0.2.10")],
    )
    .await
    .assert_denied();
}

#[tokio::test]
async fn grpc_calls_get_permission_denied() {
    let issuer = TestIssuer::hs256();
    let batch = token(&issuer, "batch", &[]);
    let res = send(
        &issuer,
        allowlist().build().unwrap(),
        Some(&batch),
        Some("203.0.113.9:1"),
        &[("content-type", "application/grpc")],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers["grpc-status"], "7");
    assert_eq!(res.headers["grpc-message"], "client address not allowed");
    assert!(!res.called);
}

#[tokio::test]
async fn without_a_principal_the_guard_answers_401() {
    let calls = Arc::new(AtomicUsize::new(0));
    let count = calls.clone();
    let svc = allowlist()
        .build()
        .unwrap()
        .renderer(Renderer::new("guard"))
        .layer(service_fn(move |_req: Request<Full<Bytes>>| {
            count.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())) }
        }));
    let mut req = Request::new(Full::default());
    req.extensions_mut()
        .insert(PeerAddr("192.0.2.10:1".parse().unwrap()));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="guard""#);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn bad_configuration_is_an_error_at_build_time() {
    for (builder, needle) in [
        (
            IpAllowlistLayer::builder().client("a", ["10.0.0.1/8"]),
            "did you mean 10.0.0.0/8",
        ),
        (
            IpAllowlistLayer::builder().claim("t", "x", ["10.0.0.0/40"]),
            "longer than the address",
        ),
        (
            IpAllowlistLayer::builder().unlisted(["localhost"]),
            "not a CIDR",
        ),
    ] {
        let err = builder.build().unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
    assert!(TrustedProxies::new(["10.0.0.0/8", "nope"]).is_err());
}

// --- Real servers on loopback.

#[tokio::test]
async fn real_axum_server_with_connect_info() {
    let issuer = TestIssuer::hs256();
    let guard = IpAllowlistLayer::builder()
        .client("local", ["127.0.0.0/8", "::1"])
        .client("office", ["192.0.2.0/24"])
        .build()
        .unwrap();
    let app = Router::new()
        .route("/r", get(|| async { "ok" }))
        .layer(guard)
        .layer(
            BearerAuthLayer::new(jwt(&issuer))
                .realm(REALM)
                .transport(TransportPolicy::https_only()),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
        })
        .into_future(),
    );
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let call = |token: String| {
        let client = client.clone();
        async move {
            let req = Request::builder()
                .uri(format!("http://{addr}/r"))
                .header("authorization", format!("Bearer {token}"))
                .body(Full::default())
                .unwrap();
            let res = tokio::time::timeout(STEP, client.request(req))
                .await
                .expect("answer in time")
                .expect("request succeeds");
            res.status()
        }
    };
    assert_eq!(call(token(&issuer, "local", &[])).await, StatusCode::OK);
    assert_eq!(
        call(token(&issuer, "office", &[])).await,
        StatusCode::FORBIDDEN
    );
    let _ = stop.send(());
    tokio::time::timeout(STEP, task)
        .await
        .expect("server stops in time")
        .expect("server task does not panic")
        .expect("server ends cleanly");
}

#[tokio::test]
async fn real_tonic_server_judges_the_tcp_peer() {
    use tonic::transport::server::TcpIncoming;
    use tonic::transport::{Endpoint, Server};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let issuer = TestIssuer::hs256();
    let guard = IpAllowlistLayer::builder()
        .client("local", ["127.0.0.1"])
        .client("office", ["192.0.2.0/24"])
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let (stop, stopped) = oneshot::channel::<()>();
    let router = Server::builder()
        .layer(BearerAuthLayer::new(jwt(&issuer)).realm(REALM))
        .layer(guard)
        .add_service(health);
    let task = tokio::spawn(router.serve_with_incoming_shutdown(
        TcpIncoming::from(listener),
        async move {
            let _ = stopped.await;
        },
    ));
    let channel = tokio::time::timeout(
        STEP,
        Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect(),
    )
    .await
    .expect("connects in time")
    .expect("connects");
    let mut client = HealthClient::new(channel);
    let mut check = async |token: String| {
        let mut req = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        tokio::time::timeout(STEP, client.check(req))
            .await
            .expect("answer in time")
    };
    assert!(check(token(&issuer, "local", &[])).await.is_ok());
    let status = check(token(&issuer, "office", &[])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(status.message(), "client address not allowed");
    drop(client);
    let _ = stop.send(());
    tokio::time::timeout(STEP, task)
        .await
        .expect("server stops in time")
        .expect("server task does not panic")
        .expect("server ends cleanly");
}
