//! Conversions between the wire types of `gatehouse.vault.v1` and the domain;
//! validation failures are `InvalidArgument` and never echo a value.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proto::common::v1 as common;
use proto::vault::v1 as pb;

use crate::consent::ConsentLink;
use crate::credential::{
    ClientCredentials, CredentialKind, CredentialRecord, CredentialStatus, Material,
};
use crate::error::Error;
use crate::secret::{Owner, SecretText};
use crate::vault::{ConnectorHealth, CredentialQuery, HealthState, Released};

/// Is a decoded SetSharedCredential request.
#[derive(Debug)]
pub(super) struct SharedCommand {
    pub(super) connector: String,
    pub(super) material: Material,
    pub(super) expires_at: Option<i64>,
    pub(super) description: String,
}

fn invalid(field: &'static str, reason: &'static str) -> Error {
    Error::InvalidArgument { field, reason }
}

/// Returns the domain query of a GetCredential request.
pub(super) fn credential_query(
    request: pb::GetCredentialRequest,
) -> Result<CredentialQuery, Error> {
    let principal = request
        .principal
        .ok_or_else(|| invalid("principal", "is required"))?;
    if request.connector.is_empty() {
        return Err(invalid("connector", "must not be empty"));
    }
    let member_id = principal
        .member
        .map(|member| member.id)
        .filter(|id| !id.is_empty());
    let agent_client_id = principal
        .agent
        .map(|agent| agent.client_id)
        .filter(|id| !id.is_empty());
    if member_id.is_none() && agent_client_id.is_none() {
        return Err(invalid("principal", "must name a member or an agent"));
    }
    Ok(CredentialQuery {
        member_id,
        agent_client_id,
        connector: request.connector,
        trace_id: request
            .metadata
            .map(|metadata| metadata.trace_id)
            .unwrap_or_default(),
    })
}

fn secret(value: Option<common::Secret>, field: &'static str) -> Result<SecretText, Error> {
    let value = value
        .map(|secret| SecretText::from(secret.value))
        .unwrap_or_default();
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    Ok(value)
}

fn wire(secret: &SecretText) -> Option<common::Secret> {
    Some(common::Secret {
        value: secret.expose().to_owned(),
    })
}

/// Returns the domain material of wire material.
fn material(material: pb::CredentialMaterial) -> Result<Material, Error> {
    use pb::credential_material::Kind;
    let kind = material
        .kind
        .ok_or_else(|| invalid("material", "is required"))?;
    let secrets = |map: std::collections::HashMap<String, common::Secret>, field| {
        map.into_iter()
            .map(|(name, value)| Ok((name, secret(Some(value), field)?)))
            .collect::<Result<std::collections::BTreeMap<_, _>, Error>>()
    };
    Ok(match kind {
        Kind::Bearer(bearer) => Material::Bearer {
            token: secret(bearer.token, "material.bearer.token")?,
        },
        Kind::ApiKey(key) => Material::ApiKey {
            header_name: key.header_name,
            key: secret(key.key, "material.api_key.key")?,
        },
        Kind::Basic(basic) => Material::Basic {
            username: basic.username,
            password: secret(basic.password, "material.basic.password")?,
        },
        Kind::Environment(environment) => Material::Environment {
            variables: secrets(environment.variables, "material.environment")?,
        },
        Kind::Headers(headers) => Material::Headers {
            headers: secrets(headers.headers, "material.headers")?,
        },
    })
}

fn to_wire(material: &Material) -> pb::CredentialMaterial {
    use pb::credential_material::Kind;
    let kind = match material {
        Material::Bearer { token } => Kind::Bearer(pb::BearerToken { token: wire(token) }),
        Material::ApiKey { header_name, key } => Kind::ApiKey(pb::ApiKey {
            header_name: header_name.clone(),
            key: wire(key),
        }),
        Material::Basic { username, password } => Kind::Basic(pb::BasicAuth {
            username: username.clone(),
            password: wire(password),
        }),
        Material::Environment { variables } => Kind::Environment(pb::Environment {
            variables: variables
                .iter()
                .filter_map(|(name, value)| Some((name.clone(), wire(value)?)))
                .collect(),
        }),
        Material::Headers { headers } => Kind::Headers(pb::Headers {
            headers: headers
                .iter()
                .filter_map(|(name, value)| Some((name.clone(), wire(value)?)))
                .collect(),
        }),
        // The domain releases OAuth credentials as bearer tokens only.
        Material::OauthGrant(grant) => Kind::Bearer(pb::BearerToken {
            token: wire(&grant.access_token),
        }),
        Material::OauthClientCredentials(credentials) => Kind::Bearer(pb::BearerToken {
            token: credentials.access_token.as_ref().and_then(wire),
        }),
    };
    pb::CredentialMaterial { kind: Some(kind) }
}

/// Returns the decoded SetSharedCredential request.
pub(super) fn shared_credential(
    request: pb::SetSharedCredentialRequest,
) -> Result<SharedCommand, Error> {
    use pb::set_shared_credential_request::Secret;
    if request.connector.is_empty() {
        return Err(invalid("connector", "must not be empty"));
    }
    let material = match request
        .secret
        .ok_or_else(|| invalid("secret", "is required"))?
    {
        Secret::Material(wire) => material(wire)?,
        Secret::OauthClientCredentials(pair) => {
            Material::OauthClientCredentials(ClientCredentials {
                token_endpoint: pair.token_url,
                client_id: pair.client_id,
                client_secret: secret(
                    pair.client_secret,
                    "oauth_client_credentials.client_secret",
                )?,
                scopes: pair.scopes,
                audience: Some(pair.audience).filter(|audience| !audience.is_empty()),
                access_token: None,
            })
        }
    };
    Ok(SharedCommand {
        connector: request.connector,
        material,
        expires_at: request.expires_at.map(|time| micros(&time)),
        description: request.description,
    })
}

/// Returns the wire credential of released material.
pub(super) fn credential(released: Released) -> pb::Credential {
    pb::Credential {
        credential_id: released.credential_id,
        version: released.version,
        material: Some(to_wire(&released.material)),
        expires_at: released.expires_at.map(timestamp),
    }
}

/// Returns the wire consent request of a link.
pub(super) fn consent(link: ConsentLink) -> pb::ConsentRequired {
    pb::ConsentRequired {
        authorization_url: link.url,
        expires_at: Some(timestamp(link.expires_at)),
        kind: pb::ConsentKind::Oauth.into(),
        reconnect: link.reconnect,
    }
}

/// Returns a credential's metadata, never its material.
pub(super) fn info(record: &CredentialRecord) -> pb::CredentialInfo {
    let ownership = match record.key.owner {
        Owner::Shared => pb::CredentialOwnership::Shared,
        Owner::Member(_) => pb::CredentialOwnership::Member,
        Owner::Agent(_) => pb::CredentialOwnership::Agent,
    };
    pb::CredentialInfo {
        credential_id: record.id.clone(),
        connector: record.key.connector.clone(),
        ownership: ownership.into(),
        owner_id: record.key.owner.id().to_owned(),
        kind: kind(record.kind).into(),
        status: status(record.status).into(),
        version: record.version,
        created_at: Some(timestamp(record.created_at)),
        updated_at: Some(timestamp(record.updated_at)),
        expires_at: record.expires_at.map(timestamp),
        last_used_at: None,
        description: record.description.clone(),
    }
}

fn kind(kind: CredentialKind) -> pb::CredentialKind {
    match kind {
        CredentialKind::Bearer => pb::CredentialKind::Bearer,
        CredentialKind::ApiKey => pb::CredentialKind::ApiKey,
        CredentialKind::Basic => pb::CredentialKind::Basic,
        CredentialKind::Environment => pb::CredentialKind::Environment,
        CredentialKind::Headers => pb::CredentialKind::Headers,
        CredentialKind::OauthGrant => pb::CredentialKind::OauthGrant,
        CredentialKind::OauthClientCredentials => pb::CredentialKind::OauthClientCredentials,
    }
}

fn status(status: CredentialStatus) -> pb::CredentialStatus {
    match status {
        CredentialStatus::Active => pb::CredentialStatus::Active,
        CredentialStatus::Expired => pb::CredentialStatus::Expired,
        CredentialStatus::RefreshFailing => pb::CredentialStatus::RefreshFailing,
        CredentialStatus::Unreachable => pb::CredentialStatus::Unreachable,
        CredentialStatus::NeedsAttention => pb::CredentialStatus::NeedsAttention,
    }
}

/// Returns the stored statuses a filter names; `None` when it names only
/// statuses no stored credential has (revoked credentials are purged, and
/// rotation is not implemented), so the answer is an empty page.
pub(super) fn statuses(values: &[i32]) -> Result<Option<Vec<CredentialStatus>>, Error> {
    let mut statuses = Vec::new();
    for value in values {
        match pb::CredentialStatus::try_from(*value)
            .map_err(|_| invalid("statuses", "unknown status"))?
        {
            pb::CredentialStatus::Unspecified => return Err(invalid("statuses", "unknown status")),
            pb::CredentialStatus::Active => statuses.push(CredentialStatus::Active),
            pb::CredentialStatus::Expired => statuses.push(CredentialStatus::Expired),
            pb::CredentialStatus::RefreshFailing => statuses.push(CredentialStatus::RefreshFailing),
            pb::CredentialStatus::Unreachable => statuses.push(CredentialStatus::Unreachable),
            pb::CredentialStatus::NeedsAttention => statuses.push(CredentialStatus::NeedsAttention),
            pb::CredentialStatus::Rotating | pb::CredentialStatus::Revoked => {}
        }
    }
    if !values.is_empty() && statuses.is_empty() {
        return Ok(None);
    }
    Ok(Some(statuses))
}

/// Returns the id a page token continues after.
pub(super) fn page_token(token: &str) -> Result<String, Error> {
    if token.is_empty() {
        return Ok(String::new());
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid("page_token", "unusable"))?;
    let id = String::from_utf8(bytes).map_err(|_| invalid("page_token", "unusable"))?;
    if !id.starts_with("cred_") {
        return Err(invalid("page_token", "unusable"));
    }
    Ok(id)
}

/// Returns the page token continuing after `id`.
pub(super) fn encode_page_token(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// Returns a connector's wire health report.
pub(super) fn health(report: ConnectorHealth) -> pb::ConnectorHealthReport {
    let state = match report.state {
        HealthState::Healthy => pb::HealthState::Healthy,
        HealthState::AuthFailing => pb::HealthState::AuthFailing,
        HealthState::RefreshFailing => pb::HealthState::RefreshFailing,
        HealthState::Unreachable => pb::HealthState::Unreachable,
    };
    pb::ConnectorHealthReport {
        connector: report.connector,
        state: state.into(),
        shared_credential_failing: report.shared_credential_failing,
        failing_member_ids: report.failing_member_ids,
        detail: report.detail,
        checked_at: Some(timestamp(crate::credential::now_micros())),
    }
}

fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1000).unwrap_or(0),
    }
}

fn micros(time: &prost_types::Timestamp) -> i64 {
    time.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(time.nanos) / 1000)
}
