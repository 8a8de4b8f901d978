//! The one evaluator: a compiled snapshot that decides requests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Decision as CedarDecision, Effect, Entities, Entity, EntityUid, Policy, PolicyId,
    PolicySet, Schema, ValidationMode, Validator,
};
use serde_json::Value;

use crate::constraint::{self, CompiledTool, ToolConstraints};
use crate::context::ExtensionCache;
use crate::decision::{Decision, DenyReason};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::entity::Types;
use crate::error::Error;
use crate::guard;
use crate::prepared::{Preparations, Prepared};
use crate::principal::Principal;
use crate::request::{Action, Request, RequestContext, Target, Tool};
use crate::schema;
use crate::scope::{self, Scopes};
use crate::slice::Slicer;
use crate::snapshot::{PolicyDocument, PolicyOrigin, Snapshot};

/// Is a validated, compiled policy snapshot: decides requests in-process, in
/// authz-svc (`Decide`) and in edge-svc alike. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Evaluator {
    snapshot: Snapshot,
    schema: Schema,
    policies: PolicySet,
    // The reason class each forbid policy reports (`@reason`), by id.
    reasons: HashMap<PolicyId, DenyReason>,
    // The snapshot's static entities; `None` when it brings none beyond the schema's
    // actions (which have no groups, so a request's store can leave them out).
    entities: Option<Entities>,
    // `None` when static entities make the resource hierarchy unknowable.
    slicer: Option<Slicer>,
    servers: HashMap<String, CompiledServer>,
    types: Types,
    cache: ExtensionCache,
    // Principals and targets in Cedar terms, built once per snapshot.
    preparations: Preparations,
    authorizer: Authorizer,
}

/// Is Cedar's answer to one request, with the principal and resource it was about.
#[derive(Debug)]
struct Authorized {
    response: cedar_policy::Response,
    principal: Arc<Prepared>,
    resource: Arc<Prepared>,
}

/// Is one virtual server's constraints and scopes, ready for lookups.
#[derive(Debug, Default)]
struct CompiledServer {
    tools: HashMap<String, CompiledTool>,
    scopes_by_tool: BTreeMap<String, Vec<String>>,
}

static EMPTY_CONSTRAINTS: ToolConstraints = ToolConstraints::new();

impl Evaluator {
    /// Returns the evaluator of `snapshot`, or Cedar's diagnostics when a policy does
    /// not parse or does not validate (strictly) against the published schema.
    pub fn new(snapshot: Snapshot) -> Result<Self, Error> {
        let schema = schema::parse()?;
        let mut problems = Vec::new();
        let mut policies = PolicySet::new();
        let mut reasons = HashMap::new();
        for text in &snapshot.policies {
            let id = PolicyId::new(&text.id);
            let policy = match Policy::parse(Some(id.clone()), &text.text) {
                Ok(policy) => policy,
                Err(errors) => {
                    problems.push(Diagnostic::of(Some(text.id.clone()), &errors));
                    continue;
                }
            };
            if policy.effect() == Effect::Forbid {
                let reason = policy.annotation("reason").map(|name| {
                    DenyReason::from_name(name).ok_or_else(|| {
                        Diagnostic::new(
                            Some(text.id.clone()),
                            format!("unknown @reason(\"{name}\")"),
                        )
                    })
                });
                match reason.transpose() {
                    Ok(reason) => {
                        reasons.insert(id, reason.unwrap_or(DenyReason::Forbidden));
                    }
                    Err(diagnostic) => problems.push(diagnostic),
                }
            }
            if let Err(error) = policies.add(policy) {
                problems.push(Diagnostic::of(Some(text.id.clone()), &error));
            }
        }
        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        problems.extend(
            validation
                .validation_errors()
                .map(|error| Diagnostic::of(Some(error.policy_id().to_string()), error)),
        );
        let entities = Entities::from_json_str(&snapshot.entities_json, Some(&schema))
            .map_err(|error| problems.push(Diagnostic::of(Some("entities".to_owned()), &error)))
            .unwrap_or_else(|()| Entities::empty());
        if !problems.is_empty() {
            return Err(Error::Invalid(Diagnostics(problems)));
        }
        let servers = snapshot
            .virtual_servers
            .iter()
            .map(|(name, server)| {
                let compiled = CompiledServer {
                    tools: server
                        .constraints
                        .iter()
                        .map(|(tool, constraints)| (tool.clone(), CompiledTool::new(constraints)))
                        .collect(),
                    scopes_by_tool: scope::by_tool(&server.scopes),
                };
                (name.clone(), compiled)
            })
            .collect();
        let has_static = entities.iter().any(|entity| !is_action(&entity.uid()));
        let entities = has_static.then_some(entities);
        let generated: HashSet<PolicyId> = snapshot
            .policies
            .iter()
            .filter(|policy| policy.origin == PolicyOrigin::Generated)
            .map(|policy| PolicyId::new(&policy.id))
            .collect();
        let slicer = entities
            .is_none()
            .then(|| Slicer::new(&policies, guard::guards(&policies, &generated)));
        Ok(Self {
            snapshot,
            schema,
            slicer,
            policies,
            reasons,
            entities,
            servers,
            types: Types::new()?,
            cache: ExtensionCache::default(),
            preparations: Preparations::default(),
            authorizer: Authorizer::new(),
        })
    }

    /// Returns the evaluator of `document` at `version`: builds the snapshot (with
    /// the policies compiled from constraints) and validates it. This is what an
    /// admin API calls to accept or refuse policies.
    pub fn build(
        document: &PolicyDocument,
        version: u64,
        created_at: std::time::SystemTime,
    ) -> Result<Self, Error> {
        Self::new(Snapshot::build(document, version, created_at)?)
    }

    /// Returns the snapshot this evaluator was built from (to publish it).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Returns the snapshot's version.
    pub fn version(&self) -> u64 {
        self.snapshot.version
    }

    /// Decides `request`. List-time filtering asks the same question without
    /// arguments and keeps what [`Decision::is_listed`] says, so a list never shows
    /// what a call would refuse, nor hides what it would allow.
    ///
    /// Cedar skips a policy whose evaluation errors; for a `forbid` that would
    /// silently allow, so an errored forbid denies (`evaluation_error`), failing
    /// closed. A request that cannot be put in Cedar terms is denied the same way.
    pub fn decide(&self, request: &Request<'_>) -> Decision {
        match self.authorize(request) {
            Ok(authorized) => self.verdict(request, &authorized),
            Err(why) => self.failed(request, &why),
        }
    }

    // Puts `request` in Cedar terms (principal and resource prepared once per
    // snapshot) and has Cedar evaluate the policies that can apply to it.
    fn authorize(&self, request: &Request<'_>) -> Result<Authorized, String> {
        let compiled = self
            .servers
            .get(&request.target.virtual_server)
            .zip(request.target.as_tool())
            .and_then(|(server, tool)| server.tools.get(&tool.name));
        let principal = self
            .preparations
            .principal(&self.types, request.principal)
            .map_err(|error| error.to_string())?;
        let resource = self
            .preparations
            .resource(&self.types, request.action, request.target)
            .map_err(|error| error.to_string())?;
        let facts = self
            .types
            .call_facts(request, compiled, &self.cache)
            .map_err(|error| error.to_string())?;
        let entities = self.store(&principal, &resource, facts.arguments)?;
        let cedar_request = cedar_policy::Request::new(
            principal.uid.clone(),
            facts.action,
            resource.uid.clone(),
            facts.context,
            None,
        )
        .map_err(|error| format!("request: {error}"))?;
        let response = match &self.slicer {
            None => self
                .authorizer
                .is_authorized(&cedar_request, &self.policies, &entities),
            Some(slicer) => {
                let slice = slicer.slice(request.action, &principal, &resource);
                let fast = self
                    .authorizer
                    .is_authorized(&cedar_request, &slice.fast, &entities);
                if Arc::ptr_eq(&slice.fast, &slice.exact) || !guard_involved(slicer, &fast) {
                    fast
                } else {
                    self.authorizer
                        .is_authorized(&cedar_request, &slice.exact, &entities)
                }
            }
        };
        Ok(Authorized {
            response,
            principal,
            resource,
        })
    }

    // Returns the entity store of one request: the prepared entities shared, not
    // copied. Gatehouse's own hierarchies are closed as built (an item lists its
    // connector and its virtual server as parents), so the closure Cedar would
    // recompute on every request (a quarter of a decision) is known to hold; static
    // entities can nest arbitrarily, so with them it is computed as before.
    fn store(
        &self,
        principal: &Prepared,
        resource: &Prepared,
        arguments: Entity,
    ) -> Result<Entities, String> {
        use cedar_policy_core::entities::{self as core, NoEntitiesSchema, TCComputation};
        use cedar_policy_core::extensions::Extensions;
        let entities = principal
            .entities
            .iter()
            .chain(&resource.entities)
            .cloned()
            .chain([Arc::new(arguments.as_ref().clone())]);
        let (base, closure) = match &self.entities {
            None => (core::Entities::new(), TCComputation::AssumeAlreadyComputed),
            Some(stored) => (stored.as_ref().clone(), TCComputation::ComputeNow),
        };
        let store = base
            .add_entities(
                entities,
                None::<&NoEntitiesSchema>,
                closure,
                Extensions::all_available(),
            )
            .map_err(|error| format!("entities: {error}"))?;
        Ok(Entities::from(store))
    }

    // Turns Cedar's answer into the decision: an errored forbid fails closed, a
    // permit still needs one of the tool's scopes.
    fn verdict(&self, request: &Request<'_>, authorized: &Authorized) -> Decision {
        let diagnostics = authorized.response.diagnostics();
        let mut determining: Vec<String> = diagnostics.reason().map(ToString::to_string).collect();
        determining.sort();
        let errors: Vec<String> = diagnostics.errors().map(ToString::to_string).collect();
        let errored_forbid = diagnostics.errors().any(|error| {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(error) = error;
            self.reasons.contains_key(error.policy_id())
        });
        let (allowed, reason, required_scopes) = if errored_forbid {
            (false, Some(DenyReason::EvaluationError), Vec::new())
        } else if authorized.response.decision() == CedarDecision::Deny {
            (
                false,
                Some(self.deny_reason(diagnostics.reason())),
                Vec::new(),
            )
        } else {
            match self.missing_scopes(request) {
                Some(required) => (false, Some(DenyReason::InsufficientScope), required),
                None => (true, None, Vec::new()),
            }
        };
        let mut explanation = format!(
            "{verdict} {principal} {action} {resource}",
            verdict = if allowed { "allow" } else { "deny" },
            principal = authorized.principal.uid,
            action = request.action.as_str(),
            resource = authorized.resource.uid,
        );
        if let Some(reason) = reason {
            let _ = write!(explanation, " reason={}", reason.as_str());
        }
        let _ = write!(explanation, " policies=[{}]", determining.join(", "));
        if !required_scopes.is_empty() {
            let _ = write!(
                explanation,
                " required_scopes=[{}]",
                required_scopes.join(", ")
            );
        }
        if !errors.is_empty() {
            let _ = write!(explanation, " errors=[{}]", errors.join("; "));
        }
        let _ = write!(explanation, " policy_version={}", self.version());
        Decision {
            allowed,
            reason,
            policy_ids: determining,
            required_scopes,
            explanation,
            policy_version: self.version(),
        }
    }

    /// Decides several actions of one principal in one context against this one
    /// snapshot (`DecideBatch`, list-time filtering): each answer is exactly what
    /// [`Self::decide`] says for it.
    pub fn decide_batch<'t>(
        &self,
        principal: &Principal,
        scopes: &[String],
        queries: impl IntoIterator<Item = (Action, &'t Target)>,
        context: &RequestContext,
    ) -> Vec<Decision> {
        queries
            .into_iter()
            .map(|(action, target)| {
                self.decide(&Request {
                    principal,
                    scopes,
                    action,
                    target,
                    context,
                })
            })
            .collect()
    }

    /// Returns the tools of `virtual_server` (each with its connector) that belong in
    /// the caller's `tools/list`: those [`Decision::is_listed`] keeps when
    /// [`Self::decide`] is asked `call_tool` without arguments.
    pub fn visible_tools<'t>(
        &self,
        principal: &Principal,
        scopes: &[String],
        virtual_server: &str,
        tools: impl IntoIterator<Item = (&'t str, &'t Tool)>,
        context: &RequestContext,
    ) -> Vec<&'t Tool> {
        let listing = RequestContext {
            arguments: None,
            ..context.clone()
        };
        tools
            .into_iter()
            .filter(|(connector, tool)| {
                let target = Target::tool(virtual_server, connector, (*tool).clone());
                self.decide(&Request {
                    principal,
                    scopes,
                    action: Action::CallTool,
                    target: &target,
                    context: &listing,
                })
                .is_listed()
            })
            .map(|(_, tool)| tool)
            .collect()
    }

    /// Returns the scopes any one of which grants calling `tool` on
    /// `virtual_server`; empty when the tool needs no scope.
    pub fn scopes_for_tool(&self, virtual_server: &str, tool: &str) -> &[String] {
        self.servers
            .get(virtual_server)
            .and_then(|server| server.scopes_by_tool.get(tool))
            .map_or(&[], Vec::as_slice)
    }

    /// Returns the scopes `virtual_server` declares (for protected-resource metadata
    /// and consent screens).
    pub fn scopes(&self, virtual_server: &str) -> Option<&Scopes> {
        self.snapshot
            .virtual_servers
            .get(virtual_server)
            .map(|server| &server.scopes)
    }

    /// Returns the argument constraints of `tool` on `virtual_server`.
    pub fn constraints(&self, virtual_server: &str, tool: &str) -> &ToolConstraints {
        self.snapshot
            .virtual_servers
            .get(virtual_server)
            .and_then(|server| server.constraints.get(tool))
            .unwrap_or(&EMPTY_CONSTRAINTS)
    }

    /// Returns `input_schema` of `tool` narrowed by its constraints, for `tools/list`.
    pub fn narrow_input_schema(
        &self,
        virtual_server: &str,
        tool: &str,
        input_schema: &Value,
    ) -> Value {
        constraint::narrow_input_schema(input_schema, self.constraints(virtual_server, tool))
    }

    /// Returns the published schema, parsed.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    fn deny_reason<'a>(&self, determining: impl Iterator<Item = &'a PolicyId>) -> DenyReason {
        let mut reasons: Vec<DenyReason> = determining
            .filter_map(|id| self.reasons.get(id).copied())
            .collect();
        // A plain forbid outranks a classified one: the most general reason is the
        // one a client can act on least, so it is never hidden behind a specific one.
        reasons.sort_by_key(|reason| *reason != DenyReason::Forbidden);
        reasons.first().copied().unwrap_or(DenyReason::NoPermit)
    }

    fn missing_scopes(&self, request: &Request<'_>) -> Option<Vec<String>> {
        if request.action != Action::CallTool {
            return None;
        }
        let tool = request.target.as_tool()?;
        let granting = self.scopes_for_tool(&request.target.virtual_server, &tool.name);
        let held =
            granting.is_empty() || granting.iter().any(|scope| request.scopes.contains(scope));
        (!held).then(|| granting.to_vec())
    }

    fn failed(&self, request: &Request<'_>, why: &str) -> Decision {
        Decision {
            allowed: false,
            reason: Some(DenyReason::EvaluationError),
            policy_ids: Vec::new(),
            required_scopes: Vec::new(),
            explanation: format!(
                "deny {} reason=evaluation_error: {why} policy_version={}",
                request.action.as_str(),
                self.version()
            ),
            policy_version: self.version(),
        }
    }
}

fn is_action(uid: &EntityUid) -> bool {
    uid.type_name().basename() == "Action" && uid.type_name().namespace().is_empty()
}

// A guard that is true or errs stands for members that must be evaluated
// themselves, so that the decision names them.
fn guard_involved(slicer: &Slicer, response: &cedar_policy::Response) -> bool {
    let diagnostics = response.diagnostics();
    diagnostics.reason().any(|id| slicer.is_guard(id))
        || diagnostics.errors().any(|error| {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(error) = error;
            slicer.is_guard(error.policy_id())
        })
}
