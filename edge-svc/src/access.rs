//! Who may see and call what: the policy edge enforces on every request.
//!
//! Edge evaluates the same [`policy::Evaluator`] authz-svc decides with, on a snapshot kept
//! current through a watch channel (in process under `gatehouse up`), so a decision costs no
//! round trip, and list-time filtering and call-time checks are one function that cannot
//! disagree. Without a policy, every curated item is open to every authenticated caller.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::ConnectInfo;
use policy::{Action, Evaluator, Item, Principal, Request, RequestContext, Target};
use rmcp::model::{ErrorCode, ErrorData, JsonObject, Tool};
use tokio::sync::watch;

use crate::auth::{Caller, TokenClaims};
use crate::inbound::Inbound;

/// JSON-RPC code of a policy refusal (implementation-defined server error range).
pub const POLICY_DENIED: ErrorCode = ErrorCode(-32003);

/// The policy in force, or none; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Access {
    live: Option<watch::Receiver<Arc<Evaluator>>>,
    directory: Option<Arc<dyn MemberGroups>>,
}

/// The current groups of the members a directory provisions (SCIM). Policy decides on these,
/// not on the groups frozen in the token, so a membership change applies to the next request.
pub trait MemberGroups: Send + Sync + std::fmt::Debug + 'static {
    /// Returns the member's current groups, or `None` when the directory does not know it.
    fn groups(&self, member_id: &str) -> Option<Vec<String>>;
}

/// A caller as policy sees it, with the request facts every decision of one request shares.
#[derive(Debug)]
pub struct Subject {
    principal: Principal,
    scopes: Vec<String>,
    source: Option<IpAddr>,
}

/// A decision and the verdict it leads to for the client.
#[derive(Debug)]
pub struct Verdict {
    /// The decision with its explanation, for the audit record.
    pub decision: policy::Decision,
    /// The client's error when the request is refused.
    pub refusal: Option<ErrorData>,
}

impl Access {
    /// Returns the absence of a policy: curation alone decides what is exposed.
    pub fn unrestricted() -> Self {
        Self::default()
    }

    /// Enforces the snapshots `receiver` delivers, switching at once when a new one arrives.
    pub fn live(receiver: watch::Receiver<Arc<Evaluator>>) -> Self {
        Self {
            live: Some(receiver),
            directory: None,
        }
    }

    /// Decides on `directory`'s current groups for the members it knows.
    #[must_use]
    pub fn with_directory(mut self, directory: Arc<dyn MemberGroups>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// Returns the OAuth scopes `virtual_server` declares, for its protected-resource metadata.
    pub fn scopes_supported(&self, virtual_server: &str) -> Vec<String> {
        let Some(live) = &self.live else {
            return Vec::new();
        };
        live.borrow()
            .scopes(virtual_server)
            .map(|scopes| scopes.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Returns the scopes any one of which a `tools/call` of `tool` needs, when the caller's
    /// token holds none of them (the step-up a client must make), or `None`.
    ///
    /// Checked at the HTTP layer for requests that name their tool in `Mcp-Name`, so that the
    /// client gets the RFC 6750 `insufficient_scope` challenge its OAuth library understands.
    pub fn missing_scopes(
        &self,
        virtual_server: &str,
        tool: &str,
        held: &[String],
    ) -> Option<Vec<String>> {
        let live = self.live.as_ref()?;
        let evaluator = live.borrow();
        let granting = evaluator.scopes_for_tool(virtual_server, tool);
        (!granting.is_empty() && !granting.iter().any(|scope| held.contains(scope)))
            .then(|| granting.to_vec())
    }

    /// Returns the policy subject of a request, or `None` when no policy applies to it.
    ///
    /// An anonymous caller (`auth: none`) has no identity to decide on: such a virtual server
    /// is open by definition.
    pub fn subject(&self, context: &impl Inbound) -> Option<(Arc<Evaluator>, Subject)> {
        let evaluator = self.live.as_ref()?.borrow().clone();
        // An empty snapshot is no policy (a gateway started without one, which the admin API
        // may give one later), not a deny-all.
        let snapshot = evaluator.snapshot();
        if snapshot.policies.is_empty() && snapshot.virtual_servers.is_empty() {
            return None;
        }
        let parts = context.parts()?;
        let Some(Caller::Token(claims)) = parts.extensions.get::<Caller>() else {
            return None;
        };
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        Some((evaluator, self.subject_of(claims, source)))
    }

    /// Returns the subject a request carrying `claims` would be, with the policy in force, or
    /// `None` when no policy applies: what the console previews a role's lists with, so that
    /// its preview and `tools/list` are one evaluation.
    pub fn subject_for(&self, claims: &TokenClaims) -> Option<(Arc<Evaluator>, Subject)> {
        let evaluator = self.live.as_ref()?.borrow().clone();
        let snapshot = evaluator.snapshot();
        if snapshot.policies.is_empty() && snapshot.virtual_servers.is_empty() {
            return None;
        }
        Some((evaluator, self.subject_of(claims, None)))
    }

    /// Returns the policy subject of `claims`, with the directory's current groups.
    fn subject_of(&self, claims: &TokenClaims, source: Option<IpAddr>) -> Subject {
        let mut principal = principal(claims);
        if let (Some(directory), Some(member)) = (&self.directory, principal.member.as_mut())
            && let Some(groups) = directory.groups(&member.id)
        {
            member.groups = groups;
        }
        Subject {
            principal,
            scopes: claims.scopes.clone(),
            source,
        }
    }
}

impl Subject {
    /// Decides `action` on `item` of `connector` in `virtual_server`, with the call's arguments.
    pub fn decide(
        &self,
        evaluator: &Evaluator,
        action: Action,
        virtual_server: &str,
        connector: &str,
        item: Item,
        arguments: Option<&JsonObject>,
    ) -> Verdict {
        let target = Target {
            virtual_server: virtual_server.to_owned(),
            connector: Some(connector.to_owned()),
            item: Some(item),
        };
        let context = RequestContext {
            arguments: arguments.cloned(),
            time: SystemTime::now(),
            source_address: self.source,
        };
        let decision = evaluator.decide(&Request {
            principal: &self.principal,
            scopes: &self.scopes,
            action,
            target: &target,
            context: &context,
        });
        let refusal = (!decision.allowed).then(|| refusal(&target, &decision));
        Verdict { decision, refusal }
    }

    /// Says whether an item belongs in this caller's lists (allowed, or missing only a scope
    /// the client can step up to).
    pub fn lists(
        &self,
        evaluator: &Evaluator,
        action: Action,
        virtual_server: &str,
        connector: &str,
        item: Item,
    ) -> bool {
        self.decide(evaluator, action, virtual_server, connector, item, None)
            .decision
            .is_listed()
    }
}

/// Returns who a verified token names: member, agent (its own or acting for the member), client.
pub fn principal(claims: &TokenClaims) -> Principal {
    Principal::from_claims(&policy::TokenClaims {
        issuer: &claims.issuer,
        subject: &claims.subject,
        client_id: &claims.client_id,
        act: claims.act.as_ref(),
        groups: &claims.groups,
        roles: &claims.roles,
        authentication_method: authentication_method(claims),
        bundle: claims.agent.as_ref().map(|agent| policy::BundleClaims {
            bundle_id: &agent.id,
            bundle_name: &agent.name,
            owner_member_id: agent.owner.as_deref(),
        }),
    })
}

/// Returns how the token was obtained: an agent's own token says how the agent
/// authenticated; a token with `act` came from an exchange; otherwise a member signed in.
fn authentication_method(claims: &TokenClaims) -> policy::AuthenticationMethod {
    if claims.subject == claims.client_id {
        claims
            .agent
            .as_ref()
            .and_then(|agent| policy::AuthenticationMethod::from_name(&agent.method))
            .unwrap_or(policy::AuthenticationMethod::ClientSecret)
    } else if claims.act.is_some() {
        policy::AuthenticationMethod::TokenExchange
    } else {
        policy::AuthenticationMethod::AuthorizationCode
    }
}

/// The policy view of an exposed tool: its exposed and upstream names and its annotations.
pub fn tool_item(tool: &Tool, upstream: &str) -> Item {
    let annotations = tool.annotations.as_ref();
    Item::Tool(policy::Tool {
        name: tool.name.to_string(),
        upstream_name: upstream.to_owned(),
        annotations: policy::Annotations {
            read_only: annotations.and_then(|a| a.read_only_hint),
            destructive: annotations.and_then(|a| a.destructive_hint),
            idempotent: annotations.and_then(|a| a.idempotent_hint),
            open_world: annotations.and_then(|a| a.open_world_hint),
        },
    })
}

/// The client's error for a denial: the item and the reason class, never policy text or ids.
fn refusal(target: &Target, decision: &policy::Decision) -> ErrorData {
    let reason = decision.reason.unwrap_or(policy::DenyReason::NoPermit);
    let (kind, name) = match &target.item {
        Some(Item::Tool(tool)) => ("tool", tool.name.as_str()),
        Some(Item::Prompt { name }) => ("prompt", name.as_str()),
        Some(Item::Resource { uri }) => ("resource", uri.as_str()),
        None => ("virtual server", target.virtual_server.as_str()),
    };
    let message = reason.client_message(kind, name);
    let mut data = serde_json::json!({"reason": reason.as_str()});
    if !decision.required_scopes.is_empty() {
        data["required_scopes"] = serde_json::json!(decision.required_scopes);
    }
    ErrorData::new(POLICY_DENIED, message, Some(data))
}
