//! The store conformance suite, run against SQLite and PostgreSQL.

use audit_svc::{AppendOutcome, AuditEvent, AuditLog, Filter, SearchQuery, verify};
use serde_json::json;

use crate::backend::{Backend, conformance, event};

conformance!(
    append_assigns_gapless_sequences_from_one,
    reappending_an_id_returns_the_original_sequence,
    different_content_under_a_known_id_is_refused,
    concurrent_appenders_get_a_gapless_ordered_sequence,
    appenders_joined_in_one_group_commit_each_get_their_own_outcomes,
    update_delete_and_truncate_are_refused_by_the_database,
    search_filters_by_every_facet,
    search_pages_with_tokens_in_both_directions,
);

async fn append_assigns_gapless_sequences_from_one(backend: &Backend) {
    let store = backend.store();
    let batch: Vec<AuditEvent> = (0..5)
        .map(|i| event(&format!("e{i}"), "alice", "echo", "VERDICT_ALLOW", i))
        .collect();
    let outcomes = store.append(&batch).await.unwrap();
    let expected: Vec<_> = (1..=5).map(AppendOutcome::Stored).collect();
    assert_eq!(outcomes, expected);
    let outcomes = store
        .append(&[event("e5", "bob", "echo", "VERDICT_DENY", 5)])
        .await
        .unwrap();
    assert_eq!(outcomes, [AppendOutcome::Stored(6)]);
    assert_eq!(store.head().await.unwrap(), 6);
    let stored = store.read(0, 100).await.unwrap();
    let sequences: Vec<u64> = stored.iter().map(|s| s.sequence).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5, 6]);
    assert_eq!(
        stored[5].event,
        event("e5", "bob", "echo", "VERDICT_DENY", 5)
    );
}

async fn reappending_an_id_returns_the_original_sequence(backend: &Backend) {
    let store = backend.store();
    let first = event("dup", "alice", "echo", "VERDICT_ALLOW", 1);
    store
        .append(&[
            event("a", "alice", "echo", "VERDICT_ALLOW", 0),
            first.clone(),
        ])
        .await
        .unwrap();
    let again = store
        .append(&[
            first.clone(),
            event("b", "bob", "echo", "VERDICT_ALLOW", 2),
            first,
        ])
        .await
        .unwrap();
    assert_eq!(
        again,
        [
            AppendOutcome::Duplicate(2),
            AppendOutcome::Stored(3),
            AppendOutcome::Duplicate(2)
        ]
    );
    assert_eq!(store.head().await.unwrap(), 3);
}

async fn different_content_under_a_known_id_is_refused(backend: &Backend) {
    let store = backend.store();
    store
        .append(&[event("x", "alice", "echo", "VERDICT_ALLOW", 0)])
        .await
        .unwrap();
    let forged = event("x", "mallory", "echo", "VERDICT_ALLOW", 0);
    assert_eq!(
        store.append(&[forged]).await.unwrap(),
        [AppendOutcome::Conflict]
    );
    let stored = store.read(0, 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event.facets.member_id, "alice");
}

async fn concurrent_appenders_get_a_gapless_ordered_sequence(backend: &Backend) {
    let store = backend.store();
    let tasks: Vec<_> = (0..8)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut sequences = Vec::new();
                for batch in 0..20 {
                    let events: Vec<AuditEvent> = (0..5)
                        .map(|i| {
                            let id = format!("w{writer}-b{batch}-{i}");
                            event(&id, &format!("m{writer}"), "echo", "VERDICT_ALLOW", i)
                        })
                        .collect();
                    for outcome in store.append(&events).await.unwrap() {
                        let AppendOutcome::Stored(sequence) = outcome else {
                            panic!("unexpected {outcome:?}");
                        };
                        sequences.push(sequence);
                    }
                }
                sequences
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let sequences = task.await.unwrap();
        // Each writer's own events come out in the order it appended them.
        assert!(sequences.windows(2).all(|pair| pair[0] < pair[1]));
        all.extend(sequences);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=800).collect::<Vec<u64>>());
    let report = verify(store.as_ref(), None).await.unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.tree_size, 800);
}

/// Many appenders through one log: their batches share commits, and each still
/// gets the outcomes of its own events, duplicates and conflicts included.
async fn appenders_joined_in_one_group_commit_each_get_their_own_outcomes(backend: &Backend) {
    let log = AuditLog::new(backend.store(), signer()).await.unwrap();
    let original = event("shared", "alice", "echo", "VERDICT_ALLOW", 0);
    let forged = event("shared", "mallory", "echo", "VERDICT_ALLOW", 0);
    let tasks: Vec<_> = (0..16)
        .map(|writer| {
            let (log, original, forged) = (log.clone(), original.clone(), forged.clone());
            tokio::spawn(async move {
                let mut batch: Vec<AuditEvent> = (0..50)
                    .map(|i| event(&format!("g{writer}-{i}"), "bob", "echo", "VERDICT_ALLOW", i))
                    .collect();
                // Every writer also sends the same event, and odd writers a forgery of it.
                batch.insert(25, if writer % 2 == 0 { original } else { forged });
                (writer, log.append(batch).await.unwrap())
            })
        })
        .collect();
    let mut stored = Vec::new();
    let mut shared = Vec::new();
    for task in tasks {
        let (writer, outcomes) = task.await.unwrap();
        assert_eq!(outcomes.len(), 51, "one outcome per event of the batch");
        for (i, outcome) in outcomes.iter().enumerate() {
            match outcome {
                AppendOutcome::Stored(sequence) if i != 25 => stored.push(*sequence),
                other if i == 25 => shared.push((writer, *other)),
                other => panic!("writer {writer} event {i}: {other:?}"),
            }
        }
    }
    // The first writer to land the shared id stored it; every other got it back
    // as a duplicate (same content) or a conflict (the forgery).
    let winner = shared
        .iter()
        .find_map(|(writer, outcome)| match outcome {
            AppendOutcome::Stored(sequence) => Some((*writer, *sequence)),
            _ => None,
        })
        .expect("someone stored the shared event");
    for (writer, outcome) in &shared {
        let expected = if *writer == winner.0 {
            AppendOutcome::Stored(winner.1)
        } else if writer % 2 == winner.0 % 2 {
            AppendOutcome::Duplicate(winner.1)
        } else {
            AppendOutcome::Conflict
        };
        assert_eq!(*outcome, expected, "writer {writer}");
    }
    stored.push(winner.1);
    stored.sort_unstable();
    assert_eq!(stored, (1..=16 * 50 + 1).collect::<Vec<u64>>());
    let report = verify(backend.store().as_ref(), None).await.unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.tree_size, 16 * 50 + 1);
}

async fn update_delete_and_truncate_are_refused_by_the_database(backend: &Backend) {
    let store = backend.store();
    store
        .append(&[event("keep", "alice", "echo", "VERDICT_ALLOW", 0)])
        .await
        .unwrap();
    let update = backend
        .execute("UPDATE audit_event SET member_id = 'mallory'")
        .await;
    assert!(update.is_err(), "update was accepted");
    let delete = backend.execute("DELETE FROM audit_event").await;
    assert!(delete.is_err(), "delete was accepted");
    if backend.is_postgres() {
        let truncate = backend.execute("TRUNCATE audit_event").await;
        assert!(truncate.is_err(), "truncate was accepted");
        let truncate = backend.execute("TRUNCATE audit_checkpoint").await;
        assert!(truncate.is_err(), "checkpoint truncate was accepted");
    }
    let stored = store.read(0, 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event.facets.member_id, "alice");
}

async fn seed_for_search(backend: &Backend) {
    let members = ["alice", "bob", "carol"];
    let events: Vec<AuditEvent> = (0..30u32)
        .map(|i| {
            let member = members[i as usize % 3];
            let tool = if i % 2 == 0 { "read" } else { "write" };
            let verdict = if i % 5 == 0 {
                "VERDICT_DENY"
            } else {
                "VERDICT_ALLOW"
            };
            event(&format!("s{i:02}"), member, tool, verdict, i)
        })
        .collect();
    backend.store().append(&events).await.unwrap();
}

async fn ids(backend: &Backend, filter: Filter) -> Vec<String> {
    let query = SearchQuery::new(filter, 1000, "", false).unwrap();
    let found = backend.store().search(&query).await.unwrap();
    found.iter().map(|s| s.event.id.to_string()).collect()
}

async fn search_filters_by_every_facet(backend: &Backend) {
    seed_for_search(backend).await;
    let alice = ids(
        backend,
        Filter {
            member_ids: vec!["alice".into()],
            ..Filter::default()
        },
    )
    .await;
    assert_eq!(alice.len(), 10);
    assert!(
        alice
            .iter()
            .all(|id| id[1..].parse::<u32>().unwrap() % 3 == 0)
    );
    let agents = Filter {
        agent_client_ids: vec!["agent-bob".into()],
        ..Filter::default()
    };
    assert_eq!(ids(backend, agents).await.len(), 10);
    let denied_writes = Filter {
        tools: vec!["write".into()],
        verdicts: vec!["VERDICT_DENY".into()],
        ..Filter::default()
    };
    assert_eq!(ids(backend, denied_writes).await, ["s05", "s15", "s25"]);
    let outcomes = Filter {
        outcomes: vec!["OUTCOME_DENIED".into()],
        ..Filter::default()
    };
    assert_eq!(ids(backend, outcomes).await.len(), 6);
    let window = Filter {
        start_micros: Some(audit_time(10)),
        end_micros: Some(audit_time(13)),
        virtual_servers: vec!["demo".into()],
        connectors: vec!["echo".into()],
        kinds: vec!["EVENT_KIND_MCP_REQUEST".into()],
        ..Filter::default()
    };
    assert_eq!(ids(backend, window).await, ["s10", "s11", "s12"]);
    let trace = Filter {
        trace_id: Some("trace-s07".into()),
        ..Filter::default()
    };
    assert_eq!(ids(backend, trace).await, ["s07"]);
    let nobody = Filter {
        member_ids: vec!["nobody".into()],
        ..Filter::default()
    };
    assert!(ids(backend, nobody).await.is_empty());
}

fn audit_time(minute: u32) -> i64 {
    let document = json!({"eventId": "t", "kind": "EVENT_KIND_MCP_REQUEST",
        "time": format!("2026-11-22T03:{minute:02}:00Z")});
    AuditEvent::from_document(&document).unwrap().time_micros
}

async fn search_pages_with_tokens_in_both_directions(backend: &Backend) {
    seed_for_search(backend).await;
    let filter = Filter {
        tools: vec!["read".into()],
        ..Filter::default()
    };
    for descending in [false, true] {
        let mut token = String::new();
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let query = SearchQuery::new(filter.clone(), 4, &token, descending).unwrap();
            let page = audit_svc::AuditLog::new(backend.store(), signer())
                .await
                .unwrap()
                .search(&query)
                .await
                .unwrap();
            pages += 1;
            seen.extend(page.events.iter().map(|s| s.sequence));
            match page.next_page_token {
                Some(next) => token = next,
                None => break,
            }
        }
        let mut expected: Vec<u64> = (1..=30).filter(|s| (s - 1) % 2 == 0).collect();
        if descending {
            expected.reverse();
        }
        assert_eq!(seen, expected);
        assert_eq!(pages, 4);
        assert!(pages <= 5);
    }
    let first = SearchQuery::new(filter.clone(), 4, "", false).unwrap();
    let token = first.token_after(7);
    let other = Filter {
        tools: vec!["write".into()],
        ..Filter::default()
    };
    assert!(SearchQuery::new(other, 4, &token, false).is_err());
    assert!(SearchQuery::new(filter.clone(), 4, &token, true).is_err());
    assert!(SearchQuery::new(filter, 4, "garbage!", false).is_err());
}

pub(crate) fn signer() -> audit_svc::Signer {
    audit_svc::Signer::new("test.example/audit".into(), &[7u8; 32])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_opening_one_fresh_sqlite_file_at_once_all_start() {
    // As several processes starting on one data dir, or a reader opening the file while
    // audit-svc migrates it.
    const OPENERS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let opened =
        futures::future::join_all((0..OPENERS).map(|_| audit_svc::SqliteStore::open(&path))).await;
    let stores: Vec<_> = opened
        .into_iter()
        .map(|store| store.expect("every opener starts"))
        .collect();
    use audit_svc::Store as _;
    for (i, store) in stores.iter().enumerate() {
        let outcomes = store
            .append(&[event(
                &format!("e{i}"),
                "alice",
                "echo",
                "VERDICT_ALLOW",
                i as u32,
            )])
            .await
            .unwrap();
        assert_eq!(outcomes, [AppendOutcome::Stored(i as u64 + 1)]);
    }
}

/// Processes that open one fresh SQLite file at the same moment (a service starting while the
/// `gatehouse audit` CLI reads, or two replicas) all open it, even while the first of them is
/// already appending: none is told the file is locked, and all see the same log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_opened_on_one_fresh_sqlite_file_at_once_all_open() {
    use audit_svc::{Reads as _, Store as _};
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let mut openers = tokio::task::JoinSet::new();
        for opener in 0..6 {
            let path = path.clone();
            openers.spawn(async move {
                let store = audit_svc::SqliteStore::open(&path).await?;
                for minute in 0..3 {
                    let id = format!("{round}-{opener}-{minute}");
                    store
                        .append(&[event(&id, "alice", "echo", "VERDICT_ALLOW", minute)])
                        .await?;
                }
                Ok::<_, audit_svc::Error>(store)
            });
        }
        let mut stores = Vec::new();
        while let Some(opened) = openers.join_next().await {
            stores.push(
                opened
                    .unwrap()
                    .expect("opened and appended despite the others"),
            );
        }
        for store in &stores {
            assert_eq!(store.head().await.unwrap(), 18);
        }
    }
}
