//! Token validation for resource servers that cannot validate a token locally
//! (`ValidateToken`): the verdict with its reason class, and the principal an active
//! token represents.

use proto::common::v1::{Actor, AuthenticationMethod, Principal};

use crate::error::Error;
use crate::state::AuthzState;
use crate::store::AgentKey;
use crate::token::{self, AccessClaims, Inactive};

/// Is an active token: its claims and who it represents.
#[derive(Debug, Clone)]
pub(crate) struct Validated {
    pub(crate) claims: AccessClaims,
    pub(crate) principal: Principal,
}

impl AuthzState {
    /// Returns the validated token when `token` is live and its audience is `resource`,
    /// else why not; only store failures are errors.
    pub(crate) async fn validate_for(
        &self,
        token: &str,
        resource: &str,
    ) -> Result<Result<Validated, Inactive>, Error> {
        let claims = match token::check(&self.keys.load(), &self.issuer.issuer, token) {
            Ok(claims) => claims,
            Err(inactive) => return Ok(Err(inactive)),
        };
        if claims.aud != resource {
            return Ok(Err(Inactive::WrongAudience));
        }
        if self.revoked(&claims).await? {
            return Ok(Err(Inactive::Revoked));
        }
        let principal = self.principal_of(&claims).await?;
        Ok(Ok(Validated { claims, principal }))
    }

    /// Returns who `claims` represent: an agent bundle (acting for a member after an
    /// exchange), a registered client acting as itself, or a member through a client.
    pub(crate) async fn principal_of(&self, claims: &AccessClaims) -> Result<Principal, Error> {
        let agent = self
            .store
            .agent(AgentKey::ClientId(&claims.client_id))
            .await?;
        let mut principal = match &agent {
            Some(agent) => {
                let mut principal = crate::events::agent(agent, AuthenticationMethod::Unspecified);
                if claims.sub != agent.client_id {
                    principal.member = crate::events::member(&claims.sub, &claims.client_id).member;
                }
                principal
            }
            None if claims.sub == claims.client_id => crate::events::client(&claims.client_id),
            None => crate::events::member(&claims.sub, &claims.client_id),
        };
        if let Some(member) = &mut principal.member {
            member.groups.clone_from(&claims.groups);
        }
        principal.act = actors(claims.act.as_ref());
        Ok(principal)
    }
}

/// Returns the delegation chain of an `act` claim, outermost actor first.
fn actors(act: Option<&serde_json::Value>) -> Vec<Actor> {
    let mut chain = Vec::new();
    let mut current = act;
    while let Some(actor) = current {
        let text = |key: &str| {
            actor
                .get(key)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        chain.push(Actor {
            subject: text("sub"),
            client_id: text("client_id"),
            issuer: text("iss"),
        });
        current = actor.get("act");
    }
    chain
}
