//! `gatehouse audit`: verify, prove, search and follow the audit log.
//!
//! The commands open the log's store directly (the SQLite file in the data directory, or the
//! PostgreSQL URL in `GATEHOUSE_AUDIT__STORE__POSTGRES_URL`) rather than asking a running
//! audit-svc: a verifier must not have to trust the service whose records it checks.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use audit_svc::{AuditLog, Filter, Leaf, SearchQuery, StoredEvent, VerifyingKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// What `gatehouse audit` can do.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Recomputes the hash chain and the Merkle tree and names the first broken record.
    Verify {
        #[command(flatten)]
        log: LogLocation,
        /// Also checks the log against this signed checkpoint (a C2SP note saved earlier).
        #[arg(long, value_name = "FILE")]
        from_checkpoint: Option<PathBuf>,
    },
    /// Exports an inclusion proof of one event that `gatehouse audit check-proof` verifies offline.
    Proof {
        #[command(flatten)]
        log: LogLocation,
        /// The event's id.
        event_id: String,
    },
    /// Verifies an exported proof offline, against a pinned verifier key.
    CheckProof {
        /// The proof file `gatehouse audit proof` wrote.
        file: PathBuf,
        /// The log's C2SP verifier key (`origin+id+base64`); defaults to the one in the proof.
        #[arg(long)]
        key: Option<String>,
    },
    /// Finds events by who, where, what and when; prints one JSON object per page.
    Search {
        #[command(flatten)]
        log: LogLocation,
        #[command(flatten)]
        filter: FilterArgs,
        /// Most events per page (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Continues a previous search (its `next_page_token`).
        #[arg(long, default_value = "")]
        page_token: String,
        /// Lists the newest events first.
        #[arg(long)]
        newest_first: bool,
    },
    /// Reports each SIEM sink's delivery: how far behind it is, how old its oldest undelivered
    /// event is, and how many events it refused for good (with `--dead-letters`, which ones).
    Sinks {
        #[command(flatten)]
        log: LogLocation,
        /// Only these sinks (default: every sink that ever delivered or refused an event).
        #[arg(long)]
        sink: Vec<String>,
        /// Lists each dead letter (sequence, event id, reason) rather than counting them.
        #[arg(long)]
        dead_letters: bool,
    },
    /// Verifies an archived batch offline: its checkpoint's signature, every record's hash and
    /// chain link, and the Merkle root.
    VerifyArchive {
        /// The `.jsonl` archive batch retention wrote.
        file: PathBuf,
        /// The log's C2SP verifier key; defaults to the key of the log in `--data`.
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        log: LogLocation,
    },
    /// Prints matching events as they are recorded, one JSON object per line.
    Tail {
        #[command(flatten)]
        log: LogLocation,
        #[command(flatten)]
        filter: FilterArgs,
        /// Starts after this sequence number instead of at the current head.
        #[arg(long)]
        after: Option<u64>,
    },
}

/// Where the audit log is.
#[derive(Debug, Args)]
pub(crate) struct LogLocation {
    /// The data directory `gatehouse up` uses.
    #[arg(long, default_value = ".gatehouse")]
    data: PathBuf,
}

/// Which events to select; repeated flags match any of their values.
#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// A member id.
    #[arg(long)]
    member: Vec<String>,
    /// An agent's client id.
    #[arg(long)]
    agent: Vec<String>,
    /// A virtual server.
    #[arg(long)]
    virtual_server: Vec<String>,
    /// A connector.
    #[arg(long)]
    connector: Vec<String>,
    /// An exposed tool name.
    #[arg(long)]
    tool: Vec<String>,
    /// A decision: `allow` or `deny`.
    #[arg(long, value_parser = ["allow", "deny"])]
    decision: Vec<String>,
    /// Earliest event time, RFC 3339 (inclusive).
    #[arg(long)]
    since: Option<String>,
    /// Latest event time, RFC 3339 (exclusive).
    #[arg(long)]
    until: Option<String>,
}

/// Runs one audit command; the exit code says whether the log (or proof) is intact.
pub(crate) async fn run(command: AuditCommand) -> ExitCode {
    match execute(command).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("gatehouse audit: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn execute(command: AuditCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        AuditCommand::Verify {
            log,
            from_checkpoint,
        } => {
            let config = config(&log.data)?;
            let audit = audit_svc::open(&config).await?;
            let checkpoint = match from_checkpoint {
                Some(path) => {
                    let note = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let key = audit.signer().verifying_key();
                    Some(
                        audit_svc::Checkpoint::from_note(&note, &key)
                            .context("the checkpoint's signature does not verify")?,
                    )
                }
                None => None,
            };
            let report = audit_svc::verify(audit.store(), checkpoint.as_ref()).await?;
            let summary = json!({
                "tree_size": report.tree_size,
                "root_hash": STANDARD.encode(report.root_hash),
                "chain_hash": STANDARD.encode(report.chain_hash),
                "pruned_through": report.pruned_through,
                "intact": report.problem.is_none(),
                "problem": report.problem.as_ref().map(ToString::to_string),
            });
            writeln!(out, "{summary:#}")?;
            Ok(if report.problem.is_none() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        AuditCommand::Proof { log, event_id } => {
            let audit = audit_svc::open(&config(&log.data)?).await?;
            let leaf = Leaf::EventId(
                event_id
                    .clone()
                    .try_into()
                    .context("not a valid event id")?,
            );
            let proof = match audit.inclusion_proof(&leaf, None).await {
                Ok(proof) => proof,
                // The newest events may not be under a checkpoint yet: sign one now.
                Err(_) => {
                    audit.checkpoint_now().await?;
                    audit.inclusion_proof(&leaf, None).await?
                }
            };
            let key = audit.signer().verifying_key();
            let bundle = json!({
                "event_id": event_id,
                "canonical_json": String::from_utf8_lossy(&proof.event.event.canonical_json),
                "tlog_proof": proof.tlog_proof(),
                "verifier_key": audit_svc::verifier_key(audit.signer().origin(), &key),
            });
            writeln!(out, "{bundle:#}")?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::CheckProof { file, key } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let bundle: Value = serde_json::from_str(&text).context("the proof is not JSON")?;
            let field = |name: &str| {
                bundle[name]
                    .as_str()
                    .map(str::to_owned)
                    .with_context(|| format!("the proof has no `{name}`"))
            };
            let verifier = match key {
                Some(key) => key,
                None => {
                    eprintln!(
                        "gatehouse audit: no --key given: trusting the key inside the proof (pin the log's key to rely on this)"
                    );
                    field("verifier_key")?
                }
            };
            let key = parse_verifier_key(&verifier)?;
            let (index, path, note) = parse_tlog_proof(&field("tlog_proof")?)?;
            let checkpoint = audit_svc::verify_inclusion(
                field("canonical_json")?.as_bytes(),
                index,
                &path,
                &note,
                &key,
            )?;
            writeln!(
                out,
                "{:#}",
                json!({"valid": true, "leaf_index": index, "tree_size": checkpoint.tree_size,
                       "origin": checkpoint.origin})
            )?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Search {
            log,
            filter,
            limit,
            page_token,
            newest_first,
        } => {
            let audit = audit_svc::open(&config(&log.data)?).await?;
            let query = SearchQuery::new(filter.filter()?, limit, &page_token, newest_first)?;
            let page = audit.search(&query).await?;
            let events: Vec<Value> = page.events.iter().map(document).collect();
            writeln!(
                out,
                "{:#}",
                json!({"events": events, "next_page_token": page.next_page_token})
            )?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Sinks {
            log,
            sink,
            dead_letters,
        } => {
            let audit = audit_svc::open(&config(&log.data)?).await?;
            let names = if sink.is_empty() {
                audit.store().sinks().await?
            } else {
                sink
            };
            let mut reports = Vec::with_capacity(names.len());
            for name in names {
                let lag = audit_svc::sinks::lag(audit.store(), &name).await?;
                let letters = audit_svc::sinks::dead_letters(audit.store(), &name).await?;
                let mut report = json!({
                    "sink": name,
                    "head": lag.head,
                    "delivered": lag.delivered,
                    "events_behind": lag.events_behind,
                    "oldest_undelivered_age_ms": lag.oldest_undelivered_age.as_millis(),
                    "dead_letters": letters.len(),
                });
                if dead_letters {
                    report["dead_letters"] = letters
                        .iter()
                        .map(|letter| {
                            json!({"sequence": letter.sequence, "event_id": letter.event_id,
                                   "reason": letter.reason, "failed_at_micros": letter.failed_at_micros})
                        })
                        .collect();
                }
                reports.push(report);
            }
            writeln!(out, "{:#}", json!({ "sinks": reports }))?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::VerifyArchive { file, key, log } => {
            let key = match key {
                Some(key) => parse_verifier_key(&key)?,
                None => audit_svc::open(&config(&log.data)?)
                    .await?
                    .signer()
                    .verifying_key(),
            };
            match audit_svc::verify_archive(&file, &key) {
                Ok(report) => {
                    writeln!(
                        out,
                        "{:#}",
                        json!({"intact": true, "first": report.first, "last": report.last,
                               "tree_size": report.checkpoint.tree_size})
                    )?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(problem) => {
                    writeln!(
                        out,
                        "{:#}",
                        json!({"intact": false, "problem": problem.to_string()})
                    )?;
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AuditCommand::Tail { log, filter, after } => {
            let audit = audit_svc::open(&config(&log.data)?).await?;
            let filter = filter.filter()?;
            let mut position = match after {
                Some(after) => after,
                None => audit.head().await?,
            };
            drop(out);
            tail(&audit, &filter, &mut position).await
        }
    }
}

/// Polls the store: the recording service may be another process, so there is no in-process feed.
async fn tail(audit: &AuditLog, filter: &Filter, position: &mut u64) -> anyhow::Result<ExitCode> {
    loop {
        let page = audit.read(*position, 500).await?;
        let mut out = std::io::stdout().lock();
        for stored in &page {
            *position = stored.sequence;
            if filter.matches(&stored.event) {
                writeln!(out, "{}", document(stored))?;
            }
        }
        out.flush()?;
        drop(out);
        if page.is_empty() {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            }
        }
    }
}

fn document(stored: &StoredEvent) -> Value {
    let event: Value = serde_json::from_slice(&stored.event.canonical_json).unwrap_or(Value::Null);
    json!({"sequence": stored.sequence, "recorded_at_micros": stored.recorded_at_micros, "event": event})
}

impl FilterArgs {
    fn filter(self) -> anyhow::Result<Filter> {
        let micros = |text: Option<String>| -> anyhow::Result<Option<i64>> {
            text.map(|text| {
                let time = humantime::parse_rfc3339_weak(&text)
                    .with_context(|| format!("`{text}` is not an RFC 3339 time"))?;
                let since = time
                    .duration_since(std::time::UNIX_EPOCH)
                    .context("times before 1970 are not in the log")?;
                i64::try_from(since.as_micros()).context("time out of range")
            })
            .transpose()
        };
        Ok(Filter {
            member_ids: self.member,
            agent_client_ids: self.agent,
            virtual_servers: self.virtual_server,
            connectors: self.connector,
            tools: self.tool,
            verdicts: self
                .decision
                .iter()
                .map(|decision| format!("VERDICT_{}", decision.to_uppercase()))
                .collect(),
            start_micros: micros(self.since)?,
            end_micros: micros(self.until)?,
            ..Filter::default()
        })
    }
}

/// Reads audit-svc's settings the way the service does, rooted at `data`.
fn config(data: &Path) -> anyhow::Result<audit_svc::Config> {
    Ok(
        audit_svc::Config::load(svc_kit::config_sources(audit_svc::ENV_PREFIX, None))?
            .with_data_dir(data),
    )
}

/// Parses a C2SP verifier key `<name>+<hex id>+<base64(0x01 || ed25519 key)>`.
fn parse_verifier_key(text: &str) -> anyhow::Result<VerifyingKey> {
    // The name and id hold no `+`; the base64 key may.
    let encoded = text
        .splitn(3, '+')
        .nth(2)
        .context("a verifier key has three `+`-separated parts")?;
    let bytes = STANDARD
        .decode(encoded)
        .context("the verifier key is not base64")?;
    let (algorithm, key) = bytes.split_first().context("the verifier key is empty")?;
    anyhow::ensure!(
        *algorithm == 0x01,
        "only Ed25519 verifier keys are supported"
    );
    let key: [u8; 32] = key.try_into().context("an Ed25519 key has 32 bytes")?;
    VerifyingKey::from_bytes(&key).context("not an Ed25519 public key")
}

/// Splits a C2SP `tlog-proof` into its leaf index, audit path and signed checkpoint note.
fn parse_tlog_proof(text: &str) -> anyhow::Result<(u64, Vec<audit_svc::Hash>, String)> {
    let (head, note) = text
        .split_once("\n\n")
        .context("the proof has no checkpoint")?;
    let mut lines = head.lines();
    anyhow::ensure!(
        lines.next() == Some("c2sp.org/tlog-proof@v1"),
        "not a c2sp.org/tlog-proof@v1 proof"
    );
    let index = lines
        .next()
        .and_then(|line| line.strip_prefix("index "))
        .context("the proof has no index line")?
        .parse()
        .context("the index is not a number")?;
    let path = lines
        .map(|line| {
            let bytes = STANDARD
                .decode(line)
                .context("an audit path hash is not base64")?;
            audit_svc::Hash::try_from(bytes.as_slice())
                .context("an audit path hash is not 32 bytes")
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((index, path, note.to_owned()))
}
