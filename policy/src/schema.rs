//! The published Cedar schema: the vocabulary every Gatehouse policy is written in.

use cedar_policy::Schema;

use crate::error::Error;

/// Is Gatehouse's Cedar schema in human-readable syntax, published in every policy
/// snapshot so that administrators and tools validate against what is enforced.
///
/// Entity ids: `Member::"<member id>"`, `Agent::"<client id>"`,
/// `VirtualServer::"<name>"`, `Connector::"<name>"`, and tools, resources and
/// prompts as `"<virtual server>/<exposed name or uri>"`. Tool hints are optional
/// because an unset MCP hint means "unknown", never false. Arguments are the tags
/// of `context.arguments` (one [`Argument`] record per argument) because each tool
/// has its own argument names, which a closed record type cannot describe.
pub const SCHEMA: &str = r#"// Gatehouse Cedar schema, version 1
entity Group;
entity Role;
entity Member in [Group, Role] = {
  "id": String,
  "issuer": String,
  "subject": String,
  "groups": Set<String>,
  "roles": Set<String>,
  "authentication_methods": Set<String>,
};
entity Agent = {
  "client_id": String,
  "bundle_id": String,
  "bundle_name": String,
  "owner"?: Member,
  "acting_for"?: Member,
};
entity VirtualServer;
entity Connector in [VirtualServer];
entity Tool in [Connector, VirtualServer] = {
  "name": String,
  "upstream_name": String,
  "virtual_server": VirtualServer,
  "read_only"?: Bool,
  "destructive"?: Bool,
  "idempotent"?: Bool,
  "open_world"?: Bool,
};
entity Resource in [Connector, VirtualServer] = {
  "uri": String,
  "virtual_server": VirtualServer,
};
entity Prompt in [Connector, VirtualServer] = {
  "name": String,
  "virtual_server": VirtualServer,
};
// One call argument. `json` is the value as compact JSON; the other fields are set
// when they apply: `text` for strings, `long` for integers, `number` for
// non-integers a decimal holds exactly (and for integers when a constraint on the
// argument has a fractional bound), `length` for strings (in characters), `bool`
// for booleans, and `matches_pattern` when the tool declares a pattern constraint
// for the argument.
type Argument = {
  "json": String,
  "text"?: String,
  "long"?: Long,
  "number"?: decimal,
  "length"?: Long,
  "bool"?: Bool,
  "matches_pattern"?: Bool,
};
entity Arguments tags Argument;
type Context = {
  "arguments": Arguments,
  "listing": Bool,
  "scopes": Set<String>,
  "time": datetime,
  "day_of_week": Long,
  "source_address"?: ipaddr,
  "authentication_method": String,
  "delegation_depth": Long,
  "actors": Set<String>,
};
action connect appliesTo { principal: [Member, Agent], resource: [VirtualServer], context: Context };
action list_tools appliesTo { principal: [Member, Agent], resource: [VirtualServer], context: Context };
action call_tool appliesTo { principal: [Member, Agent], resource: [Tool], context: Context };
action read_resource appliesTo { principal: [Member, Agent], resource: [Resource], context: Context };
action get_prompt appliesTo { principal: [Member, Agent], resource: [Prompt], context: Context };
"#;

/// Returns [`SCHEMA`] parsed.
pub(crate) fn parse() -> Result<Schema, Error> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(schema, _warnings)| schema)
        .map_err(|error| Error::Internal(format!("published schema does not parse: {error}")))
}
