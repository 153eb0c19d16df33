//! RFC 7662 introspection against a real HTTP endpoint on 127.0.0.1.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};
use support::{REALM, bearer, now, send};
use tower_bearer::BearerAuthLayer;
use tower_bearer::clock::ManualClock;
use tower_bearer::introspection::{Introspection, IntrospectionBuilder};

/// What the endpoint answers for one token.
#[derive(Clone, Debug)]
enum Reply {
    Json(Value),
    /// A 200 with this raw body, labelled `application/json`.
    Raw(&'static str),
    Status(u16),
    Html,
    Huge,
    Hang,
    Slow(Duration, Value),
}

/// One request the endpoint received.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    content_type: Option<String>,
    authorization: Option<String>,
    body: String,
    /// The decoded `token` form field.
    token: Option<String>,
}

#[derive(Default)]
struct Shared {
    replies: Mutex<HashMap<String, Reply>>,
    seen: Mutex<Vec<Seen>>,
}

struct Endpoint {
    url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn form_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .unwrap()
        .into_owned()
}

async fn introspect(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    body: String,
) -> Response {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    let token = body
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| form_decode(v));
    shared.seen.lock().unwrap().push(Seen {
        method,
        content_type: header("content-type"),
        authorization: header("authorization"),
        body: body.clone(),
        token: token.clone(),
    });
    let reply = token
        .and_then(|t| shared.replies.lock().unwrap().get(&t).cloned())
        .unwrap_or(Reply::Json(json!({"active": false})));
    match reply {
        Reply::Json(v) => axum::Json(v).into_response(),
        Reply::Raw(text) => ([("content-type", "application/json")], text).into_response(),
        Reply::Status(code) => (
            StatusCode::from_u16(code).unwrap(),
            // A careless server echoing what it got: must never reach the logs.
            format!("error for {body}"),
        )
            .into_response(),
        Reply::Html => (
            [("content-type", "text/html")],
            "<html><body>maintenance</body></html>",
        )
            .into_response(),
        Reply::Huge => {
            let big = format!(r#"{{"active":true,"pad":"{}"}}"#, "a".repeat(1024 * 1024));
            ([("content-type", "application/json")], big).into_response()
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            axum::Json(json!({"active": true})).into_response()
        }
        Reply::Slow(delay, v) => {
            tokio::time::sleep(delay).await;
            axum::Json(v).into_response()
        }
    }
}

impl Endpoint {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/oauth2/introspect",
            listener.local_addr().unwrap()
        );
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/oauth2/introspect", any(introspect))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            shared,
            server,
        }
    }

    fn reply(&self, token: &str, reply: Reply) {
        self.shared
            .replies
            .lock()
            .unwrap()
            .insert(token.to_owned(), reply);
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    fn posts(&self) -> usize {
        self.shared.seen.lock().unwrap().len()
    }

    fn posts_for(&self, token: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.token.as_deref() == Some(token))
            .count()
    }
}

fn builder(ep: &Endpoint) -> IntrospectionBuilder {
    Introspection::builder(ep.url.clone())
        .client(reqwest::Client::new())
        .client_basic("rs-client", "s3cret")
        .timeout(Duration::from_millis(500))
}

fn layer(i: Introspection) -> BearerAuthLayer {
    BearerAuthLayer::new(i).realm(REALM)
}

fn active(sub: &str) -> Value {
    json!({
        "active": true,
        "sub": sub,
        "scope": "items:read items:write",
        "client_id": "web-app",
        "username": sub,
        "token_type": "Bearer",
        "iss": "https://as.example",
        "jti": format!("jti-{sub}"),
        "iat": now() - 10,
        "exp": now() + 600,
    })
}

#[track_caller]
fn assert_unavailable(out: &support::Outcome) {
    assert_eq!(out.status, StatusCode::SERVICE_UNAVAILABLE, "{out:?}");
    assert!(!out.called, "inner service must not run");
    assert!(out.body.contains("temporarily_unavailable"), "{}", out.body);
}

#[tokio::test]
async fn an_active_token_passes_with_its_principal_after_a_form_post_with_basic_auth() {
    let ep = Endpoint::start().await;
    // b64token characters that form-encoding must escape.
    let token = "opaque/abc+def~.-_==";
    ep.reply(token, Reply::Json(active("alice")));
    let i = builder(&ep).build().unwrap();
    let l = layer(i.clone());

    let out = send(&l, bearer(token)).await;
    let p = out.assert_ok();
    assert_eq!(p.subject(), Some("alice"));
    assert_eq!(p.client_id(), Some("web-app"));
    assert_eq!(p.issuer(), Some("https://as.example"));
    assert_eq!(p.token_id(), Some("jti-alice"));
    assert!(p.scopes().contains_all(["items:read", "items:write"]));
    assert_eq!(p.scopes().len(), 2);
    assert!(p.expires_at().is_some());
    assert_eq!(
        p.fingerprint(),
        tower_bearer::TokenFingerprint::of_bytes(token.as_bytes())
    );

    let seen = ep.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.method, Method::POST);
    assert_eq!(
        s.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        s.authorization.as_deref(),
        Some(format!("Basic {}", STANDARD.encode("rs-client:s3cret")).as_str())
    );
    assert_eq!(
        s.body,
        "token=opaque%2Fabc%2Bdef%7E.-_%3D%3D&token_type_hint=access_token"
    );
    assert_eq!(s.token.as_deref(), Some(token));
    assert_eq!(i.stats().posts, 1);
    assert_eq!(i.stats().failures, 0);
}

#[tokio::test]
async fn basic_credentials_are_form_encoded_and_bearer_client_auth_works() {
    let ep = Endpoint::start().await;
    ep.reply("t1", Reply::Json(active("alice")));
    let i = builder(&ep)
        .client_basic("rs client", "p@ss:w/rd")
        .build()
        .unwrap();
    send(&layer(i), bearer("t1")).await.assert_ok();
    let expected = format!("Basic {}", STANDARD.encode("rs+client:p%40ss%3Aw%2Frd"));
    assert_eq!(
        ep.seen()[0].authorization.as_deref(),
        Some(expected.as_str())
    );

    let i = builder(&ep).client_bearer("rs-access").build().unwrap();
    send(&layer(i), bearer("t1")).await.assert_ok();
    assert_eq!(
        ep.seen()[1].authorization.as_deref(),
        Some("Bearer rs-access")
    );
}

#[tokio::test]
async fn inactive_or_not_exactly_true_is_401_inactive() {
    let ep = Endpoint::start().await;
    let i = builder(&ep).build().unwrap();
    let l = layer(i);
    let cases = [
        ("t-false", json!({"active": false})),
        ("t-string", json!({"active": "true", "sub": "alice"})),
        ("t-one", json!({"active": 1, "sub": "alice"})),
        ("t-null", json!({"active": null})),
        ("t-missing", json!({"sub": "alice", "scope": "items:read"})),
        ("t-array", json!({"active": [true]})),
    ];
    for (token, reply) in &cases {
        ep.reply(token, Reply::Json(reply.clone()));
        let out = send(&l, bearer(token)).await;
        out.assert_invalid_token("token inactive");
        out.assert_no_token_material(token);
    }
    // A token the server does not know (it answers `{"active":false}`).
    send(&l, bearer("never-issued"))
        .await
        .assert_invalid_token("token inactive");
    assert_eq!(ep.posts(), cases.len() + 1);
}

#[tokio::test]
async fn endpoint_failures_are_503_and_never_cached() {
    let _serial = WARN_PATHS.lock().await;
    let ep = Endpoint::start().await;
    let i = builder(&ep).max_body_bytes(16 * 1024).build().unwrap();
    let l = layer(i.clone());
    let cases = [
        ("t-500", Reply::Status(500)),
        ("t-401", Reply::Status(401)),
        ("t-204", Reply::Status(204)),
        ("t-html", Reply::Html),
        ("t-huge", Reply::Huge),
        ("t-array", Reply::Raw("[true]")),
        ("t-bool", Reply::Raw("true")),
        ("t-truncated", Reply::Raw(r#"{"active":true"#)),
        (
            "t-duplicate",
            Reply::Raw(r#"{"active":false,"active":true}"#),
        ),
    ];
    for (token, reply) in &cases {
        ep.reply(token, reply.clone());
        let out = send(&l, bearer(token)).await;
        assert_unavailable(&out);
        out.assert_no_token_material(token);
        // Not cached: the next request asks again.
        assert_unavailable(&send(&l, bearer(token)).await);
        assert_eq!(ep.posts_for(token), 2, "{reply:?}");
    }
    assert_eq!(i.stats().failures, 2 * cases.len() as u64);
    // Once the endpoint recovers, the token passes.
    ep.reply("t-500", Reply::Json(active("alice")));
    send(&l, bearer("t-500")).await.assert_ok();
}

#[tokio::test]
async fn a_hanging_endpoint_is_503_within_the_timeout() {
    let ep = Endpoint::start().await;
    ep.reply("t-hang", Reply::Hang);
    let i = builder(&ep)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let l = layer(i);
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(5), send(&l, bearer("t-hang")))
        .await
        .expect("the introspection call is bounded by its timeout");
    let took = started.elapsed();
    assert_unavailable(&out);
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn connection_refused_is_503() {
    let _serial = WARN_PATHS.lock().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/introspect", listener.local_addr().unwrap());
    drop(listener);
    let i = Introspection::builder(url)
        .client(reqwest::Client::new())
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(5), send(&layer(i.clone()), bearer("t")))
        .await
        .unwrap();
    assert_unavailable(&out);
    assert_eq!(i.stats().failures, 1);
}

#[tokio::test]
async fn endpoint_failure_is_grpc_unavailable() {
    let ep = Endpoint::start().await;
    ep.reply("t-500", Reply::Status(500));
    let l = layer(builder(&ep).build().unwrap());
    let req = http::Request::builder()
        .uri("/orders.Orders/Get")
        .method("POST")
        .header("content-type", "application/grpc")
        .header("authorization", "Bearer t-500")
        .body(Full::<Bytes>::default())
        .unwrap();
    let out = send(&l, req).await;
    assert_eq!(out.status, StatusCode::OK);
    assert_eq!(out.headers["grpc-status"], "14");
    assert!(!out.called);
}

#[tokio::test]
async fn time_claims_and_claim_types_are_checked() {
    let ep = Endpoint::start().await;
    let l = layer(builder(&ep).build().unwrap());
    let n = now();
    let cases = [
        (
            "t-expired",
            json!({"active": true, "exp": n - 5}),
            "token expired",
        ),
        (
            "t-exp-string",
            json!({"active": true, "exp": (n + 600).to_string()}),
            "invalid time claim",
        ),
        (
            "t-nbf",
            json!({"active": true, "nbf": n + 3600, "exp": n + 7200}),
            "token not yet valid",
        ),
        (
            "t-iat",
            json!({"active": true, "iat": n + 3600, "exp": n + 7200}),
            "token issued in the future",
        ),
        (
            "t-sub",
            json!({"active": true, "sub": 42}),
            "invalid sub claim",
        ),
        (
            "t-scope",
            json!({"active": true, "scope": ["a", "b"]}),
            "invalid scope claim",
        ),
        (
            "t-client",
            json!({"active": true, "client_id": {"id": 1}}),
            "invalid client_id claim",
        ),
        (
            "t-iss",
            json!({"active": true, "iss": 1}),
            "invalid iss claim",
        ),
        (
            "t-jti",
            json!({"active": true, "jti": 7}),
            "invalid jti claim",
        ),
        (
            "t-aud",
            json!({"active": true, "aud": 5}),
            "invalid aud claim",
        ),
        (
            "t-aud-array",
            json!({"active": true, "aud": ["a", 5]}),
            "invalid aud claim",
        ),
    ];
    for (token, reply, description) in cases {
        ep.reply(token, Reply::Json(reply));
        send(&l, bearer(token))
            .await
            .assert_invalid_token(description);
    }
    // Within the leeway, and with no time claims at all: accepted.
    ep.reply(
        "t-skew",
        Reply::Json(json!({"active": true, "nbf": n + 30, "iat": n + 30, "exp": n + 600})),
    );
    send(&l, bearer("t-skew")).await.assert_ok();
    ep.reply(
        "t-timeless",
        Reply::Json(json!({"active": true, "sub": "svc"})),
    );
    assert_eq!(
        send(&l, bearer("t-timeless")).await.assert_ok().subject(),
        Some("svc")
    );
}

#[tokio::test]
async fn issuer_and_audience_are_required_and_exact_when_configured() {
    let ep = Endpoint::start().await;
    let l = layer(
        builder(&ep)
            .issuer("https://as.example")
            .audience("api://orders")
            .build()
            .unwrap(),
    );
    let base = |aud: Value| {
        let mut v = active("alice");
        v["aud"] = aud;
        v
    };
    ep.reply("t-foreign", Reply::Json(base(json!("api://billing"))));
    send(&l, bearer("t-foreign"))
        .await
        .assert_invalid_token("invalid audience");
    ep.reply(
        "t-prefix",
        Reply::Json(base(json!(["api://orders/x", "API://ORDERS"]))),
    );
    send(&l, bearer("t-prefix"))
        .await
        .assert_invalid_token("invalid audience");
    ep.reply("t-string", Reply::Json(base(json!("api://orders"))));
    send(&l, bearer("t-string")).await.assert_ok();
    ep.reply(
        "t-array",
        Reply::Json(base(json!(["api://billing", "api://orders"]))),
    );
    send(&l, bearer("t-array")).await.assert_ok();

    let mut no_aud = active("alice");
    no_aud.as_object_mut().unwrap().remove("aud");
    ep.reply("t-no-aud", Reply::Json(no_aud));
    send(&l, bearer("t-no-aud"))
        .await
        .assert_invalid_token("missing aud claim");

    let mut other_iss = base(json!("api://orders"));
    other_iss["iss"] = json!("https://evil.example");
    ep.reply("t-iss", Reply::Json(other_iss));
    send(&l, bearer("t-iss"))
        .await
        .assert_invalid_token("invalid issuer");
    let mut no_iss = base(json!("api://orders"));
    no_iss.as_object_mut().unwrap().remove("iss");
    ep.reply("t-no-iss", Reply::Json(no_iss));
    send(&l, bearer("t-no-iss"))
        .await
        .assert_invalid_token("missing iss claim");
}

#[tokio::test]
async fn answers_are_cached_positive_for_the_ttl_and_negative_briefly() {
    let ep = Endpoint::start().await;
    ep.reply("t-ok", Reply::Json(active("alice")));
    ep.reply("t-off", Reply::Json(json!({"active": false})));
    let i = builder(&ep)
        .cache_ttl(Duration::from_millis(600))
        .negative_ttl(Duration::from_millis(300))
        .build()
        .unwrap();
    let l = layer(i.clone());

    for _ in 0..3 {
        send(&l, bearer("t-ok")).await.assert_ok();
        send(&l, bearer("t-off"))
            .await
            .assert_invalid_token("token inactive");
    }
    assert_eq!(ep.posts_for("t-ok"), 1, "positive answers are cached");
    assert_eq!(ep.posts_for("t-off"), 1, "negative answers are cached");
    assert_eq!(i.stats().posts, 2);

    // Past the negative TTL, but within the positive one.
    tokio::time::sleep(Duration::from_millis(400)).await;
    send(&l, bearer("t-ok")).await.assert_ok();
    send(&l, bearer("t-off"))
        .await
        .assert_invalid_token("token inactive");
    assert_eq!(ep.posts_for("t-ok"), 1);
    assert_eq!(
        ep.posts_for("t-off"),
        2,
        "a refusal is remembered only briefly"
    );

    // Past the positive TTL: asked again (a revoked token is noticed within the TTL).
    tokio::time::sleep(Duration::from_millis(300)).await;
    ep.reply("t-ok", Reply::Json(json!({"active": false})));
    send(&l, bearer("t-ok"))
        .await
        .assert_invalid_token("token inactive");
    assert_eq!(ep.posts_for("t-ok"), 2);

    i.clear_cache();
    send(&l, bearer("t-ok"))
        .await
        .assert_invalid_token("token inactive");
    assert_eq!(ep.posts_for("t-ok"), 3);
}

#[tokio::test]
async fn a_positive_answer_is_cached_no_longer_than_the_token_lives() {
    let ep = Endpoint::start().await;
    let mut short = active("alice");
    short["exp"] = json!(now() + 2);
    ep.reply("t-short", Reply::Json(short));
    let l = layer(
        builder(&ep)
            .cache_ttl(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    send(&l, bearer("t-short")).await.assert_ok();
    send(&l, bearer("t-short")).await.assert_ok();
    assert_eq!(ep.posts_for("t-short"), 1);

    tokio::time::sleep(Duration::from_millis(2200)).await;
    // The server now extends it: a fresh call sees that; a 60 s cache entry would have said
    // "token expired".
    ep.reply("t-short", Reply::Json(active("alice")));
    send(&l, bearer("t-short")).await.assert_ok();
    assert_eq!(ep.posts_for("t-short"), 2);
}

#[tokio::test]
async fn a_cached_positive_is_refused_once_its_exp_passes_on_the_clock() {
    let ep = Endpoint::start().await;
    let t0 = now();
    let clock = ManualClock::at_unix(t0);
    ep.reply(
        "t-clock",
        Reply::Json(json!({"active": true, "sub": "alice", "exp": t0 + 100})),
    );
    let l = layer(builder(&ep).clock(clock.clone()).build().unwrap());
    send(&l, bearer("t-clock")).await.assert_ok();
    clock.advance(Duration::from_secs(99));
    send(&l, bearer("t-clock")).await.assert_ok();
    clock.advance(Duration::from_secs(1));
    send(&l, bearer("t-clock"))
        .await
        .assert_invalid_token("token expired");
    assert_eq!(
        ep.posts_for("t-clock"),
        1,
        "refused from the cache, no new POST"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_for_one_new_token_make_one_post() {
    let ep = Endpoint::start().await;
    ep.reply(
        "t-burst",
        Reply::Slow(Duration::from_millis(200), active("alice")),
    );
    ep.reply(
        "t-burst-off",
        Reply::Slow(Duration::from_millis(200), json!({"active": false})),
    );
    let i = builder(&ep).build().unwrap();
    let l = layer(i.clone());
    for (token, ok) in [("t-burst", true), ("t-burst-off", false)] {
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move { send(&l, bearer(token)).await })
            })
            .collect();
        let outs = tokio::time::timeout(
            Duration::from_secs(5),
            futures_util::future::join_all(tasks),
        )
        .await
        .unwrap();
        for out in outs {
            let out = out.unwrap();
            if ok {
                out.assert_ok();
            } else {
                out.assert_invalid_token("token inactive");
            }
        }
        assert_eq!(ep.posts_for(token), 1, "{token}: single flight");
    }
    assert_eq!(i.stats().posts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_unknown_tokens_makes_at_most_max_in_flight_calls() {
    let ep = Endpoint::start().await;
    ep.reply("t-known", Reply::Json(active("alice")));
    // Forged tokens the endpoint is slow to turn down, as a struggling endpoint would be.
    let forged: Vec<String> = (0..100).map(|n| format!("forged-{n}")).collect();
    for t in &forged {
        ep.reply(
            t,
            Reply::Slow(Duration::from_millis(400), json!({"active": false})),
        );
    }
    let i = builder(&ep)
        .timeout(Duration::from_secs(3))
        .max_in_flight(4)
        .build()
        .unwrap();
    let l = layer(i.clone());
    send(&l, bearer("t-known")).await.assert_ok();

    let flood: Vec<_> = forged
        .iter()
        .map(|t| {
            let (l, t) = (l.clone(), t.clone());
            tokio::spawn(async move { (send(&l, bearer(&t)).await, t) })
        })
        .collect();
    // While the calls are under way, a cached token is answered at once.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    for _ in 0..10 {
        send(&l, bearer("t-known")).await.assert_ok();
    }
    // Well under the endpoint's 400 ms: they waited for no call.
    assert!(started.elapsed() < Duration::from_millis(350));

    let outs = tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::future::join_all(flood),
    )
    .await
    .unwrap();
    let mut refused = 0;
    let mut shed = Vec::new();
    for out in outs {
        let (out, token) = out.unwrap();
        if out.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_unavailable(&out);
            shed.push(token);
        } else {
            out.assert_invalid_token("token inactive");
            refused += 1;
        }
    }
    assert!((1..=4).contains(&refused), "{refused} calls answered");
    assert_eq!(refused + shed.len(), 100);
    // The endpoint saw the known token once and at most four forged ones.
    assert_eq!(ep.posts(), 1 + refused);
    let stats = i.stats();
    assert_eq!(stats.posts, 1 + refused as u64);
    assert_eq!(stats.shed, shed.len() as u64);
    // A shed token was not remembered: once the calls are over, it is asked about.
    ep.reply(&shed[0], Reply::Json(active("bob")));
    send(&l, bearer(&shed[0])).await.assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_during_an_outage_share_one_failing_post() {
    let ep = Endpoint::start().await;
    ep.reply("t-down", Reply::Hang);
    let l = layer(
        builder(&ep)
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    );
    let started = Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let l = l.clone();
            tokio::spawn(async move { send(&l, bearer("t-down")).await })
        })
        .collect();
    for out in futures_util::future::join_all(tasks).await {
        assert_unavailable(&out.unwrap());
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(ep.posts_for("t-down"), 1);
}

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serialises the tests that reach the endpoint-failure `WARN` events: while another test
/// (without a subscriber) is registering those callsites, `tracing` can cache them as
/// disabled for the log-capturing test too.
static WARN_PATHS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn failures_are_logged_without_the_token_or_the_secret() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("tower_bearer=trace"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _serial = WARN_PATHS.lock().await;
    let _guard = tracing::subscriber::set_default(subscriber);

    let ep = Endpoint::start().await;
    let token = "secret-opaque-token-0123456789";
    ep.reply(token, Reply::Status(500));
    ep.reply(
        "other-opaque-token-abcdefgh",
        Reply::Json(json!({"active": false})),
    );
    let i = builder(&ep)
        .client_basic("rs-client", "client-secret-xyz")
        .build()
        .unwrap();
    let l = layer(i.clone());
    assert_unavailable(&send(&l, bearer(token)).await);
    send(&l, bearer("other-opaque-token-abcdefgh"))
        .await
        .assert_invalid_token("token inactive");

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("tower_bearer::introspection"), "{text}");
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("status 500"), "{text}");
    let fingerprint = tower_bearer::TokenFingerprint::of_bytes(token.as_bytes()).to_string();
    assert!(text.contains(&fingerprint), "{text}");
    for secret in [
        token,
        "secret-opaque-token",
        "other-opaque-token",
        "client-secret-xyz",
        &STANDARD.encode("rs-client:client-secret-xyz"),
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
        assert!(!format!("{i:?}").contains(secret));
    }
}

#[test]
fn configuration_mistakes_fail_the_build() {
    let client = || reqwest::Client::new();
    for url in ["ftp://as.example/i", "as.example/introspect", ""] {
        let err = Introspection::builder(url)
            .client(client())
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("http(s)"), "{err}");
    }
    let b = || Introspection::builder("https://as.example/i").client(client());
    assert!(b().timeout(Duration::ZERO).build().is_err());
    assert!(b().max_body_bytes(0).build().is_err());
    assert!(b().max_in_flight(0).build().is_err());
    assert!(b().audience("").build().is_err());
    assert!(b().issuer("").build().is_err());
    assert!(b().client_basic("", "x").build().is_err());
    assert!(b().client_bearer("").build().is_err());
    let err = b().client_bearer("line\nbreak").build().unwrap_err();
    assert!(!err.to_string().contains("line"));
    // The default client (feature `reqwest`).
    assert!(
        Introspection::builder("https://as.example/i")
            .build()
            .is_ok()
    );
}
