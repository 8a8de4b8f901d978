//! vault-svc's HTTP face: the OAuth callback of the per-member consent flow.
//! The product binary merges [`router`] under the path `http.public_url` names.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::error::Error;
use crate::vault::Vault;

/// Is the callback's query: a code and state, or a provider error.
#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// Returns the router serving `GET /oauth/callback`.
pub fn router(vault: Vault) -> Router {
    Router::new()
        .route("/oauth/callback", get(callback))
        .with_state(vault)
}

// Answers with fixed text only: nothing from the provider or the store is
// echoed, so no token or code can reach a page or a log line.
async fn callback(State(vault): State<Vault>, Query(query): Query<CallbackQuery>) -> Response {
    let (Some(code), Some(state)) = (query.code, query.state) else {
        let status = if query.error.is_some() {
            "the provider refused the authorization"
        } else {
            "missing code or state"
        };
        return page(StatusCode::BAD_REQUEST, status);
    };
    match vault.consent().complete(&vault, &state, code).await {
        Ok(connector) => {
            tracing::info!(connector = %connector, "member connected an account");
            page(
                StatusCode::OK,
                "Account connected. You can return to your MCP client and retry.",
            )
        }
        Err(Error::ConsentInvalid) => page(
            StatusCode::BAD_REQUEST,
            "This link is invalid, used or expired.",
        ),
        Err(error) => {
            tracing::warn!(error = %error, "consent callback failed");
            page(
                StatusCode::BAD_GATEWAY,
                "Connecting the account failed. Ask for a new link and try again.",
            )
        }
    }
}

fn page(status: StatusCode, message: &'static str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><title>Gatehouse</title><p>{message}</p>"
        )),
    )
        .into_response()
}
