//! Where MCP sessions live when several edges serve the same clients.
//!
//! A session-era client (`Mcp-Session-Id`) may send each request to a different edge behind a
//! load balancer. rmcp keeps the live session in the memory of the edge that created it and,
//! given a [`SessionStore`], persists what is needed to continue it elsewhere: the client's
//! `initialize` parameters (protocol version, client info, capabilities). An edge that does not
//! hold the session loads them and replays the handshake against its own connectors, which
//! are shared per edge, so no downstream session id needs to travel. Without a store (the
//! embedded default), sessions stay in the process that created them.

use std::time::Duration;

use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use rmcp::transport::streamable_http_server::session::{
    SessionState, SessionStore, SessionStoreError,
};
use serde::Deserialize;

/// Where a multi-replica edge keeps its sessions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// The environment variable holding the Redis URL (it may hold a password), such as
    /// `redis://127.0.0.1:6379`.
    pub redis_url_env: String,
    /// Prefix of every key, so several gateways can share one Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// How long an idle session can still be continued; each use extends it.
    #[serde(with = "humantime_serde", default = "default_idle_ttl")]
    pub idle_ttl: Duration,
}

fn default_key_prefix() -> String {
    "gatehouse:edge:session:".to_owned()
}

fn default_idle_ttl() -> Duration {
    Duration::from_secs(24 * 60 * 60)
}

/// Why the session store cannot be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The Redis URL variable is unset.
    #[error("environment variable {0} must hold the sessions' Redis URL")]
    Url(String),
    /// Redis refused the URL or could not be reached.
    #[error("cannot reach the sessions' Redis")]
    Redis(#[source] redis::RedisError),
    /// A stored session is not one this edge wrote.
    #[error("a stored session cannot be read")]
    Decode(#[source] serde_json::Error),
}

/// Sessions kept in Redis under `{prefix}{session id}` as JSON, expiring when idle.
#[derive(Clone)]
pub struct RedisSessions {
    connection: ConnectionManager,
    prefix: String,
    idle_ttl_seconds: u64,
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RedisSessions")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisSessions {
    /// Connects with the URL from the variable `config.redis_url_env` (failing now when
    /// Redis is unreachable).
    pub async fn open(config: &SessionsConfig) -> Result<Self, SessionError> {
        let url = std::env::var(&config.redis_url_env)
            .map_err(|_| SessionError::Url(config.redis_url_env.clone()))?;
        Self::connect(&url, config).await
    }

    /// Connects to the Redis at `url`.
    pub async fn connect(url: &str, config: &SessionsConfig) -> Result<Self, SessionError> {
        let client = redis::Client::open(url).map_err(SessionError::Redis)?;
        // Short timeouts: a request waits on this, and a failure only costs a re-initialize.
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(client, settings)
            .await
            .map_err(SessionError::Redis)?;
        Ok(Self {
            connection,
            prefix: config.key_prefix.clone(),
            idle_ttl_seconds: config.idle_ttl.as_secs().max(1),
        })
    }

    fn key(&self, session_id: &str) -> String {
        format!("{}{session_id}", self.prefix)
    }
}

#[async_trait::async_trait]
impl SessionStore for RedisSessions {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        let mut connection = self.connection.clone();
        let stored: Option<String> = connection
            .get_ex(
                self.key(session_id),
                redis::Expiry::EX(self.idle_ttl_seconds),
            )
            .await
            .map_err(SessionError::Redis)?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        Ok(Some(
            serde_json::from_str(&stored).map_err(SessionError::Decode)?,
        ))
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let value = serde_json::to_string(state).map_err(SessionError::Decode)?;
        let mut connection = self.connection.clone();
        let () = connection
            .set_ex(self.key(session_id), value, self.idle_ttl_seconds)
            .await
            .map_err(SessionError::Redis)?;
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        let mut connection = self.connection.clone();
        let _removed: u64 = connection
            .del(self.key(session_id))
            .await
            .map_err(SessionError::Redis)?;
        Ok(())
    }
}
