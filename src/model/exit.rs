//! How a process ended and why procward recovers it.

use super::event::EventSpec;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    Disappeared,
    Zombie,
    Stalled,
    Count,
    Children,
    /// A `[[target.check]]` with `action = "restart"` failed.
    Check,
    /// Started by an operator (`procward start`): not counted.
    Manual,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::Disappeared,
        Reason::Zombie,
        Reason::Stalled,
        Reason::Count,
        Reason::Children,
        Reason::Check,
        Reason::Manual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Disappeared => "disappeared",
            Reason::Zombie => "zombie",
            Reason::Stalled => "stalled",
            Reason::Count => "count",
            Reason::Children => "children",
            Reason::Check => "check",
            Reason::Manual => "manual",
        }
    }
}

/// How a tracked process ended, as the exit watch saw it: one of the
/// recovery [`Reason`]s, with what only a zombie has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitKind {
    Disappeared,
    Zombie { ppid: u32 },
}

impl ExitKind {
    /// The recovery reason this end is (its name in events and metrics).
    pub fn reason(&self) -> Reason {
        match self {
            ExitKind::Disappeared => Reason::Disappeared,
            ExitKind::Zombie { .. } => Reason::Zombie,
        }
    }
}

/// How a process ended, as waitpid(2) would tell its parent: learned by
/// procward for processes it did not start (see probe::exit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit status, when it exited.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<i32>,
    /// The signal number, when a signal ended it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signal: Option<i32>,
    #[serde(default)]
    pub core_dumped: bool,
}

/// "SIGSEGV" for 11 (nix's names); real-time signals as "SIGRTMIN+n".
pub fn signal_name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_string(),
        Err(_) if sig >= libc::SIGRTMIN() && sig <= libc::SIGRTMAX() => {
            format!("SIGRTMIN+{}", sig - libc::SIGRTMIN())
        }
        Err(_) => format!("signal {sig}"),
    }
}

impl ExitStatus {
    /// From a wait status (waitpid, /proc/PID/stat exit_code, pidfd info).
    pub fn from_wait(status: i32) -> ExitStatus {
        let sig = status & 0x7f;
        if sig == 0 {
            ExitStatus {
                code: Some((status >> 8) & 0xff),
                signal: None,
                core_dumped: false,
            }
        } else {
            ExitStatus {
                code: None,
                signal: Some(sig),
                core_dumped: status & 0x80 != 0,
            }
        }
    }

    pub fn signal_name(&self) -> Option<String> {
        self.signal.map(signal_name)
    }

    /// For texts: "exit status 3", "killed by SIGSEGV, core dumped".
    pub fn describe(status: Option<&ExitStatus>) -> String {
        match status {
            None => "exit status unknown".into(),
            Some(ExitStatus { code: Some(c), .. }) => format!("exit status {c}"),
            Some(e) => match (e.signal_name(), e.core_dumped) {
                (Some(s), true) => format!("killed by {s}, core dumped"),
                (Some(s), false) => format!("killed by {s}"),
                (None, _) => "exit status unknown".into(),
            },
        }
    }

    /// The fields of an event about the end: `exit` (text) and, when
    /// known, `exit_code` or `signal`, and `core_dumped`.
    pub fn fields(status: Option<&ExitStatus>, ev: EventSpec) -> EventSpec {
        let mut ev = ev.field("exit", ExitStatus::describe(status));
        if let Some(e) = status {
            if let Some(c) = e.code {
                ev = ev.field("exit_code", c);
            }
            if let Some(s) = e.signal_name() {
                ev = ev.field("signal", s);
            }
            ev = ev.field("core_dumped", e.core_dumped);
        }
        ev
    }

    /// PROCWARD_EXIT_CODE, PROCWARD_EXIT_SIGNAL, PROCWARD_CORE_DUMPED for
    /// scripts: empty when unknown.
    pub fn env(status: Option<&ExitStatus>) -> Vec<(String, String)> {
        let code = status.and_then(|e| e.code).map(|c| c.to_string());
        let sig = status.and_then(|e| e.signal_name());
        let core = status.map(|e| e.core_dumped.to_string());
        vec![
            ("PROCWARD_EXIT_CODE".into(), code.unwrap_or_default()),
            ("PROCWARD_EXIT_SIGNAL".into(), sig.unwrap_or_default()),
            ("PROCWARD_CORE_DUMPED".into(), core.unwrap_or_default()),
        ]
    }
}
