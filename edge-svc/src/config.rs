//! edge-svc's own settings: where it listens, which hosts and origins it answers, and which
//! gateway description it serves.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The environment prefix of edge-svc settings (`GATEHOUSE_EDGE__LISTEN_ADDR`, …).
pub const ENV_PREFIX: &str = "GATEHOUSE_EDGE__";

/// Settings of one edge-svc process (TOML file + `GATEHOUSE_EDGE__*` environment).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the public HTTP listener.
    #[serde(default = "default_listen_addr")]
    pub listen_addr: SocketAddr,
    /// The origin clients use to reach the gateway (`https://mcp.example.com`); defaults to
    /// `http://{listen_addr}`. Resource URLs and the allowed `Origin` derive from it.
    #[serde(default)]
    pub public_url: Option<url::Url>,
    /// The YAML gateway description (connectors and virtual servers).
    pub gateway: PathBuf,
    /// Extra `Host` values accepted besides the public URL's host and loopback names.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Extra browser origins accepted besides the public origin.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Largest accepted request body; larger ones get HTTP 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How long in-flight requests may run after a shutdown signal.
    #[serde(with = "humantime_serde", default = "default_shutdown_grace")]
    pub shutdown_grace: std::time::Duration,
    /// Logging and tracing.
    #[serde(default)]
    pub telemetry: svc_kit::TelemetryConfig,
    /// Where decided requests are recorded; without it the edge keeps no audit trail.
    #[serde(default)]
    pub audit: Option<crate::audit::AuditConfig>,
    /// Where connectors' downstream credentials come from; required when any connector
    /// declares `credentials`.
    #[serde(default)]
    pub vault: Option<crate::credentials::VaultConfig>,
    /// The authorization server this edge is a protected resource of (tokens, revocations,
    /// policy); without it, every `auth: oauth` virtual server refuses every request.
    #[serde(default)]
    pub authz: Option<crate::auth::upstream::AuthzConfig>,
    /// Where MCP sessions are shared with the other edges (several replicas behind a load
    /// balancer); without it, a session lives only in the edge that created it.
    #[serde(default)]
    pub sessions: Option<crate::session::SessionsConfig>,
}

fn default_listen_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}

fn default_shutdown_grace() -> std::time::Duration {
    std::time::Duration::from_secs(10)
}

impl Config {
    /// Returns the HTTP face for a listener bound at `bound` (the public URL defaults to it).
    pub fn http_face(&self, bound: SocketAddr) -> Result<HttpFace, url::ParseError> {
        let public_url = match &self.public_url {
            Some(url) => url.clone(),
            None => url::Url::parse(&format!("http://{bound}"))?,
        };
        Ok(HttpFace::new(
            public_url,
            &self.allowed_hosts,
            &self.allowed_origins,
            self.max_body_bytes,
        ))
    }
}

/// What the HTTP face needs to know about where it is reachable.
#[derive(Debug, Clone)]
pub struct HttpFace {
    /// The public origin, without a trailing slash.
    pub public_url: url::Url,
    /// Accepted `Host` header values.
    pub allowed_hosts: Vec<String>,
    /// Accepted `Origin` header values.
    pub allowed_origins: Vec<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
}

impl HttpFace {
    /// Derives the accepted hosts and origins from the public URL plus configured extras.
    ///
    /// Loopback names are always accepted for loopback listeners so local tools work; any
    /// other `Host` is refused to stop DNS-rebinding attacks.
    pub fn new(
        public_url: url::Url,
        extra_hosts: &[String],
        extra_origins: &[String],
        max_body_bytes: usize,
    ) -> Self {
        let mut allowed_hosts = extra_hosts.to_vec();
        let mut allowed_origins = extra_origins.to_vec();
        let origin = public_url.origin().ascii_serialization();
        if let Some(host) = public_url.host_str() {
            allowed_hosts.push(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
            );
            if is_loopback(host) {
                allowed_hosts.extend(["localhost", "127.0.0.1", "::1"].map(str::to_owned));
                let port = public_url.port_or_known_default().unwrap_or(80);
                for name in ["localhost", "127.0.0.1", "[::1]"] {
                    allowed_origins.push(format!("{}://{name}:{port}", public_url.scheme()));
                }
            }
        }
        allowed_origins.push(origin);
        allowed_hosts.sort();
        allowed_hosts.dedup();
        allowed_origins.sort();
        allowed_origins.dedup();
        Self {
            public_url,
            allowed_hosts,
            allowed_origins,
            max_body_bytes,
        }
    }

    /// Returns the canonical URL of a virtual server's MCP endpoint (its OAuth resource id).
    pub fn resource_url(&self, virtual_server: &str) -> String {
        format!("{}/v/{virtual_server}/mcp", self.origin())
    }

    /// Returns the RFC 9728 metadata URL of a virtual server (path-inserted form).
    pub fn resource_metadata_url(&self, virtual_server: &str) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource/v/{virtual_server}/mcp",
            self.origin()
        )
    }

    fn origin(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_owned()
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
