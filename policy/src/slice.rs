//! Policy slicing: only the policies whose scope can match a request are handed
//! to Cedar, which otherwise evaluates every policy of the set on every request.
//!
//! A policy's action and resource scope decide whether it can apply; since
//! Gatehouse builds each request's resource hierarchy itself (item → connector →
//! virtual server), whether a scope can match depends only on the action, the
//! virtual server and the connector. Slicing is sound (it never drops a policy
//! that could apply) and is disabled when a snapshot brings static entities, whose
//! hierarchy it cannot see.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use cedar_policy::{ActionConstraint, EntityUid, Policy, PolicySet, ResourceConstraint};

use crate::request::{Action, Target};

/// Bounds the slices kept, so that requests naming ever new targets cannot grow
/// memory without limit; past it, slices are computed per request.
const MAX_SLICES: usize = 10_000;

/// Is a policy set with the scope of each policy, and the slices computed so far.
#[derive(Debug)]
pub(crate) struct Slicer {
    policies: Vec<(Policy, Applies)>,
    slices: RwLock<HashMap<SliceKey, Arc<PolicySet>>>,
}

type SliceKey = (Action, String, Option<String>);

/// Says which requests a policy's scope can match.
#[derive(Debug, Clone)]
struct Applies {
    actions: Option<Vec<Action>>,
    resource: Resource,
}

#[derive(Debug, Clone)]
enum Resource {
    Any,
    VirtualServer(String),
    Connector(String),
    // An item id is `<virtual server>/<name>`; it can match only that server.
    Item(String),
}

impl Slicer {
    /// Returns the slicer of `set`.
    pub(crate) fn new(set: &PolicySet) -> Self {
        let policies = set
            .policies()
            .map(|policy| (policy.clone(), Applies::of(policy)))
            .collect();
        Self {
            policies,
            slices: RwLock::new(HashMap::new()),
        }
    }

    /// Returns the policies that can apply to `action` on `target`.
    pub(crate) fn slice(&self, action: Action, target: &Target) -> Arc<PolicySet> {
        let key: SliceKey = (
            action,
            target.virtual_server.clone(),
            target.connector.clone(),
        );
        if let Some(slice) = self
            .slices
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return slice.clone();
        }
        let mut slice = PolicySet::new();
        for (policy, applies) in &self.policies {
            if applies.matches(action, target) {
                // Ids are unique in the full set, so adding cannot fail.
                let _unique = slice.add(policy.clone());
            }
        }
        let slice = Arc::new(slice);
        let mut slices = self.slices.write().unwrap_or_else(PoisonError::into_inner);
        if slices.len() < MAX_SLICES {
            slices.insert(key, slice.clone());
        }
        slice
    }
}

impl Applies {
    fn of(policy: &Policy) -> Self {
        let actions = match policy.action_constraint() {
            ActionConstraint::Any => None,
            ActionConstraint::Eq(action) => Some(actions([action])),
            ActionConstraint::In(list) => Some(actions(list)),
        };
        let resource = match policy.resource_constraint() {
            ResourceConstraint::Any | ResourceConstraint::Is(_) => Resource::Any,
            ResourceConstraint::In(uid)
            | ResourceConstraint::Eq(uid)
            | ResourceConstraint::IsIn(_, uid) => Resource::of(&uid),
        };
        Self { actions, resource }
    }

    fn matches(&self, action: Action, target: &Target) -> bool {
        let action_matches = self
            .actions
            .as_ref()
            .is_none_or(|actions| actions.contains(&action));
        action_matches
            && match &self.resource {
                Resource::Any => true,
                Resource::VirtualServer(name) => *name == target.virtual_server,
                Resource::Connector(name) => target.connector.as_ref() == Some(name),
                Resource::Item(id) => id
                    .strip_prefix(target.virtual_server.as_str())
                    .is_some_and(|rest| rest.starts_with('/')),
            }
    }
}

impl Resource {
    fn of(uid: &EntityUid) -> Self {
        let id = uid.id().unescaped().to_owned();
        match uid.type_name().to_string().as_str() {
            "VirtualServer" => Self::VirtualServer(id),
            "Connector" => Self::Connector(id),
            "Tool" | "Resource" | "Prompt" => Self::Item(id),
            _ => Self::Any,
        }
    }
}

// Unknown action ids (which validation refuses anyway) match nothing.
fn actions(uids: impl IntoIterator<Item = EntityUid>) -> Vec<Action> {
    uids.into_iter()
        .filter_map(|uid| {
            let id = uid.id().unescaped().to_owned();
            Action::ALL.into_iter().find(|action| action.as_str() == id)
        })
        .collect()
}
