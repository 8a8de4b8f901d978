//! One MCP client of the load generator, speaking streamable HTTP directly: the stateless
//! 2026-07-28 era (per-request headers and `_meta`) or the session-based 2025-11-25 era.

use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::reply::{self, InitializeResult, ToolResult};

/// The protocol revision spoken in the stateless (modern) era.
const MODERN_VERSION: &str = "2026-07-28";
/// The protocol revision asked for in `initialize` in the session (legacy) era.
const LEGACY_VERSION: &str = "2025-11-25";

const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");

/// Which MCP protocol era the load generator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Era {
    /// 2026-07-28: stateless POSTs with `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` and `_meta`.
    Modern,
    /// 2025-11-25: `initialize` once per worker, then POSTs carrying `Mcp-Session-Id`.
    Legacy,
}

/// How each client opens its session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opening {
    pub(crate) era: Era,
    /// Legacy era: list the tools once after the handshake, as SDK clients do.
    pub(crate) list_tools: bool,
    /// Legacy era: hold the session's GET stream open for its life, as SDK clients do.
    pub(crate) get_stream: bool,
}

/// What every session calls: the endpoint, the pooled HTTP client and the pre-encoded tool call.
#[derive(Debug)]
pub(crate) struct Target {
    http: reqwest::Client,
    url: reqwest::Url,
    tool: String,
    /// `{"jsonrpc":"2.0","method":"tools/call","params":{"name":…,"arguments":{"<argument>":"`
    call_head: String,
}

/// A connected client: its headers for `tools/call`, and its own request ids.
#[derive(Debug)]
pub(crate) struct Session {
    target: Arc<Target>,
    era: Era,
    worker: usize,
    headers: HeaderMap,
    /// Everything after the echoed text up to the request id (the arguments' end and `_meta`).
    call_tail: &'static str,
    next_id: u64,
    /// The session's GET stream, held open and never read (it only carries list changes).
    _stream: Option<reqwest::Response>,
}

impl Era {
    /// Returns the name used on the command line and in the report.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Modern => "modern",
            Self::Legacy => "legacy",
        }
    }
}

impl Target {
    /// Returns a target calling `tool` with its text in `argument` at `url` through `http`.
    pub(crate) fn new(
        http: reqwest::Client,
        url: reqwest::Url,
        tool: &str,
        argument: &str,
    ) -> anyhow::Result<Self> {
        let call_head = format!(
            r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":{},"arguments":{{{}:""#,
            serde_json::to_string(tool)?,
            serde_json::to_string(argument)?,
        );
        Ok(Self {
            http,
            url,
            tool: tool.to_owned(),
            call_head,
        })
    }
}

impl Session {
    /// Returns a session opened as `opening` says for `worker`, after the `initialize` handshake
    /// (and the tool listing, when asked) in the legacy era.
    pub(crate) async fn open(
        target: Arc<Target>,
        opening: Opening,
        worker: usize,
    ) -> anyhow::Result<Self> {
        let era = opening.era;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        let mut session = Self {
            target,
            era,
            worker,
            headers,
            call_tail: "\"}},\"id\":",
            next_id: 1,
            _stream: None,
        };
        match era {
            Era::Modern => {
                session.headers.insert(
                    MCP_PROTOCOL_VERSION,
                    HeaderValue::from_static(MODERN_VERSION),
                );
                session
                    .headers
                    .insert(MCP_METHOD, HeaderValue::from_static("tools/call"));
                let name = HeaderValue::from_str(&session.target.tool)
                    .context("tool name is not a header value")?;
                session.headers.insert(MCP_NAME, name);
                session.call_tail = MODERN_CALL_TAIL;
            }
            Era::Legacy => {
                session.initialize().await?;
                if opening.list_tools {
                    session.list_tools().await?;
                }
                if opening.get_stream {
                    session._stream = Some(session.open_stream().await?);
                }
            }
        }
        Ok(session)
    }

    /// Calls the tool once with text `w{worker}-{seq}` and checks that the reply echoes it.
    pub(crate) async fn call_echo(&mut self, seq: u64) -> anyhow::Result<()> {
        let text = format!("w{}-{seq}", self.worker);
        let id = self.take_id();
        let body = format!("{}{text}{}{id}}}", self.target.call_head, self.call_tail);
        let (content_type, bytes) = self.post(body, self.headers.clone()).await?;
        let result: ToolResult = reply::result_for(&content_type, &bytes, id)?;
        result.check_echo(&text)
    }

    /// Ends a legacy-era session with `DELETE`; a server that keeps no sessions may refuse it.
    pub(crate) async fn close(self) {
        if self.era == Era::Legacy && self.headers.contains_key(MCP_SESSION_ID) {
            let request = self
                .target
                .http
                .delete(self.target.url.clone())
                .headers(self.headers.clone());
            if let Err(error) = request.send().await {
                tracing::debug!(%error, "closing the session failed");
            }
        }
    }

    async fn initialize(&mut self) -> anyhow::Result<()> {
        let id = self.take_id();
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "initialize",
            "params": {
                "protocolVersion": LEGACY_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "mcp-load", "version": env!("CARGO_PKG_VERSION")},
            },
        });
        let response = self.send(body.to_string(), self.headers.clone()).await?;
        if let Some(session_id) = response.headers().get(MCP_SESSION_ID) {
            self.headers.insert(MCP_SESSION_ID, session_id.clone());
        }
        let (content_type, bytes) = read(response).await?;
        let result: InitializeResult =
            reply::result_for(&content_type, &bytes, id).context("initialize failed")?;
        let version = HeaderValue::from_str(&result.protocol_version)
            .context("protocol version is not a header value")?;
        self.headers.insert(MCP_PROTOCOL_VERSION, version);
        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        self.post(initialized.to_owned(), self.headers.clone())
            .await
            .context("notifications/initialized failed")?;
        Ok(())
    }

    async fn list_tools(&mut self) -> anyhow::Result<()> {
        let id = self.take_id();
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#);
        let (content_type, bytes) = self.post(body, self.headers.clone()).await?;
        let _: serde_json::Value =
            reply::result_for(&content_type, &bytes, id).context("tools/list failed")?;
        Ok(())
    }

    /// Opens the session's GET stream; the answer must be an event stream.
    async fn open_stream(&self) -> anyhow::Result<reqwest::Response> {
        let mut headers = self.headers.clone();
        headers.remove(CONTENT_TYPE);
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        let request = self
            .target
            .http
            .get(self.target.url.clone())
            .headers(headers);
        let response = request.send().await?;
        let status = response.status();
        if !status.is_success() {
            bail!("GET stream answered {status}");
        }
        Ok(response)
    }

    async fn post(&self, body: String, headers: HeaderMap) -> anyhow::Result<(String, Bytes)> {
        read(self.send(body, headers).await?).await
    }

    async fn send(&self, body: String, headers: HeaderMap) -> anyhow::Result<reqwest::Response> {
        let request = self
            .target
            .http
            .post(self.target.url.clone())
            .headers(headers)
            .body(body);
        Ok(request.send().await?)
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// The `_meta` every 2026-07-28 request carries, closing the arguments and params before the id.
const MODERN_CALL_TAIL: &str = concat!(
    r#""},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","#,
    r#""io.modelcontextprotocol/clientCapabilities":{},"#,
    r#""io.modelcontextprotocol/clientInfo":{"name":"mcp-load","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""}}},"id":"#,
);

/// Returns the content type and body of a successful response, or an error naming the status.
async fn read(response: reqwest::Response) -> anyhow::Result<(String, Bytes)> {
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.bytes().await?;
    if !status.is_success() {
        let snippet = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        bail!("http {status}: {snippet}");
    }
    Ok((content_type, bytes))
}
