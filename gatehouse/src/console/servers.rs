//! Virtual servers: each one's connectors and its curated tool list as each role sees it,
//! computed by the same function that answers `tools/list` ([`edge_svc::proxy::listed_tools`]).

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use edge_svc::auth::TokenClaims;

use super::{Chrome, Console, admin_error, render};
use crate::admin::Steward;
use crate::admin::model::AgentFilter;

/// One role's view of a virtual server.
#[derive(Debug)]
struct RoleView {
    role: String,
    tools: Vec<String>,
}

/// One virtual server's section.
#[derive(Debug)]
struct ServerRow {
    name: String,
    description: String,
    url: String,
    auth: String,
    connectors: Vec<String>,
    curated: Vec<String>,
    /// Whether a policy applies; without one every caller sees every curated tool.
    governed: bool,
    roles: Vec<RoleView>,
}

#[derive(Template)]
#[template(path = "servers.html")]
struct ServersPage {
    chrome: Chrome,
    rows: Vec<ServerRow>,
}

/// A role to preview: a member in some groups, or an agent bundle with its scopes.
#[derive(Debug)]
struct Role {
    label: String,
    claims: TokenClaims,
}

/// `GET /console/servers`.
pub(super) async fn page(State(console): State<Console>, headers: HeaderMap) -> Response {
    let viewer = match console.sessions().viewer(&headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let caller = match viewer.administrator() {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let declared = console.admin().virtual_servers(caller);
    let mut groups = console.inner.roles.clone();
    match console.admin().groups(caller).await {
        Ok(directory) => groups.extend(directory.into_iter().map(|group| group.name)),
        Err(error) => return admin_error(&viewer, &error),
    }
    groups.sort();
    groups.dedup();
    let agents = match console
        .admin()
        .agents(&Steward::administrator(caller), AgentFilter::default())
        .await
    {
        Ok(agents) => agents,
        Err(error) => return admin_error(&viewer, &error),
    };
    let gateway = &console.inner.gateway;
    let access = gateway.access();
    let issuer = console.admin().issuer().to_owned();
    let mut rows = Vec::new();
    for view in declared {
        let Some(slot) = gateway.server(&view.name) else {
            continue;
        };
        let server = slot.load();
        let snapshot = server.snapshot().await;
        let scopes = access.scopes_supported(&view.name);
        let member_role = |label: String, groups: Vec<String>| Role {
            label,
            claims: claims(
                &issuer,
                "console-role-preview",
                "gatehouse-console",
                &scopes,
                groups,
            ),
        };
        let mut roles: Vec<Role> = vec![member_role("Member (no group)".to_owned(), Vec::new())];
        roles.extend(
            groups
                .iter()
                .map(|group| member_role(format!("Group {group}"), vec![group.clone()])),
        );
        roles.extend(
            agents
                .iter()
                .filter(|agent| agent.virtual_servers.contains(&view.name))
                .map(|agent| Role {
                    label: format!("Agent {}", agent.name),
                    claims: claims(
                        &issuer,
                        &agent.client_id,
                        &agent.client_id,
                        &agent.scopes,
                        Vec::new(),
                    ),
                }),
        );
        let governed = access.subject_for(&roles[0].claims).is_some();
        let roles = roles
            .into_iter()
            .map(|role| {
                let subject = access.subject_for(&role.claims);
                RoleView {
                    role: role.label,
                    tools: edge_svc::proxy::listed_tools(&server, &snapshot, subject.as_ref())
                        .into_iter()
                        .map(|tool| tool.name.to_string())
                        .collect(),
                }
            })
            .collect();
        rows.push(ServerRow {
            description: server.description().unwrap_or_default().to_owned(),
            url: gateway_url(&console, &view.name),
            auth: format!("{:?}", server.auth()).to_lowercase(),
            connectors: server
                .members()
                .iter()
                .map(|member| member.connector.name().to_owned())
                .collect(),
            curated: snapshot
                .tools
                .tools()
                .iter()
                .map(|tool| tool.name.to_string())
                .collect(),
            governed,
            roles,
            name: view.name,
        });
    }
    render(
        StatusCode::OK,
        &ServersPage {
            chrome: viewer.chrome("servers"),
            rows,
        },
    )
}

/// Returns the claims a token of this role would carry.
fn claims(
    issuer: &str,
    subject: &str,
    client_id: &str,
    scopes: &[String],
    groups: Vec<String>,
) -> TokenClaims {
    TokenClaims {
        subject: subject.to_owned(),
        client_id: client_id.to_owned(),
        scopes: scopes.to_vec(),
        token_id: String::new(),
        expires_at: 0,
        issued_at: 0,
        issuer: issuer.to_owned(),
        act: None,
        groups,
        roles: Vec::new(),
        grant: None,
        agent: None,
    }
}

/// Returns the MCP endpoint of virtual server `name`.
fn gateway_url(console: &Console, name: &str) -> String {
    let origin = console.admin().issuer().trim_end_matches('/');
    format!("{origin}/v/{name}/mcp")
}
