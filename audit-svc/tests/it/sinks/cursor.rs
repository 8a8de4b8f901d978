//! Cursors, dead letters, anchoring and lag, with the JSONL file sink as the
//! receiver (on both store backends), plus the store's cursor contract.

use audit_svc::{DeadLetter, SinkCursor};

use super::{Running, append, log_over, sinks, wait_for_text};
use crate::backend::{Backend, conformance};

fn jsonl(dir: &std::path::Path, name: &str, shape: &str) -> String {
    format!(
        "[[sinks]]\nname = \"{name}\"\nshape = \"{shape}\"\nbatch_size = 3\n\
         [sinks.jsonl]\npath = \"{}\"\n",
        dir.join(format!("{name}.jsonl")).display()
    )
}

async fn cursor_is_durable_and_delivery_resumes_after_it(backend: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = log_over(backend).await;
    let config = sinks(&jsonl(dir.path(), "file", "native"));
    append(&log, "a", 0, 7).await;
    let running = Running::start(&log, &config);
    let lag = running.delivered(7).await;
    assert_eq!(lag.events_behind, 0);
    running.stop().await;
    assert_eq!(
        backend.store().sink_cursor("file").await.unwrap().delivered,
        7
    );
    // A restarted sink starts after its cursor: nothing is sent twice.
    append(&log, "b", 0, 2).await;
    let running = Running::start(&log, &config);
    running.delivered(9).await;
    running.stop().await;
    let text = std::fs::read_to_string(dir.path().join("file.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "{text}");
    // Native lines are the canonical bytes, in sequence order.
    let stored = backend.store().read(0, 100).await.unwrap();
    for (line, record) in lines.iter().zip(&stored) {
        assert_eq!(line.as_bytes(), record.event.canonical_json.as_slice());
    }
}

async fn checkpoints_are_anchored_once_their_events_are_delivered(backend: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = log_over(backend).await;
    append(&log, "a", 0, 4).await;
    let checkpoint = log.checkpoint_now().await.unwrap().unwrap();
    let running = Running::start(&log, &sinks(&jsonl(dir.path(), "anchored", "ocsf")));
    running.delivered(4).await;
    let notes = dir.path().join("anchored.jsonl.checkpoints");
    let text = wait_for_text(&notes, "gatehouse.test/audit", 1).await;
    assert!(text.contains(&checkpoint.signed_note), "{text}");
    // The anchored note verifies with the log's key.
    audit_svc::Checkpoint::from_note(&checkpoint.signed_note, &super::signer().verifying_key())
        .unwrap();
    running.stop().await;
    let cursor = backend.store().sink_cursor("anchored").await.unwrap();
    assert_eq!(
        cursor,
        SinkCursor {
            delivered: 4,
            anchored: 4
        }
    );
    let ocsf: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(dir.path().join("anchored.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ocsf["class_uid"], 6003);
    assert_eq!(ocsf["metadata"]["sequence"], 1);
}

async fn cursor_never_moves_backwards_and_dead_letters_are_idempotent(backend: &Backend) {
    let store = backend.store();
    assert_eq!(store.sink_cursor("s").await.unwrap(), SinkCursor::default());
    let forward = SinkCursor {
        delivered: 10,
        anchored: 8,
    };
    store.set_sink_cursor("s", forward).await.unwrap();
    store
        .set_sink_cursor(
            "s",
            SinkCursor {
                delivered: 4,
                anchored: 9,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.sink_cursor("s").await.unwrap(),
        SinkCursor {
            delivered: 10,
            anchored: 9
        }
    );
    assert_eq!(
        store.sink_cursor("other").await.unwrap(),
        SinkCursor::default()
    );
    let letter = DeadLetter {
        sequence: 3,
        event_id: "e-3".to_owned(),
        reason: "http 400".to_owned(),
        failed_at_micros: 1,
    };
    store
        .put_dead_letters("s", std::slice::from_ref(&letter))
        .await
        .unwrap();
    store
        .put_dead_letters("s", std::slice::from_ref(&letter))
        .await
        .unwrap();
    assert_eq!(store.dead_letters("s").await.unwrap(), vec![letter.clone()]);
    assert!(store.dead_letters("other").await.unwrap().is_empty());
    store
        .put_dead_letters("only-refused", std::slice::from_ref(&letter))
        .await
        .unwrap();
    assert_eq!(
        store.sinks().await.unwrap(),
        ["only-refused", "s"],
        "sinks with a cursor or a dead letter, sorted, each once"
    );
}

conformance!(
    cursor_is_durable_and_delivery_resumes_after_it,
    checkpoints_are_anchored_once_their_events_are_delivered,
    cursor_never_moves_backwards_and_dead_letters_are_idempotent,
);
