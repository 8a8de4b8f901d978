//! The audit log's verification, proof and tail RPCs of the admin gRPC face: decode, call the
//! admin API, encode.

use std::pin::Pin;

use futures::{Stream, StreamExt as _};
use proto::admin::v1 as pb;
use tonic::{Request, Response, Status};

use super::AdminGrpc;
use crate::admin::model::{CheckpointView, ProblemView, TailQuery, VerifyInput};

/// The server stream of `TailAudit`.
pub(super) type TailStream =
    Pin<Box<dyn Stream<Item = Result<pb::TailAuditResponse, Status>> + Send + 'static>>;

pub(super) async fn verify_audit(
    grpc: &AdminGrpc,
    request: Request<pb::VerifyAuditRequest>,
) -> Result<Response<pb::VerifyAuditResponse>, Status> {
    let caller = grpc.caller(&request).await?;
    let message = request.into_inner();
    let input = VerifyInput {
        from_checkpoint: (!message.from_checkpoint.is_empty()).then_some(message.from_checkpoint),
    };
    let report = grpc.0.verify_audit(&caller, input).await?;
    Ok(Response::new(pb::VerifyAuditResponse {
        checked: report.checked,
        root_hash: report.root_hash,
        chain_hash: report.chain_hash,
        pruned_through: report.pruned_through,
        intact: report.intact,
        problem: report.problem.map(pb::AuditProblem::from),
        checkpoint: report.checkpoint.map(pb::AuditCheckpoint::from),
        verifier_key: report.verifier_key,
    }))
}

pub(super) async fn prove_audit_event(
    grpc: &AdminGrpc,
    request: Request<pb::ProveAuditEventRequest>,
) -> Result<Response<pb::ProveAuditEventResponse>, Status> {
    let caller = grpc.caller(&request).await?;
    let proof = grpc
        .0
        .prove_audit_event(&caller, &request.get_ref().event_id)
        .await?;
    Ok(Response::new(pb::ProveAuditEventResponse {
        event_id: proof.event_id,
        sequence: proof.sequence,
        canonical_json: proof.canonical_json,
        event_hash: proof.event_hash,
        leaf_index: proof.leaf_index,
        audit_path: proof.audit_path,
        checkpoint: Some(proof.checkpoint.into()),
        tlog_proof: proof.tlog_proof,
        verifier_key: proof.verifier_key,
    }))
}

pub(super) async fn tail_audit(
    grpc: &AdminGrpc,
    request: Request<pb::TailAuditRequest>,
) -> Result<Response<TailStream>, Status> {
    let caller = grpc.caller(&request).await?;
    let message = request.into_inner();
    let query = TailQuery {
        after: message.after,
        member: (!message.member.is_empty()).then_some(message.member),
        agent: (!message.agent.is_empty()).then_some(message.agent),
        virtual_server: (!message.virtual_server.is_empty()).then_some(message.virtual_server),
        tool: (!message.tool.is_empty()).then_some(message.tool),
        kind: (!message.kinds.is_empty()).then(|| message.kinds.join(",")),
    };
    let records = grpc.0.tail_audit(&caller, query).await?;
    let responses = records.map(|record| {
        record
            .map(|record| pb::TailAuditResponse {
                record: Some(pb::AuditRecord {
                    sequence: record.sequence,
                    event_json: record.event.to_string(),
                }),
                recorded_at_micros: record.recorded_at_micros,
            })
            .map_err(Status::from)
    });
    Ok(Response::new(Box::pin(responses)))
}

impl From<CheckpointView> for pb::AuditCheckpoint {
    fn from(checkpoint: CheckpointView) -> Self {
        Self {
            tree_size: checkpoint.tree_size,
            root_hash: checkpoint.root_hash,
            signed_note: checkpoint.signed_note,
        }
    }
}

impl From<ProblemView> for pb::AuditProblem {
    fn from(problem: ProblemView) -> Self {
        Self {
            kind: problem.kind,
            sequence: problem.sequence,
            reason: problem.reason,
        }
    }
}
