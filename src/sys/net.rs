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

/// Is the TCP connection still one whose send queue SIOCOUTQ counts:
/// established, or closed by the peer only (CLOSE_WAIT)? A reset
/// connection's queue is purged, so its count says nothing. Read from
/// TCP_INFO, which (unlike a read or SO_ERROR) takes no pending error.
pub fn tcp_queue_intact(s: &impl AsRawFd) -> bool {
    const TCP_ESTABLISHED: u8 = 1;
    const TCP_CLOSE_WAIT: u8 = 8;
    let mut info = [0u8; 256];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: TCP_INFO writes at most `len` bytes of a struct tcp_info,
    // whose first byte is tcpi_state.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr() as *mut libc::c_void,
            &mut len,
        )
    };
    r == 0 && len >= 1 && matches!(info[0], TCP_ESTABLISHED | TCP_CLOSE_WAIT)
}
