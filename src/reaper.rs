//! `procward reaper -- CMD…`: run CMD as the child of a child subreaper
//! that reaps every orphan reparented to it. Where PID 1 does not reap
//! (some containers), daemons started by restart scripts would otherwise
//! stay zombies forever once they exit.

use std::sync::atomic::{AtomicI32, Ordering};

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Returns the exit code of CMD (128 + signal when killed).
pub fn run(argv: &[String]) -> u8 {
    // SAFETY: plain prctl and signal calls with valid arguments.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::signal(s, forward as *const () as libc::sighandler_t);
        }
    }
    let child = match std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("procward reaper: {}: {e}", argv[0]);
            return 127;
        }
    };
    let main = child.id() as i32;
    CHILD.store(main, Ordering::Relaxed);
    let mut code = 0u8;
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break; // ECHILD: nothing left
        }
        if pid == main {
            code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status) as u8
            } else {
                128u8.wrapping_add(libc::WTERMSIG(status) as u8)
            };
            CHILD.store(0, Ordering::Relaxed);
            break;
        }
    }
    code
}
