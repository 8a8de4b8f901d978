//! Principals and targets in Cedar terms, built once per snapshot and reused.
//!
//! A principal's entities are the same for every request its token makes, and a
//! target's for every call of that tool, so an evaluator builds each once and keeps
//! it: building them (Cedar evaluates every attribute expression into a value) cost
//! more than a quarter of a decision. Only the arguments and the context are built
//! per request.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use cedar_policy::{Entity, EntityUid};
use cedar_policy_core::ast;

use crate::entity::Types;
use crate::error::Error;
use crate::principal::Principal;
use crate::request::{Action, Target};

/// Bounds each memo, so that ever new principals or targets cannot grow memory
/// without limit; a full memo starts over.
const MAX_ENTRIES: usize = 10_000;

/// Is a principal or a target as Cedar sees it: its uid, what it is `in`, and the
/// entities that say so.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// Identifies this preparation among all of one evaluator's (keys policy slices).
    pub(crate) id: u64,
    pub(crate) uid: EntityUid,
    /// Is every entity `uid` is `in` besides itself: Gatehouse builds hierarchies one
    /// level deep (or closed, for tools), so the parents are all the ancestors.
    pub(crate) ancestors: Vec<EntityUid>,
    /// Are the entities, shared with every request's entity store (no copies).
    pub(crate) entities: Vec<Arc<ast::Entity>>,
}

/// Keeps the prepared principals and targets of one evaluator.
#[derive(Debug, Default)]
pub(crate) struct Preparations {
    next_id: AtomicU64,
    principals: Memo<Principal>,
    servers: Memo<String>,
    items: Memo<Target>,
}

#[derive(Debug)]
struct Memo<K> {
    entries: RwLock<HashMap<K, Arc<Prepared>>>,
}

impl Prepared {
    /// Returns the preparation of `uid` with these ancestors and entities.
    pub(crate) fn new(uid: EntityUid, ancestors: Vec<EntityUid>, entities: Vec<Entity>) -> Self {
        Self {
            id: 0,
            uid,
            ancestors,
            entities: entities
                .iter()
                .map(|entity| Arc::new(entity.as_ref().clone()))
                .collect(),
        }
    }

    /// Says whether this is `other` or is `in` it, as Cedar's `in` decides.
    pub(crate) fn is_in(&self, other: &EntityUid) -> bool {
        self.uid == *other || self.ancestors.contains(other)
    }
}

impl Preparations {
    /// Returns `principal` in Cedar terms, built on first sight.
    pub(crate) fn principal(
        &self,
        types: &Types,
        principal: &Principal,
    ) -> Result<Arc<Prepared>, Error> {
        match self.principals.get(principal) {
            Some(prepared) => Ok(prepared),
            None => {
                let prepared = self.numbered(types.principal(principal)?);
                self.principals.insert(principal.clone(), prepared.clone());
                Ok(prepared)
            }
        }
    }

    /// Returns the resource of `action` on `target` in Cedar terms, built on first
    /// sight: the virtual server itself for `connect` and `list_tools`, else the item.
    pub(crate) fn resource(
        &self,
        types: &Types,
        action: Action,
        target: &Target,
    ) -> Result<Arc<Prepared>, Error> {
        if matches!(action, Action::Connect | Action::ListTools) {
            let name = target.virtual_server.as_str();
            if let Some(prepared) = self.servers.get(name) {
                return Ok(prepared);
            }
            let prepared = self.numbered(types.server(name)?);
            self.servers.insert(name.to_owned(), prepared.clone());
            return Ok(prepared);
        }
        // The item's kind decides the action it can answer; a mismatch is refused
        // before the memo, so a memoized item answers its own action only.
        types.check_item(action, target)?;
        if let Some(prepared) = self.items.get(target) {
            return Ok(prepared);
        }
        let prepared = self.numbered(types.item(target)?);
        self.items.insert(target.clone(), prepared.clone());
        Ok(prepared)
    }

    fn numbered(&self, mut prepared: Prepared) -> Arc<Prepared> {
        prepared.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Arc::new(prepared)
    }
}

impl<K> Default for Memo<K> {
    fn default() -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq> Memo<K> {
    fn get<Q>(&self, key: &Q) -> Option<Arc<Prepared>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn insert(&self, key: K, prepared: Arc<Prepared>) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, prepared);
    }
}
