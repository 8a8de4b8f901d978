use std::io::Write as _;
use std::time::Duration;

use super::{Spool, SpoolError, SpoolLimits};

fn limits(max_bytes: u64, segment_bytes: u64) -> SpoolLimits {
    SpoolLimits {
        max_bytes,
        segment_bytes,
        sync_interval: Duration::from_millis(50),
    }
}

fn payloads(spool: &Spool, from: u64) -> Vec<Vec<u8>> {
    spool
        .read(from, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|record| record.payload)
        .collect()
}

fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect()
}

#[test]
fn records_come_back_in_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), limits(1 << 20, 64)).unwrap();
    let written: Vec<Vec<u8>> = (0..20).map(|i| format!("event-{i}").into_bytes()).collect();
    for payload in &written {
        spool.append(payload).unwrap();
    }
    assert!(segment_files(dir.path()).len() > 3, "segments rolled");
    assert_eq!(payloads(&spool, 0), written);
}

#[test]
fn a_batch_stops_at_its_size_and_resumes_where_it_ended() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), limits(1 << 20, 1 << 20)).unwrap();
    for i in 0..5 {
        spool.append(format!("{i}").as_bytes()).unwrap();
    }
    let first = spool.read(0, 2).unwrap();
    assert_eq!(first.len(), 2);
    let rest: Vec<_> = spool
        .read(first[1].next, 10)
        .unwrap()
        .into_iter()
        .map(|record| record.payload)
        .collect();
    assert_eq!(rest, vec![b"2".to_vec(), b"3".to_vec(), b"4".to_vec()]);
}

#[test]
fn a_reopened_spool_resumes_after_the_acknowledged_records() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), limits(1 << 20, 48)).unwrap();
    let mut positions = Vec::new();
    for i in 0..10 {
        positions.push(spool.append(format!("event-{i}").as_bytes()).unwrap());
    }
    spool.acknowledge(positions[5]).unwrap();
    drop(spool);

    let reopened = Spool::open(dir.path(), limits(1 << 20, 48)).unwrap();
    let from = reopened.acknowledged();
    assert_eq!(from, positions[5]);
    let expected: Vec<Vec<u8>> = (6..10).map(|i| format!("event-{i}").into_bytes()).collect();
    assert_eq!(payloads(&reopened, from), expected);
}

#[test]
fn a_cursor_written_by_an_earlier_version_is_read_and_overwritten_whole() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), limits(1 << 20, 1 << 20)).unwrap();
    let mut positions = Vec::new();
    for i in 0..4 {
        positions.push(spool.append(format!("event-{i}").as_bytes()).unwrap());
    }
    drop(spool);
    // Earlier versions wrote the bare number through a renamed temporary file.
    std::fs::write(dir.path().join("cursor"), positions[0].to_string()).unwrap();

    let reopened = Spool::open(dir.path(), limits(1 << 20, 1 << 20)).unwrap();
    assert_eq!(reopened.acknowledged(), positions[0]);
    reopened.acknowledge(positions[1]).unwrap();
    drop(reopened);
    let cursor = std::fs::read_to_string(dir.path().join("cursor")).unwrap();
    assert_eq!(cursor, format!("{:020}\n", positions[1]));
    let again = Spool::open(dir.path(), limits(1 << 20, 1 << 20)).unwrap();
    assert_eq!(
        payloads(&again, again.acknowledged()),
        vec![b"event-2".to_vec(), b"event-3".to_vec()]
    );
}

#[test]
fn acknowledged_segments_are_removed_but_the_current_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), limits(1 << 20, 32)).unwrap();
    let mut last = 0;
    for i in 0..12 {
        last = spool.append(format!("event-{i:02}").as_bytes()).unwrap();
    }
    spool.acknowledge(last).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(spool.backlog(), 0);
    let next = spool.append(b"after").unwrap();
    assert_eq!(payloads(&spool, last), vec![b"after".to_vec()]);
    assert!(next > last);
}

#[test]
fn a_torn_last_record_is_dropped_on_reopen_and_writing_continues_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), limits(1 << 20, 1 << 20)).unwrap();
    spool.append(b"whole").unwrap();
    drop(spool);
    // A frame header promising 100 bytes followed by only 3: what a kill mid-write leaves.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment_files(dir.path())[0])
        .unwrap();
    file.write_all(&100_u32.to_le_bytes()).unwrap();
    file.write_all(&[0, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(file);

    let reopened = Spool::open(dir.path(), limits(1 << 20, 1 << 20)).unwrap();
    reopened.append(b"next").unwrap();
    assert_eq!(
        payloads(&reopened, 0),
        vec![b"whole".to_vec(), b"next".to_vec()]
    );
}

#[test]
fn a_full_spool_refuses_until_records_are_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), limits(64, 1 << 20)).unwrap();
    let first = spool.append(&[7; 20]).unwrap();
    spool.append(&[7; 20]).unwrap();
    assert_eq!(spool.backlog(), 56);
    assert!(!spool.is_full());
    assert!(matches!(
        spool.append(&[7; 20]),
        Err(SpoolError::Full { max_bytes: 64 })
    ));
    spool.acknowledge(first).unwrap();
    spool.append(&[7; 20]).unwrap();
}

#[test]
fn a_flipped_byte_is_reported_as_corruption_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), limits(1 << 20, 1 << 20)).unwrap();
    spool.append(b"original").unwrap();
    let segment = &segment_files(dir.path())[0];
    let mut bytes = std::fs::read(segment).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(segment, bytes).unwrap();
    assert!(matches!(
        spool.read(0, 10),
        Err(SpoolError::Corrupt { position: 0 })
    ));
}

#[test]
fn promised_room_is_kept_for_admitted_calls_and_refused_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), limits(100, 1 << 20)).unwrap();
    let promised = spool.reserve(60).unwrap();
    assert!(matches!(spool.reserve(60), Err(SpoolError::Full { .. })));
    assert!(matches!(
        spool.append(&[1; 50]),
        Err(SpoolError::Full { .. })
    ));
    // The admitted call's event is written even if larger than promised: its call already ran.
    spool.append_reserved(&[1; 70], promised).unwrap();
    assert_eq!(spool.backlog(), 78);
    assert!(spool.reserve(30).is_err());
    let dropped = spool.reserve(20).unwrap();
    drop(dropped);
    assert!(spool.reserve(20).is_ok());
}

#[tokio::test]
async fn a_backlog_at_or_under_the_mark_is_not_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), limits(1 << 20, 1 << 20)).unwrap();
    let end = spool.append(b"one event").unwrap();
    assert!(spool.drained_to(end, Duration::from_secs(60)).await);
}

#[tokio::test]
async fn a_wait_for_the_backlog_ends_at_the_acknowledgement_that_brings_it_under_the_mark() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), limits(1 << 20, 1 << 20)).unwrap();
    let first = spool.append(b"first").unwrap();
    let second = spool.append(b"second").unwrap();
    let third = spool.append(b"third").unwrap();
    let mark = third - second;
    let waiting = tokio::spawn({
        let spool = spool.clone();
        async move { spool.drained_to(mark, Duration::from_secs(60)).await }
    });
    spool.acknowledge(first).unwrap();
    tokio::task::yield_now().await;
    assert!(
        !waiting.is_finished(),
        "an acknowledgement that leaves the backlog over the mark goes on waiting"
    );
    spool.acknowledge(second).unwrap();
    assert!(waiting.await.unwrap(), "drained to the mark");
}

#[tokio::test]
async fn a_wait_for_a_backlog_nobody_acknowledges_ends_with_its_patience() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), limits(1 << 20, 1 << 20)).unwrap();
    spool.append(b"never acknowledged").unwrap();
    assert!(!spool.drained_to(0, Duration::from_millis(20)).await);
    assert!(!spool.is_delivering(), "no delivery stream is open");
}
