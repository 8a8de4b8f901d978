//! `mcp-load`: a bounded load generator for MCP `tools/call` over streamable HTTP.
//!
//! ```text
//! mcp-load --url http://127.0.0.1:PORT/mcp --tool echo --concurrency 16 --requests 20000 \
//!     [--warmup 200] [--era modern|legacy] [--list-tools] [--get-stream] [--label direct]
//!     [--max-seconds 10] [--rate 5000]
//! ```
//!
//! C workers each open one MCP client (legacy era: `initialize` + `notifications/initialized`,
//! with `--list-tools` one `tools/list` as SDK clients do before calling, and with `--get-stream`
//! the session's GET stream held open for its life, as SDK clients hold it; modern era: nothing,
//! every request is self-describing), share a budget of W warm-up calls, then
//! share the measured budget of N calls; each phase also ends when `--max-seconds` pass. By
//! default every client calls again as soon as it is answered (closed loop); with `--rate R` the
//! measured calls are due at R per second in all (open loop), and a call that falls due while
//! every client is busy counts its wait for one from when it was due. Every
//! reply is checked: a successful result whose first text block echoes the input, or else an
//! error. It prints one JSON line: label, era, concurrency, warmup (warm-up calls made), n_ok,
//! n_err (failed calls, warm-up and connection failures included), seconds, rps (n_ok per second
//! of the measured phase), rate (the offered rate, or null), and latency percentiles in
//! microseconds. Targets must be loopback addresses.

use std::io::Write as _;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use tokio::sync::Barrier;
use tokio::time::Instant;

mod reply;
mod session;

use session::{Era, Opening, Session, Target};

/// Largest accepted `--concurrency`.
const MAX_CONCURRENCY: usize = 4096;
/// Largest accepted `--requests` and `--warmup`.
const MAX_REQUESTS: u64 = 5_000_000;
/// Largest accepted `--max-seconds`.
const MAX_SECONDS: f64 = 600.0;
/// Highest accepted `--rate`, in calls per second.
const MAX_RATE: f64 = 1_000_000.0;
/// Highest latency the histogram tracks exactly, in microseconds; slower calls are clamped.
const HISTOGRAM_MAX_MICROS: u64 = 60_000_000;

/// Bounded MCP tools/call load generator (loopback targets only).
#[derive(Debug, Parser)]
#[command(name = "mcp-load", version, about)]
struct Args {
    /// The streamable-HTTP MCP endpoint, e.g. http://127.0.0.1:8080/v/bench/mcp.
    #[arg(long)]
    url: reqwest::Url,
    /// The tool to call; it must echo its text argument.
    #[arg(long, default_value = "echo")]
    tool: String,
    /// The name of the tool's text argument.
    #[arg(long, default_value = "text")]
    argument: String,
    /// Number of concurrent clients.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Measured calls, shared by all clients.
    #[arg(long, default_value_t = 2000)]
    requests: u64,
    /// Unmeasured warm-up calls before the measured phase, shared by all clients.
    #[arg(long, default_value_t = 100)]
    warmup: u64,
    /// Protocol era to speak.
    #[arg(long, value_enum, default_value_t = Era::Modern)]
    era: Era,
    /// Legacy era: list the tools once after the handshake, as SDK clients do.
    #[arg(long)]
    list_tools: bool,
    /// Legacy era: hold the session's GET stream open for its life, as SDK clients do.
    #[arg(long)]
    get_stream: bool,
    /// Free text copied into the report line.
    #[arg(long, default_value = "")]
    label: String,
    /// Upper bound on the measured phase, in seconds.
    #[arg(long, default_value_t = 60.0)]
    max_seconds: f64,
    /// Runtime threads of the load generator; 1 runs everything on one thread (cheapest).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Offered rate of the measured calls, per second in all (open loop); unset, every client
    /// calls again as soon as it is answered. Latency then shows the gateway's cost at a load
    /// the box carries, not the queue of a box run flat out.
    #[arg(long)]
    rate: Option<f64>,
}

/// A shared budget of calls, handed out one sequence number at a time.
#[derive(Debug)]
struct Budget {
    next: AtomicU64,
    limit: u64,
}

/// What the workers share: the call budgets, the measured-phase bound and the phase gate.
#[derive(Debug)]
struct Plan {
    warmup: Budget,
    measured: Budget,
    max_duration: Duration,
    /// Measured calls falling due per second, when the load is open.
    rate: Option<f64>,
    /// When the measured phase began: the first worker through the gate sets it, so every
    /// worker's calls fall due on one schedule.
    measuring_since: std::sync::OnceLock<Instant>,
    /// Crossed by every worker and the coordinator: connected, warmed up, measured.
    gate: Barrier,
}

/// One worker's outcome.
#[derive(Debug)]
struct Tally {
    latencies: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Budget {
    fn new(limit: u64) -> Self {
        Self {
            next: AtomicU64::new(0),
            limit,
        }
    }

    fn take(&self) -> Option<u64> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        (seq < self.limit).then_some(seq)
    }

    /// Returns how many sequence numbers were handed out.
    fn taken(&self) -> u64 {
        self.next.load(Ordering::Relaxed).min(self.limit)
    }
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        let latencies = Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3)?;
        Ok(Self {
            latencies,
            errors: 0,
            first_error: None,
        })
    }

    fn error(&mut self, error: &anyhow::Error) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{error:#}"));
        }
    }

    fn merge(&mut self, other: Self) -> anyhow::Result<()> {
        self.latencies.add(&other.latencies)?;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = validate(&args)
        .and_then(|()| runtime(args.threads))
        .and_then(|rt| rt.block_on(run(&args)));
    match outcome.and_then(|line| Ok(writeln!(std::io::stdout().lock(), "{line}")?)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mcp-load: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn validate(args: &Args) -> anyhow::Result<()> {
    let host = args.url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!(
            "refusing a target that is not on the loopback interface: {}",
            args.url
        );
    }
    if !(1..=MAX_CONCURRENCY).contains(&args.concurrency) {
        bail!("--concurrency must be between 1 and {MAX_CONCURRENCY}");
    }
    if args.requests > MAX_REQUESTS || args.warmup > MAX_REQUESTS {
        bail!("--requests and --warmup must be at most {MAX_REQUESTS}");
    }
    if !(args.max_seconds > 0.0 && args.max_seconds <= MAX_SECONDS) {
        bail!("--max-seconds must be in (0, {MAX_SECONDS}]");
    }
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    if args
        .rate
        .is_some_and(|rate| !(rate > 0.0 && rate <= MAX_RATE))
    {
        bail!("--rate must be in (0, {MAX_RATE}]");
    }
    Ok(())
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn run(args: &Args) -> anyhow::Result<String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    let target = Arc::new(Target::new(
        http,
        args.url.clone(),
        &args.tool,
        &args.argument,
    )?);
    let plan = Arc::new(Plan {
        warmup: Budget::new(args.warmup),
        measured: Budget::new(args.requests),
        max_duration: Duration::from_secs_f64(args.max_seconds),
        rate: args.rate,
        measuring_since: std::sync::OnceLock::new(),
        gate: Barrier::new(args.concurrency + 1),
    });
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..args.concurrency {
        let opening = Opening {
            era: args.era,
            list_tools: args.list_tools,
            get_stream: args.get_stream,
        };
        workers.spawn(work(target.clone(), opening, worker, plan.clone()));
    }
    plan.gate.wait().await;
    plan.gate.wait().await;
    let started = Instant::now();
    plan.gate.wait().await;
    let seconds = started.elapsed().as_secs_f64();
    let mut total = Tally::new()?;
    while let Some(joined) = workers.join_next().await {
        total.merge(joined??)?;
    }
    Ok(report(args, &total, plan.warmup.taken(), seconds).to_string())
}

/// One client: connect, take warm-up calls, take measured calls, then close; it crosses the
/// plan's gate after each phase even when its connection failed, so nobody waits forever.
async fn work(
    target: Arc<Target>,
    opening: Opening,
    worker: usize,
    plan: Arc<Plan>,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    let mut session = Session::open(target, opening, worker)
        .await
        .inspect_err(|error| tally.error(error))
        .ok();
    plan.gate.wait().await;
    let deadline = Instant::now() + plan.max_duration;
    if let Some(session) = session.as_mut() {
        while Instant::now() < deadline
            && let Some(seq) = plan.warmup.take()
        {
            if let Err(error) = session.call_echo(seq).await {
                tally.error(&error);
            }
        }
    }
    plan.gate.wait().await;
    let since = *plan.measuring_since.get_or_init(Instant::now);
    let deadline = since + plan.max_duration;
    if let Some(session) = session.as_mut() {
        while Instant::now() < deadline
            && let Some(seq) = plan.measured.take()
        {
            let sent = match plan.rate {
                Some(rate) => {
                    let due = since + Duration::from_secs_f64(seq as f64 / rate);
                    if due >= deadline {
                        break;
                    }
                    // A call taken before it is due waits for it, and is timed from when it
                    // goes (the timer wakes on millisecond ticks, which is not the gateway's
                    // cost); one taken late was waiting for a free client: timed from when due.
                    if due > Instant::now() {
                        tokio::time::sleep_until(due).await;
                        Instant::now()
                    } else {
                        due
                    }
                }
                None => Instant::now(),
            };
            match session.call_echo(plan.warmup.limit + seq).await {
                Ok(()) => {
                    let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                    tally.latencies.saturating_record(micros.max(1));
                }
                Err(error) => tally.error(&error),
            }
        }
    }
    plan.gate.wait().await;
    if let Some(session) = session {
        session.close().await;
    }
    Ok(tally)
}

fn report(args: &Args, total: &Tally, warmup: u64, seconds: f64) -> serde_json::Value {
    let latencies = &total.latencies;
    let n_ok = latencies.len();
    let quantile = |q: f64| (n_ok > 0).then(|| latencies.value_at_quantile(q));
    let rps = if seconds > 0.0 {
        n_ok as f64 / seconds
    } else {
        0.0
    };
    let mut line = serde_json::json!({
        "label": args.label,
        "era": args.era.as_str(),
        "list_tools": args.list_tools,
        "get_stream": args.get_stream,
        "concurrency": args.concurrency,
        "warmup": warmup,
        "n_ok": n_ok,
        "n_err": total.errors,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "rps": (rps * 10.0).round() / 10.0,
        "rate": args.rate,
        "p50_us": quantile(0.50),
        "p90_us": quantile(0.90),
        "p99_us": quantile(0.99),
        "max_us": (n_ok > 0).then(|| latencies.max()),
        "mean_us": (n_ok > 0).then(|| (latencies.mean() * 10.0).round() / 10.0),
    });
    if let Some(first) = &total.first_error {
        line["first_err"] = serde_json::Value::from(first.chars().take(300).collect::<String>());
    }
    line
}
