//! How a connector is declared: the transport, and for stdio the sandbox, limits and restarts.

use std::{collections::BTreeMap, num::NonZeroUsize, path::PathBuf, time::Duration};

use serde::Deserialize;

/// How Gatehouse reaches one downstream MCP server.
///
/// Written as a map with exactly one key, `stdio`, `http` or `sse` (YAML has no other
/// spelling of an enum that reads naturally).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "TransportSpec")]
pub enum Transport {
    /// A program Gatehouse runs, sandboxed, speaking MCP over its stdin and stdout.
    Stdio(StdioConfig),
    /// A streamable HTTP endpoint (2025-06-18/2025-11-25 sessions or 2026-07-28 stateless).
    Http(HttpConfig),
    /// A legacy 2024-11-05 HTTP+SSE endpoint.
    Sse(SseConfig),
}

/// The map form of [`Transport`] as written in a config file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransportSpec {
    stdio: Option<StdioConfig>,
    http: Option<HttpConfig>,
    sse: Option<SseConfig>,
}

/// Which MCP protocol era a connector speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Era {
    /// Probes with `server/discover` and falls back to `initialize` when the server is legacy.
    #[default]
    Auto,
    /// Uses only `server/discover` (2026-07-28); a legacy server is a connect error.
    Modern,
    /// Uses only the `initialize` handshake (2025-11-25 and earlier).
    Legacy,
}

/// A stdio connector: the program, its clean environment, its sandbox and its restart policy.
///
/// `Debug` shows environment variable names only: values may be secrets.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdioConfig {
    /// Program to run: an absolute path, or a name looked up in the connector's `PATH`.
    pub command: String,
    /// Arguments passed to the program.
    #[serde(default)]
    pub args: Vec<String>,
    /// The whole environment of the program; nothing is inherited from Gatehouse.
    ///
    /// `PATH` defaults to `/usr/local/bin:/usr/bin:/bin` and `HOME` to the working directory
    /// when not declared here.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory, readable and writable by the program.
    ///
    /// Defaults to a private directory `gatehouse-connectors/<name>` under the system
    /// temporary directory, created on first launch.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Extra paths the program may read and execute (for example an interpreter's install dir).
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// Extra paths the program may read and write.
    #[serde(default)]
    pub writable_paths: Vec<PathBuf>,
    /// Memory, CPU and process limits.
    #[serde(default)]
    pub limits: Limits,
    /// How the sandbox launcher is found and whether it is used.
    #[serde(default)]
    pub sandbox: SandboxConfig,
    /// How a crashed program is restarted.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Protocol era to speak over stdio.
    #[serde(default)]
    pub era: Era,
    /// Longest wait for a session in [`Connector::peer`](super::Connector::peer).
    #[serde(default = "default_stdio_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

/// Resource limits applied to a stdio program by the sandbox launcher.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Data segment limit in bytes (`RLIMIT_DATA`; default 2 GiB).
    ///
    /// `RLIMIT_AS` is not used: V8 (Node) reserves tens of GiB of address space up front and
    /// would not start. `RLIMIT_DATA` counts private writable memory, which is what grows.
    #[serde(default = "default_memory_bytes")]
    pub memory_bytes: u64,
    /// CPU time in seconds over the program's lifetime (`RLIMIT_CPU`; default 3600).
    ///
    /// A program that exhausts it is killed by the kernel and restarted like any crash.
    #[serde(default = "default_cpu_seconds")]
    pub cpu_seconds: u64,
    /// Processes and threads the program may add (`RLIMIT_NPROC`; default 256).
    ///
    /// The kernel counts every task of the user, so the launcher sets the limit to the
    /// user's current task count plus this number. The kernel does not enforce it for root
    /// or for holders of `CAP_SYS_RESOURCE`/`CAP_SYS_ADMIN`; Gatehouse warns when so.
    #[serde(default = "default_processes")]
    pub processes: u64,
    /// Open file descriptors (`RLIMIT_NOFILE`; default 1024).
    #[serde(default = "default_open_files")]
    pub open_files: u64,
}

/// Whether and how a stdio program is wrapped in the `gatehouse-sandbox` launcher.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// Runs the program through the launcher (default true). Only turn off for debugging.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Path of the launcher binary.
    ///
    /// Defaults to `$GATEHOUSE_SANDBOX_LAUNCHER`, then `gatehouse-sandbox` next to the
    /// running executable or in its parent directory, then the running executable itself
    /// (which must call [`run_if_requested`](super::sandbox::run_if_requested) first in `main`).
    #[serde(default)]
    pub launcher: Option<PathBuf>,
}

/// Restart policy of a stdio program.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    /// Delay before the first restart; doubled for every further quick crash.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest delay between restarts.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// A session that lived at least this long resets the crash count.
    #[serde(default = "default_stable_after", with = "humantime_serde")]
    pub stable_after: Duration,
    /// Quick crashes in a row after which the connector is `failed` and no longer restarted.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
}

/// A streamable HTTP connector.
///
/// `Debug` shows header names only: values may be secrets.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The MCP endpoint, for example `https://mcp.example.com/mcp`.
    pub url: url::Url,
    /// Extra request headers (for example a static API key header).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Protocol era; `auto` detects it with `server/discover`.
    #[serde(default)]
    pub era: Era,
    /// Longest wait for a session in [`Connector::peer`](super::Connector::peer).
    #[serde(default = "default_http_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Speaks HTTP/2 to the downstream: offered by ALPN over `https` (HTTP/1.1 if refused),
    /// with prior knowledge (h2c) over plain `http`. Calls then share one connection instead
    /// of holding one each while in flight, but no more run at once than the downstream's
    /// concurrent-stream limit allows, so it is opt-in.
    #[serde(default)]
    pub http2: bool,
    /// Most requests in flight to the downstream at once, on the connector's session and its
    /// direct line together; further requests wait their turn in order (replies and
    /// notifications never wait). Over HTTP/1.1 each request in flight holds a connection, so
    /// this bounds what a crowd of callers costs edge and the downstream in connections.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: NonZeroUsize,
}

/// A legacy 2024-11-05 HTTP+SSE connector.
///
/// `Debug` shows header names only: values may be secrets.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SseConfig {
    /// The SSE endpoint, for example `http://127.0.0.1:8000/sse`.
    pub url: url::Url,
    /// Extra request headers sent on the SSE `GET` and on every message `POST`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Longest wait for a session in [`Connector::peer`](super::Connector::peer).
    #[serde(default = "default_http_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Transport {
    /// Returns the transport's key in the config file: `stdio`, `http` or `sse`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Stdio(_) => "stdio",
            Self::Http(_) => "http",
            Self::Sse(_) => "sse",
        }
    }

    /// Returns how long [`Connector::peer`](super::Connector::peer) waits for a session.
    pub fn connect_timeout(&self) -> Duration {
        match self {
            Self::Stdio(config) => config.connect_timeout,
            Self::Http(config) => config.connect_timeout,
            Self::Sse(config) => config.connect_timeout,
        }
    }
}

impl TryFrom<TransportSpec> for Transport {
    type Error = &'static str;

    fn try_from(spec: TransportSpec) -> Result<Self, Self::Error> {
        match (spec.stdio, spec.http, spec.sse) {
            (Some(stdio), None, None) => Ok(Self::Stdio(stdio)),
            (None, Some(http), None) => Ok(Self::Http(http)),
            (None, None, Some(sse)) => Ok(Self::Sse(sse)),
            _ => Err("a connector needs exactly one of stdio, http or sse"),
        }
    }
}

impl StdioConfig {
    /// Returns a configuration running `command` with `args` and every other field defaulted.
    pub fn new(
        command: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            command: command.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: BTreeMap::new(),
            cwd: None,
            paths: Vec::new(),
            writable_paths: Vec::new(),
            limits: Limits::default(),
            sandbox: SandboxConfig::default(),
            restart: RestartPolicy::default(),
            era: Era::default(),
            connect_timeout: default_stdio_connect_timeout(),
        }
    }
}

impl HttpConfig {
    /// Returns a configuration for `url` with no headers and era detection.
    pub fn new(url: url::Url) -> Self {
        Self {
            url,
            headers: BTreeMap::new(),
            era: Era::default(),
            connect_timeout: default_http_connect_timeout(),
            http2: false,
            max_in_flight: default_max_in_flight(),
        }
    }

    /// Says whether HTTP/2 is spoken without negotiation: asked for, over plain `http`.
    pub(crate) fn h2c(&self) -> bool {
        self.http2 && self.url.scheme() == "http"
    }
}

impl SseConfig {
    /// Returns a configuration for `url` with no headers.
    pub fn new(url: url::Url) -> Self {
        Self {
            url,
            headers: BTreeMap::new(),
            connect_timeout: default_http_connect_timeout(),
        }
    }
}

impl std::fmt::Debug for StdioConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioConfig")
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .field("paths", &self.paths)
            .field("writable_paths", &self.writable_paths)
            .field("limits", &self.limits)
            .field("sandbox", &self.sandbox)
            .field("restart", &self.restart)
            .field("era", &self.era)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("url", &redact(&self.url))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("era", &self.era)
            .field("connect_timeout", &self.connect_timeout)
            .field("http2", &self.http2)
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

impl std::fmt::Debug for SseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseConfig")
            .field("url", &redact(&self.url))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: default_memory_bytes(),
            cpu_seconds: default_cpu_seconds(),
            processes: default_processes(),
            open_files: default_open_files(),
        }
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            launcher: None,
        }
    }
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            stable_after: default_stable_after(),
            max_failures: default_max_failures(),
        }
    }
}

impl RestartPolicy {
    /// Returns the delay before the restart that follows `failures` quick crashes in a row.
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Returns `url` without user info, query or fragment, which may carry credentials.
pub fn redact(url: &url::Url) -> String {
    format!("{}{}", url.origin().ascii_serialization(), url.path())
}

fn default_true() -> bool {
    true
}

fn default_memory_bytes() -> u64 {
    2 << 30
}

fn default_cpu_seconds() -> u64 {
    3600
}

fn default_processes() -> u64 {
    256
}

fn default_open_files() -> u64 {
    1024
}

fn default_initial_backoff() -> Duration {
    Duration::from_millis(250)
}

fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

fn default_stable_after() -> Duration {
    Duration::from_secs(30)
}

fn default_max_failures() -> u32 {
    5
}

fn default_stdio_connect_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_http_connect_timeout() -> Duration {
    Duration::from_secs(30)
}

/// rmcp's session allowed 16 POSTs at once by default, too few for a gateway multiplexing many
/// callers onto one connector; 256 is within common servers' concurrent-stream limits.
fn default_max_in_flight() -> NonZeroUsize {
    NonZeroUsize::MIN.saturating_add(255)
}

#[cfg(test)]
mod tests;
