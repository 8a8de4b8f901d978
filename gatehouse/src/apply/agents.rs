//! The agent bundles of `authorization.agents`: `gatehouse apply` creates the missing ones and
//! brings the others to their declared owner, servers, scopes and description, sending the
//! secret from the variable `secret_env` names when this process has it (as `gatehouse up`
//! reads it). Every bundle it puts is marked as the gateway file's, and a marked bundle the
//! file no longer declares is decommissioned (shown as a deletion). Bundles without the mark
//! were created through the API, the CLI or the console on purpose and are never touched.

use authz_svc::{AgentConfig, MANAGED_BY_GATEWAY_FILE};
use reqwest::Method;
use serde_json::json;

use super::client::Client;
use super::{Change, Plan, Step, describe};
use crate::admin::model::AgentView;

/// Why `gatehouse apply` decommissions a bundle (kept in the audit record).
const DECOMMISSION_REASON: &str = "no longer declared in the gateway file (gatehouse apply)";

/// Adds the declared agents' creates and updates, and the decommissioning of the file's
/// bundles it no longer declares, to `plan`.
pub(super) async fn plan(
    declared: &[AgentConfig],
    client: &Client,
    plan: &mut Plan,
) -> anyhow::Result<()> {
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
                && have.managed_by.as_deref() == Some(MANAGED_BY_GATEWAY_FILE)
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
    let dropped = running.iter().filter(|have| {
        have.managed_by.as_deref() == Some(MANAGED_BY_GATEWAY_FILE)
            && !declared.iter().any(|agent| agent.name == have.name)
    });
    for have in dropped {
        describe(&mut plan.text, "agent", &Change::Delete(have.name.clone()));
        plan.steps.push(Step {
            method: Method::POST,
            path: format!("/admin/v1/agents/{}/decommission", have.name),
            body: Some(json!({ "reason": DECOMMISSION_REASON })),
        });
    }
    Ok(())
}
