//! Finding the bearer credential in a request (RFC 6750 §2).
//!
//! The `Authorization: Bearer <token>` header is always read: the scheme is case-insensitive,
//! one or more spaces may follow it, and the token must be in the `b64token` charset
//! (`ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"`, then `"="` padding only). Optional
//! extra sources: a cookie, a custom header carrying the bare token, and the `access_token`
//! query parameter (off by default: RFC 6750 §2.3 discourages it). More than one credential
//! across all enabled sources is an `invalid_request`, and so is any token longer than the cap
//! (8 KiB by default), refused before any decoding.
//!
//! When the bearer layer is configured for DPoP ([`crate::dpop`]), `Authorization: DPoP
//! <token>` (RFC 9449 §7.1) is read as well, with the same rules; the token then reports
//! [`AuthScheme::Dpop`]. Without DPoP configured, that scheme is just another scheme.
//!
//! ```
//! use http::Request;
//! use tower_bearer::extract::Extractor;
//!
//! let extractor = Extractor::new().cookie("session");
//! let req = Request::builder()
//!     .header("authorization", "bearer   abc.def.ghi")
//!     .body(())
//!     .unwrap();
//! let token = extractor.extract(&req).unwrap().unwrap();
//! assert_eq!(token.as_str(), "abc.def.ghi");
//! assert_eq!(
//!     format!("{token:?}"),
//!     "BearerToken { source: Authorization, len: 11, scheme: Bearer }"
//! );
//! ```

use std::borrow::Cow;
use std::fmt;

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderName, Request};

use crate::reject::{AuthError, AuthErrorKind};

/// The default cap on a token's length, in bytes.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

/// Where a credential was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenSource {
    /// `Authorization: Bearer …`.
    Authorization,
    /// The configured cookie.
    Cookie,
    /// The configured custom header.
    Header,
    /// The `access_token` query parameter.
    Query,
}

/// The authentication scheme a token came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AuthScheme {
    /// `Bearer` (RFC 6750), or a source without a scheme (cookie, custom header, query).
    #[default]
    Bearer,
    /// `Authorization: DPoP …` (RFC 9449): the token must come with a DPoP proof.
    Dpop,
}

/// A bearer token as received. Its `Debug` output never shows the token, and it has no
/// `Display`: read it with [`BearerToken::as_str`] only where it is needed.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken {
    value: Box<str>,
    source: TokenSource,
    scheme: AuthScheme,
}

impl BearerToken {
    /// Wraps a token (for tests and custom extractors).
    pub fn new(value: impl Into<Box<str>>, source: TokenSource) -> Self {
        Self {
            value: value.into(),
            source,
            scheme: AuthScheme::Bearer,
        }
    }

    /// The same token, received with `scheme`.
    #[must_use]
    pub fn with_scheme(mut self, scheme: AuthScheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// The scheme the token came with.
    pub fn scheme(&self) -> AuthScheme {
        self.scheme
    }

    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// Where the token was found.
    pub fn source(&self) -> TokenSource {
        self.source
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerToken")
            .field("source", &self.source)
            .field("len", &self.value.len())
            .field("scheme", &self.scheme)
            .finish()
    }
}

/// Which credential sources are read, and the size cap.
#[derive(Debug, Clone)]
pub struct Extractor {
    max_len: usize,
    cookie: Option<Box<str>>,
    header: Option<HeaderName>,
    query: bool,
}

impl Default for Extractor {
    fn default() -> Self {
        Self::new()
    }
}

impl Extractor {
    /// Only `Authorization: Bearer`, with the default size cap.
    pub fn new() -> Self {
        Self {
            max_len: DEFAULT_MAX_TOKEN_LEN,
            cookie: None,
            header: None,
            query: false,
        }
    }

    /// Sets the maximum token length in bytes.
    #[must_use]
    pub fn max_token_len(mut self, max: usize) -> Self {
        self.max_len = max;
        self
    }

    /// Also reads the token from the cookie `name`.
    #[must_use]
    pub fn cookie(mut self, name: impl Into<Box<str>>) -> Self {
        self.cookie = Some(name.into());
        self
    }

    /// Also reads a bare token (no scheme) from the header `name`.
    #[must_use]
    pub fn header(mut self, name: HeaderName) -> Self {
        self.header = Some(name);
        self
    }

    /// Also reads the `access_token` query parameter (RFC 6750 §2.3). Off by default: URLs end
    /// up in logs and browser history.
    #[must_use]
    pub fn query(mut self, enabled: bool) -> Self {
        self.query = enabled;
        self
    }

    /// The credential cookie, when configured.
    pub(crate) fn cookie_name(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// The custom credential header, when configured.
    pub(crate) fn header_name(&self) -> Option<&HeaderName> {
        self.header.as_ref()
    }

    /// Finds the credential: `Ok(None)` when there is none (or only another scheme),
    /// an `invalid_request` error when it is malformed, too large, or not alone.
    pub fn extract<B>(&self, req: &Request<B>) -> Result<Option<BearerToken>, AuthError> {
        self.extract_with(req, false)
    }

    /// [`Extractor::extract`], also reading `Authorization: DPoP …` when `dpop` is on.
    pub(crate) fn extract_with<B>(
        &self,
        req: &Request<B>,
        dpop: bool,
    ) -> Result<Option<BearerToken>, AuthError> {
        match self.locate(req, dpop)? {
            Some(found) => self.check(found).map(Some),
            None => Ok(None),
        }
    }

    /// Finds the one credential without checking or copying it (see [`Extractor::check`]):
    /// `Ok(None)` when there is none, an error when there are several (after checking them,
    /// so a malformed credential is reported as such first).
    pub(crate) fn locate<'r, B>(
        &self,
        req: &'r Request<B>,
        dpop: bool,
    ) -> Result<Option<Located<'r>>, AuthError> {
        let mut found: Option<Located<'r>> = None;
        let mut authz = req.headers().get_all(AUTHORIZATION).iter();
        if let Some(value) = authz.next() {
            if authz.next().is_some() {
                return Err(AuthErrorKind::MultipleCredentials.into());
            }
            if let Some((token, scheme)) = parse_authorization(value.as_bytes(), dpop) {
                self.put(
                    &mut found,
                    Located::new(token, TokenSource::Authorization, scheme),
                )?;
            }
        }

        if let Some(name) = &self.header {
            let mut values = req.headers().get_all(name).iter();
            if let Some(value) = values.next() {
                if values.next().is_some() {
                    self.check_first(found.as_ref())?;
                    return Err(AuthErrorKind::MultipleCredentials.into());
                }
                let token = trim_ows(value.as_bytes());
                self.put(
                    &mut found,
                    Located::new(token, TokenSource::Header, AuthScheme::Bearer),
                )?;
            }
        }

        if let Some(name) = &self.cookie {
            for header in req.headers().get_all(COOKIE) {
                for pair in header.as_bytes().split(|b| *b == b';') {
                    let pair = trim_ows(pair);
                    let Some(eq) = pair.iter().position(|b| *b == b'=') else {
                        continue;
                    };
                    if &pair[..eq] != name.as_bytes() {
                        continue;
                    }
                    let mut value = &pair[eq + 1..];
                    if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
                        value = &value[1..value.len() - 1];
                    }
                    self.put(
                        &mut found,
                        Located::new(value, TokenSource::Cookie, AuthScheme::Bearer),
                    )?;
                }
            }
        }

        if self.query
            && let Some(query) = req.uri().query()
        {
            for pair in query.split('&') {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                if k != "access_token" {
                    continue;
                }
                if v.len() > self.max_len.saturating_mul(3) {
                    self.check_first(found.as_ref())?;
                    return Err(AuthErrorKind::TokenTooLarge.into());
                }
                let decoded = percent_encoding::percent_decode_str(v).collect::<Vec<u8>>();
                self.put(
                    &mut found,
                    Located {
                        raw: Cow::Owned(decoded),
                        source: TokenSource::Query,
                        scheme: AuthScheme::Bearer,
                    },
                )?;
            }
        }

        Ok(found)
    }

    /// Whether `raw` is within the size cap (a credential [located](Self::locate) but not
    /// yet [checked](Self::check)).
    pub(crate) fn admits_len(&self, raw: &[u8]) -> bool {
        raw.len() <= self.max_len
    }

    /// Checks a located credential (size cap, then the `b64token` charset) and copies it.
    pub(crate) fn check(&self, found: Located<'_>) -> Result<BearerToken, AuthError> {
        self.check_bytes(&found.raw)?;
        // b64token is ASCII, so this cannot fail.
        let value = String::from_utf8(found.raw.into_owned())
            .map_err(|_| AuthError::from(AuthErrorKind::MalformedCredentials))?;
        Ok(BearerToken::new(value, found.source).with_scheme(found.scheme))
    }

    /// Keeps the first credential; a second one is an error (after checking both).
    fn put<'r>(&self, found: &mut Option<Located<'r>>, next: Located<'r>) -> Result<(), AuthError> {
        if let Some(first) = found {
            self.check_bytes(&first.raw)?;
            self.check_bytes(&next.raw)?;
            return Err(AuthErrorKind::MultipleCredentials.into());
        }
        *found = Some(next);
        Ok(())
    }

    /// An error found in an earlier credential takes precedence over a later one.
    fn check_first(&self, found: Option<&Located<'_>>) -> Result<(), AuthError> {
        found.map_or(Ok(()), |f| self.check_bytes(&f.raw))
    }

    fn check_bytes(&self, token: &[u8]) -> Result<(), AuthError> {
        if token.len() > self.max_len {
            return Err(AuthErrorKind::TokenTooLarge.into());
        }
        if !is_b64token(token) {
            return Err(AuthErrorKind::MalformedCredentials.into());
        }
        Ok(())
    }
}

/// A credential found in a request, neither checked nor copied yet: the bearer layer first
/// asks the authenticator's cache about these bytes, so a token seen before is never copied
/// or scanned again (a cached token passed every check when it was first seen).
pub(crate) struct Located<'r> {
    raw: Cow<'r, [u8]>,
    source: TokenSource,
    scheme: AuthScheme,
}

impl<'r> Located<'r> {
    fn new(raw: &'r [u8], source: TokenSource, scheme: AuthScheme) -> Self {
        Self {
            raw: Cow::Borrowed(raw),
            source,
            scheme,
        }
    }

    /// The credential's bytes, unchecked.
    pub(crate) fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Where it was found.
    pub(crate) fn source(&self) -> TokenSource {
        self.source
    }

    /// The scheme it came with.
    pub(crate) fn scheme(&self) -> AuthScheme {
        self.scheme
    }
}

/// Parses one `Authorization` value: the token and its scheme, `None` for another scheme.
fn parse_authorization(value: &[u8], dpop: bool) -> Option<(&[u8], AuthScheme)> {
    // The usual form first, `Bearer <token>`: the same result as the general case below.
    if let Some([scheme @ .., b' ']) = value.get(..7)
        && scheme.eq_ignore_ascii_case(b"bearer")
    {
        return Some((trim_ows(&value[7..]), AuthScheme::Bearer));
    }
    parse_any_authorization(value, dpop)
}

/// [`parse_authorization`] without its shortcut.
fn parse_any_authorization(value: &[u8], dpop: bool) -> Option<(&[u8], AuthScheme)> {
    let value = trim_ows(value);
    let (scheme, rest) = match value.iter().position(|b| *b == b' ') {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, &value[value.len()..]),
    };
    let scheme = if scheme.eq_ignore_ascii_case(b"bearer") {
        AuthScheme::Bearer
    } else if dpop && scheme.eq_ignore_ascii_case(b"dpop") {
        AuthScheme::Dpop
    } else {
        return None;
    };
    Some((trim_ows(rest), scheme))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub(crate) fn is_b64token(token: &[u8]) -> bool {
    // The body, then `=` padding: strip the padding from the end, then every byte left must
    // be a body character (so an `=` inside the body fails too).
    let padding = token.iter().rev().take_while(|b| **b == b'=').count();
    let body = &token[..token.len() - padding];
    // An OR-reduction without branches compiles to SIMD: this runs on every request.
    !body.is_empty()
        && body
            .iter()
            .fold(0u8, |bad, &b| bad | u8::from(!is_b64token_char(b)))
            == 0
}

/// `ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"`, without branches.
#[inline]
fn is_b64token_char(b: u8) -> bool {
    // `b | 0x20` folds A-Z onto a-z and maps no other byte into a-z.
    ((b | 0x20).wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64token_charset_is_exactly_rfc6750() {
        for b in 0..=u8::MAX {
            let expected =
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            assert_eq!(is_b64token_char(b), expected, "byte {b:#04x}");
        }
        for (token, ok) in [
            (&b"abc"[..], true),
            (b"a+/b-._~9==", true),
            (b"abc=", true),
            (b"ab=c", false),
            (b"ab==c=", false),
            (b"==", false),
            (b"", false),
            (b"ab c", false),
        ] {
            assert_eq!(is_b64token(token), ok, "{token:?}");
        }
    }

    /// The shortcut for `Bearer <token>` finds what the general parse finds, for every value
    /// of up to four pieces of scheme names, whitespace and token characters.
    #[test]
    fn the_bearer_shortcut_parses_as_the_general_case() {
        let pieces: [&[u8]; 10] = [
            b"Bearer", b"bEaReR", b"DPoP", b"Bearer ", b" ", b"\t", b"  ", b"tok", b"Bear", b"er",
        ];
        let mut shortcut = 0;
        for n in 0..=4u32 {
            for mut i in 0..pieces.len().pow(n) {
                let mut value = Vec::new();
                for _ in 0..n {
                    value.extend_from_slice(pieces[i % pieces.len()]);
                    i /= pieces.len();
                }
                for dpop in [false, true] {
                    let general = parse_any_authorization(&value, dpop);
                    assert_eq!(parse_authorization(&value, dpop), general, "{value:?}");
                }
                // The values the shortcut answers: `bearer` in any case, then a space.
                shortcut += usize::from(
                    value.len() > 6
                        && value[6] == b' '
                        && value[..6].eq_ignore_ascii_case(b"bearer"),
                );
            }
        }
        assert!(
            shortcut > 100,
            "only {shortcut} values of the shortcut's form"
        );
    }

    fn req(headers: &[(&str, &str)], uri: &str) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn kind(r: Result<Option<BearerToken>, AuthError>) -> AuthErrorKind {
        r.unwrap_err().kind()
    }

    #[test]
    fn scheme_is_case_insensitive_with_any_spaces() {
        let e = Extractor::new();
        for v in ["Bearer abc", "bearer abc", "BEARER   abc", "BeArEr abc  "] {
            let t = e
                .extract(&req(&[("authorization", v)], "/"))
                .unwrap()
                .unwrap();
            assert_eq!(t.as_str(), "abc", "{v}");
        }
    }

    #[test]
    fn other_schemes_and_nothing_are_none() {
        let e = Extractor::new();
        assert!(e.extract(&req(&[], "/")).unwrap().is_none());
        assert!(
            e.extract(&req(&[("authorization", "Basic dXNlcjpw")], "/"))
                .unwrap()
                .is_none()
        );
        assert!(
            e.extract(&req(&[("authorization", "Bearerx abc")], "/"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn charset_and_emptiness() {
        let e = Extractor::new();
        for v in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a,b",
            "Bearer =abc",
            "Bearer ab=c",
            "Bearer a\"b",
        ] {
            assert_eq!(
                kind(e.extract(&req(&[("authorization", v)], "/"))),
                AuthErrorKind::MalformedCredentials,
                "{v}"
            );
        }
        for v in ["Bearer a-b.c_d~e+f/g==", "Bearer A1"] {
            assert!(
                e.extract(&req(&[("authorization", v)], "/"))
                    .unwrap()
                    .is_some(),
                "{v}"
            );
        }
    }

    #[test]
    fn more_than_one_credential() {
        let e = Extractor::new().query(true).cookie("tok");
        assert_eq!(
            kind(e.extract(&req(
                &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
                "/"
            ))),
            AuthErrorKind::MultipleCredentials
        );
        assert_eq!(
            kind(e.extract(&req(&[("authorization", "Bearer a")], "/?access_token=b"))),
            AuthErrorKind::MultipleCredentials
        );
        assert_eq!(
            kind(e.extract(&req(
                &[("authorization", "Bearer a"), ("cookie", "tok=b")],
                "/"
            ))),
            AuthErrorKind::MultipleCredentials
        );
        assert_eq!(
            kind(e.extract(&req(&[], "/?access_token=a&access_token=b"))),
            AuthErrorKind::MultipleCredentials
        );
    }

    #[test]
    fn query_is_off_by_default() {
        let e = Extractor::new();
        assert!(
            e.extract(&req(&[], "/?access_token=abc"))
                .unwrap()
                .is_none()
        );
        let t = Extractor::new()
            .query(true)
            .extract(&req(&[], "/?x=1&access_token=abc"))
            .unwrap()
            .unwrap();
        assert_eq!((t.as_str(), t.source()), ("abc", TokenSource::Query));
    }

    #[test]
    fn cookie_and_header_sources() {
        let e = Extractor::new()
            .cookie("tok")
            .header(HeaderName::from_static("x-api-token"));
        let t = e
            .extract(&req(&[("cookie", "a=1; tok=xyz; b=2")], "/"))
            .unwrap()
            .unwrap();
        assert_eq!((t.as_str(), t.source()), ("xyz", TokenSource::Cookie));
        let t = e
            .extract(&req(&[("x-api-token", "k1")], "/"))
            .unwrap()
            .unwrap();
        assert_eq!((t.as_str(), t.source()), ("k1", TokenSource::Header));
        assert_eq!(
            kind(e.extract(&req(&[("cookie", "tok=a b")], "/"))),
            AuthErrorKind::MalformedCredentials
        );
    }

    #[test]
    fn dpop_scheme_only_when_enabled() {
        let e = Extractor::new();
        let r = req(&[("authorization", "DPoP abc")], "/");
        assert!(e.extract(&r).unwrap().is_none());
        assert!(e.extract_with(&r, false).unwrap().is_none());
        let t = e.extract_with(&r, true).unwrap().unwrap();
        assert_eq!((t.as_str(), t.scheme()), ("abc", AuthScheme::Dpop));
        let t = e
            .extract_with(&req(&[("authorization", "dpop   abc")], "/"), true)
            .unwrap()
            .unwrap();
        assert_eq!(t.scheme(), AuthScheme::Dpop);
        let t = e
            .extract_with(&req(&[("authorization", "Bearer abc")], "/"), true)
            .unwrap()
            .unwrap();
        assert_eq!(t.scheme(), AuthScheme::Bearer);
        assert_eq!(
            kind(e.extract_with(&req(&[("authorization", "DPoP a b")], "/"), true)),
            AuthErrorKind::MalformedCredentials
        );
    }

    #[test]
    fn size_cap() {
        let e = Extractor::new().max_token_len(10);
        assert!(
            e.extract(&req(&[("authorization", "Bearer 0123456789")], "/"))
                .unwrap()
                .is_some()
        );
        assert_eq!(
            kind(e.extract(&req(&[("authorization", "Bearer 0123456789a")], "/"))),
            AuthErrorKind::TokenTooLarge
        );
    }
}
