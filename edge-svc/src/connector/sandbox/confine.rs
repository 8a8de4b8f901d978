//! What the launcher applies to itself before it starts the program: resource limits, then
//! Landlock.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreated,
    RulesetCreatedAttr, RulesetStatus,
};
use nix::sys::resource::{Resource, setrlimit};

use super::{launcher::Spec, uid};
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

/// Sets `RLIMIT_DATA`, `RLIMIT_CPU`, `RLIMIT_NOFILE` and `RLIMIT_NPROC` (soft = hard).
pub(super) fn apply_limits(spec: &Spec) -> Result<(), String> {
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
pub(super) fn confine(spec: &Spec) -> Result<LandlockState, String> {
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
    ruleset: RulesetCreated,
    path: &Path,
    access: BitFlags<AccessFs>,
) -> Result<RulesetCreated, String> {
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
