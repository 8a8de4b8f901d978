//! Masking text that arrives in pieces (streamed messages, chunked output).
//!
//! A value may be split across two pieces, and text already passed on cannot be recalled, so
//! the stream holds back a carry-over window: the last [`CARRY`] bytes are kept until more text
//! (or the end) shows whether they start a sensitive value. Any value up to `CARRY` bytes long
//! is therefore found wherever the pieces are cut; a longer one (a PEM private key) is found
//! from its header, which masks to the end of the piece that holds it.

use crate::scanner::{Findings, Scanner, Selection};

/// Bytes held back between pieces: longer than any fixed-form secret the built-ins detect.
pub const CARRY: usize = 256;

/// A text being masked piece by piece; what [`TextStream::push`] returns is safe to pass on.
#[derive(Debug)]
pub struct TextStream<'s> {
    scanner: &'s Scanner,
    selection: Selection,
    pending: String,
    findings: Findings,
}

impl<'s> TextStream<'s> {
    pub(crate) fn new(scanner: &'s Scanner, selection: Selection) -> Self {
        Self {
            scanner,
            selection,
            pending: String::new(),
            findings: Findings::default(),
        }
    }

    /// Takes the next piece and returns the masked text that may now be passed on.
    pub fn push(&mut self, piece: &str) -> String {
        self.pending.push_str(piece);
        if self.pending.len() <= CARRY {
            return String::new();
        }
        let mut cut = self.pending.len() - CARRY;
        while !self.pending.is_char_boundary(cut) {
            cut -= 1;
        }
        // A value straddling the cut must be decided whole: hold back from where it starts.
        let cut = self
            .scanner
            .straddling(&self.pending, cut, self.selection)
            .unwrap_or(cut);
        let rest = self.pending.split_off(cut);
        let mut ready = std::mem::replace(&mut self.pending, rest);
        self.scanner
            .mask_text(&mut ready, self.selection, &mut self.findings);
        ready
    }

    /// Returns the rest of the text, masked, and everything found in the whole stream.
    pub fn finish(mut self) -> (String, Findings) {
        let mut rest = std::mem::take(&mut self.pending);
        self.scanner
            .mask_text(&mut rest, self.selection, &mut self.findings);
        (rest, self.findings)
    }
}
