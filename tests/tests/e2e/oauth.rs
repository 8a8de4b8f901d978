//! Gatehouse as an OAuth-protected MCP server: its own authorization server issues a token for
//! one virtual server through the authorization-code flow, and edge accepts it there only.

use std::sync::Arc;

use authz_svc::{AuthorizationConfig, AuthzState, Issuer, ProtectedResource, StoreConfig};
use edge_svc::auth::{JwksVerifier, Revocations};
use edge_svc::config::HttpFace;
use edge_svc::http::ResourceAuth;
use edge_svc::{Gateway, GatewaySpec};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const ECHO: &str = env!("CARGO_BIN_EXE_mcp-echo");
const VERIFIER: &str = "pkce-verifier-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEF";
/// BASE64URL(SHA256(VERIFIER)), computed once with openssl.
const CHALLENGE: &str = "28djaMl0uObRimedfV6yyCsXAKfXuh07Fck65KYoJwE";
const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// Is a running protected gateway and its data directory.
pub(super) struct Protected {
    pub(super) origin: String,
    pub(super) shutdown: CancellationToken,
    _data: tempfile::TempDir,
}

pub(super) async fn start() -> Protected {
    start_with(
        edge_svc::audit::Recorder::disabled(),
        edge_svc::access::Access::unrestricted(),
    )
    .await
}

/// Starts the protected gateway recording its calls through `recorder` and enforcing `access`.
pub(super) async fn start_with(
    recorder: edge_svc::audit::Recorder,
    access: edge_svc::access::Access,
) -> Protected {
    start_limited(recorder, access, edge_svc::quota::Quotas::unlimited()).await
}

/// Like [`start_with`], also charging every call to the rate limits of `quotas`.
pub(super) async fn start_limited(
    recorder: edge_svc::audit::Recorder,
    access: edge_svc::access::Access,
    quotas: edge_svc::quota::Quotas,
) -> Protected {
    let dir = std::path::Path::new(ECHO)
        .parent()
        .expect("binary dir")
        .display()
        .to_string();
    let local = format!("stdio: {{command: \"{ECHO}\", args: [stdio], paths: [\"{dir}\"]}}");
    start_over(&local, recorder, access, quotas).await
}

/// Like [`start_with`], with `mcp-echo` reached over streamable HTTP at `url`: plain
/// 2026-07-28 calls then take edge's direct line instead of rmcp's client.
pub(super) async fn start_over_http(
    url: &str,
    recorder: edge_svc::audit::Recorder,
    access: edge_svc::access::Access,
) -> Protected {
    let local = format!("http: {{url: \"{url}\"}}");
    start_over(
        &local,
        recorder,
        access,
        edge_svc::quota::Quotas::unlimited(),
    )
    .await
}

/// Starts the protected gateway whose connector `local` is reached as `transport` (YAML flow).
async fn start_over(
    transport: &str,
    recorder: edge_svc::audit::Recorder,
    access: edge_svc::access::Access,
    quotas: edge_svc::quota::Quotas,
) -> Protected {
    let yaml = format!(
        "connectors:\n  - name: local\n    {transport}\n\
         virtual_servers:\n  - name: crm\n    connectors: [{{connector: local, prefix: \"\"}}]\n\
         \x20 - name: hr\n    connectors: [{{connector: local, prefix: \"\"}}]\n"
    );
    let spec = GatewaySpec::from_yaml(&yaml, "oauth.yaml").expect("spec");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let face = HttpFace::new(origin.parse().expect("url"), &[], &[], 1 << 20);
    let data = tempfile::tempdir().expect("data dir");
    let config = AuthorizationConfig {
        auto_approve_consent: true,
        allow_insecure_http: true,
        ..Default::default()
    };
    let resources = ["crm", "hr"].map(|name| ProtectedResource {
        name: name.to_owned(),
        url: face.resource_url(name),
        scopes: access.scopes_supported(name),
    });
    let issuer = Issuer {
        issuer: face.public_url.clone(),
        resources: resources.to_vec(),
    };
    let store = StoreConfig::Sqlite {
        path: data.path().join("authz.db"),
    };
    let revocations = Revocations::default();
    let state = AuthzState::open(config, issuer, store)
        .await
        .expect("authorization server")
        .with_audit(Arc::new(SpooledAudit(recorder.clone())))
        .with_revocation_listener(Arc::new(RevocationFeed(revocations.clone())));
    let shutdown = CancellationToken::new();
    // As `gatehouse up` does: changes made on the store by the CLI reach this edge.
    let _follower = state.follow_revocations(shutdown.child_token());
    let jwks = format!("{}/jwks.json", state.issuer())
        .parse()
        .expect("jwks url");
    let auth = ResourceAuth {
        verifier: revocations.guard(Arc::new(JwksVerifier::new(state.issuer().to_owned(), jwks))),
        issuer: state.issuer().to_owned(),
    };
    let gateway = Gateway::start(&spec, &shutdown)
        .expect("gateway")
        .with_audit(recorder)
        .with_access(access)
        .with_quotas(quotas);
    let router = edge_svc::http::router(&gateway, &face, Some(auth), &shutdown)
        .merge(authz_svc::oauth_router(state));
    tokio::spawn(edge_svc::serve_router(router, listener, shutdown.clone()));
    Protected {
        origin,
        shutdown,
        _data: data,
    }
}

/// Hands the authorization server's token events to edge's spool, as `gatehouse up` does.
#[derive(Debug)]
struct SpooledAudit(edge_svc::audit::Recorder);

impl authz_svc::AuditSink for SpooledAudit {
    fn record(&self, event: proto::audit::v1::AuditEvent) -> Result<(), String> {
        self.0
            .record_event(event)
            .map_err(|error| error.to_string())
    }
}

/// Carries the authorization server's revocations to edge at once, as `gatehouse up` does.
#[derive(Debug)]
struct RevocationFeed(Revocations);

impl authz_svc::RevocationListener for RevocationFeed {
    fn token_revoked(&self, jti: &str, expires_at: i64) {
        self.0
            .revoke_token(jti, u64::try_from(expires_at).unwrap_or(0));
    }

    fn grant_revoked(&self, grant_id: &str) {
        self.0.revoke_grant(grant_id);
    }

    fn agent_revoked(&self, client_id: &str, expires_at: i64) {
        self.0
            .revoke_agent(client_id, u64::try_from(expires_at).unwrap_or(0));
    }

    fn member_revoked(&self, member_id: &str, revoked_at: i64, expires_at: i64) {
        self.0.revoke_member(
            member_id,
            u64::try_from(revoked_at).unwrap_or(0),
            u64::try_from(expires_at).unwrap_or(0),
        );
    }
}

impl Protected {
    /// Returns the data directory holding the authorization store, as `gatehouse agents --data` takes it.
    pub(super) fn data_dir(&self) -> &std::path::Path {
        self._data.path()
    }
}

/// Returns the access token `client_id` gets for `resource` with client credentials
/// (`client_secret_basic`) at the authorization server on `origin`.
pub(super) async fn client_credentials(
    origin: &str,
    client_id: &str,
    secret: &str,
    resource: &str,
) -> String {
    let response = reqwest::Client::new()
        .post(format!("{origin}/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("resource", resource)])
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("token json");
    body["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

/// Runs registration, the (auto-approved) authorization request and the code exchange for `resource`.
pub(super) async fn token_for(origin: &str, resource: &str) -> String {
    grant_for(origin, resource).await.0
}

/// Like [`token_for`], also returning the public client's id and its refresh token.
pub(super) async fn grant_for(origin: &str, resource: &str) -> (String, String, String) {
    grant_with_scope(origin, resource, None).await
}

/// Like [`grant_for`], asking for `scope` (the resource's declared scopes when `None`).
pub(super) async fn grant_with_scope(
    origin: &str,
    resource: &str,
    scope: Option<&str>,
) -> (String, String, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let registration: Value = http
        .post(format!("{origin}/register"))
        .json(&json!({"redirect_uris": [REDIRECT], "client_name": "e2e", "token_endpoint_auth_method": "none",
                      "application_type": "native", "grant_types": ["authorization_code"]}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("registration json");
    let client_id = registration["client_id"]
        .as_str()
        .expect("client_id")
        .to_owned();
    let mut query = vec![
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("state", "s1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("resource", resource),
    ];
    if let Some(scope) = scope {
        query.push(("scope", scope));
    }
    let authorize = http
        .get(format!("{origin}/authorize"))
        .query(&query)
        .send()
        .await
        .expect("authorize");
    assert!(
        authorize.status().is_redirection(),
        "{}",
        authorize.status()
    );
    let location: url::Url = authorize.headers()["location"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("location");
    let params: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(
        params.get("iss").map(String::as_str),
        Some(origin),
        "RFC 9207 iss"
    );
    assert_eq!(params.get("state").map(String::as_str), Some("s1"));
    let token: Value = http
        .post(format!("{origin}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &params["code"]),
            ("redirect_uri", REDIRECT),
            ("client_id", &client_id),
            ("code_verifier", VERIFIER),
            ("resource", resource),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    let field = |name: &str| token[name].as_str().expect(name).to_owned();
    (field("access_token"), client_id, field("refresh_token"))
}

/// Revokes `token` at the authorization server as the public client `client_id` (RFC 7009).
async fn revoke(origin: &str, client_id: &str, token: &str) {
    let response = reqwest::Client::new()
        .post(format!("{origin}/revoke"))
        .form(&[("token", token), ("client_id", client_id)])
        .send()
        .await
        .expect("revoke");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_or_grant_is_refused_at_edge_at_once() {
    let gateway = start().await;
    let crm = format!("{}/v/crm/mcp", gateway.origin);

    let (token, client_id, _) = grant_for(&gateway.origin, &crm).await;
    assert_eq!(call_echo(&crm, &token).await.status(), StatusCode::OK);
    revoke(&gateway.origin, &client_id, &token).await;
    let refused = call_echo(&crm, &token).await;
    assert_eq!(
        refused.status(),
        StatusCode::UNAUTHORIZED,
        "the access token itself"
    );

    let (token, client_id, refresh) = grant_for(&gateway.origin, &crm).await;
    assert_eq!(call_echo(&crm, &token).await.status(), StatusCode::OK);
    revoke(&gateway.origin, &client_id, &refresh).await;
    let refused = call_echo(&crm, &token).await;
    assert_eq!(
        refused.status(),
        StatusCode::UNAUTHORIZED,
        "an access token of a revoked grant"
    );
    gateway.shutdown.cancel();
}

pub(super) async fn call_echo(url: &str, token: &str) -> reqwest::Response {
    call_tool(url, token, "echo", json!({"text": "through oauth"})).await
}

/// Calls `tool` statelessly (2026-07-28) with a bearer token.
pub(super) async fn call_tool(
    url: &str,
    token: &str,
    tool: &str,
    arguments: Value,
) -> reqwest::Response {
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {},
                      "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"}});
    reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": tool, "arguments": arguments, "_meta": meta}}))
        .send()
        .await
        .expect("call")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_one_virtual_server_works_there_and_nowhere_else() {
    let gateway = start().await;
    let crm = format!("{}/v/crm/mcp", gateway.origin);
    let metadata: Value = reqwest::get(format!(
        "{}/.well-known/oauth-protected-resource/v/crm/mcp",
        gateway.origin
    ))
    .await
    .expect("prm")
    .json()
    .await
    .expect("prm json");
    assert_eq!(metadata["resource"], json!(crm));
    assert_eq!(metadata["authorization_servers"], json!([gateway.origin]));

    let token = token_for(&gateway.origin, &crm).await;
    let accepted = call_echo(&crm, &token).await;
    assert_eq!(accepted.status(), StatusCode::OK);
    let body = accepted.text().await.expect("body");
    assert!(body.contains("through oauth"), "{body}");

    let elsewhere = call_echo(&format!("{}/v/hr/mcp", gateway.origin), &token).await;
    assert_eq!(elsewhere.status(), StatusCode::UNAUTHORIZED);
    let challenge = elsewhere.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(challenge.contains("another resource"), "{challenge}");
    assert!(!challenge.contains(&token), "the token is never echoed");

    let forged = format!("{}x", &token[..token.len() - 1]);
    assert_eq!(
        call_echo(&crm, &forged).await.status(),
        StatusCode::UNAUTHORIZED,
        "a tampered signature is refused"
    );
    gateway.shutdown.cancel();
}
