//! The runner of one sink: the delivery loop over its cursor, with retries,
//! dead letters, anchoring and lag reporting.
//!
//! Reading and rendering run ahead of delivery: a reader task reads the batches
//! after the last one it handed over and starts rendering each on the blocking
//! pool, while the runner delivers the previous ones. A batch's store read,
//! its rendering and the receiver's round trip (or fsync) of the one before
//! thus overlap on every core instead of adding up on one. A bounded channel
//! of pending renderings keeps the batches in log order and bounds the
//! read-ahead. The cursor still moves only after the receiver accepted a
//! batch, and any store failure restarts both from it: delivery stays at least
//! once and in order.
//!
//! The cursor is written to the store off the delivery path, by a keeper task
//! that writes the latest one the runner published: on SQLite a write queues
//! behind every append waiting for the single writer, and a delivery that
//! waited for it would fall behind a busy log. A crash can lose the last
//! update; the events after the stored cursor are then delivered again, which
//! at-least-once delivery (idempotent by event id) allows. A stop writes the
//! last cursor before the runner ends.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::RetryConfig;
use super::metrics::SinkMetrics;
use super::shape::Rendered;
use super::{
    Failure, Record, Shape, SinkConfig, SinkHandle, SinkLag, Transport, backoff, measure, shape,
};
use crate::error::Error;
use crate::event::StoredEvent;
use crate::log::AuditLog;
use crate::store::{DeadLetter, SinkCursor, now_micros};

#[cfg(test)]
mod tests;

/// Is how many batches may wait for delivery, rendered or being rendered; with
/// the one being delivered it bounds the read-ahead (and its memory).
const READ_AHEAD: usize = 2;

/// Is how often the keeper tries to write the last cursor once the runner has
/// stopped, before it gives up (the events after the stored one are then
/// delivered again at the next start).
const FINAL_CURSOR_ATTEMPTS: u32 = 3;

/// Reports why a delivery loop stopped without delivering.
#[derive(Debug)]
enum Stop {
    Shutdown,
    Store(Error),
}

/// Is one batch read and rendered ahead of its delivery.
#[derive(Debug)]
struct Batch {
    events: Vec<StoredEvent>,
    rendered: Vec<Rendered>,
}

/// Is what the reader hands the runner, in log order.
#[derive(Debug)]
enum Ahead {
    /// Carries the rendering of the events that follow the previous batch.
    Batch(JoinHandle<Batch>),
    /// Says a read found nothing new: the moment to anchor and measure lag.
    CaughtUp,
    /// Reports a failed read; the reader stopped after sending it.
    Failed(Error),
}

/// Is what the reader needs of the sink's configuration.
#[derive(Debug, Clone, Copy)]
struct Reading {
    shape: Shape,
    batch_size: u32,
    poll_interval: Duration,
}

#[derive(Debug)]
pub(super) struct Runner {
    log: AuditLog,
    config: SinkConfig,
    transport: Box<dyn Transport>,
    lag: watch::Sender<SinkLag>,
    /// Holds the cursor as delivery moved it (`None` until read from the
    /// store); the keeper task writes each new value.
    cursor: watch::Sender<Option<SinkCursor>>,
    retries: u64,
    dead_lettered: u64,
    metrics: SinkMetrics,
}

impl Runner {
    pub(super) fn new(log: AuditLog, config: SinkConfig, transport: Box<dyn Transport>) -> Self {
        let lag = watch::Sender::new(SinkLag {
            sink: config.name.clone(),
            ..SinkLag::default()
        });
        let metrics = SinkMetrics::new(&config.name);
        Self {
            log,
            config,
            transport,
            lag,
            cursor: watch::Sender::new(None),
            retries: 0,
            dead_lettered: 0,
            metrics,
        }
    }

    pub(super) fn spawn(self, shutdown: CancellationToken) -> SinkHandle {
        let name = self.config.name.clone();
        let lag = self.lag.subscribe();
        let task = tokio::spawn(self.run(shutdown));
        SinkHandle { name, lag, task }
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        tracing::info!(sink = %self.config.name, shape = ?self.config.shape, "audit sink started");
        let keeper = tokio::spawn(keep_cursor(
            self.log.clone(),
            self.config.name.clone(),
            self.cursor.subscribe(),
            self.config.retry.clone(),
        ));
        self.resume().await;
        while !shutdown.is_cancelled() {
            match self.pipeline(&shutdown, &mut failures).await {
                Stop::Shutdown => break,
                Stop::Store(error) => {
                    tracing::warn!(sink = %self.config.name, error = &error as &dyn std::error::Error, "audit sink cannot read its store");
                    let delay = backoff(&self.config.retry, failures, None);
                    failures = failures.saturating_add(1);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
        }
        self.transport.close().await;
        let name = self.config.name.clone();
        // The keeper writes the last cursor once the runner (its sender) is gone.
        drop(self);
        if let Err(error) = keeper.await
            && error.is_panic()
        {
            std::panic::resume_unwind(error.into_panic());
        }
        tracing::info!(sink = %name, "audit sink stopped");
    }

    /// Publishes the cursor for the keeper to write.
    fn save(&self, cursor: SinkCursor) {
        self.cursor.send_replace(Some(cursor));
    }

    /// Tells the transport which checkpoint it anchored last (before a restart).
    async fn resume(&mut self) {
        let store = self.log.store();
        let anchored = match store.sink_cursor(&self.config.name).await {
            Ok(cursor) if cursor.anchored > 0 => cursor.anchored,
            _ => return,
        };
        if let Ok(Some(checkpoint)) = store.checkpoint(Some(anchored)).await {
            self.transport.resume(&checkpoint);
        }
    }

    /// Delivers from the durable cursor on, with a reader task ahead, until the
    /// store fails or shutdown; the read-ahead is dropped with the reader.
    async fn pipeline(&mut self, shutdown: &CancellationToken, failures: &mut u32) -> Stop {
        let known = *self.cursor.borrow();
        let mut cursor = match known {
            Some(cursor) => cursor,
            None => match self.log.store().sink_cursor(&self.config.name).await {
                Ok(cursor) => {
                    // Known from now on, but not news to the keeper: it is what the store holds.
                    self.cursor.send_if_modified(|known| {
                        *known = Some(cursor);
                        false
                    });
                    cursor
                }
                Err(error) => return Stop::Store(error),
            },
        };
        let (sender, mut ahead) = mpsc::channel(READ_AHEAD);
        let reading = Reading {
            shape: self.config.shape,
            batch_size: self.config.batch_size,
            poll_interval: self.config.poll_interval,
        };
        let reader = tokio::spawn(read_ahead(
            self.log.clone(),
            reading,
            cursor.delivered,
            sender,
        ));
        let stop = self
            .deliver_ahead(&mut ahead, &mut cursor, shutdown, failures)
            .await;
        reader.abort();
        // The reader stops by itself only by panicking: fail the sink as before.
        if let Err(error) = reader.await
            && error.is_panic()
        {
            std::panic::resume_unwind(error.into_panic());
        }
        stop
    }

    /// Delivers what the reader hands over, in order, until it reports a failure
    /// or shutdown.
    async fn deliver_ahead(
        &mut self,
        ahead: &mut mpsc::Receiver<Ahead>,
        cursor: &mut SinkCursor,
        shutdown: &CancellationToken,
        failures: &mut u32,
    ) -> Stop {
        loop {
            let next = tokio::select! {
                next = ahead.recv() => next,
                () = shutdown.cancelled() => return Stop::Shutdown,
            };
            let done = match next {
                Some(Ahead::Batch(rendering)) => {
                    let batch = match rendering.await {
                        Ok(batch) => batch,
                        // A panic while rendering fails the sink, as it did inline.
                        Err(error) if error.is_panic() => {
                            std::panic::resume_unwind(error.into_panic())
                        }
                        // Cancelled only when the runtime shuts down.
                        Err(_) => return Stop::Shutdown,
                    };
                    self.deliver_batch(batch, cursor, shutdown).await
                }
                Some(Ahead::CaughtUp) => self.settle(cursor, shutdown).await,
                Some(Ahead::Failed(error)) => return Stop::Store(error),
                // The reader is gone (it panicked): `pipeline` re-raises the panic.
                None => return Stop::Shutdown,
            };
            match done {
                Ok(()) => *failures = 0,
                Err(stop) => return stop,
            }
        }
    }

    /// Delivers one batch, then moves the durable cursor past it.
    async fn deliver_batch(
        &mut self,
        batch: Batch,
        cursor: &mut SinkCursor,
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        let Batch { events, rendered } = batch;
        let Some(last) = events.last().map(|event| event.sequence) else {
            return Ok(());
        };
        let records: Vec<Record<'_>> = events
            .iter()
            .zip(rendered)
            .map(|(event, rendered)| Record { event, rendered })
            .collect();
        self.deliver(&records, shutdown).await?;
        cursor.delivered = last;
        self.save(*cursor);
        self.settle(cursor, shutdown).await
    }

    /// Anchors the latest checkpoint if due and publishes the lag.
    async fn settle(
        &mut self,
        cursor: &mut SinkCursor,
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        self.anchor_if_due(cursor, shutdown).await?;
        self.publish_lag(*cursor).await;
        Ok(())
    }

    /// Delivers `records`; on a permanent refusal of a batch, delivers its events
    /// one by one and dead-letters those refused alone.
    async fn deliver(
        &mut self,
        records: &[Record<'_>],
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        let Err(reason) = self.deliver_retrying(records, shutdown).await? else {
            return Ok(());
        };
        if let [single] = records {
            return self.dead_letter(single, reason).await;
        }
        for record in records {
            if let Err(reason) = self
                .deliver_retrying(std::slice::from_ref(record), shutdown)
                .await?
            {
                self.dead_letter(record, reason).await?;
            }
        }
        Ok(())
    }

    /// Retries transient failures until delivered, refused (the reason) or shut down.
    async fn deliver_retrying(
        &mut self,
        records: &[Record<'_>],
        shutdown: &CancellationToken,
    ) -> Result<Result<(), String>, Stop> {
        let mut attempt = 0u32;
        loop {
            match self.transport.deliver(records).await {
                Ok(()) => return Ok(Ok(())),
                Err(Failure::Reject { reason }) => return Ok(Err(reason)),
                Err(Failure::Retry { after, reason }) => {
                    self.count_retry();
                    let delay = backoff(&self.config.retry, attempt, after);
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(sink = %self.config.name, %reason, attempt, delay_ms = delay.as_millis() as u64, "audit sink delivery failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => return Err(Stop::Shutdown),
                    }
                }
            }
        }
    }

    fn count_retry(&mut self) {
        self.retries += 1;
        self.metrics.retried();
        let retries = self.retries;
        self.lag.send_modify(|lag| lag.retries = retries);
    }

    async fn dead_letter(&mut self, record: &Record<'_>, reason: String) -> Result<(), Stop> {
        tracing::error!(sink = %self.config.name, sequence = record.event.sequence, event_id = %record.event.event.id, %reason, "audit sink refused an event; dead-lettered");
        let letter = DeadLetter {
            sequence: record.event.sequence,
            event_id: record.event.event.id.as_str().to_owned(),
            reason,
            failed_at_micros: now_micros(),
        };
        self.log
            .store()
            .put_dead_letters(&self.config.name, &[letter])
            .await
            .map_err(Stop::Store)?;
        self.dead_lettered += 1;
        self.metrics.dead_lettered();
        Ok(())
    }

    /// Writes the latest checkpoint to the receiver once every event it covers is
    /// delivered and it was not written before.
    async fn anchor_if_due(
        &mut self,
        cursor: &mut SinkCursor,
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        let log = self.log.clone();
        let store = log.store();
        let Some(checkpoint) = store.checkpoint(None).await.map_err(Stop::Store)? else {
            return Ok(());
        };
        if checkpoint.tree_size <= cursor.anchored || checkpoint.tree_size > cursor.delivered {
            return Ok(());
        }
        let mut attempt = 0u32;
        loop {
            match self.transport.anchor(&checkpoint).await {
                Ok(()) => break,
                Err(Failure::Reject { reason }) => {
                    // A refused anchor is skipped: the next checkpoint covers it.
                    tracing::error!(sink = %self.config.name, tree_size = checkpoint.tree_size, %reason, "audit sink refused a checkpoint");
                    break;
                }
                Err(Failure::Retry { after, reason }) => {
                    self.count_retry();
                    let delay = backoff(&self.config.retry, attempt, after);
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(sink = %self.config.name, %reason, attempt, "audit sink checkpoint failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => return Err(Stop::Shutdown),
                    }
                }
            }
        }
        cursor.anchored = checkpoint.tree_size;
        self.save(*cursor);
        Ok(())
    }

    async fn publish_lag(&mut self, cursor: SinkCursor) {
        match measure(self.log.store(), &self.config.name, cursor).await {
            Ok(mut lag) => {
                lag.retries = self.retries;
                lag.dead_lettered = self.dead_lettered;
                self.metrics.record(&lag);
                self.lag.send_replace(lag);
            }
            Err(error) => {
                tracing::debug!(sink = %self.config.name, error = &error as &dyn std::error::Error, "audit sink lag not measured");
            }
        }
    }
}

/// Writes the latest cursor the runner published until the runner is gone and
/// its last cursor is written; a failed write is retried with the sink's
/// backoff, with whatever cursor is latest by then.
async fn keep_cursor(
    log: AuditLog,
    sink: String,
    mut latest: watch::Receiver<Option<SinkCursor>>,
    retry: RetryConfig,
) {
    let mut failures = 0u32;
    while latest.changed().await.is_ok() {
        loop {
            let newest = *latest.borrow_and_update();
            let Some(cursor) = newest else { break };
            let Err(error) = log.store().set_sink_cursor(&sink, cursor).await else {
                failures = 0;
                break;
            };
            failures = failures.saturating_add(1);
            tracing::warn!(sink = %sink, error = &error as &dyn std::error::Error, attempt = failures, "audit sink cursor not saved; retrying");
            if latest.has_changed().is_err() && failures >= FINAL_CURSOR_ATTEMPTS {
                return;
            }
            tokio::time::sleep(backoff(&retry, failures, None)).await;
        }
    }
}

/// Reads the batches after `after` and starts rendering each, handing the
/// renderings over in order until the runner goes away; after a read that
/// finds nothing it says so and waits for the log's head to move or the poll
/// interval to pass.
async fn read_ahead(log: AuditLog, reading: Reading, mut after: u64, ahead: mpsc::Sender<Ahead>) {
    let mut head = log.subscribe();
    loop {
        // Seen before reading, so an append during the read wakes the wait below.
        head.mark_unchanged();
        let next = match log.store().read(after, reading.batch_size).await {
            Ok(events) => match events.last() {
                Some(last) => {
                    after = last.sequence;
                    Ahead::Batch(render(reading.shape, events))
                }
                None => Ahead::CaughtUp,
            },
            Err(error) => {
                let _gone = ahead.send(Ahead::Failed(error)).await;
                return;
            }
        };
        let caught_up = matches!(next, Ahead::CaughtUp);
        if ahead.send(next).await.is_err() {
            return;
        }
        if caught_up {
            tokio::select! {
                _ = head.changed() => {}
                () = tokio::time::sleep(reading.poll_interval) => {}
            }
        }
    }
}

/// Renders `events` on the blocking pool: a full batch of OCSF is tens of
/// milliseconds of CPU, too long to hold an async worker, and batches read
/// ahead render at once on as many cores.
fn render(shape: Shape, events: Vec<StoredEvent>) -> JoinHandle<Batch> {
    tokio::task::spawn_blocking(move || {
        let rendered = events
            .iter()
            .map(|event| shape::render(shape, event))
            .collect();
        Batch { events, rendered }
    })
}
