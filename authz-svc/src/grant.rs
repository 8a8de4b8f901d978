//! Grants: authorization codes, PKCE and refresh tokens, and the opaque-token
//! hashing they share.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Caps how long an authorization code may wait for redemption (seconds).
pub(crate) const CODE_TTL_SECS: i64 = 60;

/// Returns SHA-256 of an opaque token: codes and refresh tokens are stored only
/// as hashes (they are 256-bit random, so a fast hash suffices).
pub(crate) fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Reports whether `value` is a well-formed PKCE verifier or S256 challenge
/// (RFC 7636 §4.1: 43 to 128 unreserved characters).
pub(crate) fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~'))
}

/// Reports whether `verifier` hashes (S256) to `challenge`, in constant time.
pub(crate) fn verify_pkce(verifier: &str, challenge: &str) -> bool {
    if !is_pkce_value(verifier) {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

/// Reports whether every scope in `requested` is in `allowed`.
pub(crate) fn scopes_within(requested: &str, allowed: &str) -> bool {
    let allowed: Vec<&str> = allowed.split_whitespace().collect();
    requested
        .split_whitespace()
        .all(|scope| allowed.contains(&scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_verifier_matches_its_challenge() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(verify_pkce(verifier, challenge));
        assert!(!verify_pkce(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX",
            challenge
        ));
        assert!(!verify_pkce("short", challenge));
    }

    #[test]
    fn scopes_within_requires_every_scope() {
        assert!(scopes_within("a b", "a b c"));
        assert!(scopes_within("", "a"));
        assert!(!scopes_within("a d", "a b c"));
    }
}
