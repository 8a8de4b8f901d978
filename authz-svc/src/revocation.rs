//! The revocation log as a feed: every process that must refuse revoked tokens follows
//! the store's log by cursor. This is how a decommissioning done by the CLI on the store
//! directly reaches a running server (and its edge) without a call to it, and what
//! `WatchRevocations` streams to standalone edges. The store's audit outbox is
//! followed the same way, so that the CLI's agent changes reach the audit trail.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::events::{AuditSink, RevocationListener};
use crate::store::{RevocationKind, RevocationRecord, Store};
use crate::token::now;

/// Is how often the log is read: well inside the one-second promise to edges.
pub const REVOCATION_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Bounds one read of the log.
pub(crate) const PAGE: u32 = 1_000;

/// Returns the log entries after `cursor` (all live ones from 0), following pages.
pub(crate) async fn read_after(
    store: &dyn Store,
    cursor: i64,
) -> Result<Vec<RevocationRecord>, Error> {
    let mut entries = Vec::new();
    let mut after = cursor;
    loop {
        let page = store.revocations_after(after, now(), PAGE).await?;
        let full = page.len() == PAGE as usize;
        if let Some(last) = page.last() {
            after = last.seq;
        }
        entries.extend(page);
        if !full {
            return Ok(entries);
        }
    }
}

/// Is what a follower of the log must learn next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FeedPage {
    /// Lists the live entries to apply, oldest first.
    pub(crate) entries: Vec<RevocationRecord>,
    /// Is where the follower resumes.
    pub(crate) cursor: i64,
    /// Says the entries replace the follower's whole set.
    pub(crate) replaces_all: bool,
}

/// Returns the live entries after `cursor`; without a cursor, or with one beyond the
/// log's head (another store, a rebuilt one), every live entry, replacing the set.
pub(crate) async fn catch_up(store: &dyn Store, cursor: Option<i64>) -> Result<FeedPage, Error> {
    let head = store.revocation_head().await?;
    let (after, replaces_all) = match cursor {
        Some(cursor) if (0..=head).contains(&cursor) => (cursor, false),
        _ => (0, true),
    };
    let entries = read_after(store, after).await?;
    let cursor = entries.last().map_or(after, |entry| entry.seq);
    Ok(FeedPage {
        entries,
        cursor,
        replaces_all,
    })
}

/// Hands `entry` to `listener`.
pub(crate) fn deliver(listener: &dyn RevocationListener, entry: &RevocationRecord) {
    match entry.kind {
        RevocationKind::Token => listener.token_revoked(&entry.subject, entry.expires_at),
        RevocationKind::Grant => listener.grant_revoked(&entry.subject),
        RevocationKind::Agent => listener.agent_revoked(&entry.subject, entry.expires_at),
        RevocationKind::Member => {
            listener.member_revoked(&entry.subject, entry.revoked_at, entry.expires_at);
        }
    }
}

/// Passes every live logged revocation, then each new one within
/// [`REVOCATION_POLL_INTERVAL`], to `listener`, until `shutdown`.
pub(crate) async fn follow(
    store: Arc<dyn Store>,
    listener: Arc<dyn RevocationListener>,
    shutdown: CancellationToken,
) {
    let mut cursor = 0;
    let mut ticks = tokio::time::interval(REVOCATION_POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match read_after(store.as_ref(), cursor).await {
            Ok(entries) => {
                for entry in &entries {
                    deliver(listener.as_ref(), entry);
                    cursor = entry.seq;
                }
            }
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "cannot read the revocation log"
                );
            }
        }
    }
}

/// Hands each queued audit event to `sink`, removing it once taken, every
/// [`REVOCATION_POLL_INTERVAL`], until `shutdown`.
pub(crate) async fn forward_outbox(
    store: Arc<dyn Store>,
    sink: Arc<dyn AuditSink>,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(REVOCATION_POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(error) = forward_queued(store.as_ref(), sink.as_ref()).await {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "cannot forward the audit outbox"
            );
        }
    }
}

async fn forward_queued(store: &dyn Store, sink: &dyn AuditSink) -> Result<(), Error> {
    let queued = store.queued_audit(PAGE).await?;
    let mut taken = None;
    for (seq, bytes) in queued {
        match <proto::audit::v1::AuditEvent as prost::Message>::decode(bytes.as_slice()) {
            Ok(event) => {
                if let Err(why) = sink.record(event) {
                    tracing::warn!(%why, "the audit sink refused a queued event; retrying later");
                    break;
                }
            }
            Err(error) => {
                tracing::error!(%error, seq, "dropping an undecodable queued audit event")
            }
        }
        taken = Some(seq);
    }
    match taken {
        Some(through) => store.dequeue_audit(through).await,
        None => Ok(()),
    }
}
