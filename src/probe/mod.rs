//! Probes: /proc discovery and stat reads (procfs.rs), and the pidfd exit
//! watch.

pub mod events;
pub mod exit;
pub mod procfs;
pub mod stall;
pub mod watch;

use crate::monitor::ProcRef;
use std::os::fd::OwnedFd;

/// Outcome of opening a pidfd for a pinned process.
pub enum Pidfd {
    /// Open, and the pid still belongs to the pinned process.
    Open(OwnedFd),
    /// The process is already gone (or its pid now belongs to another).
    Gone,
    /// pidfd_open is not available (kernel before 5.3, or seccomp): poll.
    Unsupported,
}

/// Open a pidfd for `p` and verify, after opening, that the pid still has
/// the pinned start time (so a reused pid is never watched). Blocking.
pub fn open_pidfd(p: ProcRef) -> Pidfd {
    if std::env::var_os("PROCWARD_NO_PIDFD").is_some() {
        return Pidfd::Unsupported;
    }
    let Some(pid) = rustix::process::Pid::from_raw(p.pid as i32) else {
        return Pidfd::Gone;
    };
    match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::NONBLOCK) {
        Ok(fd) => {
            // Still the pinned process (a zombie's pidfd is readable at
            // once, which reports the exit), or its pid was reused.
            let mut buf = Vec::with_capacity(512);
            match procfs::read_pinned(p, &mut buf) {
                Some(_) => Pidfd::Open(fd),
                None => Pidfd::Gone,
            }
        }
        Err(e) if e == rustix::io::Errno::SRCH => Pidfd::Gone,
        Err(_) => Pidfd::Unsupported,
    }
}
