//! Masking discrete messages that read as one text: the progress or log messages of one call.
//!
//! A downstream may cut a value between two messages ("card 4111 1111" then "1111 1111"), and a
//! relayed message cannot be recalled. So a message whose tail could still grow into a value is
//! held until the messages after it decide it; one whose tail cannot is passed on at once. Unlike
//! [`crate::TextStream`], whole messages are held and passed on, never re-cut, so each message
//! says what the downstream said, masked: a value's placeholder goes into the message where the
//! value starts and its remainder is removed from the messages after.

use std::collections::VecDeque;

use crate::scanner::{Findings, Scanner, Selection};
use crate::stream::CARRY;
use crate::{Dlp, Side};

/// Most messages held at once: a downstream sending only text-less messages behind an open
/// tail cannot grow the queue without bound; past it, everything held is decided as it stands.
pub const MAX_HELD: usize = 64;

/// The messages of one call not yet passed on, each with its text (empty when it has none).
#[derive(Debug)]
pub struct MessageRun<T> {
    held: VecDeque<(T, String)>,
    findings: Findings,
}

impl<T> Default for MessageRun<T> {
    fn default() -> Self {
        Self {
            held: VecDeque::new(),
            findings: Findings::default(),
        }
    }
}

impl<T> MessageRun<T> {
    /// Takes the next message and returns, in order, the messages that may now be passed on
    /// with their masked texts.
    pub fn push(&mut self, dlp: &Dlp, side: Side, message: T, text: String) -> Vec<(T, String)> {
        let (scanner, selection) = (dlp.scanner(), side.selection);
        self.held.push_back((message, text));
        let joined: String = self.held.iter().map(|(_, text)| text.as_str()).collect();
        let open = if self.held.len() > MAX_HELD {
            None
        } else {
            scanner.open_tail(&joined, CARRY, selection)
        };
        self.release(scanner, selection, joined, open)
    }

    /// Returns every message still held, masked: the call is over, so no more text can follow.
    pub fn finish(&mut self, dlp: &Dlp, side: Side) -> Vec<(T, String)> {
        let (scanner, selection) = (dlp.scanner(), side.selection);
        let joined: String = self.held.iter().map(|(_, text)| text.as_str()).collect();
        self.release(scanner, selection, joined, None)
    }

    /// Returns and clears what was found in the messages passed on so far.
    pub fn take_findings(&mut self) -> Findings {
        std::mem::take(&mut self.findings)
    }

    /// Passes on the held messages that end at or before `open` (all of them when `None`).
    fn release(
        &mut self,
        scanner: &Scanner,
        selection: Selection,
        joined: String,
        open: Option<usize>,
    ) -> Vec<(T, String)> {
        let open = open.unwrap_or(joined.len());
        let mut end = 0;
        let mut count = 0;
        for (_, text) in &self.held {
            if end + text.len() > open {
                break;
            }
            end += text.len();
            count += 1;
        }
        if count == 0 {
            return Vec::new();
        }
        let lengths: Vec<usize> = self
            .held
            .iter()
            .take(count)
            .map(|(_, text)| text.len())
            .collect();
        let (masked, spill) = scanner.mask_prefix(&joined, &lengths, selection, &mut self.findings);
        let released = self
            .held
            .drain(..count)
            .zip(masked)
            .map(|((message, _), text)| (message, text))
            .collect();
        self.drop_spill(spill);
        released
    }

    /// Removes the first `spill` bytes of the held text: the rest of a value whose placeholder
    /// was passed on with an earlier message.
    fn drop_spill(&mut self, mut spill: usize) {
        for (_, text) in &mut self.held {
            if spill == 0 {
                break;
            }
            let cut = spill.min(text.len());
            text.replace_range(..cut, "");
            spill -= cut;
        }
    }
}
