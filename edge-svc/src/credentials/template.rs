//! Renders released material into request headers or a stdio program's environment, per the
//! connector's `inject` templates.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use http::{HeaderName, HeaderValue};

use super::{CredentialError, InjectSpec, Material, Secret};

/// A connector's templates; no header templates means "where the material's kind belongs".
#[derive(Debug, Clone)]
pub struct Injection {
    connector: String,
    headers: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
}

impl Injection {
    /// Returns the injection of `connector` with `headers` templates (validated by the spec).
    pub fn new(connector: &str, headers: BTreeMap<String, String>) -> Self {
        Self {
            connector: connector.to_owned(),
            headers,
            env: BTreeMap::new(),
        }
    }

    /// Returns the injection of `connector` as its `inject` block declares it.
    pub fn of(connector: &str, spec: &InjectSpec) -> Self {
        Self {
            env: spec.env.clone(),
            ..Self::new(connector, spec.headers.clone())
        }
    }

    /// Returns the environment variables carrying `material` for a stdio program: an
    /// environment set as it is, anything else through the connector's `inject.env` templates.
    pub fn environment(
        &self,
        material: &Material,
    ) -> Result<BTreeMap<String, Secret>, CredentialError> {
        match material {
            Material::Environment(variables) => Ok(variables.clone()),
            Material::Headers(_) => Err(self.misfit("header material needs an http connector")),
            _ if self.env.is_empty() => {
                Err(self.misfit("declare `inject.env` to place this credential in the environment"))
            }
            _ => Ok(self
                .env
                .iter()
                .map(|(name, template)| (name.clone(), Secret::from(fill(template, material))))
                .collect()),
        }
    }

    /// Returns the headers carrying `material`, each marked sensitive so HTTP tooling never
    /// prints it.
    pub fn render(
        &self,
        material: &Material,
    ) -> Result<HashMap<HeaderName, HeaderValue>, CredentialError> {
        let pairs = match material {
            Material::Headers(headers) => headers
                .iter()
                .map(|(name, value)| (name.clone(), value.expose().to_owned()))
                .collect(),
            Material::Environment(_) => {
                return Err(self.misfit("environment material needs a stdio connector"));
            }
            _ if self.headers.is_empty() => vec![default_header(material)],
            _ => self
                .headers
                .iter()
                .map(|(name, template)| (name.clone(), fill(template, material)))
                .collect(),
        };
        pairs
            .into_iter()
            .map(|(name, value)| {
                let name = HeaderName::try_from(name.as_str())
                    .map_err(|_| self.misfit("a header name is invalid"))?;
                let mut value = HeaderValue::try_from(value)
                    .map_err(|_| self.misfit("a header value is not visible ascii"))?;
                value.set_sensitive(true);
                Ok((name, value))
            })
            .collect()
    }

    fn misfit(&self, reason: &'static str) -> CredentialError {
        CredentialError::Injection {
            connector: self.connector.clone(),
            reason,
        }
    }
}

/// Where a kind of material goes when the connector declares no template.
fn default_header(material: &Material) -> (String, String) {
    match material {
        Material::ApiKey { header, key } => (header.clone(), key.expose().to_owned()),
        Material::Basic { username, password } => {
            let pair = format!("{username}:{}", password.expose());
            (
                "authorization".to_owned(),
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ),
            )
        }
        _ => ("authorization".to_owned(), fill("Bearer {token}", material)),
    }
}

/// Fills `{token}`/`{key}` with the secret and `{username}` with a basic-auth user name.
fn fill(template: &str, material: &Material) -> String {
    let (secret, username) = match material {
        Material::Bearer(token) => (token.expose(), ""),
        Material::ApiKey { key, .. } => (key.expose(), ""),
        Material::Basic { username, password } => (password.expose(), username.as_str()),
        Material::Headers(_) | Material::Environment(_) => ("", ""),
    };
    template
        .replace("{token}", secret)
        .replace("{key}", secret)
        .replace("{username}", username)
}
