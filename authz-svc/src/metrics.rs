//! authz-svc's metrics: tokens issued by grant type, and token requests refused by OAuth error.

use std::sync::LazyLock;

use svc_kit::telemetry::metrics::{Counter, KeyValue};

use crate::client::{
    AUTHORIZATION_CODE, CLIENT_CREDENTIALS, JWT_BEARER, REFRESH_TOKEN, TOKEN_EXCHANGE,
};

/// The token instruments, made on first use (after telemetry is installed).
struct Instruments {
    issued: Counter<u64>,
    refused: Counter<u64>,
}

static INSTRUMENTS: LazyLock<Instruments> = LazyLock::new(|| {
    let meter = svc_kit::telemetry::metrics::meter("authz-svc");
    Instruments {
        issued: meter
            .u64_counter("gatehouse.authz.tokens.issued")
            .with_description("Access tokens issued, by grant type")
            .build(),
        refused: meter
            .u64_counter("gatehouse.authz.token.refusals")
            .with_description("Token requests refused, by grant type and OAuth error code")
            .build(),
    }
});

/// Returns the metric label of a requested grant type: a known grant, or `other` (bounded).
pub(crate) fn grant_label(grant_type: &str) -> &'static str {
    match grant_type {
        AUTHORIZATION_CODE => "authorization_code",
        REFRESH_TOKEN => "refresh_token",
        CLIENT_CREDENTIALS => "client_credentials",
        TOKEN_EXCHANGE => "token_exchange",
        JWT_BEARER => "jwt_bearer",
        _ => "other",
    }
}

/// Counts one answered token request: issued, or refused with OAuth error `error`.
pub(crate) fn token_answered(grant: &'static str, error: Option<&'static str>) {
    let instruments = &*INSTRUMENTS;
    match error {
        None => instruments
            .issued
            .add(1, &[KeyValue::new("grant_type", grant)]),
        Some(error) => instruments.refused.add(
            1,
            &[
                KeyValue::new("grant_type", grant),
                KeyValue::new("error", error),
            ],
        ),
    }
}
