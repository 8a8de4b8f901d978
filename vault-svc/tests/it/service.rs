//! The gRPC service end to end: caller identification, write-only shared
//! credentials, consent, revocation, listing and health.

use proto::common::v1 as common;
use proto::vault::v1 as pb;
use proto::vault::v1::vault_client::VaultClient;
use svc_kit::GrpcClientConfig;
use svc_kit::testing::{TestServer, init_test_tracing};
use tonic::transport::Channel;
use vault_svc::{CallersConfig, Config, SERVICE_TOKEN_METADATA, Vault};

use crate::backend::Backend;
use crate::fixture;

pub(crate) const EDGE: &str = "edge-service-token-0123456789";
pub(crate) const AUTHZ: &str = "authz-service-token-0123456789";
pub(crate) const ADMIN: &str = "admin-service-token-0123456789";

/// Returns a config admitting the three test callers, refresh off.
pub(crate) fn config() -> Config {
    let mut config = Config {
        callers: CallersConfig {
            edge_token: Some(EDGE.to_owned().into()),
            authz_token: Some(AUTHZ.to_owned().into()),
            admin_token: Some(ADMIN.to_owned().into()),
        },
        ..Config::default()
    };
    config.refresh.enabled = false;
    config
}

pub(crate) async fn start(vault: Vault, config: Config) -> (TestServer, VaultClient<Channel>) {
    init_test_tracing();
    let server = TestServer::start(move |listener, shutdown| async move {
        vault_svc::serve_vault(vault, &config, listener, shutdown).await
    })
    .await;
    let channel = svc_kit::grpc::channel(&server.url(), &GrpcClientConfig::default()).unwrap();
    (server, VaultClient::new(channel))
}

pub(crate) fn as_caller<T>(token: Option<&str>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert(SERVICE_TOKEN_METADATA, token.parse().unwrap());
    }
    request
}

pub(crate) fn get(
    member: Option<&str>,
    agent: Option<&str>,
    connector: &str,
) -> pb::GetCredentialRequest {
    pb::GetCredentialRequest {
        principal: Some(common::Principal {
            member: member.map(|id| common::Member {
                id: id.to_owned(),
                ..common::Member::default()
            }),
            agent: agent.map(|id| common::Agent {
                client_id: id.to_owned(),
                ..common::Agent::default()
            }),
            ..common::Principal::default()
        }),
        connector: connector.to_owned(),
        metadata: Some(common::RequestMetadata {
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            ..Default::default()
        }),
    }
}

fn set_bearer(connector: &str, token: &str) -> pb::SetSharedCredentialRequest {
    pb::SetSharedCredentialRequest {
        connector: connector.to_owned(),
        secret: Some(pb::set_shared_credential_request::Secret::Material(
            pb::CredentialMaterial {
                kind: Some(pb::credential_material::Kind::Bearer(pb::BearerToken {
                    token: Some(common::Secret {
                        value: token.to_owned(),
                    }),
                })),
            },
        )),
        expires_at: None,
        description: "team token".to_owned(),
    }
}

fn bearer_of(response: pb::GetCredentialResponse) -> String {
    let Some(pb::get_credential_response::Outcome::Credential(credential)) = response.outcome
    else {
        panic!("expected a credential: {response:?}");
    };
    let Some(pb::credential_material::Kind::Bearer(bearer)) = credential.material.unwrap().kind
    else {
        panic!("expected a bearer token");
    };
    bearer.token.unwrap().value
}

#[tokio::test]
async fn only_edge_receives_material_and_shared_credentials_are_write_only() {
    let backend = Backend::sqlite().await;
    let (vault, _events) = fixture::vault(&backend, "http://127.0.0.1:9");
    let (server, mut client) = start(vault, config()).await;
    let stored = client
        .set_shared_credential(as_caller(
            Some(ADMIN),
            set_bearer("shared", "canary-shared-9d2"),
        ))
        .await
        .unwrap();
    assert!(!format!("{stored:?}").contains("canary"));
    for caller in [
        None,
        Some("wrong-token-0123456789"),
        Some(ADMIN),
        Some(AUTHZ),
        Some(&EDGE[..EDGE.len() - 1]),
    ] {
        let status = client
            .get_credential(as_caller(caller, get(Some("m-1"), None, "shared")))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{caller:?}");
    }
    let status = client
        .set_shared_credential(as_caller(Some(EDGE), set_bearer("shared", "x")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let released = client
        .get_credential(as_caller(Some(EDGE), get(Some("m-1"), None, "shared")))
        .await
        .unwrap();
    assert_eq!(bearer_of(released.into_inner()), "canary-shared-9d2");
    let listed = client
        .list_credentials(as_caller(
            Some(ADMIN),
            pb::ListCredentialsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.credentials.len(), 1);
    assert_eq!(listed.credentials[0].kind(), pb::CredentialKind::Bearer);
    assert!(!format!("{listed:?}").contains("canary"));
    let status = client
        .list_credentials(as_caller(Some(EDGE), pb::ListCredentialsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn per_member_connector_answers_consent_and_refuses_agents_alone() {
    let backend = Backend::sqlite().await;
    let (vault, _events) = fixture::vault(&backend, "http://provider.test");
    let (server, mut client) = start(vault, config()).await;
    let response = client
        .get_credential(as_caller(
            Some(EDGE),
            get(Some("m-1"), Some("bot"), "personal"),
        ))
        .await
        .unwrap();
    let Some(pb::get_credential_response::Outcome::ConsentRequired(consent)) =
        response.into_inner().outcome
    else {
        panic!("expected consent");
    };
    let url = url::Url::parse(&consent.authorization_url).unwrap();
    assert!(
        consent
            .authorization_url
            .starts_with("http://provider.test/authorize?")
    );
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["client_id"], "vault-client");
    assert_eq!(query["resource"], "https://mcp.example.com/personal");
    assert_eq!(
        query["redirect_uri"],
        "http://127.0.0.1:9/vault/oauth/callback"
    );
    assert!(query["state"].len() >= 43);
    assert!(!consent.authorization_url.contains("vault-client-secret"));
    assert_eq!(consent.kind(), pb::ConsentKind::Oauth);
    let status = client
        .get_credential(as_caller(Some(EDGE), get(None, Some("bot"), "personal")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let status = client
        .get_credential(as_caller(Some(EDGE), get(Some("m-1"), None, "unknown")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let status = client
        .get_credential(as_caller(Some(EDGE), get(Some("m-1"), None, "shared")))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::NotFound,
        "no shared credential stored yet"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn revocation_by_authz_takes_effect_on_the_next_read() {
    let backend = Backend::sqlite().await;
    let (vault, _events) = fixture::vault(&backend, "http://127.0.0.1:9");
    let (server, mut client) = start(vault, config()).await;
    client
        .set_shared_credential(as_caller(Some(ADMIN), set_bearer("shared", "team")))
        .await
        .unwrap();
    client
        .get_credential(as_caller(Some(EDGE), get(None, Some("bot"), "shared")))
        .await
        .unwrap();
    let revoke = |token| {
        as_caller(
            token,
            pb::RevokePrincipalRequest {
                principal: Some(pb::revoke_principal_request::Principal::AgentClientId(
                    "bot".into(),
                )),
                reason: "decommissioned".into(),
            },
        )
    };
    assert_eq!(
        client
            .revoke_principal(revoke(Some(EDGE)))
            .await
            .unwrap_err()
            .code(),
        tonic::Code::PermissionDenied
    );
    client.revoke_principal(revoke(Some(AUTHZ))).await.unwrap();
    let status = client
        .get_credential(as_caller(Some(EDGE), get(None, Some("bot"), "shared")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let empty = as_caller(
        Some(ADMIN),
        pb::RevokePrincipalRequest {
            principal: None,
            reason: String::new(),
        },
    );
    assert_eq!(
        client.revoke_principal(empty).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn deletion_hides_existence_from_non_administrators_and_health_reports() {
    let backend = Backend::sqlite().await;
    let (vault, _events) = fixture::vault(&backend, "http://127.0.0.1:9");
    let (server, mut client) = start(vault, config()).await;
    let stored = client
        .set_shared_credential(as_caller(Some(ADMIN), set_bearer("shared", "team")))
        .await
        .unwrap()
        .into_inner()
        .credential
        .unwrap();
    let delete = |token| {
        as_caller(
            token,
            pb::DeleteCredentialRequest {
                credential_id: stored.credential_id.clone(),
            },
        )
    };
    assert_eq!(
        client
            .delete_credential(delete(Some(EDGE)))
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );
    client.delete_credential(delete(Some(ADMIN))).await.unwrap();
    assert_eq!(
        client
            .delete_credential(delete(Some(ADMIN)))
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );
    let health = client
        .connector_health(as_caller(
            Some(ADMIN),
            pb::ConnectorHealthRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = health
        .connectors
        .iter()
        .map(|report| report.connector.as_str())
        .collect();
    assert_eq!(names, ["personal", "shared"]);
    assert!(
        health
            .connectors
            .iter()
            .all(|report| report.state() == pb::HealthState::Healthy)
    );
    let unknown = as_caller(
        Some(ADMIN),
        pb::ConnectorHealthRequest {
            connectors: vec!["nope".into()],
        },
    );
    assert_eq!(
        client.connector_health(unknown).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    let bad_page = pb::ListCredentialsRequest {
        page: Some(common::PageRequest {
            page_size: 1,
            page_token: "!!".into(),
        }),
        ..Default::default()
    };
    assert_eq!(
        client
            .list_credentials(as_caller(Some(ADMIN), bad_page))
            .await
            .unwrap_err()
            .code(),
        tonic::Code::InvalidArgument
    );
    server.stop().await.unwrap();
}
