//! Tampering behind the service's back, and `verify` naming the first broken
//! record; run against SQLite and PostgreSQL.

use audit_svc::{AuditLog, Checkpoint, EventId, Problem, verify};

use crate::backend::{Backend, conformance, event};
use crate::store::signer;

conformance!(
    an_intact_log_verifies_against_its_checkpoint,
    each_checkpoint_signs_the_whole_tree,
    modified_content_is_named,
    modified_search_column_is_named,
    deleted_record_is_named,
    deleted_tail_is_caught_by_the_checkpoint,
    reordered_records_are_named,
    inserted_record_is_named,
    rewritten_log_disagrees_with_a_trusted_checkpoint,
);

/// Appends t0..t5 (sequences 1..6) and signs a checkpoint over them.
async fn seeded(backend: &Backend) -> (AuditLog, Checkpoint) {
    let log = AuditLog::new(backend.store(), signer()).await.unwrap();
    let events: Vec<_> = (0..6)
        .map(|i| event(&format!("t{i}"), "alice", "echo", "VERDICT_ALLOW", i))
        .collect();
    log.append(events).await.unwrap();
    let checkpoint = log.checkpoint_now().await.unwrap().unwrap();
    assert_eq!(checkpoint.tree_size, 6);
    (log, checkpoint)
}

async fn problem(backend: &Backend, from: Option<&Checkpoint>) -> Option<Problem> {
    verify(backend.store().as_ref(), from)
        .await
        .unwrap()
        .problem
}

fn id(value: &str) -> EventId {
    EventId::try_from(value.to_owned()).unwrap()
}

async fn an_intact_log_verifies_against_its_checkpoint(backend: &Backend) {
    let (log, checkpoint) = seeded(backend).await;
    let trusted =
        Checkpoint::from_note(&checkpoint.signed_note, &log.signer().verifying_key()).unwrap();
    let report = verify(backend.store().as_ref(), Some(&trusted))
        .await
        .unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.tree_size, 6);
    assert_eq!(report.root_hash, checkpoint.root_hash);
    assert_eq!(report.chain_hash, checkpoint.chain_hash);
}

/// A checkpoint hashes on from the tree its log signed last, yet signs the root of the whole
/// log, events another replica appended in between included.
async fn each_checkpoint_signs_the_whole_tree(backend: &Backend) {
    let (log, _) = seeded(backend).await;
    let replica = AuditLog::new(backend.store(), signer()).await.unwrap();
    for (round, writer) in [&log, &replica, &log].into_iter().enumerate() {
        let events: Vec<_> = (0..5)
            .map(|i| event(&format!("r{round}-{i}"), "bob", "echo", "VERDICT_ALLOW", i))
            .collect();
        writer.append(events).await.unwrap();
        let checkpoint = log.checkpoint_now().await.unwrap().unwrap();
        let whole = verify(backend.store().as_ref(), None).await.unwrap();
        assert_eq!(whole.problem, None);
        assert_eq!(checkpoint.tree_size, 6 + 5 * (round as u64 + 1));
        assert_eq!(
            (
                checkpoint.tree_size,
                checkpoint.root_hash,
                checkpoint.chain_hash
            ),
            (whole.tree_size, whole.root_hash, whole.chain_hash),
            "round {round}"
        );
    }
}

async fn modified_content_is_named(backend: &Backend) {
    seeded(backend).await;
    backend
        .tamper(
            "UPDATE audit_event SET canonical_json = \
             (SELECT canonical_json FROM audit_event WHERE seq = 5) WHERE seq = 3",
        )
        .await;
    let expected = Problem::Modified {
        sequence: 3,
        event_id: id("t2"),
    };
    assert_eq!(problem(backend, None).await, Some(expected));
}

async fn modified_search_column_is_named(backend: &Backend) {
    seeded(backend).await;
    backend
        .tamper("UPDATE audit_event SET member_id = 'mallory' WHERE seq = 4")
        .await;
    let expected = Problem::Modified {
        sequence: 4,
        event_id: id("t3"),
    };
    assert_eq!(problem(backend, None).await, Some(expected));
}

async fn deleted_record_is_named(backend: &Backend) {
    seeded(backend).await;
    backend
        .tamper("DELETE FROM audit_event WHERE seq = 3")
        .await;
    assert_eq!(
        problem(backend, None).await,
        Some(Problem::Deleted { sequence: 3 })
    );
}

async fn deleted_tail_is_caught_by_the_checkpoint(backend: &Backend) {
    seeded(backend).await;
    backend
        .tamper("DELETE FROM audit_event WHERE seq = 6")
        .await;
    assert_eq!(
        problem(backend, None).await,
        Some(Problem::Deleted { sequence: 6 })
    );
}

async fn reordered_records_are_named(backend: &Backend) {
    seeded(backend).await;
    backend
        .tamper(
            "UPDATE audit_event SET seq = -seq WHERE seq IN (3, 4); \
             UPDATE audit_event SET seq = 4 WHERE seq = -3; \
             UPDATE audit_event SET seq = 3 WHERE seq = -4",
        )
        .await;
    let expected = Problem::Reordered {
        sequence: 3,
        event_id: id("t3"),
    };
    assert_eq!(problem(backend, None).await, Some(expected));
}

async fn inserted_record_is_named(backend: &Backend) {
    seeded(backend).await;
    // A well-formed forgery: its own hashes are right and it links to record 2;
    // the records after it are renumbered.
    let store = backend.store();
    let previous = store.read(1, 1).await.unwrap().remove(0);
    let forged = event("forged", "mallory", "echo", "VERDICT_ALLOW", 9);
    let leaf = forged.leaf_hash();
    let chain = sha256(&[previous.chain_hash.as_slice(), leaf.as_slice()].concat());
    let insert = format!(
        "UPDATE audit_event SET seq = -(seq + 1) WHERE seq >= 3; \
         UPDATE audit_event SET seq = -seq WHERE seq < 0; \
         INSERT INTO audit_event VALUES (3, 'forged', 'EVENT_KIND_MCP_REQUEST', {time}, 0, \
         'mallory', 'agent-mallory', 'demo', 'echo', 'echo', 'VERDICT_ALLOW', 'OUTCOME_SUCCESS', \
         'trace-forged', {json}, {leaf}, {chain})",
        time = forged.time_micros,
        json = backend.blob(&forged.canonical_json),
        leaf = backend.blob(&leaf),
        chain = backend.blob(&chain),
    );
    backend.tamper(&insert).await;
    let expected = Problem::Inserted {
        sequence: 3,
        event_id: id("forged"),
    };
    assert_eq!(problem(backend, None).await, Some(expected));
}

async fn rewritten_log_disagrees_with_a_trusted_checkpoint(backend: &Backend) {
    let (log, checkpoint) = seeded(backend).await;
    let trusted =
        Checkpoint::from_note(&checkpoint.signed_note, &log.signer().verifying_key()).unwrap();
    backend.tamper("DELETE FROM audit_event").await;
    // A self-consistent replacement history, chained and hashed by the store.
    let replacement: Vec<_> = (0..7)
        .map(|i| event(&format!("r{i}"), "mallory", "echo", "VERDICT_ALLOW", i))
        .collect();
    backend.store().append(&replacement).await.unwrap();
    assert_eq!(
        problem(backend, Some(&trusted)).await,
        Some(Problem::CheckpointMismatch { tree_size: 6 })
    );
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}
