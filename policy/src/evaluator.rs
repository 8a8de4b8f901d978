//! The one evaluator: a compiled snapshot that decides requests.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use cedar_policy::{
    Authorizer, Decision as CedarDecision, Effect, Entities, Policy, PolicyId, PolicySet, Schema,
    ValidationMode, Validator,
};
use serde_json::Value;

use crate::constraint::{self, CompiledTool, ToolConstraints};
use crate::decision::{Decision, DenyReason};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::entity::{ExtensionCache, Types};
use crate::error::Error;
use crate::principal::Principal;
use crate::request::{Action, Request, RequestContext, Target, Tool};
use crate::schema;
use crate::scope::{self, Scopes};
use crate::slice::Slicer;
use crate::snapshot::{PolicyDocument, Snapshot};

/// Is a validated, compiled policy snapshot: decides requests in-process, in
/// authz-svc (`Decide`) and in edge-svc alike. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Evaluator {
    snapshot: Snapshot,
    schema: Schema,
    policies: PolicySet,
    // The reason class each forbid policy reports (`@reason`), by id.
    reasons: HashMap<PolicyId, DenyReason>,
    entities: Entities,
    // `None` when static entities make the resource hierarchy unknowable.
    slicer: Option<Slicer>,
    servers: HashMap<String, CompiledServer>,
    types: Types,
    cache: ExtensionCache,
    authorizer: Authorizer,
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
        let slicer = entities.is_empty().then(|| Slicer::new(&policies));
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
        let server = self.servers.get(&request.target.virtual_server);
        let tool = request.target.as_tool();
        let compiled = server
            .zip(tool)
            .and_then(|(server, tool)| server.tools.get(&tool.name));
        let cedar = match self.types.cedar_request(request, compiled, &self.cache) {
            Ok(cedar) => cedar,
            Err(error) => return self.failed(request, &error.to_string()),
        };
        let entities = if self.entities.is_empty() {
            Entities::from_entities(cedar.entities, None)
        } else {
            self.entities.clone().add_entities(cedar.entities, None)
        };
        let entities = match entities {
            Ok(entities) => entities,
            Err(error) => return self.failed(request, &format!("entities: {error}")),
        };
        let cedar_request = match cedar_policy::Request::new(
            cedar.principal.clone(),
            cedar.action,
            cedar.resource.clone(),
            cedar.context,
            None,
        ) {
            Ok(cedar_request) => cedar_request,
            Err(error) => return self.failed(request, &format!("request: {error}")),
        };
        let slice = self
            .slicer
            .as_ref()
            .map(|slicer| slicer.slice(request.action, request.target));
        let policies = slice.as_deref().unwrap_or(&self.policies);
        let response = self
            .authorizer
            .is_authorized(&cedar_request, policies, &entities);
        let diagnostics = response.diagnostics();
        let mut determining: Vec<String> = diagnostics.reason().map(ToString::to_string).collect();
        determining.sort();
        let errors: Vec<String> = diagnostics.errors().map(ToString::to_string).collect();
        let errored_forbid = diagnostics.errors().any(|error| {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(error) = error;
            self.reasons.contains_key(error.policy_id())
        });
        let (allowed, reason, required_scopes) = if errored_forbid {
            (false, Some(DenyReason::EvaluationError), Vec::new())
        } else if response.decision() == CedarDecision::Deny {
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
            principal = cedar.principal,
            action = request.action.as_str(),
            resource = cedar.resource,
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
