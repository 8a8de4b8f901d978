//! RFC 8693 token exchange for connectors (`ExchangeToken`): edge-svc trades the
//! caller's validated access token for a short-lived token whose audience is one
//! connector, keeping the subject, its grant and its delegation chain (`act`, which
//! names the agent when one is involved), with scopes narrowed only.
//!
//! Which connectors accept exchanged tokens, through which virtual servers and with
//! which scopes is configuration (`authorization.token_exchange`); a connector not
//! listed, or not reachable from the subject token's virtual server, is not found.

use crate::client::TOKEN_EXCHANGE;
use crate::config::{ExchangeTarget, MAX_AGENT_TOKEN_TTL};
use crate::error::Error;
use crate::state::AuthzState;
use crate::token::{AccessClaims, TokenRequest, now};

/// Is the subject and client of the gateway's own catalogue tokens, the name edge-svc
/// goes by at vault-svc too.
pub(crate) const GATEWAY_CLIENT_ID: &str = "gatehouse-edge";

/// Describes one exchange edge-svc asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectorExchange<'a> {
    /// Is the caller's access token (a secret).
    pub(crate) subject_token: &'a str,
    /// Names the connector.
    pub(crate) connector: &'a str,
    /// Is the audience edge-svc expects; empty to take the connector's.
    pub(crate) audience: &'a str,
    /// Narrows the scopes; empty for every scope the subject and connector share.
    pub(crate) scopes: &'a [String],
}

impl AuthzState {
    /// Returns a token for the connector minted from the subject token, audited as
    /// exchanged.
    pub(crate) async fn exchange_for_connector(
        &self,
        exchange: &ConnectorExchange<'_>,
    ) -> Result<(String, AccessClaims), Error> {
        let subject = self
            .verify_access_token(exchange.subject_token)
            .await?
            .ok_or(Error::SubjectTokenInvalid)?;
        let target = self.exchange_target(&subject, exchange.connector)?;
        if !exchange.audience.is_empty() && exchange.audience != target.audience {
            return Err(Error::ExchangeForbidden(
                "the audience is not the connector's resource",
            ));
        }
        let scope = narrowed(&subject, target, exchange.scopes)?;
        let remaining = u64::try_from(subject.exp.saturating_sub(now())).unwrap_or(0);
        let ttl = self
            .config
            .access_token_ttl
            .min(MAX_AGENT_TOKEN_TTL)
            .min(std::time::Duration::from_secs(remaining));
        if ttl.is_zero() {
            return Err(Error::SubjectTokenInvalid);
        }
        let request = TokenRequest {
            subject: &subject.sub,
            audience: &target.audience,
            client_id: &subject.client_id,
            scope: &scope,
            // Revoking the subject's grant revokes what was exchanged from it.
            grant: subject.sid.as_deref(),
            ttl,
            not_after: Some(subject.exp),
            groups: &subject.groups,
            act: subject.act.clone(),
            agent: subject.agent.clone(),
        };
        let principal = self.principal_of(&subject).await?;
        self.issue(&request, TOKEN_EXCHANGE, principal)
    }

    /// Returns the gateway's own token for the connector (subject and client
    /// `gatehouse-edge`, no scopes), audited like any issued token.
    ///
    /// Edge reads a connector's catalogue before any caller exists, so no subject token
    /// can be exchanged for that; a token naming the gateway lets the connector tell
    /// catalogue reads from callers' requests.
    pub(crate) fn catalogue_token(&self, connector: &str) -> Result<(String, AccessClaims), Error> {
        let target = self
            .config
            .token_exchange
            .iter()
            .find(|target| target.connector == connector)
            .ok_or_else(|| Error::ConnectorNotFound(connector.to_owned()))?;
        let request = TokenRequest {
            subject: GATEWAY_CLIENT_ID,
            audience: &target.audience,
            client_id: GATEWAY_CLIENT_ID,
            scope: "",
            grant: None,
            ttl: self.config.access_token_ttl.min(MAX_AGENT_TOKEN_TTL),
            not_after: None,
            groups: &[],
            act: None,
            agent: None,
        };
        self.issue(
            &request,
            TOKEN_EXCHANGE,
            crate::events::client(GATEWAY_CLIENT_ID),
        )
    }

    /// Returns the connector's exchange rule when the subject's virtual server reaches it.
    fn exchange_target(
        &self,
        subject: &AccessClaims,
        connector: &str,
    ) -> Result<&ExchangeTarget, Error> {
        let virtual_server = self
            .issuer
            .resource(&subject.aud)
            .map(|resource| resource.name);
        self.config
            .token_exchange
            .iter()
            .find(|target| target.connector == connector)
            .filter(|target| {
                virtual_server
                    .as_ref()
                    .is_some_and(|name| target.virtual_servers.contains(name))
            })
            .ok_or_else(|| Error::ConnectorNotFound(connector.to_owned()))
    }
}

/// Returns the scopes of the exchanged token: those asked for (every one held by the
/// subject and accepted by the connector when none are), never more.
fn narrowed(
    subject: &AccessClaims,
    target: &ExchangeTarget,
    requested: &[String],
) -> Result<String, Error> {
    let allowed: Vec<&str> = target
        .scopes
        .iter()
        .map(String::as_str)
        .filter(|scope| subject.scope.split_whitespace().any(|held| held == *scope))
        .collect();
    if requested.is_empty() {
        return Ok(allowed.join(" "));
    }
    if requested
        .iter()
        .any(|scope| !allowed.contains(&scope.as_str()))
    {
        return Err(Error::ExchangeForbidden(
            "a requested scope is beyond the subject's or the connector's",
        ));
    }
    let mut scopes: Vec<&str> = requested.iter().map(String::as_str).collect();
    scopes.sort_unstable();
    scopes.dedup();
    Ok(scopes.join(" "))
}
