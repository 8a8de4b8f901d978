//! Per-member API keys through the first-use link: the link opens vault-svc's
//! own page, whose form is CSRF-protected and whose link is bound to the member,
//! single-use and short-lived; the pasted key becomes that member's credential
//! only, and never appears in a page or an event.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use vault_svc::credential::Material;
use vault_svc::crypto::{Envelope, LocalKeyring};
use vault_svc::event::ChannelSink;
use vault_svc::{
    ApiKeyConfig, ConnectorConfig, ConsentIssuer, CredentialMode, CredentialOutcome,
    CredentialQuery, Vault,
};

use crate::backend::Backend;

const KEY: &str = "ak-alice-canary-6d0e";

fn query(member: &str) -> CredentialQuery {
    CredentialQuery {
        member_id: Some(member.to_owned()),
        connector: "keyed".to_owned(),
        ..CredentialQuery::default()
    }
}

/// Returns `fields` as an `application/x-www-form-urlencoded` body.
fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// Returns the value of `name` in the form's hidden input.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("{name} in {page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_pastes_their_key_once_through_a_csrf_protected_page() {
    let backend = Backend::sqlite().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_url = format!("http://{}/vault", listener.local_addr().unwrap());
    let mut connectors = BTreeMap::new();
    connectors.insert(
        "keyed".to_owned(),
        ConnectorConfig {
            api_key: Some(ApiKeyConfig {
                header: "X-Api-Key".to_owned(),
            }),
            ..ConnectorConfig::new(CredentialMode::PerMember)
        },
    );
    let keyring =
        Arc::new(LocalKeyring::load_or_generate(&backend.dir().join("vault.kek")).unwrap());
    let (sink, mut events) = ChannelSink::new(10_000);
    let consent =
        ConsentIssuer::new(&public_url, Duration::from_secs(60), Duration::from_secs(5)).unwrap();
    let vault = Vault::new(
        "acme".to_owned(),
        backend.store(),
        Envelope::new(keyring),
        connectors,
        Arc::new(sink),
        consent,
    );
    let router = axum::Router::new().nest("/vault", vault_svc::http::router(vault.clone()));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let browser = reqwest::Client::new();
    let mut seen = Vec::new();

    let CredentialOutcome::ConsentRequired(link) =
        vault.get_credential(&query("alice")).await.unwrap()
    else {
        panic!("alice has no key yet");
    };
    assert!(
        link.url
            .starts_with(&format!("{public_url}/api-key?state=")),
        "{}",
        link.url
    );
    let page = browser.get(&link.url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let cookie = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let (state, csrf) = (hidden(&html, "state"), hidden(&html, "csrf"));
    assert!(cookie.ends_with(&format!("={csrf}")));
    let submit = format!("{public_url}/api-key");

    // A post without the page's cookie, or with another token, is refused and
    // leaves the link usable.
    let forged = browser
        .post(&submit)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("state", state.as_str()),
            ("csrf", csrf.as_str()),
            ("key", KEY),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let mismatched = browser
        .post(&submit)
        .header("cookie", "gatehouse_vault_csrf=other")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("state", state.as_str()),
            ("csrf", csrf.as_str()),
            ("key", KEY),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(mismatched.status(), 403);
    // A blank key is refused before the link is used.
    let blank = browser
        .post(&submit)
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("state", state.as_str()),
            ("csrf", csrf.as_str()),
            ("key", ""),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(blank.status(), 400);

    let saved = browser
        .post(&submit)
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("state", state.as_str()),
            ("csrf", csrf.as_str()),
            ("key", KEY),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);
    seen.push(saved.text().await.unwrap());

    let CredentialOutcome::Released(released) =
        vault.get_credential(&query("alice")).await.unwrap()
    else {
        panic!("alice's key is stored");
    };
    let Material::ApiKey { header_name, key } = released.material else {
        panic!("an api key");
    };
    assert_eq!((header_name.as_str(), key.expose()), ("X-Api-Key", KEY));
    // Bob gets his own link, never Alice's key.
    assert!(matches!(
        vault.get_credential(&query("bob")).await.unwrap(),
        CredentialOutcome::ConsentRequired(_)
    ));

    // The link is single-use: neither the page nor the form works again.
    let replay = browser
        .post(&submit)
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("state", state.as_str()),
            ("csrf", csrf.as_str()),
            ("key", "ak-mallory"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 400);
    assert_eq!(browser.get(&link.url).send().await.unwrap().status(), 400);
    let CredentialOutcome::Released(still) = vault.get_credential(&query("alice")).await.unwrap()
    else {
        panic!("alice's key is kept");
    };
    assert_eq!(still.version, released.version);

    // A member (or an administrator) removes the key; the next call asks again.
    vault
        .delete_member_credential("keyed", "alice")
        .await
        .unwrap();
    assert!(matches!(
        vault.get_credential(&query("alice")).await.unwrap(),
        CredentialOutcome::ConsentRequired(_)
    ));

    drop(vault);
    while let Ok(event) = events.try_recv() {
        seen.push(format!("{event:?}"));
    }
    assert!(
        seen.iter().all(|text| !text.contains(KEY)),
        "the key leaked"
    );
    backend.finish().await;
}
