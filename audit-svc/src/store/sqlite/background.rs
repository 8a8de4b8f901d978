//! The store's SQLite threads run behind the data plane.
//!
//! Every SQLite connection runs on a thread of its own, outside the async runtime. An append
//! is short, but a WAL checkpoint copies up to `wal_autocheckpoint` pages (32 MiB) in one go:
//! 20 ms or more of CPU on that thread. Measured on a 2-core box with `gatehouse up` at 4,000
//! calls/s (`perf sched timehist`), the kernel let such a burst hold a core for 4–5 ms while a
//! runtime worker with calls to answer waited for it. At a lower priority the burst is cut into
//! slices of about 1 ms and the workers go first; nothing waits on audit-svc's writes (a call's
//! answer never waits for its audit event), so the store loses nothing by yielding.
//! `gatehouse up` goes further: its audit-svc runs on threads under `SCHED_IDLE`, and the
//! connection threads they start inherit that policy, which a nice value does not change.

/// Name prefix of the store's SQLite threads (Linux keeps 15 bytes of a thread's name).
const THREAD_PREFIX: &str = "audit-sqlite-";

/// How much lower than the rest of the process those threads run (nice values, capped at 19).
const NICE_INCREMENT: i32 = 10;

/// Names the thread of the SQLite connection numbered `id`.
pub(super) fn thread_name(id: u64) -> String {
    format!("{THREAD_PREFIX}{id}")
}

/// Lowers every store thread of this process to the process's nice value plus
/// [`NICE_INCREMENT`]. Runs after each new connection (a thread appears with it); setting the
/// same value again is harmless. Best effort: where threads cannot be listed (not Linux) or
/// the kernel refuses, the threads keep the process's priority.
pub(super) fn lower_priority() {
    let Ok(own) = rustix::process::getpriority_process(None) else {
        return;
    };
    let target = own.saturating_add(NICE_INCREMENT).min(19);
    for tid in store_threads() {
        if let Err(error) = rustix::process::setpriority_process(Some(tid), target) {
            tracing::debug!(%error, "cannot lower the priority of an audit store thread");
        }
    }
}

/// The ids of this process's threads named as store threads.
fn store_threads() -> Vec<rustix::process::Pid> {
    let Ok(entries) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with(THREAD_PREFIX))
        })
        .filter_map(|task| task.file_name().to_str()?.parse().ok())
        .filter_map(rustix::process::Pid::from_raw)
        .collect()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_stores_sqlite_threads_run_at_a_lower_priority_than_the_process() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Held open: its connection threads live as long as the store.
        let _store = crate::store::SqliteStore::open(&dir.path().join("audit.db"))
            .await
            .expect("open");
        let threads = store_threads();
        assert!(
            !threads.is_empty(),
            "the open store has a connection thread"
        );
        let own = rustix::process::getpriority_process(None).expect("own nice value");
        for tid in threads {
            let nice = rustix::process::getpriority_process(Some(tid)).expect("thread nice value");
            assert_eq!(nice, (own + NICE_INCREMENT).min(19), "thread {tid:?}");
        }
    }
}
