//! The `gatehouse-sandbox` launcher: restricts its own process, starts the program, and stays
//! as a minimal init for it.
//!
//! Usage: `gatehouse-sandbox [--memory BYTES] [--cpu SECONDS] [--processes N] [--files N]
//! [--read PATH]... [--write PATH]... -- PROGRAM [ARG]...`
//!
//! The launcher applies limits and Landlock to itself, then spawns the program (which inherits
//! them) and becomes its child subreaper: every descendant orphaned inside the connector is
//! reparented to the launcher and reaped by it, so no zombie outlives the connector even where
//! PID 1 does not reap. `SIGTERM`/`SIGINT`/`SIGHUP` are forwarded to the program. When the
//! program exits, the launcher kills whatever it left behind, reaps it, and exits with the
//! program's status (`128 + signal` when it was killed). It never touches the MCP traffic: it
//! hands stdin/stdout to the program and points its own at `/dev/null`. It writes exactly one
//! status line to stderr first: `gatehouse-sandbox: landlock=enforced|partial|unsupported`.

use std::{
    ffi::OsString,
    fs::OpenOptions,
    path::PathBuf,
    process::{Command, ExitCode},
};

use nix::{
    errno::Errno,
    sys::{
        prctl::set_child_subreaper,
        signal::{SigSet, Signal, kill},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::{Pid, dup2_stdin, dup2_stdout, getpgrp, getpid},
};

use super::{STATUS_PREFIX, confine, processes};

/// Exit status when the arguments are unusable (EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// Exit status when a restriction cannot be applied (EX_OSERR).
const EXIT_RESTRICT: u8 = 71;
/// Exit status when the program cannot be started (as shells do).
const EXIT_EXEC: u8 = 127;

/// What the launcher was asked to apply and run.
#[derive(Debug, Default)]
pub(super) struct Spec {
    pub(super) memory: Option<u64>,
    pub(super) cpu: Option<u64>,
    pub(super) processes: Option<u64>,
    pub(super) files: Option<u64>,
    pub(super) read: Vec<PathBuf>,
    pub(super) write: Vec<PathBuf>,
    program: OsString,
    args: Vec<OsString>,
}

/// Argument (argv\[1\]) that turns a Gatehouse binary into the sandbox launcher.
pub const LAUNCHER_ARG: &str = "__gatehouse-sandbox";

/// Runs the launcher with `args` (without argv\[0\]) and returns the program's exit status.
pub fn launch(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    ExitCode::from(run(args))
}

/// Acts as the sandbox launcher, and exits, when argv\[1\] is [`LAUNCHER_ARG`]; otherwise
/// returns at once.
///
/// Call it first in `main` of every binary that hosts Gatehouse: when no `gatehouse-sandbox`
/// binary is installed, Gatehouse runs its own executable as the launcher.
pub fn run_if_requested() {
    let mut args = std::env::args_os().skip(1).peekable();
    if args.next_if(|arg| arg == LAUNCHER_ARG).is_some() {
        std::process::exit(i32::from(run(args)));
    }
}

fn run(args: impl IntoIterator<Item = OsString>) -> u8 {
    let spec = match parse(args.into_iter()) {
        Ok(spec) => spec,
        Err(message) => return fail(EXIT_USAGE, &message),
    };
    if let Err(message) = confine::apply_limits(&spec) {
        return fail(EXIT_RESTRICT, &format!("cannot apply limits: {message}"));
    }
    match confine::confine(&spec) {
        Ok(state) => eprintln!("{STATUS_PREFIX}{}", state.word()),
        Err(message) => return fail(EXIT_RESTRICT, &format!("cannot apply landlock: {message}")),
    }
    let signals = forwarded_signals();
    if let Err(errno) = signals
        .thread_block()
        .and_then(|()| set_child_subreaper(true))
    {
        return fail(
            EXIT_RESTRICT,
            &format!("cannot become the program's init: {errno}"),
        );
    }
    // std resets the signal mask of the child, so the program starts with default signals.
    let program = match Command::new(&spec.program).args(&spec.args).spawn() {
        Ok(child) => child.id(),
        Err(error) => {
            let program = spec.program.to_string_lossy();
            return fail(EXIT_EXEC, &format!("cannot execute {program}: {error}"));
        }
    };
    let program = Pid::from_raw(i32::try_from(program).unwrap_or(i32::MAX));
    release_stdio();
    supervise(program, &signals)
}

fn fail(code: u8, message: &str) -> u8 {
    eprintln!("gatehouse-sandbox: {message}");
    code
}

fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Spec, String> {
    let mut spec = Spec::default();
    while let Some(flag) = args.next() {
        let flag = flag.to_string_lossy().into_owned();
        if flag == "--" {
            spec.program = args.next().ok_or("missing program after --")?;
            spec.args = args.collect();
            return Ok(spec);
        }
        let value = args
            .next()
            .ok_or_else(|| format!("missing value for {flag}"))?;
        match flag.as_str() {
            "--memory" => spec.memory = Some(number(&flag, &value)?),
            "--cpu" => spec.cpu = Some(number(&flag, &value)?),
            "--processes" => spec.processes = Some(number(&flag, &value)?),
            "--files" => spec.files = Some(number(&flag, &value)?),
            "--read" => spec.read.push(PathBuf::from(value)),
            "--write" => spec.write.push(PathBuf::from(value)),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Err("missing -- PROGRAM".to_owned())
}

fn number(flag: &str, value: &OsString) -> Result<u64, String> {
    value
        .to_string_lossy()
        .parse()
        .map_err(|_| format!("{flag} needs a number"))
}

/// Returns the signals the launcher waits for instead of dying of them.
fn forwarded_signals() -> SigSet {
    let mut signals = SigSet::empty();
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        signals.add(signal);
    }
    signals
}

/// Points the launcher's own stdin/stdout at `/dev/null`, so that Gatehouse sees the MCP
/// stream end exactly when the program (and its children) close it.
fn release_stdio() {
    match OpenOptions::new().read(true).write(true).open("/dev/null") {
        Ok(null) => {
            if let Err(errno) = dup2_stdin(&null).and_then(|()| dup2_stdout(&null)) {
                eprintln!("gatehouse-sandbox: cannot release stdio: {errno}");
            }
        }
        Err(error) => eprintln!("gatehouse-sandbox: cannot open /dev/null: {error}"),
    }
}

/// Forwards termination signals and reaps children until the program exits, then cleans up.
fn supervise(program: Pid, signals: &SigSet) -> u8 {
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => {
                if let Some(status) = reap(program) {
                    kill_leftovers();
                    return exit_code(status);
                }
            }
            Ok(_) => {
                let _ = kill(program, Signal::SIGTERM);
            }
            Err(errno) => {
                eprintln!("gatehouse-sandbox: cannot wait for signals: {errno}");
                let _ = kill(program, Signal::SIGKILL);
            }
        }
    }
}

/// Reaps every child that has exited; returns the program's status once it has.
fn reap(program: Pid) -> Option<WaitStatus> {
    let mut ended = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return ended,
            Ok(status) if status.pid() == Some(program) => ended = Some(status),
            Ok(_) => {}
        }
    }
}

/// Kills every process the program left behind (its group and orphans reparented here) and
/// reaps them, until the launcher has no child left.
fn kill_leftovers() {
    let me = getpid();
    let group = getpgrp();
    loop {
        for pid in leftovers(me, group) {
            let _ = kill(pid, Signal::SIGKILL);
        }
        match waitpid(None, None) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Lists processes in the launcher's group or parented by it, except the launcher.
fn leftovers(me: Pid, group: Pid) -> Vec<Pid> {
    processes()
        .into_iter()
        .filter(|process| process.pid != me && (process.parent == me || process.group == group))
        .map(|process| process.pid)
        .collect()
}

fn exit_code(status: WaitStatus) -> u8 {
    match status {
        WaitStatus::Exited(_, code) => u8::try_from(code).unwrap_or(u8::MAX),
        WaitStatus::Signaled(_, signal, _) => {
            128u8.saturating_add(u8::try_from(signal as i32).unwrap_or(0))
        }
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::parse;

    fn args(list: &[&str]) -> impl Iterator<Item = OsString> {
        list.iter()
            .map(OsString::from)
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn flags_and_program_are_parsed() {
        let spec = parse(args(&[
            "--memory", "1024", "--read", "/opt/x", "--write", "/tmp/w", "--", "node", "--", "a",
        ]))
        .unwrap();
        assert_eq!(spec.memory, Some(1024));
        assert_eq!(spec.read, [std::path::PathBuf::from("/opt/x")]);
        assert_eq!(spec.write, [std::path::PathBuf::from("/tmp/w")]);
        assert_eq!(spec.program, "node");
        assert_eq!(spec.args, ["--", "a"]);
    }

    #[test]
    fn unusable_arguments_are_refused() {
        assert!(parse(args(&["--memory", "lots", "--", "x"])).is_err());
        assert!(parse(args(&["--bogus", "1", "--", "x"])).is_err());
        assert!(parse(args(&["--cpu", "1"])).is_err());
        assert!(parse(args(&["--"])).is_err());
    }
}
