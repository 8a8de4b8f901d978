//! Connectors: each connector's health (healthy, auth failing, refresh failing, unreachable),
//! which members connected their own account, and the shared credential's age, never its value.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use edge_svc::connector::ConnectorState;
use vault_svc::secret::Owner;

use super::{Chrome, Console, admin_error, age, render};
use crate::admin::model::{ConnectorView, HealthView};

/// One connector's row.
#[derive(Debug)]
struct ConnectorRow {
    connector: ConnectorView,
    /// `healthy`, `auth failing`, `refresh failing`, `unreachable` or `connecting`.
    health: String,
    /// The CSS class of the health badge.
    class: &'static str,
    detail: String,
    members: Vec<String>,
    shared_age: Option<String>,
}

#[derive(Template)]
#[template(path = "connectors.html")]
struct ConnectorsPage {
    chrome: Chrome,
    rows: Vec<ConnectorRow>,
}

/// `GET /console/connectors`.
pub(super) async fn page(State(console): State<Console>, headers: HeaderMap) -> Response {
    let viewer = match console.sessions().viewer(&headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let caller = match viewer.administrator() {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let connectors = console.admin().connectors(caller);
    let health = match console.admin().connector_health(caller).await {
        Ok(health) => health,
        Err(error) => return admin_error(&viewer, &error),
    };
    let statuses: Vec<_> = console
        .inner
        .gateway
        .connectors()
        .iter()
        .map(edge_svc::connector::Connector::status)
        .collect();
    let now = super::now();
    let mut rows = Vec::with_capacity(connectors.len());
    for connector in connectors {
        let query = vault_svc::store::ListQuery {
            connector: Some(connector.name.clone()),
            limit: 1000,
            ..vault_svc::store::ListQuery::default()
        };
        // Metadata only: the list never opens sealed material.
        let records = match console.inner.vault.list(query).await {
            Ok(records) => records,
            Err(error) => return admin_error(&viewer, &crate::admin::AdminError::Vault(error)),
        };
        let members = records
            .iter()
            .filter_map(|record| match &record.key.owner {
                Owner::Member(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        let shared_age = records
            .iter()
            .find(|record| record.key.owner == Owner::Shared)
            .map(|record| age(record.updated_at / 1_000_000, now));
        let state = statuses
            .iter()
            .find(|status| status.name == connector.name)
            .map(|status| status.state);
        let report = health
            .iter()
            .find(|report| report.connector == connector.name);
        let (health, class, detail) = health_of(state, report);
        rows.push(ConnectorRow {
            connector,
            health,
            class,
            detail,
            members,
            shared_age,
        });
    }
    render(
        StatusCode::OK,
        &ConnectorsPage {
            chrome: viewer.chrome("connectors"),
            rows,
        },
    )
}

/// Combines edge's view (can the connector be reached) with vault's (do its credentials work).
fn health_of(
    state: Option<ConnectorState>,
    report: Option<&HealthView>,
) -> (String, &'static str, String) {
    match state {
        Some(ConnectorState::Restarting | ConnectorState::Failed | ConnectorState::Stopped) => {
            return (
                "unreachable".to_owned(),
                "bad",
                "Gatehouse cannot hold a session with it; it keeps retrying.".to_owned(),
            );
        }
        Some(ConnectorState::Connecting) => {
            return ("connecting".to_owned(), "warn", String::new());
        }
        _ => {}
    }
    match report {
        Some(report) if report.state != "healthy" => {
            (report.state.replace('_', " "), "bad", report.detail.clone())
        }
        Some(report) => ("healthy".to_owned(), "ok", report.detail.clone()),
        None => ("healthy".to_owned(), "ok", String::new()),
    }
}
