//! The issuer identity the gateway hands the authorization server: its public
//! origin and the protected resources (virtual servers) tokens are minted for.

use std::sync::{Arc, PoisonError, RwLock};

use url::Url;

use crate::error::Error;
use svc_kit::ConfigError;

/// Describes what the authorization server needs from the gateway.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// Is the public origin; its string form (without a trailing slash) is the
    /// `issuer` everywhere: metadata, `iss` parameters and JWT `iss`.
    pub issuer: Url,
    /// Lists the protected resources tokens may be minted for.
    pub resources: Vec<ProtectedResource>,
}

/// Describes one protected resource: a virtual server's canonical MCP URL and its scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedResource {
    /// Is the virtual server's name, which agent bundles list as their allowed virtual servers.
    pub name: String,
    /// Is the canonical MCP URL, the token audience.
    pub url: String,
    /// Lists the scopes the resource declares.
    pub scopes: Vec<String>,
}

/// Holds the protected resources tokens may be minted for; replaced whole when the gateway
/// serves a different set of virtual servers, shared by the issuer and the agent registry.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resources(Arc<RwLock<Arc<Vec<ProtectedResource>>>>);

impl Resources {
    fn new(resources: Vec<ProtectedResource>) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(resources))))
    }

    /// Returns the resources now in force.
    pub(crate) fn snapshot(&self) -> Arc<Vec<ProtectedResource>> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn replace(&self, resources: Vec<ProtectedResource>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(resources);
    }
}

/// Holds the validated issuer identity in the exact string forms used on the wire.
#[derive(Debug, Clone)]
pub(crate) struct IssuerIdentity {
    pub(crate) issuer: String,
    pub(crate) secure: bool,
    pub(crate) resources: Resources,
}

impl IssuerIdentity {
    pub(crate) fn new(issuer: Issuer, allow_insecure_http: bool) -> Result<Self, Error> {
        let url = issuer.issuer;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ConfigError::new("issuer", "must not have a query or fragment").into());
        }
        let secure = match url.scheme() {
            "https" => true,
            "http" if allow_insecure_http && is_loopback(&url) => false,
            "http" => {
                return Err(ConfigError::new(
                    "issuer",
                    "must be https (http only on loopback with allow_insecure_http)",
                )
                .into());
            }
            _ => return Err(ConfigError::new("issuer", "must be an https URL").into()),
        };
        Ok(Self {
            issuer: url.as_str().trim_end_matches('/').to_owned(),
            secure,
            resources: Resources::new(issuer_resources(issuer.resources)?),
        })
    }

    /// Returns the absolute URL of an endpoint at `path` under the issuer.
    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// Returns the protected resource whose canonical URL is `url`.
    pub(crate) fn resource(&self, url: &str) -> Option<ProtectedResource> {
        self.resources
            .snapshot()
            .iter()
            .find(|resource| resource.url == url)
            .cloned()
    }

    /// Returns the protected resource named `name`.
    pub(crate) fn named(&self, name: &str) -> Option<ProtectedResource> {
        self.resources
            .snapshot()
            .iter()
            .find(|resource| resource.name == name)
            .cloned()
    }

    /// Returns the only protected resource, when there is exactly one (the implied target).
    pub(crate) fn sole(&self) -> Option<ProtectedResource> {
        match self.resources.snapshot().as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        }
    }

    /// Replaces the protected resources (the gateway now serves other virtual servers).
    pub(crate) fn set_resources(&self, resources: Vec<ProtectedResource>) -> Result<(), Error> {
        self.resources.replace(issuer_resources(resources)?);
        Ok(())
    }

    /// Returns every scope some resource declares, sorted and deduplicated.
    pub(crate) fn all_scopes(&self) -> Vec<String> {
        let mut scopes: Vec<String> = self
            .resources
            .snapshot()
            .iter()
            .flat_map(|resource| resource.scopes.iter().cloned())
            .collect();
        scopes.sort();
        scopes.dedup();
        scopes
    }

    /// Returns the scope to grant for `resource` when a client asks for `requested`
    /// (the resource's declared scopes when it asks for none), or `None` when it asks
    /// for a scope that no resource of this server declares.
    ///
    /// Scopes that only *other* resources declare are dropped rather than refused: an MCP
    /// client whose resource metadata names no scopes asks for the server-wide
    /// `scopes_supported`, and RFC 6749 §3.3 lets the server grant less than asked.
    pub(crate) fn scope_for(
        &self,
        resource: &ProtectedResource,
        requested: Option<&str>,
    ) -> Option<String> {
        let Some(requested) = requested else {
            return Some(resource.scopes.join(" "));
        };
        let declared = |resource: &ProtectedResource, scope: &str| {
            resource.scopes.iter().any(|offered| offered == scope)
        };
        let mut granted = Vec::new();
        for scope in requested.split_whitespace() {
            if declared(resource, scope) {
                granted.push(scope);
            } else if !self
                .resources
                .snapshot()
                .iter()
                .any(|other| declared(other, scope))
            {
                return None;
            }
        }
        Some(granted.join(" "))
    }
}

fn issuer_resources(resources: Vec<ProtectedResource>) -> Result<Vec<ProtectedResource>, Error> {
    for resource in &resources {
        let parsed = Url::parse(&resource.url)
            .map_err(|_| ConfigError::new("resources.url", "must be an absolute URL"))?;
        if parsed.fragment().is_some() {
            return Err(ConfigError::new("resources.url", "must not have a fragment").into());
        }
    }
    Ok(resources)
}

/// Reports whether `url`'s host is a loopback address or `localhost`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(name: &str, scopes: &[&str]) -> ProtectedResource {
        ProtectedResource {
            name: name.to_owned(),
            url: format!("https://gatehouse.example/v/{name}/mcp"),
            scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
        }
    }

    fn identity() -> IssuerIdentity {
        IssuerIdentity {
            issuer: "https://gatehouse.example".to_owned(),
            secure: true,
            resources: Resources::new(vec![
                resource("crm", &["crm:read", "crm:write"]),
                resource("admin", &["gatehouse:admin"]),
            ]),
        }
    }

    #[test]
    fn replaced_resources_are_found_at_once_and_the_old_ones_are_gone() {
        let issuer = identity();
        let shared = issuer.resources.clone();
        issuer
            .set_resources(vec![resource("billing", &["billing:read"])])
            .expect("valid resources");
        assert!(issuer.named("crm").is_none());
        let billing = issuer
            .resource("https://gatehouse.example/v/billing/mcp")
            .expect("new resource");
        assert_eq!(billing.scopes, ["billing:read"]);
        assert_eq!(
            shared.snapshot().len(),
            1,
            "the agent catalogue sees the same set"
        );
        assert!(
            issuer
                .set_resources(vec![ProtectedResource {
                    url: "not a url".to_owned(),
                    ..resource("bad", &[])
                }])
                .is_err()
        );
        assert!(
            issuer.named("billing").is_some(),
            "a refused set changes nothing"
        );
    }

    #[test]
    fn a_resource_grants_its_declared_scopes_when_none_are_asked_for() {
        let issuer = identity();
        let crm = &issuer.resources.snapshot()[0];
        assert_eq!(
            issuer.scope_for(crm, None).as_deref(),
            Some("crm:read crm:write")
        );
    }

    #[test]
    fn scopes_only_other_resources_declare_are_dropped_not_granted() {
        let issuer = identity();
        let crm = &issuer.resources.snapshot()[0];
        let asked = "crm:read gatehouse:admin";
        assert_eq!(
            issuer.scope_for(crm, Some(asked)).as_deref(),
            Some("crm:read")
        );
    }

    #[test]
    fn a_scope_no_resource_declares_is_refused() {
        let issuer = identity();
        let crm = &issuer.resources.snapshot()[0];
        assert_eq!(issuer.scope_for(crm, Some("crm:read root")), None);
    }
}
