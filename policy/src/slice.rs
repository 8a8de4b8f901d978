//! Policy slicing: only the policies whose scope can match a request are handed
//! to Cedar, which otherwise evaluates every policy of the set on every request.
//!
//! A policy's scope (`principal`, `action`, `resource` constraints) decides whether
//! it can apply. Gatehouse builds every principal's and resource's hierarchy itself
//! ([`Prepared`]: its uid and all it is `in`), so whether a scope matches is known
//! exactly before Cedar runs; Cedar then evaluates the same scope again along with
//! the conditions, so slicing never changes a decision. It is disabled when a
//! snapshot brings static entities, whose hierarchy it cannot see.
//!
//! Each slice comes in two forms: `exact`, the applicable policies, and `fast`, the
//! same with the members of each applicable [`Guard`] replaced by the guard.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use cedar_policy::{
    ActionConstraint, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet, PrincipalConstraint,
    ResourceConstraint,
};

use crate::guard::Guard;
use crate::prepared::Prepared;
use crate::request::Action;

/// Bounds the remembered (action, principal, resource) triples; past it, the memo
/// starts over. Distinct slices are few (one per combination of applicable
/// policies), so they are kept without a bound of their own beyond this one.
const MAX_SLICES: usize = 10_000;

/// Is a policy set with the scope of each policy, and the slices computed so far.
#[derive(Debug)]
pub(crate) struct Slicer {
    policies: Vec<(Policy, Applies)>,
    // Each guard with the indices of its members in `policies`; in bit sets, guard
    // `g` is bit `policies.len() + g`.
    guards: Vec<(Policy, Vec<usize>)>,
    guard_ids: HashSet<PolicyId>,
    memo: RwLock<Memo>,
}

/// Is the policies that can apply to one request, with and without guards.
#[derive(Debug, Clone)]
pub(crate) struct Slice {
    /// Has each applicable guard in place of its members: what Cedar evaluates first.
    pub(crate) fast: Arc<PolicySet>,
    /// Has exactly the applicable policies: what Cedar evaluates when a guard in
    /// `fast` is true or errs (the same set as `fast` when no guard applies).
    pub(crate) exact: Arc<PolicySet>,
}

#[derive(Debug, Default)]
struct Memo {
    // (action, principal id, resource id) → the slice; ids are `Prepared::id`.
    by_request: HashMap<(Action, u64, u64), Slice>,
    // A bit set of policies and guards → that policy set, shared by every request
    // with the same applicable policies.
    by_policies: HashMap<Vec<u64>, Arc<PolicySet>>,
}

/// Says which requests a policy's scope can match.
#[derive(Debug, Clone)]
struct Applies {
    // `None`: any action. Unknown action ids (which validation refuses) match nothing.
    actions: Option<Vec<Action>>,
    principal: Scope,
    resource: Scope,
}

/// Is a principal or resource scope constraint.
#[derive(Debug, Clone)]
enum Scope {
    Any,
    Is(EntityTypeName),
    Eq(EntityUid),
    In(EntityUid),
    IsIn(EntityTypeName, EntityUid),
}

impl Slicer {
    /// Returns the slicer of `set`, evaluating `guards` in place of their members.
    pub(crate) fn new(set: &PolicySet, guards: Vec<Guard>) -> Self {
        let policies: Vec<(Policy, Applies)> = set
            .policies()
            .map(|policy| (policy.clone(), Applies::of(policy)))
            .collect();
        let index_of = |id: &PolicyId| policies.iter().position(|(policy, _)| policy.id() == id);
        let guards: Vec<(Policy, Vec<usize>)> = guards
            .into_iter()
            .filter_map(|guard| {
                let members: Option<Vec<usize>> = guard.members.iter().map(index_of).collect();
                Some((guard.policy, members?))
            })
            .collect();
        Self {
            guard_ids: guards
                .iter()
                .map(|(policy, _)| policy.id().clone())
                .collect(),
            policies,
            guards,
            memo: RwLock::new(Memo::default()),
        }
    }

    /// Says whether `id` is a guard's (which a decision must never report).
    pub(crate) fn is_guard(&self, id: &PolicyId) -> bool {
        self.guard_ids.contains(id)
    }

    /// Returns the policies that can apply to `action` of `principal` on `resource`.
    pub(crate) fn slice(&self, action: Action, principal: &Prepared, resource: &Prepared) -> Slice {
        let key = (action, principal.id, resource.id);
        if let Some(slice) = self
            .memo
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_request
            .get(&key)
        {
            return slice.clone();
        }
        let total = self.policies.len() + self.guards.len();
        let mut exact = vec![0_u64; total.div_ceil(64)];
        for (index, (_, applies)) in self.policies.iter().enumerate() {
            if applies.matches(action, principal, resource) {
                set(&mut exact, index);
            }
        }
        let mut fast = exact.clone();
        for (guard, (_, members)) in self.guards.iter().enumerate() {
            // Members share the guard's scope: all of them apply, or none.
            if members.iter().all(|&member| is_set(&exact, member)) {
                members.iter().for_each(|&member| clear(&mut fast, member));
                set(&mut fast, self.policies.len() + guard);
            }
        }
        let mut memo = self.memo.write().unwrap_or_else(PoisonError::into_inner);
        if memo.by_request.len() >= MAX_SLICES {
            *memo = Memo::default();
        }
        let exact_set = self.set_of(&mut memo, exact.clone());
        let slice = Slice {
            fast: if fast == exact {
                exact_set.clone()
            } else {
                self.set_of(&mut memo, fast)
            },
            exact: exact_set,
        };
        memo.by_request.insert(key, slice.clone());
        slice
    }

    fn set_of(&self, memo: &mut Memo, bits: Vec<u64>) -> Arc<PolicySet> {
        if let Some(set) = memo.by_policies.get(&bits) {
            return set.clone();
        }
        let mut set = PolicySet::new();
        let guards = self.guards.iter().map(|(policy, _)| policy);
        for (index, policy) in self
            .policies
            .iter()
            .map(|(policy, _)| policy)
            .chain(guards)
            .enumerate()
        {
            if is_set(&bits, index) {
                // Ids are unique (guards' were checked against the set), so adding
                // cannot fail.
                let _unique = set.add(policy.clone());
            }
        }
        let set = Arc::new(set);
        memo.by_policies.insert(bits, set.clone());
        set
    }
}

fn set(bits: &mut [u64], index: usize) {
    bits[index / 64] |= 1 << (index % 64);
}

fn clear(bits: &mut [u64], index: usize) {
    bits[index / 64] &= !(1 << (index % 64));
}

fn is_set(bits: &[u64], index: usize) -> bool {
    bits[index / 64] & (1 << (index % 64)) != 0
}

impl Applies {
    fn of(policy: &Policy) -> Self {
        let actions = match policy.action_constraint() {
            ActionConstraint::Any => None,
            ActionConstraint::Eq(action) => Some(actions([action])),
            ActionConstraint::In(list) => Some(actions(list)),
        };
        let principal = match policy.principal_constraint() {
            PrincipalConstraint::Any => Scope::Any,
            PrincipalConstraint::Is(type_name) => Scope::Is(type_name),
            PrincipalConstraint::Eq(uid) => Scope::Eq(uid),
            PrincipalConstraint::In(uid) => Scope::In(uid),
            PrincipalConstraint::IsIn(type_name, uid) => Scope::IsIn(type_name, uid),
        };
        let resource = match policy.resource_constraint() {
            ResourceConstraint::Any => Scope::Any,
            ResourceConstraint::Is(type_name) => Scope::Is(type_name),
            ResourceConstraint::Eq(uid) => Scope::Eq(uid),
            ResourceConstraint::In(uid) => Scope::In(uid),
            ResourceConstraint::IsIn(type_name, uid) => Scope::IsIn(type_name, uid),
        };
        Self {
            actions,
            principal,
            resource,
        }
    }

    fn matches(&self, action: Action, principal: &Prepared, resource: &Prepared) -> bool {
        self.actions
            .as_ref()
            .is_none_or(|actions| actions.contains(&action))
            && self.principal.matches(principal)
            && self.resource.matches(resource)
    }
}

impl Scope {
    fn matches(&self, party: &Prepared) -> bool {
        match self {
            Self::Any => true,
            Self::Is(type_name) => party.uid.type_name() == type_name,
            Self::Eq(uid) => party.uid == *uid,
            Self::In(uid) => party.is_in(uid),
            Self::IsIn(type_name, uid) => party.uid.type_name() == type_name && party.is_in(uid),
        }
    }
}

// Actions have no groups in the schema, so `in` a list is membership of the list.
fn actions(uids: impl IntoIterator<Item = EntityUid>) -> Vec<Action> {
    uids.into_iter()
        .filter_map(|uid| {
            let id = uid.id().unescaped().to_owned();
            Action::ALL.into_iter().find(|action| action.as_str() == id)
        })
        .collect()
}
