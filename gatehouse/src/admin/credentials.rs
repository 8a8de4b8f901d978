//! Shared credentials (write-only), members' own credentials (deletable, never readable) and
//! connector credential health through the admin API.

use proto::audit::v1::EventKind;
use vault_svc::credential::Material;
use vault_svc::secret::{Owner, SecretText};

use super::model::{CredentialKind, CredentialRef, HealthView, SharedCredentialInput};
use super::{Action, Admin, AdminCaller, AdminError};

impl Admin {
    /// Stores or replaces `connector`'s shared credential (write-only).
    pub(crate) async fn set_shared_credential(
        &self,
        caller: &AdminCaller,
        connector: &str,
        input: SharedCredentialInput,
    ) -> Result<CredentialRef, AdminError> {
        let outcome = async {
            if input.value.is_empty() {
                return Err(AdminError::InvalidArgument {
                    field: "value",
                    reason: "must not be empty".to_owned(),
                });
            }
            let value = SecretText::from(input.value);
            let material = match input.kind {
                CredentialKind::Bearer => Material::Bearer { token: value },
                CredentialKind::ApiKey => Material::ApiKey {
                    header_name: input.header.unwrap_or_else(|| "X-Api-Key".to_owned()),
                    key: value,
                },
            };
            let description = format!("set through the admin API by {}", caller.name());
            let record = self
                .inner
                .vault
                .set_shared(connector, &material, None, description)
                .await
                .map_err(AdminError::Vault)?;
            Ok(CredentialRef {
                connector: connector.to_owned(),
                credential_id: record.id,
                version: record.version,
            })
        }
        .await;
        let action = Action {
            changed_fields: &["material"],
            ..Action::read(
                EventKind::AdminChange,
                "update",
                "shared_credential",
                connector,
            )
        };
        self.audited(caller, &action, outcome)
    }

    /// Deletes `connector`'s shared credential.
    pub(crate) async fn delete_shared_credential(
        &self,
        caller: &AdminCaller,
        connector: &str,
    ) -> Result<CredentialRef, AdminError> {
        let outcome = async {
            let query = vault_svc::store::ListQuery {
                connector: Some(connector.to_owned()),
                limit: 1000,
                ..vault_svc::store::ListQuery::default()
            };
            let records = self
                .inner
                .vault
                .list(query)
                .await
                .map_err(AdminError::Vault)?;
            let shared = records
                .into_iter()
                .find(|record| record.key.owner == Owner::Shared)
                .ok_or_else(|| AdminError::NoSharedCredential(connector.to_owned()))?;
            let deleted = self
                .inner
                .vault
                .delete(&shared.id)
                .await
                .map_err(AdminError::Vault)?;
            Ok(CredentialRef {
                connector: connector.to_owned(),
                credential_id: deleted.id,
                version: deleted.version,
            })
        }
        .await;
        let action = Action::read(
            EventKind::AdminChange,
            "delete",
            "shared_credential",
            connector,
        );
        self.audited(caller, &action, outcome)
    }

    /// Deletes `member`'s own credential for `connector` (a pasted API key or a connected
    /// account, revoked at its provider where it has an endpoint); their next call gets a fresh
    /// link. The same operation as `gatehouse credentials delete --member`.
    pub(crate) async fn delete_member_credential(
        &self,
        caller: &AdminCaller,
        connector: &str,
        member: &str,
    ) -> Result<CredentialRef, AdminError> {
        let outcome = async {
            let deleted = self
                .inner
                .vault
                .delete_member_credential(connector, member)
                .await
                .map_err(AdminError::Vault)?;
            Ok(CredentialRef {
                connector: connector.to_owned(),
                credential_id: deleted.id,
                version: deleted.version,
            })
        }
        .await;
        // Identifiers only: the connector and the member, never the credential.
        let object = format!("{connector}/{member}");
        let action = Action::read(
            EventKind::AdminChange,
            "delete",
            "member_credential",
            &object,
        );
        self.audited(caller, &action, outcome)
    }

    /// Reports each connector's credential health.
    pub(crate) async fn connector_health(
        &self,
        caller: &AdminCaller,
    ) -> Result<Vec<HealthView>, AdminError> {
        let outcome = self
            .inner
            .vault
            .health(&[])
            .await
            .map_err(AdminError::Vault);
        let action = Action::read(EventKind::AdminChange, "read", "connector_health", "");
        self.audited(caller, &action, outcome).map(|reports| {
            reports
                .into_iter()
                .map(|report| HealthView {
                    connector: report.connector,
                    state: match report.state {
                        vault_svc::HealthState::Healthy => "healthy",
                        vault_svc::HealthState::AuthFailing => "auth_failing",
                        vault_svc::HealthState::RefreshFailing => "refresh_failing",
                    }
                    .to_owned(),
                    shared_credential_failing: report.shared_credential_failing,
                    failing_member_ids: report.failing_member_ids,
                    detail: report.detail,
                })
                .collect()
        })
    }
}
