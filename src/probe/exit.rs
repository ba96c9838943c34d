//! How a process procward did not start ended: its exit status, the signal
//! that killed it, whether it dumped core. Only a parent learns that from
//! waitpid(2); procward learns it, in this order:
//!
//! 1. `pidfd`: `PIDFD_GET_INFO` with `PIDFD_INFO_EXIT` on the pidfd procward
//!    already holds for the exit watch (Linux 6.15+). The kernel records
//!    the status when the process is reaped, for a pidfd opened before the
//!    exit, which is the case here. Any privilege, any namespace.
//! 2. `zombie`: between its end and its reaping a process is a zombie, and
//!    field 52 of /proc/PID/stat (`exit_code`, Linux 3.5+) holds its wait
//!    status; procward looks at the process at once when its pidfd turns
//!    readable. Works on any kernel, but only while the parent has not
//!    reaped it yet (often a millisecond): a best effort.
//! 3. otherwise "unknown": fields absent, PROCWARD_EXIT_* empty.
//!
//! `PROCWARD_EXIT_SOURCE` = `pidfd`, `zombie` or `none` forces one (tests,
//! or a kernel that misbehaves); the default uses every source available.
//! The netlink process-events connector would add a source for kernels
//! before 6.15 but needs CAP_NET_ADMIN in the initial namespaces; it is
//! used for discovery only (docs/exit-and-discovery.md).

use std::os::fd::BorrowedFd;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sources {
    /// pidfd info when the kernel has it, then the zombie's stat.
    Auto,
    Pidfd,
    Zombie,
    None,
}

/// The sources in use (from `PROCWARD_EXIT_SOURCE`, read once).
pub fn sources() -> Sources {
    static S: OnceLock<Sources> = OnceLock::new();
    *S.get_or_init(|| match std::env::var("PROCWARD_EXIT_SOURCE").as_deref() {
        Ok("pidfd") => Sources::Pidfd,
        Ok("zombie") => Sources::Zombie,
        Ok("none") => Sources::None,
        _ => Sources::Auto,
    })
}

fn use_pidfd() -> bool {
    matches!(sources(), Sources::Auto | Sources::Pidfd) && crate::sys::pidfd::info_supported()
}

pub fn use_zombie() -> bool {
    matches!(sources(), Sources::Auto | Sources::Zombie)
}

/// What procward says at start-up (PW1001 field `exit_source`).
pub fn describe() -> &'static str {
    match (use_pidfd(), use_zombie()) {
        (true, true) => "pidfd info, zombie stat",
        (true, false) => "pidfd info",
        (false, true) => "zombie stat",
        (false, false) => "none",
    }
}

/// The wait status the kernel recorded for the (reaped) process of `fd`.
pub fn from_pidfd(fd: BorrowedFd<'_>) -> Option<i32> {
    if !use_pidfd() {
        return None;
    }
    crate::sys::pidfd::exit_code(fd)
}
