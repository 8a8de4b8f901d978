//! Client-credentials tokens per second through the real `/token` handler
//! (client or agent bundle lookup in SQLite, HMAC secret check, ES256 signing), and
//! the raw ES256 sign and verify rates that bound it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use authz_svc::{
    AuthorizationConfig, AuthzState, ClientRegistration, Issuer, ProtectedResource, StoreConfig,
};
use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::EncodePrivateKey as _;
use secrecy::ExposeSecret as _;
use tower::ServiceExt as _;

const RESOURCE: &str = "https://gw.example/v/demo/mcp";
const CONCURRENCY: u64 = 64;

fn es256(c: &mut Criterion) {
    let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
    let der = secret.to_pkcs8_der().unwrap();
    let encoding = EncodingKey::from_ec_der(der.as_bytes());
    let point = secret.public_key().to_encoded_point(false);
    let decoding = DecodingKey::from_ec_der(point.as_bytes());
    let claims = serde_json::json!({
        "iss": "https://gw.example", "sub": "agent", "aud": RESOURCE, "client_id": "agent",
        "scope": "tools", "jti": "abcdefghijklmnopqrstuv", "iat": 1_900_000_000, "exp": 1_900_000_600,
    });
    let header = Header {
        typ: Some("at+jwt".to_owned()),
        kid: Some("k1".to_owned()),
        ..Header::new(Algorithm::ES256)
    };
    let token = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[RESOURCE]);
    let mut group = c.benchmark_group("es256");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign", |b| {
        b.iter(|| jsonwebtoken::encode(&header, &claims, &encoding).unwrap())
    });
    group.bench_function("verify", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap()
        })
    });
    // The same signature with the key parsed once, as the token endpoint signs:
    // jsonwebtoken re-parses the PKCS#8 key on every signature.
    let cached = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        der.as_bytes(),
    )
    .unwrap();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signing_input = token.rsplit_once('.').unwrap().0.to_owned();
    group.bench_function("sign_cached_key", |b| {
        b.iter(|| cached.sign(&rng, signing_input.as_bytes()).unwrap())
    });
    // The pure-Rust `p256` signer the token endpoint used before (key parsed once too).
    let pure = p256::ecdsa::SigningKey::from(&secret);
    group.bench_function("sign_cached_key_p256", |b| {
        b.iter(|| {
            let signature: p256::ecdsa::Signature =
                p256::ecdsa::signature::Signer::sign(&pure, signing_input.as_bytes());
            signature
        })
    });
    group.finish();
}

/// Returns the token endpoint, a registered client's and an agent bundle's Basic credentials.
async fn server(dir: &std::path::Path) -> (axum::Router, String, String) {
    let config = AuthorizationConfig {
        allow_registered_agents: true,
        master_key_file: Some(dir.join("authz.key")),
        ..AuthorizationConfig::default()
    };
    let issuer = Issuer {
        issuer: url::Url::parse("https://gw.example").unwrap(),
        resources: vec![ProtectedResource {
            name: "demo".to_owned(),
            url: RESOURCE.to_owned(),
            scopes: vec!["tools".to_owned()],
        }],
    };
    let state = AuthzState::open(
        config,
        issuer,
        StoreConfig::Sqlite {
            path: dir.join("authz.db"),
        },
    )
    .await
    .unwrap();
    let registration = ClientRegistration {
        grant_types: Some(vec!["client_credentials".to_owned()]),
        ..ClientRegistration::default()
    };
    let agent = state.register_client(registration).await.unwrap().unwrap();
    let credentials = format!(
        "{}:{}",
        agent.client.client_id,
        agent.client_secret.unwrap().expose_secret()
    );
    let bundle = state
        .agents()
        .create(authz_svc::NewAgent {
            name: "bench".to_owned(),
            description: String::new(),
            owner: "bench".to_owned(),
            virtual_servers: vec!["demo".to_owned()],
            scopes: vec!["tools".to_owned()],
            authentication: authz_svc::AgentAuthentication::ClientSecret,
            quotas: serde_json::Value::Null,
            client_id: None,
        })
        .await
        .unwrap();
    let bundle_credentials = format!(
        "{}:{}",
        bundle.agent.client_id,
        bundle.client_secret.unwrap().expose_secret()
    );
    (
        authz_svc::oauth_router(state),
        format!("Basic {}", STANDARD.encode(credentials)),
        format!("Basic {}", STANDARD.encode(bundle_credentials)),
    )
}

async fn issue(router: &axum::Router, authorization: &str) {
    let request = Request::post("/token")
        .header("authorization", authorization)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "grant_type=client_credentials&resource={}",
            "https%3A%2F%2Fgw.example%2Fv%2Fdemo%2Fmcp"
        )))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
}

fn client_credentials(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (router, authorization, bundle) = runtime.block_on(server(dir.path()));
    let mut group = c.benchmark_group("client_credentials");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sequential", |b| {
        b.to_async(&runtime).iter(|| issue(&router, &authorization))
    });
    group.bench_function("agent_bundle_sequential", |b| {
        b.to_async(&runtime).iter(|| issue(&router, &bundle))
    });
    group.throughput(Throughput::Elements(CONCURRENCY));
    group.bench_function("concurrent64", |b| {
        b.to_async(&runtime).iter_custom(|iterations| {
            let router = router.clone();
            let authorization = authorization.clone();
            async move {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iterations {
                    let started = Instant::now();
                    let tasks: Vec<_> = (0..CONCURRENCY)
                        .map(|_| {
                            let router = router.clone();
                            let authorization = authorization.clone();
                            tokio::spawn(async move { issue(&router, &authorization).await })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                    elapsed += started.elapsed();
                }
                elapsed
            }
        })
    });
    group.finish();
}

criterion_group!(benches, es256, client_credentials);
criterion_main!(benches);
