//! The Splunk HEC sink against the in-repo HEC test receiver (see
//! `hec_receiver`): token auth, batching, indexer acknowledgements,
//! `Retry-After`, dead letters and lag.

use std::time::Duration;

use super::hec_receiver::HecReceiver;
use super::{Running, append, log_over, sinks};
use crate::backend::{Backend, event};

const TOKEN: &str = "11111111-2222-4333-8444-555555555555";

fn hec(receiver: &HecReceiver, name: &str, extra: &str) -> String {
    format!(
        "[[sinks]]\nname = \"{name}\"\nbatch_size = 4\n[sinks.retry]\ninitial = \"10ms\"\n\
         max = \"5s\"\n[sinks.splunk_hec]\nurl = \"{}\"\ntoken = \"{TOKEN}\"\n\
         ack_poll = \"20ms\"\n{extra}",
        receiver.url
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hec_batches_events_with_token_and_indexer_acknowledgement() {
    let backend = Backend::sqlite().await;
    let log = log_over(&backend).await;
    let receiver = HecReceiver::start(TOKEN, true).await;
    append(&log, "h", 0, 10).await;
    let running = Running::start(&log, &sinks(&hec(&receiver, "splunk", "ack = true\n")));
    running.delivered(10).await;
    running.stop().await;
    let events = receiver.events();
    assert_eq!(events.len(), 10);
    let stored = backend.store().read(0, 100).await.unwrap();
    for (envelope, record) in events.iter().zip(&stored) {
        assert_eq!(envelope["fields"]["event_id"], record.event.id.as_str());
        assert_eq!(envelope["fields"]["seq"], record.sequence.to_string());
        assert_eq!(envelope["sourcetype"], "gatehouse:audit:v1");
        // The native event is embedded verbatim: its canonical bytes re-hash.
        let canonical = serde_json_canonicalizer::to_vec(&envelope["event"]).unwrap();
        assert_eq!(canonical, record.event.canonical_json);
    }
    let state = receiver.state.lock().unwrap();
    // Ten events in batches of four: three requests, each acknowledged after polling.
    assert_eq!(state.requests.len(), 3);
    assert!(state.ack_polls >= 3, "{}", state.ack_polls);
    assert!(
        state
            .authorizations
            .iter()
            .all(|a| *a == format!("Splunk {TOKEN}"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hec_honours_retry_after_on_429_and_503() {
    let backend = Backend::sqlite().await;
    let log = log_over(&backend).await;
    let receiver = HecReceiver::start(TOKEN, false).await;
    receiver.state.lock().unwrap().fail_next = vec![(429, Some(1)), (503, None)];
    append(&log, "r", 0, 2).await;
    let running = Running::start(&log, &sinks(&hec(&receiver, "splunk", "")));
    let lag = running.delivered(2).await;
    running.stop().await;
    assert_eq!(lag.retries, 2);
    assert_eq!(receiver.events().len(), 2);
    let requests = receiver.state.lock().unwrap().requests.clone();
    assert_eq!(requests.len(), 3);
    // The 429 said "Retry-After: 1"; the backoff alone would be ≤ 10 ms.
    assert!(requests[1] - requests[0] >= Duration::from_millis(990));
    assert!(requests[2] - requests[1] < Duration::from_millis(900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hec_dead_letters_refused_events_and_delivers_the_rest() {
    let backend = Backend::sqlite().await;
    let log = log_over(&backend).await;
    let receiver = HecReceiver::start(TOKEN, false).await;
    log.append(vec![
        event("d-1", "alice", "echo", "VERDICT_ALLOW", 1),
        event("d-2", "alice", "poison", "VERDICT_ALLOW", 2),
        event("d-3", "bob", "echo", "VERDICT_DENY", 3),
    ])
    .await
    .unwrap();
    let running = Running::start(&log, &sinks(&hec(&receiver, "splunk", "")));
    let lag = running.delivered(3).await;
    running.stop().await;
    assert_eq!(lag.dead_lettered, 1);
    assert_eq!(lag.events_behind, 0);
    let letters = audit_svc::sinks::dead_letters(backend.store().as_ref(), "splunk")
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].sequence, 2);
    assert_eq!(letters[0].event_id, "d-2");
    assert!(letters[0].reason.contains("400"), "{}", letters[0].reason);
    // d-1 was indexed by the refused batch (before the invalid event) and again
    // when the batch was resent event by event: at least once, never lost.
    let ids: Vec<String> = receiver
        .events()
        .iter()
        .map(|e| e["fields"]["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(ids.contains(&"d-1".to_owned()) && ids.contains(&"d-3".to_owned()));
    assert!(!ids.contains(&"d-2".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_counts_undelivered_events_while_the_receiver_refuses_the_token() {
    let backend = Backend::sqlite().await;
    let log = log_over(&backend).await;
    let receiver = HecReceiver::start("another-token", false).await;
    append(&log, "l", 0, 5).await;
    let running = Running::start(&log, &sinks(&hec(&receiver, "splunk", "")));
    running.retried(3).await;
    running.stop().await;
    // A wrong token is retried, never dead-lettered.
    let lag = audit_svc::sinks::lag(backend.store().as_ref(), "splunk")
        .await
        .unwrap();
    assert_eq!(lag.events_behind, 5);
    assert_eq!(lag.delivered, 0);
    assert!(lag.oldest_undelivered_age > Duration::ZERO);
    assert!(
        audit_svc::sinks::dead_letters(backend.store().as_ref(), "splunk")
            .await
            .unwrap()
            .is_empty()
    );
}
