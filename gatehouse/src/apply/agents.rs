//! The agent bundles of `authorization.agents`: `gatehouse apply` creates the missing ones and
//! brings the others to their declared owner, servers, scopes and description, sending the
//! secret from the variable `secret_env` names when this process has it (as `gatehouse up`
//! reads it). Bundles the file does not declare are left alone: they may have been created
//! through the API on purpose, and decommissioning is an explicit admin action.

use authz_svc::AgentConfig;
use reqwest::Method;
use serde_json::json;

use super::client::Client;
use super::{Change, Plan, Step, describe};
use crate::admin::model::AgentView;

/// Adds the declared agents' creates and updates to `plan`.
pub(super) async fn plan(
    declared: &[AgentConfig],
    client: &Client,
    plan: &mut Plan,
) -> anyhow::Result<()> {
    if declared.is_empty() {
        return Ok(());
    }
    let running: Vec<AgentView> = client.get("/admin/v1/agents").await?;
    for agent in declared {
        if agent.workload.is_some() {
            continue;
        }
        let have = running.iter().find(|have| have.name == agent.name);
        let same = have.is_some_and(|have| {
            have.description == agent.description
                && have.owner == agent.owner
                && have.virtual_servers == agent.virtual_servers
                && have.scopes == agent.scopes
        });
        if same {
            continue;
        }
        let secret = agent
            .secret_env
            .as_ref()
            .and_then(|variable| std::env::var(variable).ok());
        if let (None, Some(variable), None) = (have, &agent.secret_env, &secret) {
            anyhow::bail!(
                "agent {}: set {variable} (its client secret) to create it",
                agent.name
            );
        }
        let change = match have {
            None => Change::Create(agent.name.clone()),
            Some(_) => Change::Update(agent.name.clone()),
        };
        describe(&mut plan.text, "agent", &change);
        plan.steps.push(Step {
            method: Method::PUT,
            path: format!("/admin/v1/agents/{}", agent.name),
            body: Some(json!({
                "client_id": agent.client_id,
                "description": agent.description,
                "owner": agent.owner,
                "virtual_servers": agent.virtual_servers,
                "scopes": agent.scopes,
                "jwks": agent.jwks,
                "secret": secret,
            })),
        });
    }
    Ok(())
}
