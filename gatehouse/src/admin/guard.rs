//! Who may administer: a token from Gatehouse's own authorization server, issued for the admin
//! resource, carrying `gatehouse:admin`, held by an active agent bundle granted that scope or
//! by a member in the admin group (`admin.group` in the gateway file, `gatehouse-admins` by default).
//!
//! The scope alone is not enough for members: the authorization server grants any scope a
//! resource declares to any member who asks, so membership of the admin group is what makes a
//! member an administrator. Agent bundles get the scope only when an administrator grants it.

use authz_svc::{AgentKey, AgentRegistry};
use edge_svc::auth::{TokenClaims, TokenVerifier};
use proto::common::v1::{Agent, AuthenticationMethod, Member, Principal};

use super::error::AdminError;

/// The OAuth scope that grants the admin API.
pub(crate) const ADMIN_SCOPE: &str = "gatehouse:admin";
/// The group whose members may hold the admin scope when the file names none.
pub(crate) const DEFAULT_ADMIN_GROUP: &str = "gatehouse-admins";
/// The protected resource's name, as agent bundles list it in their `virtual_servers`.
pub(crate) const ADMIN_RESOURCE_NAME: &str = "gatehouse-admin";

/// An authenticated administrator, as the audit record names them (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AdminCaller {
    /// A member in the admin group, through an OAuth client.
    Member {
        /// The member's subject.
        id: String,
        /// The app's client id.
        client_id: String,
    },
    /// An agent bundle granted the admin scope.
    Agent {
        /// The bundle's client id.
        client_id: String,
    },
}

/// Checks bearer tokens presented to the admin API.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    /// The admin resource's URL: the audience tokens must carry.
    pub(crate) resource: String,
    pub(crate) verifier: std::sync::Arc<dyn TokenVerifier>,
    pub(crate) agents: AgentRegistry,
    /// The group whose members are administrators (`admin.group`).
    pub(crate) group: String,
}

/// A refusal before any admin operation, with whom it refused when the token was valid.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) error: AdminError,
    /// The caller whose valid token lacked the grant (audited as a denied admin action).
    pub(crate) caller: Option<AdminCaller>,
    /// Says the caller is a member outside the admin group whose token carries the admin
    /// scope: enough to manage the agent bundles they own, and nothing else.
    pub(crate) owner_eligible: bool,
}

impl Guard {
    /// Returns the administrator `bearer` proves, or why it does not.
    pub(crate) async fn admit(&self, bearer: Option<&str>) -> Result<AdminCaller, Refusal> {
        let refuse = |error, caller| Refusal {
            error,
            caller,
            owner_eligible: false,
        };
        let Some(token) = bearer else {
            return Err(refuse(AdminError::Unauthenticated("no bearer token"), None));
        };
        let claims = self
            .verifier
            .verify(&self.resource, token)
            .await
            .map_err(|_| {
                refuse(
                    AdminError::Unauthenticated("the token is not valid for the admin API"),
                    None,
                )
            })?;
        let (caller, entitled) = self.identify(&claims).await;
        let scoped = claims.scopes.iter().any(|scope| scope == ADMIN_SCOPE);
        if entitled && scoped {
            return Ok(caller);
        }
        let owner_eligible = scoped && matches!(caller, AdminCaller::Member { .. });
        Err(Refusal {
            owner_eligible,
            ..refuse(AdminError::InsufficientScope, Some(caller))
        })
    }

    /// Names the token's holder and says whether it may hold the admin scope at all.
    async fn identify(&self, claims: &TokenClaims) -> (AdminCaller, bool) {
        if let Ok(agent) = self.agents.get(AgentKey::ClientId(&claims.client_id)).await
            && claims.subject == agent.client_id
        {
            let entitled = agent.decommissioned_at.is_none()
                && agent.scopes.iter().any(|scope| scope == ADMIN_SCOPE);
            return (
                AdminCaller::Agent {
                    client_id: agent.client_id,
                },
                entitled,
            );
        }
        let member = AdminCaller::Member {
            id: claims.subject.clone(),
            client_id: claims.client_id.clone(),
        };
        let entitled = claims.subject != claims.client_id && claims.groups.contains(&self.group);
        (member, entitled)
    }
}

impl AdminCaller {
    /// Returns the audit schema's principal.
    pub(crate) fn principal(&self) -> Principal {
        match self {
            Self::Member { id, client_id } => Principal {
                member: Some(Member {
                    id: id.clone(),
                    subject: id.clone(),
                    ..Member::default()
                }),
                client_id: client_id.clone(),
                authentication_method: AuthenticationMethod::AuthorizationCode.into(),
                ..Principal::default()
            },
            Self::Agent { client_id } => Principal {
                agent: Some(Agent {
                    client_id: client_id.clone(),
                    ..Agent::default()
                }),
                client_id: client_id.clone(),
                authentication_method: AuthenticationMethod::ClientSecret.into(),
                ..Principal::default()
            },
        }
    }
}

/// Extracts the token of an RFC 6750 `Bearer` credential (scheme case-insensitive).
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests;
