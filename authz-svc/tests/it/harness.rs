//! A running authorization server on an ephemeral port, and an HTTP client that
//! does not follow redirects.

use std::collections::HashMap;
use std::net::SocketAddr;

use argon2::password_hash::{PasswordHasher as _, SaltString};
use authz_svc::{
    AuthorizationConfig, AuthzState, Issuer, MemberConfig, ProtectedResource, StoreConfig,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use svc_kit::callers::{PresentToken, SecretSetting};
use svc_kit::testing::TestServer;
use tokio_util::sync::CancellationToken;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use url::Url;

pub(crate) const RESOURCE: &str = "http://127.0.0.1:9/v/demo/mcp";
pub(crate) const OTHER_RESOURCE: &str = "http://127.0.0.1:9/v/other/mcp";
pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub(crate) const REDIRECT: &str = "http://127.0.0.1:4242/callback";
pub(crate) const MEMBER_PASSWORD: &str = "correct horse battery staple";

pub(crate) struct Harness {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) state: AuthzState,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

pub(crate) fn member(username: &str, password: &str) -> MemberConfig {
    let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0c2FsdA").unwrap();
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string();
    serde_json::from_value(
        json!({ "username": username, "password_hash": hash, "groups": ["staff"] }),
    )
    .unwrap()
}

pub(crate) fn test_config() -> AuthorizationConfig {
    AuthorizationConfig {
        auto_approve_consent: true,
        allow_insecure_http: true,
        allow_registered_agents: true,
        ..AuthorizationConfig::default()
    }
}

pub(crate) fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl Harness {
    pub(crate) async fn start() -> Self {
        Self::with_config(test_config()).await
    }

    pub(crate) async fn with_config(config: AuthorizationConfig) -> Self {
        Self::with_state(config, |state| state).await
    }

    /// Like [`Self::with_config`], serving the state `wrap` returns (listeners, purges).
    pub(crate) async fn with_state(
        mut config: AuthorizationConfig,
        wrap: impl FnOnce(AuthzState) -> AuthzState,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (listener, addr): (_, SocketAddr) = svc_kit::testing::bind_ephemeral().await;
        let base = format!("http://{addr}");
        config.master_key_file = Some(dir.path().join("authz.key"));
        // Without the dev opt-out the issuer must be https; the test still talks
        // plain http to the listener, which only the issuer string tells apart.
        let scheme = if config.allow_insecure_http {
            "http"
        } else {
            "https"
        };
        let issuer = Issuer {
            issuer: Url::parse(&format!("{scheme}://{addr}")).unwrap(),
            resources: vec![
                ProtectedResource {
                    name: "demo".to_owned(),
                    url: RESOURCE.to_owned(),
                    scopes: vec!["tools".to_owned(), "admin".to_owned()],
                },
                ProtectedResource {
                    name: "other".to_owned(),
                    url: OTHER_RESOURCE.to_owned(),
                    scopes: vec!["tools".to_owned()],
                },
            ],
        };
        let store = StoreConfig::Sqlite {
            path: dir.path().join("authz.db"),
        };
        let state = wrap(AuthzState::open(config, issuer, store).await.unwrap());
        let shutdown = CancellationToken::new();
        let router =
            authz_svc::oauth_router(state.clone()).merge(authz_svc::scim_router(state.clone()));
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            base,
            http,
            state,
            shutdown,
            _dir: dir,
        }
    }

    /// Returns the directory holding the SQLite store and the master key file.
    pub(crate) fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn register(&self, metadata: Value) -> Value {
        let response = self
            .http
            .post(self.url("/register"))
            .json(&metadata)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        response.json().await.unwrap()
    }

    /// Registers a public native client with the test redirect URI.
    pub(crate) async fn public_client(&self) -> String {
        let client = self
            .register(json!({
                "redirect_uris": [REDIRECT],
                "client_name": "Test App",
                "token_endpoint_auth_method": "none",
                "application_type": "native",
                "grant_types": ["authorization_code", "refresh_token"],
            }))
            .await;
        client["client_id"].as_str().unwrap().to_owned()
    }

    /// Registers a confidential client allowed every grant; returns (id, secret).
    pub(crate) async fn confidential_client(&self, method: &str) -> (String, String) {
        let client = self
            .register(json!({
                "redirect_uris": [REDIRECT],
                "client_name": "Agent",
                "token_endpoint_auth_method": method,
                "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            }))
            .await;
        (
            client["client_id"].as_str().unwrap().to_owned(),
            client["client_secret"].as_str().unwrap().to_owned(),
        )
    }

    pub(crate) fn authorize_params(&self, client_id: &str) -> Vec<(&'static str, String)> {
        vec![
            ("response_type", "code".to_owned()),
            ("client_id", client_id.to_owned()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("state", "xyz-state".to_owned()),
            ("code_challenge", challenge(VERIFIER)),
            ("code_challenge_method", "S256".to_owned()),
            ("resource", RESOURCE.to_owned()),
            ("scope", "tools".to_owned()),
        ]
    }

    pub(crate) async fn authorize(&self, params: &[(&str, String)]) -> reqwest::Response {
        let query = serde_urlencoded::to_string(params).unwrap();
        self.http
            .get(self.url(&format!("/authorize?{query}")))
            .send()
            .await
            .unwrap()
    }

    /// Runs an auto-approved authorization and returns the code.
    pub(crate) async fn code_for(&self, client_id: &str) -> String {
        let response = self.authorize(&self.authorize_params(client_id)).await;
        let query = redirect_query(&response);
        query
            .get("code")
            .cloned()
            .unwrap_or_else(|| panic!("no code: {query:?}"))
    }

    pub(crate) async fn post_form(
        &self,
        path: &str,
        params: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(self.url(path))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(params).unwrap());
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        request.send().await.unwrap()
    }

    pub(crate) async fn redeem(
        &self,
        client_id: &str,
        code: &str,
        verifier: &str,
    ) -> reqwest::Response {
        self.post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", verifier),
                ("client_id", client_id),
                ("redirect_uri", REDIRECT),
                ("resource", RESOURCE),
            ],
            None,
        )
        .await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Returns the query parameters of a 303's `Location`.
pub(crate) fn redirect_query(response: &reqwest::Response) -> HashMap<String, String> {
    assert_eq!(response.status(), 303, "expected a redirect");
    let location = response.headers().get(LOCATION).unwrap().to_str().unwrap();
    let url = Url::parse(location).unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    url.query_pairs().into_owned().collect()
}

/// Asserts an RFC 6749 error body and returns it.
pub(crate) async fn oauth_error(response: reqwest::Response, status: u16, error: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    body
}

/// Returns the service token edge-svc presents in these tests.
pub(crate) fn edge_token() -> SecretSetting {
    SecretSetting::from("edge-caller-token-".repeat(2))
}

/// Returns the service token administrators present in these tests.
pub(crate) fn admin_token() -> SecretSetting {
    SecretSetting::from("admin-caller-token-".repeat(2))
}

/// Is a gRPC channel presenting a service token (or none).
pub(crate) type Caller = InterceptedService<Channel, PresentToken>;

/// Serves authz-svc's gRPC API over `state`, admitting the test edge and admin tokens.
pub(crate) async fn serve_grpc(state: AuthzState) -> TestServer {
    svc_kit::testing::init_test_tracing();
    let mut config = authz_svc::Config::default();
    config.callers.edge_token = Some(edge_token());
    config.callers.admin_token = Some(admin_token());
    let policies = authz_svc::PolicyStore::new(&authz_svc::PolicyConfig::default()).unwrap();
    TestServer::start(move |listener, shutdown| async move {
        authz_svc::serve_with(&config, policies, state, listener, shutdown).await
    })
    .await
}

/// Returns a channel to `server` presenting `token`.
pub(crate) fn caller(server: &TestServer, token: Option<&SecretSetting>) -> Caller {
    let channel =
        svc_kit::grpc::channel(&server.url(), &svc_kit::GrpcClientConfig::default()).unwrap();
    InterceptedService::new(channel, PresentToken::new(token).unwrap())
}

/// Records the audit events handed to it.
#[derive(Debug, Default)]
pub(crate) struct AuditCapture(pub(crate) std::sync::Mutex<Vec<proto::audit::v1::AuditEvent>>);

impl authz_svc::AuditSink for AuditCapture {
    fn record(&self, event: proto::audit::v1::AuditEvent) -> Result<(), String> {
        self.0.lock().unwrap().push(event);
        Ok(())
    }
}
