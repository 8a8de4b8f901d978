//! A resting session's GET stream, served by the lane so that the session stays at rest.
//!
//! SDK clients open a GET stream right after the handshake to hear what the server says on
//! its own; for a gateway's session that is the list changes of its virtual server. rmcp
//! would wake the session into a worker for it (about 100 KiB each, `bench/notes.md`), so the
//! lane answers the GET as rmcp would, the priming event first, and relays the virtual
//! server's list changes itself. When something else wakes the session, rmcp's worker takes
//! over what the server says, and the stream goes on carrying rmcp's standalone stream of
//! the session instead, so the client's one GET stream keeps hearing everything: each change
//! once, except one made in the instant of the wake, which both may carry (a list change says
//! only that a list changed, so hearing it twice costs a client one more listing).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use futures::{Stream, StreamExt as _};
use rmcp::transport::common::server_side_http::{ServerSseMessage, SessionId};
use rmcp::transport::streamable_http_server::session::SessionManager as _;
use sse_stream::Sse;
use tokio::sync::broadcast::{Receiver, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::Lane;
use crate::http::sessions::{OpenStream, Session, Sessions};

/// What the stream carries now.
enum Source {
    /// The virtual server's list changes, while the session rests.
    Lane(Receiver<Arc<str>>),
    /// rmcp's standalone stream of the session, once it is awake.
    Rmcp(Pin<Box<dyn Stream<Item = ServerSseMessage> + Send + Sync>>),
}

/// One resting session's GET stream.
struct Listening {
    id: SessionId,
    session: Arc<Session>,
    sessions: Arc<Sessions>,
    source: Source,
    /// The first event, announcing the reconnection delay, as rmcp starts a GET stream.
    priming: Option<Bytes>,
    keep_alive: Option<Duration>,
    /// Cancelled when the virtual server's sessions end (it is removed, or the gateway stops).
    ended: CancellationToken,
    /// Keeps the session from the idle sweep while the stream is open.
    _open: OpenStream,
}

/// Answers a resting session's GET with a stream the lane serves; `session` is `id`'s, which
/// the lane has marked as listening.
pub(super) fn open(lane: &Lane, id: SessionId, session: Arc<Session>) -> Response {
    let priming = lane
        .sse_retry
        .map(|retry| Bytes::from(Sse::default().data("").id("0").retry_duration(retry)));
    let listening = Listening {
        source: Source::Lane((lane.proxy)().listeners().listen_resting()),
        _open: lane.sessions.hold_open(Arc::clone(&session)),
        id,
        session,
        sessions: Arc::clone(&lane.sessions),
        priming,
        keep_alive: lane.keep_alive,
        ended: lane.ended.clone(),
    };
    let events = futures::stream::unfold(listening, async |mut listening| {
        let event = listening.next_event().await?;
        Some((Ok::<_, Infallible>(event), listening))
    });
    super::event_stream(Body::from_stream(events), None)
}

impl Listening {
    /// Returns the next bytes to send, or `None` when the stream ends: the session or the
    /// virtual server's sessions ended, or rmcp's stream of the session did.
    async fn next_event(&mut self) -> Option<Bytes> {
        if let Some(priming) = self.priming.take() {
            return Some(priming);
        }
        loop {
            let changed = self.session.next_change();
            if !self.sessions.is_open(&self.id) {
                return None;
            }
            if matches!(self.source, Source::Lane(_)) && self.session.has_worker() {
                // rmcp's worker now hears the list changes too (the replayed handshake made it
                // a listener); its stream replaces the lane's, so each change arrives once (or
                // twice, when it came in the instant of the wake: see the module's comment).
                // Boxed: rmcp's future for it is most of this one's size, which every open
                // stream would otherwise hold for its whole life for a step taken once.
                match Box::pin(self.sessions.create_standalone_stream(&self.id)).await {
                    Ok(stream) => self.source = Source::Rmcp(Box::pin(stream)),
                    Err(error) => {
                        tracing::debug!(%error, "a woken session's GET stream could not go on");
                        return None;
                    }
                }
            }
            let resting = matches!(self.source, Source::Lane(_));
            let quiet = quiet_for(self.keep_alive);
            tokio::select! {
                () = self.ended.cancelled() => return None,
                () = changed, if resting => {}
                () = quiet => return Some(Bytes::from_static(b":\n\n")),
                event = next_from(&mut self.source) => return event,
            }
        }
    }
}

/// Resolves after `keep_alive` without an event (rmcp's keep-alive comment is then due), or
/// never when there is none.
async fn quiet_for(keep_alive: Option<Duration>) {
    match keep_alive {
        Some(interval) => tokio::time::sleep(interval).await,
        None => std::future::pending().await,
    }
}

/// Reads the next event of `source` as SSE bytes; `None` when it has ended.
async fn next_from(source: &mut Source) -> Option<Bytes> {
    match source {
        Source::Lane(changes) => loop {
            match changes.recv().await {
                Ok(json) => return Some(Bytes::from(Sse::default().data(json.as_ref()))),
                // The skipped changes said only that a list changed, as the next one does.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
        },
        Source::Rmcp(stream) => loop {
            let message = stream.next().await?;
            match encode(message) {
                Ok(event) => return Some(event),
                Err(error) => tracing::warn!(%error, "could not encode a message of a GET stream"),
            }
        },
    }
}

/// Writes one of rmcp's stream messages as rmcp's own SSE writer does.
fn encode(message: ServerSseMessage) -> Result<Bytes, serde_json::Error> {
    let data = match &message.message {
        Some(message) => serde_json::to_string(message.as_ref())?,
        None => String::new(),
    };
    let mut event = Sse::default().data(data);
    event.id = message.event_id;
    if let Some(retry) = message.retry {
        event = event.retry_duration(retry);
    }
    Ok(Bytes::from(event))
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.session.stop_listening();
    }
}
