//! The `gatehouse.vault.v1.Vault` gRPC service: decode, authorize the caller,
//! call the domain, encode.
//!
//! Callers are told apart by a service token in the `x-gatehouse-service-token`
//! metadata, compared in constant time (as SHA-256 digests, so length leaks
//! nothing) with the tokens configured per role. Only edge-svc's token opens
//! GetCredential; authz-svc's opens RevokePrincipal; the admin token opens every
//! administrative RPC. A missing or unknown token is PERMISSION_DENIED.

use proto::vault::v1 as pb;
use svc_kit::callers::ServiceTokens;
use tonic::{Request, Response, Status};

use crate::config::CallersConfig;
use crate::error::Error;
use crate::secret::Owner;
use crate::store::ListQuery;
use crate::vault::{CredentialOutcome, Vault};

mod convert;

/// Is the metadata key carrying a caller's service token.
pub use svc_kit::callers::SERVICE_TOKEN_METADATA;

/// Bounds a listing page.
const MAX_PAGE: u32 = 500;

/// Implements the Vault service over a [`Vault`].
#[derive(Debug, Clone)]
pub struct VaultGrpc {
    vault: Vault,
    callers: ServiceTokens<Role>,
}

/// Is a caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Edge,
    Authz,
    Admin,
}

/// Builds the role table from the configured tokens.
fn role_table(config: &CallersConfig) -> ServiceTokens<Role> {
    ServiceTokens::new([
        (Role::Edge, config.edge_token.as_ref()),
        (Role::Authz, config.authz_token.as_ref()),
        (Role::Admin, config.admin_token.as_ref()),
    ])
}

impl VaultGrpc {
    /// Returns the service over `vault`, admitting the callers `callers` names.
    pub fn new(vault: Vault, callers: &CallersConfig) -> Self {
        Self {
            vault,
            callers: role_table(callers),
        }
    }
}

#[tonic::async_trait]
impl pb::vault_server::Vault for VaultGrpc {
    #[tracing::instrument(skip_all, fields(connector = %request.get_ref().connector))]
    async fn get_credential(
        &self,
        request: Request<pb::GetCredentialRequest>,
    ) -> Result<Response<pb::GetCredentialResponse>, Status> {
        self.callers.require(&request, &[Role::Edge])?;
        let query = convert::credential_query(request.into_inner())?;
        let outcome = match self.vault.get_credential(&query).await? {
            CredentialOutcome::Released(released) => {
                pb::get_credential_response::Outcome::Credential(convert::credential(released))
            }
            CredentialOutcome::ConsentRequired(link) => {
                pb::get_credential_response::Outcome::ConsentRequired(convert::consent(link))
            }
        };
        Ok(Response::new(pb::GetCredentialResponse {
            outcome: Some(outcome),
        }))
    }

    #[tracing::instrument(skip_all, fields(connector = %request.get_ref().connector))]
    async fn set_shared_credential(
        &self,
        request: Request<pb::SetSharedCredentialRequest>,
    ) -> Result<Response<pb::SetSharedCredentialResponse>, Status> {
        self.callers.require(&request, &[Role::Admin])?;
        let command = convert::shared_credential(request.into_inner())?;
        let record = self
            .vault
            .set_shared(
                &command.connector,
                &command.material,
                command.expires_at,
                command.description,
            )
            .await?;
        Ok(Response::new(pb::SetSharedCredentialResponse {
            credential: Some(convert::info(&record)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_credential(
        &self,
        request: Request<pb::DeleteCredentialRequest>,
    ) -> Result<Response<pb::DeleteCredentialResponse>, Status> {
        // Anyone but an administrator learns nothing, not even existence.
        self.callers
            .require(&request, &[Role::Admin])
            .map_err(|_| Error::CredentialNotFound)?;
        let id = request.into_inner().credential_id;
        if id.is_empty() {
            return Err(Error::InvalidArgument {
                field: "credential_id",
                reason: "must not be empty",
            }
            .into());
        }
        let record = self.vault.delete(&id).await?;
        Ok(Response::new(pb::DeleteCredentialResponse {
            credential: Some(convert::info(&record)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_principal(
        &self,
        request: Request<pb::RevokePrincipalRequest>,
    ) -> Result<Response<pb::RevokePrincipalResponse>, Status> {
        self.callers
            .require(&request, &[Role::Authz, Role::Admin])?;
        let request = request.into_inner();
        let principal = match request.principal {
            Some(pb::revoke_principal_request::Principal::MemberId(id)) if !id.is_empty() => {
                Owner::Member(id)
            }
            Some(pb::revoke_principal_request::Principal::AgentClientId(id)) if !id.is_empty() => {
                Owner::Agent(id)
            }
            _ => {
                return Err(Error::InvalidArgument {
                    field: "principal",
                    reason: "must name a member or an agent",
                }
                .into());
            }
        };
        let report = self
            .vault
            .revoke_principal(principal, &request.reason)
            .await?;
        Ok(Response::new(pb::RevokePrincipalResponse {
            credentials_revoked: report.credentials_revoked,
            upstream_revocations_failed: report.upstream_revocations_failed,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_credentials(
        &self,
        request: Request<pb::ListCredentialsRequest>,
    ) -> Result<Response<pb::ListCredentialsResponse>, Status> {
        self.callers.require(&request, &[Role::Admin])?;
        let request = request.into_inner();
        let page = request.page.unwrap_or_default();
        let limit = match page.page_size {
            0 => 100,
            size => size.min(MAX_PAGE),
        };
        let after = convert::page_token(&page.page_token)?;
        let Some(statuses) = convert::statuses(&request.statuses)? else {
            return Ok(Response::new(pb::ListCredentialsResponse::default()));
        };
        let query = ListQuery {
            connector: Some(request.connector).filter(|connector| !connector.is_empty()),
            owner_id: Some(request.owner_id).filter(|owner| !owner.is_empty()),
            statuses,
            after,
            limit: limit + 1,
            ..ListQuery::default()
        };
        let mut records = self.vault.list(query).await?;
        let more = records.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next_page_token = match (more, records.last()) {
            (true, Some(last)) => convert::encode_page_token(&last.id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListCredentialsResponse {
            credentials: records.iter().map(convert::info).collect(),
            page: Some(proto::common::v1::PageResponse { next_page_token }),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn connector_health(
        &self,
        request: Request<pb::ConnectorHealthRequest>,
    ) -> Result<Response<pb::ConnectorHealthResponse>, Status> {
        self.callers.require(&request, &[Role::Admin])?;
        let reports = self.vault.health(&request.into_inner().connectors).await?;
        Ok(Response::new(pb::ConnectorHealthResponse {
            connectors: reports.into_iter().map(convert::health).collect(),
        }))
    }
}
