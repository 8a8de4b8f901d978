//! The S3 sink against moto's S3 server (PyPI `moto[server]`): gzip JSON-lines
//! batches under deterministic keys, metadata, the checkpoint beside each batch,
//! and `If-None-Match: *` making a resent batch a no-op.

use std::io::Read as _;
use std::time::Duration;

use flate2::read::GzDecoder;
use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};

use super::{Running, append, free_port, log_over, receiver, sinks, wait_for_port};
use crate::backend::Backend;

struct Moto {
    _child: tokio::process::Child,
    endpoint: String,
}

impl Moto {
    async fn start(program: &std::path::Path) -> Self {
        let port = free_port();
        let child = tokio::process::Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("MOTO_SERVER is set but does not start");
        wait_for_port(port, "moto_server").await;
        Self {
            _child: child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    fn bucket(&self, name: &str) -> Bucket {
        Bucket::new(
            self.endpoint.parse().unwrap(),
            UrlStyle::Path,
            name.to_owned(),
            "us-east-1",
        )
        .unwrap()
    }
}

fn credentials() -> Credentials {
    Credentials::new("test-key", "test-secret")
}

async fn get(bucket: &Bucket, key: &str) -> reqwest::Response {
    let url = bucket
        .get_object(Some(&credentials()), key)
        .sign(Duration::from_secs(60));
    reqwest::get(url).await.unwrap()
}

async fn list(bucket: &Bucket) -> Vec<String> {
    let url = bucket
        .list_objects_v2(Some(&credentials()))
        .sign(Duration::from_secs(60));
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    let parsed = rusty_s3::actions::ListObjectsV2::parse_response(&text).unwrap();
    parsed
        .contents
        .into_iter()
        .map(|object| object.key)
        .collect()
}

fn s3_sink(name: &str, endpoint: &str) -> String {
    format!(
        "[[sinks]]\nname = \"{name}\"\nbatch_size = 3\n[sinks.s3]\nendpoint = \"{endpoint}\"\n\
         bucket = \"audit-archive\"\naccess_key_id = \"test-key\"\n\
         secret_access_key = \"test-secret\"\nprefix = \"audit/v1\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_batches_are_gzip_jsonl_with_metadata_and_checkpoints() {
    let Some(program) = receiver("MOTO_SERVER") else {
        return;
    };
    let moto = Moto::start(&program).await;
    let bucket = moto.bucket("audit-archive");
    let url = bucket
        .create_bucket(&credentials())
        .sign(Duration::from_secs(60));
    let created = reqwest::Client::new()
        .put(url)
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{created:?}");
    let backend = Backend::sqlite().await;
    let log = log_over(&backend).await;
    append(&log, "s3", 0, 3).await;
    let checkpoint = log.checkpoint_now().await.unwrap().unwrap();
    append(&log, "s3", 3, 2).await;
    let running = Running::start(&log, &sinks(&s3_sink("archive", &moto.endpoint)));
    running.delivered(5).await;
    running.stop().await;
    let keys = list(&bucket).await;
    let first = "audit/v1/events/00000000000000000001-00000000000000000003.jsonl.gz";
    let second = "audit/v1/events/00000000000000000004-00000000000000000005.jsonl.gz";
    let note = "audit/v1/checkpoints/00000000000000000003.note";
    for key in [first, second, note] {
        assert!(keys.contains(&key.to_owned()), "{key} missing in {keys:?}");
    }
    // The checkpoint of the first batch was anchored before the second batch
    // was written, so it sits beside the second.
    assert!(keys.contains(&format!("{second}.checkpoint")), "{keys:?}");
    let response = get(&bucket, second).await;
    assert_eq!(response.headers()["x-amz-meta-first-seq"], "4");
    assert_eq!(response.headers()["x-amz-meta-last-seq"], "5");
    assert_eq!(response.headers()["x-amz-meta-checkpoint-size"], "3");
    let gzipped = response.bytes().await.unwrap();
    let mut lines = String::new();
    GzDecoder::new(gzipped.as_ref())
        .read_to_string(&mut lines)
        .unwrap();
    let stored = backend.store().read(3, 2).await.unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 2);
    for (line, record) in lines.iter().zip(&stored) {
        assert_eq!(line.as_bytes(), record.event.canonical_json.as_slice());
    }
    let anchored = get(&bucket, note).await.text().await.unwrap();
    assert_eq!(anchored, checkpoint.signed_note);
    // A second sink writing the same batches finds them written (412) and
    // counts them delivered without overwriting.
    let running = Running::start(&log, &sinks(&s3_sink("replay", &moto.endpoint)));
    let lag = running.delivered(5).await;
    running.stop().await;
    assert_eq!(lag.dead_lettered, 0);
    assert_eq!(list(&bucket).await.len(), keys.len());
    // After a restart the sink still knows the checkpoint it anchored last.
    append(&log, "s3", 5, 1).await;
    let running = Running::start(&log, &sinks(&s3_sink("archive", &moto.endpoint)));
    running.delivered(6).await;
    running.stop().await;
    let third = "audit/v1/events/00000000000000000006-00000000000000000006.jsonl.gz";
    let response = get(&bucket, third).await;
    assert_eq!(response.headers()["x-amz-meta-checkpoint-size"], "3");
    let keys = list(&bucket).await;
    assert!(keys.contains(&format!("{third}.checkpoint")), "{keys:?}");
}
