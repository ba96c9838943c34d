//! Socket facts no safe crate call gives.

use std::os::fd::AsRawFd;

/// Bytes a TCP socket has sent that its peer has not acknowledged yet
/// (SIOCOUTQ); `None` when the kernel does not say.
pub fn unacked_bytes(s: &impl AsRawFd) -> Option<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one int.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    (r == 0 && n >= 0).then_some(n as u64)
}
