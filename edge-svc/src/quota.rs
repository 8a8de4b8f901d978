//! Rate limits at the edge: every rule that matches a call charges it, after the policy
//! decision and before forwarding; a call over any budget is refused and never reaches the
//! connector.
//!
//! The refusal is a JSON-RPC error [`RATE_LIMITED`] whose `data.retryAfterSeconds` says when to
//! retry. A modern-era (2026-07-28) request is answered with plain JSON, so its HTTP status can
//! say it too: [`retry_after`] turns that answer into HTTP 429 with `Retry-After`. Legacy
//! sessions keep HTTP 200, as their clients expect errors in the JSON-RPC body only.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use rmcp::model::{ErrorCode, ErrorData};

use crate::auth::Caller;
use crate::error::Error;
use crate::inbound::Inbound;

mod rule;

pub use rule::{Callers, Charge, Dimension, Item, Per, RateLimitsSpec, RuleSpec};

use rule::{Payer, Rule};

/// JSON-RPC code of a rate-limit refusal (implementation-defined server error range; 429's echo).
pub const RATE_LIMITED: ErrorCode = ErrorCode(-32029);

/// The refusal class of an agent bundle's own budget (its `quotas`), as the client hears it.
pub const AGENT_QUOTA_CLASS: &str = "agent_quota";

/// The rate limits in force, or none; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Quotas {
    enforced: Option<Arc<Enforced>>,
}

#[derive(Debug)]
struct Enforced {
    limiter: limits::Limiter,
    /// Swapped whole when an administrator changes the rules; the bucket store stays.
    rules: arc_swap::ArcSwap<Vec<Rule>>,
}

/// Compiles the rules of a `rate_limits:` section; a refusal names the rule and field.
fn compile(rules: &[RuleSpec]) -> Result<Vec<Rule>, Error> {
    rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            Rule::try_from(rule).map_err(|(field, reason)| {
                Error::Start(format!("rate_limits.rules[{index}].{field}: {reason}"))
            })
        })
        .collect()
}

/// The seconds a refused modern request should wait, left by the handler for the HTTP layer.
#[derive(Debug, Clone, Default)]
struct RetryAfter(Arc<OnceLock<u64>>);

impl Quotas {
    /// Returns no rate limits at all.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// Compiles the rules of a `rate_limits:` section and opens its bucket store, which also
    /// holds the agent bundles' own budgets (so it is opened even with no rules).
    pub async fn open(spec: &RateLimitsSpec) -> Result<Self, Error> {
        let rules = compile(&spec.rules)?;
        let limiter = limits::Limiter::open(&spec.backend, spec.on_backend_error)
            .await
            .map_err(Error::RateLimits)?;
        Ok(Self {
            enforced: Some(Arc::new(Enforced {
                limiter,
                rules: arc_swap::ArcSwap::from_pointee(rules),
            })),
        })
    }

    /// Enforces `rules` from the next call on, in place of the current ones; a bucket keeps
    /// its level while its rule keeps its name and dimensions. Refused rules change nothing.
    ///
    /// # Errors
    /// A rule does not compile (the field and why), or no rate limits were opened at all.
    pub fn replace_rules(&self, rules: &[RuleSpec]) -> Result<(), Error> {
        let Some(enforced) = &self.enforced else {
            return Err(Error::Start(
                "rate limits are not enforced by this gateway".to_owned(),
            ));
        };
        enforced.rules.store(Arc::new(compile(rules)?));
        Ok(())
    }

    /// Says whether any rule is enforced.
    pub fn is_enforced(&self) -> bool {
        self.enforced.is_some()
    }

    /// Charges the call to every matching rule's bucket, or returns the client's refusal.
    pub async fn admit(&self, context: &impl Inbound, charge: Charge<'_>) -> Result<(), ErrorData> {
        let Some(enforced) = &self.enforced else {
            return Ok(());
        };
        let parts = context.parts();
        let payer = payer(parts);
        let in_force = enforced.rules.load();
        let (rules, mut keys): (Vec<&Rule>, Vec<String>) = in_force
            .iter()
            .filter_map(|rule| Some((rule, rule.bucket(&charge, &payer)?)))
            .unzip();
        let mut quotas: Vec<limits::Quota> = rules.iter().map(|rule| rule.quota).collect();
        if let Some((key, quota)) = payer.bundle_budget() {
            keys.push(key);
            quotas.push(quota);
        }
        if keys.is_empty() {
            return Ok(());
        }
        let checks: Vec<limits::Check<'_>> = keys
            .iter()
            .zip(&quotas)
            .map(|(key, quota)| limits::Check { key, quota: *quota })
            .collect();
        match enforced.limiter.acquire(&checks).await {
            Ok(limits::Decision::Allowed) => Ok(()),
            Ok(limits::Decision::Limited { check, retry_after }) => {
                let seconds = whole_seconds(retry_after);
                if let Some(slot) = parts.and_then(|parts| parts.extensions.get::<RetryAfter>()) {
                    let _ = slot.0.set(seconds);
                }
                // The bundle's own budget is checked after every rule.
                let class = rules
                    .get(check)
                    .map_or(AGENT_QUOTA_CLASS, |rule| rule.class.as_str());
                Err(refusal(&charge, class, seconds))
            }
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "call refused: rate limits cannot be checked"
                );
                Err(ErrorData::internal_error(
                    "the gateway cannot check rate limits right now; retry later",
                    None,
                ))
            }
        }
    }
}

/// Answers a modern-era request that a rate limit refused with HTTP 429 and `Retry-After`.
///
/// Only a JSON answer is rewritten: an SSE stream's status is already on the wire.
pub(crate) async fn retry_after(
    mut request: Request,
    next: impl AsyncFnOnce(Request) -> Response,
) -> Response {
    let modern = request.headers().contains_key("mcp-method");
    let slot = RetryAfter::default();
    if modern {
        request.extensions_mut().insert(slot.clone());
    }
    let mut response = next(request).await;
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if let (Some(seconds), true) = (slot.0.get(), json) {
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
    }
    response
}

/// Reads the identities a call can be metered by: the caller the gate admitted and the
/// address the request came from.
fn payer(parts: Option<&http::request::Parts>) -> Payer {
    let source_ip = parts
        .and_then(|parts| parts.extensions.get::<ConnectInfo<SocketAddr>>())
        .map(|ConnectInfo(address)| address.ip());
    let Some(Caller::Token(claims)) = parts.and_then(|parts| parts.extensions.get::<Caller>())
    else {
        return Payer {
            source_ip,
            ..Payer::default()
        };
    };
    let principal = crate::access::principal(claims);
    let own_agent = claims.subject == claims.client_id;
    Payer {
        bundle_quota: claims
            .agent
            .as_ref()
            .and_then(|agent| agent.quota)
            .filter(|_| own_agent)
            .and_then(|quota| limits::Quota::new(quota.rate, quota.burst)),
        agent: principal.agent.map(|agent| agent.client_id),
        groups: principal
            .member
            .as_ref()
            .map(|member| member.groups.clone())
            .unwrap_or_default(),
        member: principal.member.map(|member| member.id),
        client: Some(principal.client_id),
        source_ip,
    }
}

/// Rounds a wait up to whole seconds (at least one), the unit `Retry-After` speaks.
fn whole_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

/// The client's error: the item, the rule class and the wait — never other callers' usage.
fn refusal(charge: &Charge<'_>, class: &str, seconds: u64) -> ErrorData {
    let (kind, name) = match charge.item {
        Item::Tool(name) => ("tool", name),
        Item::Prompt(name) => ("prompt", name),
        Item::Resource(uri) => ("resource", uri),
    };
    ErrorData::new(
        RATE_LIMITED,
        format!("rate limit (per {class}) reached for {kind} `{name}`; retry after {seconds} s"),
        Some(serde_json::json!({
            "reason": "rate_limited",
            "limit": class,
            "retryAfterSeconds": seconds,
        })),
    )
}

#[cfg(test)]
mod tests;
