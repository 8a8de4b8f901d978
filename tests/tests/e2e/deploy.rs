//! The deployment artefacts against the code they deploy. The rendered Kubernetes manifests
//! (`deploy/k8s/`, rendered from the Helm chart by `deploy/render.sh`) must route every Ingress
//! path to the one service whose router serves it, route every endpoint the services advertise
//! back to them, and hand each service configuration and environment its binary accepts. The
//! compose trial's gateway file must be one `gatehouse up` accepts.

use std::path::Path;

use authz_svc::AuthorizationConfig;
use edge_svc::GatewaySpec;
use edge_svc::spec::AuthMode;
use figment::Jail;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use faces::{Faces, path_of};
use rendered::{Rendered, kinds, prefix_matches, str_at};

mod faces;
mod rendered;

const COMPOSE_GATEWAY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/compose/gatehouse.yaml"
);

/// The services that serve HTTP, by the `app.kubernetes.io/component` label the chart gives them.
const HTTP_COMPONENTS: [&str; 3] = ["edge", "authz", "vault"];

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
                // As long as a real service token must be.
                "placeholder-secret-as-long-as-a-service-token"
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
    assert!(
        audit.callers.edge_token.is_some() && audit.callers.auditor_token.is_some(),
        "audit-svc admits neither edge nor auditors"
    );

    let edge: edge_svc::Config =
        load_as_deployed(&rendered, "edge", edge_svc::config::ENV_PREFIX, |figment| {
            figment.extract()
        });
    assert_eq!(edge.public_url.as_ref(), Some(&rendered.origin));
    let edge_audit = edge.audit.expect("edge records to audit-svc");
    assert!(
        edge_audit.token.is_some(),
        "edge presents no service token to audit-svc"
    );
    let audit_endpoint: url::Url = edge_audit.endpoint.parse().expect("URL");
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
