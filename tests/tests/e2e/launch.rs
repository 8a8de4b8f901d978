//! Starting a real `gatehouse up` for a test: the binary built beside the test programs, a
//! gateway file and data directory, extra arguments and environment, and its summary read off
//! standard output until every backend is announced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// How long `gatehouse up` may take to announce itself on a loaded CI machine.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A `gatehouse up` to start.
pub(super) struct Launch<'a> {
    config: &'a Path,
    data: &'a Path,
    listen: String,
    args: Vec<&'a str>,
    env: Vec<(&'a str, &'a str)>,
    log: Option<PathBuf>,
    filter: &'a str,
}

/// A running `gatehouse up` (stopped when dropped).
pub(super) struct Started {
    pub(super) child: Child,
    /// The public origin, `http://127.0.0.1:PORT`.
    pub(super) origin: String,
    /// The gRPC address of each announced backend (`authz-svc`, `admin`, …) as a URL.
    backends: BTreeMap<String, String>,
}

/// Returns the `gatehouse` binary built beside the test programs.
pub(super) fn gatehouse() -> PathBuf {
    let binary = PathBuf::from(super::audit::ECHO).with_file_name("gatehouse");
    assert!(
        binary.is_file(),
        "{} is missing: build it first (`cargo build --workspace --bins`)",
        binary.display()
    );
    binary
}

impl<'a> Launch<'a> {
    /// Serves the gateway file `config` with its state in `data`, on an ephemeral port.
    pub(super) fn new(config: &'a Path, data: &'a Path) -> Self {
        Self {
            config,
            data,
            listen: "127.0.0.1:0".to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            log: None,
            filter: "warn",
        }
    }

    /// Listens on `addr` (a test that must know the origin before the file is written).
    pub(super) fn listen(mut self, addr: String) -> Self {
        self.listen = addr;
        self
    }

    /// Passes `args` to `gatehouse up` as well.
    pub(super) fn args(mut self, args: &[&'a str]) -> Self {
        self.args.extend_from_slice(args);
        self
    }

    /// Sets the environment variable `name` (the declared agents' secrets, service tokens).
    pub(super) fn env(mut self, name: &'a str, value: &'a str) -> Self {
        self.env.push((name, value));
        self
    }

    /// Writes the log (standard error) to `path` at `filter`, for tests that read it.
    pub(super) fn log_to(mut self, path: PathBuf, filter: &'a str) -> Self {
        self.log = Some(path);
        self.filter = filter;
        self
    }

    /// Starts it and waits until its summary has announced every backend.
    pub(super) async fn start(self) -> Started {
        let stderr = match &self.log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::null(),
        };
        let mut child = Command::new(gatehouse())
            .args(["up", "--listen", &self.listen, "--config"])
            .arg(self.config)
            .arg("--data")
            .arg(self.data)
            .args(&self.args)
            .envs(self.env.iter().copied())
            .env("GATEHOUSE_LOG_FILTER", self.filter)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("gatehouse up");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (origin, backends) = tokio::time::timeout(READY_WITHIN, async {
            let mut origin = None;
            let mut backends = BTreeMap::new();
            while let Some(line) = lines.next_line().await.expect("stdout line") {
                if let Some(ready) = line.strip_prefix("gatehouse ready at ") {
                    origin = Some(ready.trim().to_owned());
                }
                if let Some((name, rest)) = line.trim_start().split_once(' ')
                    && let Some(addr) = rest.trim_start().strip_prefix("grpc://")
                {
                    let addr = addr.split_whitespace().next().expect("address");
                    backends.insert(name.to_owned(), format!("http://{addr}"));
                    // The admin API is announced last.
                    if name == "admin" {
                        return (origin.expect("ready first"), backends);
                    }
                }
            }
            panic!("gatehouse exited before it was ready");
        })
        .await
        .expect("gatehouse ready in time");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Started {
            child,
            origin,
            backends,
        }
    }
}

impl Started {
    /// Returns the gRPC URL of the backend announced as `name`.
    pub(super) fn grpc(&self, name: &str) -> String {
        self.backends
            .get(name)
            .unwrap_or_else(|| panic!("gatehouse announced no {name}: {:?}", self.backends))
            .clone()
    }
}
