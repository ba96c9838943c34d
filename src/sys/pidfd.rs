//! pidfds: opening one for a pinned process, the exit information the
//! kernel keeps on it (PIDFD_GET_INFO), and registering a descriptor with
//! the event loop.

use super::proc;
use crate::model::ProcRef;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;
use std::time::Duration;

/// A descriptor in tokio's reactor, for `interest`.
pub fn async_fd(
    fd: OwnedFd,
    interest: tokio::io::Interest,
) -> std::io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is a valid descriptor that only its owner closes,
    // and its `as_raw_fd` always returns that descriptor; the AsyncFd owns
    // it for as long as it is registered.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, interest) }
        .map_err(|e| e.into_parts().1)
}

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
            match proc::read_pinned(p, &mut buf) {
                Some(_) => Pidfd::Open(fd),
                None => Pidfd::Gone,
            }
        }
        Err(e) if e == rustix::io::Errno::SRCH => Pidfd::Gone,
        Err(_) => Pidfd::Unsupported,
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
pub fn info_supported() -> bool {
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

/// The wait status the kernel recorded for the (reaped) process of `fd`,
/// when this kernel keeps it.
pub fn exit_code(fd: BorrowedFd<'_>) -> Option<i32> {
    let info = get_info(fd, PIDFD_INFO_EXIT)?;
    (info.mask & PIDFD_INFO_EXIT != 0).then_some(info.exit_code)
}

/// How a wait for a process's end came out.
pub enum Ended {
    /// It ended; its pidfd (kept for the exit status, see probe::exit).
    Pidfd(std::os::fd::OwnedFd),
    /// It was already gone when the watch began.
    Gone,
    /// No pidfd can be had (kernel before 5.3, seccomp): poll instead.
    Unsupported,
}

/// Wait until the pinned process has ended.
async fn wait_end(p: ProcRef) -> Ended {
    match tokio::task::spawn_blocking(move || open_pidfd(p)).await {
        Ok(Pidfd::Open(fd)) => {
            let afd = async_fd(fd, tokio::io::Interest::READABLE);
            match afd {
                Ok(afd) => {
                    let _ = afd.readable().await;
                    Ended::Pidfd(afd.into_inner())
                }
                Err(_) => Ended::Unsupported,
            }
        }
        Ok(Pidfd::Gone) => Ended::Gone,
        Ok(Pidfd::Unsupported) | Err(_) => Ended::Unsupported,
    }
}

/// Wait until the pinned process has ended. `false` when no pidfd can be
/// had (kernel before 5.3, seccomp): the caller watches by polling.
pub async fn exited(p: ProcRef) -> bool {
    !matches!(wait_end(p).await, Ended::Unsupported)
}

/// Wait until the pinned process has ended, by its pidfd or else by
/// reading its stat every `every`.
pub async fn gone(p: ProcRef, every: Duration) {
    if exited(p).await {
        return;
    }
    loop {
        let alive = tokio::task::spawn_blocking(move || {
            let mut buf = Vec::with_capacity(512);
            super::proc::read_pinned(p, &mut buf).is_some_and(|s| !s.is_dead())
        })
        .await
        .unwrap_or(false);
        if !alive {
            return;
        }
        tokio::time::sleep(every).await;
    }
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
        if !info_supported() {
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
            crate::model::ExitStatus::from_wait(status.exit_code).code,
            Some(3)
        );
    }
}
