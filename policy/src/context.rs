//! The context of a request in Cedar's terms: arguments, listing, scopes, time,
//! authentication method, delegation chain and source address.
//!
//! The record is built from Cedar values directly: building it as expressions that
//! Cedar then evaluates cost about a tenth of a decision.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use cedar_policy::{Context, EntityUid, RestrictedExpression};
use cedar_policy_core::ast;
use cedar_policy_core::evaluator::RestrictedEvaluator;
use cedar_policy_core::extensions::Extensions;

use crate::error::Error;
use crate::request::Request;
use crate::time;

/// Caches the extension values (`datetime`, `ip`) requests repeat.
///
/// Cedar's `RestrictedExpression::new_ip` and `new_datetime` parse the extension
/// function's name with the full Cedar parser on every call, and evaluating them
/// parses the value; times repeat within a second and client addresses repeat
/// across requests, so the evaluated values are kept.
#[derive(Debug, Default)]
pub(crate) struct ExtensionCache {
    time: Mutex<Option<(i64, ast::Value)>>,
    addresses: Mutex<HashMap<IpAddr, ast::Value>>,
}

/// Bounds the cached addresses; the cache starts over when full.
const MAX_CACHED_ADDRESSES: usize = 4096;

impl ExtensionCache {
    fn datetime(&self, time: SystemTime) -> Result<(ast::Value, i64), Error> {
        let (text, day_of_week, second) = time::rfc3339(time);
        let mut cached = self.time.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, value)) = cached.as_ref()
            && *at == second
        {
            return Ok((value.clone(), day_of_week));
        }
        let value = evaluate(&RestrictedExpression::new_datetime(text))?;
        *cached = Some((second, value.clone()));
        Ok((value, day_of_week))
    }

    fn ip(&self, address: IpAddr) -> Result<ast::Value, Error> {
        let mut cached = self
            .addresses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = cached.get(&address) {
            return Ok(value.clone());
        }
        if cached.len() >= MAX_CACHED_ADDRESSES {
            cached.clear();
        }
        let value = evaluate(&RestrictedExpression::new_ip(address.to_string()))?;
        cached.insert(address, value.clone());
        Ok(value)
    }
}

/// Returns the context of `request`, whose arguments are the entity `arguments`.
pub(crate) fn build(
    request: &Request<'_>,
    arguments: EntityUid,
    cache: &ExtensionCache,
) -> Result<Context, Error> {
    let (time, day_of_week) = cache.datetime(request.context.time)?;
    let principal = request.principal;
    let actors = principal
        .act
        .iter()
        .map(|actor| ast::Value::from(actor.client_id.as_deref().unwrap_or(&actor.subject)));
    let delegation_depth = i64::try_from(principal.act.len()).unwrap_or(i64::MAX);
    let mut record: BTreeMap<_, ast::Value> = [
        (
            "arguments",
            ast::Value::from(ast::EntityUID::from(arguments)),
        ),
        (
            "listing",
            ast::Value::from(request.context.arguments.is_none()),
        ),
        ("scopes", strings(request.scopes)),
        ("time", time),
        ("day_of_week", ast::Value::from(day_of_week)),
        (
            "authentication_method",
            ast::Value::from(principal.authentication_method.as_str()),
        ),
        ("delegation_depth", ast::Value::from(delegation_depth)),
        ("actors", ast::Value::set(actors, None)),
    ]
    .into_iter()
    .map(|(key, value)| (key.into(), value))
    .collect();
    if let Some(address) = request.context.source_address {
        record.insert("source_address".into(), cache.ip(address)?);
    }
    Ok(Context::from(ast::Context::Value(Arc::new(record))))
}

fn strings(values: &[String]) -> ast::Value {
    ast::Value::set(
        values.iter().map(|value| ast::Value::from(value.as_str())),
        None,
    )
}

fn evaluate(expression: &RestrictedExpression) -> Result<ast::Value, Error> {
    RestrictedEvaluator::new(Extensions::all_available())
        .interpret(expression.as_ref().as_borrowed())
        .map_err(|error| Error::Internal(format!("context: {error}")))
}
