//! Retention on both backends: old events are archived as batches ending at a
//! signed checkpoint, then removed as a prefix; what remains still verifies,
//! proves and grows, the archive verifies offline, and the database refuses to
//! remove anything no prune covers.

use std::time::Duration;

use audit_svc::retention::prune_older_than;
use audit_svc::{Error, Problem, SinkCursor, merkle, verify, verify_archive, verify_inclusion};

use crate::backend::{Backend, conformance};
use crate::sinks::{append, log_over, signer};

async fn archived_prefix_is_removed_and_the_rest_still_verifies(backend: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = log_over(backend).await;
    append(&log, "old", 0, 5).await;
    log.checkpoint_now().await.unwrap();
    append(&log, "new", 0, 3).await;
    let before = verify(backend.store().as_ref(), None).await.unwrap();
    assert_eq!(before.problem, None);
    let record = prune_older_than(&log, Duration::ZERO, dir.path(), &[])
        .await
        .unwrap()
        .expect("events up to the checkpoint of size 5 are due");
    assert_eq!(record.through, 5);
    let remaining = backend.store().read(0, 100).await.unwrap();
    assert_eq!(
        remaining.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![6, 7, 8]
    );
    // The remaining log verifies from the prune, with the same root as before.
    let after = verify(backend.store().as_ref(), None).await.unwrap();
    assert_eq!(after.problem, None);
    assert_eq!(after.pruned_through, 5);
    assert_eq!(
        (after.tree_size, after.root_hash, after.chain_hash),
        (before.tree_size, before.root_hash, before.chain_hash)
    );
    // The archive verifies offline against its signed checkpoint.
    let report =
        verify_archive(&dir.path().join(&record.archive), &signer().verifying_key()).unwrap();
    assert_eq!((report.first, report.last), (1, 5));
    // The log grows on, checkpoints and proves as before.
    append(&log, "later", 0, 2).await;
    let checkpoint = log.checkpoint_now().await.unwrap().unwrap();
    assert_eq!(checkpoint.tree_size, 10);
    let proof = log
        .inclusion_proof(&audit_svc::Leaf::Sequence(7), None)
        .await
        .unwrap();
    verify_inclusion(
        &proof.event.event.canonical_json,
        proof.leaf_index,
        &proof.audit_path,
        &checkpoint.signed_note,
        &signer().verifying_key(),
    )
    .unwrap();
    let consistency = log.consistency_proof(5, None).await.unwrap();
    assert!(merkle::verify_consistency(
        5,
        10,
        &consistency.proof,
        &consistency.from.root_hash,
        &checkpoint.root_hash
    ));
    assert!(matches!(
        log.consistency_proof(3, None).await,
        Err(Error::Pruned(5)) | Err(Error::CheckpointNotFound(3))
    ));
    assert_eq!(
        verify(backend.store().as_ref(), Some(&checkpoint))
            .await
            .unwrap()
            .problem,
        None
    );
    // A second prune takes every event; sequences still go on.
    let second = prune_older_than(&log, Duration::ZERO, dir.path(), &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.through, 10);
    let report =
        verify_archive(&dir.path().join(&second.archive), &signer().verifying_key()).unwrap();
    assert_eq!((report.first, report.last), (6, 10));
    assert!(backend.store().read(0, 10).await.unwrap().is_empty());
    assert_eq!(backend.store().head().await.unwrap(), 10);
    append(&log, "after", 0, 1).await;
    assert_eq!(backend.store().read(0, 10).await.unwrap()[0].sequence, 11);
    let last = log.checkpoint_now().await.unwrap().unwrap();
    assert_eq!(last.tree_size, 11);
    let report = verify(backend.store().as_ref(), Some(&last)).await.unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.tree_size, 11);
}

async fn the_database_refuses_to_remove_what_no_prune_covers(backend: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = log_over(backend).await;
    append(&log, "e", 0, 4).await;
    log.checkpoint_now().await.unwrap();
    append(&log, "f", 0, 2).await;
    prune_older_than(&log, Duration::ZERO, dir.path(), &[])
        .await
        .unwrap()
        .unwrap();
    assert!(
        backend
            .execute("DELETE FROM audit_event WHERE seq = 5")
            .await
            .is_err()
    );
    assert!(backend.execute("DELETE FROM audit_event").await.is_err());
    assert!(backend.execute("DELETE FROM audit_prune").await.is_err());
    assert!(
        backend
            .execute("UPDATE audit_prune SET through_seq = 6")
            .await
            .is_err()
    );
    assert_eq!(backend.store().read(0, 10).await.unwrap().len(), 2);
}

async fn tampering_after_a_prune_is_still_named(backend: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = log_over(backend).await;
    append(&log, "t", 0, 3).await;
    log.checkpoint_now().await.unwrap();
    append(&log, "u", 0, 3).await;
    prune_older_than(&log, Duration::ZERO, dir.path(), &[])
        .await
        .unwrap()
        .unwrap();
    backend
        .tamper(&format!(
            "UPDATE audit_event SET chain_hash = {} WHERE seq = 4",
            backend.blob(&[9u8; 32])
        ))
        .await;
    let report = verify(backend.store().as_ref(), None).await.unwrap();
    assert!(
        matches!(report.problem, Some(Problem::Modified { sequence: 4, .. })),
        "{:?}",
        report.problem
    );
}

async fn retention_keeps_what_a_sink_has_not_delivered(backend: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = log_over(backend).await;
    append(&log, "a", 0, 2).await;
    log.checkpoint_now().await.unwrap();
    append(&log, "b", 0, 3).await;
    log.checkpoint_now().await.unwrap();
    let sinks = vec!["slow".to_owned()];
    assert_eq!(
        prune_older_than(&log, Duration::ZERO, dir.path(), &sinks)
            .await
            .unwrap(),
        None
    );
    backend
        .store()
        .set_sink_cursor(
            "slow",
            SinkCursor {
                delivered: 3,
                anchored: 0,
            },
        )
        .await
        .unwrap();
    let record = prune_older_than(&log, Duration::ZERO, dir.path(), &sinks)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.through, 2);
    // Events younger than the period stay.
    assert_eq!(
        prune_older_than(&log, Duration::from_secs(3600), dir.path(), &[])
            .await
            .unwrap(),
        None
    );
}

conformance!(
    archived_prefix_is_removed_and_the_rest_still_verifies,
    the_database_refuses_to_remove_what_no_prune_covers,
    tampering_after_a_prune_is_still_named,
    retention_keeps_what_a_sink_has_not_delivered,
);
