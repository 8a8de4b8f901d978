//! Stdio connectors: a sandboxed child process in its own process group, speaking MCP on
//! stdin/stdout, with its stderr kept for administrators. A connector that injects a
//! credential gets it as environment variables, fetched afresh at every launch.

use std::{process::ExitStatus, sync::Arc, time::Duration};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use rmcp::transport::async_rw::AsyncRwTransport;
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStderr},
};
use tokio_util::sync::CancellationToken;

use super::{
    Error, StdioConfig,
    handler::RelayHandler,
    origin::OriginTracking,
    sandbox,
    session::{Session, handshake},
    supervisor::Supervisor,
};

/// How long a program gets between `SIGTERM` and `SIGKILL` of its process group.
const TERMINATE_GRACE: Duration = Duration::from_secs(2);
/// How long a program whose handshake failed gets to exit on its own before it is terminated.
const EXIT_SETTLE: Duration = Duration::from_millis(500);

/// The stderr of a stdio program, line by line.
type StderrLines = Lines<BufReader<ChildStderr>>;

/// A running stdio program: the direct child, leader of its own process group.
#[derive(Debug)]
pub(crate) struct Process {
    child: Child,
    pid: Option<u32>,
}

/// Launches the program of `config` and opens an MCP session over its stdio.
pub(crate) async fn open(
    supervisor: &Arc<Supervisor>,
    config: &StdioConfig,
    handler: RelayHandler,
    session_ct: CancellationToken,
) -> Result<Session, Error> {
    let config = &with_credential(supervisor, config).await?;
    let (mut process, stderr) = launch(supervisor, config)?;
    if let Some(mut stderr) = stderr {
        if config.sandbox.enabled {
            tokio::select! {
                () = read_sandbox_status(supervisor, &mut stderr) => {}
                () = session_ct.cancelled() => {}
            }
        }
        tokio::spawn(collect_stderr(Arc::clone(supervisor), stderr));
    }
    let (Some(stdin), Some(stdout)) = (process.child.stdin.take(), process.child.stdout.take())
    else {
        process.terminate().await;
        let source = std::io::ErrorKind::BrokenPipe.into();
        return Err(Error::Launch {
            command: config.command.clone(),
            source,
        });
    };
    let transport = OriginTracking::new(AsyncRwTransport::new_client(stdout, stdin));
    let handshake = tokio::select! {
        opened = handshake(handler, transport, config.era, config.connect_timeout, session_ct) => opened,
        _ = process.child.wait() => Err(Error::ExitedEarly { status: String::new() }),
    };
    match handshake {
        Ok(service) => Ok(Session::new(service, Some(process))),
        Err(error) => {
            // A program that dies closes stdout first; give it a moment to be reaped, so the
            // error names its exit status rather than the closed pipe.
            let exited = tokio::time::timeout(EXIT_SETTLE, process.child.wait())
                .await
                .is_ok();
            let status = process.terminate().await;
            Err(if exited {
                Error::ExitedEarly { status }
            } else {
                error
            })
        }
    }
}

/// Returns `config` with the connector's credential added to the program's environment (the
/// launch log names variables, never values).
async fn with_credential(
    supervisor: &Supervisor,
    config: &StdioConfig,
) -> Result<StdioConfig, Error> {
    let mut config = config.clone();
    if let Some(source) = supervisor.credential() {
        let variables = source.environment().await.map_err(Error::Credential)?;
        for (name, value) in variables {
            config.env.insert(name, value.expose().to_owned());
        }
    }
    Ok(config)
}

/// Spawns the (sandboxed) program and logs the launch with its full command line.
fn launch(
    supervisor: &Arc<Supervisor>,
    config: &StdioConfig,
) -> Result<(Process, Option<StderrLines>), Error> {
    let mut launch = sandbox::prepare(supervisor.name(), config)?;
    tracing::info!(
        connector = supervisor.name(),
        argv = ?launch.argv,
        env = ?launch.env_names,
        cwd = %launch.cwd.display(),
        sandbox = config.sandbox.enabled,
        "launching stdio connector"
    );
    let mut child = launch.command.spawn().map_err(|source| Error::Launch {
        command: config.command.clone(),
        source,
    })?;
    let stderr = child
        .stderr
        .take()
        .map(|stderr| BufReader::new(stderr).lines());
    let pid = child.id();
    supervisor.launched(pid, sandbox::disabled_state(config));
    Ok((Process { child, pid }, stderr))
}

/// Reads stderr up to the launcher's status line, so the Landlock state is known (and
/// warned about) before the session is published.
async fn read_sandbox_status(supervisor: &Supervisor, stderr: &mut StderrLines) {
    while let Ok(Some(line)) = stderr.next_line().await {
        supervisor.stderr_line(&line);
        if line.starts_with(sandbox::STATUS_PREFIX) {
            return;
        }
    }
}

/// Feeds the program's stderr, line by line, into the supervisor until the pipe closes.
async fn collect_stderr(supervisor: Arc<Supervisor>, mut lines: StderrLines) {
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => supervisor.stderr_line(&line),
            Ok(None) => break,
            Err(error) => {
                supervisor.stderr_line(&format!("<stderr unreadable: {error}>"));
                break;
            }
        }
    }
}

impl Process {
    /// Waits for the direct child to exit.
    pub(crate) async fn wait(&mut self) {
        let _ = self.child.wait().await;
    }

    /// Terminates the whole process group and reaps the direct child.
    ///
    /// `SIGTERM` to the group; after a grace period `SIGKILL` to every member but the leader
    /// (the sandbox launcher then reaps them and exits); after another, `SIGKILL` to the group.
    ///
    /// Returns how the direct child ended, for instance `program exit status: 3`.
    pub(crate) async fn terminate(&mut self) -> String {
        let Some(pgid) = self
            .pid
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw)
        else {
            return describe(self.child.wait().await);
        };
        if matches!(self.child.try_wait(), Ok(None)) {
            signal_group(pgid, Signal::SIGTERM);
            if tokio::time::timeout(TERMINATE_GRACE, self.child.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    pgid = pgid.as_raw(),
                    "stdio connector ignored SIGTERM; killing it"
                );
                kill_members(pgid);
                let _ = tokio::time::timeout(TERMINATE_GRACE, self.child.wait()).await;
            }
        }
        // Whatever is left in the group (the leader included) dies now.
        signal_group(pgid, Signal::SIGKILL);
        describe(self.child.wait().await)
    }
}

/// Describes how the direct child ended.
fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => format!("program {status}"),
        Err(error) => format!("program could not be reaped: {error}"),
    }
}

/// Sends `SIGKILL` to every member of group `pgid` except its leader.
fn kill_members(pgid: Pid) {
    for process in sandbox::processes() {
        if process.group == pgid && process.pid != pgid {
            let _ = nix::sys::signal::kill(process.pid, Signal::SIGKILL);
        }
    }
}

fn signal_group(pgid: Pid, signal: Signal) {
    match killpg(pgid, signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(errno) => {
            tracing::warn!(pgid = pgid.as_raw(), ?signal, %errno, "cannot signal process group")
        }
    }
}
