//! Gatehouse's policy model and evaluator, shared by the decision point and the
//! enforcement point.
//!
//! This crate exists so that there is exactly one evaluator. authz-svc (the policy
//! decision point) answers `Decide` with it and publishes [`Snapshot`]s; edge-svc
//! (the policy enforcement point) evaluates the same snapshots in-process with the
//! same code, so a decision never depends on which side made it, and list-time
//! filtering and call-time checks are one function ([`Evaluator::decide`]). Services
//! may not depend on each other's crates, so everything both need lives here: the
//! published Cedar schema ([`SCHEMA`]), building Cedar entities from principals and
//! targets, the context (arguments, time, source address, authentication method,
//! delegation chain), evaluation with explanations, argument constraints compiled
//! into Cedar and into narrowed tool input schemas, the scope-to-tool map, policy
//! validation with Cedar's diagnostics, and conversion to and from the wire
//! `PolicySnapshot`.

mod constraint;
mod context;
mod convert;
mod decision;
mod diagnostic;
mod entity;
mod error;
mod evaluator;
mod guard;
mod literal;
mod prepared;
mod principal;
mod request;
mod schema;
mod scope;
mod slice;
mod snapshot;
mod time;

pub use constraint::{ArgumentConstraint, Constraints, ToolConstraints, narrow_input_schema};
pub use decision::{Decision, DenyReason};
pub use diagnostic::{Diagnostic, Diagnostics};
pub use error::Error;
pub use evaluator::Evaluator;
pub use principal::{
    Actor, Agent, AuthenticationMethod, BundleClaims, Member, Principal, TokenClaims,
};
pub use request::{Action, Annotations, Item, Request, RequestContext, Target, Tool};
pub use schema::SCHEMA;
pub use scope::{ScopeGrant, Scopes};
pub use snapshot::{
    CedarSource, PolicyDocument, PolicyOrigin, PolicyText, Snapshot, VirtualServerPolicy,
};
