//! Gatehouse DLP: finds sensitive values in a call's input and output and decides what to do.
//!
//! Built-in detectors (SSNs, payment cards with Luhn, IBANs with mod-97, email addresses,
//! private keys, cloud and API keys, JWTs) and custom regular expressions run over every
//! string of a JSON document; per virtual server, connector and tool, rules choose to block,
//! mask (`[REDACTED:<detector>]`) or flag, separately for input and output, and may ask an
//! external inspection service. Findings are detector names and counts, never the values.

mod detector;
mod document;
mod error;
mod hook;
mod messages;
mod rule;
mod scanner;
mod stream;

use serde_json::Value;

pub use detector::Builtin;
pub use error::{ConfigError, HookError};
pub use hook::{Hook, HookConfig, OnError, Verdict};
pub use messages::{MAX_HELD, MessageRun};
pub use rule::{
    Action, CustomDetectorConfig, Direction, DlpConfig, RuleConfig, Side, SideConfig, Target,
};
pub use scanner::{Findings, Scanner, Selection};
pub use stream::{CARRY, TextStream};

use rule::Rule;

/// The compiled `dlp:` section: the detectors, the rules and the hooks' HTTP client.
#[derive(Debug)]
pub struct Dlp {
    scanner: Scanner,
    rules: Vec<Rule>,
}

impl Dlp {
    /// Compiles `config`; every error names the field at fault.
    pub fn new(config: &DlpConfig) -> Result<Self, ConfigError> {
        let custom: Vec<(String, String)> = config
            .custom
            .iter()
            .map(|custom| (custom.name.clone(), custom.pattern.clone()))
            .collect();
        let scanner = Scanner::new(&custom)?;
        // One client for every hook: connections to the service are pooled across calls.
        let client = reqwest::Client::new();
        let rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(index, rule)| Rule::compile(index, rule, &scanner, &client))
            .collect::<Result<_, _>>()?;
        Ok(Self { scanner, rules })
    }

    /// Returns the compiled detectors.
    pub fn scanner(&self) -> &Scanner {
        &self.scanner
    }

    /// Says whether any rule applies to `virtual_server`, so other servers skip inspection.
    pub fn covers(&self, virtual_server: &str) -> bool {
        self.rules.iter().any(|rule| rule.names(virtual_server))
    }

    /// Returns what the most specific rule for `target` says about `direction`.
    pub fn side(&self, target: &Target<'_>, direction: Direction) -> Option<Side> {
        self.most_specific(target, |rule| rule.side(direction))
    }

    /// Returns the most specific hook asked about `direction` of calls to `target`.
    pub fn hook(&self, target: &Target<'_>, direction: Direction) -> Option<&Hook> {
        self.most_specific(target, |rule| {
            rule.hook.as_ref().filter(|hook| hook.covers(direction))
        })
    }

    /// Masks every string of `value` in place with the side's detectors and returns the findings.
    pub fn mask(&self, value: &mut Value, side: Side) -> Findings {
        document::mask(&self.scanner, value, side.selection)
    }

    /// Starts masking a text that arrives in pieces (see [`TextStream`]).
    pub fn stream(&self, side: Side) -> TextStream<'_> {
        TextStream::new(&self.scanner, side.selection)
    }

    fn most_specific<'r, T>(
        &'r self,
        target: &Target<'_>,
        pick: impl Fn(&'r Rule) -> Option<T>,
    ) -> Option<T> {
        let mut best: Option<(u8, T)> = None;
        for rule in &self.rules {
            let Some(specificity) = rule.specificity(target) else {
                continue;
            };
            if best.as_ref().is_some_and(|(seen, _)| *seen >= specificity) {
                continue;
            }
            if let Some(found) = pick(rule) {
                best = Some((specificity, found));
            }
        }
        best.map(|(_, found)| found)
    }
}
