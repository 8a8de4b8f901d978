//! The admin API's JSON documents: what the HTTP face serves and accepts, what `gatehouse
//! apply` sends, and what the OpenAPI document describes (derived from these types).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// One Cedar text and the name its default policy ids derive from (`<name>#<index>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) struct PolicySource {
    /// Prefixes the ids of policies without an `@id` annotation.
    pub(crate) name: String,
    /// Holds any number of Cedar policies.
    pub(crate) text: String,
}

/// The whole policy state an administrator declares: Cedar texts plus each virtual server's
/// argument constraints and scopes (the gateway file's `policies:` section, files read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct PolicySet {
    /// The Cedar texts, in order.
    #[serde(default)]
    pub(crate) sources: Vec<PolicySource>,
    /// Constraints and scopes by virtual server name, as in `policies.virtual_servers`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(crate) virtual_servers: BTreeMap<String, Value>,
}

/// The policy set in force and its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct PolicyState {
    /// Increases with every change.
    pub(crate) version: u64,
    /// The set in force.
    pub(crate) policies: PolicySet,
}

/// The rate-limit rules in force, as under `rate_limits.rules` in the gateway file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct RateLimits {
    /// Each rule as declared: `name`, `per`, `rate`, optional `burst`, `virtual_server`,
    /// `tool` and `callers`.
    pub(crate) rules: Vec<Value>,
}

/// A virtual server as declared in the gateway file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct VirtualServerView {
    /// Its name: the endpoint is `/v/{name}/mcp`.
    pub(crate) name: String,
    /// Its declaration (description, auth, connectors with their curation).
    pub(crate) declaration: Value,
}

/// A connector as administrators see it: never its headers or environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) struct ConnectorView {
    /// Its name.
    pub(crate) name: String,
    /// `stdio`, `http` or `sse`.
    pub(crate) transport: String,
    /// The URL without user info, query or fragment (http, sse), or the program (stdio).
    pub(crate) target: String,
    /// `none`, `shared`, `per_member` or `token_exchange`.
    pub(crate) credentials: String,
    /// The SHA-256 of its whole declaration: tells a changed header or environment apart
    /// without showing it.
    #[serde(default)]
    pub(crate) fingerprint: String,
}

/// A shared credential to store, by kind; write-only, so no response ever carries a secret.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum SharedCredentialInput {
    /// A token sent as `Authorization: Bearer <value>`.
    Bearer {
        /// The token.
        value: String,
    },
    /// An API key sent as `<header>: <value>`.
    ApiKey {
        /// The header (default `X-Api-Key`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
        /// The key.
        value: String,
    },
    /// A pair sent as `Authorization: Basic base64(<username>:<password>)`.
    Basic {
        /// The user name (no `:`).
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth client-credentials pair: Gatehouse obtains access tokens at `token_endpoint`,
    /// renews them before they expire and sends them as bearer tokens.
    ClientCredentials {
        /// The client id at the provider.
        client_id: String,
        /// The client secret.
        client_secret: String,
        /// The provider's token endpoint (`https://…`, or `http://` on loopback).
        token_endpoint: String,
        /// The scopes asked for with each token.
        #[serde(default)]
        scopes: Vec<String>,
        /// The RFC 8707 resource asked for with each token, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
    /// Environment variables for a stdio connector's program: name → value.
    Env {
        /// The variables.
        variables: BTreeMap<String, String>,
    },
    /// HTTP headers sent as they are: name → value.
    Headers {
        /// The headers.
        headers: BTreeMap<String, String>,
    },
}

/// Identifies a stored or deleted credential (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) struct CredentialRef {
    /// The connector.
    pub(crate) connector: String,
    /// The credential's id.
    pub(crate) credential_id: String,
    /// Increases with every replacement.
    pub(crate) version: u64,
}

/// An agent bundle's metadata (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) struct AgentView {
    /// The bundle's stable id.
    pub(crate) bundle_id: String,
    /// Its OAuth client id.
    pub(crate) client_id: String,
    /// Its unique name.
    pub(crate) name: String,
    /// What it is for.
    pub(crate) description: String,
    /// The accountable member.
    pub(crate) owner: String,
    /// The virtual servers it may use.
    pub(crate) virtual_servers: Vec<String>,
    /// The scopes it may be granted.
    pub(crate) scopes: Vec<String>,
    /// `active` or `decommissioned`.
    pub(crate) state: String,
    /// When it was created (unix seconds).
    pub(crate) created_at: i64,
    /// When its secret last rotated (unix seconds).
    pub(crate) rotated_at: Option<i64>,
    /// When it last obtained a token (unix seconds).
    pub(crate) last_used_at: Option<i64>,
    /// Its own budget, charged at every edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) quota: Option<AgentQuotaInput>,
    /// What owns its declaration: `gateway-file` for a bundle the gateway file declares (which
    /// `gatehouse apply` decommissions once the file drops it); absent for one created through
    /// the API, the CLI or the console, which `gatehouse apply` never touches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) managed_by: Option<String>,
}

/// An agent bundle's own rate limit: every call on its own token is charged to one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentQuotaInput {
    /// The sustained rate, `n/second`, `n/minute`, `n/hour` or `n/day`.
    pub(crate) rate: String,
    /// Calls allowed at once after a quiet spell (1 when absent).
    #[serde(default = "one")]
    pub(crate) burst: u32,
}

fn one() -> u32 {
    1
}

impl AgentQuotaInput {
    /// Returns the quota as the bundle stores it (authz-svc checks it when it is written).
    pub(crate) fn stored(quota: Option<&Self>) -> Value {
        quota.map_or(
            Value::Null,
            |quota| serde_json::json!({"rate": quota.rate, "burst": quota.burst}),
        )
    }

    /// Reads a stored quota; one that does not read is shown as none.
    pub(crate) fn of(stored: &Value) -> Option<Self> {
        serde_json::from_value(stored.clone()).ok()
    }
}

/// Selects agent bundles.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AgentFilter {
    /// Only this member's bundles.
    pub(crate) owner: Option<String>,
    /// Also decommissioned bundles.
    #[serde(default)]
    pub(crate) include_decommissioned: bool,
}

/// A new agent bundle (client-secret authentication).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct NewAgentInput {
    /// The unique name.
    pub(crate) name: String,
    /// What it is for.
    #[serde(default)]
    pub(crate) description: String,
    /// The accountable member.
    pub(crate) owner: String,
    /// The virtual servers it may use (at least one).
    pub(crate) virtual_servers: Vec<String>,
    /// The scopes it may be granted.
    #[serde(default)]
    pub(crate) scopes: Vec<String>,
    /// Its own budget, charged at every edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) quota: Option<AgentQuotaInput>,
}

/// A secret shown once, in the response that created it; never in `Debug` output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub(crate) struct OnceSecret(pub(crate) String);

/// An agent bundle with a client secret shown this once (after create or rotate).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct AgentWithSecret {
    /// The bundle.
    pub(crate) agent: AgentView,
    /// The client secret, shown this once (absent for key-based bundles).
    pub(crate) client_secret: Option<OnceSecret>,
    /// When the previous secret stops working (after a rotation; unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) previous_secret_expires_at: Option<i64>,
}

/// An agent bundle as the gateway file declares it (`authorization.agents`), created or
/// brought to this state by `PUT /admin/v1/agents/{name}`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct AgentDeclarationInput {
    /// Its OAuth client id (default: its name); used only when it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) client_id: Option<String>,
    /// What it is for.
    #[serde(default)]
    pub(crate) description: String,
    /// The accountable member.
    pub(crate) owner: String,
    /// The virtual servers it may use.
    pub(crate) virtual_servers: Vec<String>,
    /// The scopes it may be granted.
    #[serde(default)]
    pub(crate) scopes: Vec<String>,
    /// The public JWK Set of a `private_key_jwt` bundle (instead of a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub(crate) jwks: Option<Value>,
    /// Its client secret (write-only): replaces the stored ones when given. A client-secret
    /// bundle created without one gets a generated secret, shown in the response once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) secret: Option<String>,
    /// Its own budget, charged at every edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) quota: Option<AgentQuotaInput>,
}

impl fmt::Debug for AgentDeclarationInput {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("AgentDeclarationInput")
            .field("owner", &self.owner)
            .field("virtual_servers", &self.virtual_servers)
            .finish_non_exhaustive()
    }
}

/// How a rotation treats the previous secret.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub(crate) struct RotateInput {
    /// How long the previous secret keeps working, in seconds (the server's default when absent).
    #[serde(default)]
    pub(crate) overlap_seconds: Option<u64>,
}

/// Why an agent bundle is decommissioned.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub(crate) struct DecommissionInput {
    /// Kept in the audit record.
    #[serde(default)]
    pub(crate) reason: String,
}

/// Selects audit events, one page at a time.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// The principal's member id.
    pub(crate) member: Option<String>,
    /// The agent's client id.
    pub(crate) agent: Option<String>,
    /// The target's virtual server.
    pub(crate) virtual_server: Option<String>,
    /// The exposed tool name.
    pub(crate) tool: Option<String>,
    /// The event kinds by name, comma-separated, such as
    /// `EVENT_KIND_TOKEN_ISSUED,EVENT_KIND_TOKEN_REVOKED`; any of them matches.
    #[serde(default)]
    pub(crate) kind: Option<String>,
    /// The page size (default 100, at most 1000).
    pub(crate) limit: Option<u32>,
    /// Continues a previous search.
    pub(crate) page_token: Option<String>,
    /// Lists the newest events first.
    #[serde(default)]
    pub(crate) newest_first: bool,
}

/// One stored audit event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct AuditRecordView {
    /// Its position in the log.
    pub(crate) sequence: u64,
    /// The event in its canonical JSON form.
    pub(crate) event: Value,
}

/// One page of audit events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct AuditPage {
    /// The events, in the listing's order.
    pub(crate) events: Vec<AuditRecordView>,
    /// Continues the listing; absent on the last page.
    pub(crate) next_page_token: Option<String>,
}

/// What a verification of the audit log checks beyond the stored records themselves.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub(crate) struct VerifyInput {
    /// A signed checkpoint saved earlier (a C2SP note) that the log must extend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) from_checkpoint: Option<String>,
}

/// A signed checkpoint of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) struct CheckpointView {
    /// How many records it covers.
    pub(crate) tree_size: u64,
    /// The Merkle root over them (base64).
    pub(crate) root_hash: String,
    /// The C2SP signed note, verifiable with the log's verifier key.
    pub(crate) signed_note: String,
}

/// The first record that breaks the audit log's integrity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) struct ProblemView {
    /// `modified`, `deleted`, `inserted`, `reordered` or `checkpoint_mismatch`.
    pub(crate) kind: String,
    /// The first broken record (the checkpoint's tree size for a mismatch).
    pub(crate) sequence: u64,
    /// What is wrong, in words.
    pub(crate) reason: String,
}

/// What a verification of the whole audit log found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) struct VerifyReportView {
    /// How many records were read (the recomputed tree size).
    pub(crate) checked: u64,
    /// The recomputed Merkle root (base64).
    pub(crate) root_hash: String,
    /// The recomputed chain head (base64).
    pub(crate) chain_hash: String,
    /// The last sequence retention archived and removed (0 for none).
    pub(crate) pruned_through: u64,
    /// Whether no record is broken.
    pub(crate) intact: bool,
    /// The first broken record; absent when intact.
    pub(crate) problem: Option<ProblemView>,
    /// The latest signed checkpoint; absent before the first.
    pub(crate) checkpoint: Option<CheckpointView>,
    /// The log's C2SP verifier key (`origin+id+base64`).
    pub(crate) verifier_key: String,
}

/// An RFC 6962 inclusion proof of one event that verifies offline against the log's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) struct ProofView {
    /// The proven event's id.
    pub(crate) event_id: String,
    /// Its position in the log.
    pub(crate) sequence: u64,
    /// The event's canonical bytes: the leaf's preimage.
    pub(crate) canonical_json: String,
    /// The RFC 6962 leaf hash of the canonical bytes (base64).
    pub(crate) event_hash: String,
    /// The leaf's index (sequence − 1).
    pub(crate) leaf_index: u64,
    /// The hashes from the leaf's sibling up to the root (base64).
    pub(crate) audit_path: Vec<String>,
    /// The signed checkpoint the path leads to.
    pub(crate) checkpoint: CheckpointView,
    /// The whole proof as a C2SP tlog-proof (what `gatehouse audit check-proof` reads).
    pub(crate) tlog_proof: String,
    /// The log's C2SP verifier key; pin it rather than trusting this copy.
    pub(crate) verifier_key: String,
}

/// Selects the audit events to follow, and where to start.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TailQuery {
    /// The sequence to start after (default: the current head).
    pub(crate) after: Option<u64>,
    /// The principal's member id.
    pub(crate) member: Option<String>,
    /// The agent's client id.
    pub(crate) agent: Option<String>,
    /// The target's virtual server.
    pub(crate) virtual_server: Option<String>,
    /// The exposed tool name.
    pub(crate) tool: Option<String>,
    /// The event kinds by name, comma-separated; any of them matches.
    pub(crate) kind: Option<String>,
}

/// One newly recorded event of a tail (one line of the NDJSON stream).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct TailRecordView {
    /// Its position in the log: the cursor to resume after.
    pub(crate) sequence: u64,
    /// When the log stored it (unix microseconds).
    pub(crate) recorded_at_micros: i64,
    /// The event in its canonical JSON form.
    pub(crate) event: Value,
}

/// Where a key-encryption-key rotation stands: the credentials still wrapped by an older
/// KEK version are what the background re-wrap has left to do.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct KekView {
    /// The KEK version new writes use.
    pub(crate) active_version: u32,
    /// Every stored credential.
    pub(crate) credentials: u64,
    /// The credentials still on an older KEK version.
    pub(crate) stale: u64,
    /// Whether this gateway's re-wrap job is running now.
    pub(crate) rewrap_running: bool,
    /// The credentials the latest re-wrap job has moved, of `rewrap_total`.
    pub(crate) rewrapped: u64,
    /// The credentials the latest re-wrap job found on older versions when it started.
    pub(crate) rewrap_total: u64,
}

/// A connector's credential health (never a credential).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct HealthView {
    /// The connector.
    pub(crate) connector: String,
    /// `healthy`, `auth_failing`, `refresh_failing` or `unreachable` (a credential's provider,
    /// or the connector itself, cannot be reached).
    pub(crate) state: String,
    /// The shared credential is failing.
    pub(crate) shared_credential_failing: bool,
    /// The members whose credentials fail.
    pub(crate) failing_member_ids: Vec<String>,
    /// Explains the state.
    pub(crate) detail: String,
}

/// One problem in a refused policy set, in Cedar's words.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct DiagnosticView {
    /// The policy concerned, when known.
    pub(crate) policy_id: Option<String>,
    /// What is wrong.
    pub(crate) message: String,
    /// A suggested fix, when Cedar has one.
    pub(crate) help: Option<String>,
}

/// The body of every refused admin request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// A stable error code (`invalid_token`, `insufficient_scope`, `invalid_policies`, `not_found`…).
    pub(crate) error: String,
    /// What went wrong, for people; never a secret or internal detail.
    pub(crate) message: String,
    /// Cedar's diagnostics of refused policies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) diagnostics: Vec<DiagnosticView>,
}

impl SharedCredentialInput {
    /// Returns the kind's name, as the `kind` field spells it.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Bearer { .. } => "bearer",
            Self::ApiKey { .. } => "api_key",
            Self::Basic { .. } => "basic",
            Self::ClientCredentials { .. } => "client_credentials",
            Self::Env { .. } => "env",
            Self::Headers { .. } => "headers",
        }
    }
}

/// Shows the kind and the non-secret identifiers only.
impl fmt::Debug for SharedCredentialInput {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = formatter.debug_struct("SharedCredentialInput");
        debug.field("kind", &self.kind());
        match self {
            Self::ApiKey { header, .. } => debug.field("header", header),
            Self::Basic { username, .. } => debug.field("username", username),
            Self::ClientCredentials {
                client_id,
                token_endpoint,
                ..
            } => debug
                .field("client_id", client_id)
                .field("token_endpoint", token_endpoint),
            Self::Env { variables } => debug.field("names", &variables.keys().collect::<Vec<_>>()),
            Self::Headers { headers } => debug.field("names", &headers.keys().collect::<Vec<_>>()),
            Self::Bearer { .. } => &mut debug,
        };
        debug.finish_non_exhaustive()
    }
}

impl fmt::Debug for OnceSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("OnceSecret(redacted)")
    }
}

/// A member of the directory (provisioned by SCIM or the admin API); never a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) struct MemberView {
    /// The member id: the `sub` of its tokens.
    pub(crate) id: String,
    /// The unique name it logs in with.
    pub(crate) user_name: String,
    /// The name shown for it.
    pub(crate) display_name: Option<String>,
    /// The identity provider's identifier.
    pub(crate) external_id: Option<String>,
    /// Whether it may sign in and use its tokens.
    pub(crate) active: bool,
    /// The names of its groups.
    pub(crate) groups: Vec<String>,
    /// When it was created (unix seconds).
    pub(crate) created_at: i64,
    /// When it last changed (unix seconds).
    pub(crate) updated_at: i64,
}

/// A member to create, or the whole state to give an existing one.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct MemberInput {
    /// The unique name it logs in with.
    pub(crate) user_name: String,
    /// The name shown for it.
    #[serde(default)]
    pub(crate) display_name: Option<String>,
    /// The identity provider's identifier.
    #[serde(default)]
    pub(crate) external_id: Option<String>,
    /// Whether it may sign in; `false` offboards it (tokens revoked, credentials purged).
    #[serde(default = "active_by_default")]
    pub(crate) active: bool,
    /// A password for the built-in login (write-only); absent keeps the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) password: Option<String>,
}

/// A group of directory members; its name is the Cedar `Group` policies grant by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) struct GroupView {
    /// The group id.
    pub(crate) id: String,
    /// The unique group name.
    pub(crate) name: String,
    /// The identity provider's identifier.
    pub(crate) external_id: Option<String>,
    /// The members' ids.
    pub(crate) members: Vec<String>,
    /// When it was created (unix seconds).
    pub(crate) created_at: i64,
    /// When it last changed (unix seconds).
    pub(crate) updated_at: i64,
}

/// A group to create, or the whole state to give an existing one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) struct GroupInput {
    /// The unique group name.
    pub(crate) name: String,
    /// The identity provider's identifier.
    #[serde(default)]
    pub(crate) external_id: Option<String>,
    /// The members, by id or user name.
    #[serde(default)]
    pub(crate) members: Vec<String>,
}

fn active_by_default() -> bool {
    true
}

impl fmt::Debug for MemberInput {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("MemberInput")
            .field("user_name", &self.user_name)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}
