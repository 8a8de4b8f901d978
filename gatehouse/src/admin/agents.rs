//! Agent bundles through the admin API: secrets are shown once, never listed. An agent's
//! owner manages their own bundles (list, show, rotate, decommission) without being an
//! administrator: the accountable member can rotate a leaked secret or retire the agent.

use std::time::Duration;

use authz_svc::{AgentAuthentication, AgentKey, AgentRecord, NewAgent};
use proto::audit::v1::EventKind;
use secrecy::ExposeSecret as _;

use super::model::{
    AgentDeclarationInput, AgentFilter, AgentQuotaInput, AgentView, AgentWithSecret, NewAgentInput,
    OnceSecret,
};
use super::{Action, Admin, AdminCaller, AdminError};

/// Who manages agent bundles through the API.
#[derive(Debug, Clone)]
pub(crate) enum Steward {
    /// An administrator: every bundle.
    Administrator(AdminCaller),
    /// A member outside the admin group: only the bundles naming them as owner.
    Owner(AdminCaller),
}

impl Steward {
    /// Returns an administrator's stewardship (the console's pages are for administrators).
    pub(crate) fn administrator(caller: &AdminCaller) -> Self {
        Self::Administrator(caller.clone())
    }

    /// Returns whom the audit record names.
    pub(crate) fn caller(&self) -> &AdminCaller {
        match self {
            Self::Administrator(caller) | Self::Owner(caller) => caller,
        }
    }

    /// Returns the only owner whose bundles this steward sees, if restricted.
    fn owner(&self) -> Option<&str> {
        match self {
            Self::Administrator(_) => None,
            Self::Owner(caller) => Some(caller.name()),
        }
    }
}

impl Admin {
    /// Lists agent bundles, newest first (an owner's own only).
    pub(crate) async fn agents(
        &self,
        steward: &Steward,
        filter: AgentFilter,
    ) -> Result<Vec<AgentView>, AdminError> {
        // An owner sees their own bundles whatever owner they ask for.
        let owner = steward.owner().map(str::to_owned).or(filter.owner);
        let query = authz_svc::AgentListQuery {
            owner,
            include_decommissioned: filter.include_decommissioned,
            offset: 0,
            limit: 10_000,
        };
        let outcome = self
            .inner
            .agents
            .list(&query)
            .await
            .map_err(AdminError::from);
        let action = Action::read(EventKind::AdminChange, "list", "agent_bundle", "");
        self.audited(steward.caller(), &action, outcome)
            .map(|agents| agents.iter().map(AgentView::from).collect())
    }

    /// Creates an agent bundle authenticating with a client secret, shown this once.
    pub(crate) async fn create_agent(
        &self,
        caller: &AdminCaller,
        input: NewAgentInput,
    ) -> Result<AgentWithSecret, AdminError> {
        let name = input.name.clone();
        let outcome = self
            .inner
            .agents
            .create(NewAgent {
                name: input.name,
                description: input.description,
                owner: input.owner,
                virtual_servers: input.virtual_servers,
                scopes: input.scopes,
                authentication: AgentAuthentication::ClientSecret,
                quotas: AgentQuotaInput::stored(input.quota.as_ref()),
                client_id: None,
            })
            .await
            .map_err(AdminError::from);
        let action = Action::read(EventKind::AgentChanged, "create", "agent_bundle", &name)
            .changing(&[
                "name",
                "owner",
                "virtual_servers",
                "scopes",
                "description",
                "quota",
            ]);
        self.audited(caller, &action, outcome)
            .map(|created| AgentWithSecret {
                agent: AgentView::from(&created.agent),
                client_secret: created
                    .client_secret
                    .map(|secret| OnceSecret(secret.expose_secret().to_owned())),
                previous_secret_expires_at: None,
            })
    }

    /// Creates the bundle `name` or brings it to the declared state (what `gatehouse apply`
    /// does for `authorization.agents`); a given secret replaces the stored ones.
    pub(crate) async fn put_agent(
        &self,
        caller: &AdminCaller,
        name: &str,
        input: AgentDeclarationInput,
    ) -> Result<AgentWithSecret, AdminError> {
        let declared = authz_svc::AgentConfig {
            name: name.to_owned(),
            client_id: input.client_id,
            description: input.description,
            owner: input.owner,
            virtual_servers: input.virtual_servers,
            scopes: input.scopes,
            secret_env: None,
            jwks: input.jwks,
            workload: None,
            quotas: AgentQuotaInput::stored(input.quota.as_ref()),
        };
        let secret = input.secret.map(secrecy::SecretString::from);
        let outcome = self
            .inner
            .agents
            .declare(&declared, secret)
            .await
            .map_err(AdminError::from);
        let action = Action::read(EventKind::AgentChanged, "put", "agent_bundle", name)
            .changing(&["owner", "virtual_servers", "scopes", "description", "quota"]);
        self.audited(caller, &action, outcome)
            .map(|declared| AgentWithSecret {
                agent: AgentView::from(&declared.agent),
                client_secret: declared
                    .client_secret
                    .map(|secret| OnceSecret(secret.expose_secret().to_owned())),
                previous_secret_expires_at: None,
            })
    }

    /// Returns one bundle by name, bundle id or client id.
    pub(crate) async fn agent(
        &self,
        steward: &Steward,
        key: &str,
    ) -> Result<AgentView, AdminError> {
        let outcome = self.find_agent(steward, key).await;
        let action = Action::read(EventKind::AdminChange, "read", "agent_bundle", key);
        self.audited(steward.caller(), &action, outcome)
            .map(|agent| AgentView::from(&agent))
    }

    /// Issues a new client secret; the previous one works until `overlap` ends.
    pub(crate) async fn rotate_agent(
        &self,
        steward: &Steward,
        key: &str,
        overlap: Option<Duration>,
    ) -> Result<AgentWithSecret, AdminError> {
        let outcome = async {
            let agent = self.find_agent(steward, key).await?;
            Ok(self
                .inner
                .agents
                .rotate(AgentKey::Id(&agent.agent_id), overlap)
                .await?)
        }
        .await;
        let action = Action::read(EventKind::AgentChanged, "rotate", "agent_bundle", key)
            .changing(&["client_secret"]);
        self.audited(steward.caller(), &action, outcome)
            .map(|rotated| AgentWithSecret {
                agent: AgentView::from(&rotated.agent),
                client_secret: Some(OnceSecret(rotated.client_secret.expose_secret().to_owned())),
                previous_secret_expires_at: Some(rotated.previous_expires_at),
            })
    }

    /// Disables a bundle for good; its tokens stop working at edge within a second.
    pub(crate) async fn decommission_agent(
        &self,
        steward: &Steward,
        key: &str,
        reason: &str,
    ) -> Result<AgentView, AdminError> {
        let outcome = async {
            let agent = self.find_agent(steward, key).await?;
            Ok(self
                .inner
                .agents
                .decommission(AgentKey::Id(&agent.agent_id), reason)
                .await?)
        }
        .await;
        let action = Action {
            changed_fields: &["state"],
            reason,
            ..Action::read(EventKind::AgentChanged, "decommission", "agent_bundle", key)
        };
        self.audited(steward.caller(), &action, outcome)
            .map(|agent| AgentView::from(&agent))
    }

    /// Returns the bundle `key` names: by name, else by bundle id, else by client id. A bundle
    /// the steward does not own is not found, so an owner learns nothing of others' bundles.
    async fn find_agent(&self, steward: &Steward, key: &str) -> Result<AgentRecord, AdminError> {
        for lookup in [
            AgentKey::Name(key),
            AgentKey::Id(key),
            AgentKey::ClientId(key),
        ] {
            if let Ok(agent) = self.inner.agents.get(lookup).await
                && steward.owner().is_none_or(|owner| agent.owner == owner)
            {
                return Ok(agent);
            }
        }
        Err(AdminError::Authz(authz_svc::Error::AgentNotFound(
            key.to_owned(),
        )))
    }
}

impl From<&AgentRecord> for AgentView {
    fn from(agent: &AgentRecord) -> Self {
        Self {
            bundle_id: agent.agent_id.clone(),
            client_id: agent.client_id.clone(),
            name: agent.name.clone(),
            description: agent.description.clone(),
            owner: agent.owner.clone(),
            virtual_servers: agent.virtual_servers.clone(),
            scopes: agent.scopes.clone(),
            state: if agent.decommissioned_at.is_some() {
                "decommissioned"
            } else {
                "active"
            }
            .to_owned(),
            created_at: agent.created_at,
            rotated_at: agent.rotated_at,
            last_used_at: agent.last_used_at,
            quota: AgentQuotaInput::of(&agent.quotas),
            managed_by: agent.managed_by.clone(),
        }
    }
}
