//! The deployment artefacts against the code they deploy. The rendered Kubernetes manifests
//! (`deploy/k8s/`, rendered from the Helm chart by `deploy/render.sh`) must route every Ingress
//! path to the one service whose router serves it, route every endpoint the services advertise
//! back to them, and hand each service configuration and environment its binary accepts. The
//! compose trial's gateway file must be one `gatehouse up` accepts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use authz_svc::{AuthorizationConfig, AuthzState, Issuer, ProtectedResource, StoreConfig};
use edge_svc::auth::JwksVerifier;
use edge_svc::config::HttpFace;
use edge_svc::http::ResourceAuth;
use edge_svc::spec::AuthMode;
use edge_svc::{Gateway, GatewaySpec};
use figment::Jail;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/k8s/gatehouse.yaml");
const COMPOSE_GATEWAY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/compose/gatehouse.yaml"
);

/// The services that serve HTTP, by the `app.kubernetes.io/component` label the chart gives them.
const HTTP_COMPONENTS: [&str; 3] = ["edge", "authz", "vault"];

/// One path of the Ingress and the component its backend Service selects.
#[derive(Debug)]
struct Route {
    path: String,
    exact: bool,
    component: String,
}

/// What the tests read from the rendered manifests.
#[derive(Debug)]
struct Rendered {
    docs: Vec<Value>,
    routes: Vec<Route>,
    origin: url::Url,
}

impl Rendered {
    fn load() -> Self {
        let text = std::fs::read_to_string(MANIFESTS).expect("deploy/k8s/gatehouse.yaml");
        let docs: Vec<Value> = serde_norway::Deserializer::from_str(&text)
            .map(|document| Value::deserialize(document).expect("a YAML document"))
            .filter(|document| !document.is_null())
            .collect();
        let (routes, origin) = ingress(&docs);
        Self {
            docs,
            routes,
            origin,
        }
    }

    /// Returns the component the Ingress sends `path` to, by the Kubernetes Ingress rules: an
    /// Exact path wins, then the longest Prefix that matches whole path elements.
    fn component_for(&self, path: &str) -> Option<&str> {
        if let Some(route) = self
            .routes
            .iter()
            .find(|route| route.exact && route.path == path)
        {
            return Some(&route.component);
        }
        self.routes
            .iter()
            .filter(|route| !route.exact && prefix_matches(&route.path, path))
            .max_by_key(|route| route.path.len())
            .map(|route| route.component.as_str())
    }

    /// Returns the data of the rendered ConfigMap.
    fn config_file(&self, key: &str) -> String {
        let configmap = kinds(&self.docs, "ConfigMap").next().expect("a ConfigMap");
        str_at(configmap, &format!("/data/{key}")).to_owned()
    }

    fn gateway(&self) -> GatewaySpec {
        GatewaySpec::from_yaml(&self.config_file("gateway.yaml"), "gateway.yaml")
            .expect("the chart's gateway is one edge accepts")
    }

    /// Returns the environment of `component`'s container: names and whether a Secret fills it.
    fn environment(&self, component: &str) -> Vec<(String, bool)> {
        let deployment = kinds(&self.docs, "Deployment")
            .find(|deployment| {
                str_at(deployment, "/metadata/labels/app.kubernetes.io~1component") == component
            })
            .expect("the component's Deployment");
        deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .map(|env| {
                env.iter()
                    .map(|var| {
                        let from_secret = var.pointer("/valueFrom/secretKeyRef").is_some();
                        (str_at(var, "/name").to_owned(), from_secret)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Returns the Ingress's routes, each resolved to the component its Service selects, and the
/// public origin its host and TLS block make.
fn ingress(docs: &[Value]) -> (Vec<Route>, url::Url) {
    let component_of: BTreeMap<&str, &str> = kinds(docs, "Service")
        .map(|service| {
            (
                str_at(service, "/metadata/name"),
                str_at(service, "/spec/selector/app.kubernetes.io~1component"),
            )
        })
        .collect();
    let ingress = kinds(docs, "Ingress").next().expect("an Ingress");
    let rule = &ingress["spec"]["rules"][0];
    let routes = rule["http"]["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|path| Route {
            path: str_at(path, "/path").to_owned(),
            exact: str_at(path, "/pathType") == "Exact",
            component: component_of[str_at(path, "/backend/service/name")].to_owned(),
        })
        .collect();
    let scheme = if ingress["spec"]["tls"].is_array() {
        "https"
    } else {
        "http"
    };
    let origin = format!("{scheme}://{}", str_at(rule, "/host"))
        .parse()
        .expect("the Ingress host is a URL host");
    (routes, origin)
}

fn kinds<'a>(docs: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> {
    docs.iter().filter(move |doc| doc["kind"] == kind)
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} missing in {value}"))
}

/// Matches an Ingress Prefix path element-wise, as Kubernetes does (`/v` matches `/v/x`, not `/vx`).
fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix || path.starts_with(&format!("{prefix}/"))
}

/// The three HTTP faces, each on its own loopback listener, built from the rendered gateway.
struct Faces {
    base: BTreeMap<&'static str, String>,
    face: HttpFace,
    spec: GatewaySpec,
    shutdown: CancellationToken,
    _data: tempfile::TempDir,
}

impl Faces {
    async fn start(rendered: &Rendered) -> Self {
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
    fn edge_paths(&self) -> Vec<String> {
        let mut urls = Vec::new();
        for server in &self.spec.virtual_servers {
            urls.push(self.face.resource_url(&server.name));
            if server.auth == AuthMode::Oauth {
                urls.push(self.face.resource_metadata_url(&server.name));
            }
        }
        urls.iter().map(|url| path_of(url)).collect()
    }

    async fn status(&self, component: &str, path: &str) -> StatusCode {
        reqwest::get(format!("{}{path}", self.base[component]))
            .await
            .expect("request")
            .status()
    }

    async fn json(&self, component: &str, path: &str) -> Value {
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

fn path_of(url: &str) -> String {
    url::Url::parse(url).expect("URL").path().to_owned()
}

#[tokio::test]
async fn every_ingress_path_reaches_the_one_service_whose_router_serves_it() {
    let rendered = Rendered::load();
    let faces = Faces::start(&rendered).await;
    let edge_paths = faces.edge_paths();
    for route in &rendered.routes {
        let probes: Vec<String> = if route.exact {
            vec![route.path.clone()]
        } else {
            edge_paths
                .iter()
                .filter(|path| prefix_matches(&route.path, path))
                .cloned()
                .collect()
        };
        assert!(
            !probes.is_empty(),
            "Prefix {} matches no public path",
            route.path
        );
        for probe in &probes {
            for component in HTTP_COMPONENTS {
                let status = faces.status(component, probe).await;
                if component == route.component {
                    assert_ne!(
                        status,
                        StatusCode::NOT_FOUND,
                        "{component} does not serve {probe}"
                    );
                } else {
                    assert_eq!(
                        status,
                        StatusCode::NOT_FOUND,
                        "{component} also serves {probe}"
                    );
                }
            }
        }
    }
    faces.shutdown.cancel();
}

#[tokio::test]
async fn every_url_the_services_advertise_is_routed_back_to_them() {
    let rendered = Rendered::load();
    let faces = Faces::start(&rendered).await;
    let origin = rendered.origin.as_str().trim_end_matches('/');

    let metadata = faces
        .json("authz", "/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(metadata["issuer"], origin);
    let advertised: Vec<&str> = metadata
        .as_object()
        .expect("metadata object")
        .iter()
        .filter(|(key, _)| key.ends_with("_endpoint") || *key == "jwks_uri")
        .filter_map(|(_, url)| url.as_str())
        .collect();
    assert!(
        advertised.len() >= 5,
        "too few endpoints advertised: {metadata}"
    );
    for url in advertised {
        assert!(url.starts_with(origin), "{url} is not on the public origin");
        assert_eq!(
            rendered.component_for(&path_of(url)),
            Some("authz"),
            "{url}"
        );
    }
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        assert_eq!(rendered.component_for(path), Some("authz"), "{path}");
    }

    for server in &faces.spec.virtual_servers {
        let resource = faces.face.resource_url(&server.name);
        assert_eq!(rendered.component_for(&path_of(&resource)), Some("edge"));
        if server.auth == AuthMode::Oauth {
            let document = faces
                .json(
                    "edge",
                    &path_of(&faces.face.resource_metadata_url(&server.name)),
                )
                .await;
            assert_eq!(document["resource"], resource.as_str());
            assert_eq!(document["authorization_servers"][0], origin);
        }
    }

    let consent = vault_svc::ConsentIssuer::new(
        origin,
        std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(5),
    )
    .expect("consent issuer");
    assert_eq!(
        rendered.component_for(&path_of(&consent.redirect_uri())),
        Some("vault")
    );
    faces.shutdown.cancel();
}

/// Loads `component`'s configuration the way its binary does (`--config FILE` plus the
/// environment under its prefix), from the rendered file and with every variable its Deployment
/// sets filled in, inside a figment jail.
#[expect(
    clippy::result_large_err,
    reason = "figment's error is what every service's Config::load returns"
)]
fn load_as_deployed<T>(
    rendered: &Rendered,
    component: &str,
    prefix: &str,
    load: impl Fn(figment::Figment) -> Result<T, figment::Error>,
) -> T {
    let file = format!("{component}.toml");
    let text = rendered.config_file(&file);
    let environment = rendered.environment(component);
    let mut loaded = None;
    Jail::expect_with(|jail| {
        jail.create_file(&file, &text)?;
        for (name, from_secret) in &environment {
            assert!(
                from_secret,
                "{component}: {name} does not come from a Secret"
            );
            let value = if name.ends_with("POSTGRES_URL") {
                "postgres://gatehouse:placeholder@db:5432/gatehouse"
            } else if name.ends_with("REDIS_URL") {
                "redis://redis:6379"
            } else {
                "placeholder-secret"
            };
            jail.set_env(name, value);
        }
        loaded = Some(load(svc_kit::config_sources(
            prefix,
            Some(Path::new(&file)),
        ))?);
        Ok(())
    });
    loaded.expect("configuration loaded")
}

#[test]
#[expect(
    clippy::result_large_err,
    reason = "figment's error is what every service's Config::load returns"
)]
fn each_service_accepts_the_configuration_and_environment_its_deployment_gets() {
    let rendered = Rendered::load();
    let authz = load_as_deployed(
        &rendered,
        "authz",
        authz_svc::ENV_PREFIX,
        authz_svc::Config::load,
    );
    assert_eq!(authz.grpc.listen_addr.port(), 50051);

    let vault = load_as_deployed(
        &rendered,
        "vault",
        vault_svc::ENV_PREFIX,
        vault_svc::Config::load,
    );
    assert!(
        matches!(
            vault.store_location(),
            vault_svc::StoreLocation::Postgres(_)
        ),
        "vault-svc is not on PostgreSQL"
    );
    assert!(
        vault.refresh.redis_url.is_some(),
        "vault-svc's locks are not on Redis"
    );
    assert!(
        vault.callers.edge_token.is_some(),
        "edge has no vault service token"
    );
    let kek = vault
        .kek
        .env_var
        .as_deref()
        .expect("the keyring comes from the environment");
    assert!(
        rendered
            .environment("vault")
            .iter()
            .any(|(name, secret)| name == kek && *secret),
        "{kek} is not set from a Secret"
    );

    let audit = load_as_deployed(
        &rendered,
        "audit",
        audit_svc::ENV_PREFIX,
        audit_svc::Config::load,
    );
    assert!(
        matches!(
            audit.store_location(),
            audit_svc::StoreLocation::Postgres(_)
        ),
        "audit-svc is not on PostgreSQL"
    );

    let edge: edge_svc::Config =
        load_as_deployed(&rendered, "edge", edge_svc::config::ENV_PREFIX, |figment| {
            figment.extract()
        });
    assert_eq!(edge.public_url.as_ref(), Some(&rendered.origin));
    let audit_endpoint: url::Url = edge
        .audit
        .expect("edge records to audit-svc")
        .endpoint
        .parse()
        .expect("URL");
    let audit_service = kinds(&rendered.docs, "Service")
        .find(|service| str_at(service, "/spec/selector/app.kubernetes.io~1component") == "audit")
        .expect("audit Service");
    assert_eq!(
        audit_endpoint.host_str(),
        Some(str_at(audit_service, "/metadata/name"))
    );
    assert_eq!(
        audit_endpoint.port().map(u64::from),
        audit_service["spec"]["ports"][0]["port"].as_u64()
    );
}

#[test]
fn the_compose_trial_gateway_file_is_one_gatehouse_up_accepts() {
    #[derive(Deserialize)]
    struct AuthorizationSection {
        #[serde(default)]
        authorization: AuthorizationConfig,
    }
    let text = std::fs::read_to_string(COMPOSE_GATEWAY).expect("deploy/compose/gatehouse.yaml");
    GatewaySpec::from_yaml(&text, COMPOSE_GATEWAY).expect("edge accepts it");
    let section: AuthorizationSection = serde_norway::from_str(&text).expect("authz accepts it");
    assert_eq!(
        section.authorization.access_token_ttl,
        std::time::Duration::from_secs(600)
    );
}

#[tokio::test]
async fn gatehouse_up_behind_a_port_mapping_answers_for_its_public_url_only() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(&config, super::audit::spec_yaml()).expect("config");
    let public = "https://gatehouse.test";
    let (_child, mcp) =
        super::audit::gatehouse_up(&config, &dir.path().join("data"), &["--public-url", public])
            .await;
    let listener = mcp.trim_end_matches("/v/tools/mcp");
    let metadata: Value =
        reqwest::get(format!("{listener}/.well-known/oauth-authorization-server"))
            .await
            .expect("metadata")
            .json()
            .await
            .expect("JSON");
    assert_eq!(metadata["issuer"], public);

    let initialize = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "deploy-test", "version": "1"}}
    });
    let http = reqwest::Client::new();
    let send = |host: Option<&str>| {
        let mut request = http
            .post(&mcp)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(host) = host {
            request = request.header("host", host);
        }
        request.send()
    };
    let proxied = send(Some("gatehouse.test")).await.expect("request");
    assert_eq!(
        proxied.status(),
        StatusCode::OK,
        "the public host is refused"
    );
    let direct = send(None).await.expect("request");
    assert_eq!(
        direct.status(),
        StatusCode::FORBIDDEN,
        "the listener's own address is accepted as a Host"
    );
}
