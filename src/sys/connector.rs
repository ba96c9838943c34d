//! The kernel's process-events connector (netlink, `NETLINK_CONNECTOR`,
//! `CN_IDX_PROC`): an event at every fork and exec on the host, so that a
//! process procward waits for is found when it starts instead of at the
//! next /proc scan. Needs CAP_NET_ADMIN in the initial user and PID
//! namespaces; elsewhere `open` fails and procward keeps scanning.
//!
//! Hand-written (about 150 lines) rather than the `proc-connector` crate:
//! procward needs two event types of ten and the overrun signal, both
//! were compared on the same test (docs/exit-and-discovery.md).

use std::io;
use std::os::fd::OwnedFd;

const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;

const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;

/// What procward wants to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEvent {
    /// A new process (not a thread) from fork/clone: its pid.
    Fork(u32),
    /// A process called execve: its pid.
    Exec(u32),
}

pub struct ProcEvents {
    fd: OwnedFd,
}

impl ProcEvents {
    /// Subscribe to fork and exec events (filtered in the kernel since
    /// Linux 6.6; older kernels send every event type and the others are
    /// skipped here).
    pub fn open() -> io::Result<ProcEvents> {
        use rustix::net::netlink::{self, SocketAddrNetlink};
        use rustix::net::{AddressFamily, SocketFlags, SocketType};
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(netlink::CONNECTOR),
        )?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, CN_IDX_PROC))?;
        // A larger buffer rides out bursts (ENOBUFS means a resync scan).
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, 1 << 20);
        // nlmsghdr + cn_msg + { op, event mask }
        let payload_len = 8usize;
        let total = NLMSG_HDRLEN + CN_MSG_LEN + payload_len;
        let mut msg = Vec::with_capacity(total);
        msg.extend_from_slice(&(total as u32).to_ne_bytes());
        msg.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&std::process::id().to_ne_bytes());
        msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
        msg.extend_from_slice(&(payload_len as u16).to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
        msg.extend_from_slice(&(PROC_EVENT_FORK | PROC_EVENT_EXEC).to_ne_bytes());
        rustix::net::send(&fd, &msg, rustix::net::SendFlags::empty())?;
        Ok(ProcEvents { fd })
    }

    /// Block until events arrive; `Err` with ENOBUFS when the kernel
    /// dropped some (the caller rescans /proc).
    pub fn recv(&self, buf: &mut [u8], out: &mut Vec<ProcEvent>) -> io::Result<()> {
        let (_, n) = rustix::net::recv(&self.fd, &mut *buf, rustix::net::RecvFlags::empty())?;
        let n = n.min(buf.len());
        parse(&buf[..n], out);
        Ok(())
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The fork and exec events in one datagram (bounded by its length; a
/// malformed message ends the parse).
pub fn parse(mut b: &[u8], out: &mut Vec<ProcEvent>) {
    while b.len() >= NLMSG_HDRLEN {
        let Some(len) = u32_at(b, 0).map(|l| l as usize) else {
            return;
        };
        if len < NLMSG_HDRLEN || len > b.len() {
            return;
        }
        let msg = &b[NLMSG_HDRLEN..len];
        // cn_msg: idx, val, seq, ack, len(u16), flags(u16); then proc_event:
        // what(u32), cpu(u32), timestamp(u64), data.
        if u32_at(msg, 0) == Some(CN_IDX_PROC) {
            let ev = &msg[CN_MSG_LEN.min(msg.len())..];
            let data = 16;
            match u32_at(ev, 0) {
                Some(PROC_EVENT_FORK) => {
                    // parent_pid, parent_tgid, child_pid, child_tgid
                    if let (Some(pid), Some(tgid)) = (u32_at(ev, data + 8), u32_at(ev, data + 12)) {
                        if pid == tgid {
                            out.push(ProcEvent::Fork(pid));
                        }
                    }
                }
                Some(PROC_EVENT_EXEC) => {
                    // process_pid, process_tgid
                    if let Some(tgid) = u32_at(ev, data + 4) {
                        out.push(ProcEvent::Exec(tgid));
                    }
                }
                _ => {}
            }
        }
        let step = (len + 3) & !3;
        if step >= b.len() {
            return;
        }
        b = &b[step..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(what: u32, data: &[u32]) -> Vec<u8> {
        let mut ev = Vec::new();
        ev.extend_from_slice(&what.to_ne_bytes());
        ev.extend_from_slice(&0u32.to_ne_bytes());
        ev.extend_from_slice(&0u64.to_ne_bytes());
        for d in data {
            ev.extend_from_slice(&d.to_ne_bytes());
        }
        let total = NLMSG_HDRLEN + CN_MSG_LEN + ev.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(total as u32).to_ne_bytes());
        m.extend_from_slice(&[0u8; 12]);
        m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        m.extend_from_slice(&[0u8; 12]);
        m.extend_from_slice(&ev);
        m
    }

    #[test]
    fn parses_fork_and_exec_and_skips_threads_and_garbage() {
        let mut out = Vec::new();
        let mut b = message(PROC_EVENT_EXEC, &[42, 42]);
        b.extend(message(PROC_EVENT_FORK, &[1, 1, 43, 43]));
        b.extend(message(PROC_EVENT_FORK, &[1, 1, 44, 43])); // a thread
        b.extend(message(0x8000_0000, &[42, 42, 0, 17, 1, 1])); // exit
        parse(&b, &mut out);
        assert_eq!(out, vec![ProcEvent::Exec(42), ProcEvent::Fork(43)]);
        // Truncated and hostile lengths end the parse without a panic.
        for cut in 0..b.len() {
            let mut o = Vec::new();
            parse(&b[..cut], &mut o);
        }
        let mut bad = b.clone();
        bad[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        parse(&bad, &mut out);
    }

    /// As root in the initial namespaces: an exec is seen.
    #[test]
    fn an_exec_is_reported() {
        let Ok(ev) = ProcEvents::open() else {
            eprintln!("skipped: the process-events connector needs CAP_NET_ADMIN");
            return;
        };
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let mut buf = vec![0u8; 8192];
        let mut out = Vec::new();
        for _ in 0..1000 {
            use rustix::event::{poll, PollFd, PollFlags, Timespec};
            let mut fds = [PollFd::new(&ev.fd, PollFlags::IN)];
            let second = Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            };
            if poll(&mut fds, Some(&second)).unwrap_or(0) == 0 {
                break;
            }
            let _ = ev.recv(&mut buf, &mut out);
            if out.contains(&ProcEvent::Exec(pid)) {
                return;
            }
        }
        panic!("no exec event for {pid}: {out:?}");
    }
}
