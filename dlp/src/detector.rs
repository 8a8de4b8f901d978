//! The built-in detectors: what each sensitive value looks like and how a candidate is confirmed.
//!
//! Patterns find candidates; validators (Luhn, mod-97, SSN allocation rules) throw out numbers
//! that merely look right, so order numbers and timestamps are not masked as cards.

/// A built-in detector, named as it appears in config and in `[REDACTED:<name>]` placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// US Social Security numbers written `AAA-GG-SSSS` or `AAA GG SSSS`.
    Ssn,
    /// Payment card numbers of 13–19 digits, optionally grouped by spaces or dashes.
    Card,
    /// International bank account numbers.
    Iban,
    /// Email addresses.
    Email,
    /// PEM-armoured private keys.
    PrivateKey,
    /// AWS access key ids.
    AwsAccessKey,
    /// GitHub personal access, OAuth and app tokens.
    GithubToken,
    /// GitLab personal access tokens.
    GitlabToken,
    /// Slack bot, user and app tokens.
    SlackToken,
    /// Stripe secret and restricted keys.
    StripeKey,
    /// Google API keys.
    GoogleApiKey,
    /// JSON Web Tokens (compact serialization).
    Jwt,
}

impl Builtin {
    /// Every built-in detector, in the order they are compiled.
    pub const ALL: [Self; 12] = [
        Self::Ssn,
        Self::Card,
        Self::Iban,
        Self::Email,
        Self::PrivateKey,
        Self::AwsAccessKey,
        Self::GithubToken,
        Self::GitlabToken,
        Self::SlackToken,
        Self::StripeKey,
        Self::GoogleApiKey,
        Self::Jwt,
    ];

    /// Returns the detector's config name, also used in placeholders and audit findings.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ssn => "ssn",
            Self::Card => "card",
            Self::Iban => "iban",
            Self::Email => "email",
            Self::PrivateKey => "private_key",
            Self::AwsAccessKey => "aws_access_key",
            Self::GithubToken => "github_token",
            Self::GitlabToken => "gitlab_token",
            Self::SlackToken => "slack_token",
            Self::StripeKey => "stripe_key",
            Self::GoogleApiKey => "google_api_key",
            Self::Jwt => "jwt",
        }
    }

    /// Returns the candidate pattern; `(?-u:\b)` keeps word boundaries on the fast DFA path.
    pub(crate) fn pattern(self) -> &'static str {
        match self {
            Self::Ssn => r"(?-u:\b)[0-9]{3}[- ][0-9]{2}[- ][0-9]{4}(?-u:\b)",
            Self::Card => r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\b)",
            Self::Iban => {
                r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?-u:\b)"
            }
            Self::Email => {
                r"(?-u:\b)[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?-u:\b)"
            }
            Self::PrivateKey => {
                r"-----BEGIN[A-Z0-9 ]* PRIVATE KEY-----(?s:.)*?(?:-----END[A-Z0-9 ]* PRIVATE KEY-----|\z)"
            }
            Self::AwsAccessKey => r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?-u:\b)",
            Self::GithubToken => {
                r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?-u:\b)"
            }
            Self::GitlabToken => r"(?-u:\b)glpat-[A-Za-z0-9_-]{20,}",
            Self::SlackToken => r"(?-u:\b)xox[abposr]-[A-Za-z0-9-]{10,}",
            Self::StripeKey => r"(?-u:\b)(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}(?-u:\b)",
            Self::GoogleApiKey => r"(?-u:\b)AIza[0-9A-Za-z_-]{35}",
            Self::Jwt => r"(?-u:\b)eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
        }
    }

    /// Confirms a candidate the pattern found.
    pub(crate) fn confirms(self, candidate: &str) -> bool {
        match self {
            Self::Ssn => valid_ssn(candidate),
            Self::Card => valid_card(candidate),
            Self::Iban => valid_iban(candidate),
            _ => true,
        }
    }
}

impl std::str::FromStr for Builtin {
    type Err = ();

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|builtin| builtin.name() == name)
            .ok_or(())
    }
}

fn digits(candidate: &str) -> impl Iterator<Item = u32> + '_ {
    candidate.chars().filter_map(|c| c.to_digit(10))
}

/// Applies the SSA's rules: no area 000, 666 or 9xx, no group 00, no serial 0000.
fn valid_ssn(candidate: &str) -> bool {
    let all: Vec<u32> = digits(candidate).collect();
    let number = |range: std::ops::Range<usize>| {
        all.get(range)
            .map_or(0, |part| part.iter().fold(0, |n, d| n * 10 + d))
    };
    let (area, group, serial) = (number(0..3), number(3..5), number(5..9));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Requires one consistent separator (or none), 13–19 digits and a valid Luhn checksum.
fn valid_card(candidate: &str) -> bool {
    let separators: Vec<char> = candidate.chars().filter(|c| !c.is_ascii_digit()).collect();
    if separators.windows(2).any(|pair| pair[0] != pair[1]) {
        return false;
    }
    let all: Vec<u32> = digits(candidate).collect();
    if !(13..=19).contains(&all.len()) || all.iter().all(|d| *d == all[0]) {
        return false;
    }
    let sum: u32 = all
        .iter()
        .rev()
        .enumerate()
        .map(|(position, &digit)| match position % 2 {
            0 => digit,
            _ if digit * 2 > 9 => digit * 2 - 9,
            _ => digit * 2,
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Checks the ISO 13616 length bounds and the mod-97 checksum.
fn valid_iban(candidate: &str) -> bool {
    let compact: Vec<char> = candidate.chars().filter(|c| *c != ' ').collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let rearranged = compact[4..].iter().chain(&compact[..4]);
    let mut remainder: u32 = 0;
    for c in rearranged {
        let Some(value) = c.to_digit(36) else {
            return false;
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_cards_and_refuses_near_misses() {
        for (candidate, valid) in [
            ("4111 1111 1111 1111", true),
            ("4111-1111-1111-1111", true),
            ("5500005555555559", true),
            ("378282246310005", true),
            ("4111 1111 1111 1112", false),
            ("4111 1111-1111 1111", false),
            ("0000000000000000", false),
            ("411111111111", false),
        ] {
            assert_eq!(valid_card(candidate), valid, "{candidate}");
        }
    }

    #[test]
    fn ssn_rules_refuse_unallocated_numbers() {
        for (candidate, valid) in [
            ("123-45-6789", true),
            ("000-45-6789", false),
            ("666-45-6789", false),
            ("912-45-6789", false),
            ("123-00-6789", false),
            ("123-45-0000", false),
        ] {
            assert_eq!(valid_ssn(candidate), valid, "{candidate}");
        }
    }

    #[test]
    fn iban_checksum_is_mod_97() {
        for (candidate, valid) in [
            ("GB82 WEST 1234 5698 7654 32", true),
            ("DE89370400440532013000", true),
            ("GB82 WEST 1234 5698 7654 33", false),
            ("DE00370400440532013000", false),
        ] {
            assert_eq!(valid_iban(candidate), valid, "{candidate}");
        }
    }
}
