//! The policy decision point's state: the policies in force (config file plus
//! admin API), validated on every change and published to watchers as compiled
//! snapshots.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use policy::{Evaluator, PolicyDocument, PolicyOrigin};
use tokio::sync::watch;

use crate::config::PolicyConfig;
use crate::error::Error;

/// Holds the current policy snapshot and publishes each new one; cheap to clone.
///
/// Readers ([`Self::current`], `Decide`) never wait on writers: a change builds
/// and validates a whole new [`Evaluator`] first, then swaps it in through a
/// `watch` channel, which also wakes every `WatchPolicy` stream.
#[derive(Debug, Clone)]
pub struct PolicyStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: PolicyDocument,
    // Serializes replacements so that versions increase with the order of changes.
    admin: Mutex<PolicyDocument>,
    sender: watch::Sender<Arc<Evaluator>>,
}

impl PolicyStore {
    /// Returns the store of the policies `config` declares (version 1), or the
    /// diagnostics that make them unusable.
    pub fn new(config: &PolicyConfig) -> Result<Self, Error> {
        let document = config.document()?;
        let evaluator = Evaluator::build(&document, 1, SystemTime::now())?;
        let (sender, _receiver) = watch::channel(Arc::new(evaluator));
        Ok(Self {
            inner: Arc::new(Inner {
                config: document,
                admin: Mutex::new(PolicyDocument::default()),
                sender,
            }),
        })
    }

    /// Returns the evaluator of the current snapshot.
    pub fn current(&self) -> Arc<Evaluator> {
        self.inner.sender.borrow().clone()
    }

    /// Returns a receiver of every new snapshot, for `WatchPolicy` and for an
    /// edge running in the same process (`gatehouse up`).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Evaluator>> {
        self.inner.sender.subscribe()
    }

    /// Replaces the policies set through the admin API with `admin` (Cedar texts
    /// and virtual-server declarations, which override the config file's for the
    /// same virtual server) and returns the new version. Invalid policies are
    /// refused with Cedar's diagnostics and change nothing.
    pub fn replace(&self, admin: PolicyDocument) -> Result<u64, Error> {
        let mut current = self
            .inner
            .admin
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let version = self.inner.sender.borrow().version() + 1;
        let document = self.inner.config.overlaid(&admin);
        let evaluator = Evaluator::build(&document, version, SystemTime::now())?;
        *current = admin;
        self.inner.sender.send_replace(Arc::new(evaluator));
        tracing::info!(version, "policies replaced");
        Ok(version)
    }

    /// Replaces the admin API's Cedar policies with `text`, keeping its
    /// virtual-server declarations; returns the new version.
    pub fn replace_cedar(&self, text: &str) -> Result<u64, Error> {
        let mut admin = self.admin();
        admin.cedar.clear();
        admin.add_cedar("admin", text, PolicyOrigin::AdminApi);
        self.replace(admin)
    }

    /// Returns the policies currently set through the admin API.
    pub fn admin(&self) -> PolicyDocument {
        self.inner
            .admin
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
