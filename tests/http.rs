//! Plain HTTP behaviour of the layer through `tower::ServiceExt::oneshot`: what passes, with
//! which principal, from which credential source, and how rejections are rendered. Every
//! attack and rejection case of ACCEPTANCE.md (§2, §3, §9 and the rest) is a row of the tables
//! in `tests/attacks.rs`.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use support::{REALM, bearer, get, send};
use tower_bearer::BearerAuthLayer;
use tower_bearer::clock::ManualClock;
use tower_bearer::extract::Extractor;
use tower_bearer::keys::Algorithm;
use tower_bearer::testing::alg_name;
use tower_bearer::validate::{Jwt, JwtBuilder};

use support::keys::{AUD, ISS, T, ec, ed, hs, rsa};

/// The standard builder: every test key, issuer and audience, clock frozen at `T`.
fn builder() -> JwtBuilder {
    Jwt::builder()
        .key(rsa().key())
        .key(ec().key())
        .key(ed().key())
        .key(hs().key())
        .issuer(ISS)
        .audience(AUD)
        .clock(ManualClock::at_unix(T))
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

#[tokio::test]
async fn valid_tokens_of_every_key_type_pass_with_their_principal() {
    for issuer in [rsa(), ec(), ed(), hs()] {
        let out = send(&layer(), bearer(&issuer.mint(claims()))).await;
        let p = out.assert_ok();
        assert_eq!(p.subject(), Some("alice"));
        assert_eq!(p.client_id(), Some("web"));
        assert_eq!(p.token_id(), Some("id-1"));
        assert_eq!(p.issuer(), Some(ISS));
        assert_eq!(p.key_id(), issuer.kid());
        assert!(p.scopes().contains("items:read"));
        assert_eq!(
            p.expires_at().unwrap(),
            std::time::UNIX_EPOCH + Duration::from_secs(T + 600)
        );
        assert_eq!(p.claim("sub"), Some(&json!("alice")));
    }
}

#[tokio::test]
async fn scheme_is_case_insensitive_and_spaces_may_repeat() {
    let token = rsa().mint(claims());
    for scheme in ["Bearer ", "bearer ", "BEARER ", "bEaReR    "] {
        send(&layer(), get(Some(&format!("{scheme}{token}"))))
            .await
            .assert_ok();
    }
}

#[tokio::test]
async fn query_tokens_are_off_unless_enabled() {
    let token = rsa().mint(claims());
    let req = || {
        Request::builder()
            .uri(format!("/r?access_token={token}"))
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    send(&layer(), req()).await.assert_no_credentials();
    let enabled = layer().extractor(Extractor::new().query(true));
    send(&enabled, req()).await.assert_ok();
}

#[tokio::test]
async fn cookie_and_custom_header_sources() {
    let token = rsa().mint(claims());
    let l = layer().extractor(
        Extractor::new()
            .cookie("at")
            .header(http::HeaderName::from_static("x-token")),
    );
    let req = Request::builder()
        .header("cookie", format!("theme=dark; at={token}"))
        .body(Full::default())
        .unwrap();
    send(&l, req).await.assert_ok();
    let req = Request::builder()
        .header("x-token", &token)
        .body(Full::default())
        .unwrap();
    send(&l, req).await.assert_ok();
    // Not read when not configured.
    let req = Request::builder()
        .header("x-token", &token)
        .body(Full::default())
        .unwrap();
    send(&layer(), req).await.assert_no_credentials();
}

#[tokio::test]
async fn scopes_from_scp_arrays() {
    let c = with(
        without(claims(), "scope"),
        "scp",
        json!(["a:read", "b:write"]),
    );
    let out = send(&layer(), bearer(&rsa().mint(c))).await;
    let p = out.assert_ok();
    assert!(p.scopes().contains_all(["a:read", "b:write"]));
    assert!(!p.scopes().contains("A:read"));
}

#[tokio::test]
async fn grpc_requests_get_trailers_only_unauthenticated() {
    let req = Request::builder()
        .uri("/pkg.Svc/Method")
        .header("content-type", "application/grpc+proto")
        .header("authorization", "Bearer abc.def.ghi")
        .body(Full::default())
        .unwrap();
    let out = send(&layer(), req).await;
    assert_eq!(out.status, StatusCode::OK);
    assert_eq!(out.headers["content-type"], "application/grpc");
    assert_eq!(out.headers["grpc-status"], "16");
    assert_eq!(out.headers["grpc-message"], "malformed token");
    assert!(out.body.is_empty());
    assert!(!out.called);
    let req = Request::builder()
        .header("content-type", "application/grpc")
        .body(Full::default())
        .unwrap();
    let out = send(&layer(), req).await;
    assert_eq!(out.headers["grpc-status"], "16");
    assert_eq!(out.headers["grpc-message"], "bearer token required");
}

#[tokio::test]
async fn custom_bodies_keep_the_headers() {
    use tower_bearer::reject::{RejectionBody, Renderer};
    let renderer = Renderer::new(REALM).with_body(|err| RejectionBody {
        content_type: http::HeaderValue::from_static("application/problem+json"),
        body: Bytes::from(
            json!({"type": "about:blank", "title": err.description(), "status": err.status().as_u16()})
                .to_string(),
        ),
    });
    let l = layer().renderer(renderer);
    let out = send(&l, bearer("x.y.z")).await;
    out.assert_invalid_token("malformed token");
    assert_eq!(out.headers["content-type"], "application/problem+json");
    let body: Value = serde_json::from_str(&out.body).unwrap();
    assert_eq!(body["status"], 401);
}

#[tokio::test]
async fn the_error_is_in_the_response_extensions() {
    use tower::{Layer, ServiceExt, service_fn};
    let svc = layer().layer(service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::default()))
    }));
    let res = svc.oneshot(get(None)).await.unwrap();
    let err = res.extensions().get::<tower_bearer::AuthError>().unwrap();
    assert_eq!(err.kind(), tower_bearer::AuthErrorKind::MissingCredentials);
}

/// The layers answer in the inner service's own body type, with no wrapper for axum or tonic
/// to box again: the admitted response is the inner one, untouched, and each layer's refusal
/// (bearer layer, scope guard, rate limit) is rendered into that type.
#[tokio::test]
async fn every_layer_answers_in_the_inner_body_type() {
    use http_body_util::BodyExt;
    use tower::{ServiceBuilder, ServiceExt, service_fn};
    use tower_bearer::rate_limit::{Quota, RateLimitLayer};
    use tower_bearer::scope::ScopeGuardLayer;

    let svc = ServiceBuilder::new()
        .layer(layer())
        .layer(ScopeGuardLayer::parse("profile").unwrap())
        .layer(RateLimitLayer::new(Quota::per(
            Duration::from_secs(3600),
            1,
        )))
        .service(service_fn(|_req: Request<Full<Bytes>>| async {
            let res = http::Response::new(Full::new(Bytes::from_static(b"inner")));
            Ok::<_, std::convert::Infallible>(res)
        }));
    async fn answer<S>(svc: &S, req: Request<Full<Bytes>>) -> (StatusCode, String)
    where
        S: tower::Service<
                Request<Full<Bytes>>,
                Response = http::Response<Full<Bytes>>,
                Error = std::convert::Infallible,
            > + Clone,
    {
        let res = svc.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }
    let token = rsa().mint(claims());
    assert_eq!(
        answer(&svc, bearer(&token)).await,
        (StatusCode::OK, "inner".into())
    );
    let (status, body) = answer(&svc, bearer(&token)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "rate_limited"
    );
    let narrow = rsa().mint(with(claims(), "scope", json!("items:read")));
    let (status, body) = answer(&svc, bearer(&narrow)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "insufficient_scope"
    );
    let (status, body) = answer(&svc, get(None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.starts_with('{'), "{body}");
}

/// Refusals from inside a bearer layer with its own renderer (a custom realm and body) come
/// out in that renderer, with the fields the inner layers added (a rate limit's) intact,
/// whether a guard of the crate or your own code (`Renderer::render_inside`) made them; and
/// the renderer costs admitted requests no extension (the layer renders again on the way out).
#[tokio::test]
async fn refusals_from_inside_answer_in_the_layers_renderer() {
    use http_body_util::BodyExt;
    use tower::{ServiceBuilder, ServiceExt, service_fn};
    use tower_bearer::AuthError;
    use tower_bearer::rate_limit::{Quota, RateLimitLayer};
    use tower_bearer::reject::{RejectionBody, Renderer};

    let renderer = Renderer::new(REALM).with_body(|err| RejectionBody {
        content_type: http::HeaderValue::from_static("application/problem+json"),
        body: Bytes::from(json!({"title": err.description()}).to_string()),
    });
    let svc = ServiceBuilder::new()
        .layer(layer().renderer(renderer))
        .layer(RateLimitLayer::new(Quota::per(
            Duration::from_secs(3600),
            2,
        )))
        .service(service_fn(|req: Request<Full<Bytes>>| async move {
            assert!(
                req.extensions().get::<Renderer>().is_none(),
                "no renderer in the extensions of an admitted request"
            );
            let res = if req.uri().path() == "/own" {
                let err = AuthError::new(tower_bearer::AuthErrorKind::InsufficientScope)
                    .with_description("tenant mismatch");
                let mut res: http::Response<Full<Bytes>> = Renderer::render_inside(&req, err);
                res.headers_mut()
                    .insert("content-length", "999".parse().unwrap());
                res
            } else {
                http::Response::new(Full::new(Bytes::from_static(b"inner")))
            };
            Ok::<_, std::convert::Infallible>(res)
        }));
    let token = rsa().mint(claims());
    let request = |path: &str| {
        let mut req = bearer(&token);
        *req.uri_mut() = path.parse().unwrap();
        req
    };
    let answer = |req| {
        let svc = svc.clone();
        async move {
            let (parts, body) = svc.oneshot(req).await.unwrap().into_parts();
            (parts, body.collect().await.unwrap().to_bytes())
        }
    };
    // Your own code's refusal.
    let (parts, body) = answer(request("/own")).await;
    assert_eq!(parts.status, StatusCode::FORBIDDEN);
    assert!(
        parts.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with(&format!(
                r#"Bearer realm="{REALM}", error="insufficient_scope""#
            )),
        "{:?}",
        parts.headers
    );
    assert_eq!(parts.headers["content-type"], "application/problem+json");
    assert!(
        parts.headers.get("content-length").is_none(),
        "the old body's length"
    );
    assert_eq!(body, r#"{"title":"tenant mismatch"}"#);
    assert!(
        parts.headers.contains_key("ratelimit"),
        "the limit's fields stay"
    );
    assert_eq!(answer(request("/r")).await.1, "inner");
    // The rate limit's refusal (the quota of 2 is spent).
    let (parts, body) = answer(request("/r")).await;
    assert_eq!(parts.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(parts.headers.contains_key("retry-after"));
    assert_eq!(parts.headers["ratelimit-policy"], r#""default";q=2;w=3600"#);
    assert_eq!(parts.headers["content-type"], "application/problem+json");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["title"],
        "rate limit exceeded"
    );
}

#[tokio::test]
async fn async_authenticators_work_through_the_layer() {
    use tower_bearer::extract::BearerToken;
    use tower_bearer::{AuthError, Principal, TokenFingerprint};
    let auth = |token: &BearerToken| {
        let ok = token.as_str() == "opaque-1";
        let fp = TokenFingerprint::of_bytes(token.as_str().as_bytes());
        async move {
            tokio::task::yield_now().await;
            if ok {
                Principal::from_claims(json!({"sub": "svc"}).as_object().unwrap().clone(), fp)
            } else {
                Err(AuthError::invalid_token("unknown token"))
            }
        }
    };
    let l = BearerAuthLayer::new(auth).realm(REALM);
    let out = send(&l, bearer("opaque-1")).await;
    assert_eq!(out.assert_ok().subject(), Some("svc"));
    send(&l, bearer("opaque-2"))
        .await
        .assert_invalid_token("unknown token");
}

#[test]
fn alg_names_round_trip() {
    for alg in [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        assert_eq!(alg_name(alg).parse::<Algorithm>().unwrap(), alg);
    }
}
