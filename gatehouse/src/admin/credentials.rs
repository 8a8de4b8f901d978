//! Shared credentials (write-only), members' own credentials (deletable, never readable) and
//! connector credential health through the admin API.

use edge_svc::connector::ConnectorState;
use proto::audit::v1::EventKind;
use vault_svc::credential::{ClientCredentials, Material};
use vault_svc::secret::{Owner, SecretText};

use super::model::{CredentialRef, HealthView, KekView, SharedCredentialInput};
use super::{Action, Admin, AdminCaller, AdminError};

impl Admin {
    /// Stores or replaces `connector`'s shared credential (write-only).
    pub(crate) async fn set_shared_credential(
        &self,
        caller: &AdminCaller,
        connector: &str,
        input: SharedCredentialInput,
    ) -> Result<CredentialRef, AdminError> {
        let kind = input.kind();
        let outcome = async {
            let material = material(input)?;
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
        // Identifiers only: the connector and the material's kind, never a value.
        let field = format!("material.{kind}");
        let changed = [field.as_str()];
        let action = Action::read(
            EventKind::AdminChange,
            "update",
            "shared_credential",
            connector,
        )
        .changing(&changed);
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

    /// Reports the active KEK version and the re-wrap still to do.
    pub(crate) async fn kek_status(&self, caller: &AdminCaller) -> Result<KekView, AdminError> {
        let outcome = self
            .inner
            .vault
            .kek_status()
            .await
            .map_err(AdminError::Vault);
        let action = Action::read(EventKind::AdminChange, "read", "kek_status", "");
        self.audited(caller, &action, outcome)
            .map(|status| KekView {
                active_version: status.active_version,
                credentials: status.credentials,
                stale: status.stale,
                rewrap_running: status.rewrap.running,
                rewrapped: status.rewrap.rewrapped,
                rewrap_total: status.rewrap.total,
            })
    }

    /// Reports each connector's health: vault's view of its credentials, with edge's view of the
    /// downstream folded in (a connector edge cannot hold a session with is `unreachable`,
    /// whatever its credentials). Connectors without credentials are reported too.
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
        let reports = self.audited(caller, &action, outcome)?;
        let mut views: Vec<HealthView> = reports
            .into_iter()
            .map(|report| HealthView {
                connector: report.connector,
                state: report.state.as_str().to_owned(),
                shared_credential_failing: report.shared_credential_failing,
                failing_member_ids: report.failing_member_ids,
                detail: report.detail,
            })
            .collect();
        for status in self.inner.routing.connector_statuses() {
            let index = match views.iter().position(|view| view.connector == status.name) {
                Some(index) => index,
                None => {
                    views.push(HealthView {
                        connector: status.name.clone(),
                        state: vault_svc::HealthState::Healthy.as_str().to_owned(),
                        shared_credential_failing: false,
                        failing_member_ids: Vec::new(),
                        detail: String::new(),
                    });
                    views.len() - 1
                }
            };
            if downstream_unreachable(status.state) {
                fold_unreachable(&mut views[index]);
            }
        }
        views.sort_by(|left, right| left.connector.cmp(&right.connector));
        Ok(views)
    }
}

/// Returns whether edge's `state` means the downstream cannot be reached.
fn downstream_unreachable(state: ConnectorState) -> bool {
    matches!(
        state,
        ConnectorState::Restarting | ConnectorState::Failed | ConnectorState::Stopped
    )
}

/// Marks `view` unreachable, keeping vault's explanation after edge's.
fn fold_unreachable(view: &mut HealthView) {
    let note = "the downstream cannot be reached; Gatehouse keeps retrying";
    view.detail = if view.detail.is_empty() {
        note.to_owned()
    } else {
        format!("{note}; {} (credentials: {})", view.detail, view.state)
    };
    view.state = vault_svc::HealthState::Unreachable.as_str().to_owned();
}

/// Returns the material `input` describes; vault-svc validates it further (header names,
/// variable names, the token endpoint) and names the field at fault.
fn material(input: SharedCredentialInput) -> Result<Material, AdminError> {
    let required = |value: &str, field| {
        if value.is_empty() {
            Err(AdminError::InvalidArgument {
                field,
                reason: "must not be empty".to_owned(),
            })
        } else {
            Ok(())
        }
    };
    let secrets = |pairs: std::collections::BTreeMap<String, String>| {
        pairs
            .into_iter()
            .map(|(name, value)| (name, SecretText::from(value)))
            .collect()
    };
    Ok(match input {
        SharedCredentialInput::Bearer { value } => {
            required(&value, "value")?;
            Material::Bearer {
                token: SecretText::from(value),
            }
        }
        SharedCredentialInput::ApiKey { header, value } => {
            required(&value, "value")?;
            Material::ApiKey {
                header_name: header.unwrap_or_else(|| "X-Api-Key".to_owned()),
                key: SecretText::from(value),
            }
        }
        SharedCredentialInput::Basic { username, password } => {
            required(&username, "username")?;
            required(&password, "password")?;
            Material::Basic {
                username,
                password: SecretText::from(password),
            }
        }
        SharedCredentialInput::ClientCredentials {
            client_id,
            client_secret,
            token_endpoint,
            scopes,
            audience,
        } => {
            required(&client_id, "client_id")?;
            required(&client_secret, "client_secret")?;
            required(&token_endpoint, "token_endpoint")?;
            Material::OauthClientCredentials(ClientCredentials {
                token_endpoint,
                client_id,
                client_secret: SecretText::from(client_secret),
                scopes,
                audience,
                access_token: None,
            })
        }
        SharedCredentialInput::Env { variables } => {
            if variables.is_empty() {
                required("", "variables")?;
            }
            Material::Environment {
                variables: secrets(variables),
            }
        }
        SharedCredentialInput::Headers { headers } => {
            if headers.is_empty() {
                required("", "headers")?;
            }
            Material::Headers {
                headers: secrets(headers),
            }
        }
    })
}
