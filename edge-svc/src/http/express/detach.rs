//! A call that runs on the request's own task, and on a task of its own only once the request
//! is dropped (the client hung up), so that it still ends, cancelled, and is recorded.
//!
//! Spawning every call instead cost two scheduler notifications per call, the spawn and the
//! join, and at low load each woke an idle runtime worker that found nothing to do
//! (`bench/notes.md`).

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::FutureExt as _;
use futures::future::CatchUnwind;

/// The in-flight call; polling it drives the call, dropping it first detaches the call.
pub(super) struct Detachable<F: Future + Send + 'static> {
    call: Option<Pin<Box<CatchUnwind<AssertUnwindSafe<F>>>>>,
}

impl<F: Future + Send + 'static> Detachable<F> {
    /// Wraps `call`, which nothing has polled yet.
    pub(super) fn new(call: F) -> Self {
        Self {
            call: Some(Box::pin(AssertUnwindSafe(call).catch_unwind())),
        }
    }
}

impl<F: Future + Send + 'static> Future for Detachable<F> {
    /// The call's answer, or the payload of its panic: a call that panics fails its request
    /// alone, as a spawned task's panic did, not the whole connection.
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(call) = self.call.as_mut() else {
            return Poll::Pending;
        };
        let answer = ready!(call.as_mut().poll(cx));
        self.call = None;
        Poll::Ready(answer)
    }
}

impl<F: Future + Send + 'static> Drop for Detachable<F> {
    fn drop(&mut self) {
        let Some(call) = self.call.take() else {
            return;
        };
        // Outside a runtime (the runtime itself is being dropped) there is nothing to finish on.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // The client is gone: the answer has no one to go to.
                let _answer = call.await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::Detachable;

    #[tokio::test]
    async fn a_call_awaited_to_its_end_answers_on_the_requests_own_task() {
        let answer = Detachable::new(async { 42 }).await;
        assert_eq!(answer.ok(), Some(42));
    }

    #[tokio::test]
    async fn a_call_whose_request_is_dropped_midway_still_runs_to_its_end() {
        let (go, wait) = oneshot::channel::<()>();
        let (ended, end) = oneshot::channel();
        let mut call = Box::pin(Detachable::new(async move {
            let _ = wait.await;
            let _ = ended.send("ended");
        }));
        assert!(
            futures::poll!(call.as_mut()).is_pending(),
            "the call waits for its go"
        );
        drop(call);
        go.send(()).expect("the detached call is still waiting");
        let ended = tokio::time::timeout(Duration::from_secs(5), end).await;
        assert_eq!(ended.ok().and_then(Result::ok), Some("ended"));
    }

    #[tokio::test]
    async fn a_call_that_panics_fails_its_request_and_not_its_caller() {
        let answer = Detachable::new(async {
            if true {
                panic!("a broken call");
            }
        })
        .await;
        let panic = answer.expect_err("the panic is the answer");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"a broken call"));
    }
}
