//! The Connectors page: a member who connects their own account (an API key pasted into vault's
//! page, reached from Connected accounts) is listed, never their key.

use reqwest::StatusCode;

use super::{
    ADMIN_PAGES, ALICE_PASSWORD, BOB_PASSWORD, Browser, MEMBER_KEY, gateway_file, hidden_fields,
    location, up,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_connects_an_account_and_the_connectors_page_lists_them_never_the_key() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(&config, gateway_file()).expect("config");
    let (mut child, origin) = up(&config, &dir.path().join("data")).await;

    let mut bob = Browser::sign_in(&origin, "bob", BOB_PASSWORD).await;
    let csrf = bob.csrf(&origin).await;
    let connect = bob
        .post(
            &format!("{origin}/console/accounts/keyed/connect"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(connect.status(), StatusCode::SEE_OTHER);
    let link = location(&connect);
    let link = if link.starts_with('/') {
        format!("{origin}{link}")
    } else {
        link
    };
    let form = bob.get(&link).await;
    assert_eq!(form.status(), StatusCode::OK, "vault's key page at {link}");
    let mut fields = hidden_fields(&form.text().await.expect("key page"));
    fields.push(("key".to_owned(), MEMBER_KEY.to_owned()));
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let action = link
        .split('?')
        .next()
        .expect("the form posts to its own path");
    let saved = bob.post(action, &pairs).await;
    assert_eq!(saved.status(), StatusCode::OK, "the key is kept");
    let accounts = bob
        .get(&format!("{origin}/console/accounts"))
        .await
        .text()
        .await
        .expect("accounts");
    assert!(accounts.contains("badge ok\">connected"), "{accounts}");

    let mut alice = Browser::sign_in(&origin, "alice", ALICE_PASSWORD).await;
    let connectors = alice
        .get(&format!("{origin}/console/connectors"))
        .await
        .text()
        .await
        .expect("connectors");
    let row = |name: &str| {
        connectors
            .split(&format!("<th scope=\"row\">{name}"))
            .nth(1)
            .and_then(|rest| rest.split("</tr>").next())
            .unwrap_or_else(|| panic!("a row for {name}: {connectors}"))
            .to_owned()
    };
    let keyed = row("keyed");
    assert!(keyed.contains("bob"), "bob is listed as connected: {keyed}");
    assert!(keyed.contains("no shared credential"), "{keyed}");
    let local = row("local");
    assert!(
        local.contains("badge ok\">healthy"),
        "the stdio connector runs: {local}"
    );
    for page in ADMIN_PAGES {
        let html = alice
            .get(&format!("{origin}{page}"))
            .await
            .text()
            .await
            .expect("page");
        assert!(!html.contains(MEMBER_KEY), "{page} shows a member's key");
    }
    child.kill().await.expect("stop gatehouse");
}
