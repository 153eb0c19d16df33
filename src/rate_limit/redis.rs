use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionLike;

use super::quota::{Decision, Quota};
use super::store::{Check, RateLimitStore, StoreError};
use crate::error::ConfigError;

/// A 128-bit digest of a limiter key: the same on every instance, fixed-size whatever the
/// subject's length, and no subject in Redis.
fn key_digest(key: &str) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(key.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// GCRA in one atomic script: one round trip per decision, Redis server time (so instances
/// with skewed clocks agree), a single key (so it runs on Redis Cluster), and a TTL on every
/// write equal to the time until the quota is whole again.
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local window = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local used = new_tat - now
if used <= window then
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(used / 1000) + 1)
  return {1, math.floor((window - used) / interval), used}
end
return {0, used - window, tat - now}
";

/// The script of [`GCRA_LUA`], built (and its SHA-1 computed) once per process: a decision
/// borrows it, so a request neither copies it nor touches a shared reference count.
static GCRA: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(GCRA_LUA));

/// Limiter state in Redis, shared by every instance that uses the same server (feature
/// `redis`).
///
/// Any async `redis` connection that can be cloned works: a `ConnectionManager` (reconnects
/// by itself; [`RedisStore::connect`] builds one) or a `cluster_async::ClusterConnection`
/// (the crate enables `redis`'s `cluster-async` feature). Every call is bounded by a timeout
/// (default 250 ms); a failure or timeout is a [`StoreError`], and the layer applies its
/// fail-open or fail-closed policy at once. Keys are `tower-bearer:rl:` followed by a hex
/// digest of the namespaced caller key, so no subject is ever stored in clear.
pub struct RedisStore<C> {
    conn: C,
    timeout: Duration,
    prefix: Arc<str>,
}

impl<C> fmt::Debug for RedisStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.timeout)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl<C: Clone> Clone for RedisStore<C> {
    fn clone(&self) -> Self {
        Self {
            conn: self.conn.clone(),
            timeout: self.timeout,
            prefix: self.prefix.clone(),
        }
    }
}

impl RedisStore<redis::aio::ConnectionManager> {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`) through a `ConnectionManager` that
    /// re-establishes the connection by itself, with 1 s connect and 250 ms response timeouts.
    pub async fn connect(url: &str) -> Result<Self, ConfigError> {
        let client = redis::Client::open(url)
            .map_err(|e| ConfigError::new(format!("invalid Redis URL: {e}")))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_millis(250)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = tokio::time::timeout(
            Duration::from_secs(3),
            redis::aio::ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| ConfigError::new("cannot connect to Redis: timed out"))?
        .map_err(|e| ConfigError::new(format!("cannot connect to Redis: {e}")))?;
        Ok(Self::new(conn))
    }
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A store over an existing connection.
    pub fn new(conn: C) -> Self {
        Self {
            conn,
            timeout: Duration::from_millis(250),
            prefix: Arc::from("tower-bearer:rl:"),
        }
    }

    /// The limit on one decision (default 250 ms).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The key prefix (default `tower-bearer:rl:`).
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Arc::from(prefix);
        self
    }

    /// The connection (to share it, e.g. with the revocation store).
    pub fn connection(&self) -> &C {
        &self.conn
    }

    /// The Redis key for a limiter key.
    fn redis_key(&self, key: &str) -> String {
        crate::hash::prefixed_hex(&self.prefix, &key_digest(key))
    }
}

impl<C> RateLimitStore for RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn check(&self, key: &str, quota: &Quota) -> Check {
        let mut conn = self.conn.clone();
        let timeout = self.timeout;
        let redis_key = self.redis_key(key);
        let interval_us = (quota.interval_nanos() / 1000).max(1);
        let burst = quota.burst();
        Check::pending(async move {
            let call = async {
                GCRA.key(&redis_key)
                    .arg(interval_us)
                    .arg(burst)
                    .invoke_async::<(i64, i64, i64)>(&mut conn)
                    .await
            };
            let (allowed, a, b) = tokio::time::timeout(timeout, call)
                .await
                .map_err(|_| StoreError::new(format!("Redis did not answer within {timeout:?}")))?
                .map_err(|e| StoreError::new(format!("Redis error: {e}")))?;
            let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
            Ok(if allowed == 1 {
                Decision::Allow {
                    remaining: u32::try_from(a).unwrap_or(0),
                    reset: us(b),
                }
            } else {
                Decision::Deny {
                    retry_after: us(a),
                    reset: us(b),
                }
            })
        })
    }
}
