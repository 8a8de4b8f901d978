//! The compiled detectors: one prefilter pass over clean text, then the detectors that fired.
//!
//! A [`regex::RegexSet`] of every pattern answers "does anything match?" in one DFA pass, so
//! clean text (the common case) costs one scan regardless of how many detectors are configured.

use std::collections::BTreeMap;

use regex::{Regex, RegexSet};
use regex_automata::hybrid::dfa::DFA;
use regex_automata::{Anchored, Input};

use crate::detector::Builtin;
use crate::error::ConfigError;

/// Most detectors one scanner holds, so that a [`Selection`] fits one bitmask.
pub(crate) const MAX_DETECTORS: usize = 128;

/// Every detector, built-in and custom, compiled once at startup.
#[derive(Debug, Clone)]
pub struct Scanner {
    detectors: Vec<Detector>,
    prefilter: RegexSet,
}

/// Which of a scanner's detectors a rule enables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection(u128);

/// Detector names and how many values each found: what the audit record may show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings(BTreeMap<String, u32>);

#[derive(Debug, Clone)]
struct Detector {
    name: String,
    regex: Regex,
    builtin: Option<Builtin>,
    /// The same pattern as a lazy DFA, stepped byte by byte to tell whether a text's tail is
    /// the start of a value that more text could complete (`regex` only reports whole matches).
    prefix: DFA,
}

/// One confirmed match, in bytes of the scanned text.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    detector: usize,
}

impl Scanner {
    /// Compiles the built-ins and `custom` (name, pattern) pairs; errors name the failing entry.
    pub fn new(custom: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut detectors: Vec<Detector> = Builtin::ALL
            .into_iter()
            .map(|builtin| {
                Ok(Detector {
                    name: builtin.name().to_owned(),
                    regex: Regex::new(builtin.pattern()).map_err(|error| error.to_string())?,
                    builtin: Some(builtin),
                    prefix: DFA::new(builtin.pattern()).map_err(|error| error.to_string())?,
                })
            })
            .collect::<Result<_, String>>()
            .map_err(ConfigError::Builtin)?;
        for (index, (name, pattern)) in custom.iter().enumerate() {
            let field = format!("dlp.custom[{index}]");
            if !valid_name(name) {
                return Err(ConfigError::invalid(
                    format!("{field}.name"),
                    format!("`{name}` must be 1-64 characters of [a-z0-9_]"),
                ));
            }
            if detectors.iter().any(|detector| detector.name == *name) {
                return Err(ConfigError::invalid(
                    format!("{field}.name"),
                    format!("detector `{name}` already exists"),
                ));
            }
            let regex = Regex::new(pattern).map_err(|error| {
                ConfigError::invalid(format!("{field}.pattern"), error.to_string())
            })?;
            if regex.is_match("") {
                return Err(ConfigError::invalid(
                    format!("{field}.pattern"),
                    "matches the empty string, so it would mask everything".to_owned(),
                ));
            }
            let prefix = DFA::new(pattern).map_err(|error| {
                ConfigError::invalid(format!("{field}.pattern"), error.to_string())
            })?;
            detectors.push(Detector {
                name: name.clone(),
                regex,
                builtin: None,
                prefix,
            });
        }
        if detectors.len() > MAX_DETECTORS {
            return Err(ConfigError::invalid(
                "dlp.custom".to_owned(),
                format!(
                    "at most {} custom detectors",
                    MAX_DETECTORS - Builtin::ALL.len()
                ),
            ));
        }
        let prefilter = RegexSet::new(detectors.iter().map(|detector| detector.regex.as_str()))
            .map_err(|error| ConfigError::Builtin(error.to_string()))?;
        Ok(Self {
            detectors,
            prefilter,
        })
    }

    /// Returns every detector.
    pub fn all(&self) -> Selection {
        Selection(u128::MAX >> (MAX_DETECTORS - self.detectors.len()))
    }

    /// Returns the selection of `names`, or the first name no detector has.
    pub fn select<'n>(
        &self,
        names: impl IntoIterator<Item = &'n str>,
    ) -> Result<Selection, &'n str> {
        let mut bits = 0u128;
        for name in names {
            let index = self
                .detectors
                .iter()
                .position(|detector| detector.name == name)
                .ok_or(name)?;
            bits |= 1 << index;
        }
        Ok(Selection(bits))
    }

    /// Masks `fragments` as one text, adding what was found to `findings`.
    ///
    /// The fragments are the consecutive pieces of one logical text (such as adjacent text
    /// content blocks), so a value split between two of them is still found. A match's
    /// placeholder goes into the fragment where it starts; its remainder is removed from the
    /// fragments after, so the joined output reads `[REDACTED:<detector>]` once.
    pub fn mask_fragments(
        &self,
        fragments: &mut [&mut String],
        selection: Selection,
        findings: &mut Findings,
    ) {
        let masked = {
            let pieces: Vec<&str> = fragments.iter().map(|fragment| fragment.as_str()).collect();
            let joined;
            let text = match pieces.as_slice() {
                [] => return,
                [only] => *only,
                _ => {
                    joined = pieces.concat();
                    joined.as_str()
                }
            };
            let spans = self.spans(text, selection);
            if spans.is_empty() {
                return;
            }
            for span in &spans {
                findings.add(&self.detectors[span.detector].name, 1);
            }
            let mut offset = 0;
            pieces
                .iter()
                .map(|piece| {
                    let range = offset..offset + piece.len();
                    offset = range.end;
                    self.rewrite(text, range, &spans)
                })
                .collect::<Vec<_>>()
        };
        for (fragment, masked) in fragments.iter_mut().zip(masked) {
            **fragment = masked;
        }
    }

    /// Masks the leading pieces of `text`, of `lengths` bytes each, as part of the whole text.
    ///
    /// Matches starting in those pieces are masked and counted; the returned spill is how far
    /// the last of them reaches past the pieces, into text that is not masked here.
    pub(crate) fn mask_prefix(
        &self,
        text: &str,
        lengths: &[usize],
        selection: Selection,
        findings: &mut Findings,
    ) -> (Vec<String>, usize) {
        let end: usize = lengths.iter().sum();
        // Joining can also hide a value: "…1111" then "charging…" loses the word boundary
        // after the last digit. So each piece is also scanned alone, and the two views merged.
        let mut spans = self.spans(text, selection);
        let mut offset = 0;
        for length in lengths {
            let piece = offset..offset + length;
            spans.extend(
                self.spans(&text[piece], selection)
                    .into_iter()
                    .map(|span| Span {
                        start: span.start + offset,
                        end: span.end + offset,
                        detector: span.detector,
                    }),
            );
            offset += length;
        }
        spans.retain(|span| span.start < end);
        spans.sort_by_key(|span| (span.start, std::cmp::Reverse(span.end)));
        let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
        for span in spans {
            match merged.last_mut() {
                Some(last) if span.start < last.end => last.end = last.end.max(span.end),
                _ => merged.push(span),
            }
        }
        let spans = merged;
        for span in &spans {
            findings.add(&self.detectors[span.detector].name, 1);
        }
        let mut offset = 0;
        let masked = lengths
            .iter()
            .map(|length| {
                let range = offset..offset + length;
                offset = range.end;
                self.rewrite(text, range, &spans)
            })
            .collect();
        let spill = spans.last().map_or(0, |span| span.end.saturating_sub(end));
        (masked, spill)
    }

    /// Masks one text, adding what was found to `findings`.
    pub fn mask_text(&self, text: &mut String, selection: Selection, findings: &mut Findings) {
        self.mask_fragments(&mut [text], selection, findings);
    }

    /// Returns the earliest start, within the last `window` bytes of `text`, of a tail that a
    /// selected detector could still match once more text follows.
    ///
    /// A tail the lazy DFA cannot decide (a Unicode word boundary before non-ASCII text, a
    /// thrashing cache) counts as open: holding text back is the safe error.
    pub(crate) fn open_tail(
        &self,
        text: &str,
        window: usize,
        selection: Selection,
    ) -> Option<usize> {
        let first = text.len().saturating_sub(window);
        let selected: Vec<&Detector> = self
            .detectors
            .iter()
            .enumerate()
            .filter(|(index, _)| selection.0 & (1 << index) != 0)
            .map(|(_, detector)| detector)
            .collect();
        let mut caches: Vec<_> = selected
            .iter()
            .map(|detector| detector.prefix.create_cache())
            .collect();
        (first..text.len())
            .filter(|start| text.is_char_boundary(*start))
            .find(|start| {
                selected
                    .iter()
                    .zip(caches.iter_mut())
                    .any(|(detector, cache)| could_grow(&detector.prefix, cache, text, *start))
            })
    }

    /// Returns the start of a confirmed match that begins before `cut` and ends after it.
    pub(crate) fn straddling(&self, text: &str, cut: usize, selection: Selection) -> Option<usize> {
        self.spans(text, selection)
            .into_iter()
            .find(|span| span.start < cut && span.end > cut)
            .map(|span| span.start)
    }

    /// Returns the confirmed matches of the selected detectors, earliest first, never overlapping.
    fn spans(&self, text: &str, selection: Selection) -> Vec<Span> {
        let hits = self.prefilter.matches(text);
        if !hits.matched_any() {
            return Vec::new();
        }
        let mut spans = Vec::new();
        for index in hits.iter().filter(|index| selection.0 & (1 << index) != 0) {
            let detector = &self.detectors[index];
            for found in detector.regex.find_iter(text) {
                let confirmed = detector
                    .builtin
                    .is_none_or(|builtin| builtin.confirms(found.as_str()));
                if confirmed {
                    spans.push(Span {
                        start: found.start(),
                        end: found.end(),
                        detector: index,
                    });
                }
            }
        }
        // Earliest start first, the longer of two matches at one position wins.
        spans.sort_by_key(|span| (span.start, std::cmp::Reverse(span.end)));
        let mut kept: Vec<Span> = Vec::with_capacity(spans.len());
        for span in spans {
            if kept.last().is_none_or(|last| span.start >= last.end) {
                kept.push(span);
            }
        }
        kept
    }

    /// Returns `text[range]` with the parts covered by `spans` replaced.
    fn rewrite(&self, text: &str, range: std::ops::Range<usize>, spans: &[Span]) -> String {
        let mut out = String::with_capacity(range.len());
        let mut cursor = range.start;
        for span in spans
            .iter()
            .filter(|span| span.end > range.start && span.start < range.end)
        {
            let start = span.start.max(range.start);
            out.push_str(&text[cursor..start]);
            if span.start >= range.start {
                out.push_str("[REDACTED:");
                out.push_str(&self.detectors[span.detector].name);
                out.push(']');
            }
            cursor = span.end.min(range.end);
        }
        out.push_str(&text[cursor..range.end]);
        out
    }
}

impl Findings {
    /// Says whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Counts `count` more matches of `detector`.
    pub fn add(&mut self, detector: &str, count: u32) {
        *self.0.entry(detector.to_owned()).or_default() += count;
    }

    /// Returns (detector, count) pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.0.iter().map(|(name, count)| (name.as_str(), *count))
    }

    /// Returns the detector names, comma-separated, for a client-facing message.
    pub fn names(&self) -> String {
        self.0
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Says whether `text[start..]` is a prefix of some match of `dfa` anchored at `start`: after
/// every byte the automaton is still alive (a complete match that could go on counts too).
fn could_grow(
    dfa: &DFA,
    cache: &mut regex_automata::hybrid::dfa::Cache,
    text: &str,
    start: usize,
) -> bool {
    let input = Input::new(text).range(start..).anchored(Anchored::Yes);
    let Ok(mut state) = dfa.start_state_forward(cache, &input) else {
        return true;
    };
    for &byte in &text.as_bytes()[start..] {
        match dfa.next_state(cache, state, byte) {
            Ok(next) if next.is_dead() => return false,
            Ok(next) if next.is_quit() => return true,
            Ok(next) => state = next,
            Err(_) => return true,
        }
    }
    true
}

/// Detector names appear in placeholders and audit records, so they are kept plain.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests;
