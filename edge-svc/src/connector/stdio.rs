//! Stdio connectors: a sandboxed child process in its own process group, speaking MCP on
//! stdin/stdout, with its stderr kept for administrators.

use std::{process::ExitStatus, sync::Arc, time::Duration};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use rmcp::transport::async_rw::AsyncRwTransport;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, ChildStderr},
};
use tokio_util::sync::CancellationToken;

use super::{
    Error, StdioConfig,
    handler::RelayHandler,
    origin::OriginTracking,
    sandbox,
    supervisor::{Session, Supervisor, handshake},
};

/// How long a program gets between `SIGTERM` and `SIGKILL` of its process group.
const TERMINATE_GRACE: Duration = Duration::from_secs(2);

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
    let mut process = launch(supervisor, config)?;
    let (Some(stdin), Some(stdout)) = (process.child.stdin.take(), process.child.stdout.take())
    else {
        process.terminate().await;
        return Err(Error::Launch {
            command: config.command.clone(),
            source: std::io::ErrorKind::BrokenPipe.into(),
        });
    };
    let transport = OriginTracking::new(AsyncRwTransport::new_client(stdout, stdin));
    let opened = tokio::select! {
        opened = handshake(handler, transport, config.era, session_ct) => opened,
        status = process.child.wait() => {
            Err(exited_early(status))
        }
    };
    match opened {
        Ok(service) => Ok(Session::new(service, Some(process))),
        Err(error) => {
            process.terminate().await;
            Err(error)
        }
    }
}

/// Spawns the (sandboxed) program, logs the launch, and starts collecting its stderr.
fn launch(supervisor: &Arc<Supervisor>, config: &StdioConfig) -> Result<Process, Error> {
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
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(collect_stderr(Arc::clone(supervisor), stderr));
    }
    let pid = child.id();
    supervisor.launched(pid, sandbox::disabled_state(config));
    Ok(Process { child, pid })
}

/// Feeds the program's stderr, line by line, into the supervisor until the pipe closes.
async fn collect_stderr(supervisor: Arc<Supervisor>, stderr: ChildStderr) {
    let mut lines = BufReader::new(stderr).lines();
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

fn exited_early(status: std::io::Result<ExitStatus>) -> Error {
    let status = match status {
        Ok(status) => status.to_string(),
        Err(error) => format!("lost ({error})"),
    };
    Error::ExitedEarly { status }
}

impl Process {
    /// Waits for the direct child to exit and describes how it ended.
    pub(crate) async fn wait(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => format!("program {status}"),
            Err(error) => format!("program lost: {error}"),
        }
    }

    /// Terminates the whole process group: `SIGTERM`, a grace period, then `SIGKILL`; reaps
    /// the direct child.
    pub(crate) async fn terminate(&mut self) {
        let Some(pid) = self
            .pid
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw)
        else {
            let _ = self.child.wait().await;
            return;
        };
        if matches!(self.child.try_wait(), Ok(None)) {
            signal_group(pid, Signal::SIGTERM);
            if tokio::time::timeout(TERMINATE_GRACE, self.child.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    pid = pid.as_raw(),
                    "stdio connector ignored SIGTERM; killing its process group"
                );
            }
        }
        // Stragglers that left the leader behind (or ignored SIGTERM) die with the group.
        signal_group(pid, Signal::SIGKILL);
        if let Err(error) = self.child.wait().await {
            tracing::warn!(pid = pid.as_raw(), %error, "cannot reap stdio connector");
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
