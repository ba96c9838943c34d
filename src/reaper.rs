//! `procward reaper -- CMD…`: run CMD as the child of a child subreaper
//! that reaps every orphan reparented to it. Where PID 1 does not reap
//! (some containers), daemons started by restart scripts would otherwise
//! stay zombies forever once they exit.

use crate::sys::process::{forward_signals, set_forward};

/// Returns the exit code of CMD (128 + signal when killed).
pub(crate) fn run(argv: &[String]) -> u8 {
    let _ = rustix::process::set_child_subreaper(rustix::process::getpid().into());
    forward_signals();
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
    set_forward(main as u32);
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
            set_forward(0);
            break;
        }
    }
    code
}
