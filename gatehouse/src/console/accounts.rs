//! Connected accounts: a member's own connections to per-member connectors. Connecting starts
//! vault-svc's link flow (the same consent link a tool call would hand out); removing deletes
//! the member's credential (and revokes it at the provider when it is an OAuth grant).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use vault_svc::CredentialMode;
use vault_svc::secret::Owner;
use vault_svc::{CredentialOutcome, CredentialQuery};

use super::session::see_other;
use super::{Chrome, Console, age, message, render};

/// One per-member connector and the member's connection to it.
#[derive(Debug)]
struct AccountRow {
    connector: String,
    /// How long ago the member connected, when connected.
    connected: Option<String>,
    /// Needs attention (the provider refused a refresh): reconnect.
    failing: bool,
    /// Whether Gatehouse can start a connection itself (an OAuth provider is configured).
    linkable: bool,
}

#[derive(Template)]
#[template(path = "accounts.html")]
struct AccountsPage {
    chrome: Chrome,
    rows: Vec<AccountRow>,
}

/// `GET /console/accounts`.
pub(super) async fn page(State(console): State<Console>, headers: HeaderMap) -> Response {
    let viewer = match console.sessions().viewer(&headers).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let vault = &console.inner.vault;
    let query = vault_svc::store::ListQuery {
        owner_id: Some(viewer.subject.clone()),
        limit: 1000,
        ..vault_svc::store::ListQuery::default()
    };
    let records = match vault.list(query).await {
        Ok(records) => records,
        Err(error) => {
            return super::admin_error(&viewer, &crate::admin::AdminError::Vault(error));
        }
    };
    let now = super::now();
    let rows = per_member_connectors(&console)
        .into_iter()
        .map(|(connector, linkable)| {
            let record = records.iter().find(|record| {
                record.key.connector == connector
                    && record.key.owner == Owner::Member(viewer.subject.clone())
            });
            AccountRow {
                connected: record.map(|record| age(record.created_at / 1_000_000, now)),
                failing: record.is_some_and(|record| {
                    record.status == vault_svc::credential::CredentialStatus::NeedsAttention
                }),
                linkable,
                connector,
            }
        })
        .collect();
    render(
        StatusCode::OK,
        &AccountsPage {
            chrome: viewer.chrome("accounts"),
            rows,
        },
    )
}

/// `POST /console/accounts/{connector}/connect`: sends the member to the provider's consent.
pub(super) async fn connect(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(connector): Path<String>,
    body: Bytes,
) -> Response {
    let viewer = match console.sessions().form_viewer(&headers, &body).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    if !per_member_connectors(&console)
        .iter()
        .any(|(name, linkable)| *name == connector && *linkable)
    {
        return message(
            StatusCode::NOT_FOUND,
            Some(viewer.chrome("accounts")),
            "No such connection",
            "This connector does not take members' own accounts.",
        );
    }
    let query = CredentialQuery {
        member_id: Some(viewer.subject.clone()),
        agent_client_id: None,
        connector,
        trace_id: String::new(),
    };
    match console.inner.vault.get_credential(&query).await {
        Ok(CredentialOutcome::ConsentRequired(link)) => see_other(&link.url),
        // Connected already: the material is dropped here unread.
        Ok(CredentialOutcome::Released(_)) => see_other("/console/accounts"),
        Err(error) => super::admin_error(&viewer, &crate::admin::AdminError::Vault(error)),
    }
}

/// `POST /console/accounts/{connector}/remove`: deletes the member's own credential.
pub(super) async fn remove(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(connector): Path<String>,
    body: Bytes,
) -> Response {
    let viewer = match console.sessions().form_viewer(&headers, &body).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let vault = &console.inner.vault;
    let query = vault_svc::store::ListQuery {
        connector: Some(connector),
        owner_id: Some(viewer.subject.clone()),
        limit: 10,
        ..vault_svc::store::ListQuery::default()
    };
    let records = match vault.list(query).await {
        Ok(records) => records,
        Err(error) => return super::admin_error(&viewer, &crate::admin::AdminError::Vault(error)),
    };
    let owner = Owner::Member(viewer.subject.clone());
    for record in records.iter().filter(|record| record.key.owner == owner) {
        if let Err(error) = vault.delete(&record.id).await {
            return super::admin_error(&viewer, &crate::admin::AdminError::Vault(error));
        }
    }
    see_other("/console/accounts")
}

/// Returns the connectors that use members' own credentials, and whether each can link one.
fn per_member_connectors(console: &Console) -> Vec<(String, bool)> {
    let vault = &console.inner.vault;
    let mut names = console.admin().connector_names();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let config = vault.connector(&name).ok()?;
            // Linkable through vault's consent link: an OAuth grant, or a pasted API key.
            let linkable = config.oauth.is_some() || config.api_key.is_some();
            (config.credential == CredentialMode::PerMember).then_some((name, linkable))
        })
        .collect()
}
