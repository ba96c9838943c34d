//! The states of a target: the one table of their names and what each
//! means to the OCF agent.

use serde::{Deserialize, Serialize};

/// A target's state as `status`, the status JSON and the OCF agent name
/// it: the one contract (serde names) they all use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Waiting,
    Up,
    /// Up, but its stall probe fails (`stall.action = "notify"`).
    Stalled,
    /// Up, but a notify-only `[[target.check]]` fails.
    Degraded,
    /// A restart or start waits for a target it depends on.
    Blocked,
    Down,
    Backoff,
    Restarting,
    Stopping,
    Settling,
    RetryOver,
    Failed,
    Paused,
    Stopped,
}

impl State {
    /// Every state, in the order of the enum.
    pub const ALL: [State; 14] = [
        State::Waiting,
        State::Up,
        State::Stalled,
        State::Degraded,
        State::Blocked,
        State::Down,
        State::Backoff,
        State::Restarting,
        State::Stopping,
        State::Settling,
        State::RetryOver,
        State::Failed,
        State::Paused,
        State::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Up => "up",
            State::Stalled => "stalled",
            State::Degraded => "degraded",
            State::Blocked => "blocked",
            State::Down => "down",
            State::Backoff => "backoff",
            State::Restarting => "restarting",
            State::Stopping => "stopping",
            State::Settling => "settling",
            State::RetryOver => "retry-over",
            State::Failed => "failed",
            State::Paused => "paused",
            State::Stopped => "stopped",
        }
    }

    /// Running, or on its way back by procward's own recovery.
    fn running_or_recovering(self) -> bool {
        matches!(
            self,
            State::Up
                | State::Stalled
                | State::Degraded
                | State::Restarting
                | State::Settling
                | State::Backoff
                | State::Stopping
        )
    }

    /// procward has given up on it (until reset or start).
    pub fn given_up(self) -> bool {
        matches!(self, State::RetryOver | State::Failed | State::Down)
    }

    /// The OCF resource agent's answer for a target in this state:
    /// OCF_SUCCESS (0) while it runs or procward is bringing it back (or
    /// monitoring is paused), OCF_NOT_RUNNING (7) when it is stopped or
    /// not started, OCF_ERR_GENERIC (1) once procward has given up.
    pub fn ocf(self) -> u8 {
        if self.running_or_recovering() || self == State::Paused {
            ocf::SUCCESS
        } else if self.given_up() {
            ocf::ERR_GENERIC
        } else {
            ocf::NOT_RUNNING
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, not `write_str`: the status table aligns on it.
        f.pad(self.as_str())
    }
}

/// The OCF resource agent exit codes procward answers with (`status
/// --ocf`, the offline commands; contrib/ocf/procward passes them on).
pub mod ocf {
    /// Running (or being brought back by procward).
    pub const SUCCESS: u8 = 0;
    /// procward has given up on it.
    pub const ERR_GENERIC: u8 = 1;
    /// No such target in the configuration.
    pub const ERR_CONFIGURED: u8 = 6;
    /// Stopped, or not started.
    pub const NOT_RUNNING: u8 = 7;
}

/// Where a target was left, persisted across restarts of procward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Halted {
    RetryOver,
    Failed,
    Stopped,
}
