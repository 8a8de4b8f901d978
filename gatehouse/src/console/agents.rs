//! Agents: each agent bundle with its owner, scopes, last use, call volume, error rate and
//! credential age, and the rotate and decommission actions, each behind a confirmation page.

use std::collections::HashMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::activity::{EventRow, recent_calls};
use super::{Chrome, Console, admin_error, age, form_field, render};
use crate::admin::Steward;
use crate::admin::model::{AgentFilter, AgentView};

/// One agent bundle's row.
#[derive(Debug)]
struct AgentRow {
    agent: AgentView,
    last_token: String,
    last_call: String,
    calls: usize,
    error_rate: String,
    credential_age: String,
    active: bool,
}

#[derive(Template)]
#[template(path = "agents.html")]
struct AgentsPage {
    chrome: Chrome,
    rows: Vec<AgentRow>,
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    chrome: Chrome,
    /// `rotate` or `decommission`.
    action: &'static str,
    name: String,
    owner: String,
}

#[derive(Template)]
#[template(path = "rotated.html")]
struct RotatedPage {
    chrome: Chrome,
    name: String,
    client_id: String,
    /// The new client secret, shown this once (as the admin API's rotate answer shows it).
    secret: String,
    previous_expires: String,
}

/// Call statistics of one agent over the events the page read.
#[derive(Debug, Default)]
struct Usage {
    calls: usize,
    failures: usize,
    last_call: Option<i64>,
}

/// `GET /console/agents`.
pub(super) async fn page(State(console): State<Console>, headers: HeaderMap) -> Response {
    let viewer = match console.sessions().viewer(&headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let caller = match viewer.administrator() {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let filter = AgentFilter {
        owner: None,
        include_decommissioned: true,
    };
    let agents = match console
        .admin()
        .agents(&Steward::administrator(caller), filter)
        .await
    {
        Ok(agents) => agents,
        Err(error) => return admin_error(&viewer, &error),
    };
    let events = match recent_calls(&console, caller).await {
        Ok(events) => events,
        Err(error) => return admin_error(&viewer, &error),
    };
    let usage = usage(&events);
    let now = super::now();
    let rows = agents
        .into_iter()
        .map(|agent| {
            let used = usage.get(&agent.client_id);
            let calls = used.map_or(0, |used| used.calls);
            let failures = used.map_or(0, |used| used.failures);
            AgentRow {
                last_token: agent
                    .last_used_at
                    .map_or_else(|| "never".to_owned(), |at| format!("{} ago", age(at, now))),
                last_call: used.and_then(|used| used.last_call).map_or_else(
                    || "none recent".to_owned(),
                    |at| format!("{} ago", age(at, now)),
                ),
                calls,
                error_rate: if calls == 0 {
                    "–".to_owned()
                } else {
                    format!("{:.0} %", 100.0 * failures as f64 / calls as f64)
                },
                credential_age: age(agent.rotated_at.unwrap_or(agent.created_at), now),
                active: agent.state == "active",
                agent,
            }
        })
        .collect();
    render(
        StatusCode::OK,
        &AgentsPage {
            chrome: viewer.chrome("agents"),
            rows,
        },
    )
}

/// `GET /console/agents/{name}/rotate`: asks for confirmation.
pub(super) async fn confirm_rotate(
    state: State<Console>,
    headers: HeaderMap,
    name: Path<String>,
) -> Response {
    confirm(state, headers, name, "rotate").await
}

/// `GET /console/agents/{name}/decommission`: asks for confirmation and a reason.
pub(super) async fn confirm_decommission(
    state: State<Console>,
    headers: HeaderMap,
    name: Path<String>,
) -> Response {
    confirm(state, headers, name, "decommission").await
}

async fn confirm(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(name): Path<String>,
    action: &'static str,
) -> Response {
    let viewer = match console.sessions().viewer(&headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let caller = match viewer.administrator() {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    match console
        .admin()
        .agent(&Steward::administrator(caller), &name)
        .await
    {
        Ok(agent) => render(
            StatusCode::OK,
            &ConfirmPage {
                chrome: viewer.chrome("agents"),
                action,
                name: agent.name,
                owner: agent.owner,
            },
        ),
        Err(error) => admin_error(&viewer, &error),
    }
}

/// `POST /console/agents/{name}/rotate`: rotates the client secret (CSRF-checked).
pub(super) async fn rotate(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let viewer = match console.sessions().form_viewer(&headers, &body).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let caller = match viewer.administrator() {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    match console
        .admin()
        .rotate_agent(&Steward::administrator(caller), &name, None)
        .await
    {
        Ok(rotated) => render(
            StatusCode::OK,
            &RotatedPage {
                chrome: viewer.chrome("agents"),
                name: rotated.agent.name,
                client_id: rotated.agent.client_id,
                secret: rotated
                    .client_secret
                    .map(|secret| secret.0)
                    .unwrap_or_default(),
                previous_expires: rotated
                    .previous_secret_expires_at
                    .map(|at| format!("in {}", age(super::now(), at)))
                    .unwrap_or_else(|| "now".to_owned()),
            },
        ),
        Err(error) => admin_error(&viewer, &error),
    }
}

/// `POST /console/agents/{name}/decommission`: decommissions the bundle (CSRF-checked).
pub(super) async fn decommission(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let viewer = match console.sessions().form_viewer(&headers, &body).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let caller = match viewer.administrator() {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let reason = form_field(&body, "reason")
        .filter(|reason| !reason.trim().is_empty())
        .unwrap_or_else(|| "decommissioned in the console".to_owned());
    match console
        .admin()
        .decommission_agent(&Steward::administrator(caller), &name, &reason)
        .await
    {
        Ok(_) => super::session::see_other("/console/agents"),
        Err(error) => admin_error(&viewer, &error),
    }
}

/// Counts each agent's tool calls and failures in `events`.
fn usage(events: &[EventRow]) -> HashMap<String, Usage> {
    let mut usage: HashMap<String, Usage> = HashMap::new();
    for row in events
        .iter()
        .filter(|row| row.is_tool_call() && !row.agent.is_empty())
    {
        let entry = usage.entry(row.agent.clone()).or_default();
        entry.calls += 1;
        if row.class != "ok" {
            entry.failures += 1;
        }
        entry.last_call = Some(entry.last_call.map_or(row.time, |last| last.max(row.time)));
    }
    usage
}
