//! `mcp-echo`: a small rmcp downstream for tests and benchmarks.
//!
//! `mcp-echo stdio` serves MCP on stdin/stdout. `mcp-echo http --listen 127.0.0.1:0` serves
//! streamable HTTP at `/mcp` on both protocol eras (sessions for the legacy era, JSON
//! responses where rmcp allows) and prints `http://ADDR/mcp` as its first stdout line.

use std::{
    io::Write,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use clap::{Parser, Subcommand};
#[allow(
    deprecated,
    reason = "logging is deprecated by SEP-2577 but live in both eras this server speaks"
)]
use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam};
use rmcp::{
    ErrorData, Peer, RoleServer, ServerHandler, ServiceExt,
    handler::server::{common::Extension, router::tool::ToolRouter, wrapper::Parameters},
    model::{
        CallToolResult, ContentBlock, GetPromptRequestParams, GetPromptResponse, GetPromptResult,
        ListPromptsResult, ListResourcesResult, PaginatedRequestParams, ProgressNotificationParam,
        Prompt, PromptArgument, PromptMessage, ReadResourceRequestParams, ReadResourceResponse,
        ReadResourceResult, RequestMetaObject, Resource, ResourceContents, Role,
        ServerCapabilities, ServerConfig,
    },
    schemars,
    service::RequestContext,
    tool, tool_handler, tool_router,
    transport::{
        StreamableHttpServerConfig, StreamableHttpService,
        streamable_http_server::session::local::LocalSessionManager,
    },
};
use serde::Deserialize;

/// URI of the one resource.
const README_URI: &str = "echo://readme";
/// Text of the one resource.
const README_TEXT: &str = "mcp-echo: a test downstream for Gatehouse";
/// Number of progress notifications `slow` sends.
const SLOW_STEPS: u32 = 4;

#[derive(Debug, Parser)]
#[command(about = "MCP echo server for Gatehouse tests")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Serves MCP on stdin/stdout.
    Stdio,
    /// Serves streamable HTTP at /mcp and prints the URL on the first stdout line.
    Http {
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// An OAuth provider's token-owner endpoint; the `whoami` tool asks it who the
        /// request's bearer token belongs to, so only that provider's tokens get an answer.
        #[arg(long, value_name = "URL")]
        whoami: Option<String>,
        /// A file of accepted bearer tokens, one per line, read on every request; any other
        /// request is answered 401 (with a `WWW-Authenticate` challenge), as a downstream that
        /// revoked a credential would.
        #[arg(long, value_name = "FILE")]
        accept_tokens: Option<std::path::PathBuf>,
        /// An issuer whose signed access tokens alone are accepted (checked against its
        /// `{issuer}/jwks.json`, with `iss` and `--audience`), as a resource server trusting
        /// Gatehouse's tokens would; anything else is answered 401.
        #[arg(long, value_name = "URL", requires = "audience")]
        trust_issuer: Option<String>,
        /// The audience (`aud`) tokens from `--trust-issuer` must name.
        #[arg(long, value_name = "AUD")]
        audience: Option<String>,
        /// Answers the first N `prompts/list` requests with an error, writing one stderr line
        /// for each, as a server whose listing fails while it is up would.
        #[arg(long, value_name = "N", default_value_t = 0)]
        fail_prompt_lists: u64,
    },
}

/// The claims of the access token a request proved, as `--trust-issuer` verified them.
#[derive(Debug, Clone)]
struct VerifiedClaims(serde_json::Value);

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct EchoParams {
    /// Text to return unchanged.
    text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct BulkParams {
    /// How many bytes of text to return (at most 64 MiB).
    bytes: usize,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AddParams {
    /// Left operand.
    a: i64,
    /// Right operand.
    b: i64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SlowParams {
    /// Milliseconds to take.
    ms: u64,
    /// Text each progress notification carries as its message.
    #[serde(default)]
    note: Option<String>,
    /// Texts the progress notifications carry one after another, one step each, instead of
    /// `note`: how a downstream cuts one text into several messages.
    #[serde(default)]
    notes: Vec<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct EnvParams {
    /// Environment variable name.
    name: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ReadFileParams {
    /// Path of the file to read.
    path: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ExitParams {
    /// Exit status.
    code: i32,
}

/// How many more `prompts/list` requests to refuse (`--fail-prompt-lists`).
static PROMPT_LISTS_TO_FAIL: AtomicU64 = AtomicU64::new(0);

/// Counts the echo calls this process answered, so tests can prove a refused call never arrived.
static ECHOES: AtomicU64 = AtomicU64::new(0);
/// `slow` calls running now, and the most that ran at once since `slow_peak` last read it, so
/// tests can see how many calls a gateway lets reach a downstream at once.
static SLOW_NOW: AtomicU64 = AtomicU64::new(0);
static SLOW_PEAK: AtomicU64 = AtomicU64::new(0);

/// Counts one `slow` call as running until it is dropped, however the call ends.
struct InFlight;

impl InFlight {
    fn start() -> Self {
        let now = SLOW_NOW.fetch_add(1, Ordering::SeqCst) + 1;
        SLOW_PEAK.fetch_max(now, Ordering::SeqCst);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        SLOW_NOW.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The echo server's tools, resource and prompt.
///
/// Cloned for each request in the stateless era, where rmcp asks the factory for a service per
/// request: the tool router is built once and shared, because building it (rmcp checks every
/// tool's name against a set it builds anew) was 69 % of the echo's instructions per call.
#[derive(Debug, Clone)]
struct Echo {
    tool_router: Arc<ToolRouter<Self>>,
    whoami: Option<Arc<str>>,
}

#[tool_router]
impl Echo {
    fn new(whoami: Option<Arc<str>>) -> Self {
        Self {
            tool_router: Arc::new(Self::tool_router()),
            whoami,
        }
    }

    #[tool(
        description = "Return the user the OAuth provider says this request's bearer token belongs to"
    )]
    async fn whoami(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
    ) -> CallToolResult {
        let refused = |why: &str| CallToolResult::error(vec![ContentBlock::text(why.to_owned())]);
        let Some(url) = &self.whoami else {
            return refused("no provider configured");
        };
        let Some(authorization) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return refused("no bearer token");
        };
        let asked = reqwest::Client::new()
            .get(url.as_ref())
            .header(axum::http::header::AUTHORIZATION, authorization.clone())
            .send()
            .await;
        let owner = match asked {
            Ok(response) if response.status().is_success() => {
                response.json::<serde_json::Value>().await.ok()
            }
            _ => None,
        };
        match owner.as_ref().and_then(|body| body["user"].as_str()) {
            Some(user) => CallToolResult::success(vec![ContentBlock::text(user.to_owned())]),
            None => refused("the provider refused the token"),
        }
    }

    #[tool(description = "Return the text unchanged")]
    fn echo(&self, Parameters(params): Parameters<EchoParams>) -> String {
        ECHOES.fetch_add(1, Ordering::Relaxed);
        params.text
    }

    #[tool(description = "Return how many echo calls this process has answered")]
    fn echoes(&self) -> String {
        ECHOES.load(Ordering::Relaxed).to_string()
    }

    #[tool(description = "Add two integers")]
    fn add(&self, Parameters(AddParams { a, b }): Parameters<AddParams>) -> String {
        a.saturating_add(b).to_string()
    }

    #[tool(
        description = "Take ms milliseconds, reporting progress with the request's progress token"
    )]
    async fn slow(
        &self,
        Parameters(SlowParams { ms, note, notes }): Parameters<SlowParams>,
        meta: RequestMetaObject,
        client: Peer<RoleServer>,
    ) -> Result<String, ErrorData> {
        let _in_flight = InFlight::start();
        let messages: Vec<Option<String>> = if notes.is_empty() {
            vec![note; SLOW_STEPS as usize]
        } else {
            notes.into_iter().map(Some).collect()
        };
        let steps = u32::try_from(messages.len())
            .map_err(|_| ErrorData::invalid_params("too many notes", None))?;
        let step = Duration::from_millis(ms) / steps;
        for (done, message) in (1..=steps).zip(messages) {
            tokio::time::sleep(step).await;
            if let Some(token) = meta.get_progress_token() {
                let mut progress = ProgressNotificationParam::new(token, f64::from(done))
                    .with_total(f64::from(steps));
                if let Some(message) = message {
                    progress = progress.with_message(message);
                }
                client
                    .notify_progress(progress)
                    .await
                    .map_err(|error| ErrorData::internal_error(error.to_string(), None))?;
            }
        }
        Ok(format!("slept {ms} ms"))
    }

    #[tool(
        description = "Return the most `slow` calls that ran at once since the last time this was asked, and start counting anew"
    )]
    fn slow_peak(&self) -> String {
        SLOW_PEAK
            .swap(SLOW_NOW.load(Ordering::SeqCst), Ordering::SeqCst)
            .to_string()
    }

    #[tool(
        description = "Log the text at info level when the request asked for log messages (`_meta` logLevel, as a 2026-07-28 server must require), then return it"
    )]
    #[allow(
        deprecated,
        reason = "logging is deprecated by SEP-2577 but live in both eras this server speaks"
    )]
    async fn chatty(
        &self,
        Parameters(EchoParams { text }): Parameters<EchoParams>,
        meta: RequestMetaObject,
        client: Peer<RoleServer>,
    ) -> Result<String, ErrorData> {
        if meta.log_level().is_some() {
            client
                .notify_logging_message(LoggingMessageNotificationParam::new(
                    LoggingLevel::Info,
                    serde_json::Value::String(text.clone()),
                ))
                .await
                .map_err(|error| ErrorData::internal_error(error.to_string(), None))?;
        }
        Ok(text)
    }

    #[tool(
        description = "Tell the calling session that the tool list changed, as a server whose tools changed would"
    )]
    async fn announce(&self, client: Peer<RoleServer>) -> Result<String, ErrorData> {
        client
            .notify_tool_list_changed()
            .await
            .map_err(|error| ErrorData::internal_error(error.to_string(), None))?;
        Ok("announced".to_owned())
    }

    #[tool(description = "Return a text of the given number of bytes: an answer as large as asked")]
    fn bulk(&self, Parameters(BulkParams { bytes }): Parameters<BulkParams>) -> String {
        "x".repeat(bytes.min(64 << 20))
    }

    #[tool(description = "Fail with a tool error")]
    fn fail(&self) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text("failed as asked")])
    }

    #[tool(description = "Return the value of an environment variable, or \"unset\"")]
    fn env(&self, Parameters(params): Parameters<EnvParams>) -> String {
        std::env::var(&params.name).unwrap_or_else(|_| "unset".to_owned())
    }

    #[tool(description = "Return the contents of a file")]
    fn read_file(&self, Parameters(params): Parameters<ReadFileParams>) -> CallToolResult {
        match std::fs::read_to_string(&params.path) {
            Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
            Err(error) => CallToolResult::error(vec![ContentBlock::text(error.to_string())]),
        }
    }

    #[tool(description = "Exit the process at once with the given status")]
    fn exit(&self, Parameters(ExitParams { code }): Parameters<ExitParams>) -> String {
        std::process::exit(code)
    }

    #[tool(
        description = "Return the SHA-256 (hex) of the Authorization header this request carried, or \"none\": proves which credential arrived without echoing it"
    )]
    fn authorization_digest(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
    ) -> String {
        use sha2::Digest as _;
        parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .map_or_else(
                || "none".to_owned(),
                |value| format!("{:x}", sha2::Sha256::digest(value.as_bytes())),
            )
    }

    #[tool(
        description = "Return the W3C trace context this call arrived with, as JSON: the `traceparent` HTTP header and the `_meta.traceparent` (SEP-414), each null when absent"
    )]
    fn trace_context(&self, context: RequestContext<RoleServer>) -> String {
        let header = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.headers.get("traceparent"))
            .and_then(|value| value.to_str().ok());
        serde_json::json!({
            "header": header,
            "meta": context.meta.get_traceparent(),
        })
        .to_string()
    }

    #[tool(
        description = "Return the verified access token's sub, aud, client_id, scope, act and agent claims as JSON (never the token), or \"none\" without --trust-issuer"
    )]
    fn token_claims(&self, Extension(parts): Extension<axum::http::request::Parts>) -> String {
        parts.extensions.get::<VerifiedClaims>().map_or_else(
            || "none".to_owned(),
            |VerifiedClaims(claims)| {
                serde_json::json!({
                    "sub": claims["sub"], "aud": claims["aud"], "client_id": claims["client_id"],
                    "scope": claims["scope"], "act": claims["act"], "agent": claims["agent"],
                })
                .to_string()
            },
        )
    }

    #[tool(
        description = "Return, as JSON, how this call arrived: its JSON-RPC id, HTTP version, the `Mcp-Method` and `Mcp-Name` headers, and the client, protocol version and client capabilities declared in `_meta`"
    )]
    fn arrival(&self, context: RequestContext<RoleServer>) -> String {
        let header = |name: &str| {
            context
                .extensions
                .get::<axum::http::request::Parts>()
                .and_then(|parts| parts.headers.get(name))
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let http = context
            .extensions
            .get::<axum::http::request::Parts>()
            .map(|parts| format!("{:?}", parts.version));
        serde_json::json!({
            "id": context.id,
            "http": http,
            "method": header("mcp-method"),
            "name": header("mcp-name"),
            "client": context.meta.client_info().map(|client| client.name),
            "version": context.meta.protocol_version().map(|version| version.to_string()),
            "capabilities": context.meta.0.get("io.modelcontextprotocol/clientCapabilities"),
        })
        .to_string()
    }

    #[tool(description = "Return the process id")]
    fn pid(&self) -> String {
        std::process::id().to_string()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_prompts()
            .build();
        ServerConfig::new(capabilities).with_instructions("Echo server for Gatehouse tests")
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let readme = Resource::new(README_URI, "readme");
        Ok(ListResourcesResult::with_all_items(vec![readme]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if request.uri != README_URI {
            return Err(ErrorData::resource_not_found(request.uri, None));
        }
        let contents = ResourceContents::text(README_TEXT, README_URI);
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let refused =
            PROMPT_LISTS_TO_FAIL.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            });
        if refused.is_ok() {
            eprintln!("mcp-echo: prompts/list refused on purpose");
            return Err(ErrorData::internal_error("prompts are not ready", None));
        }
        let name = PromptArgument::new("name");
        let greet = Prompt::new("greet", Some("Greet someone by name"), Some(vec![name]));
        Ok(ListPromptsResult::with_all_items(vec![greet]))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if request.name != "greet" {
            return Err(ErrorData::invalid_params(
                format!("unknown prompt {}", request.name),
                None,
            ));
        }
        let name = request
            .arguments
            .as_ref()
            .and_then(|arguments| arguments.get("name"))
            .and_then(|value| value.as_str())
            .unwrap_or("stranger");
        let message = PromptMessage::new_text(Role::User, format!("Hello, {name}!"));
        Ok(GetPromptResult::new(vec![message]).into())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().mode {
        Mode::Stdio => serve_stdio().await,
        Mode::Http {
            listen,
            whoami,
            accept_tokens,
            trust_issuer,
            audience,
            fail_prompt_lists,
        } => {
            PROMPT_LISTS_TO_FAIL.store(fail_prompt_lists, Ordering::SeqCst);
            let trusted = trust_issuer
                .zip(audience)
                .map(|(issuer, audience)| Trusted { issuer, audience });
            serve_http(listen, whoami.map(Arc::from), accept_tokens, trusted).await
        }
    }
}

async fn serve_stdio() -> anyhow::Result<()> {
    // One stderr line per start, so supervisors' stderr tails show each launch.
    eprintln!("mcp-echo {}: serving stdio", std::process::id());
    let service = Echo::new(None).serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(())
}

/// Answers 401 unless the request's bearer token is listed in `accepted` (read per request).
async fn require_accepted_token(
    accepted: Arc<std::path::Path>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let listed = tokio::fs::read_to_string(&*accepted)
        .await
        .unwrap_or_default();
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if presented.is_some_and(|token| listed.lines().any(|line| line.trim() == token)) {
        return next.run(request).await;
    }
    axum::response::Response::builder()
        .status(axum::http::StatusCode::UNAUTHORIZED)
        .header(
            axum::http::header::WWW_AUTHENTICATE,
            "Bearer error=\"invalid_token\"",
        )
        .body(axum::body::Body::empty())
        .unwrap_or_default()
}

/// The issuer and audience `--trust-issuer` accepts tokens from.
#[derive(Debug)]
struct Trusted {
    issuer: String,
    audience: String,
}

/// Answers 401 unless the request carries a token `trusted`'s issuer signed for its audience;
/// otherwise passes the verified claims on to the tools.
async fn require_issued_token(
    trusted: Arc<Trusted>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_owned);
    match verify(&trusted, presented.as_deref()).await {
        Ok(claims) => {
            request.extensions_mut().insert(VerifiedClaims(claims));
            next.run(request).await
        }
        Err(why) => axum::response::Response::builder()
            .status(axum::http::StatusCode::UNAUTHORIZED)
            .header(
                axum::http::header::WWW_AUTHENTICATE,
                format!("Bearer error=\"invalid_token\", error_description=\"{why}\""),
            )
            .body(axum::body::Body::empty())
            .unwrap_or_default(),
    }
}

/// Verifies `token` against the issuer's current JWKS (fetched per request: a test peer).
async fn verify(trusted: &Trusted, token: Option<&str>) -> Result<serde_json::Value, String> {
    let token = token.ok_or("no bearer token")?;
    let header = jsonwebtoken::decode_header(token).map_err(|_| "not a JWT")?;
    let kid = header.kid.ok_or("no kid")?;
    let jwks_url = format!("{}/jwks.json", trusted.issuer.trim_end_matches('/'));
    let keys: jsonwebtoken::jwk::JwkSet = reqwest::get(&jwks_url)
        .await
        .map_err(|_| "JWKS unreachable")?
        .json()
        .await
        .map_err(|_| "JWKS unreadable")?;
    let jwk = keys.find(&kid).ok_or("unknown kid")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|_| "unusable key")?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[trusted.issuer.as_str()]);
    validation.set_audience(&[trusted.audience.as_str()]);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|error| format!("rejected: {:?}", error.kind()))
}

async fn serve_http(
    listen: SocketAddr,
    whoami: Option<Arc<str>>,
    accept_tokens: Option<std::path::PathBuf>,
    trusted: Option<Trusted>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .context("bind")?;
    let addr = listener.local_addr()?;
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_json_response(true);
    let echo = Echo::new(whoami);
    let service = StreamableHttpService::new(
        move || Ok(echo.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let mut router = axum::Router::new().nest_service("/mcp", service);
    if let Some(accepted) = accept_tokens {
        let accepted: Arc<std::path::Path> = Arc::from(accepted);
        router = router.layer(axum::middleware::from_fn(move |request, next| {
            require_accepted_token(Arc::clone(&accepted), request, next)
        }));
    }
    if let Some(trusted) = trusted {
        let trusted = Arc::new(trusted);
        router = router.layer(axum::middleware::from_fn(move |request, next| {
            require_issued_token(Arc::clone(&trusted), request, next)
        }));
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "http://{addr}/mcp")?;
    stdout.flush()?;
    drop(stdout);
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router).await?;
    Ok(())
}
