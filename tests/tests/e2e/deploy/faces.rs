//! The three HTTP faces (edge, authz, vault) started from the rendered gateway, each on its own
//! loopback listener, so a path can be asked of every service's real router.

use std::collections::BTreeMap;
use std::sync::Arc;

use authz_svc::{AuthorizationConfig, AuthzState, Issuer, ProtectedResource, StoreConfig};
use edge_svc::auth::JwksVerifier;
use edge_svc::config::HttpFace;
use edge_svc::http::ResourceAuth;
use edge_svc::spec::AuthMode;
use edge_svc::{Gateway, GatewaySpec};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::rendered::Rendered;

/// The three HTTP faces, each on its own loopback listener, built from the rendered gateway.
pub(super) struct Faces {
    base: BTreeMap<&'static str, String>,
    pub(super) face: HttpFace,
    pub(super) spec: GatewaySpec,
    pub(super) shutdown: CancellationToken,
    _data: tempfile::TempDir,
}

impl Faces {
    pub(super) async fn start(rendered: &Rendered) -> Self {
        let spec = rendered.gateway();
        // The chart's virtual servers as they are; their connectors point at a closed loopback
        // port instead, since nothing here may reach the cluster's MCP servers.
        let mut local = spec.clone();
        for connector in &mut local.connectors {
            if let Some(http) = &mut connector.http {
                http.url = "http://127.0.0.1:9/mcp".parse().expect("url");
            }
        }
        let face = HttpFace::new(rendered.origin.clone(), &[], &[], 1 << 20);
        let data = tempfile::tempdir().expect("data dir");
        let resources = protected(&spec)
            .map(|name| ProtectedResource {
                name: name.to_owned(),
                url: face.resource_url(name),
                scopes: Vec::new(),
            })
            .collect();
        let issuer = Issuer {
            issuer: rendered.origin.clone(),
            resources,
        };
        let store = StoreConfig::Sqlite {
            path: data.path().join("authz.db"),
        };
        let authz = AuthzState::open(AuthorizationConfig::default(), issuer, store)
            .await
            .expect("authorization server");
        let jwks = format!("{}/jwks.json", authz.issuer())
            .parse()
            .expect("jwks url");
        let auth = ResourceAuth {
            verifier: Arc::new(JwksVerifier::new(authz.issuer().to_owned(), jwks)),
            issuer: authz.issuer().to_owned(),
        };
        let mut vault_config = vault_svc::Config::default().with_data_dir(data.path());
        vault_config.http.public_url = rendered.origin.to_string();
        let vault = vault_svc::open(&vault_config, Arc::new(vault_svc::event::LogSink))
            .await
            .expect("vault");
        let shutdown = CancellationToken::new();
        let gateway = Gateway::start(&local, &shutdown).expect("gateway");
        let routers = [
            (
                "edge",
                edge_svc::http::router(&gateway, &face, Some(auth), &shutdown),
            ),
            ("authz", authz_svc::oauth_router(authz)),
            ("vault", vault_svc::http::router(vault)),
        ];
        let mut base = BTreeMap::new();
        for (component, router) in routers {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            base.insert(
                component,
                format!("http://{}", listener.local_addr().expect("addr")),
            );
            tokio::spawn(edge_svc::serve_router(router, listener, shutdown.clone()));
        }
        Self {
            base,
            face,
            spec,
            shutdown,
            _data: data,
        }
    }

    /// Returns the paths of edge's public URLs: each virtual server's MCP endpoint and, for an
    /// OAuth-protected one, its RFC 9728 metadata.
    pub(super) fn edge_paths(&self) -> Vec<String> {
        let mut urls = Vec::new();
        for server in &self.spec.virtual_servers {
            urls.push(self.face.resource_url(&server.name));
            if server.auth == AuthMode::Oauth {
                urls.push(self.face.resource_metadata_url(&server.name));
            }
        }
        urls.iter().map(|url| path_of(url)).collect()
    }

    pub(super) async fn status(&self, component: &str, path: &str) -> StatusCode {
        reqwest::get(format!("{}{path}", self.base[component]))
            .await
            .expect("request")
            .status()
    }

    pub(super) async fn json(&self, component: &str, path: &str) -> Value {
        let response = reqwest::get(format!("{}{path}", self.base[component]))
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "{component} {path}");
        response.json().await.expect("JSON")
    }
}

/// Returns the names of the virtual servers that require OAuth.
fn protected(spec: &GatewaySpec) -> impl Iterator<Item = &str> {
    spec.virtual_servers
        .iter()
        .filter(|server| server.auth == AuthMode::Oauth)
        .map(|server| server.name.as_str())
}

pub(super) fn path_of(url: &str) -> String {
    url::Url::parse(url).expect("URL").path().to_owned()
}
