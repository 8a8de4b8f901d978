//! Wire conversions of the token and revocation RPCs: domain verdicts, tokens and log
//! entries to `gatehouse.authz.v1` messages, and cursors from them.

use std::time::{Duration, UNIX_EPOCH};

use proto::authz::v1 as pb;
use proto::common::v1::Secret;

use crate::error::Error;
use crate::revocation::FeedPage;
use crate::store::{RevocationKind, RevocationRecord};
use crate::token::{ACCESS_TOKEN_TYPE_URI, AccessClaims, Inactive};
use crate::validation::Validated;

/// Returns the answer to `ValidateToken`: the claims of an active token, or only why
/// it is not active (nothing of an inactive token is echoed).
pub(super) fn validation(verdict: Result<Validated, Inactive>) -> pb::ValidateTokenResponse {
    let validated = match verdict {
        Ok(validated) => validated,
        Err(inactive) => {
            return pb::ValidateTokenResponse {
                active: false,
                inactive_reason: reason(inactive).into(),
                ..pb::ValidateTokenResponse::default()
            };
        }
    };
    let claims = validated.claims;
    pb::ValidateTokenResponse {
        active: true,
        inactive_reason: pb::InactiveReason::Unspecified.into(),
        principal: Some(validated.principal),
        audiences: vec![claims.aud],
        scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
        issued_at: Some(timestamp(claims.iat)),
        expires_at: Some(timestamp(claims.exp)),
        jti: claims.jti,
        issuer: claims.iss,
        grant_id: claims.sid.unwrap_or_default(),
    }
}

fn reason(inactive: Inactive) -> pb::InactiveReason {
    match inactive {
        Inactive::Malformed => pb::InactiveReason::Malformed,
        Inactive::BadSignature => pb::InactiveReason::BadSignature,
        Inactive::UnknownIssuer => pb::InactiveReason::UnknownIssuer,
        Inactive::Expired => pb::InactiveReason::Expired,
        Inactive::WrongAudience => pb::InactiveReason::WrongAudience,
        Inactive::Revoked => pb::InactiveReason::Revoked,
    }
}

/// Returns the answer to `ExchangeToken`.
pub(super) fn exchanged(token: String, claims: &AccessClaims) -> pb::ExchangeTokenResponse {
    pb::ExchangeTokenResponse {
        access_token: Some(Secret { value: token }),
        issued_token_type: ACCESS_TOKEN_TYPE_URI.to_owned(),
        scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
        expires_at: Some(timestamp(claims.exp)),
        jti: claims.jti.clone(),
    }
}

/// Returns one message of the revocation feed.
pub(super) fn revocations(page: &FeedPage) -> pb::WatchRevocationsResponse {
    pb::WatchRevocationsResponse {
        revocations: page.entries.iter().map(revocation).collect(),
        cursor: page.cursor.to_string(),
        replaces_all: page.replaces_all,
    }
}

fn revocation(entry: &RevocationRecord) -> pb::Revocation {
    use pb::revocation::Subject;
    let (subject, reason) = match entry.kind {
        RevocationKind::Token => (
            Subject::Jti(entry.subject.clone()),
            pb::RevocationReason::Requested,
        ),
        RevocationKind::Grant => (
            Subject::GrantId(entry.subject.clone()),
            pb::RevocationReason::Requested,
        ),
        RevocationKind::Agent => (
            Subject::AgentClientId(entry.subject.clone()),
            pb::RevocationReason::AgentDecommissioned,
        ),
        RevocationKind::Member => (
            Subject::MemberId(entry.subject.clone()),
            pb::RevocationReason::MemberDeactivated,
        ),
    };
    pb::Revocation {
        subject: Some(subject),
        revoked_at: Some(timestamp(entry.revoked_at)),
        expires_at: Some(timestamp(entry.expires_at)),
        reason: reason.into(),
    }
}

/// Returns the position a `WatchRevocations` cursor names; empty is none.
pub(super) fn cursor(text: &str) -> Result<Option<i64>, Error> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<i64>()
        .ok()
        .filter(|seq| *seq >= 0)
        .map(Some)
        .ok_or_else(|| Error::InvalidRequest("cursor is malformed".to_owned()))
}

/// Returns unix seconds as a protobuf timestamp (the epoch for anything before it).
pub(super) fn timestamp(unix_seconds: i64) -> prost_types::Timestamp {
    let seconds = u64::try_from(unix_seconds).unwrap_or(0);
    prost_types::Timestamp::from(UNIX_EPOCH + Duration::from_secs(seconds))
}
