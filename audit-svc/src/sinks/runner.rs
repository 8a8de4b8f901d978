//! The runner of one sink: the delivery loop over its cursor, with retries,
//! dead letters, anchoring and lag reporting.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::metrics::SinkMetrics;
use super::{Failure, Record, SinkConfig, SinkHandle, SinkLag, Transport, backoff, measure, shape};
use crate::error::Error;
use crate::log::AuditLog;
use crate::store::{DeadLetter, SinkCursor, now_micros};

/// Reports why a delivery loop stopped without delivering.
#[derive(Debug)]
enum Stop {
    Shutdown,
    Store(Error),
}

#[derive(Debug)]
pub(super) struct Runner {
    log: AuditLog,
    config: SinkConfig,
    transport: Box<dyn Transport>,
    lag: watch::Sender<SinkLag>,
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
        let mut head = self.log.subscribe();
        let mut failures = 0u32;
        tracing::info!(sink = %self.config.name, shape = ?self.config.shape, "audit sink started");
        self.resume().await;
        while !shutdown.is_cancelled() {
            match self.step(&shutdown).await {
                Ok(true) => failures = 0,
                Ok(false) => {
                    failures = 0;
                    tokio::select! {
                        _ = head.changed() => {}
                        () = tokio::time::sleep(self.config.poll_interval) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Err(Stop::Shutdown) => break,
                Err(Stop::Store(error)) => {
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
        tracing::info!(sink = %self.config.name, "audit sink stopped");
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

    /// Delivers the next batch, if any; returns whether there was one.
    async fn step(&mut self, shutdown: &CancellationToken) -> Result<bool, Stop> {
        let log = self.log.clone();
        let store = log.store();
        let mut cursor = store
            .sink_cursor(&self.config.name)
            .await
            .map_err(Stop::Store)?;
        let events = store
            .read(cursor.delivered, self.config.batch_size)
            .await
            .map_err(Stop::Store)?;
        if let Some(last) = events.last() {
            let records: Vec<Record<'_>> = events
                .iter()
                .map(|event| Record {
                    event,
                    rendered: shape::render(self.config.shape, event),
                })
                .collect();
            self.deliver(&records, shutdown).await?;
            cursor.delivered = last.sequence;
            store
                .set_sink_cursor(&self.config.name, cursor)
                .await
                .map_err(Stop::Store)?;
        }
        self.anchor_if_due(&mut cursor, shutdown).await?;
        self.publish_lag(cursor).await;
        Ok(!events.is_empty())
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
        store
            .set_sink_cursor(&self.config.name, *cursor)
            .await
            .map_err(Stop::Store)
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
