//! The stdio sandbox: clean environment and Landlock, seen from inside the program.

use edge_svc::connector::{LandlockState, Transport};
use serde_json::json;

use super::{Running, call, echo_stdio, text};

#[tokio::test]
async fn stdio_program_sees_only_declared_environment() {
    let cwd = tempfile::tempdir().unwrap();
    let mut config = echo_stdio(cwd.path());
    config.env.insert(
        "GATEHOUSE_TEST_DECLARED".to_owned(),
        "declared-value".to_owned(),
    );
    let running = Running::spawn("env", Transport::Stdio(config));

    let env = |name: &str| {
        let connector = running.connector.clone();
        let name = name.to_owned();
        async move {
            text(
                &call(&connector, "env", json!({"name": name}))
                    .await
                    .unwrap(),
            )
        }
    };
    assert_eq!(env("GATEHOUSE_TEST_DECLARED").await, "declared-value");
    assert_eq!(env("HOME").await, cwd.path().display().to_string());
    assert_eq!(env("TMPDIR").await, cwd.path().display().to_string());
    assert_eq!(env("PATH").await, "/usr/local/bin:/usr/bin:/bin");
    // Everything this test process has (cargo's variables, the shell's) stays outside.
    let inherited: Vec<String> = std::env::vars()
        .map(|(name, _)| name)
        .filter(|name| !["PATH", "HOME", "TMPDIR"].contains(&name.as_str()))
        .take(5)
        .collect();
    assert!(
        !inherited.is_empty(),
        "the test process has environment variables"
    );
    for name in inherited {
        assert_eq!(env(&name).await, "unset", "{name} leaked into the sandbox");
    }
    running.stop().await;
}

#[tokio::test]
async fn landlock_denies_reading_outside_the_working_directory_and_declared_paths() {
    let cwd = tempfile::tempdir().unwrap();
    let declared = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join("inside.txt"), "inside").unwrap();
    std::fs::write(declared.path().join("declared.txt"), "declared").unwrap();
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    let mut config = echo_stdio(cwd.path());
    config.paths.push(declared.path().to_owned());
    let running = Running::spawn("landlocked", Transport::Stdio(config));
    running.connector.peer().await.expect("session");

    let read = |path: std::path::PathBuf| {
        let connector = running.connector.clone();
        async move {
            call(&connector, "read_file", json!({"path": path}))
                .await
                .unwrap()
        }
    };
    assert_eq!(text(&read(cwd.path().join("inside.txt")).await), "inside");
    assert_eq!(
        text(&read(declared.path().join("declared.txt")).await),
        "declared"
    );

    let landlock = running.connector.status().landlock;
    if landlock == Some(LandlockState::Unsupported) {
        eprintln!(
            "\n*** SKIPPED ASSERTION: this kernel does not offer Landlock; reading outside the \
             sandbox cannot be denied here (limits and clean environment still apply) ***\n"
        );
    } else {
        assert_eq!(landlock, Some(LandlockState::Enforced));
        let secret = read(outside.path().join("secret.txt")).await;
        assert_eq!(
            secret.is_error,
            Some(true),
            "read outside the sandbox: {secret:?}"
        );
        assert!(text(&secret).contains("ermission denied"), "{secret:?}");
    }
    running.stop().await;
}
