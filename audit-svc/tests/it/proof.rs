//! Checkpoints and proofs over gRPC: offline verification and error statuses.

use std::path::PathBuf;

use audit_svc::Signer;
use proto::audit::v1 as pb;
use proto::common::v1 as common;

use crate::service::{Client, DEADLINE, Service, append, append_stream, start, wire_event};

/// Waits until the service has signed a checkpoint covering `size` events.
pub(crate) async fn checkpoint_covering(client: &mut Client, size: u64) -> pb::Checkpoint {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let response = client
            .get_checkpoint(pb::GetCheckpointRequest { tree_size: None })
            .await;
        if let Ok(response) = response {
            let checkpoint = response.into_inner().checkpoint.unwrap();
            if checkpoint.tree_size >= size {
                return checkpoint;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint of {size}"
        );
        tokio::task::yield_now().await;
    }
}

pub(crate) fn key_file(service: &Service) -> PathBuf {
    service.data.path().join("audit-checkpoint.key")
}

#[tokio::test]
async fn inclusion_and_consistency_proofs_verify_offline() {
    let mut service = start().await;
    let (sender, mut acks) = append_stream(&mut service.client).await;
    let allow = common::Verdict::Allow;
    let first: Vec<_> = (0..5)
        .map(|i| wire_event(&format!("p{i}"), "alice", "echo", allow))
        .collect();
    append(&sender, &mut acks, first).await;
    let old = checkpoint_covering(&mut service.client, 5).await;
    let more: Vec<_> = (5..13)
        .map(|i| wire_event(&format!("p{i}"), "bob", "echo", allow))
        .collect();
    append(&sender, &mut acks, more).await;
    let new = checkpoint_covering(&mut service.client, 13).await;
    let proof = service
        .client
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            leaf: Some(pb::get_inclusion_proof_request::Leaf::EventId("p3".into())),
            tree_size: Some(new.tree_size),
        })
        .await
        .unwrap()
        .into_inner();
    // Offline: only the exported bytes and the log's public key.
    let key = Signer::load_or_generate(
        service.config.checkpoint.origin.clone(),
        &key_file(&service),
    )
    .unwrap()
    .verifying_key();
    let stored = proof.event.unwrap();
    let path: Vec<[u8; 32]> = proof
        .audit_path
        .iter()
        .map(|h| h.as_slice().try_into().unwrap())
        .collect();
    let signed_note = &proof.checkpoint.as_ref().unwrap().signed_note;
    let checkpoint = audit_svc::verify_inclusion(
        &stored.canonical_json,
        proof.leaf_index,
        &path,
        signed_note,
        &key,
    )
    .unwrap();
    assert_eq!(checkpoint.tree_size, new.tree_size);
    assert_eq!(proof.leaf_index, 3);
    assert!(
        proof
            .tlog_proof
            .starts_with("c2sp.org/tlog-proof@v1\nindex 3\n")
    );
    let mut forged = stored.canonical_json.clone();
    forged[10] ^= 1;
    assert!(audit_svc::verify_inclusion(&forged, 3, &path, signed_note, &key).is_err());
    let other_key = Signer::new(service.config.checkpoint.origin.clone(), &[9; 32]).verifying_key();
    assert!(
        audit_svc::verify_inclusion(&stored.canonical_json, 3, &path, signed_note, &other_key)
            .is_err()
    );
    let consistency = service
        .client
        .get_consistency_proof(pb::GetConsistencyProofRequest {
            from_tree_size: old.tree_size,
            to_tree_size: new.tree_size,
        })
        .await
        .unwrap()
        .into_inner();
    let hashes: Vec<[u8; 32]> = consistency
        .proof
        .iter()
        .map(|h| h.as_slice().try_into().unwrap())
        .collect();
    assert!(audit_svc::merkle::verify_consistency(
        old.tree_size,
        new.tree_size,
        &hashes,
        &old.root_hash.as_slice().try_into().unwrap(),
        &new.root_hash.as_slice().try_into().unwrap(),
    ));
    let unknown = service
        .client
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            leaf: Some(pb::get_inclusion_proof_request::Leaf::EventId(
                "nope".into(),
            )),
            tree_size: None,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    service.server.stop().await.unwrap();
}

#[tokio::test]
async fn checkpoint_and_proof_errors_have_their_status_codes() {
    let mut service = start().await;
    let latest = service
        .client
        .get_checkpoint(pb::GetCheckpointRequest { tree_size: None })
        .await
        .unwrap_err();
    assert_eq!(latest.code(), tonic::Code::NotFound);
    let (sender, mut acks) = append_stream(&mut service.client).await;
    let allow = common::Verdict::Allow;
    let two = vec![
        wire_event("k1", "alice", "echo", allow),
        wire_event("k2", "alice", "echo", allow),
    ];
    append(&sender, &mut acks, two).await;
    let covering = checkpoint_covering(&mut service.client, 2).await;
    assert_eq!(covering.tree_size, 2);
    let unknown_size = service
        .client
        .get_checkpoint(pb::GetCheckpointRequest {
            tree_size: Some(999),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown_size.code(), tonic::Code::NotFound);
    append(
        &sender,
        &mut acks,
        vec![wire_event("k3", "alice", "echo", allow)],
    )
    .await;
    let uncovered = service
        .client
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            leaf: Some(pb::get_inclusion_proof_request::Leaf::Sequence(3)),
            tree_size: Some(2),
        })
        .await
        .unwrap_err();
    assert_eq!(uncovered.code(), tonic::Code::FailedPrecondition);
    let inverted = service
        .client
        .get_consistency_proof(pb::GetConsistencyProofRequest {
            from_tree_size: 3,
            to_tree_size: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(inverted.code(), tonic::Code::InvalidArgument);
    let no_leaf = service
        .client
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            leaf: None,
            tree_size: None,
        })
        .await
        .unwrap_err();
    assert_eq!(no_leaf.code(), tonic::Code::InvalidArgument);
    drop(sender);
    service.server.stop().await.unwrap();
}
