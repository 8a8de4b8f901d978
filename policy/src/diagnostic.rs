//! Cedar's diagnostics for invalid policies, in a form an admin API can return.

use std::fmt;

/// Describes one problem with an administrator's policies or constraints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Names the policy (or constraint) concerned, when known.
    pub policy_id: Option<String>,
    /// Says what is wrong, in Cedar's words.
    pub message: String,
    /// Suggests a fix, when Cedar has one.
    pub help: Option<String>,
}

/// Lists every problem found, so that an administrator fixes them in one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostic {
    /// Returns the diagnostic of a Cedar error (its message and help).
    pub(crate) fn of(
        policy_id: Option<String>,
        error: &(impl miette::Diagnostic + fmt::Display + ?Sized),
    ) -> Self {
        Self {
            policy_id,
            message: error.to_string(),
            help: error.help().map(|help| help.to_string()),
        }
    }

    /// Returns a diagnostic with a message of ours.
    pub(crate) fn new(policy_id: Option<String>, message: impl Into<String>) -> Self {
        Self {
            policy_id,
            message: message.into(),
            help: None,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(id) = &self.policy_id {
            write!(formatter, "{id}: ")?;
        }
        formatter.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(formatter, " (help: {help})")?;
        }
        Ok(())
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, diagnostic) in self.0.iter().enumerate() {
            if index > 0 {
                formatter.write_str("; ")?;
            }
            write!(formatter, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl Diagnostics {
    /// Says whether no problem was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
