use std::sync::Arc;

use authz_svc::{AgentAuthentication, AgentRegistry, NewAgent, StoreConfig};
use edge_svc::auth::{TokenClaims, TokenError, TokenVerifier};

use super::{
    ADMIN_RESOURCE_NAME, ADMIN_SCOPE, AdminCaller, DEFAULT_ADMIN_GROUP as ADMIN_GROUP, Guard,
};
use crate::admin::AdminError;

const RESOURCE: &str = "https://gatehouse.example/admin/v1";

/// Accepts exactly one token, for the admin resource, with the given claims.
#[derive(Debug)]
struct OneToken(TokenClaims);

#[async_trait::async_trait]
impl TokenVerifier for OneToken {
    async fn verify(&self, resource: &str, token: &str) -> Result<TokenClaims, TokenError> {
        if resource == RESOURCE && token == "good" {
            Ok(self.0.clone())
        } else {
            Err(TokenError::Invalid("token not accepted"))
        }
    }
}

fn claims(subject: &str, client_id: &str, scopes: &[&str], groups: &[&str]) -> TokenClaims {
    TokenClaims {
        subject: subject.to_owned(),
        client_id: client_id.to_owned(),
        scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
        token_id: "jti-1".to_owned(),
        expires_at: u64::MAX,
        issued_at: 0,
        issuer: "https://gatehouse.example".to_owned(),
        act: None,
        groups: groups.iter().map(|group| (*group).to_owned()).collect(),
        roles: Vec::new(),
        grant: None,
        agent: None,
    }
}

async fn registry(dir: &tempfile::TempDir) -> AgentRegistry {
    let store = StoreConfig::Sqlite {
        path: dir.path().join("authz.db"),
    };
    AgentRegistry::open(&store, None).await.expect("registry")
}

fn guard(agents: &AgentRegistry, claims: TokenClaims) -> Guard {
    Guard {
        resource: RESOURCE.to_owned(),
        verifier: Arc::new(OneToken(claims)),
        agents: agents.clone(),
        group: ADMIN_GROUP.to_owned(),
    }
}

async fn admit(
    agents: &AgentRegistry,
    claims: TokenClaims,
    token: Option<&str>,
) -> Result<AdminCaller, AdminError> {
    guard(agents, claims)
        .admit(token)
        .await
        .map_err(|refusal| refusal.error)
}

#[tokio::test]
async fn a_member_outside_the_group_holding_the_scope_may_only_steward_their_own_agents() {
    let dir = tempfile::tempdir().expect("dir");
    let agents = registry(&dir).await;
    let owner = claims("alice", "desktop-app", &[ADMIN_SCOPE], &["engineering"]);
    let refusal = guard(&agents, owner)
        .admit(Some("good"))
        .await
        .expect_err("not an administrator");
    assert!(matches!(refusal.error, AdminError::InsufficientScope));
    assert!(
        refusal.owner_eligible,
        "the member may manage their own agents"
    );
    let scopeless = claims("alice", "desktop-app", &[], &["engineering"]);
    let refusal = guard(&agents, scopeless)
        .admit(Some("good"))
        .await
        .expect_err("no scope");
    assert!(!refusal.owner_eligible, "the admin scope is still needed");
    let forged = claims("alice", "desktop-app", &[ADMIN_SCOPE], &["engineering"]);
    let refusal = guard(&agents, forged)
        .admit(Some("bad"))
        .await
        .expect_err("an invalid token");
    assert!(!refusal.owner_eligible && refusal.caller.is_none());
}

#[tokio::test]
async fn members_need_the_admin_group_as_well_as_the_scope() {
    let dir = tempfile::tempdir().expect("dir");
    let agents = registry(&dir).await;
    let outsider = claims("alice", "desktop-app", &[ADMIN_SCOPE], &["engineering"]);
    assert!(matches!(
        admit(&agents, outsider, Some("good")).await,
        Err(AdminError::InsufficientScope)
    ));
    let admin = claims("bob", "desktop-app", &[ADMIN_SCOPE], &[ADMIN_GROUP]);
    assert_eq!(
        admit(&agents, admin, Some("good")).await.expect("admitted"),
        AdminCaller::Member {
            id: "bob".to_owned(),
            client_id: "desktop-app".to_owned()
        }
    );
    let scopeless = claims("bob", "desktop-app", &[], &[ADMIN_GROUP]);
    assert!(matches!(
        admit(&agents, scopeless, Some("good")).await,
        Err(AdminError::InsufficientScope)
    ));
}

#[tokio::test]
async fn only_agent_bundles_granted_the_scope_are_admitted_among_clients() {
    let dir = tempfile::tempdir().expect("dir");
    let agents = registry(&dir).await;
    let created = agents
        .create(NewAgent {
            name: "ops-bot".to_owned(),
            description: String::new(),
            owner: "ops".to_owned(),
            virtual_servers: vec![ADMIN_RESOURCE_NAME.to_owned()],
            scopes: vec![ADMIN_SCOPE.to_owned()],
            authentication: AgentAuthentication::ClientSecret,
            quotas: serde_json::Value::Null,
            client_id: None,
        })
        .await
        .expect("agent");
    let agent = &created.agent;
    let token = claims(&agent.client_id, &agent.client_id, &[ADMIN_SCOPE], &[]);
    assert_eq!(
        admit(&agents, token.clone(), Some("good"))
            .await
            .expect("admitted"),
        AdminCaller::Agent {
            client_id: agent.client_id.clone()
        }
    );
    // A registered client using client credentials is not an agent bundle.
    let registered = claims("some-client", "some-client", &[ADMIN_SCOPE], &[]);
    assert!(matches!(
        admit(&agents, registered, Some("good")).await,
        Err(AdminError::InsufficientScope)
    ));
    assert!(matches!(
        admit(&agents, token.clone(), None).await,
        Err(AdminError::Unauthenticated(_))
    ));
    assert!(matches!(
        admit(&agents, token, Some("forged")).await,
        Err(AdminError::Unauthenticated(_))
    ));
}
