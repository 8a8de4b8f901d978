//! Turning a [`Request`] into Cedar's principal, action, resource, context and
//! entities: principals and targets once each (see [`crate::prepared`]), the
//! arguments and the context per request.

use std::collections::{HashMap, HashSet};
use std::str::FromStr as _;
use std::sync::LazyLock;

use cedar_policy::{Context, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use cedar_policy_core::ast;
use cedar_policy_core::evaluator::RestrictedEvaluator;
use cedar_policy_core::extensions::Extensions;
use serde_json::Value;

use crate::constraint::{CompiledTool, canonical, decimal};
use crate::context::{self, ExtensionCache};
use crate::error::Error;
use crate::prepared::Prepared;
use crate::principal::{Agent, Member, Principal};
use crate::request::{Action, Item, Request, Target, Tool};

/// Holds the schema's entity type names, parsed once per evaluator.
#[derive(Debug, Clone)]
pub(crate) struct Types {
    member: EntityTypeName,
    agent: EntityTypeName,
    group: EntityTypeName,
    role: EntityTypeName,
    virtual_server: EntityTypeName,
    connector: EntityTypeName,
    tool: EntityTypeName,
    resource: EntityTypeName,
    prompt: EntityTypeName,
    arguments: EntityTypeName,
    action: EntityTypeName,
}

/// Is the per-request part of a request in Cedar's terms: the arguments entity and
/// the context (principal and resource come prepared, see [`crate::prepared`]).
#[derive(Debug)]
pub(crate) struct CallFacts {
    pub(crate) action: EntityUid,
    pub(crate) arguments: Entity,
    pub(crate) context: Context,
}

impl Types {
    /// Returns the parsed type names.
    pub(crate) fn new() -> Result<Self, Error> {
        let name = |name: &str| {
            EntityTypeName::from_str(name)
                .map_err(|error| Error::Internal(format!("entity type {name}: {error}")))
        };
        Ok(Self {
            member: name("Member")?,
            agent: name("Agent")?,
            group: name("Group")?,
            role: name("Role")?,
            virtual_server: name("VirtualServer")?,
            connector: name("Connector")?,
            tool: name("Tool")?,
            resource: name("Resource")?,
            prompt: name("Prompt")?,
            arguments: name("Arguments")?,
            action: name("Action")?,
        })
    }

    /// Returns the per-request facts of `request`; `tool` holds the patterns of the
    /// target tool's constraints.
    pub(crate) fn call_facts(
        &self,
        request: &Request<'_>,
        tool: Option<&CompiledTool>,
        cache: &ExtensionCache,
    ) -> Result<CallFacts, Error> {
        let arguments = uid(&self.arguments, "call");
        Ok(CallFacts {
            action: uid(&self.action, request.action.as_str()),
            context: context::build(request, arguments.clone(), cache)?,
            arguments: arguments_entity(arguments, request, tool)?,
        })
    }

    /// Returns `principal` in Cedar terms: the agent (acting for its member, if any)
    /// or the member, with the member's groups and roles as its parents.
    pub(crate) fn principal(&self, principal: &Principal) -> Result<Prepared, Error> {
        let member = principal
            .member
            .as_ref()
            .map(|member| self.member(member))
            .transpose()?;
        match &principal.agent {
            Some(agent) => {
                let agent = self.agent(agent, member.as_ref().map(Entity::uid))?;
                let agent_uid = agent.uid();
                let entities = [agent].into_iter().chain(member).collect();
                Ok(Prepared::new(agent_uid, Vec::new(), entities))
            }
            None => {
                let member_entity = member.ok_or_else(|| {
                    Error::InvalidRequest("principal has neither a member nor an agent".to_owned())
                })?;
                let member_uid = member_entity.uid();
                let parents = principal
                    .member
                    .as_ref()
                    .map(|member| self.member_parents(member));
                Ok(Prepared::new(
                    member_uid,
                    parents.into_iter().flatten().collect(),
                    vec![member_entity],
                ))
            }
        }
    }

    fn member_parents<'m>(&'m self, member: &'m Member) -> impl Iterator<Item = EntityUid> + 'm {
        member
            .groups
            .iter()
            .map(|group| uid(&self.group, group))
            .chain(member.roles.iter().map(|role| uid(&self.role, role)))
    }

    fn member(&self, member: &Member) -> Result<Entity, Error> {
        let id = if member.id.is_empty() {
            &member.subject
        } else {
            &member.id
        };
        if id.is_empty() {
            return Err(Error::InvalidRequest("member has no id".to_owned()));
        }
        let attrs = [
            ("id", string(id)),
            ("issuer", string(&member.issuer)),
            ("subject", string(&member.subject)),
            ("groups", strings(&member.groups)),
            ("roles", strings(&member.roles)),
            (
                "authentication_methods",
                strings(&member.authentication_methods),
            ),
        ];
        new_entity(uid(&self.member, id), attrs, self.member_parents(member))
    }

    fn agent(&self, agent: &Agent, acting_for: Option<EntityUid>) -> Result<Entity, Error> {
        if agent.client_id.is_empty() {
            return Err(Error::InvalidRequest("agent has no client id".to_owned()));
        }
        let mut attrs = vec![
            ("client_id", string(&agent.client_id)),
            ("bundle_id", string(&agent.bundle_id)),
            ("bundle_name", string(&agent.bundle_name)),
        ];
        if let Some(owner) = agent
            .owner_member_id
            .as_deref()
            .filter(|owner| !owner.is_empty())
        {
            attrs.push((
                "owner",
                RestrictedExpression::new_entity_uid(uid(&self.member, owner)),
            ));
        }
        if let Some(member) = acting_for {
            attrs.push(("acting_for", RestrictedExpression::new_entity_uid(member)));
        }
        new_entity(uid(&self.agent, &agent.client_id), attrs, [])
    }

    /// Returns the virtual server `name` as the resource of `connect` and `list_tools`.
    pub(crate) fn server(&self, name: &str) -> Result<Prepared, Error> {
        if name.is_empty() {
            return Err(Error::InvalidRequest(
                "target has no virtual server".to_owned(),
            ));
        }
        let server = uid(&self.virtual_server, name);
        let entity = Entity::new_no_attrs(server.clone(), Default::default());
        Ok(Prepared::new(server, Vec::new(), vec![entity]))
    }

    /// Refuses an item action whose target is not an item of its kind.
    pub(crate) fn check_item(&self, action: Action, target: &Target) -> Result<(), Error> {
        match (action, &target.item) {
            (Action::CallTool, Some(Item::Tool(_)))
            | (Action::ReadResource, Some(Item::Resource { .. }))
            | (Action::GetPrompt, Some(Item::Prompt { .. }))
            | (Action::Connect | Action::ListTools, _) => Ok(()),
            (action, _) => Err(Error::InvalidRequest(format!(
                "action {} needs a target of its kind",
                action.as_str()
            ))),
        }
    }

    /// Returns the tool, resource or prompt of `target`, in its connector and virtual
    /// server (both its parents, so the hierarchy is transitively closed as built).
    pub(crate) fn item(&self, target: &Target) -> Result<Prepared, Error> {
        if target.virtual_server.is_empty() {
            return Err(Error::InvalidRequest(
                "target has no virtual server".to_owned(),
            ));
        }
        let server = uid(&self.virtual_server, &target.virtual_server);
        let mut entities = vec![Entity::new_no_attrs(server.clone(), Default::default())];
        let connector = target
            .connector
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(|name| {
                let connector = uid(&self.connector, name);
                entities.push(Entity::new_no_attrs(
                    connector.clone(),
                    [server.clone()].into(),
                ));
                connector
            });
        let parents: Vec<EntityUid> = connector.into_iter().chain([server.clone()]).collect();
        let scoped = |name: &str| format!("{}/{name}", target.virtual_server);
        let server_attr = (
            "virtual_server",
            RestrictedExpression::new_entity_uid(server.clone()),
        );
        let entity = match &target.item {
            Some(Item::Tool(tool)) => {
                self.tool(tool, &scoped(&tool.name), server_attr, &parents)?
            }
            Some(Item::Resource { uri }) => new_entity(
                uid(&self.resource, &scoped(uri)),
                [("uri", string(uri)), server_attr],
                parents.iter().cloned(),
            )?,
            Some(Item::Prompt { name }) => new_entity(
                uid(&self.prompt, &scoped(name)),
                [("name", string(name)), server_attr],
                parents.iter().cloned(),
            )?,
            None => {
                return Err(Error::InvalidRequest(
                    "target names no tool, resource or prompt".to_owned(),
                ));
            }
        };
        let item = entity.uid();
        entities.push(entity);
        Ok(Prepared::new(item, parents, entities))
    }

    fn tool(
        &self,
        tool: &Tool,
        id: &str,
        server_attr: (&'static str, RestrictedExpression),
        parents: &[EntityUid],
    ) -> Result<Entity, Error> {
        let mut attrs = vec![
            ("name", string(&tool.name)),
            ("upstream_name", string(&tool.upstream_name)),
            server_attr,
        ];
        let hints = &tool.annotations;
        for (name, hint) in [
            ("read_only", hints.read_only),
            ("destructive", hints.destructive),
            ("idempotent", hints.idempotent),
            ("open_world", hints.open_world),
        ] {
            if let Some(hint) = hint {
                attrs.push((name, RestrictedExpression::new_bool(hint)));
            }
        }
        new_entity(uid(&self.tool, id), attrs, parents.iter().cloned())
    }
}

// Each argument becomes a tag holding the typed views constraints compare. The
// values are built directly rather than as expressions Cedar then evaluates, which
// cost about a fifth of a decision.
fn arguments_entity(
    uid: EntityUid,
    request: &Request<'_>,
    tool: Option<&CompiledTool>,
) -> Result<Entity, Error> {
    let Some(arguments) = &request.context.arguments else {
        return new_entity(uid, [], []);
    };
    let mut tags = Vec::with_capacity(arguments.len());
    for (name, value) in arguments {
        let pattern = tool.and_then(|tool| tool.patterns.get(name));
        let decimal = tool.is_some_and(|tool| tool.decimal_bounds.contains(name));
        let value = ast::PartialValue::from(argument(value, pattern, decimal)?);
        tags.push((name.as_str().into(), value));
    }
    Ok(Entity::from(ast::Entity::new_with_attr_partial_value(
        uid.into(),
        std::iter::empty(),
        HashSet::new(),
        HashSet::new(),
        tags,
    )))
}

// Integers are exposed as `long`; `number` (a Cedar decimal) only for non-integers,
// or when a constraint on the argument has a fractional bound.
fn argument(
    value: &Value,
    pattern: Option<&regex::Regex>,
    decimal_bound: bool,
) -> Result<ast::Value, Error> {
    let mut fields: Vec<(&'static str, ast::Value)> =
        vec![("json", ast::Value::from(canonical(value)))];
    match value {
        Value::String(text) => {
            fields.push(("text", ast::Value::from(text.as_str())));
            let length = i64::try_from(text.chars().count()).unwrap_or(i64::MAX);
            fields.push(("length", ast::Value::from(length)));
        }
        Value::Number(number) => {
            if let Some(long) = number.as_i64() {
                fields.push(("long", ast::Value::from(long)));
            }
            if (decimal_bound || !number.is_i64())
                && let Some(number) = decimal(number)
            {
                fields.push(("number", decimal_value(number)?));
            }
        }
        Value::Bool(flag) => fields.push(("bool", ast::Value::from(*flag))),
        _ => {}
    }
    if let Some(pattern) = pattern {
        let matched = value.as_str().is_some_and(|text| pattern.is_match(text));
        fields.push(("matches_pattern", ast::Value::from(matched)));
    }
    Ok(ast::Value::record(fields, None))
}

/// Is Cedar's `decimal` extension function name, parsed once.
///
/// `RestrictedExpression::new_decimal` parses the name with the full Cedar parser
/// (building its lexer) on every call, which cost more than the rest of the
/// arguments entity; the value built here from the parsed name is the same.
static DECIMAL: LazyLock<Option<ast::Name>> =
    LazyLock::new(|| ast::Name::parse_unqualified_name("decimal").ok());

// `literal` comes from `constraint::decimal`, which only returns what a Cedar
// decimal holds, so evaluating it does not fail in practice.
fn decimal_value(literal: String) -> Result<ast::Value, Error> {
    let name = DECIMAL
        .clone()
        .ok_or_else(|| Error::Internal("the decimal extension name".to_owned()))?;
    let call = ast::RestrictedExpr::call_extension_fn(name, [ast::RestrictedExpr::val(literal)]);
    RestrictedEvaluator::new(Extensions::all_available())
        .interpret(call.as_borrowed())
        .map_err(|error| Error::Internal(format!("decimal argument: {error}")))
}

fn new_entity<'a>(
    uid: EntityUid,
    attrs: impl IntoIterator<Item = (&'a str, RestrictedExpression)>,
    parents: impl IntoIterator<Item = EntityUid>,
) -> Result<Entity, Error> {
    let attrs: HashMap<String, RestrictedExpression> = attrs
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
    Entity::new(uid, attrs, parents.into_iter().collect())
        .map_err(|error| Error::Internal(format!("entity: {error}")))
}

fn uid(type_name: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id))
}

fn string(value: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(value.to_owned())
}

fn strings(values: &[String]) -> RestrictedExpression {
    RestrictedExpression::new_set(values.iter().cloned().map(RestrictedExpression::new_string))
}
