//! What administrators see of a connector: its state, restarts, last error and stderr tail.

use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard},
};

use serde::Serialize;

/// How many stderr lines of a stdio program are kept.
const STDERR_TAIL_LINES: usize = 200;
/// Longest stderr line kept, in bytes; longer lines are cut.
const STDERR_LINE_BYTES: usize = 2048;

/// A snapshot of a connector's health.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorStatus {
    /// Connector name.
    pub name: String,
    /// `stdio`, `http` or `sse`.
    pub transport: &'static str,
    /// Current lifecycle state.
    pub state: ConnectorState,
    /// Launches (stdio) or connection attempts (HTTP, SSE) after the first one.
    pub restarts: u64,
    /// The error that ended the most recent session or connect attempt.
    pub last_error: Option<String>,
    /// Protocol version of the current session.
    pub protocol_version: Option<String>,
    /// Process id of the stdio process Gatehouse started (the sandbox launcher when sandboxed),
    /// which is also the id of the connector's process group.
    pub pid: Option<u32>,
    /// Whether Landlock confined the stdio program (None until the launcher reports).
    pub landlock: Option<LandlockState>,
    /// The most recent stderr lines of the stdio program, oldest first.
    pub stderr_tail: Vec<String>,
}

/// Lifecycle state of a connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorState {
    /// The first session is being opened.
    Connecting,
    /// A session is open.
    Ready,
    /// The last session ended; a new one is being opened after a backoff.
    Restarting,
    /// The stdio program crashed repeatedly and is no longer restarted.
    Failed,
    /// Gatehouse shut the connector down.
    Stopped,
}

/// Whether the kernel confined a stdio program with Landlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LandlockState {
    /// Every requested restriction is enforced.
    Enforced,
    /// Some restrictions are enforced (older Landlock ABI).
    Partial,
    /// The kernel does not offer Landlock; only limits and the clean environment apply.
    Unsupported,
    /// The sandbox is switched off in the connector's configuration.
    Disabled,
}

/// Mutable bookkeeping behind [`ConnectorStatus`].
#[derive(Debug, Default)]
pub(crate) struct Book {
    pub(crate) restarts: u64,
    pub(crate) last_error: Option<String>,
    pub(crate) protocol_version: Option<rmcp::model::ProtocolVersion>,
    pub(crate) pid: Option<u32>,
    pub(crate) landlock: Option<LandlockState>,
}

/// The bounded tail of a stdio program's stderr, shared by the reader task and status.
#[derive(Debug, Default)]
pub(crate) struct StderrTail {
    lines: Mutex<VecDeque<String>>,
}

impl LandlockState {
    /// Parses the word the sandbox launcher prints after `landlock=`.
    pub(crate) fn from_word(word: &str) -> Option<Self> {
        match word {
            "enforced" => Some(Self::Enforced),
            "partial" => Some(Self::Partial),
            "unsupported" => Some(Self::Unsupported),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }

    /// Returns the word the sandbox launcher prints after `landlock=`.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Self::Enforced => "enforced",
            Self::Partial => "partial",
            Self::Unsupported => "unsupported",
            Self::Disabled => "disabled",
        }
    }
}

impl StderrTail {
    /// Appends one line, dropping the oldest when full.
    pub(crate) fn push(&self, line: &str) {
        let mut cut = line.len().min(STDERR_LINE_BYTES);
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut lines = lock(&self.lines);
        if lines.len() == STDERR_TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line[..cut].to_owned());
    }

    /// Returns the kept lines, oldest first.
    pub(crate) fn snapshot(&self) -> Vec<String> {
        lock(&self.lines).iter().cloned().collect()
    }
}

/// Locks a mutex, recovering the data if a panicking holder poisoned it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::{STDERR_LINE_BYTES, STDERR_TAIL_LINES, StderrTail};

    #[test]
    fn stderr_tail_keeps_the_newest_lines() {
        let tail = StderrTail::default();
        for n in 0..STDERR_TAIL_LINES + 5 {
            tail.push(&format!("line {n}"));
        }
        let kept = tail.snapshot();
        assert_eq!(kept.len(), STDERR_TAIL_LINES);
        assert_eq!(kept[0], "line 5");
    }

    #[test]
    fn long_stderr_lines_are_cut_on_a_character_boundary() {
        let tail = StderrTail::default();
        tail.push(&"é".repeat(STDERR_LINE_BYTES));
        let kept = tail.snapshot();
        assert!(kept[0].len() <= STDERR_LINE_BYTES);
        assert!(kept[0].chars().all(|c| c == 'é'));
    }
}
