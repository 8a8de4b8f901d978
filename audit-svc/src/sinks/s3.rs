//! The S3 sink: each batch becomes one gzip JSON-lines object under a
//! deterministic key (`<prefix>/events/<first seq>-<last seq>.jsonl.gz`, zero
//! padded so keys sort by sequence) written with `If-None-Match: *`, so a resent
//! batch never overwrites (412 counts as delivered). Beside each batch goes the
//! newest signed checkpoint (`….checkpoint`), and each anchored checkpoint is
//! also written as `<prefix>/checkpoints/<tree size>.note`.
//!
//! Requests are presigned with SigV4 by `rusty-s3` and sent with the
//! workspace's reqwest: a few hundred lines of dependency instead of the AWS
//! SDK's dozens of crates, enough for PUT and GET.

use std::io::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::write::GzEncoder;
use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};
use sha2::{Digest as _, Sha256};

use super::config::{S3Config, Shape};
use super::{Failure, Record, Transport, classify_status, transient};
use crate::checkpoint::Checkpoint;
use crate::error::Error;

/// Is how long a presigned request stays valid.
const SIGNATURE_TTL: Duration = Duration::from_secs(300);

/// Writes to one bucket.
#[derive(Debug)]
pub(crate) struct S3Transport {
    client: reqwest::Client,
    bucket: Bucket,
    credentials: Credentials,
    prefix: String,
    extension: &'static str,
    latest: Option<Checkpoint>,
}

/// Is one object to write.
#[derive(Debug)]
struct Object<'a> {
    key: String,
    body: Vec<u8>,
    content_type: &'static str,
    gzip: bool,
    metadata: Vec<(&'a str, String)>,
}

impl S3Transport {
    /// Returns the transport.
    pub(crate) fn new(config: &S3Config, shape: Shape) -> Result<Self, Error> {
        let setup = |reason: String| Error::SinkSetup {
            field: "s3",
            reason,
        };
        let endpoint = reqwest::Url::parse(&config.endpoint)
            .map_err(|error| setup(format!("endpoint: {error}")))?;
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            endpoint,
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|error| setup(format!("bucket: {error}")))?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|error| setup(format!("http client: {}", error.without_url())))?;
        Ok(Self {
            client,
            bucket,
            credentials: Credentials::new(
                config.access_key_id.clone(),
                config.secret_access_key.expose().to_owned(),
            ),
            prefix: config.prefix.trim_matches('/').to_owned(),
            extension: if shape == Shape::Cef { "cef" } else { "jsonl" },
            latest: None,
        })
    }

    /// Puts `object` unless its key exists (412 is success: written before).
    async fn put(&self, object: Object<'_>) -> Result<(), Failure> {
        let checksum = STANDARD.encode(Sha256::digest(&object.body));
        let mut action = self.bucket.put_object(Some(&self.credentials), &object.key);
        let mut headers: Vec<(String, String)> = vec![
            ("content-type".to_owned(), object.content_type.to_owned()),
            ("if-none-match".to_owned(), "*".to_owned()),
            ("x-amz-checksum-sha256".to_owned(), checksum),
        ];
        if object.gzip {
            headers.push(("content-encoding".to_owned(), "gzip".to_owned()));
        }
        for (name, value) in &object.metadata {
            headers.push((format!("x-amz-meta-{name}"), value.clone()));
        }
        for (name, value) in &headers {
            action.headers_mut().insert(name.clone(), value.clone());
        }
        let url = action.sign(SIGNATURE_TTL);
        let mut request = self.client.put(url).body(object.body);
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.map_err(transient)?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::PRECONDITION_FAILED {
            return Ok(());
        }
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        Err(match classify_status(status, &headers, &body) {
            // Access and bucket errors are the operator's to fix, not an event's.
            Failure::Reject { reason } if matches!(status.as_u16(), 401 | 403 | 404) => {
                Failure::Retry {
                    after: None,
                    reason,
                }
            }
            other => other,
        })
    }

    fn batch_key(&self, first: u64, last: u64) -> String {
        format!(
            "{}/events/{first:020}-{last:020}.{}.gz",
            self.prefix, self.extension
        )
    }
}

/// Returns `lines` gzip-compressed.
fn gzip(lines: &[u8]) -> Result<Vec<u8>, Failure> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(lines)
        .and_then(|()| encoder.finish())
        .map_err(|error| Failure::Retry {
            after: None,
            reason: format!("gzip: {error}"),
        })
}

#[async_trait]
impl Transport for S3Transport {
    async fn deliver(&mut self, batch: &[Record<'_>]) -> Result<(), Failure> {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(());
        };
        let mut lines = Vec::new();
        for record in batch {
            lines.extend_from_slice(record.rendered.text.replace('\n', "\\n").as_bytes());
            lines.push(b'\n');
        }
        let key = self.batch_key(first.event.sequence, last.event.sequence);
        let mut metadata = vec![
            ("first-seq", first.event.sequence.to_string()),
            ("last-seq", last.event.sequence.to_string()),
            ("chain-head", STANDARD.encode(last.event.chain_hash)),
        ];
        if let Some(checkpoint) = &self.latest {
            metadata.push(("checkpoint-size", checkpoint.tree_size.to_string()));
            self.put(Object {
                key: format!("{key}.checkpoint"),
                body: checkpoint.signed_note.clone().into_bytes(),
                content_type: "text/plain; charset=utf-8",
                gzip: false,
                metadata: Vec::new(),
            })
            .await?;
        }
        self.put(Object {
            key,
            body: gzip(&lines)?,
            content_type: "application/x-ndjson",
            gzip: true,
            metadata,
        })
        .await
    }

    async fn anchor(&mut self, checkpoint: &Checkpoint) -> Result<(), Failure> {
        self.put(Object {
            key: format!(
                "{}/checkpoints/{:020}.note",
                self.prefix, checkpoint.tree_size
            ),
            body: checkpoint.signed_note.clone().into_bytes(),
            content_type: "text/plain; charset=utf-8",
            gzip: false,
            metadata: vec![("tree-size", checkpoint.tree_size.to_string())],
        })
        .await?;
        self.latest = Some(checkpoint.clone());
        Ok(())
    }

    fn resume(&mut self, checkpoint: &Checkpoint) {
        self.latest = Some(checkpoint.clone());
    }
}
