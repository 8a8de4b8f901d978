//! The syslog sink against a real rsyslog (Debian `rsyslog`, `rsyslog-gnutls`)
//! started by each test with a generated configuration: octet-counted RFC 5424
//! over TCP, and over TLS (RFC 5425) with certificates made by `openssl`.

use std::path::Path;

use serde_json::Value;

use super::{Running, append, free_port, log_over, receiver, sinks, wait_for_port, wait_for_text};
use crate::backend::Backend;

/// Is an rsyslogd child writing what it receives to `out.jsonl`.
struct Rsyslog {
    child: tokio::process::Child,
    port: u16,
}

impl Rsyslog {
    async fn start(rsyslogd: &Path, dir: &Path, tls: bool) -> Self {
        Self::start_at(rsyslogd, dir, tls, free_port()).await
    }

    async fn start_at(rsyslogd: &Path, dir: &Path, tls: bool, port: u16) -> Self {
        let d = dir.display();
        std::fs::create_dir_all(dir.join("work")).unwrap();
        let (global_tls, input_tls) = if tls {
            (
                format!(
                    "DefaultNetstreamDriverCAFile=\"{d}/ca.pem\" \
                     DefaultNetstreamDriverCertFile=\"{d}/server.pem\" \
                     DefaultNetstreamDriverKeyFile=\"{d}/server.key\""
                ),
                "StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\""
                    .to_owned(),
            )
        } else {
            (String::new(), String::new())
        };
        let config = format!(
            r#"global(workDirectory="{d}/work" {global_tls})
module(load="imtcp" MaxSessions="10")
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="audit" {input_tls})
template(name="jsonl" type="list" option.jsonf="on") {{
  property(outname="pri" name="pri" format="jsonf")
  property(outname="ts" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}
ruleset(name="audit") {{ action(type="omfile" file="{d}/out.jsonl" template="jsonl") }}
"#
        );
        let path = dir.join("rsyslog.conf");
        std::fs::write(&path, config).unwrap();
        let check = std::process::Command::new(rsyslogd)
            .arg("-N1")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("RSYSLOGD is set but does not run");
        assert!(
            check.status.success(),
            "rsyslog refused its config: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = tokio::process::Command::new(rsyslogd)
            .arg("-n")
            .arg("-f")
            .arg(&path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .kill_on_drop(true)
            .spawn()
            .expect("RSYSLOGD is set but does not start");
        wait_for_port(port, "rsyslogd").await;
        Self { child, port }
    }

    async fn stop(mut self) {
        self.child.kill().await.unwrap();
        self.child.wait().await.unwrap();
    }
}

/// Makes a CA and a server certificate for 127.0.0.1 with the openssl CLI.
fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let output = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=gatehouse test ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "server.ext",
    ]);
}

fn received(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tcp_reaches_rsyslog_octet_counted() {
    let Some(rsyslogd) = receiver("RSYSLOGD") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(&rsyslogd, dir.path(), false).await;
    let backend = Backend::sqlite().await;
    let log = log_over(&backend).await;
    append(&log, "sys", 0, 5).await;
    let checkpoint = log.checkpoint_now().await.unwrap().unwrap();
    let config = sinks(&format!(
        "[[sinks]]\nname = \"rsyslog\"\n[sinks.syslog]\naddress = \"127.0.0.1:{}\"\n\
         hostname = \"gw-1\"\n",
        rsyslog.port
    ));
    let running = Running::start(&log, &config);
    running.delivered(5).await;
    // Five events, then the checkpoint (a multi-line note: octet counting keeps
    // it one message).
    let text = wait_for_text(&dir.path().join("out.jsonl"), "\"app\"", 6).await;
    running.stop().await;
    rsyslog.stop().await;
    let messages = received(&text);
    assert_eq!(messages.len(), 6, "{text}");
    let stored = backend.store().read(0, 10).await.unwrap();
    for (message, record) in messages.iter().zip(&stored) {
        assert_eq!(message["pri"], "110"); // log audit, informational
        assert_eq!(message["app"], "gatehouse");
        assert_eq!(message["msgid"], "MCP_REQUEST");
        let sd = message["sd"].as_str().unwrap();
        assert!(sd.starts_with("[gatehouse@32473 "), "{sd}");
        assert!(
            sd.contains(&format!("eventId=\"{}\"", record.event.id)),
            "{sd}"
        );
        assert!(sd.contains(&format!("seq=\"{}\"", record.sequence)), "{sd}");
        let msg = message["msg"]
            .as_str()
            .unwrap()
            .trim_start_matches('\u{feff}');
        assert_eq!(msg.as_bytes(), record.event.canonical_json.as_slice());
    }
    assert_eq!(messages[5]["msgid"], "CHECKPOINT");
    let note = messages[5]["msg"].as_str().unwrap();
    let first_line = checkpoint.signed_note.lines().next().unwrap();
    assert!(note.contains(first_line), "{note}");
    // rsyslog escapes the note's line breaks (#012) but keeps it one message.
    assert!(note.contains("#012") || note.contains('\n'), "{note}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tls_reaches_rsyslog() {
    let Some(rsyslogd) = receiver("RSYSLOGD") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let rsyslog = Rsyslog::start(&rsyslogd, dir.path(), true).await;
    let backend = Backend::sqlite().await;
    let log = log_over(&backend).await;
    log.append(vec![crate::backend::event(
        "tls-1",
        "mallory",
        "rm",
        "VERDICT_DENY",
        1,
    )])
    .await
    .unwrap();
    append(&log, "tls", 2, 2).await;
    let config = sinks(&format!(
        "[[sinks]]\nname = \"rsyslog-tls\"\nshape = \"cef\"\n[sinks.syslog]\n\
         address = \"127.0.0.1:{}\"\n[sinks.syslog.tls]\nca_file = \"{}\"\n",
        rsyslog.port,
        dir.path().join("ca.pem").display()
    ));
    let running = Running::start(&log, &config);
    running.delivered(3).await;
    let text = wait_for_text(&dir.path().join("out.jsonl"), "\"app\"", 3).await;
    running.stop().await;
    rsyslog.stop().await;
    let messages = received(&text);
    assert_eq!(messages.len(), 3, "{text}");
    assert_eq!(messages[0]["pri"], "108"); // log audit, warning: a denial
    let msg = messages[0]["msg"]
        .as_str()
        .unwrap()
        .trim_start_matches('\u{feff}');
    assert!(msg.starts_with("CEF:0|Gatehouse|Gatehouse|"), "{msg}");
    assert!(msg.contains("externalId=tls-1"), "{msg}");
    assert!(msg.contains("act=VERDICT_DENY"), "{msg}");
    assert!(
        messages[2]["sd"]
            .as_str()
            .unwrap()
            .contains("eventId=\"tls-3\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tls_refuses_a_receiver_the_ca_did_not_sign() {
    let Some(rsyslogd) = receiver("RSYSLOGD") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let other = tempfile::tempdir().unwrap();
    certificates(other.path());
    let rsyslog = Rsyslog::start(&rsyslogd, dir.path(), true).await;
    let backend = Backend::sqlite().await;
    let log = log_over(&backend).await;
    append(&log, "x", 0, 1).await;
    let config = sinks(&format!(
        "[[sinks]]\nname = \"wrong-ca\"\n[sinks.retry]\ninitial = \"10ms\"\nmax = \"50ms\"\n\
         [sinks.syslog]\naddress = \"127.0.0.1:{}\"\n[sinks.syslog.tls]\nca_file = \"{}\"\n",
        rsyslog.port,
        other.path().join("ca.pem").display()
    ));
    let running = Running::start(&log, &config);
    let lag = running.retried(3).await;
    running.stop().await;
    rsyslog.stop().await;
    let _ = std::fs::read_to_string(dir.path().join("out.jsonl")).map(|text| {
        assert!(!text.contains("\"app\""), "{text}");
    });
    let cursor = backend.store().sink_cursor("wrong-ca").await.unwrap();
    assert_eq!(cursor.delivered, 0, "{lag:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_reconnects_when_rsyslog_restarts_and_loses_nothing() {
    let Some(rsyslogd) = receiver("RSYSLOGD") else {
        return;
    };
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rsyslog = Rsyslog::start(&rsyslogd, first.path(), false).await;
    let port = rsyslog.port;
    let backend = Backend::sqlite().await;
    let log = log_over(&backend).await;
    let config = sinks(&format!(
        "[[sinks]]\nname = \"restart\"\n[sinks.retry]\ninitial = \"10ms\"\nmax = \"100ms\"\n\
         [sinks.syslog]\naddress = \"127.0.0.1:{port}\"\n"
    ));
    let running = Running::start(&log, &config);
    append(&log, "before", 0, 2).await;
    running.delivered(2).await;
    wait_for_text(&first.path().join("out.jsonl"), "\"app\"", 2).await;
    // The receiver goes away while the sink holds its connection open.
    rsyslog.stop().await;
    let rsyslog = Rsyslog::start_at(&rsyslogd, second.path(), false, port).await;
    append(&log, "after", 0, 2).await;
    running.delivered(4).await;
    // The batch written after the restart reached the new receiver: it was not
    // written into the dead connection.
    let text = wait_for_text(&second.path().join("out.jsonl"), "\"app\"", 2).await;
    running.stop().await;
    rsyslog.stop().await;
    assert!(text.contains("eventId=\\\"after-0\\\""), "{text}");
    assert!(text.contains("eventId=\\\"after-1\\\""), "{text}");
}
