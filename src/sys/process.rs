//! Starting and signalling processes where std, rustix and nix have no
//! safe call: credentials set between fork and exec, a descriptor
//! inherited as stdin, a signal forwarder, the process name, malloc's
//! arenas, SIGPIPE's disposition.

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// Run `cmd` as `uid`, `gid` with `groups`: set in the child between fork
/// and exec, groups first, then gid, then uid (each needs the privilege
/// the next one drops; std's `Command::uid` would run before this and
/// make setgroups fail).
pub fn run_as(cmd: &mut std::process::Command, uid: u32, gid: u32, groups: Vec<u32>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe syscalls, on a group list built
    // before fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Descriptor 0, owned from here on: what a helper started with a socket
/// as its stdin serves on. Call once.
pub fn take_stdin() -> OwnedFd {
    // SAFETY: fd 0 is this process's; the caller owns it from here on and
    // nothing else in the process uses it.
    unsafe { OwnedFd::from_raw_fd(0) }
}

/// This process's name in /proc/PID/comm (at most 15 bytes).
pub fn set_name(name: &std::ffi::CStr) {
    // SAFETY: prctl(PR_SET_NAME) with a NUL-terminated name.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr());
    }
}

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// From now on SIGTERM, SIGINT and SIGHUP go to the process `set_forward`
/// names (none until then). A signal handler has no safe installer in std
/// or rustix: the handler only reads an atomic and calls kill, both
/// async-signal-safe.
pub fn forward_signals() {
    // SAFETY: valid signal numbers and an `extern "C"` handler.
    unsafe {
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::signal(s, forward as *const () as libc::sighandler_t);
        }
    }
}

/// The process the forwarded signals go to.
pub fn set_forward(pid: u32) {
    FORWARD_TO.store(pid as i32, Ordering::Relaxed);
}

/// One malloc arena for the whole process: a daemon that mostly sleeps
/// needs one, not one per thread (measured: 22 -> 16 MiB RSS with 1000
/// targets). Call before any thread exists.
pub fn one_malloc_arena() {
    // SAFETY: mallopt before any thread exists (the caller's promise).
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// SIGPIPE back to its default disposition (Rust ignores it): a command
/// whose output goes into a closed pipe ends quietly, like any tool.
pub fn default_sigpipe() {
    // SAFETY: restoring the default disposition of one signal.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The pid of the running spawner helper (0: none): its children are
/// procward's own (restart scripts), never adopted as a target's process.
static HELPER_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

pub fn helper_pid() -> u32 {
    HELPER_PID.load(Ordering::Relaxed)
}

pub fn set_helper_pid(pid: u32) {
    HELPER_PID.store(pid, Ordering::Relaxed);
}

/// The helper `pid` has ended (unless another has taken its place).
pub fn clear_helper_pid(pid: u32) {
    let _ = HELPER_PID.compare_exchange(pid, 0, Ordering::Relaxed, Ordering::Relaxed);
}

/// Who a stop signals: one process, or a process group.
#[derive(Debug, Clone, Copy)]
pub enum Whom {
    Process(u32),
    Group(u32),
}

impl Whom {
    pub fn send(self, sig: rustix::process::Signal) {
        use rustix::process::{kill_process, kill_process_group, Pid};
        match self {
            Whom::Process(p) => {
                if let Some(pid) = Pid::from_raw(p as i32) {
                    let _ = kill_process(pid, sig);
                }
            }
            Whom::Group(g) => {
                if let Some(pid) = Pid::from_raw(g as i32) {
                    let _ = kill_process_group(pid, sig);
                }
            }
        }
    }
}

/// procward's one way to stop something: SIGTERM through `send` now, then
/// SIGKILL through it unless `ended` completes within `grace`. The future
/// says whether it ended in time. SIGTERM is sent before this returns.
pub fn stop_with_grace(
    send: impl Fn(rustix::process::Signal) + Send + 'static,
    grace: std::time::Duration,
    ended: impl std::future::Future<Output = ()> + Send,
) -> impl std::future::Future<Output = bool> + Send {
    send(rustix::process::Signal::TERM);
    async move {
        let in_time = tokio::time::timeout(grace, ended).await.is_ok();
        if !in_time {
            send(rustix::process::Signal::KILL);
        }
        in_time
    }
}

/// [`stop_with_grace`] for a caller that cannot wait asynchronously:
/// `ended` is asked every 20 ms.
pub fn stop_with_grace_blocking(
    mut send: impl FnMut(rustix::process::Signal),
    grace: std::time::Duration,
    mut ended: impl FnMut() -> bool,
) -> bool {
    send(rustix::process::Signal::TERM);
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if ended() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if ended() {
        return true;
    }
    send(rustix::process::Signal::KILL);
    false
}
