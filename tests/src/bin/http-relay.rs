//! `http-relay`: the floor a gateway's data plane can reach on this box.
//!
//! `http-relay --upstream http://ADDR/mcp` serves `POST /v/{name}/mcp` by passing the request
//! body and its MCP headers to the upstream and the reply back, byte for byte, over the same
//! HTTP stacks edge uses (axum server, pooled reqwest client, `TCP_NODELAY` on both sides). It
//! parses no JSON-RPC, keeps no session and records nothing, so `bench/floor.sh` can tell how
//! much of edge's cost per call is the extra HTTP hop and how much is everything above it.
//! It prints `http://ADDR/v/bench/mcp` as its first stdout line.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Byte pass-through of MCP POSTs: the HTTP hop alone, for benchmarks")]
struct Cli {
    /// The MCP endpoint every request is passed to.
    #[arg(long)]
    upstream: String,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

/// The upstream and the pooled client that reaches it.
#[derive(Debug, Clone)]
struct Upstream {
    client: reqwest::Client,
    url: String,
}

/// Says whether a header travels through the relay: the body's type, what the client accepts,
/// and the MCP transport's own headers (protocol version, session, method, name).
fn relayed(name: &HeaderName) -> bool {
    let name = name.as_str();
    name == "content-type" || name == "accept" || name.starts_with("mcp-")
}

async fn relay(State(upstream): State<Upstream>, headers: HeaderMap, body: Bytes) -> Response {
    let mut request = upstream.client.post(&upstream.url).body(body);
    for (name, value) in headers.iter().filter(|(name, _)| relayed(name)) {
        request = request.header(name, value);
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let status = answer.status();
    let mut back = HeaderMap::new();
    for (name, value) in answer.headers().iter().filter(|(name, _)| relayed(name)) {
        back.insert(name, value.clone());
    }
    match answer.bytes().await {
        Ok(body) => (status, back, body).into_response(),
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .context("building the upstream client")?;
    let router = Router::new()
        .route("/v/{name}/mcp", post(relay))
        .with_state(Upstream {
            client,
            url: cli.upstream,
        });
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let addr = listener.local_addr()?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "http://{addr}/v/bench/mcp")?;
    stdout.flush()?;
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router).await?;
    Ok(())
}
