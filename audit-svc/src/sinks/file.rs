//! The JSON-lines file sink: each batch is appended to one file (one rendered
//! event per line) and synced to disk before the cursor moves; signed
//! checkpoints are appended to `<path>.checkpoints`, separated by blank lines.

use std::path::PathBuf;

use async_trait::async_trait;
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt as _;

use super::config::JsonlConfig;
use super::{Failure, Record, Transport};
use crate::checkpoint::Checkpoint;

/// Appends to a local file; failures (a full disk, say) are retried, never
/// dead-lettered, since no event is at fault.
#[derive(Debug)]
pub(crate) struct JsonlTransport {
    path: PathBuf,
    checkpoints: PathBuf,
    file: Option<File>,
}

impl JsonlTransport {
    /// Returns the transport; the file is opened (created) on first delivery.
    pub(crate) fn new(config: &JsonlConfig) -> Self {
        let mut checkpoints = config.path.clone().into_os_string();
        checkpoints.push(".checkpoints");
        Self {
            path: config.path.clone(),
            checkpoints: PathBuf::from(checkpoints),
            file: None,
        }
    }
}

async fn open(path: &PathBuf) -> std::io::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
}

fn retry(path: &std::path::Path, error: &std::io::Error) -> Failure {
    Failure::Retry {
        after: None,
        reason: format!("{}: {error}", path.display()),
    }
}

#[async_trait]
impl Transport for JsonlTransport {
    async fn deliver(&mut self, batch: &[Record<'_>]) -> Result<(), Failure> {
        let size = batch.iter().map(|record| record.rendered.text.len() + 1);
        let mut lines = Vec::with_capacity(size.sum());
        for record in batch {
            let text = &record.rendered.text;
            // A line break inside a rendering would split the record: escape it
            // (JSON renderings never hold one, so they are not copied for it).
            if text.contains('\n') {
                lines.extend_from_slice(text.replace('\n', "\\n").as_bytes());
            } else {
                lines.extend_from_slice(text.as_bytes());
            }
            lines.push(b'\n');
        }
        let file = match self.file.as_mut() {
            Some(file) => file,
            None => self
                .file
                .insert(open(&self.path).await.map_err(|e| retry(&self.path, &e))?),
        };
        let written = async {
            file.write_all(&lines).await?;
            file.sync_data().await
        };
        if let Err(error) = written.await {
            self.file = None;
            return Err(retry(&self.path, &error));
        }
        Ok(())
    }

    async fn anchor(&mut self, checkpoint: &Checkpoint) -> Result<(), Failure> {
        let mut file = open(&self.checkpoints)
            .await
            .map_err(|e| retry(&self.checkpoints, &e))?;
        let mut note = checkpoint.signed_note.clone();
        if !note.ends_with('\n') {
            note.push('\n');
        }
        note.push('\n');
        let written = async {
            file.write_all(note.as_bytes()).await?;
            file.sync_data().await
        };
        written.await.map_err(|e| retry(&self.checkpoints, &e))
    }
}
