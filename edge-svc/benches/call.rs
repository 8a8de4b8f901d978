//! What policy, rate limits and DLP cost a whole `tools/call` through edge, in one run: the same
//! OAuth-protected gateway, the same token, the same in-process rmcp downstream, with the three
//! off (`off`: no policy, no rate limits, no DLP rules) and on (`on`: a Cedar policy set with
//! argument constraints and scopes, two rate-limit rules charged on every call, DLP blocking SSNs
//! in the input and masking cards in the output). Everything is on loopback; one client sends one
//! call at a time (C = 1) to each gateway in turn, in the same process and run, so that the
//! difference of the means is what the features add to a call and their ratio is the throughput
//! ratio at C = 1.
//!
//! After criterion's two means, 5,000 (`PAIRS`) calls to each gateway, alternating, give the
//! medians and the ratio with load from elsewhere on the machine falling on both alike.
//!
//! `cargo bench -p edge-svc --bench call`.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edge_svc::access::Access;
use edge_svc::auth::JwksVerifier;
use edge_svc::config::HttpFace;
use edge_svc::http::ResourceAuth;
use edge_svc::quota::Quotas;
use edge_svc::{Gateway, GatewaySpec};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::EncodePrivateKey as _;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const KID: &str = "bench-key";

/// The policies of the `on` gateway: grants by role and group, a forbid on write tools for
/// agents, a time window on another connector, plus the constraint compiled for `echo`.
const POLICIES: &str = r#"
@id("staff-use-bench") permit (principal in Role::"staff", action, resource in VirtualServer::"bench");
@id("readers-call") permit (principal in Group::"readers", action == Action::"call_tool", resource in VirtualServer::"bench") when { resource has read_only && resource.read_only };
@id("no-destructive-agents") forbid (principal is Agent, action == Action::"call_tool", resource) when { resource has destructive && resource.destructive };
@id("db-hours") @reason("outside_time_window") forbid (principal, action == Action::"call_tool", resource in Connector::"db") unless { context.time.toTime() >= duration("7h") && context.time.toTime() < duration("19h") };
"#;

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct EchoParams {
    text: String,
}

/// The downstream: one `echo` tool, served in process over streamable HTTP.
#[derive(Debug, Clone)]
struct Echo {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Echo {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Return the text unchanged")]
    fn echo(&self, Parameters(params): Parameters<EchoParams>) -> String {
        params.text
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

async fn serve_downstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_json_response(true);
    let service = StreamableHttpService::new(
        || Ok(Echo::new()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/mcp")
}

struct Keys {
    encoding: EncodingKey,
    jwks: Value,
}

fn keys() -> Keys {
    let secret = loop {
        let mut seed = [0_u8; 32];
        getrandom::fill(&mut seed).unwrap();
        if let Ok(secret) = p256::SecretKey::from_slice(&seed) {
            break secret;
        }
    };
    let der = secret.to_pkcs8_der().unwrap();
    let point = secret.public_key().to_encoded_point(false);
    let x = URL_SAFE_NO_PAD.encode(point.x().unwrap());
    let y = URL_SAFE_NO_PAD.encode(point.y().unwrap());
    Keys {
        encoding: EncodingKey::from_ec_der(der.as_bytes()),
        jwks: json!({"keys": [{"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": KID,
                               "alg": "ES256", "use": "sig"}]}),
    }
}

/// Serves the key set on loopback and returns its URL.
async fn serve_jwks(jwks: Value) -> url::Url {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/jwks").parse().unwrap()
}

fn token(keys: &Keys, issuer: &str, resource: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some(KID.to_owned());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": issuer, "sub": "member-0193", "aud": resource,
                        "client_id": "claude-desktop", "scope": "bench:call",
                        "jti": "jti-call-bench", "iat": now, "exp": now + 3600,
                        "groups": ["readers"], "roles": ["staff"]});
    jsonwebtoken::encode(&header, &claims, &keys.encoding).unwrap()
}

fn spec(downstream: &str, guarded: bool) -> GatewaySpec {
    let mut yaml = format!(
        "connectors:\n  - name: local\n    http: {{url: \"{downstream}\"}}\n\
         virtual_servers:\n  - name: bench\n    connectors: [{{connector: local, prefix: \"\"}}]\n"
    );
    if guarded {
        yaml.push_str(
            "rate_limits:\n  rules:\n\
             \x20   - {name: per-member, per: member, rate: 1000000/second, burst: 1000000}\n\
             \x20   - {name: per-tool, per: virtual_server, tool: echo, rate: 1000000/second, burst: 1000000}\n\
             dlp:\n  rules:\n\
             \x20   - virtual_server: bench\n\
             \x20     input: {action: block, detectors: [ssn]}\n\
             \x20     output: {action: mask, detectors: [card]}\n",
        );
    }
    GatewaySpec::from_yaml(&yaml, "call-bench.yaml").unwrap()
}

fn access() -> Access {
    let mut document = policy::PolicyDocument::default();
    document.add_cedar("bench", POLICIES, policy::PolicyOrigin::Config);
    let server: policy::VirtualServerPolicy = serde_json::from_value(json!({
        "constraints": {"echo": {"text": {"max_length": 4096}}},
        "scopes": {"bench:call": ["echo"]}
    }))
    .unwrap();
    document.virtual_servers.insert("bench".to_owned(), server);
    let evaluator = policy::Evaluator::build(&document, 1, SystemTime::now()).unwrap();
    // A receiver keeps the last snapshot when its sender is gone: this one never changes.
    let (_sender, receiver) = watch::channel(Arc::new(evaluator));
    Access::live(receiver)
}

/// Starts one gateway and returns its MCP URL and a token for it.
async fn gateway(keys: &Keys, jwks: url::Url, downstream: &str, guarded: bool) -> (String, String) {
    let shutdown = CancellationToken::new();
    let spec = spec(downstream, guarded);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let face = HttpFace::new(origin.parse().unwrap(), &[], &[], 1 << 20);
    let issuer = "http://127.0.0.1/issuer".to_owned();
    let auth = ResourceAuth {
        verifier: Arc::new(JwksVerifier::new(issuer.clone(), jwks)),
        issuer: issuer.clone(),
    };
    let mut gateway = Gateway::start(&spec, &shutdown).unwrap();
    if guarded {
        let quotas = Quotas::open(&spec.rate_limits).await.unwrap();
        gateway = gateway.with_access(access()).with_quotas(quotas);
    }
    let resource = face.resource_url("bench");
    tokio::spawn(edge_svc::serve(
        gateway,
        face,
        Some(auth),
        listener,
        shutdown,
    ));
    (resource.clone(), token(keys, &issuer, &resource))
}

/// Calls `echo` statelessly (2026-07-28) and checks the echoed text.
async fn call(http: &reqwest::Client, url: &str, token: &str) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "echo", "arguments": {"text": "renewal for ACC-0042, region eu-west-1"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {},
                  "io.modelcontextprotocol/clientInfo": {"name": "call-bench", "version": "1"}}}});
    let reply: Value = http
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        reply["result"]["content"][0]["text"], "renewal for ACC-0042, region eu-west-1",
        "{reply}"
    );
}

fn calls(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let keys = keys();
    let (off, on) = runtime.block_on(async {
        let downstream = serve_downstream().await;
        let jwks = serve_jwks(keys.jwks.clone()).await;
        let off = gateway(&keys, jwks.clone(), &downstream, false).await;
        let on = gateway(&keys, jwks, &downstream, true).await;
        (off, on)
    });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .build()
        .unwrap();
    // Both answer before measuring (and the token is cached at each edge from here on).
    runtime.block_on(call(&http, &off.0, &off.1));
    runtime.block_on(call(&http, &on.0, &on.1));

    let mut group = c.benchmark_group("tools/call through edge (C = 1)");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(10));
    for (label, (url, token)) in [
        ("policy + rate limits + DLP off", &off),
        ("policy + rate limits + DLP on", &on),
    ] {
        group.bench_function(label, |b| {
            b.to_async(&runtime).iter(|| call(&http, url, token));
        });
    }
    group.finish();
    interleaved(&runtime, &http, &off, &on);
}

/// Times single calls to the two gateways alternately, so that load from elsewhere on the machine
/// falls on both alike, and prints their medians, 99th percentiles and the ratio of the medians.
fn interleaved(
    runtime: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    off: &(String, String),
    on: &(String, String),
) {
    let pairs: u64 = std::env::var("PAIRS")
        .map(|count| count.parse().expect("PAIRS is a count"))
        .unwrap_or(5_000);
    let mut histograms = [
        hdrhistogram::Histogram::<u64>::new(3).unwrap(),
        hdrhistogram::Histogram::<u64>::new(3).unwrap(),
    ];
    runtime.block_on(async {
        for _ in 0..pairs {
            for (histogram, (url, token)) in histograms.iter_mut().zip([off, on]) {
                let start = std::time::Instant::now();
                call(http, url, token).await;
                histogram
                    .record(u64::try_from(start.elapsed().as_micros()).unwrap())
                    .unwrap();
            }
        }
    });
    let [off, on] = histograms;
    eprintln!(
        "interleaved, {pairs} calls each: off p50 {} µs p99 {} µs; on p50 {} µs p99 {} µs; \
         added p50 {} µs; throughput on/off at C = 1 (ratio of medians) {:.3}",
        off.value_at_quantile(0.5),
        off.value_at_quantile(0.99),
        on.value_at_quantile(0.5),
        on.value_at_quantile(0.99),
        on.value_at_quantile(0.5)
            .saturating_sub(off.value_at_quantile(0.5)),
        off.value_at_quantile(0.5) as f64 / on.value_at_quantile(0.5) as f64,
    );
}

criterion_group!(benches, calls);
criterion_main!(benches);
