//! axum integration: the layer on a router, the `Principal` extractor (required and optional).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_bearer::testing::{TestIssuer, claims};
use tower_bearer::validate::Jwt;
use tower_bearer::{AuthError, AuthErrorKind, BearerAuthLayer, Principal};

fn app(issuer: &TestIssuer) -> Router {
    let jwt = Jwt::builder()
        .key(issuer.key())
        .audience("api")
        .build()
        .unwrap();
    let protected = Router::new()
        .route(
            "/me",
            get(|p: Principal| async move { p.subject().unwrap_or_default().to_owned() }),
        )
        // A handler refusing a verified caller with an `AuthError` of its own.
        .route(
            "/tenant",
            get(|_p: Principal| async {
                Err::<(), _>(
                    AuthError::new(AuthErrorKind::InsufficientScope)
                        .with_description("tenant mismatch"),
                )
            }),
        )
        .layer(BearerAuthLayer::new(jwt).realm("axum"));
    Router::new()
        .route(
            "/maybe",
            get(|p: Option<Principal>| async move {
                p.map_or("anonymous".to_owned(), |p| {
                    p.subject().unwrap_or_default().to_owned()
                })
            }),
        )
        .route(
            "/unprotected-me",
            get(|p: Principal| async move { p.subject().unwrap_or_default().to_owned() }),
        )
        .merge(protected)
}

async fn call(app: Router, path: &str, token: Option<&str>) -> (StatusCode, String, String) {
    let mut req = Request::builder().uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        challenge,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn extractor_sees_the_verified_principal() {
    let issuer = TestIssuer::es256();
    let token = issuer.mint(claims("alice", "", Duration::from_secs(60)).aud("api"));
    let (status, _, body) = call(app(&issuer), "/me", Some(&token)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "alice"));
    let (status, challenge, _) = call(app(&issuer), "/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge, r#"Bearer realm="axum""#);
    let (status, challenge, _) = call(app(&issuer), "/me", Some("x.y.z")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains(r#"error="invalid_token""#));
}

#[tokio::test]
async fn missing_layer_means_401_not_a_pass() {
    let issuer = TestIssuer::es256();
    let token = issuer.mint(claims("alice", "", Duration::from_secs(60)).aud("api"));
    // The route is outside the layer: the token is never verified, so the extractor refuses.
    let (status, challenge, _) = call(app(&issuer), "/unprotected-me", Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.starts_with("Bearer realm="));
}

#[tokio::test]
async fn a_handlers_refusal_answers_in_the_layers_realm() {
    let issuer = TestIssuer::es256();
    let token = issuer.mint(claims("alice", "", Duration::from_secs(60)).aud("api"));
    let (status, challenge, body) = call(app(&issuer), "/tenant", Some(&token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        challenge,
        r#"Bearer realm="axum", error="insufficient_scope", error_description="tenant mismatch""#
    );
    assert!(body.contains("tenant mismatch"), "{body}");
    // Outside any bearer layer the default renderer's answer stands.
    let res = axum::response::IntoResponse::into_response(AuthError::new(
        AuthErrorKind::MissingCredentials,
    ));
    assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="api""#);
}

#[tokio::test]
async fn optional_extractor() {
    let issuer = TestIssuer::es256();
    let (status, _, body) = call(app(&issuer), "/maybe", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "anonymous"));
}
