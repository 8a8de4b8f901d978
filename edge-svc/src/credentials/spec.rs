//! How a connector's downstream credential is declared in the gateway file.
//!
//! The gateway file is the one source of truth: `gatehouse up` derives vault-svc's connector
//! table from these declarations, and edge renders the `inject` templates with what vault-svc
//! releases.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// Whose credential a connector's calls carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialMode {
    /// Nothing is injected (the default): the connector needs no credential or has a static header.
    #[default]
    None,
    /// The connector's one service-account credential, set by an administrator.
    Shared,
    /// The calling member's own credential, connected through the first-use link.
    PerMember,
    /// An RFC 8693 token authz-svc exchanges from the caller's own access token, with this
    /// connector as its audience and `act` naming the agent (for connectors that trust
    /// Gatehouse's issuer); nothing is stored in vault-svc.
    TokenExchange,
}

/// The `credentials:` block of one connector.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSpec {
    /// Whose credential is used.
    #[serde(default)]
    pub mode: CredentialMode,
    /// Where the material goes; by default where its kind belongs (a bearer token in
    /// `Authorization: Bearer`, an API key in its own header).
    #[serde(default)]
    pub inject: InjectSpec,
    /// The downstream OAuth provider members connect to (`per_member` only).
    #[serde(default)]
    pub oauth: Option<OAuthSpec>,
    /// Members paste their own API key through the first-use link (`per_member` only).
    #[serde(default)]
    pub api_key: Option<ApiKeySpec>,
    /// Rotates the shared secret on a schedule through a hook (`shared` only).
    #[serde(default)]
    pub rotation: Option<RotationSpec>,
    /// The audience and scopes of exchanged tokens (`token_exchange` only).
    #[serde(default)]
    pub exchange: Option<ExchangeSpec>,
}

/// What tokens exchanged for a connector say: the audience it checks and the scopes it takes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeSpec {
    /// The connector's resource identifier, the exchanged tokens' `aud`; by default the
    /// connector's URL without user info, query or fragment.
    #[serde(default)]
    pub audience: Option<String>,
    /// The scopes an exchanged token may carry, within the caller's own (none by default).
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// Scheduled rotation of a shared secret: every `every`, the hook makes a new value; the
/// previous one stays valid for `overlap`, then the hook retires it (vault-svc runs it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationSpec {
    /// Time between rotations, such as `30d`.
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// How long the previous value stays valid after a rotation.
    #[serde(with = "humantime_serde", default)]
    pub overlap: Duration,
    /// What makes and retires values, written `{command: [...]}` or `{http: {url: ...}}`
    /// (a one-key map, not a YAML `!tag`, as every other choice in the gateway file).
    #[serde(with = "serde_norway::with::singleton_map")]
    pub hook: RotationHookSpec,
    /// Failed attempts in a row before the rotation needs attention (vault-svc's default: 5).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First retry delay, doubling per failure (vault-svc's default: 30 s).
    #[serde(with = "humantime_serde", default)]
    pub backoff: Option<Duration>,
    /// Bound on one hook call (vault-svc's default: 60 s).
    #[serde(with = "humantime_serde", default)]
    pub timeout: Option<Duration>,
}

/// A rotation hook: a program run without a shell, or an HTTP endpoint called with POST.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RotationHookSpec {
    /// The program and its arguments.
    Command(Vec<String>),
    /// The endpoint.
    Http {
        /// Its URL.
        url: url::Url,
        /// The environment variable holding a bearer token for it, so the file holds none.
        #[serde(default)]
        bearer_env: Option<String>,
    },
}

/// A per-member API key: the header it travels in when no `inject` template says otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySpec {
    /// The header name, `X-Api-Key` by default.
    #[serde(default = "default_api_key_header")]
    pub header: String,
}

fn default_api_key_header() -> String {
    "X-Api-Key".to_owned()
}

/// Templates that place credential material into a request.
///
/// `{token}` and `{key}` stand for the secret itself (a bearer token, an API key or a
/// password), `{username}` for a basic-auth user name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectSpec {
    /// Header name → value template, for example `Authorization: "Bearer {token}"`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Environment variable → value template, for stdio connectors.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A downstream OAuth provider: static endpoints, or discovery from `resource` (RFC 9728).
///
/// The client secret is named by an environment variable so that the gateway file holds no
/// secret and can be committed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSpec {
    /// The client id Gatehouse registered at the provider.
    pub client_id: String,
    /// The environment variable holding the client secret, for confidential clients.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// The provider's authorization endpoint.
    #[serde(default)]
    pub authorization_endpoint: Option<url::Url>,
    /// The provider's token endpoint.
    #[serde(default)]
    pub token_endpoint: Option<url::Url>,
    /// The provider's RFC 7009 revocation endpoint.
    #[serde(default)]
    pub revocation_endpoint: Option<url::Url>,
    /// Scopes to request.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The connector's resource URL (RFC 8707 `resource`; RFC 9728 discovery without endpoints).
    #[serde(default)]
    pub resource: Option<url::Url>,
}

/// The placeholders a template may use.
const PLACEHOLDERS: [&str; 3] = ["token", "key", "username"];

impl CredentialSpec {
    /// Checks the block against its connector's transport (`kind` is `stdio`, `http` or `sse`:
    /// headers go to the two HTTP transports, environment variables to stdio); errors are
    /// `(field below credentials, reason)`.
    pub fn validate(&self, kind: &str) -> Result<(), (String, String)> {
        let declared = !self.inject.headers.is_empty() || !self.inject.env.is_empty();
        if self.mode == CredentialMode::None {
            if declared || self.oauth.is_some() || self.api_key.is_some() || self.rotation.is_some()
            {
                return Err((
                    "mode".into(),
                    "is `none`: set `shared` or `per_member` to inject a credential".into(),
                ));
            }
            return Ok(());
        }
        if self.mode == CredentialMode::TokenExchange {
            return self.validate_exchange(kind);
        }
        if self.exchange.is_some() {
            return Err((
                "exchange".into(),
                "applies to `token_exchange` credentials".into(),
            ));
        }
        match kind {
            "stdio" if !self.inject.headers.is_empty() => {
                return Err((
                    "inject.headers".into(),
                    "applies to `http` and `sse` connectors; use `inject.env` for stdio".into(),
                ));
            }
            "http" | "sse" if !self.inject.env.is_empty() => {
                return Err((
                    "inject.env".into(),
                    format!("applies to stdio connectors; use `inject.headers` for {kind}"),
                ));
            }
            _ => {}
        }
        for (name, template) in &self.inject.env {
            check_template(template).map_err(|reason| (format!("inject.env.{name}"), reason))?;
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err((
                    format!("inject.env.{name}"),
                    "is not an environment variable name".into(),
                ));
            }
        }
        check_headers(&self.inject.headers)?;
        if let Some(api_key) = &self.api_key {
            if self.mode != CredentialMode::PerMember {
                return Err((
                    "api_key".into(),
                    "applies to `per_member` credentials; shared keys are set with `gatehouse credentials set`".into(),
                ));
            }
            if self.oauth.is_some() {
                return Err((
                    "api_key".into(),
                    "set `api_key` or `oauth`, not both".into(),
                ));
            }
            http::HeaderName::try_from(api_key.header.as_str()).map_err(|_| {
                (
                    "api_key.header".to_owned(),
                    "is not a header name".to_owned(),
                )
            })?;
        }
        if let Some(rotation) = &self.rotation {
            if self.mode != CredentialMode::Shared {
                return Err(("rotation".into(), "applies to `shared` credentials".into()));
            }
            if rotation.every.is_zero() || rotation.overlap >= rotation.every {
                return Err((
                    "rotation".into(),
                    "`every` must be positive and longer than `overlap`".into(),
                ));
            }
            if matches!(&rotation.hook, RotationHookSpec::Command(command) if command.is_empty()) {
                return Err(("rotation.hook.command".into(), "must name a program".into()));
            }
        }
        match (&self.oauth, self.mode) {
            (Some(_), CredentialMode::Shared) => Err((
                "oauth".into(),
                "applies to `per_member` credentials; shared ones are set with `gatehouse credentials set`".into(),
            )),
            (Some(oauth), _) => oauth.validate(),
            (None, _) => Ok(()),
        }
    }
}

impl CredentialSpec {
    /// Checks a `token_exchange` block: an HTTP connector (a stdio program's environment is
    /// fixed at launch, while exchanged tokens live minutes) with nothing stored to inject
    /// but the exchanged token, in `Authorization: Bearer` unless a header template says else.
    fn validate_exchange(&self, kind: &str) -> Result<(), (String, String)> {
        if kind == "stdio" {
            return Err((
                "mode".into(),
                "`token_exchange` applies to `http` and `sse` connectors".into(),
            ));
        }
        if !self.inject.env.is_empty() {
            return Err((
                "inject.env".into(),
                "applies to stdio connectors; use `inject.headers`".into(),
            ));
        }
        for (field, declared) in [
            ("oauth", self.oauth.is_some()),
            ("api_key", self.api_key.is_some()),
            ("rotation", self.rotation.is_some()),
        ] {
            if declared {
                return Err((
                    field.into(),
                    "does not apply to `token_exchange`: the token comes from authz-svc".into(),
                ));
            }
        }
        check_headers(&self.inject.headers)?;
        let audience = self
            .exchange
            .as_ref()
            .and_then(|exchange| exchange.audience.as_deref());
        if audience.is_some_and(|audience| !is_resource_identifier(audience)) {
            return Err((
                "exchange.audience".into(),
                "must be an absolute URL without a fragment (a resource identifier, RFC 8707 §2)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Tells whether `audience` can name a resource: an absolute URL without a fragment.
fn is_resource_identifier(audience: &str) -> bool {
    url::Url::parse(audience).is_ok_and(|url| url.fragment().is_none())
}

impl OAuthSpec {
    fn validate(&self) -> Result<(), (String, String)> {
        if self.client_id.is_empty() {
            return Err(("oauth.client_id".into(), "must not be empty".into()));
        }
        let static_endpoints =
            self.authorization_endpoint.is_some() && self.token_endpoint.is_some();
        if !static_endpoints && self.resource.is_none() {
            return Err((
                "oauth".into(),
                "set authorization_endpoint and token_endpoint, or resource for discovery".into(),
            ));
        }
        Ok(())
    }
}

/// Checks header templates: real header names, known placeholders.
fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), (String, String)> {
    for (name, template) in headers {
        check_template(template).map_err(|reason| (format!("inject.headers.{name}"), reason))?;
        http::HeaderName::try_from(name.as_str()).map_err(|_| {
            (
                format!("inject.headers.{name}"),
                "is not a header name".into(),
            )
        })?;
    }
    Ok(())
}

/// Refuses placeholders edge cannot fill, so a typo fails at start rather than per call.
fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| "has an unclosed `{`".to_owned())?;
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "uses unknown placeholder `{{{name}}}` (known: {{token}}, {{key}}, {{username}})"
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{RotationHookSpec, RotationSpec};

    #[test]
    fn a_rotation_hook_is_a_one_key_map() {
        let command: RotationSpec = serde_norway::from_str(
            "every: 30d\noverlap: 1h\nhook: {command: [/usr/local/bin/rotate, --for, crm]}\n",
        )
        .expect("command hook");
        assert!(
            matches!(&command.hook, RotationHookSpec::Command(argv) if argv.len() == 3),
            "{command:?}"
        );
        let http: RotationSpec = serde_norway::from_str(
            "every: 7d\nhook:\n  http: {url: \"https://keys.example/rotate\", bearer_env: ROTATE_TOKEN}\n",
        )
        .expect("http hook");
        assert!(
            matches!(&http.hook, RotationHookSpec::Http { bearer_env: Some(name), .. } if name == "ROTATE_TOKEN"),
            "{http:?}"
        );
    }
}
