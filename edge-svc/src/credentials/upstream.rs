//! The typed vault-svc client: `GetCredential`, authenticated by edge's service token.

use std::collections::BTreeMap;
use std::time::SystemTime;

use proto::common::v1 as common;
use proto::vault::v1 as pb;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

use super::{ConsentLink, CredentialError, Fetched, Material, Released, Secret, Who};

/// The metadata key vault-svc reads a caller's service token from.
const SERVICE_TOKEN_METADATA: &str = "x-gatehouse-service-token";

/// The client id the gateway itself is known by at vault-svc (catalogue reads, anonymous callers).
const GATEWAY_CLIENT_ID: &str = "gatehouse-edge";

/// A vault-svc client; cheap to clone.
#[derive(Clone)]
pub(super) struct VaultClient {
    client: pb::vault_client::VaultClient<Channel>,
    token: AsciiMetadataValue,
}

impl VaultClient {
    /// Builds a lazily connecting client for `endpoint`.
    pub(super) fn new(endpoint: &str, service_token: &str) -> anyhow::Result<Self> {
        let channel = svc_kit::grpc::channel(endpoint, &svc_kit::GrpcClientConfig::default())?;
        let mut token = AsciiMetadataValue::try_from(service_token)
            .map_err(|_| anyhow::anyhow!("the vault service token is not printable ascii"))?;
        token.set_sensitive(true);
        Ok(Self {
            client: pb::vault_client::VaultClient::new(channel),
            token,
        })
    }

    /// Asks vault-svc for `who`'s credential for `connector`.
    pub(super) async fn get(
        &self,
        who: &Who,
        connector: &str,
        trace_id: &str,
    ) -> Result<Fetched, CredentialError> {
        let mut request = tonic::Request::new(pb::GetCredentialRequest {
            principal: Some(principal(who)),
            connector: connector.to_owned(),
            metadata: Some(common::RequestMetadata {
                trace_id: trace_id.to_owned(),
                ..common::RequestMetadata::default()
            }),
        });
        request
            .metadata_mut()
            .insert(SERVICE_TOKEN_METADATA, self.token.clone());
        let response = self
            .client
            .clone()
            .get_credential(request)
            .await
            .map_err(|status| classify(status, connector))?;
        match response.into_inner().outcome {
            Some(pb::get_credential_response::Outcome::Credential(credential)) => Ok(
                Fetched::Released(std::sync::Arc::new(released(credential)?)),
            ),
            Some(pb::get_credential_response::Outcome::ConsentRequired(consent)) => {
                Ok(Fetched::ConsentRequired(ConsentLink {
                    url: consent.authorization_url,
                    reconnect: consent.reconnect,
                }))
            }
            None => Err(CredentialError::Malformed("no outcome")),
        }
    }
}

impl std::fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultClient").finish_non_exhaustive()
    }
}

fn principal(who: &Who) -> common::Principal {
    match who {
        Who::Member { id, client_id } => common::Principal {
            member: Some(common::Member {
                id: id.clone(),
                subject: id.clone(),
                ..common::Member::default()
            }),
            client_id: client_id.clone(),
            authentication_method: common::AuthenticationMethod::AuthorizationCode.into(),
            ..common::Principal::default()
        },
        Who::Agent { client_id } => agent(client_id),
        Who::Gateway => agent(GATEWAY_CLIENT_ID),
    }
}

fn agent(client_id: &str) -> common::Principal {
    common::Principal {
        agent: Some(common::Agent {
            client_id: client_id.to_owned(),
            ..common::Agent::default()
        }),
        client_id: client_id.to_owned(),
        authentication_method: common::AuthenticationMethod::ClientSecret.into(),
        ..common::Principal::default()
    }
}

/// Maps vault-svc's status codes (see `vault.proto`) onto edge's reasons; a failing refresh
/// and an unreachable vault-svc are both `Unavailable` to the caller.
fn classify(status: tonic::Status, connector: &str) -> CredentialError {
    match status.code() {
        tonic::Code::NotFound => CredentialError::NotFound(connector.to_owned()),
        tonic::Code::FailedPrecondition => CredentialError::Refused(connector.to_owned()),
        _ => CredentialError::Unavailable(status),
    }
}

fn secret(value: Option<common::Secret>) -> Result<Secret, CredentialError> {
    value
        .map(|secret| secret.value)
        .filter(|value| !value.is_empty())
        .map(Secret::from)
        .ok_or(CredentialError::Malformed("empty secret"))
}

fn secrets(
    values: std::collections::HashMap<String, common::Secret>,
) -> Result<BTreeMap<String, Secret>, CredentialError> {
    values
        .into_iter()
        .map(|(name, value)| Ok((name, secret(Some(value))?)))
        .collect()
}

fn released(credential: pb::Credential) -> Result<Released, CredentialError> {
    use pb::credential_material::Kind;
    let kind = credential
        .material
        .and_then(|material| material.kind)
        .ok_or(CredentialError::Malformed("no material"))?;
    let material = match kind {
        Kind::Bearer(bearer) => Material::Bearer(secret(bearer.token)?),
        Kind::ApiKey(key) => Material::ApiKey {
            header: key.header_name,
            key: secret(key.key)?,
        },
        Kind::Basic(basic) => Material::Basic {
            username: basic.username,
            password: secret(basic.password)?,
        },
        Kind::Headers(headers) => Material::Headers(secrets(headers.headers)?),
        Kind::Environment(environment) => Material::Environment(secrets(environment.variables)?),
    };
    Ok(Released {
        credential_id: credential.credential_id,
        version: credential.version,
        material,
        expires_at: credential
            .expires_at
            .and_then(|at| SystemTime::try_from(at).ok()),
    })
}
