//! The stdio sandbox: how Gatehouse builds a sandboxed launch, and the launcher that applies it.
//!
//! `unsafe_code` is forbidden, so no `pre_exec` hook can restrict the child between `fork`
//! and `exec`. Instead Gatehouse runs the small `gatehouse-sandbox` launcher (the binary
//! calls [`launch`]), which restricts *itself* — resource limits, then Landlock — and then
//! `exec`s the connector's program, which inherits every restriction.
//!
//! The launch always gets a clean environment: exactly the declared variables, plus
//! `PATH=/usr/local/bin:/usr/bin:/bin`, and `HOME`/`TMPDIR` set to the working directory
//! when those are not declared. Landlock grants read and execute on the system directories
//! interpreters need (`/usr`, `/lib`, `/lib64`, `/bin`, `/sbin`, `/proc`, `/sys`, selected
//! files of `/etc`) and the declared `paths`, plus read and write on the working directory,
//! the declared `writable_paths` and a few device nodes (`/dev/null`, `/dev/urandom`, …).

use std::{
    ffi::OsString,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    process::Stdio,
};

use nix::unistd::Pid;
use tokio::process::Command;

use super::{Error, LandlockState, StdioConfig};

mod confine;
mod launcher;

pub use launcher::{LAUNCHER_ARG, launch, run_if_requested};

/// Environment variable naming the launcher binary when the config does not.
pub const LAUNCHER_ENV: &str = "GATEHOUSE_SANDBOX_LAUNCHER";
/// File name of the launcher binary.
pub const LAUNCHER_NAME: &str = "gatehouse-sandbox";
/// Prefix of the one status line the launcher writes to stderr before `exec`.
pub(crate) const STATUS_PREFIX: &str = "gatehouse-sandbox: landlock=";

/// Default `PATH` of a stdio program that declares none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A launch ready to spawn, and how to describe it in the launch log.
#[derive(Debug)]
pub(crate) struct Launch {
    /// The command to spawn (the launcher, or the program itself when the sandbox is off).
    pub(crate) command: Command,
    /// The full argv as spawned, for the launch log.
    pub(crate) argv: Vec<String>,
    /// Names (never values) of the environment variables the program receives.
    pub(crate) env_names: Vec<String>,
    /// The working directory.
    pub(crate) cwd: PathBuf,
}

/// Builds the launch of `config` for connector `name`: clean environment, own process group,
/// piped stdio, and (unless disabled) the sandbox launcher in front of the program.
pub(crate) fn prepare(name: &str, config: &StdioConfig) -> Result<Launch, Error> {
    let cwd = working_directory(name, config)?;
    let mut argv: Vec<OsString> = Vec::new();
    if config.sandbox.enabled {
        argv.extend(locate_launcher(config)?);
        argv.extend(launcher_flags(config, &cwd));
        argv.push("--".into());
    }
    argv.push(config.command.clone().into());
    argv.extend(config.args.iter().map(OsString::from));

    let env = environment(config, &cwd);
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(key, value)| (key, value)))
        .current_dir(&cwd)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(Launch {
        command,
        argv: argv
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect(),
        env_names: env.into_iter().map(|(key, _)| key).collect(),
        cwd,
    })
}

/// Returns the Landlock state a launch of `config` reports when the sandbox is off.
pub(crate) fn disabled_state(config: &StdioConfig) -> Option<LandlockState> {
    (!config.sandbox.enabled).then_some(LandlockState::Disabled)
}

/// One entry of the process table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessEntry {
    /// Process id.
    pub(crate) pid: Pid,
    /// Parent process id.
    pub(crate) parent: Pid,
    /// Process group id.
    pub(crate) group: Pid,
    /// Whether the process has exited and awaits reaping.
    pub(crate) zombie: bool,
}

/// Reads the process table from `/proc` (entries that vanish meanwhile are skipped).
pub(crate) fn processes() -> Vec<ProcessEntry> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the parenthesised command name: state, ppid, pgrp, ...
            let (_, rest) = stat.rsplit_once(')')?;
            let mut fields = rest.split_whitespace();
            let zombie = fields.next()? == "Z";
            let parent = fields.next()?.parse().ok()?;
            let group = fields.next()?.parse().ok()?;
            Some(ProcessEntry {
                pid: Pid::from_raw(pid),
                parent: Pid::from_raw(parent),
                group: Pid::from_raw(group),
                zombie,
            })
        })
        .collect()
}

/// Returns whether Gatehouse runs with effective user id 0, where `RLIMIT_NPROC` is void.
pub(crate) fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| uid(&status, 1))
        .is_some_and(|euid| euid == "0")
}

/// Returns the user id at `index` (0 real, 1 effective) of a `/proc/*/status` text.
fn uid(status: &str, index: usize) -> Option<String> {
    field(status, "Uid:", index).map(str::to_owned)
}

/// Returns the whitespace-separated value at `index` of a `/proc/*/status` line.
fn field<'a>(status: &'a str, name: &str, index: usize) -> Option<&'a str> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().nth(index))
}

/// Returns the declared environment plus the documented defaults, sorted by name.
fn environment(config: &StdioConfig, cwd: &Path) -> Vec<(String, String)> {
    let mut env = config.env.clone();
    let cwd = cwd.to_string_lossy().into_owned();
    env.entry("PATH".to_owned())
        .or_insert_with(|| DEFAULT_PATH.to_owned());
    env.entry("HOME".to_owned()).or_insert_with(|| cwd.clone());
    env.entry("TMPDIR".to_owned()).or_insert(cwd);
    env.into_iter().collect()
}

/// Returns the flags telling the launcher which limits and paths to apply.
fn launcher_flags(config: &StdioConfig, cwd: &Path) -> Vec<OsString> {
    let limits = &config.limits;
    let mut flags: Vec<OsString> = vec![
        "--memory".into(),
        limits.memory_bytes.to_string().into(),
        "--cpu".into(),
        limits.cpu_seconds.to_string().into(),
        "--processes".into(),
        limits.processes.to_string().into(),
        "--files".into(),
        limits.open_files.to_string().into(),
        "--write".into(),
        cwd.as_os_str().to_owned(),
    ];
    for path in &config.paths {
        flags.push("--read".into());
        flags.push(path.as_os_str().to_owned());
    }
    for path in &config.writable_paths {
        flags.push("--write".into());
        flags.push(path.as_os_str().to_owned());
    }
    flags
}

/// Returns the configured working directory, or creates the private default one.
fn working_directory(name: &str, config: &StdioConfig) -> Result<PathBuf, Error> {
    if let Some(cwd) = &config.cwd {
        return Ok(cwd.clone());
    }
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = std::env::temp_dir().join("gatehouse-connectors").join(safe);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&path)
        .map_err(|source| Error::WorkingDirectory {
            path: path.display().to_string(),
            source,
        })?;
    Ok(path)
}

/// Returns the launcher's command: the configured path, then `$GATEHOUSE_SANDBOX_LAUNCHER`,
/// then `gatehouse-sandbox` next to (or above) the running executable, and otherwise the
/// running executable itself with [`LAUNCHER_ARG`] (see [`run_if_requested`]).
fn locate_launcher(config: &StdioConfig) -> Result<Vec<OsString>, Error> {
    if let Some(path) = &config.sandbox.launcher {
        return Ok(vec![path.clone().into_os_string()]);
    }
    if let Some(path) = std::env::var_os(LAUNCHER_ENV) {
        return Ok(vec![path]);
    }
    let exe = std::env::current_exe().map_err(|_| Error::LauncherNotFound)?;
    let sibling = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(LAUNCHER_NAME))
        .find(|candidate| candidate.is_file());
    Ok(match sibling {
        Some(launcher) => vec![launcher.into_os_string()],
        None => vec![exe.into_os_string(), LAUNCHER_ARG.into()],
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{environment, field, launcher_flags};
    use crate::connector::StdioConfig;

    #[test]
    fn environment_is_declared_variables_plus_safe_defaults() {
        let mut config = StdioConfig::new("x", Vec::<String>::new());
        config.env.insert("TOKEN".into(), "t".into());
        config.env.insert("HOME".into(), "/home/app".into());
        let env = environment(&config, Path::new("/work/c"));
        let names: Vec<_> = env.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["HOME", "PATH", "TMPDIR", "TOKEN"]);
        assert_eq!(env[0].1, "/home/app");
        assert_eq!(env[2].1, "/work/c");
    }

    #[test]
    fn launcher_flags_carry_limits_and_paths() {
        let mut config = StdioConfig::new("x", Vec::<String>::new());
        config.paths.push("/opt/python".into());
        let flags: Vec<_> = launcher_flags(&config, Path::new("/work/c"))
            .into_iter()
            .map(|flag| flag.to_string_lossy().into_owned())
            .collect();
        let joined = flags.join(" ");
        assert!(joined.contains("--memory 2147483648"), "{joined}");
        assert!(joined.contains("--write /work/c"), "{joined}");
        assert!(joined.contains("--read /opt/python"), "{joined}");
    }

    #[test]
    fn status_fields_are_read_by_position() {
        let status = "Name:\tx\nUid:\t1000\t0\t0\t0\nThreads:\t4\n";
        assert_eq!(field(status, "Uid:", 0), Some("1000"));
        assert_eq!(field(status, "Uid:", 1), Some("0"));
        assert_eq!(field(status, "Threads:", 0), Some("4"));
    }
}
