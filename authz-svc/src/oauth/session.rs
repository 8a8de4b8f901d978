//! The member's sign-in session at the authorization server: a MAC-protected cookie set
//! when a member signs in and approves, so that a later `/authorize` of a client the member
//! already approved (for at least the scopes it asks now) is answered without asking again.
//! The cookie holds the member id and an expiry, never a secret; it is `HttpOnly` and
//! `SameSite=Lax` (sent on the top-level navigation a client starts `/authorize` with).

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::consent::cookie;
use crate::state::AuthzState;
use crate::token::now;

/// Is the session cookie's name on an https issuer (`__Host-`: Secure, host-only, Path=/).
const SECURE_COOKIE: &str = "__Host-gatehouse-session";
/// Is its name under the loopback-http dev opt-out, where browsers refuse `__Host-` cookies.
const INSECURE_COOKIE: &str = "gatehouse-session";
/// Bounds a session: after a working day the member signs in again.
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// Returns the `Set-Cookie` value of a new session for `subject`.
pub(super) fn start(state: &AuthzState, subject: &str) -> Option<HeaderValue> {
    let ttl = SESSION_TTL.as_secs();
    let expires = now().saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
    let member = URL_SAFE_NO_PAD.encode(subject.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(mac(state, &member, expires).finalize().into_bytes());
    let secure = state.issuer.secure;
    let cookie = format!(
        "{name}={member}.{expires}.{tag}; Path=/; HttpOnly; SameSite=Lax; Max-Age={ttl}{flag}",
        name = cookie_name(secure),
        flag = if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&cookie).ok()
}

/// Returns the member of the request's live, untampered session cookie.
pub(super) fn member(state: &AuthzState, headers: &HeaderMap) -> Option<String> {
    let value = cookie(headers, cookie_name(state.issuer.secure))?;
    let mut parts = value.splitn(3, '.');
    let (member, expires, tag) = (parts.next()?, parts.next()?, parts.next()?);
    let expires: i64 = expires.parse().ok()?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    mac(state, member, expires).verify_slice(&tag).ok()?;
    if expires <= now() {
        return None;
    }
    String::from_utf8(URL_SAFE_NO_PAD.decode(member).ok()?).ok()
}

fn cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_COOKIE
    } else {
        INSECURE_COOKIE
    }
}

fn mac(state: &AuthzState, member: &str, expires: i64) -> Hmac<Sha256> {
    let mut mac = crate::keys::mac(state.session_key.as_slice());
    mac.update(member.as_bytes());
    mac.update(&[0]);
    mac.update(&expires.to_be_bytes());
    mac
}
