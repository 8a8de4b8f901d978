//! The rules a new agent bundle is checked against before it is stored.

use jsonwebtoken::jwk::JwkSet;

use super::NewAgent;
use crate::error::Error;
use crate::issuer::ProtectedResource;
use crate::store::{AgentAuthentication, WorkloadIssuer};

/// Caps a bundle name: it appears in listings, logs and audit records.
const MAX_NAME: usize = 64;

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidRequest(reason.into())
}

/// Checks `agent`; with a `catalogue`, its virtual servers and scopes must exist there.
pub(super) fn new_agent(
    agent: &NewAgent,
    catalogue: Option<&[ProtectedResource]>,
) -> Result<(), Error> {
    let name_ok = !agent.name.is_empty()
        && agent.name.len() <= MAX_NAME
        && agent
            .name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
    if !name_ok {
        return Err(invalid(
            "name must be 1-64 characters of letters, digits, '-', '_' or '.'",
        ));
    }
    if agent.owner.trim().is_empty() {
        return Err(invalid("owner is required"));
    }
    if agent.virtual_servers.is_empty() {
        return Err(invalid("at least one virtual server is required"));
    }
    if let Some(catalogue) = catalogue {
        for name in &agent.virtual_servers {
            if !catalogue.iter().any(|resource| &resource.name == name) {
                return Err(invalid(format!("unknown virtual server {name}")));
            }
        }
        for scope in &agent.scopes {
            let declared = catalogue
                .iter()
                .filter(|resource| agent.virtual_servers.contains(&resource.name))
                .any(|resource| resource.scopes.contains(scope));
            if !declared {
                return Err(invalid(format!(
                    "scope {scope} is not declared by the agent's virtual servers"
                )));
            }
        }
    }
    if agent.client_id.as_deref().is_some_and(str::is_empty) {
        return Err(invalid("client_id must not be empty"));
    }
    super::quota::parse(&agent.quotas)?;
    authentication(&agent.authentication)
}

fn authentication(authentication: &AgentAuthentication) -> Result<(), Error> {
    match authentication {
        AgentAuthentication::ClientSecret => Ok(()),
        AgentAuthentication::PrivateKeyJwt { jwks } => public_jwks(jwks),
        AgentAuthentication::PrivateKeyJwtUri { jwks_uri } => jwks_url(jwks_uri),
        AgentAuthentication::WorkloadIdentity(issuer) => workload(issuer),
    }
}

/// Checks that `uri` is an https URL (http only on loopback, for development); where it
/// may point is checked again at every fetch, after name resolution.
fn jwks_url(uri: &str) -> Result<(), Error> {
    let url = url::Url::parse(uri).map_err(|_| invalid("jwks_uri must be a URL"))?;
    let secure =
        url.scheme() == "https" || (url.scheme() == "http" && crate::issuer::is_loopback(&url));
    if !secure || url.host().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("jwks_uri must be https (http only on loopback)"));
    }
    Ok(())
}

/// Checks that `jwks` is a JWK Set of public keys only.
pub(crate) fn public_jwks(jwks: &serde_json::Value) -> Result<(), Error> {
    let set: JwkSet =
        serde_json::from_value(jwks.clone()).map_err(|_| invalid("jwks is not a JWK Set"))?;
    if set.keys.is_empty() {
        return Err(invalid("jwks holds no key"));
    }
    let private = jwks["keys"]
        .as_array()
        .is_some_and(|keys| keys.iter().any(|key| key.get("d").is_some()));
    if private {
        return Err(invalid("jwks must hold public keys only"));
    }
    Ok(())
}

fn workload(issuer: &WorkloadIssuer) -> Result<(), Error> {
    url::Url::parse(&issuer.issuer).map_err(|_| invalid("workload issuer must be a URL"))?;
    if issuer.subject_pattern.is_empty() {
        return Err(invalid("workload subject_pattern is required"));
    }
    match (&issuer.jwks, &issuer.jwks_uri) {
        (Some(jwks), None) => public_jwks(jwks),
        (None, Some(uri)) => jwks_url(uri),
        _ => Err(invalid(
            "workload identity needs exactly one of jwks or jwks_uri",
        )),
    }
}

/// Reports whether `subject` matches `pattern`, where `*` matches any run of characters
/// (including none) and everything else matches itself.
pub(crate) fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = subject.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn subject_patterns_match_like_globs() {
        assert!(subject_matches(
            "system:serviceaccount:ci:*",
            "system:serviceaccount:ci:runner"
        ));
        assert!(!subject_matches(
            "system:serviceaccount:ci:*",
            "system:serviceaccount:prod:runner"
        ));
        assert!(subject_matches(
            "spiffe://corp/*/agent",
            "spiffe://corp/ns/a/agent"
        ));
        assert!(!subject_matches(
            "spiffe://corp/*/agent",
            "spiffe://corp/ns/a/agent2"
        ));
        assert!(subject_matches("exact", "exact"));
        assert!(!subject_matches("exact", "exactly"));
        assert!(subject_matches("a*b*c", "abc"));
        assert!(!subject_matches("ab*ba", "aba"));
    }
}
