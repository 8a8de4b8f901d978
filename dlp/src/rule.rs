//! The `dlp:` section: custom detectors and the rules that say what to do on which calls.
//!
//! Rules are per virtual server, optionally narrowed to one connector and to tools by glob;
//! for each direction the most specific matching rule that sets that direction wins (tool over
//! connector over virtual server; the first declared among equals), so a broad default can be
//! overridden for one sensitive tool.

use globset::{Glob, GlobMatcher};
use serde::Deserialize;

use crate::error::ConfigError;
use crate::hook::{Hook, HookConfig};
use crate::scanner::{Scanner, Selection};

/// The `dlp:` section of the gateway description.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlpConfig {
    /// Detectors defined by a regular expression, in addition to the built-ins.
    #[serde(default)]
    pub custom: Vec<CustomDetectorConfig>,
    /// What to do on which calls; a call no rule matches is not inspected.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// A detector defined in config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomDetectorConfig {
    /// The name used in rules and placeholders (`[REDACTED:<name>]`).
    pub name: String,
    /// A regular expression in the `regex` crate's syntax.
    pub pattern: String,
}

/// One rule: where it applies and what it does on each side of the call.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The virtual server's name.
    pub virtual_server: String,
    /// Narrows the rule to one connector of the virtual server.
    #[serde(default)]
    pub connector: Option<String>,
    /// Narrows the rule to tools whose exposed name matches this glob.
    #[serde(default)]
    pub tool: Option<String>,
    /// What to do about matches in the call's input (arguments).
    #[serde(default)]
    pub input: Option<SideConfig>,
    /// What to do about matches in the call's output (result).
    #[serde(default)]
    pub output: Option<SideConfig>,
    /// An external inspection service asked about the call.
    #[serde(default)]
    pub hook: Option<HookConfig>,
}

/// What one side of a call gets.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SideConfig {
    /// What happens when a detector matches.
    pub action: Action,
    /// The detectors to run; every detector when omitted.
    #[serde(default)]
    pub detectors: Option<Vec<String>>,
}

/// What happens when a detector matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Refuse the call (input: it never reaches the connector; output: the result is withheld).
    Block,
    /// Replace each match with `[REDACTED:<detector>]` and carry on.
    Mask,
    /// Only record the findings in the audit trail.
    Flag,
}

/// Which side of a call is inspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The arguments, before they are forwarded.
    Input,
    /// The result, before it is returned.
    Output,
}

/// Where a call goes: what rules are matched against.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The virtual server's name.
    pub virtual_server: &'a str,
    /// The connector's name.
    pub connector: &'a str,
    /// The tool's exposed name; `None` for prompts and resources (only rules without `tool` apply).
    pub tool: Option<&'a str>,
}

/// The compiled policy of one direction of one rule.
#[derive(Debug, Clone, Copy)]
pub struct Side {
    /// What happens when a detector matches.
    pub action: Action,
    pub(crate) selection: Selection,
}

#[derive(Debug)]
pub(crate) struct Rule {
    virtual_server: String,
    connector: Option<String>,
    tool: Option<GlobMatcher>,
    input: Option<Side>,
    output: Option<Side>,
    pub(crate) hook: Option<Hook>,
}

impl Rule {
    pub(crate) fn compile(
        index: usize,
        config: &RuleConfig,
        scanner: &Scanner,
        client: &reqwest::Client,
    ) -> Result<Self, ConfigError> {
        let field = format!("dlp.rules[{index}]");
        if config.input.is_none() && config.output.is_none() && config.hook.is_none() {
            return Err(ConfigError::invalid(
                field,
                "sets none of `input`, `output`, `hook`".to_owned(),
            ));
        }
        let tool = config
            .tool
            .as_deref()
            .map(|glob| {
                Glob::new(glob)
                    .map(|glob| glob.compile_matcher())
                    .map_err(|error| {
                        ConfigError::invalid(format!("{field}.tool"), error.to_string())
                    })
            })
            .transpose()?;
        let side = |name: &str, side: &Option<SideConfig>| {
            side.as_ref()
                .map(|side| {
                    let selection =
                        match &side.detectors {
                            None => scanner.all(),
                            Some(names) => scanner
                                .select(names.iter().map(String::as_str))
                                .map_err(|unknown| {
                                    ConfigError::invalid(
                                        format!("{field}.{name}.detectors"),
                                        format!("unknown detector `{unknown}`"),
                                    )
                                })?,
                        };
                    Ok(Side {
                        action: side.action,
                        selection,
                    })
                })
                .transpose()
        };
        let hook = config
            .hook
            .as_ref()
            .map(|hook| Hook::new(hook, client.clone(), &format!("{field}.hook")))
            .transpose()?;
        Ok(Self {
            virtual_server: config.virtual_server.clone(),
            connector: config.connector.clone(),
            tool,
            input: side("input", &config.input)?,
            output: side("output", &config.output)?,
            hook,
        })
    }

    /// Says whether the rule belongs to `virtual_server`.
    pub(crate) fn names(&self, virtual_server: &str) -> bool {
        self.virtual_server == virtual_server
    }

    /// Returns how specific the rule is when it applies to `target`, or `None` when it does not.
    pub(crate) fn specificity(&self, target: &Target<'_>) -> Option<u8> {
        if self.virtual_server != target.virtual_server {
            return None;
        }
        let connector = match &self.connector {
            None => 0,
            Some(name) if name == target.connector => 1,
            Some(_) => return None,
        };
        let tool = match (&self.tool, target.tool) {
            (None, _) => 0,
            (Some(glob), Some(tool)) if glob.is_match(tool) => 2,
            (Some(_), _) => return None,
        };
        Some(connector + tool)
    }

    pub(crate) fn side(&self, direction: Direction) -> Option<Side> {
        match direction {
            Direction::Input => self.input,
            Direction::Output => self.output,
        }
    }
}
