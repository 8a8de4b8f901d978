//! The web console of a real `gatehouse up`, driven over HTTP as a browser would: signing in
//! through the authorization server's own login page (authorization code + PKCE), members who
//! are not administrators reach only their connected accounts, a form without the session's
//! CSRF token changes nothing, and no page ever shows a secret. The headless Chromium run
//! (`tests/console/`) drives the same pages in a real browser.

use std::collections::HashMap;
use std::path::Path;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use super::audit::{ECHO, echo_dir};

mod activity;
mod agents;
mod connectors;

const AGENT_SECRET: &str = "console-agent-secret-canary-4b1d9e7f2a6c";
const ADMIN_BOT_SECRET: &str = "console-admin-bot-secret-canary-8e2f6a1c";
const SHARED_VALUE: &str = "console-shared-credential-canary-3c9a7e";
const MEMBER_KEY: &str = "console-member-api-key-canary-7d1e5b";
/// The password of `alice` (an administrator) and `bob` (a member): argon2id below.
const ALICE_PASSWORD: &str = "interop-alice-pw";
pub(super) const BOB_PASSWORD: &str = "interop-bob-pw";
/// The argon2id hash of [`BOB_PASSWORD`].
pub(super) const BOB_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$Yy1JEh/xJuHGD6/umr6R7Q$aLA5L5tl+8hiiG4ISOp4Z7Titj4H/nFpE5lPaR6h/kE";

/// Every page an administrator sees.
const ADMIN_PAGES: [&str; 5] = [
    "/console/activity",
    "/console/agents",
    "/console/connectors",
    "/console/servers",
    "/console/accounts",
];

fn gateway_file() -> String {
    let dir = echo_dir();
    format!(
        "connectors:\n\
         \x20 - name: local\n    stdio: {{command: \"{ECHO}\", args: [stdio], paths: [\"{dir}\"]}}\n\
         \x20 - name: vaulted\n    http: {{url: \"http://127.0.0.1:9/mcp\"}}\n    credentials: {{mode: shared}}\n\
         \x20 - name: keyed\n    http: {{url: \"http://127.0.0.1:9/mcp\"}}\n    credentials: {{mode: per_member, api_key: {{header: X-Api-Key}}, inject: {{headers: {{Authorization: \"Key {{key}}\"}}}}}}\n\
         virtual_servers:\n\
         \x20 - name: tools\n    connectors: [{{connector: local, prefix: \"\"}}]\n\
         authorization:\n\
         \x20 members:\n\
         \x20   - {{username: alice, groups: [gatehouse-admins], password_hash: \"$argon2id$v=19$m=19456,t=2,p=1$/SyjtdQIUVuDrMB/aIf0hA$2OhqoGiUPFaUH+SvenyEJ7YxFR7c++IgcNpd9qqhxwI\"}}\n\
         \x20   - {{username: bob, groups: [staff], password_hash: \"{BOB_HASH}\"}}\n\
         \x20 agents:\n\
         \x20   - {{name: reporter, owner: bob, virtual_servers: [tools], secret_env: E2E_AGENT_SECRET}}\n\
         \x20   - {{name: admin-bot, owner: alice, virtual_servers: [gatehouse-admin], scopes: [\"gatehouse:admin\"], secret_env: E2E_ADMIN_BOT_SECRET}}\n"
    )
}

/// Starts `gatehouse up` and returns it with its public origin; its log (stderr) goes to
/// `gatehouse.log` beside `data`, for the secret checks.
async fn up(config: &Path, data: &Path) -> (tokio::process::Child, String) {
    let started = super::launch::Launch::new(config, data)
        .env("E2E_AGENT_SECRET", AGENT_SECRET)
        .env("E2E_ADMIN_BOT_SECRET", ADMIN_BOT_SECRET)
        .log_to(data.with_file_name("gatehouse.log"), "info")
        .start()
        .await;
    (started.child, started.origin)
}

/// A browser's cookie jar for one origin, kept by hand so every `Set-Cookie` can be checked.
#[derive(Default)]
struct Browser {
    cookies: HashMap<String, String>,
    /// Every `Set-Cookie` the console sent, for the attribute checks.
    console_cookies: Vec<String>,
}

impl Browser {
    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(SET_COOKIE) {
            let text = value.to_str().expect("cookie text").to_owned();
            let pair = text.split(';').next().expect("pair");
            let (name, value) = pair.split_once('=').expect("name=value");
            if name.contains("console") {
                self.console_cookies.push(text.clone());
            }
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let response = Self::http()
            .get(url)
            .header(COOKIE, self.header())
            .send()
            .await
            .expect("get");
        self.keep(&response);
        response
    }

    async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let response = Self::http()
            .post(url)
            .header(COOKIE, self.header())
            .form(form)
            .send()
            .await
            .expect("post");
        self.keep(&response);
        response
    }

    /// Signs in through `/console/login`, the built-in login page and the callback.
    async fn sign_in(origin: &str, username: &str, password: &str) -> Self {
        let mut browser = Self::default();
        let start = browser.get(&format!("{origin}/console/login")).await;
        assert_eq!(start.status(), StatusCode::SEE_OTHER);
        let authorize = location(&start);
        assert!(authorize.starts_with("/authorize?"), "{authorize}");
        assert!(
            authorize.contains("code_challenge_method=S256"),
            "{authorize}"
        );
        let page = browser.get(&format!("{origin}{authorize}")).await;
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.expect("login page");
        let mut form = hidden_fields(&html);
        form.push(("username".to_owned(), username.to_owned()));
        form.push(("password".to_owned(), password.to_owned()));
        form.push(("decision".to_owned(), "approve".to_owned()));
        let pairs: Vec<(&str, &str)> = form
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let approved = browser.post(&format!("{origin}/authorize"), &pairs).await;
        assert_eq!(
            approved.status(),
            StatusCode::SEE_OTHER,
            "login of {username}"
        );
        let callback = location(&approved);
        assert!(callback.contains("/console/callback?"), "{callback}");
        let signed_in = browser.get(&callback).await;
        assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&signed_in), "/console/");
        browser
    }

    /// Returns the page's CSRF token (the sign-out form carries it on every page).
    async fn csrf(&mut self, origin: &str) -> String {
        let html = self
            .get(&format!("{origin}/console/accounts"))
            .await
            .text()
            .await
            .expect("page");
        hidden_fields(&html)
            .into_iter()
            .find(|(name, _)| name == "csrf")
            .map(|(_, value)| value)
            .expect("a csrf field")
    }
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .expect("location")
        .to_str()
        .expect("location text")
        .to_owned()
}

/// Returns the `<input type="hidden">` fields of a page, unescaped.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|rest| {
            let name = rest.strip_prefix("name=\"")?.split('"').next()?;
            let value = rest.split("value=\"").nth(1)?.split('"').next()?;
            Some((
                name.to_owned(),
                value.replace("&amp;", "&").replace("&quot;", "\""),
            ))
        })
        .collect()
}

/// Returns a client-credentials token of `client` for `resource`, or the refusal's status.
async fn agent_token(
    origin: &str,
    client: &str,
    secret: &str,
    resource: &str,
) -> Result<String, StatusCode> {
    let response = reqwest::Client::new()
        .post(format!("{origin}/token"))
        .basic_auth(client, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("resource", resource)])
        .send()
        .await
        .expect("token request");
    if response.status() != StatusCode::OK {
        return Err(response.status());
    }
    let body: serde_json::Value = response.json().await.expect("token json");
    Ok(body["access_token"]
        .as_str()
        .expect("access token")
        .to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_sees_every_page_and_a_member_only_connected_accounts() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(&config, gateway_file()).expect("config");
    let (mut child, origin) = up(&config, &dir.path().join("data")).await;

    let mut stranger = Browser::default();
    let anonymous = stranger.get(&format!("{origin}/console/activity")).await;
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&anonymous), "/console/login");

    let mut alice = Browser::sign_in(&origin, "alice", ALICE_PASSWORD).await;
    let home = alice.get(&format!("{origin}/console/")).await;
    assert_eq!(location(&home), "/console/activity");
    for page in ADMIN_PAGES {
        let response = alice.get(&format!("{origin}{page}")).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{page} for an administrator"
        );
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .expect("csp")
            .to_owned();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        let html = response.text().await.expect("html");
        assert!(html.contains("<nav aria-label=\"Console\">"), "{page}");
        assert!(
            html.contains("href=\"/console/agents\""),
            "{page} links every page"
        );
    }
    let servers = alice
        .get(&format!("{origin}/console/servers"))
        .await
        .text()
        .await
        .expect("servers");
    assert!(servers.contains("Agent reporter"), "{servers}");
    assert!(servers.contains("<code>echo</code>"), "{servers}");

    let mut bob = Browser::sign_in(&origin, "bob", BOB_PASSWORD).await;
    let home = bob.get(&format!("{origin}/console/")).await;
    assert_eq!(location(&home), "/console/accounts");
    let accounts = bob.get(&format!("{origin}/console/accounts")).await;
    assert_eq!(accounts.status(), StatusCode::OK);
    let html = accounts.text().await.expect("accounts");
    assert!(
        !html.contains("href=\"/console/agents\""),
        "a member's nav has no admin pages"
    );
    for page in &ADMIN_PAGES[..4] {
        let refused = bob.get(&format!("{origin}{page}")).await;
        assert_eq!(
            refused.status(),
            StatusCode::FORBIDDEN,
            "{page} for a member"
        );
    }
    let feed = bob.get(&format!("{origin}/console/activity/feed")).await;
    assert_eq!(feed.status(), StatusCode::FORBIDDEN);

    // Loopback http origin: HttpOnly, SameSite=Lax, no `__Host-` (browsers refuse it without https).
    let session = alice
        .console_cookies
        .iter()
        .find(|cookie| cookie.starts_with("gatehouse-console=") && !cookie.contains("Max-Age=0"))
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );

    // Signing out ends the session: the same cookie no longer opens a page.
    let csrf = alice.csrf(&origin).await;
    let kept = alice.header();
    let out = alice
        .post(&format!("{origin}/console/logout"), &[("csrf", &csrf)])
        .await;
    assert_eq!(out.status(), StatusCode::OK);
    let replay = Browser::http()
        .get(format!("{origin}/console/activity"))
        .header(COOKIE, kept)
        .send()
        .await
        .expect("replay");
    assert_eq!(replay.status(), StatusCode::SEE_OTHER);
    child.kill().await.expect("stop gatehouse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_form_without_the_session_csrf_token_changes_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(&config, gateway_file()).expect("config");
    let (mut child, origin) = up(&config, &dir.path().join("data")).await;
    let tools = format!("{origin}/v/tools/mcp");
    let mut alice = Browser::sign_in(&origin, "alice", ALICE_PASSWORD).await;
    let decommission = format!("{origin}/console/agents/reporter/decommission");

    let confirm = alice.get(&decommission).await;
    assert_eq!(
        confirm.status(),
        StatusCode::OK,
        "a confirmation step first"
    );
    for form in [vec![], vec![("csrf", "forged")]] {
        let refused = alice.post(&decommission, &form).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{form:?}");
    }
    let mut bob = Browser::sign_in(&origin, "bob", BOB_PASSWORD).await;
    let bobs = bob.csrf(&origin).await;
    let foreign = alice.post(&decommission, &[("csrf", &bobs)]).await;
    assert_eq!(
        foreign.status(),
        StatusCode::FORBIDDEN,
        "another session's token"
    );
    agent_token(&origin, "reporter", AGENT_SECRET, &tools)
        .await
        .expect("the agent still works");

    let csrf = alice.csrf(&origin).await;
    let done = alice
        .post(&decommission, &[("csrf", &csrf), ("reason", "console e2e")])
        .await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        agent_token(&origin, "reporter", AGENT_SECRET, &tools).await,
        Err(StatusCode::UNAUTHORIZED),
        "a decommissioned agent gets no token"
    );
    child.kill().await.expect("stop gatehouse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_console_page_shows_a_secret() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(&config, gateway_file()).expect("config");
    let (mut child, origin) = up(&config, &dir.path().join("data")).await;
    let admin_resource = format!("{origin}/admin/v1");
    let bot = agent_token(&origin, "admin-bot", ADMIN_BOT_SECRET, &admin_resource)
        .await
        .expect("admin token");
    let stored = reqwest::Client::new()
        .put(format!(
            "{admin_resource}/connectors/vaulted/shared-credential"
        ))
        .bearer_auth(&bot)
        .json(&serde_json::json!({"kind": "bearer", "value": SHARED_VALUE}))
        .send()
        .await
        .expect("shared credential");
    assert_eq!(stored.status(), StatusCode::OK);
    let tools = format!("{origin}/v/tools/mcp");
    let token = agent_token(&origin, "reporter", AGENT_SECRET, &tools)
        .await
        .expect("agent token");
    // A real call, so the activity feed has an event to link.
    let called = super::oauth::call_tool(
        &tools,
        &token,
        "echo",
        serde_json::json!({"text": "console"}),
    )
    .await;
    assert_eq!(called.status(), StatusCode::OK, "the agent's call");

    let mut alice = Browser::sign_in(&origin, "alice", ALICE_PASSWORD).await;
    let session = alice.cookies["gatehouse-console"].clone();
    let mut pages: Vec<String> = ADMIN_PAGES
        .iter()
        .map(|page| format!("{origin}{page}"))
        .collect();
    pages.push(format!("{origin}/console/activity/feed"));
    pages.push(format!("{origin}/console/agents/reporter/rotate"));
    // The call's event reaches the audit log shortly after the call is answered.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let events = loop {
        let activity = alice.get(&pages[0]).await.text().await.expect("activity");
        let events: Vec<String> = activity
            .split("href=\"/console/activity/")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|sequence| !sequence.is_empty() && sequence.chars().all(|c| c.is_ascii_digit()))
            .map(|sequence| format!("{origin}/console/activity/{sequence}"))
            .collect();
        if !events.is_empty() || std::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    pages.extend(events);
    assert!(pages.len() > ADMIN_PAGES.len() + 2, "the feed links events");
    let connectors = alice
        .get(&format!("{origin}/console/connectors"))
        .await
        .text()
        .await
        .expect("connectors");
    let vaulted_row = connectors
        .split("<th scope=\"row\">vaulted")
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .expect("a row for the vaulted connector");
    assert!(
        !vaulted_row.contains("no shared credential"),
        "the shared credential's age is shown: {vaulted_row}"
    );
    for page in &pages {
        let html = alice.get(page).await.text().await.expect("page");
        for canary in [
            AGENT_SECRET,
            ADMIN_BOT_SECRET,
            SHARED_VALUE,
            ALICE_PASSWORD,
            &session,
            &bot,
        ] {
            assert!(!html.contains(canary), "{page} shows a secret");
        }
        assert!(
            !html.contains("access_token") && !html.contains("refresh_token"),
            "{page}"
        );
    }
    child.kill().await.expect("stop gatehouse");
}
