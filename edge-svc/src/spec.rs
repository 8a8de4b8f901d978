//! The declarative gateway description: connectors and the virtual servers built from them.
//!
//! Parsed from YAML with errors that name the field path and the line, then validated as a
//! whole (unique names, known connector references, valid globs) before anything starts.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::connector::{HttpConfig, SseConfig, StdioConfig, Transport};
use crate::credentials::CredentialSpec;

/// The whole declared gateway: every connector and every virtual server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    /// Downstream MCP servers, each reachable over exactly one transport.
    #[serde(default)]
    pub connectors: Vec<ConnectorSpec>,
    /// Curated MCP endpoints served at `/v/{name}/mcp`.
    #[serde(default)]
    pub virtual_servers: Vec<VirtualServerSpec>,
    /// The authorization server's section, read by authz-svc; edge only tolerates its presence.
    #[serde(default)]
    pub authorization: Option<serde::de::IgnoredAny>,
    /// The policy section (Cedar, constraints, scopes), read by authz-svc's policy store.
    #[serde(default)]
    pub policies: Option<serde::de::IgnoredAny>,
    /// The audit section (SIEM sinks, retention), read by audit-svc.
    #[serde(default)]
    pub audit: Option<serde::de::IgnoredAny>,
    /// The admin API's section (the administrators' group), read by `gatehouse up`.
    #[serde(default)]
    pub admin: Option<serde::de::IgnoredAny>,
    /// The directory section (members and groups), reconciled by `gatehouse apply`.
    #[serde(default)]
    pub directory: Option<serde::de::IgnoredAny>,
    /// Rate limits edge enforces on every call; none by default.
    #[serde(default)]
    pub rate_limits: crate::quota::RateLimitsSpec,
    /// Input inspection and output masking: custom detectors and per-call rules.
    #[serde(default)]
    pub dlp: dlp::DlpConfig,
}

/// One downstream MCP server as written in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSpec {
    /// Unique name, used in curation references and as the default tool prefix.
    pub name: String,
    /// A program Gatehouse runs and speaks to over stdin/stdout.
    pub stdio: Option<StdioConfig>,
    /// A streamable HTTP endpoint (either protocol era).
    pub http: Option<HttpConfig>,
    /// A legacy 2024-11-05 HTTP+SSE endpoint.
    pub sse: Option<SseConfig>,
    /// The downstream credential injected into its requests (none by default).
    #[serde(default)]
    pub credentials: CredentialSpec,
}

/// How clients authenticate to a virtual server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Bearer tokens from Gatehouse's own authorization server (the default).
    #[default]
    Oauth,
    /// No authentication: only for local development and the conformance run.
    None,
}

/// One curated MCP endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualServerSpec {
    /// URL-safe unique name: the endpoint is `/v/{name}/mcp`.
    pub name: String,
    /// Human description shown to clients as the server's instructions.
    #[serde(default)]
    pub description: Option<String>,
    /// Authentication mode; `none` makes `gatehouse up` warn loudly.
    #[serde(default)]
    pub auth: AuthMode,
    /// The connectors this virtual server exposes, each with its own view.
    pub connectors: Vec<MemberSpec>,
}

/// One connector's view inside a virtual server. Every key names ORIGINAL downstream tool names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSpec {
    /// The connector's `name`.
    pub connector: String,
    /// Prefix for exposed names; default `<connector>__`, `""` for none.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Globs of tools to expose; default all.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// Globs of tools to hide; wins over `allow`.
    #[serde(default)]
    pub deny: Vec<String>,
    /// New names for tools, before the prefix is added.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Replacement descriptions for tools.
    #[serde(default)]
    pub describe: BTreeMap<String, String>,
}

/// Why a gateway description was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The YAML did not parse or did not match the schema.
    #[error("{source_name}: {path}: {message}")]
    Syntax {
        source_name: String,
        path: String,
        message: String,
    },
    /// The YAML parsed but is inconsistent.
    #[error("{source_name}: {path}: {reason}")]
    Invalid {
        source_name: String,
        path: String,
        reason: String,
    },
}

impl GatewaySpec {
    /// Parses and validates YAML text; `source_name` (usually the file path) prefixes every error.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Self, SpecError> {
        let deserializer = serde_norway::Deserializer::from_str(text);
        let spec: Self = serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let path = error.path().to_string();
            SpecError::Syntax {
                source_name: source_name.to_owned(),
                path: if path == "." {
                    "(top level)".into()
                } else {
                    path
                },
                message: error.into_inner().to_string(),
            }
        })?;
        spec.validate()
            .map_err(|(path, reason)| SpecError::Invalid {
                source_name: source_name.to_owned(),
                path,
                reason,
            })?;
        Ok(spec)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let mut connector_names = BTreeSet::new();
        for (index, connector) in self.connectors.iter().enumerate() {
            let path = format!("connectors[{index}]");
            check_name(&connector.name, &format!("{path}.name"))?;
            if !connector_names.insert(connector.name.as_str()) {
                return Err((
                    format!("{path}.name"),
                    format!("duplicate connector `{}`", connector.name),
                ));
            }
            let transport = connector
                .transport()
                .map_err(|reason| (path.clone(), reason))?;
            connector
                .credentials
                .validate(transport.kind())
                .map_err(|(field, reason)| (format!("{path}.credentials.{field}"), reason))?;
        }
        let mut server_names = BTreeSet::new();
        for (index, server) in self.virtual_servers.iter().enumerate() {
            let path = format!("virtual_servers[{index}]");
            check_name(&server.name, &format!("{path}.name"))?;
            if !server_names.insert(server.name.as_str()) {
                return Err((
                    format!("{path}.name"),
                    format!("duplicate virtual server `{}`", server.name),
                ));
            }
            if server.connectors.is_empty() {
                return Err((
                    format!("{path}.connectors"),
                    "must list at least one connector".into(),
                ));
            }
            for (member_index, member) in server.connectors.iter().enumerate() {
                let member_path = format!("{path}.connectors[{member_index}]");
                if !connector_names.contains(member.connector.as_str()) {
                    return Err((
                        format!("{member_path}.connector"),
                        format!("unknown connector `{}`", member.connector),
                    ));
                }
                crate::catalogue::Curation::try_from(member)
                    .map_err(|reason| (member_path, reason))?;
            }
        }
        self.rate_limits.validate(&server_names)?;
        self.validate_dlp()
    }

    /// Compiles the `dlp:` section and checks that its rules name declared servers and members.
    fn validate_dlp(&self) -> Result<(), (String, String)> {
        dlp::Dlp::new(&self.dlp).map_err(|error| match error {
            dlp::ConfigError::Invalid { field, reason } => (field, reason),
            other => ("dlp".to_owned(), other.to_string()),
        })?;
        for (index, rule) in self.dlp.rules.iter().enumerate() {
            let path = format!("dlp.rules[{index}]");
            let Some(server) = self
                .virtual_servers
                .iter()
                .find(|server| server.name == rule.virtual_server)
            else {
                return Err((
                    format!("{path}.virtual_server"),
                    format!("unknown virtual server `{}`", rule.virtual_server),
                ));
            };
            if let Some(connector) = &rule.connector
                && !server
                    .connectors
                    .iter()
                    .any(|member| &member.connector == connector)
            {
                return Err((
                    format!("{path}.connector"),
                    format!(
                        "connector `{connector}` is not part of virtual server `{}`",
                        server.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl ConnectorSpec {
    /// Returns the audience of tokens exchanged for this connector: the declared one, else
    /// its URL without user info, query or fragment; `None` unless its credentials are
    /// `token_exchange`.
    ///
    /// The URL is cut because an audience is a resource identifier (RFC 8707 §2: no
    /// fragment, no query) and is written into tokens, audit records and the log, while a
    /// connector's query may hold its API key.
    pub fn exchange_audience(&self) -> Option<String> {
        if self.credentials.mode != crate::credentials::CredentialMode::TokenExchange {
            return None;
        }
        let declared = self
            .credentials
            .exchange
            .as_ref()
            .and_then(|exchange| exchange.audience.clone());
        let url = || {
            self.http
                .as_ref()
                .map(|http| &http.url)
                .or(self.sse.as_ref().map(|sse| &sse.url))
                .map(crate::connector::redact)
        };
        declared.or_else(url)
    }

    /// Returns the one transport this connector declares.
    pub fn transport(&self) -> Result<Transport, String> {
        match (&self.stdio, &self.http, &self.sse) {
            (Some(stdio), None, None) => Ok(Transport::Stdio(stdio.clone())),
            (None, Some(http), None) => Ok(Transport::Http(http.clone())),
            (None, None, Some(sse)) => Ok(Transport::Sse(sse.clone())),
            (None, None, None) => {
                Err("declares no transport: add one of `stdio`, `http`, `sse`".into())
            }
            _ => Err(
                "declares more than one transport: keep exactly one of `stdio`, `http`, `sse`"
                    .into(),
            ),
        }
    }
}

/// Names appear in URLs and tool prefixes, so they are limited to a safe alphabet.
fn check_name(name: &str, path: &str) -> Result<(), (String, String)> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err((
            path.to_owned(),
            format!("`{name}` must be 1-64 characters of [A-Za-z0-9_-]"),
        ))
    }
}

#[cfg(test)]
mod tests;
