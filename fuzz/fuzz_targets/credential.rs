//! The credential parser (`Extractor::extract`, RFC 6750 §2) on raw header bytes, and the
//! whole `BearerAuth` service behind it with the interoperability vectors' verifier.
//!
//! Input: one flags byte, then segments separated by `0xFF`. Flags: bit 0 reads the cookie
//! `at`, bit 1 the header `x-token`, bit 2 the `access_token` query parameter, bit 3 caps
//! tokens at 64 bytes (else the default 8 KiB), bit 4 marks the request as gRPC. Each segment
//! starts with a byte naming where its remaining bytes go: `c` a `Cookie` header, `x` an
//! `x-token` header, `q` the query string, anything else an `Authorization` header. Values
//! that `http` refuses are dropped.
//!
//! Asserted: no panic; a token found is within the cap, in the `b64token` charset and present
//! in its source; refusals are `invalid_request` kinds; through the service, every refusal is
//! a 400 or 401 with a Bearer challenge (gRPC: status 16) that holds no part of the token, the
//! inner service runs only for the signed content of a valid vector, and never for anything
//! else.
#![no_main]

#[path = "common.rs"]
mod common;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use tower_bearer::extract::{Extractor, TokenSource};
use tower_bearer::{AuthErrorKind, BearerAuthLayer};
use tower_layer::Layer;
use tower_service::Service;

/// An inner service that records whether it ran.
#[derive(Clone)]
struct Recorder(Arc<AtomicBool>);

impl Service<Request<Full<Bytes>>> for Recorder {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Full<Bytes>>) -> Self::Future {
        self.0.store(true, Ordering::SeqCst);
        ready(Ok(Response::new(Full::new(Bytes::from_static(b"inner")))))
    }
}

fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let max_len = if flags & 8 != 0 { 64 } else { 8 * 1024 };
    let mut extractor = Extractor::new()
        .max_token_len(max_len)
        .query(flags & 4 != 0);
    if flags & 1 != 0 {
        extractor = extractor.cookie("at");
    }
    if flags & 2 != 0 {
        extractor = extractor.header(HeaderName::from_static("x-token"));
    }

    let mut builder = Request::builder();
    let mut query = None;
    let mut sources: Vec<(u8, Vec<u8>)> = Vec::new();
    for segment in rest.split(|b| *b == 0xFF) {
        let Some((&kind, value)) = segment.split_first() else {
            continue;
        };
        if kind == b'q' {
            query = Some(value);
            continue;
        }
        let Ok(value) = HeaderValue::from_bytes(value) else {
            continue;
        };
        let name = match kind {
            b'c' => "cookie",
            b'x' => "x-token",
            _ => "authorization",
        };
        sources.push((kind, value.as_bytes().to_vec()));
        builder = builder.header(name, value);
    }
    let uri = match query.map(|q| format!("/r?{}", String::from_utf8_lossy(q))) {
        Some(uri) if uri.parse::<http::Uri>().is_ok() => uri,
        _ => "/r".to_owned(),
    };
    if flags & 16 != 0 {
        builder = builder.header("content-type", "application/grpc");
    }
    let Ok(req) = builder.uri(uri.as_str()).body(Full::<Bytes>::default()) else {
        return;
    };

    let extracted = extractor.extract(&req);
    match &extracted {
        Ok(Some(token)) => {
            let t = token.as_str();
            assert!(t.len() <= max_len, "over the cap");
            assert!(is_b64token(t), "outside b64token");
            let from_header = |kind: u8| {
                sources
                    .iter()
                    .any(|(k, v)| *k == kind && v.windows(t.len()).any(|w| w == t.as_bytes()))
            };
            match token.source() {
                TokenSource::Cookie => assert!(flags & 1 != 0 && from_header(b'c')),
                TokenSource::Header => assert!(flags & 2 != 0 && from_header(b'x')),
                TokenSource::Query => assert!(flags & 4 != 0 && query.is_some()),
                _ => {}
            }
        }
        Ok(None) => {}
        Err(e) => assert!(
            matches!(
                e.kind(),
                AuthErrorKind::MultipleCredentials
                    | AuthErrorKind::MalformedCredentials
                    | AuthErrorKind::TokenTooLarge
            ),
            "{:?}",
            e.kind()
        ),
    }

    // The same request through the whole service.
    let called = Arc::new(AtomicBool::new(false));
    let layer = BearerAuthLayer::new(common::jwt(common::Profile::Default).clone())
        .extractor(extractor)
        .realm("fuzz");
    let mut svc = layer.layer(Recorder(called.clone()));
    let res = futures_executor::block_on(svc.call(req)).expect("infallible");
    let (parts, body) = res.into_parts();
    let body = futures_executor::block_on(body.collect())
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let called = called.load(Ordering::SeqCst);
    let token = extracted.ok().flatten();
    common::trace(format_args!(
        "credential: {} (inner service {})",
        parts.status,
        if called { "called" } else { "not called" }
    ));

    if called {
        assert_eq!(parts.status, StatusCode::OK);
        let token = token.expect("the service ran without a credential");
        let signing_input = token.as_str().rsplit_once('.').map(|(s, _)| s);
        assert!(
            signing_input.is_some_and(|s| common::valid_signing_inputs().contains(s)),
            "the service ran for a token without a valid signature"
        );
        return;
    }

    let mut shown = String::from_utf8_lossy(&body).into_owned();
    for (k, v) in &parts.headers {
        shown.push('\n');
        shown.push_str(k.as_str());
        shown.push('\n');
        shown.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
    if flags & 16 != 0 {
        assert_eq!(parts.status, StatusCode::OK, "gRPC trailers-only");
        let code = parts.headers["grpc-status"].to_str().expect("ascii");
        assert!(code == "16", "grpc-status {code}");
    } else {
        assert!(
            matches!(parts.status.as_u16(), 400 | 401),
            "status {}",
            parts.status
        );
        let challenge = parts.headers["www-authenticate"].to_str().expect("ascii");
        assert!(
            challenge.starts_with(r#"Bearer realm="fuzz""#),
            "{challenge}"
        );
    }
    // No fixed text of a rejection holds a digit in a run of 9 characters of the token
    // charset, so such a part of the token showing up would be a leak.
    if let Some(token) = token {
        let telling = |p: &&str| p.len() >= 9 && p.bytes().any(|b| b.is_ascii_digit());
        for part in token.as_str().split('.').filter(telling) {
            assert!(!shown.contains(part), "token material in the response");
        }
    }
});
