//! When Redis goes away: the limiter lets calls through (the default) or refuses them, as
//! configured. The test reaches the real Redis through a TCP link it can cut.

use std::sync::Arc;

use limits::{Check, Decision, Error, FailureMode, Limiter, Quota, RedisBackend, RedisConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::store::redis_url;

/// Forwards connections to Redis until [`Link::cut`].
struct Link {
    url: String,
    /// Is cancelled to stop accepting and to close every forwarded connection.
    cut: tokio::sync::oneshot::Sender<()>,
    /// Is the accept loop; it ends only once every forwarded connection is closed.
    forwarding: tokio::task::JoinHandle<()>,
}

impl Link {
    async fn to(redis: &str) -> Self {
        let target = url::Url::parse(redis).expect("REDIS_URL");
        let upstream = format!(
            "{}:{}",
            target.host_str().expect("host"),
            target.port().unwrap_or(6379)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut cut = target.clone();
        cut.set_port(Some(listener.local_addr().expect("addr").port()))
            .expect("port");
        let (cut_tx, mut cut_rx) = tokio::sync::oneshot::channel();
        let forwarding = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut cut_rx => break,
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { break };
                        let upstream = upstream.clone();
                        connections.spawn(async move {
                            if let Ok(mut server) = TcpStream::connect(upstream).await {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        });
                    }
                }
            }
            // Aborted and awaited, so the connections are closed when `cut` returns: a
            // merely dropped task closes its sockets later, and a request sent in between
            // would still reach Redis.
            connections.shutdown().await;
        });
        Self {
            url: cut.to_string(),
            cut: cut_tx,
            forwarding,
        }
    }

    /// Stops accepting and returns once every forwarded connection is closed.
    async fn cut(self) {
        let _ = self.cut.send(());
        self.forwarding.await.expect("the link's accept loop");
    }
}

async fn limiter_through_link(mode: FailureMode) -> Option<(Limiter, Link)> {
    let link = Link::to(&redis_url()?).await;
    let mut config = RedisConfig::new(link.url.clone());
    config.key_prefix = format!(
        "gatehouse:limits-it:{}:failure:{mode:?}:",
        std::process::id()
    );
    let backend = RedisBackend::connect(&config)
        .await
        .expect("REDIS_URL is set but Redis is unreachable");
    Some((Limiter::new(Arc::new(backend), mode), link))
}

fn one_call() -> [Check<'static>; 1] {
    [Check {
        key: "member=grace",
        quota: Quota::new("1/hour".parse().unwrap(), 1).unwrap(),
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_lost_store_lets_calls_through_unmetered() {
    let Some((limiter, link)) = limiter_through_link(FailureMode::default()).await else {
        return;
    };
    assert_eq!(
        limiter.acquire(&one_call()).await.unwrap(),
        Decision::Allowed
    );
    assert!(matches!(
        limiter.acquire(&one_call()).await.unwrap(),
        Decision::Limited { .. }
    ));
    link.cut().await;
    for _ in 0..3 {
        assert_eq!(
            limiter.acquire(&one_call()).await.unwrap(),
            Decision::Allowed,
            "fail open while Redis is unreachable"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_closed_limiter_refuses_while_the_store_is_lost() {
    let Some((limiter, link)) = limiter_through_link(FailureMode::Refuse).await else {
        return;
    };
    assert_eq!(
        limiter.acquire(&one_call()).await.unwrap(),
        Decision::Allowed
    );
    link.cut().await;
    let error = limiter.acquire(&one_call()).await.unwrap_err();
    assert!(matches!(error, Error::Unavailable), "{error}");
}

#[tokio::test]
async fn an_unreachable_redis_fails_the_start_without_showing_the_password() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let config = RedisConfig::new(format!("redis://:hunter2-secret@127.0.0.1:{port}"));
    let error = RedisBackend::connect(&config).await.unwrap_err();
    let shown = format!("{error} {error:?} {config:?}");
    assert!(!shown.contains("hunter2-secret"), "{shown}");
}
