//! The authorization server inside `gatehouse up`: same origin as the MCP endpoints.

use std::path::Path;
use std::sync::Arc;

use authz_svc::{AuthorizationConfig, AuthzState, Issuer, ProtectedResource, StoreConfig};
use edge_svc::auth::{JwksVerifier, Revocations};
use edge_svc::config::HttpFace;
use edge_svc::http::ResourceAuth;
use edge_svc::spec::{AuthMode, GatewaySpec};
use serde::Deserialize;
use serde::de::IgnoredAny;

/// The gatehouse file as authz-svc reads it: its own section, the others left to edge.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorizationFile {
    #[serde(default)]
    authorization: AuthorizationConfig,
    #[serde(default)]
    policies: authz_svc::PolicyConfig,
    #[serde(default)]
    audit: AuditSection,
    #[serde(default)]
    admin: AdminSection,
    #[serde(default)]
    directory: Option<crate::apply::DirectorySection>,
    #[serde(default, rename = "connectors")]
    _connectors: IgnoredAny,
    #[serde(default, rename = "virtual_servers")]
    _virtual_servers: IgnoredAny,
    #[serde(default, rename = "rate_limits")]
    _rate_limits: IgnoredAny,
    #[serde(default, rename = "dlp")]
    _dlp: IgnoredAny,
}

/// The `audit:` section: where audit-svc streams events and how long it keeps them.
///
/// Lists of sinks are awkward in environment variables, so the one gatehouse file holds them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AuditSection {
    pub(crate) sinks: Vec<audit_svc::SinkConfig>,
    pub(crate) retention: audit_svc::RetentionConfig,
}

/// The `admin:` section: who administers this gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AdminSection {
    /// The group whose members may hold the admin scope.
    pub(crate) group: String,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            group: crate::admin::DEFAULT_ADMIN_GROUP.to_owned(),
        }
    }
}

/// The sections of the gatehouse file that the backends read.
#[derive(Debug)]
pub(crate) struct Sections {
    pub(crate) authorization: AuthorizationConfig,
    pub(crate) policies: authz_svc::PolicyConfig,
    pub(crate) audit: AuditSection,
    pub(crate) admin: AdminSection,
    /// The members and groups `gatehouse apply` reconciles the directory with, when declared.
    pub(crate) directory: Option<crate::apply::DirectorySection>,
}

/// Parses the `authorization:`, `policies:` and `audit:` sections; errors name the field path
/// and line like edge's do.
pub(crate) fn sections(text: &str, source: &str) -> Result<Sections, String> {
    let deserializer = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, AuthorizationFile>(deserializer)
        .map(|file| Sections {
            authorization: file.authorization,
            policies: file.policies,
            audit: file.audit,
            admin: file.admin,
            directory: file.directory,
        })
        .map_err(|error| format!("{source}: {}: {}", error.path(), error.inner()))
}

/// Opens the authorization server for every virtual server that requires OAuth.
///
/// On a loopback listener the issuer is `http://`; that is allowed (with a warning) because
/// nothing outside this machine can reach it, and refused anywhere else.
pub(crate) async fn open(
    mut config: AuthorizationConfig,
    spec: &GatewaySpec,
    face: &HttpFace,
    data: &Path,
    access: &edge_svc::access::Access,
) -> anyhow::Result<(AuthzState, ResourceAuth)> {
    let loopback = face.public_url.host_str().is_some_and(is_loopback);
    if loopback && face.public_url.scheme() == "http" && !config.allow_insecure_http {
        tracing::warn!(
            "loopback listener: the authorization server runs over plain http (development only)"
        );
        config.allow_insecure_http = true;
    }
    let issuer = Issuer {
        issuer: face.public_url.clone(),
        resources: resources(spec, face, access),
    };
    let store = StoreConfig::Sqlite {
        path: data.join("authz.db"),
    };
    let revocations = Revocations::default();
    let state = AuthzState::open(config, issuer, store)
        .await?
        .with_revocation_listener(Arc::new(RevocationFeed(revocations.clone())));
    let jwks_url = url::Url::parse(&format!("{}/jwks.json", state.issuer()))?;
    let verifier = revocations.guard(Arc::new(JwksVerifier::new(
        state.issuer().to_owned(),
        jwks_url,
    )));
    let auth = ResourceAuth {
        verifier,
        issuer: state.issuer().to_owned(),
    };
    Ok((state, auth))
}

/// Returns the protected resources of the authorization server: every virtual server `spec`
/// serves with OAuth, with the scopes its policy declares now, and the admin API.
pub(crate) fn resources(
    spec: &GatewaySpec,
    face: &HttpFace,
    access: &edge_svc::access::Access,
) -> Vec<ProtectedResource> {
    spec.virtual_servers
        .iter()
        .filter(|server| server.auth == AuthMode::Oauth)
        .map(|server| ProtectedResource {
            name: server.name.clone(),
            url: face.resource_url(&server.name),
            scopes: access.scopes_supported(&server.name),
        })
        // The admin API is a protected resource of the same authorization server.
        .chain(std::iter::once(crate::admin::protected_resource(face)))
        .collect()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Carries the authorization server's revocations to edge at once, in this process.
#[derive(Debug)]
struct RevocationFeed(Revocations);

impl authz_svc::RevocationListener for RevocationFeed {
    fn token_revoked(&self, jti: &str, expires_at: i64) {
        self.0
            .revoke_token(jti, u64::try_from(expires_at).unwrap_or(0));
    }

    fn grant_revoked(&self, grant_id: &str) {
        self.0.revoke_grant(grant_id);
    }

    fn agent_revoked(&self, client_id: &str, expires_at: i64) {
        self.0
            .revoke_agent(client_id, u64::try_from(expires_at).unwrap_or(0));
    }

    fn member_revoked(&self, member_id: &str, revoked_at: i64, expires_at: i64) {
        self.0.revoke_member(
            member_id,
            u64::try_from(revoked_at).unwrap_or(0),
            u64::try_from(expires_at).unwrap_or(0),
        );
    }
}

/// Shows edge the directory's current groups of provisioned members, in this process.
#[derive(Debug)]
pub(crate) struct DirectoryGroups(pub(crate) authz_svc::DirectoryView);

impl edge_svc::access::MemberGroups for DirectoryGroups {
    fn groups(&self, member_id: &str) -> Option<Vec<String>> {
        self.0.groups(member_id)
    }
}

/// Purges an offboarded member's per-user credentials in the in-process vault-svc.
#[derive(Debug)]
pub(crate) struct VaultPurge(pub(crate) vault_svc::Vault);

#[async_trait::async_trait]
impl authz_svc::CredentialPurge for VaultPurge {
    async fn purge_member(&self, member_id: &str) -> Result<(), String> {
        self.0
            .revoke_principal(
                vault_svc::secret::Owner::Member(member_id.to_owned()),
                "member deactivated or deleted by scim",
            )
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    }
}
