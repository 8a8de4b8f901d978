//! Who is calling the token endpoint: an agent bundle (client secret, `private_key_jwt`
//! or a workload identity assertion) or a registered client.

use axum::http::{HeaderMap, header};
use proto::common::v1::AuthenticationMethod;

use super::{OAuthError, Params, authenticate_client, basic_credentials};
use crate::state::AuthzState;
use crate::store::{AgentRecord, ClientRecord};

/// Is the authenticated caller of the token endpoint.
#[derive(Debug)]
pub(crate) enum Caller {
    /// A registered (RFC 7591) client.
    Client(ClientRecord),
    /// An agent bundle.
    Agent(Box<AuthenticatedAgent>),
}

/// Is an agent bundle and how it proved who it is.
#[derive(Debug)]
pub(crate) struct AuthenticatedAgent {
    pub(crate) agent: AgentRecord,
    pub(crate) method: AuthenticationMethod,
}

/// Returns the caller: a client assertion is checked against the agent bundles; a
/// secret against the agent bundles first and the registered clients after.
pub(crate) async fn authenticate_caller(
    state: &AuthzState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Caller, OAuthError> {
    if params.get("client_assertion").is_some() || params.get("client_assertion_type").is_some() {
        if headers.contains_key(header::AUTHORIZATION) || params.get("client_secret").is_some() {
            return Err(OAuthError::invalid_request(
                "more than one client authentication method",
            ));
        }
        let agent = super::assertion::authenticate(state, params).await?;
        return Ok(Caller::Agent(Box::new(agent)));
    }
    if let Some((client_id, secret)) = presented_secret(headers, params)
        && let Some(agent) = state
            .agents
            .authenticate_secret(&client_id, &secret)
            .await?
    {
        return Ok(Caller::Agent(Box::new(AuthenticatedAgent {
            agent,
            method: AuthenticationMethod::ClientSecret,
        })));
    }
    authenticate_client(state, headers, params)
        .await
        .map(Caller::Client)
}

/// Returns the client id and secret of `client_secret_basic` or `client_secret_post`;
/// malformed or conflicting credentials are left for `authenticate_client` to refuse.
fn presented_secret(headers: &HeaderMap, params: &Params) -> Option<(String, String)> {
    match headers.get(header::AUTHORIZATION) {
        Some(value) => basic_credentials(value),
        None => Some((
            params.get("client_id")?.to_owned(),
            params.get("client_secret")?.to_owned(),
        )),
    }
}
