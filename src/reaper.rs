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
    let _ = rustix::process::set_child_subreaper(rustix::process::getpid().into());
    // A signal handler has no safe installer in std or rustix: the handler
    // only reads an atomic and calls kill, both async-signal-safe.
    // SAFETY: valid signal numbers and an `extern "C"` handler.
    unsafe {
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
    use rustix::process::{wait, WaitOptions};
    loop {
        let (pid, status) = match wait(WaitOptions::empty()) {
            Ok(Some(x)) => x,
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break, // ECHILD: nothing left
        };
        if pid.as_raw_nonzero().get() == main {
            code = match (status.exit_status(), status.terminating_signal()) {
                (Some(c), _) => c as u8,
                (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
                _ => 0,
            };
            CHILD.store(0, Ordering::Relaxed);
            break;
        }
    }
    code
}
