//! Edge's front door: accepts TCP connections and serves HTTP on them with hyper.
//!
//! `axum::serve` sets hyper's connection up itself and exposes none of its settings, so a
//! connection that never finishes its request headers was held forever; this loop sets them.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Longest a client may take to send a request's headers, longest a new connection may stay
/// silent, and longest a kept-alive connection may wait idle for its next request: a slow or
/// silent client cannot hold a connection open for free.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long accepting pauses after an error that is not one connection's (out of file
/// descriptors, say), so the loop does not spin while the process is short of them.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on every connection `listener` accepts until `shutdown` is cancelled, then
/// stops accepting and waits for the open connections to finish what they serve.
pub(crate) async fn serve(router: Router, listener: TcpListener, shutdown: CancellationToken) {
    serve_with(router, listener, shutdown, HEADER_READ_TIMEOUT).await;
}

/// [`serve`] with a given header read timeout (the tests' is short).
async fn serve_with(
    router: Router,
    listener: TcpListener,
    shutdown: CancellationToken,
    header_read_timeout: Duration,
) {
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let http2 = http2::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    pause_after(&error).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // The router, with the peer's address where axum's `ConnectInfo` extractor finds it
        // (it feeds the audit record's source address).
        let router = router.clone();
        let service = service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(remote));
            router.clone().oneshot(request)
        });
        let (http1, http2, watcher) = (http1.clone(), http2.clone(), graceful.watcher());
        tokio::spawn(async move {
            let tcp = tuned(tcp);
            // hyper's timer starts with the first request, so a client that sends nothing is
            // timed here, while its first bytes tell which protocol it speaks.
            let version = match tokio::time::timeout(header_read_timeout, sniff(&tcp)).await {
                Ok(Ok(Some(version))) => version,
                Ok(Ok(None)) | Err(_) => return,
                Ok(Err(error)) => {
                    tracing::trace!(%error, "connection failed before its first request");
                    return;
                }
            };
            let io = TokioIo::new(tcp);
            let ended = match version {
                Version::Http1 => watcher.watch(http1.serve_connection(io, service)).await,
                // Boxed: hyper's HTTP/2 connection is more than twice the size of its HTTP/1
                // one, and every connection's task would otherwise be as large as the larger.
                Version::Http2 => {
                    Box::pin(watcher.watch(http2.serve_connection(io, service))).await
                }
            };
            if let Err(error) = ended {
                tracing::trace!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// What a client speaks on a connection: HTTP/2 announces itself with [`PREFACE`] (h2c with
/// prior knowledge), anything else is served as HTTP/1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Http1,
    Http2,
}

/// The connection preface every HTTP/2 client sends first (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long sniffing waits before peeking again at a client that has sent part of [`PREFACE`]
/// (a peek returns at once while any byte is buffered, so it cannot wait for more by itself).
const PARTIAL_PREFACE_PAUSE: Duration = Duration::from_millis(5);

/// Tells the client's protocol from its first bytes without consuming them, so hyper's own
/// first read takes the whole request into its buffer. (hyper-util's version sniffing reads
/// them and hands them back on their own, and hyper then grows its 8 KiB read buffer to
/// 16 KiB for every connection, and every buffer it takes later to that size as well.)
/// `None`: the client closed before sending anything.
async fn sniff(tcp: &TcpStream) -> std::io::Result<Option<Version>> {
    let mut first = [0; PREFACE.len()];
    loop {
        let peeked = tcp.peek(&mut first).await?;
        if peeked == 0 {
            return Ok(None);
        }
        if first[..peeked] != PREFACE[..peeked] {
            return Ok(Some(Version::Http1));
        }
        if peeked == PREFACE.len() {
            return Ok(Some(Version::Http2));
        }
        tokio::time::sleep(PARTIAL_PREFACE_PAUSE).await;
    }
}

/// Small SSE writes must not wait for the client's delayed ACK (~40 ms per reply otherwise).
fn tuned(tcp: TcpStream) -> TcpStream {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    tcp
}

/// Errors of one connection (reset before it was accepted) are skipped at once; anything else
/// is logged and accepting pauses briefly.
async fn pause_after(error: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(%error, "cannot accept a connection; pausing");
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::sync::CancellationToken;

    /// A door serving one route that answers with the caller's address.
    async fn door(header_read_timeout: Duration) -> (std::net::SocketAddr, CancellationToken) {
        let router = Router::new().route(
            "/",
            get(async |ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>| peer.to_string()),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        tokio::spawn(super::serve_with(
            router,
            listener,
            shutdown.clone(),
            header_read_timeout,
        ));
        (address, shutdown)
    }

    /// Reads what the server sends until it closes the connection, at most `within`.
    async fn until_closed(tcp: &mut TcpStream, within: Duration) -> Option<String> {
        let mut received = Vec::new();
        tokio::time::timeout(within, tcp.read_to_end(&mut received))
            .await
            .ok()?
            .ok()?;
        Some(String::from_utf8_lossy(&received).into_owned())
    }

    #[tokio::test]
    async fn a_request_is_answered_with_the_callers_address_where_connect_info_finds_it() {
        let (address, shutdown) = door(Duration::from_secs(5)).await;
        let mut tcp = TcpStream::connect(address).await.expect("connect");
        let local = tcp.local_addr().expect("local address");
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: door\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let answer = until_closed(&mut tcp, Duration::from_secs(5))
            .await
            .expect("answered and closed");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(&local.to_string()), "{answer}");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_client_speaking_http2_with_prior_knowledge_is_answered_over_http2() {
        let (address, shutdown) = door(Duration::from_secs(5)).await;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http::<http_body_util::Empty<axum::body::Bytes>>();
        let answer = client
            .get(format!("http://{address}/").parse().expect("uri"))
            .await
            .expect("answered");
        assert_eq!(answer.version(), http::Version::HTTP_2);
        assert_eq!(answer.status(), http::StatusCode::OK);
        shutdown.cancel();
    }

    /// A connected pair: what the client writes, the server side peeks at.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    #[tokio::test]
    async fn the_protocol_is_told_from_the_first_bytes_even_when_the_preface_arrives_in_parts() {
        let (mut client, server) = pair().await;
        client
            .write_all(b"POST /mcp HTTP/1.1\r\n")
            .await
            .expect("write");
        assert_eq!(
            super::sniff(&server).await.expect("sniffed"),
            Some(super::Version::Http1)
        );

        let (mut client, server) = pair().await;
        client.write_all(&super::PREFACE[..9]).await.expect("write");
        let rest = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.write_all(&super::PREFACE[9..]).await.expect("write");
            client
        });
        assert_eq!(
            super::sniff(&server).await.expect("sniffed"),
            Some(super::Version::Http2)
        );
        drop(rest.await.expect("writer"));

        let (client, server) = pair().await;
        drop(client);
        assert_eq!(
            super::sniff(&server).await.expect("sniffed"),
            None,
            "closed unsent"
        );
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_disconnected_and_others_are_served() {
        let (address, shutdown) = door(Duration::from_millis(300)).await;
        let mut slow = TcpStream::connect(address).await.expect("connect");
        slow.write_all(b"GET / HTTP/1.1\r\nHost: door\r\n")
            .await
            .expect("half a request");
        let mut idle = TcpStream::connect(address).await.expect("connect");

        let mut prompt = TcpStream::connect(address).await.expect("connect");
        prompt
            .write_all(b"GET / HTTP/1.1\r\nHost: door\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let answer = until_closed(&mut prompt, Duration::from_secs(5)).await;
        assert!(
            answer.is_some_and(|answer| answer.starts_with("HTTP/1.1 200")),
            "a whole request is answered while another waits"
        );
        assert_eq!(
            until_closed(&mut slow, Duration::from_secs(5)).await,
            Some(String::new()),
            "the half-sent request's connection is closed, unanswered, after the timeout"
        );
        assert_eq!(
            until_closed(&mut idle, Duration::from_secs(5)).await,
            Some(String::new()),
            "a connection that sends nothing is closed too"
        );
        shutdown.cancel();
    }
}
