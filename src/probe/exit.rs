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

use std::os::fd::{AsRawFd, BorrowedFd};
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

pub fn use_pidfd() -> bool {
    matches!(sources(), Sources::Auto | Sources::Pidfd) && pidfd_info_supported()
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

/// struct pidfd_info of <linux/pidfd.h>, the first version (64 bytes:
/// what PIDFD_INFO_EXIT needs).
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    ids: [u32; 11],
    exit_code: i32,
}

const PIDFD_INFO_PID: u64 = 1 << 0;
const PIDFD_INFO_EXIT: u64 = 1 << 3;
/// _IOWR(PIDFS_IOCTL_MAGIC = 0xFF, 11, struct pidfd_info).
const PIDFD_GET_INFO: libc::c_ulong =
    (3 << 30) | ((std::mem::size_of::<PidfdInfo>() as libc::c_ulong) << 16) | (0xFF << 8) | 11;

fn get_info(fd: BorrowedFd<'_>, mask: u64) -> Option<PidfdInfo> {
    let mut info = PidfdInfo {
        mask,
        ..Default::default()
    };
    // SAFETY: PIDFD_GET_INFO reads and writes one struct pidfd_info of the
    // size encoded in the request, which is the size of `info`.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            PIDFD_GET_INFO as _,
            &mut info as *mut PidfdInfo,
        )
    };
    (r == 0).then_some(info)
}

/// Does this kernel answer PIDFD_GET_INFO with exit information (6.15+)?
/// Asked once, on procward's own pidfd, and the release checked: 6.13 and
/// 6.14 have the ioctl but not PIDFD_INFO_EXIT.
pub fn pidfd_info_supported() -> bool {
    static S: OnceLock<bool> = OnceLock::new();
    *S.get_or_init(|| {
        let release = rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned();
        let mut nums = release
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u32>().ok());
        let version = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
        if version < (6, 15) {
            return false;
        }
        let Ok(fd) = rustix::process::pidfd_open(
            rustix::process::getpid(),
            rustix::process::PidfdFlags::empty(),
        ) else {
            return false;
        };
        use std::os::fd::AsFd;
        get_info(fd.as_fd(), PIDFD_INFO_PID).is_some_and(|i| i.mask & PIDFD_INFO_PID != 0)
    })
}

/// The wait status the kernel recorded for the (reaped) process of `fd`.
pub fn from_pidfd(fd: BorrowedFd<'_>) -> Option<i32> {
    if !use_pidfd() {
        return None;
    }
    let info = get_info(fd, PIDFD_INFO_EXIT)?;
    (info.mask & PIDFD_INFO_EXIT != 0).then_some(info.exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_encodes_a_64_byte_struct() {
        assert_eq!(std::mem::size_of::<PidfdInfo>(), 64);
        assert_eq!(PIDFD_GET_INFO, 0xC040_FF0B);
    }

    /// On this kernel (6.15+): the exit status of a child read through
    /// its pidfd after it was reaped, as a non-parent would.
    #[test]
    fn a_reaped_process_tells_its_exit_status_through_its_pidfd() {
        if !pidfd_info_supported() {
            eprintln!("skipped: PIDFD_INFO_EXIT needs Linux 6.15");
            return;
        }
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
        child.wait().unwrap();
        use std::os::fd::AsFd;
        let status = get_info(fd.as_fd(), PIDFD_INFO_EXIT).unwrap();
        assert!(status.mask & PIDFD_INFO_EXIT != 0);
        assert_eq!(
            crate::monitor::ExitStatus::from_wait(status.exit_code).code,
            Some(3)
        );
    }
}
