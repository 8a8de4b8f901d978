//! Turning a [`Request`] into Cedar's principal, action, resource, context and
//! entities.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr as _;
use std::sync::{Mutex, PoisonError};

use cedar_policy::{Context, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use serde_json::Value;

use crate::constraint::{CompiledTool, canonical, decimal};
use crate::error::Error;
use crate::principal::{Agent, Member};
use crate::request::{Action, Item, Request, Target};
use crate::time;

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

/// Caches the extension values (`datetime`, `ip`) requests repeat.
///
/// Cedar's `RestrictedExpression::new_ip` and `new_datetime` parse the extension
/// function's name with the full Cedar parser on every call, which costs more than
/// evaluating a whole policy set; times repeat within a second and client
/// addresses repeat across requests.
#[derive(Debug, Default)]
pub(crate) struct ExtensionCache {
    time: Mutex<Option<(i64, RestrictedExpression)>>,
    addresses: Mutex<HashMap<IpAddr, RestrictedExpression>>,
}

/// Bounds the cached addresses; the cache starts over when full.
const MAX_CACHED_ADDRESSES: usize = 4096;

impl ExtensionCache {
    fn datetime(&self, time: std::time::SystemTime) -> (RestrictedExpression, i64) {
        let (text, day_of_week, second) = time::rfc3339(time);
        let mut cached = self.time.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, expression)) = cached.as_ref()
            && *at == second
        {
            return (expression.clone(), day_of_week);
        }
        let expression = RestrictedExpression::new_datetime(text);
        *cached = Some((second, expression.clone()));
        (expression, day_of_week)
    }

    fn ip(&self, address: IpAddr) -> RestrictedExpression {
        let mut cached = self
            .addresses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(expression) = cached.get(&address) {
            return expression.clone();
        }
        if cached.len() >= MAX_CACHED_ADDRESSES {
            cached.clear();
        }
        let expression = RestrictedExpression::new_ip(address.to_string());
        cached.insert(address, expression.clone());
        expression
    }
}

/// Is a request in Cedar's terms.
#[derive(Debug)]
pub(crate) struct CedarRequest {
    pub(crate) principal: EntityUid,
    pub(crate) action: EntityUid,
    pub(crate) resource: EntityUid,
    pub(crate) context: Context,
    pub(crate) entities: Vec<Entity>,
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

    /// Returns `request` in Cedar's terms; `tool` holds the patterns of the target
    /// tool's constraints.
    pub(crate) fn cedar_request(
        &self,
        request: &Request<'_>,
        tool: Option<&CompiledTool>,
        cache: &ExtensionCache,
    ) -> Result<CedarRequest, Error> {
        let mut entities = Vec::with_capacity(8);
        let principal = self.principal(request, &mut entities)?;
        let resource = self.resource(request.action, request.target, &mut entities)?;
        let arguments = uid(&self.arguments, "call");
        entities.push(arguments_entity(arguments.clone(), request, tool)?);
        let context = context(request, arguments, cache)?;
        Ok(CedarRequest {
            principal,
            action: uid(&self.action, request.action.as_str()),
            resource,
            context,
            entities,
        })
    }

    fn principal(
        &self,
        request: &Request<'_>,
        entities: &mut Vec<Entity>,
    ) -> Result<EntityUid, Error> {
        let principal = request.principal;
        let member = principal
            .member
            .as_ref()
            .map(|member| self.member(member))
            .transpose()?;
        let member_uid = member.as_ref().map(Entity::uid);
        match &principal.agent {
            Some(agent) => {
                let agent = self.agent(agent, member_uid)?;
                let agent_uid = agent.uid();
                entities.push(agent);
                entities.extend(member);
                Ok(agent_uid)
            }
            None => {
                let member = member.ok_or_else(|| {
                    Error::InvalidRequest("principal has neither a member nor an agent".to_owned())
                })?;
                let member_uid = member.uid();
                entities.push(member);
                Ok(member_uid)
            }
        }
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
        let parents = member
            .groups
            .iter()
            .map(|group| uid(&self.group, group))
            .chain(member.roles.iter().map(|role| uid(&self.role, role)));
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
        new_entity(uid(&self.member, id), attrs, parents)
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

    fn resource(
        &self,
        action: Action,
        target: &Target,
        entities: &mut Vec<Entity>,
    ) -> Result<EntityUid, Error> {
        if target.virtual_server.is_empty() {
            return Err(Error::InvalidRequest(
                "target has no virtual server".to_owned(),
            ));
        }
        let server = uid(&self.virtual_server, &target.virtual_server);
        entities.push(Entity::new_no_attrs(server.clone(), Default::default()));
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
        let server_attr = || {
            (
                "virtual_server",
                RestrictedExpression::new_entity_uid(server.clone()),
            )
        };
        let entity = match (action, &target.item) {
            (Action::Connect | Action::ListTools, _) => return Ok(server),
            (Action::CallTool, Some(Item::Tool(tool))) => {
                let mut attrs = vec![
                    ("name", string(&tool.name)),
                    ("upstream_name", string(&tool.upstream_name)),
                    server_attr(),
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
                new_entity(uid(&self.tool, &scoped(&tool.name)), attrs, parents)?
            }
            (Action::ReadResource, Some(Item::Resource { uri })) => new_entity(
                uid(&self.resource, &scoped(uri)),
                [("uri", string(uri)), server_attr()],
                parents,
            )?,
            (Action::GetPrompt, Some(Item::Prompt { name })) => new_entity(
                uid(&self.prompt, &scoped(name)),
                [("name", string(name)), server_attr()],
                parents,
            )?,
            (action, _) => {
                return Err(Error::InvalidRequest(format!(
                    "action {} needs a target of its kind",
                    action.as_str()
                )));
            }
        };
        let resource = entity.uid();
        entities.push(entity);
        Ok(resource)
    }
}

fn context(
    request: &Request<'_>,
    arguments: EntityUid,
    cache: &ExtensionCache,
) -> Result<Context, Error> {
    let (time, day_of_week) = cache.datetime(request.context.time);
    let principal = request.principal;
    let actors = principal.act.iter().map(|actor| {
        actor
            .client_id
            .as_deref()
            .unwrap_or(&actor.subject)
            .to_owned()
    });
    let mut pairs = vec![
        ("arguments", RestrictedExpression::new_entity_uid(arguments)),
        (
            "listing",
            RestrictedExpression::new_bool(request.context.arguments.is_none()),
        ),
        ("scopes", strings(request.scopes)),
        ("time", time),
        ("day_of_week", RestrictedExpression::new_long(day_of_week)),
        (
            "authentication_method",
            string(principal.authentication_method.as_str()),
        ),
        (
            "delegation_depth",
            RestrictedExpression::new_long(i64::try_from(principal.act.len()).unwrap_or(i64::MAX)),
        ),
        (
            "actors",
            RestrictedExpression::new_set(actors.map(RestrictedExpression::new_string)),
        ),
    ];
    if let Some(address) = request.context.source_address {
        pairs.push(("source_address", cache.ip(address)));
    }
    Context::from_pairs(
        pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value)),
    )
    .map_err(|error| Error::Internal(format!("context: {error}")))
}

// Each argument becomes a tag holding the typed views constraints compare.
fn arguments_entity(
    uid: EntityUid,
    request: &Request<'_>,
    tool: Option<&CompiledTool>,
) -> Result<Entity, Error> {
    let Some(arguments) = &request.context.arguments else {
        return new_entity(uid, [], []);
    };
    let tags = arguments.iter().map(|(name, value)| {
        let pattern = tool.and_then(|tool| tool.patterns.get(name));
        let decimal = tool.is_some_and(|tool| tool.decimal_bounds.contains(name));
        (name.clone(), argument(value, pattern, decimal))
    });
    Entity::new_with_tags(uid, [], [], tags)
        .map_err(|error| Error::Internal(format!("arguments entity: {error}")))
}

// Integers are exposed as `long`; `number` (a Cedar decimal, costly to build) only
// for non-integers, or when a constraint on the argument has a fractional bound.
fn argument(
    value: &Value,
    pattern: Option<&regex::Regex>,
    decimal_bound: bool,
) -> RestrictedExpression {
    let mut fields: Vec<(String, RestrictedExpression)> =
        vec![("json".to_owned(), string(&canonical(value)))];
    match value {
        Value::String(text) => {
            fields.push(("text".to_owned(), string(text)));
            let length = i64::try_from(text.chars().count()).unwrap_or(i64::MAX);
            fields.push(("length".to_owned(), RestrictedExpression::new_long(length)));
        }
        Value::Number(number) => {
            if let Some(long) = number.as_i64() {
                fields.push(("long".to_owned(), RestrictedExpression::new_long(long)));
            }
            if (decimal_bound || !number.is_i64())
                && let Some(number) = decimal(number)
            {
                fields.push((
                    "number".to_owned(),
                    RestrictedExpression::new_decimal(number),
                ));
            }
        }
        Value::Bool(flag) => {
            fields.push(("bool".to_owned(), RestrictedExpression::new_bool(*flag)))
        }
        _ => {}
    }
    if let Some(pattern) = pattern {
        let matched = value.as_str().is_some_and(|text| pattern.is_match(text));
        fields.push((
            "matches_pattern".to_owned(),
            RestrictedExpression::new_bool(matched),
        ));
    }
    // Keys are distinct literals, so the record cannot fail on duplicates.
    RestrictedExpression::new_record(fields).unwrap_or_else(|_| string(""))
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
