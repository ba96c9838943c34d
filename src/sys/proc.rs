//! /proc reads of one process: its stat (with one read into a reused
//! buffer), its pinned state, its children. Blocking.
//!
//! Hand-written rather than the `procfs` crate: procward needs nine fields
//! of `stat` (and field 52, the exit code) read into a reused buffer, and
//! the bench measures both readers on the same processes (BENCHMARKS.md,
//! "/proc reader"): this one is faster per stat and per walk of /proc and
//! allocates less. `procfs` stays a dev-dependency of the bench only.

use crate::model::ProcRef;
use std::io;

pub const PF_KTHREAD: u64 = 0x0020_0000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    pub flags: u64,
    pub utime: u64,
    pub stime: u64,
    /// Clock ticks after boot.
    pub starttime: u64,
    /// Field 52: the wait status of a zombie (0 while it runs; absent on
    /// kernels before 3.5).
    pub exit_code: Option<i32>,
}

impl Stat {
    pub fn proc_ref(&self) -> ProcRef {
        ProcRef {
            pid: self.pid,
            start: self.starttime,
        }
    }
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parse the contents of /proc/PID/stat. The command name is inside
/// parentheses and may itself contain spaces and parentheses.
pub fn parse_stat(buf: &[u8]) -> Option<Stat> {
    let open = buf.iter().position(|&b| b == b'(')?;
    let close = buf.iter().rposition(|&b| b == b')')?;
    let pid: u32 = std::str::from_utf8(&buf[..open])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = String::from_utf8_lossy(&buf[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(buf.get(close + 2..)?).ok()?;
    // The fields after comm, taken in one pass with no list built (a scan
    // reads thousands of these): f0 = state (field 3), f1 = ppid (4),
    // f2 = pgrp (5), f6 = flags (9), f11 = utime (14), f12 = stime (15),
    // f19 = starttime (22), f49 = exit_code (52).
    let mut f = rest.split_ascii_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    let flags = f.nth(3)?.parse().ok()?;
    let utime = f.nth(4)?.parse().ok()?;
    let stime = f.next()?.parse().ok()?;
    let starttime = f.nth(6)?.parse().ok()?;
    let exit_code = f.nth(29).and_then(|v| v.parse().ok());
    Some(Stat {
        pid,
        comm,
        state,
        ppid,
        pgrp,
        flags,
        utime,
        stime,
        starttime,
        exit_code,
    })
}

/// Read /proc/PID/stat with one read into `buf` (reused). `Ok(None)` when
/// the process is gone.
pub fn read_stat(pid: u32, buf: &mut Vec<u8>) -> io::Result<Option<Stat>> {
    let path = format!("/proc/{pid}/stat");
    match read_small(&path, buf) {
        Ok(()) => Ok(parse_stat(buf)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESRCH)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Read a small /proc file into `buf` (reused) in three system calls:
/// open, one read (more only when the buffer fills: a /proc file read
/// short has no more), close. `read_to_end` takes one more read to see
/// the end, `read_to_string` a `statx` too.
pub fn read_small(path: &str, buf: &mut Vec<u8>) -> io::Result<()> {
    let fd = open_proc(path)?;
    reread(&fd, buf)
}

/// Open a /proc file to read it, now and again later with [`reread`].
pub fn open_proc(path: &str) -> io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Read an open /proc file from its start into `buf` (reused): what it
/// says now (a /proc file is made again at each read from offset 0).
pub fn reread(fd: &std::os::fd::OwnedFd, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    buf.resize(buf.capacity().max(1024), 0);
    let mut len = 0;
    loop {
        let n = rustix::io::pread(fd, &mut buf[len..], len as u64)?;
        len += n;
        if n == 0 || len < buf.len() {
            break;
        }
        // Full: there may be more. Bounded by what the kernel gives.
        let more = buf.len() * 2;
        buf.resize(more, 0);
    }
    buf.truncate(len);
    Ok(())
}

/// The state of a pinned process now: None when it is gone (or the pid
/// belongs to another process now).
pub fn read_pinned(p: ProcRef, buf: &mut Vec<u8>) -> Option<Stat> {
    match read_stat(p.pid, buf) {
        Ok(Some(s)) if s.starttime == p.start => Some(s),
        _ => None,
    }
}

/// Direct children of `pid`, from /proc/PID/task/*/children (no scan).
pub fn children_count(pid: u32) -> io::Result<u32> {
    let mut v = Vec::new();
    children(pid, false, &mut v)?;
    Ok(v.len() as u32)
}

/// The pids of `pid`'s direct children, added to `out`: from its one
/// thread's `children` file when it is `single_threaded`, else from every
/// thread's (a child belongs to the thread that forked it). A thread gone
/// meanwhile is skipped.
pub fn children(pid: u32, single_threaded: bool, out: &mut Vec<u32>) -> io::Result<()> {
    let mut buf = Vec::with_capacity(256);
    let mut add = |path: String| match read_small(&path, &mut buf) {
        Ok(()) => {
            add_pids(&buf, out);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    if single_threaded {
        return add(format!("/proc/{pid}/task/{pid}/children"));
    }
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?;
        add(format!(
            "/proc/{pid}/task/{}/children",
            task.file_name().to_string_lossy()
        ))?;
    }
    Ok(())
}

/// The pids a `children` file lists, added to `out`.
pub fn add_pids(text: &[u8], out: &mut Vec<u32>) {
    out.extend(
        String::from_utf8_lossy(text)
            .split_ascii_whitespace()
            .filter_map(|p| p.parse::<u32>().ok()),
    );
}

pub fn clk_tck() -> u64 {
    rustix::param::clock_ticks_per_second()
}
