//! authz-svc's configuration.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use figment::Figment;
use serde::{Deserialize, Serialize};
use svc_kit::{GrpcServerConfig, TelemetryConfig};

use crate::error::Error;

mod authorization;
mod federation;
mod policies;
mod standalone;

pub use authorization::{
    AuthorizationConfig, DEFAULT_ACCESS_TOKEN_TTL, DEFAULT_SIGNING_KEY_ROTATION, ExchangeTarget,
    MAX_AGENT_TOKEN_TTL, MemberConfig,
};
pub(crate) use federation::algorithms;
pub use federation::{EnterpriseIdpConfig, IdentityProviderConfig};
pub use policies::PolicyConfig;
pub use standalone::{
    AuditForwardConfig, CallersConfig, DEFAULT_HTTP_LISTEN_ADDR, OAuthFaceConfig, ResourceConfig,
    StoreSection,
};

/// Prefixes the environment variables that configure authz-svc, such as
/// `GATEHOUSE_AUTHZ__GRPC__LISTEN_ADDR`.
pub const ENV_PREFIX: &str = "GATEHOUSE_AUTHZ__";

/// Is the address authz-svc's gRPC server binds unless configured otherwise.
pub const DEFAULT_LISTEN_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50051);

/// Configures authz-svc.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Configures the gRPC listener: address, request timeout, shutdown grace.
    pub grpc: GrpcServerConfig,
    /// Configures logs and traces.
    pub telemetry: TelemetryConfig,
    /// Configures the policies in force at start.
    pub policies: PolicyConfig,
    /// Holds the service tokens of the gRPC callers, per role.
    pub callers: CallersConfig,
    /// Configures the OAuth HTTP face and the issuer (standalone only: `gatehouse up`
    /// mounts the face on its own listener).
    pub oauth: OAuthFaceConfig,
    /// Says where the authorization store is (standalone only).
    pub store: StoreSection,
    /// Configures the authorization server: members, token lifetimes, agents. Not
    /// serialized: it holds password hashes, and its own serde defaults fill it in.
    #[serde(skip_serializing)]
    pub authorization: AuthorizationConfig,
    /// Says where audit events go (standalone only).
    pub audit: AuditForwardConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc: GrpcServerConfig::with_listen_addr(DEFAULT_LISTEN_ADDR),
            telemetry: TelemetryConfig::default(),
            policies: PolicyConfig::default(),
            callers: CallersConfig::default(),
            oauth: OAuthFaceConfig::default(),
            store: StoreSection::default(),
            authorization: AuthorizationConfig::default(),
            audit: AuditForwardConfig::default(),
        }
    }
}

impl Config {
    /// Returns the configuration from `sources` over the defaults, validated.
    #[expect(
        clippy::result_large_err,
        reason = "figment's error is what svc_kit::exit_on_invalid takes, once, at startup"
    )]
    pub fn load(sources: Figment) -> Result<Self, figment::Error> {
        let config: Self = svc_kit::extract(sources)?;
        config
            .validate()
            .map_err(|error| figment::Error::from(error.to_string()))?;
        Ok(config)
    }

    /// Checks the values that parse but cannot be used.
    pub fn validate(&self) -> Result<(), Error> {
        self.grpc.validate().map_err(|error| error.nested("grpc"))?;
        self.telemetry
            .validate()
            .map_err(|error| error.nested("telemetry"))?;
        self.callers
            .validate()
            .map_err(|error| error.nested("callers"))?;
        self.audit
            .validate()
            .map_err(|error| error.nested("audit"))?;
        self.authorization
            .validate()
            .map_err(|error| error.nested("authorization"))?;
        self.oauth.issuer().map_err(|error| error.nested("oauth"))?;
        // Invalid policies refuse the start, with Cedar's diagnostics, before binding.
        crate::policy::PolicyStore::new(&self.policies)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use figment::providers::{Format as _, Toml};

    use super::*;

    #[test]
    fn defaults_listen_on_the_authz_port() {
        let config = Config::load(Figment::new()).unwrap();
        assert_eq!(config.grpc.listen_addr, DEFAULT_LISTEN_ADDR);
    }

    #[test]
    fn unknown_key_is_refused() {
        let sources = Figment::from(Toml::string("listen_adr = \"127.0.0.1:1\"\n"));
        assert!(Config::load(sources).is_err());
    }

    #[test]
    fn policies_section_is_read() {
        let sources = Figment::from(Toml::string(
            r#"
[policies]
cedar = 'permit (principal in Role::"sales", action, resource in VirtualServer::"crm");'
[policies.virtual_servers.crm.constraints.update_opportunity.amount]
max = 100000
[policies.virtual_servers.crm.scopes]
"crm:read" = ["search_contacts"]
"crm:write" = { description = "Update opportunities", tools = ["update_opportunity"] }
"#,
        ));
        let config = Config::load(sources).unwrap();
        let crm = &config.policies.virtual_servers["crm"];
        assert_eq!(crm.scopes.len(), 2);
        assert_eq!(
            crm.constraints["update_opportunity"]["amount"].max,
            Some(100_000.into())
        );
    }

    #[test]
    fn invalid_policy_refuses_the_start_with_diagnostics() {
        let sources = Figment::from(Toml::string(
            "[policies]\ncedar = 'permit (principal, action == Action::\"fly\", resource);'\n",
        ));
        let error = Config::load(sources).unwrap_err().to_string();
        assert!(error.contains("config#0"), "{error}");
        assert!(error.contains("fly"), "{error}");
    }

    #[test]
    fn an_exchange_audience_is_a_resource_identifier() {
        let target = |audience: &str| {
            format!(
                "[[authorization.token_exchange]]\nconnector = \"crm\"\naudience = \"{audience}\"\nvirtual_servers = [\"tools\"]\n"
            )
        };
        assert!(
            Config::load(Figment::from(Toml::string(&target(
                "https://crm.example/mcp"
            ))))
            .is_ok()
        );
        for audience in ["crm", "https://crm.example/mcp#part"] {
            let error = Config::load(Figment::from(Toml::string(&target(audience))))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("authorization.token_exchange[0].audience"),
                "{audience}: {error}"
            );
        }
    }

    #[test]
    fn invalid_value_names_its_key() {
        let sources = Figment::from(Toml::string("[telemetry]\nlog_filter = \"info,[\"\n"));
        let error = Config::load(sources).unwrap_err();
        assert!(
            error.to_string().contains("telemetry.log_filter"),
            "{error}"
        );
    }
}
