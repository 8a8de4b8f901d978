//! What validating an access token costs edge, in one run: a token seen before (the verified-token
//! cache), a token seen for the first time (ES256 signature check plus claim checks), and the raw
//! ES256 sign and verify rates of the JWT library as the limit both are measured against.
//!
//! `cargo bench -p edge-svc --bench tokens`. Keys are generated per run and the key set is served
//! over loopback HTTP, as authz-svc serves it, so the verifier runs exactly as in production.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use edge_svc::auth::{JwksVerifier, TokenVerifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::EncodePrivateKey as _;
use serde_json::json;

const ISSUER: &str = "http://127.0.0.1/issuer";
const RESOURCE: &str = "http://127.0.0.1/v/crm/mcp";
const KID: &str = "bench-key";

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwks: serde_json::Value,
}

fn keys() -> Keys {
    let secret = loop {
        let mut seed = [0_u8; 32];
        getrandom::fill(&mut seed).unwrap();
        // Rare seeds at or above the curve order are not keys: draw again.
        if let Ok(secret) = p256::SecretKey::from_slice(&seed) {
            break secret;
        }
    };
    let der = secret.to_pkcs8_der().unwrap();
    let point = secret.public_key().to_encoded_point(false);
    let x = URL_SAFE_NO_PAD.encode(point.x().unwrap());
    let y = URL_SAFE_NO_PAD.encode(point.y().unwrap());
    Keys {
        encoding: EncodingKey::from_ec_der(der.as_bytes()),
        decoding: DecodingKey::from_ec_components(&x, &y).unwrap(),
        jwks: json!({"keys": [{"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": KID,
                               "alg": "ES256", "use": "sig"}]}),
    }
}

fn token(keys: &Keys, jti: u64) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some(KID.to_owned());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": ISSUER, "sub": "member-0193", "aud": RESOURCE,
                        "client_id": "claude-desktop", "scope": "crm:read crm:write",
                        "jti": format!("jti-{jti}"), "iat": now, "exp": now + 900,
                        "groups": ["sales"], "roles": ["staff"]});
    jsonwebtoken::encode(&header, &claims, &keys.encoding).unwrap()
}

/// Serves the key set on loopback and returns its URL.
async fn serve_jwks(jwks: serde_json::Value) -> url::Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/jwks").parse().unwrap()
}

fn tokens(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let keys = keys();
    let jwks_url = runtime.block_on(serve_jwks(keys.jwks.clone()));
    let verifier = Arc::new(JwksVerifier::new(ISSUER.to_owned(), jwks_url));
    let seen = token(&keys, 0);
    runtime
        .block_on(verifier.verify(RESOURCE, &seen))
        .expect("a valid token verifies");

    let mut group = c.benchmark_group("edge token validation");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("cached (token seen before)", |b| {
        b.to_async(&runtime)
            .iter(|| async { verifier.verify(RESOURCE, &seen).await.unwrap() });
    });
    let mut next = 1_u64;
    group.bench_function("uncached (first sight: ES256 verify + claims)", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                next += 1;
                token(&keys, next)
            },
            |fresh| {
                let verifier = Arc::clone(&verifier);
                async move { verifier.verify(RESOURCE, &fresh).await.unwrap() }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();

    let mut raw = c.benchmark_group("raw ES256 (the limit)");
    raw.throughput(Throughput::Elements(1));
    raw.measurement_time(Duration::from_secs(5));
    raw.bench_function("sign", |b| b.iter(|| token(&keys, 7)));
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[RESOURCE]);
    raw.bench_function("verify", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<serde_json::Value>(&seen, &keys.decoding, &validation).unwrap()
        });
    });
    raw.finish();
}

criterion_group!(benches, tokens);
criterion_main!(benches);
