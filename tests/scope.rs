//! Scope guards (ACCEPTANCE §5): policies, claim formats, traps, the 401-not-403 rule, the
//! handler extractor and the gRPC method table, through `oneshot`.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::{delete, get};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;
use tower_bearer::axum::{RequireScopes, ScopeRequirement};
use tower_bearer::scope::{MethodScopes, ScopeGuardLayer, ScopePolicy};
use tower_bearer::testing::{Claims, TestIssuer, claims};
use tower_bearer::validate::{Jwt, JwtBuilder};
use tower_bearer::{BearerAuthLayer, Principal};

tower_bearer::scope_requirement!(ItemsAdmin = "items:write AND admin");
tower_bearer::scope_requirement!(WriterOrOwner = "items:write AND (admin OR owner)");

fn issuer() -> &'static TestIssuer {
    static K: std::sync::OnceLock<TestIssuer> = std::sync::OnceLock::new();
    K.get_or_init(|| TestIssuer::es256().with_kid("k"))
}

fn base() -> JwtBuilder {
    Jwt::builder().key(issuer().key()).audience("api")
}

fn c() -> Claims {
    claims("alice", "", Duration::from_secs(600)).aud("api")
}

fn with_scope(scope: &str) -> String {
    issuer().mint(c().set("scope", scope))
}

fn app(jwt: JwtBuilder) -> Router {
    let guarded = |policy: &str| ScopeGuardLayer::parse(policy).unwrap();
    Router::new()
        .route(
            "/items",
            get(|| async { "list" }).route_layer(guarded("items:read")),
        )
        .route(
            "/items/{id}",
            delete(|| async { "deleted" }).route_layer(guarded("items:write AND admin")),
        )
        .route(
            "/either",
            get(|| async { "either" }).route_layer(guarded("a OR b")),
        )
        .route(
            "/nested",
            get(|| async { "nested" }).route_layer(guarded("items:write AND (admin OR owner)")),
        )
        .route(
            "/extract",
            delete(|p: RequireScopes<ItemsAdmin>| async move {
                p.subject().unwrap_or_default().to_owned()
            }),
        )
        .route(
            "/extract-nested",
            get(|_p: RequireScopes<WriterOrOwner>| async { "ok" }),
        )
        .layer(BearerAuthLayer::new(jwt.build().unwrap()).realm("scopes"))
        // Outside the bearer layer: a guard here sees no principal.
        .route(
            "/unprotected",
            get(|| async { "never" }).route_layer(guarded("items:read")),
        )
        .route(
            "/unprotected-extract",
            get(|_p: RequireScopes<ItemsAdmin>| async { "never" }),
        )
}

struct Out {
    status: StatusCode,
    challenge: String,
    body: String,
}

async fn call(app: Router, method: &str, path: &str, token: Option<&str>) -> Out {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Out {
        status,
        challenge,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn insufficient(required: &str, policy: &str) -> String {
    format!(
        r#"Bearer realm="scopes", error="insufficient_scope", error_description="insufficient scope: requires {policy}", scope="{required}""#
    )
}

#[tokio::test]
async fn every_combinator_on_routes() {
    let cases: &[(&str, &str, &str, u16)] = &[
        ("GET", "/items", "items:read", 200),
        ("GET", "/items", "items:read items:write", 200),
        ("GET", "/items", "items:write", 403),
        ("DELETE", "/items/1", "items:write admin", 200),
        ("DELETE", "/items/1", "items:write", 403),
        ("DELETE", "/items/1", "admin", 403),
        ("GET", "/either", "a", 200),
        ("GET", "/either", "b", 200),
        ("GET", "/either", "c", 403),
        ("GET", "/nested", "items:write owner", 200),
        ("GET", "/nested", "items:write admin", 200),
        ("GET", "/nested", "admin owner", 403),
        ("GET", "/nested", "items:write", 403),
    ];
    for &(method, path, scopes, status) in cases {
        let out = call(app(base()), method, path, Some(&with_scope(scopes))).await;
        assert_eq!(
            out.status.as_u16(),
            status,
            "{method} {path} with {scopes:?}"
        );
    }
}

#[tokio::test]
async fn the_challenge_names_what_the_route_requires() {
    let out = call(
        app(base()),
        "DELETE",
        "/items/1",
        Some(&with_scope("items:write")),
    )
    .await;
    assert_eq!(out.status, StatusCode::FORBIDDEN);
    assert_eq!(
        out.challenge,
        insufficient("items:write admin", "items:write AND admin")
    );
    let body: serde_json::Value = serde_json::from_str(&out.body).unwrap();
    assert_eq!(body["error"], "insufficient_scope");
    let out = call(app(base()), "GET", "/nested", Some(&with_scope(""))).await;
    assert_eq!(
        out.challenge,
        insufficient(
            "items:write admin owner",
            "items:write AND (admin OR owner)"
        )
    );
}

#[tokio::test]
async fn prefix_and_case_traps() {
    for scopes in [
        "items:readonly",
        "Items:Read",
        "items",
        "items:rea",
        "ITEMS:READ",
        "items:read:all",
    ] {
        let out = call(app(base()), "GET", "/items", Some(&with_scope(scopes))).await;
        assert_eq!(out.status, StatusCode::FORBIDDEN, "{scopes}");
    }
}

#[tokio::test]
async fn each_claim_format() {
    let scp_array = issuer().mint(c().set("scp", json!(["items:read"])));
    let scp_string = issuer().mint(c().set("scp", "profile items:read"));
    for t in [scp_array, scp_string] {
        assert_eq!(
            call(app(base()), "GET", "/items", Some(&t)).await.status,
            StatusCode::OK
        );
    }
    let auth0 = issuer().mint(c().set("permissions", json!(["items:read"])));
    assert_eq!(
        call(
            app(base().scope_claim("permissions")),
            "GET",
            "/items",
            Some(&auth0)
        )
        .await
        .status,
        StatusCode::OK
    );
    // With a configured claim, `scope` no longer counts.
    assert_eq!(
        call(
            app(base().scope_claim("permissions")),
            "GET",
            "/items",
            Some(&with_scope("items:read"))
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let keycloak = issuer().mint(c().set("realm_access", json!({"roles": ["items:read"]})));
    assert_eq!(
        call(
            app(base().scope_claim("realm_access.roles")),
            "GET",
            "/items",
            Some(&keycloak)
        )
        .await
        .status,
        StatusCode::OK
    );
    // A scope claim of the wrong type is a bad token: 401, not 403.
    let bad = issuer().mint(c().set("realm_access", json!(5)));
    let out = call(
        app(base().scope_claim("realm_access.roles")),
        "GET",
        "/items",
        Some(&bad),
    )
    .await;
    assert_eq!(out.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_tokens_on_scoped_routes_are_401_not_403() {
    let expired = issuer().mint(c().set("scope", "items:read").set("exp", 1));
    let foreign = TestIssuer::es256()
        .with_kid("k")
        .mint(c().set("scope", "items:read"));
    for token in [
        Some("garbage"),
        Some(expired.as_str()),
        Some(foreign.as_str()),
        None,
    ] {
        for (m, path) in [("GET", "/items"), ("DELETE", "/extract")] {
            let out = call(app(base()), m, path, token).await;
            assert_eq!(out.status, StatusCode::UNAUTHORIZED, "{path} {token:?}");
            assert!(out.challenge.starts_with(r#"Bearer realm="scopes""#));
            assert!(!out.challenge.contains("insufficient_scope"));
        }
    }
}

#[tokio::test]
async fn a_missing_principal_is_401_never_a_pass() {
    let token = with_scope("items:read items:write admin");
    for path in ["/unprotected", "/unprotected-extract"] {
        let out = call(app(base()), "GET", path, Some(&token)).await;
        assert_eq!(out.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_ne!(out.body, "never");
    }
}

#[tokio::test]
async fn the_extractor_enforces_its_policy() {
    let ok = call(
        app(base()),
        "DELETE",
        "/extract",
        Some(&with_scope("admin items:write")),
    )
    .await;
    assert_eq!((ok.status, ok.body.as_str()), (StatusCode::OK, "alice"));
    let out = call(
        app(base()),
        "DELETE",
        "/extract",
        Some(&with_scope("items:write")),
    )
    .await;
    assert_eq!(out.status, StatusCode::FORBIDDEN);
    assert_eq!(
        out.challenge,
        insufficient("items:write admin", "items:write AND admin")
    );
    let out = call(
        app(base()),
        "GET",
        "/extract-nested",
        Some(&with_scope("items:write owner")),
    )
    .await;
    assert_eq!(out.status, StatusCode::OK);
    assert_eq!(
        ItemsAdmin::policy(),
        &ScopePolicy::all(["items:write", "admin"])
    );
}

#[tokio::test]
async fn grpc_method_table() {
    use http_body_util::Full;
    use tower::{ServiceBuilder, service_fn};
    let guard = ScopeGuardLayer::methods(
        MethodScopes::new()
            .method("/pkg.Items/Get", ScopePolicy::scope("items:read"))
            .method(
                "/pkg.Items/*",
                ScopePolicy::parse("items:write AND admin").unwrap(),
            )
            .method("/pkg.Open/*", ScopePolicy::authenticated()),
    )
    .unwrap();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(base().build().unwrap()))
        .layer(guard)
        .service(service_fn(|req: Request<Full<bytes::Bytes>>| async move {
            assert!(req.extensions().get::<Principal>().is_some());
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .header("grpc-status", "0")
                    .body(Full::<bytes::Bytes>::default())
                    .unwrap(),
            )
        }));
    let grpc = |path: &str, token: Option<&str>| {
        let mut b = Request::builder()
            .method("POST")
            .uri(path)
            .header("content-type", "application/grpc");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Full::default()).unwrap()
    };
    let cases: &[(&str, Option<&str>, &str, &str)] = &[
        ("/pkg.Items/Get", Some("items:read"), "0", ""),
        (
            "/pkg.Items/Get",
            Some("items:write admin"),
            "7",
            "insufficient scope: requires items:read",
        ),
        ("/pkg.Items/Delete", Some("items:write admin"), "0", ""),
        (
            "/pkg.Items/Delete",
            Some("items:read"),
            "7",
            "insufficient scope: requires items:write AND admin",
        ),
        ("/pkg.Open/Anything", Some(""), "0", ""),
        (
            "/pkg.Unknown/Get",
            Some("items:read items:write admin"),
            "7",
            "insufficient scope: method not allowed",
        ),
        ("/pkg.Items/Get", None, "16", "bearer token required"),
    ];
    for &(path, scopes, code, message) in cases {
        let token = scopes.map(with_scope);
        let res = svc
            .clone()
            .oneshot(grpc(path, token.as_deref()))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["grpc-status"], code, "{path} {scopes:?}");
        if !message.is_empty() {
            let m = percent_encoding::percent_decode_str(
                res.headers()["grpc-message"].to_str().unwrap(),
            )
            .decode_utf8()
            .unwrap()
            .into_owned();
            assert_eq!(m, message);
        }
    }
}

#[test]
fn policies_parse_from_configuration_text() {
    let p: ScopePolicy = "items:write AND (admin OR owner)".parse().unwrap();
    assert_eq!(p.to_string(), "items:write AND (admin OR owner)");
    assert!("items:write AND".parse::<ScopePolicy>().is_err());
    assert!(ScopeGuardLayer::parse("(unbalanced").is_err());
}

/// A guard renders with the realm of the nearest bearer layer around it, also when that layer
/// keeps the default realm inside another layer with its own.
#[tokio::test]
async fn a_guard_answers_in_the_realm_of_the_nearest_bearer_layer() {
    let token = with_scope("items:read");
    let guarded = |inner: BearerAuthLayer| {
        Router::new()
            .route(
                "/admin",
                get(|| async { "never" }).route_layer(ScopeGuardLayer::parse("admin").unwrap()),
            )
            .layer(inner)
    };
    let realm_of = |out: &Out| {
        assert_eq!(out.status, StatusCode::FORBIDDEN, "{}", out.body);
        out.challenge.clone()
    };
    let custom = guarded(BearerAuthLayer::new(base().build().unwrap()).realm("inner"));
    let out = call(custom, "GET", "/admin", Some(&token)).await;
    assert!(realm_of(&out).starts_with(r#"Bearer realm="inner""#));

    let default_inside_custom = guarded(BearerAuthLayer::new(base().build().unwrap()))
        .layer(BearerAuthLayer::new(base().build().unwrap()).realm("outer"));
    let out = call(default_inside_custom, "GET", "/admin", Some(&token)).await;
    assert!(realm_of(&out).starts_with(r#"Bearer realm="api""#));
}
