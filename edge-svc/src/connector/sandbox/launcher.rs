//! The `gatehouse-sandbox` launcher: restricts its own process, then `exec`s the program.
//!
//! Usage: `gatehouse-sandbox [--memory BYTES] [--cpu SECONDS] [--processes N] [--files N]
//! [--read PATH]... [--write PATH]... -- PROGRAM [ARG]...`
//!
//! The launcher never touches stdin or stdout (they carry MCP); it writes exactly one status
//! line to stderr (`gatehouse-sandbox: landlock=enforced|partial|unsupported`) before `exec`.

use std::{
    ffi::OsString,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::ExitCode,
};

use landlock::{
    ABI, Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus,
};
use nix::sys::resource::{Resource, setrlimit};

use super::{STATUS_PREFIX, uid};
use crate::connector::LandlockState;

/// Newest Landlock ABI whose rights are requested; older kernels get a best-effort subset.
const ABI_VERSION: ABI = ABI::V5;

/// Directories and files every program may read and execute.
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/bin",
    "/sbin",
    "/proc",
    "/sys",
    "/etc/alternatives",
    "/etc/ca-certificates",
    "/etc/ssl",
    "/etc/pki",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/passwd",
    "/etc/group",
    "/etc/os-release",
    "/etc/mime.types",
];

/// Device nodes every program may read and write.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

/// Exit status when the arguments are unusable (EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// Exit status when a restriction cannot be applied (EX_OSERR).
const EXIT_RESTRICT: u8 = 71;
/// Exit status when the program cannot be executed (as shells do).
const EXIT_EXEC: u8 = 127;

/// What the launcher was asked to apply and run.
#[derive(Debug, Default)]
struct Spec {
    memory: Option<u64>,
    cpu: Option<u64>,
    processes: Option<u64>,
    files: Option<u64>,
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
    program: OsString,
    args: Vec<OsString>,
}

/// Runs the launcher with `args` (without argv\[0\]); returns only when something failed.
pub fn launch(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let spec = match parse(args.into_iter()) {
        Ok(spec) => spec,
        Err(message) => {
            eprintln!("gatehouse-sandbox: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(message) = apply_limits(&spec) {
        eprintln!("gatehouse-sandbox: cannot apply limits: {message}");
        return ExitCode::from(EXIT_RESTRICT);
    }
    match confine(&spec) {
        Ok(state) => eprintln!("{STATUS_PREFIX}{}", state.word()),
        Err(message) => {
            eprintln!("gatehouse-sandbox: cannot apply landlock: {message}");
            return ExitCode::from(EXIT_RESTRICT);
        }
    }
    let error = std::process::Command::new(&spec.program)
        .args(&spec.args)
        .exec();
    eprintln!(
        "gatehouse-sandbox: cannot execute {}: {error}",
        spec.program.to_string_lossy()
    );
    ExitCode::from(EXIT_EXEC)
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

/// Sets `RLIMIT_DATA`, `RLIMIT_CPU`, `RLIMIT_NOFILE` and `RLIMIT_NPROC` (soft = hard).
fn apply_limits(spec: &Spec) -> Result<(), String> {
    let limit = |resource: Resource, value: Option<u64>| match value {
        Some(value) => {
            setrlimit(resource, value, value).map_err(|errno| format!("{resource:?}: {errno}"))
        }
        None => Ok(()),
    };
    limit(Resource::RLIMIT_DATA, spec.memory)?;
    limit(Resource::RLIMIT_CPU, spec.cpu)?;
    limit(Resource::RLIMIT_NOFILE, spec.files)?;
    // The kernel counts every task of the real user, so the budget is added to what exists.
    let processes = spec
        .processes
        .map(|budget| budget.saturating_add(user_tasks()));
    limit(Resource::RLIMIT_NPROC, processes)
}

/// Counts the tasks (threads included) that belong to this process's real user.
fn user_tasks() -> u64 {
    let Some(me) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| uid(&status, 0))
    else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("status")).ok())
        .filter(|status| uid(status, 0).as_ref() == Some(&me))
        .filter_map(|status| {
            super::field(&status, "Threads:", 0).and_then(|n| n.parse::<u64>().ok())
        })
        .sum()
}

/// Restricts this process with Landlock to the system, declared and writable paths.
fn confine(spec: &Spec) -> Result<LandlockState, String> {
    let read = AccessFs::from_read(ABI_VERSION);
    let all = AccessFs::from_all(ABI_VERSION);
    let mut ruleset = Ruleset::default()
        .handle_access(all)
        .and_then(Ruleset::create)
        .map_err(|error| error.to_string())?;
    let system = SYSTEM_READ.iter().map(Path::new);
    for path in system.chain(spec.read.iter().map(PathBuf::as_path)) {
        ruleset = allow(ruleset, path, read)?;
    }
    for path in DEVICES
        .iter()
        .map(Path::new)
        .chain(spec.write.iter().map(PathBuf::as_path))
    {
        ruleset = allow(ruleset, path, all)?;
    }
    let status = ruleset.restrict_self().map_err(|error| error.to_string())?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockState::Enforced,
        RulesetStatus::PartiallyEnforced => LandlockState::Partial,
        RulesetStatus::NotEnforced => LandlockState::Unsupported,
    })
}

/// Adds a rule granting `access` beneath `path`; a path that does not exist is skipped.
fn allow(
    ruleset: landlock::RulesetCreated,
    path: &Path,
    access: BitFlags<AccessFs>,
) -> Result<landlock::RulesetCreated, String> {
    let Ok(metadata) = std::fs::metadata(path) else {
        return Ok(ruleset);
    };
    let access = if metadata.is_dir() {
        access
    } else {
        access & AccessFs::from_file(ABI_VERSION)
    };
    let fd = PathFd::new(path).map_err(|error| format!("{}: {error}", path.display()))?;
    ruleset
        .add_rule(PathBeneath::new(fd, access))
        .map_err(|error| format!("{}: {error}", path.display()))
}
