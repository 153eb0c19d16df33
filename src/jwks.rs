//! Remote JWK Sets (RFC 7517) and OpenID Connect discovery (feature `jwks`).
//!
//! A [`RemoteJwks`] is fetched when it is built (building fails clearly if that first fetch
//! fails, unless [`RemoteJwksBuilder::start_empty`] was chosen), refreshed in the background
//! on an interval that honours `Cache-Control: max-age` within configured bounds, and
//! refreshed at once when a token names a `kid` the set does not have:
//!
//! - **single-flight**: one fetch in flight, however many requests wait for it;
//! - **throttled**: at most one on-demand fetch per cooldown (default 10 s), so a flood of
//!   forged `kid`s cannot hammer the issuer; those tokens get 401 without waiting;
//! - **lock-free reads**: requests read the current set through an `ArcSwap`; no lock a fetch
//!   holds is ever on the request path, and requests whose keys are known never wait for a
//!   fetch, however slow the endpoint;
//! - **resilient**: every fetch has a timeout and a body-size cap; a failed refresh (error
//!   status, garbage, a set with no usable key, a hang) keeps the last good set, logs a
//!   warning (target `tower_bearer::keys`) and backs off exponentially; only when no set was
//!   ever loaded are requests refused, with 503 / `UNAVAILABLE`.
//!
//! Keys are used by the rules of [`keys`](crate::keys): entries whose `use` is not `sig`, whose
//! `alg` does not fit, of an unsupported type or with an RSA modulus under 2048 bits are
//! skipped with a warning; of two entries with the same `kid` the first is kept.
//!
//! The HTTP client is yours: anything implementing [`HttpClient`] (feature `reqwest`:
//! `reqwest::Client`, with your TLS roots and proxy) is used for every fetch, discovery
//! included.
//!
//! ```no_run
//! # #[cfg(feature = "reqwest")]
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use tower_bearer::jwks::RemoteJwks;
//! use tower_bearer::validate::Jwt;
//!
//! // From the issuer's discovery document: `iss` is pinned to the discovered issuer.
//! let keys = RemoteJwks::discover("https://login.example.com")
//!     .client(reqwest::Client::new())
//!     .build()
//!     .await?;
//! let jwt = Jwt::builder().jwks(keys).audience("api://orders").build()?;
//! # let _ = jwt; Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::Shared;
use tokio::time::Instant;

use crate::error::ConfigError;
use crate::keys::KeySet;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An HTTP response as the key fetcher needs it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The `Cache-Control` header, if any.
    pub cache_control: Option<String>,
    /// The body, at most the `max_body` bytes asked for.
    pub body: Bytes,
}

/// Why a fetch failed. Its message names the URL and the cause, never a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError(String);

impl FetchError {
    /// A fetch error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FetchError {}

/// The HTTP client used to fetch key sets and discovery documents.
///
/// Implementations must stop reading and fail once the body exceeds `max_body` bytes. The
/// whole call is also bounded by the fetcher's own timeout.
pub trait HttpClient: Send + Sync + 'static {
    /// `GET url`.
    fn get<'a>(
        &'a self,
        url: &'a str,
        max_body: usize,
    ) -> BoxFuture<'a, Result<HttpResponse, FetchError>>;

    /// `POST url` with an `application/x-www-form-urlencoded` body (already encoded) and an
    /// optional `Authorization` value (RFC 7662 introspection). The default refuses.
    fn post_form<'a>(
        &'a self,
        url: &'a str,
        body: String,
        authorization: Option<&'a str>,
        max_body: usize,
    ) -> BoxFuture<'a, Result<HttpResponse, FetchError>> {
        let _ = (body, authorization, max_body);
        Box::pin(async move {
            Err(FetchError::new(format!(
                "POST {url}: not supported by this client"
            )))
        })
    }
}

/// An error with its chain of causes ("error sending request: connection refused").
#[cfg(feature = "reqwest")]
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Sends a request and reads the response, refusing bodies over `max_body` bytes.
#[cfg(feature = "reqwest")]
async fn send_bounded(
    req: reqwest::RequestBuilder,
    what: String,
    max_body: usize,
) -> Result<HttpResponse, FetchError> {
    let mut res = req
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| FetchError::new(format!("{what}: {}", with_causes(&e))))?;
    let too_big = || FetchError::new(format!("{what}: body larger than {max_body} bytes"));
    if res.content_length().is_some_and(|l| l > max_body as u64) {
        return Err(too_big());
    }
    let status = res.status().as_u16();
    let cache_control = res
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| FetchError::new(format!("{what}: {}", with_causes(&e))))?
    {
        if body.len() + chunk.len() > max_body {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(HttpResponse {
        status,
        cache_control,
        body: Bytes::from(body),
    })
}

#[cfg(feature = "reqwest")]
impl HttpClient for reqwest::Client {
    fn get<'a>(
        &'a self,
        url: &'a str,
        max_body: usize,
    ) -> BoxFuture<'a, Result<HttpResponse, FetchError>> {
        Box::pin(send_bounded(
            reqwest::Client::get(self, url),
            format!("GET {url}"),
            max_body,
        ))
    }

    fn post_form<'a>(
        &'a self,
        url: &'a str,
        body: String,
        authorization: Option<&'a str>,
        max_body: usize,
    ) -> BoxFuture<'a, Result<HttpResponse, FetchError>> {
        let mut req = reqwest::Client::post(self, url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        if let Some(auth) = authorization {
            req = req.header(http::header::AUTHORIZATION, auth);
        }
        Box::pin(send_bounded(req, format!("POST {url}"), max_body))
    }
}

impl<C: HttpClient + ?Sized> HttpClient for Arc<C> {
    fn get<'a>(
        &'a self,
        url: &'a str,
        max_body: usize,
    ) -> BoxFuture<'a, Result<HttpResponse, FetchError>> {
        (**self).get(url, max_body)
    }

    fn post_form<'a>(
        &'a self,
        url: &'a str,
        body: String,
        authorization: Option<&'a str>,
        max_body: usize,
    ) -> BoxFuture<'a, Result<HttpResponse, FetchError>> {
        (**self).post_form(url, body, authorization, max_body)
    }
}

#[derive(Debug, Clone)]
struct Config {
    cooldown: Duration,
    default_interval: Duration,
    min_interval: Duration,
    max_interval: Duration,
    timeout: Duration,
    max_body: usize,
    start_empty: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cooldown: Duration::from_secs(10),
            default_interval: Duration::from_secs(300),
            min_interval: Duration::from_secs(30),
            max_interval: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
            max_body: 256 * 1024,
            start_empty: false,
        }
    }
}

/// Builds a [`RemoteJwks`].
#[must_use]
pub struct RemoteJwksBuilder {
    source: Source,
    client: Option<Arc<dyn HttpClient>>,
    config: Config,
}

enum Source {
    Url(String),
    Discovery(String),
}

impl fmt::Debug for RemoteJwksBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, url) = match &self.source {
            Source::Url(u) => ("jwks_uri", u),
            Source::Discovery(u) => ("issuer", u),
        };
        f.debug_struct("RemoteJwksBuilder")
            .field(kind, url)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RemoteJwksBuilder {
    /// The HTTP client for every fetch (required unless feature `reqwest` is on, which
    /// defaults to a `reqwest::Client` with a 5 s connect timeout).
    pub fn client(mut self, client: impl HttpClient) -> Self {
        self.client = Some(Arc::new(client));
        self
    }

    /// The minimum time between two fetches triggered by unknown `kid`s (default 10 s).
    pub fn refresh_cooldown(mut self, cooldown: Duration) -> Self {
        self.config.cooldown = cooldown;
        self
    }

    /// The background refresh interval when the response has no `max-age` (default 5 min).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.config.default_interval = interval;
        self
    }

    /// Bounds on the background refresh interval, `max-age` included (default 30 s – 1 h).
    /// The maximum also caps the failure backoff.
    pub fn refresh_interval_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.config.min_interval = min;
        self.config.max_interval = max;
        self
    }

    /// The limit on one whole fetch, connection included (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// The largest body accepted (default 256 KiB).
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.config.max_body = max;
        self
    }

    /// Starts even if the first fetch fails; until a set is loaded, requests get 503.
    pub fn start_empty(mut self) -> Self {
        self.config.start_empty = true;
        self
    }

    /// Fetches the discovery document (if any) and the key set, and starts the background
    /// refresh on the current Tokio runtime.
    pub async fn build(self) -> Result<RemoteJwks, ConfigError> {
        let c = &self.config;
        if c.min_interval > c.max_interval || c.timeout.is_zero() || c.max_body == 0 {
            return Err(ConfigError::new("invalid JWKS refresh configuration"));
        }
        let client = match self.client {
            Some(c) => c,
            None => default_client()?,
        };
        let (issuer, url) = match self.source {
            Source::Url(url) => (None, url),
            Source::Discovery(issuer) => {
                let jwks_uri = discover(&*client, &issuer, &self.config)
                    .await
                    .map_err(|e| ConfigError::new(format!("OIDC discovery failed: {e}")))?;
                (Some(issuer), jwks_uri)
            }
        };
        check_url(&url).map_err(ConfigError::new)?;
        let inner = Arc::new(Inner {
            url,
            issuer,
            client,
            config: self.config,
            current: ArcSwapOption::empty(),
            state: Mutex::new(RefreshState::default()),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        let first = inner.clone().fetch_now().await;
        let delay = match first {
            Ok(delay) => delay,
            Err(e) if inner.config.start_empty => {
                tracing::warn!(target: "tower_bearer::keys", url = %inner.url, error = %e, "starting without keys");
                inner.lock().next_delay
            }
            Err(e) => return Err(ConfigError::new(format!("initial JWKS fetch failed: {e}"))),
        };
        spawn_refresher(Arc::downgrade(&inner), delay);
        Ok(RemoteJwks { inner })
    }
}

/// The client used when none is given: `reqwest` with a 5 s connect timeout.
#[cfg(feature = "reqwest")]
pub(crate) fn default_client() -> Result<Arc<dyn HttpClient>, ConfigError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map(|c| Arc::new(c) as Arc<dyn HttpClient>)
        .map_err(|e| ConfigError::new(format!("cannot build the HTTP client: {e}")))
}

#[cfg(not(feature = "reqwest"))]
pub(crate) fn default_client() -> Result<Arc<dyn HttpClient>, ConfigError> {
    Err(ConfigError::new(
        "no HTTP client: pass one with `.client(...)` or enable feature `reqwest`",
    ))
}

pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let ok = url
        .parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if ok {
        Ok(())
    } else {
        Err(format!("not an http(s) URL: {url:?}"))
    }
}

async fn get_bounded(
    client: &dyn HttpClient,
    url: &str,
    config: &Config,
) -> Result<HttpResponse, FetchError> {
    let res = tokio::time::timeout(config.timeout, client.get(url, config.max_body))
        .await
        .map_err(|_| {
            FetchError::new(format!("GET {url}: timed out after {:?}", config.timeout))
        })??;
    if res.status != 200 {
        return Err(FetchError::new(format!("GET {url}: status {}", res.status)));
    }
    if res.body.len() > config.max_body {
        return Err(FetchError::new(format!(
            "GET {url}: body larger than {} bytes",
            config.max_body
        )));
    }
    Ok(res)
}

/// Reads `{issuer}/.well-known/openid-configuration`, checks its `issuer`, returns `jwks_uri`.
async fn discover(
    client: &dyn HttpClient,
    issuer: &str,
    config: &Config,
) -> Result<String, FetchError> {
    check_url(issuer).map_err(FetchError::new)?;
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let res = get_bounded(client, &url, config).await?;
    #[derive(serde::Deserialize)]
    struct Doc {
        issuer: String,
        jwks_uri: String,
    }
    let doc: Doc = serde_json::from_slice(&res.body)
        .map_err(|e| FetchError::new(format!("GET {url}: invalid discovery document: {e}")))?;
    if doc.issuer != issuer {
        return Err(FetchError::new(format!(
            "discovery document names issuer {:?}, expected {issuer:?}",
            doc.issuer
        )));
    }
    Ok(doc.jwks_uri)
}

/// `max-age` from a `Cache-Control` value (`no-store` / `no-cache` count as zero).
fn max_age(cache_control: &str) -> Option<Duration> {
    let mut out = None;
    for directive in cache_control.split(',') {
        let d = directive.trim();
        if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        if let Some((k, v)) = d.split_once('=')
            && k.trim().eq_ignore_ascii_case("max-age")
        {
            out = v
                .trim()
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    out
}

type SharedFetch = Shared<BoxFuture<'static, ()>>;

#[derive(Default)]
struct RefreshState {
    in_flight: Option<SharedFetch>,
    last_on_demand: Option<Instant>,
    consecutive_failures: u32,
    /// When the background task should fetch next, as decided by the last fetch.
    next_delay: Duration,
    /// Why the last failed fetch failed (no body, no key material: status, size, parse).
    last_error: Option<String>,
}

struct Inner {
    url: String,
    issuer: Option<String>,
    client: Arc<dyn HttpClient>,
    config: Config,
    current: ArcSwapOption<KeySet>,
    state: Mutex<RefreshState>,
    fetches: AtomicU64,
    failures: AtomicU64,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, RefreshState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One fetch, storing the set on success. Returns the delay before the next scheduled
    /// refresh (from `max-age` on success, backoff on failure).
    async fn fetch_now(self: Arc<Self>) -> Result<Duration, FetchError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result: Result<_, FetchError> = async {
            let res = get_bounded(&*self.client, &self.url, &self.config).await?;
            let text = std::str::from_utf8(&res.body)
                .map_err(|_| FetchError::new(format!("GET {}: body is not UTF-8", self.url)))?;
            let set = KeySet::from_jwks_json(text)
                .map_err(|e| FetchError::new(format!("GET {}: {e}", self.url)))?;
            Ok((set, res.cache_control))
        }
        .await;
        let c = &self.config;
        match result {
            Ok((set, cache_control)) => {
                crate::metrics::key_refresh(true);
                tracing::debug!(target: "tower_bearer::keys", url = %self.url, keys = set.len(), "JWKS refreshed");
                self.current.store(Some(Arc::new(set)));
                let wanted = cache_control
                    .as_deref()
                    .and_then(max_age)
                    .unwrap_or(c.default_interval);
                let delay = wanted.clamp(c.min_interval, c.max_interval);
                let mut st = self.lock();
                st.consecutive_failures = 0;
                st.next_delay = delay;
                Ok(delay)
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                crate::metrics::key_refresh(false);
                let n = {
                    let mut st = self.lock();
                    st.consecutive_failures = st.consecutive_failures.saturating_add(1);
                    // Exponential backoff: 1 s, 2 s, 4 s… capped by the maximum interval.
                    let base = c.min_interval.min(Duration::from_secs(1));
                    let exp = st.consecutive_failures.min(16) - 1;
                    st.next_delay = base.saturating_mul(1 << exp).min(c.max_interval);
                    st.last_error = Some(e.to_string());
                    st.consecutive_failures
                };
                tracing::warn!(
                    target: "tower_bearer::keys",
                    url = %self.url,
                    error = %e,
                    consecutive_failures = n,
                    keeping_last_good = self.current.load().is_some(),
                    "JWKS refresh failed"
                );
                Err(e)
            }
        }
    }

    /// Joins the fetch in flight, or starts one. `on_demand` fetches are throttled by the
    /// cooldown: `None` when one ran too recently.
    fn fetch(self: &Arc<Self>, on_demand: bool) -> Option<SharedFetch> {
        let mut st = self.lock();
        if let Some(f) = &st.in_flight {
            return Some(f.clone());
        }
        if on_demand {
            let now = Instant::now();
            if st
                .last_on_demand
                .is_some_and(|t| now.duration_since(t) < self.config.cooldown)
            {
                return None;
            }
            st.last_on_demand = Some(now);
        }
        let this = self.clone();
        // The fetch runs in its own task so that a cancelled request cannot abort it.
        let handle = tokio::spawn(async move {
            let _ = this.clone().fetch_now().await;
            this.lock().in_flight = None;
        });
        let shared = async move {
            let _ = handle.await;
        }
        .boxed()
        .shared();
        st.in_flight = Some(shared.clone());
        Some(shared)
    }
}

fn spawn_refresher(weak: Weak<Inner>, first_delay: Duration) {
    tokio::spawn(async move {
        let mut delay = first_delay;
        loop {
            tokio::time::sleep(delay).await;
            let Some(inner) = weak.upgrade() else { break };
            if let Some(f) = inner.fetch(false) {
                f.await;
            }
            delay = inner.lock().next_delay;
        }
    });
}

/// A JWK Set fetched from an issuer and kept fresh; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct RemoteJwks {
    inner: Arc<Inner>,
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("url", &self.inner.url)
            .field("issuer", &self.inner.issuer)
            .field("keys", &self.inner.current.load().as_ref().map(|s| s.len()))
            .finish_non_exhaustive()
    }
}

/// Counters of a [`RemoteJwks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksStats {
    /// Fetches started (the discovery document not included).
    pub fetches: u64,
    /// Fetches that failed.
    pub failures: u64,
    /// Keys in the current set (`None`: no set ever loaded).
    pub keys: Option<usize>,
}

impl RemoteJwks {
    /// A key set at `jwks_uri`.
    pub fn builder(jwks_uri: impl Into<String>) -> RemoteJwksBuilder {
        RemoteJwksBuilder {
            source: Source::Url(jwks_uri.into()),
            client: None,
            config: Config::default(),
        }
    }

    /// The key set of an OpenID Connect issuer, found through its discovery document; the
    /// document's `issuer` must equal `issuer` exactly, and tokens verified with these keys
    /// must carry that `iss`.
    pub fn discover(issuer: impl Into<String>) -> RemoteJwksBuilder {
        RemoteJwksBuilder {
            source: Source::Discovery(issuer.into()),
            client: None,
            config: Config::default(),
        }
    }

    /// The current set, lock-free; `None` when none was ever loaded.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.inner.current.load_full()
    }

    /// The issuer found by discovery, if built with [`RemoteJwks::discover`].
    pub fn issuer(&self) -> Option<&str> {
        self.inner.issuer.as_deref()
    }

    /// The `jwks_uri` in use.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Fetches now (joining a fetch in flight), ignoring the cooldown. The set is replaced
    /// only on success; a failure says why the fetch failed.
    pub async fn refresh(&self) -> Result<(), FetchError> {
        let failures = self.inner.failures.load(Ordering::Relaxed);
        if let Some(f) = self.inner.fetch(false) {
            f.await;
        }
        if self.inner.failures.load(Ordering::Relaxed) == failures {
            Ok(())
        } else {
            let reason = self.inner.lock().last_error.clone().unwrap_or_default();
            Err(FetchError::new(format!(
                "refresh of {} failed: {reason}",
                self.inner.url
            )))
        }
    }

    /// Refreshes because a token named an unknown key: joins the fetch in flight or starts
    /// one, unless the cooldown forbids it (`None`: answer with the current set).
    pub(crate) fn refresh_for_unknown_key(
        &self,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        self.inner.fetch(true)
    }

    /// Fetch and failure counters.
    pub fn stats(&self) -> JwksStats {
        JwksStats {
            fetches: self.inner.fetches.load(Ordering::Relaxed),
            failures: self.inner.failures.load(Ordering::Relaxed),
            keys: self.inner.current.load().as_ref().map(|s| s.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_parsing() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("MAX-AGE = 5"), Some(Duration::from_secs(5)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }

    #[test]
    fn urls_must_be_http() {
        assert!(check_url("https://issuer.example/keys").is_ok());
        assert!(check_url("http://127.0.0.1:8080").is_ok());
        assert!(check_url("file:///etc/passwd").is_err());
        assert!(check_url("issuer.example").is_err());
    }
}
