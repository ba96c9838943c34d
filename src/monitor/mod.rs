//! The pure monitor core: one state machine per target plus the sliding
//! retry window. It takes inputs (process found or exited, script finished,
//! timer fired, operator command) with the current wall-clock time and
//! returns actions (emit event, track pid, run script, arm timer, persist).
//! It never reads /proc, spawns or sleeps, so every rule is unit-tested with
//! a fake clock.

use crate::config::{OnRetryOver, TargetSpec};
use crate::model::event::{msg, EventSpec};
use crate::model::{ExitKind, ExitStatus, Halted, Ms, ProcRef, Reason, State, TargetId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptOutcome {
    Exited {
        code: i32,
        output: String,
    },
    Signaled {
        signal: i32,
        output: String,
    },
    TimedOut {
        output: String,
    },
    SpawnFailed(String),
    /// A script started by an earlier procward (adopted after a restart of
    /// procward) ended: procward is not its parent and cannot see how.
    Unknown,
    /// The spawner that started the script went away before it ended
    /// (killed): its end was seen by its pid, its status was lost.
    Lost,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Result of a /proc scan for a target that needs one: every matching
    /// live process, the main one (top-most, oldest) first. Empty: none.
    Found {
        target: TargetId,
        procs: Vec<ProcRef>,
    },
    /// A tracked process ended (`status`: how, when it could be learned).
    Exited {
        target: TargetId,
        proc: ProcRef,
        kind: ExitKind,
        status: Option<ExitStatus>,
    },
    /// Number of direct children of the main process.
    Children {
        target: TargetId,
        pid: u32,
        count: u32,
    },
    /// The restart script of `attempt` runs as `proc` (persisted, so that
    /// a restarted procward waits for it instead of running it again).
    ScriptStarted {
        target: TargetId,
        attempt: u32,
        proc: ProcRef,
    },
    ScriptDone {
        target: TargetId,
        attempt: u32,
        outcome: ScriptOutcome,
    },
    CommandDone {
        target: TargetId,
        outcome: ScriptOutcome,
    },
    Timer {
        target: TargetId,
        token: u64,
    },
    /// Result of a stall probe of the main process `pid`.
    Probe {
        target: TargetId,
        pid: u32,
        ok: bool,
        detail: String,
    },
}

impl Input {
    /// The target the input is about.
    pub fn target(&self) -> &TargetId {
        match self {
            Input::Found { target, .. }
            | Input::Exited { target, .. }
            | Input::Children { target, .. }
            | Input::ScriptStarted { target, .. }
            | Input::ScriptDone { target, .. }
            | Input::CommandDone { target, .. }
            | Input::Timer { target, .. }
            | Input::Probe { target, .. } => target,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    Reset,
    /// Make sure it runs: find it, or run the restart script (not counted).
    Start,
    /// Stop its processes (SIGTERM, SIGKILL after the timeout) and stop
    /// monitoring it.
    Stop {
        timeout: std::time::Duration,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Emit(EventSpec),
    Track {
        target: TargetId,
        proc: ProcRef,
    },
    UntrackAll {
        target: TargetId,
    },
    RunScript {
        target: TargetId,
        attempt: u32,
        reason: Reason,
        pid: Option<u32>,
        /// How the process that failed ended (PROCWARD_EXIT_*).
        exit: Option<ExitStatus>,
    },
    /// Wait for a restart script that an earlier procward started (it may
    /// have ended already); report its end as `ScriptDone` with `Unknown`.
    AdoptScript {
        target: TargetId,
        attempt: u32,
        proc: ProcRef,
    },
    /// Run `failover.command` (on-retry-over failover or exec), after
    /// `attempts` restarts in the window.
    RunCommand {
        target: TargetId,
        attempts: u32,
    },
    Arm {
        target: TargetId,
        token: u64,
        at: Ms,
    },
    /// Stop a stalled process: SIGTERM (to its group if `group`), then
    /// SIGKILL after `timeout`.
    Stop {
        target: TargetId,
        proc: ProcRef,
        group: bool,
        timeout: std::time::Duration,
    },
    /// End a restart script being stopped with its whole group: SIGTERM,
    /// then SIGKILL to the group after `timeout`.
    KillScript {
        target: TargetId,
        proc: ProcRef,
        timeout: std::time::Duration,
    },
    /// Scan /proc soon instead of at the next interval.
    ScanSoon,
    Persist,
}

/// Where a target is. Each phase carries what only it needs; the phase
/// changes only through [`Target::enter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Not found yet since start, resume or reset. `announced`: that it is
    /// absent was said; `manual`: an operator's start runs the restart
    /// script if the next scan finds nothing.
    Waiting {
        announced: bool,
        manual: bool,
    },
    Up(Up),
    /// Failed, no restart script: waiting for it to come back.
    Down,
    /// Failed, next restart at a timer (`due`). `after`: the attempt
    /// whose script ran last (0: none), which may have started the target
    /// after all. `looking`: the timer fired; the target is looked for
    /// once more (a scan) before the next attempt runs.
    Backoff {
        reason: Reason,
        pid: Option<u32>,
        due: Ms,
        after: u32,
        looking: bool,
    },
    /// The restart script runs (`script`: its process, once it runs).
    Restarting {
        attempt: u32,
        reason: Reason,
        script: Option<ProcRef>,
    },
    /// Stalled: being stopped before the restart.
    Stopping {
        reason: Reason,
    },
    /// Script succeeded; the target must be found before the timer.
    Settling {
        attempt: u32,
        reason: Reason,
    },
    RetryOver,
    Failed,
    Paused,
    /// Stopped by an operator (`procward stop`).
    Stopped,
    /// Being stopped by an operator: the restart script of `attempt`, while
    /// it has not ended, is being ended with its group, and every process
    /// of the target a scan finds is stopped (`signalled`: those already
    /// told). Stopped once no script runs and a scan finds nothing.
    Halting {
        attempt: Option<u32>,
        timeout: std::time::Duration,
        signalled: Vec<ProcRef>,
    },
}
/// What an up target keeps while it is up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Up {
    /// Above `count.max` (PW2006 said, PW2007 due when back).
    over_max: bool,
    /// `children.min` was reached once: losing children counts from now.
    children_armed: bool,
    /// Consecutive stall probe failures.
    probe_failures: u32,
    /// Stalled under `stall.action = "notify"`: said once, cleared on a pass.
    stalled: bool,
    last_probe: Option<(bool, String)>,
}

impl Phase {
    /// Waiting, nothing said yet.
    pub const WAITING: Phase = Phase::Waiting {
        announced: false,
        manual: false,
    };

    pub fn state(&self) -> State {
        match self {
            Phase::Waiting { .. } => State::Waiting,
            Phase::Up(u) if u.stalled => State::Stalled,
            Phase::Up(_) => State::Up,
            Phase::Down => State::Down,
            Phase::Backoff { .. } => State::Backoff,
            Phase::Restarting { .. } => State::Restarting,
            Phase::Stopping { .. } => State::Stopping,
            Phase::Settling { .. } => State::Settling,
            Phase::RetryOver => State::RetryOver,
            Phase::Failed => State::Failed,
            Phase::Paused => State::Paused,
            Phase::Stopped => State::Stopped,
            Phase::Halting { .. } => State::Stopping,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Waiting { .. } => "waiting",
            Phase::Up(_) => "up",
            Phase::Down => "down",
            Phase::Backoff { .. } => "backoff",
            Phase::Restarting { .. } => "restarting",
            Phase::Stopping { .. } => "stopping",
            Phase::Settling { .. } => "settling",
            Phase::RetryOver => "retry-over",
            Phase::Failed => "failed",
            Phase::Paused => "paused",
            Phase::Stopped => "stopped",
            Phase::Halting { .. } => "stopping",
        }
    }
}

/// What survives a restart of procward, per target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Persisted {
    pub attempts: Vec<Ms>,
    pub paused: bool,
    /// Where the target was left: RETRY-OVER, FAILED or stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halted: Option<Halted>,
    /// The target was up (or being recovered) when procward last ran.
    pub ever_up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_pid: Option<u32>,
    /// A recovery under way when procward stopped: resumed, never repeated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovering: Option<InFlight>,
    /// The end of the last process was reported (PW2003 and the like): a
    /// later look at the same absence does not report it again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub down_reported: bool,
    /// The process last seen up and since when (uptime survives pause,
    /// resume and restarts of procward).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up: Option<(ProcRef, Ms)>,
    /// How the last main process ended (for status and the next script).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_exit: Option<ExitStatus>,
}

/// Where a recovery stood when the state was saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Backoff,
    Restarting,
    Settling,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub step: Step,
    pub attempt: u32,
    pub reason: Reason,
    /// The pid that failed, for the script's PROCWARD_PID.
    #[serde(default)]
    pub pid: Option<u32>,
    /// The running restart script.
    #[serde(default)]
    pub script: Option<ProcRef>,
    /// Backoff: when the restart is due.
    #[serde(default)]
    pub due: Option<Ms>,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub spec: Arc<TargetSpec>,
    /// `spec.name`, shared with every input and action about the target.
    pub id: TargetId,
    pub phase: Phase,
    attempts: VecDeque<Ms>,
    procs: Vec<ProcRef>,
    ever_up: bool,
    /// In retry-over under `continue`: RETRY-OVER was said once.
    over: bool,
    up_since: Option<Ms>,
    /// Timers armed in an earlier phase carry an older token: stale.
    token: u64,
    last_pid: Option<u32>,
    last_event: Option<(String, Ms)>,
    down_reported: bool,
    /// The process `up_since` belongs to.
    up_proc: Option<ProcRef>,
    /// How the last main process ended, when that could be learned.
    last_exit: Option<ExitStatus>,
}

impl Target {
    fn new(spec: Arc<TargetSpec>, p: &Persisted) -> Self {
        let phase = if p.paused {
            Phase::Paused
        } else {
            match (p.halted, &p.recovering) {
                (Some(Halted::Failed), _) => Phase::Failed,
                (Some(Halted::RetryOver), _) => Phase::RetryOver,
                (Some(Halted::Stopped), _) => Phase::Stopped,
                (_, Some(r)) => match r.step {
                    Step::Backoff => Phase::Backoff {
                        reason: r.reason,
                        pid: r.pid,
                        due: r.due.unwrap_or(0),
                        after: r.attempt,
                        looking: false,
                    },
                    Step::Restarting => Phase::Restarting {
                        attempt: r.attempt,
                        reason: r.reason,
                        script: r.script,
                    },
                    Step::Settling => Phase::Settling {
                        attempt: r.attempt,
                        reason: r.reason,
                    },
                },
                _ => Phase::WAITING,
            }
        };
        Target {
            id: TargetId::from(spec.name.as_str()),
            spec,
            phase,
            attempts: loaded_attempts(&p.attempts),
            procs: Vec::new(),
            // Up before, but by which process is unknown (a state file
            // from an older offline start, a hand edit): nothing to say a
            // disappearance of; it is waited for.
            ever_up: p.ever_up && p.last_pid.is_some(),
            over: false,
            up_since: p.up.map(|u| u.1),
            token: 0,
            last_pid: p.last_pid,
            last_event: None,
            down_reported: p.down_reported,
            up_proc: p.up.map(|u| u.0),
            last_exit: p.last_exit,
        }
    }

    fn main(&self) -> Option<ProcRef> {
        self.procs.first().copied()
    }

    /// How the last main process ended, when that could be learned.
    pub fn last_exit(&self) -> Option<ExitStatus> {
        self.last_exit
    }

    /// The one way to change phase. Timers armed for the phase left
    /// behind go stale.
    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.token += 1;
    }

    fn up(&mut self) -> Option<&mut Up> {
        match &mut self.phase {
            Phase::Up(u) => Some(u),
            _ => None,
        }
    }
}

/// Attempts as read from the state file: oldest first (the window drops
/// from the front), and no more than any retry budget can use, whatever a
/// hand-edited file holds.
fn loaded_attempts(saved: &[Ms]) -> VecDeque<Ms> {
    const KEEP: usize = 1024;
    let mut v = saved.to_vec();
    v.sort_unstable();
    let from = v.len().saturating_sub(KEEP);
    v.drain(..from);
    v.into()
}

impl Target {
    fn needs_scan(&self) -> bool {
        match self.phase {
            Phase::Waiting { .. }
            | Phase::Down
            | Phase::Backoff { .. }
            | Phase::Settling { .. }
            | Phase::Halting { .. } => true,
            Phase::Up(_) => self.spec.is_group(),
            _ => false,
        }
    }

    fn prune(&mut self, now: Ms) {
        let window = self.spec.retry.window.as_millis() as u64;
        while let Some(&t) = self.attempts.front() {
            if t.saturating_add(window) <= now {
                self.attempts.pop_front();
            } else {
                break;
            }
        }
    }

    fn in_window(&self, now: Ms) -> usize {
        let window = self.spec.retry.window.as_millis() as u64;
        self.attempts
            .iter()
            .filter(|&&t| t.saturating_add(window) > now)
            .count()
    }

    fn persisted(&self) -> Persisted {
        let recovering = match &self.phase {
            Phase::Backoff {
                reason,
                pid,
                due,
                after,
                ..
            } => Some(InFlight {
                step: Step::Backoff,
                attempt: *after,
                reason: *reason,
                pid: *pid,
                script: None,
                due: Some(*due),
            }),
            Phase::Restarting {
                attempt,
                reason,
                script,
            } => Some(InFlight {
                step: Step::Restarting,
                attempt: *attempt,
                reason: *reason,
                pid: None,
                script: *script,
                due: None,
            }),
            Phase::Settling { attempt, reason } => Some(InFlight {
                step: Step::Settling,
                attempt: *attempt,
                reason: *reason,
                pid: None,
                script: None,
                due: None,
            }),
            _ => None,
        };
        Persisted {
            attempts: self.attempts.iter().copied().collect(),
            paused: self.phase == Phase::Paused,
            halted: match self.phase {
                Phase::Failed => Some(Halted::Failed),
                Phase::RetryOver => Some(Halted::RetryOver),
                Phase::Stopped | Phase::Halting { .. } => Some(Halted::Stopped),
                _ => None,
            },
            ever_up: self.ever_up,
            last_pid: self.last_pid,
            recovering,
            down_reported: self.down_reported,
            up: self.up_proc.zip(self.up_since),
            last_exit: self.last_exit,
        }
    }
}

/// Operator commands on one target. Each says whether anything changed.
impl Target {
    fn pause(&mut self, out: &mut Out, by: &str) -> Result<bool, String> {
        let name = self.id.clone();
        if self.phase == Phase::Paused {
            return Err(format!("target `{name}` is already paused"));
        }
        let from = self.phase.as_str();
        self.enter(Phase::Paused);
        self.procs.clear();
        out.push(Action::UntrackAll {
            target: name.clone(),
        });
        let ev = EventSpec::new(msg::TARGET_PAUSED)
            .target(&name)
            .field("by", by)
            .field("state", from);
        out.emit(self, ev);
        Ok(true)
    }

    fn resume(&mut self, out: &mut Out, by: &str) -> Result<bool, String> {
        let name = self.id.clone();
        if self.phase != Phase::Paused {
            let state = self.phase.as_str();
            return Err(format!("target `{name}` is not paused (state {state})"));
        }
        self.enter(Phase::WAITING);
        let ev = EventSpec::new(msg::TARGET_RESUMED)
            .target(&name)
            .field("by", by);
        out.emit(self, ev);
        out.push(Action::ScanSoon);
        Ok(true)
    }

    /// Make sure it runs: an operator's start means "try again", so the
    /// window starts empty; the script runs if the next scan finds nothing.
    fn start(&mut self, out: &mut Out, by: &str) -> Result<bool, String> {
        let name = self.id.clone();
        if matches!(
            self.phase,
            Phase::Up(_)
                | Phase::Restarting { .. }
                | Phase::Settling { .. }
                | Phase::Stopping { .. }
        ) {
            return Ok(false); // running, or on its way: nothing to do
        }
        if matches!(self.phase, Phase::Halting { .. }) {
            return Err(format!(
                "target `{name}` is being stopped; start it once it is stopped"
            ));
        }
        if self.spec.restart.script.is_none() {
            return Err(format!(
                "target `{name}` has no restart.script to start it with"
            ));
        }
        let cleared = self.in_window(out.now);
        self.attempts.clear();
        self.over = false;
        self.enter(Phase::Waiting {
            announced: false,
            manual: true,
        });
        let ev = EventSpec::new(msg::TARGET_STARTED)
            .target(&name)
            .field("by", by)
            .field("cleared", cleared);
        out.emit(self, ev);
        out.push(Action::ScanSoon);
        Ok(true)
    }

    /// Stop it for good: its processes, and a restart under way (the
    /// running script's group; a backoff's or settle's timer goes stale),
    /// then whatever a scan still finds (what the script started). The
    /// target is `stopped` only once nothing of it runs.
    fn stop(&mut self, out: &mut Out, by: &str, timeout: std::time::Duration) -> bool {
        let name = self.id.clone();
        if matches!(self.phase, Phase::Stopped | Phase::Halting { .. }) {
            return false;
        }
        let pids: Vec<String> = self.procs.iter().map(|p| p.pid.to_string()).collect();
        for p in &self.procs {
            out.push(Action::Stop {
                target: name.clone(),
                proc: *p,
                group: false,
                timeout,
            });
        }
        let (attempt, script) = match self.phase {
            Phase::Restarting {
                attempt, script, ..
            } => (Some(attempt), script),
            _ => (None, None),
        };
        if let Some(proc) = script {
            out.push(Action::KillScript {
                target: name.clone(),
                proc,
                timeout,
            });
        }
        out.push(Action::UntrackAll {
            target: name.clone(),
        });
        let signalled = std::mem::take(&mut self.procs);
        self.up_since = None;
        self.enter(Phase::Halting {
            attempt,
            timeout,
            signalled,
        });
        out.push(Action::ScanSoon);
        let pids = if pids.is_empty() {
            "-".to_string()
        } else {
            pids.join(",")
        };
        let ev = EventSpec::new(msg::TARGET_STOPPED)
            .target(&name)
            .field("by", by)
            .field("pids", pids);
        out.emit(self, ev);
        true
    }

    /// While halting: the script of `attempt` runs as `proc` (end it), or
    /// ended. Whether the input was the halting script's.
    fn halting_script(&mut self, out: &mut Out, attempt: u32, proc: Option<ProcRef>) -> bool {
        let name = self.id.clone();
        let Phase::Halting {
            attempt: halting @ Some(_),
            timeout,
            ..
        } = &mut self.phase
        else {
            return false;
        };
        if *halting != Some(attempt) {
            return false;
        }
        match proc {
            Some(p) => out.push(Action::KillScript {
                target: name,
                proc: p,
                timeout: *timeout,
            }),
            None => {
                *halting = None; // ended: nothing of it can start the target
                out.push(Action::ScanSoon);
            }
        }
        true
    }

    /// While halting, a scan's result: stop what it finds (each process
    /// once); stopped once the script has ended and nothing is found.
    fn halting_found(&mut self, out: &mut Out, procs: &[ProcRef]) {
        let name = self.id.clone();
        let Phase::Halting {
            attempt,
            timeout,
            signalled,
        } = &mut self.phase
        else {
            return;
        };
        if procs.is_empty() && attempt.is_none() {
            self.enter(Phase::Stopped);
            out.push(Action::Persist);
            return;
        }
        // Scanned again at the settling pace (`fast_scan`), not at once:
        // back-to-back walks of /proc while a process takes its time to
        // end would keep a core busy.
        for p in procs {
            if !signalled.contains(p) {
                signalled.push(*p);
                out.push(Action::Stop {
                    target: name.clone(),
                    proc: *p,
                    group: false,
                    timeout: *timeout,
                });
            }
        }
    }

    fn reset(&mut self, out: &mut Out, by: &str) -> bool {
        let name = self.id.clone();
        let from = self.phase.as_str();
        let cleared = self.in_window(out.now);
        self.attempts.clear();
        self.over = false;
        if matches!(self.phase, Phase::RetryOver | Phase::Failed) {
            self.enter(Phase::WAITING);
            out.push(Action::ScanSoon);
        }
        let ev = EventSpec::new(msg::TARGET_RESET)
            .target(&name)
            .field("by", by)
            .field("state", from)
            .field("cleared", cleared);
        out.emit(self, ev);
        true
    }
}

/// A row of `procward status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TargetStatus {
    pub target: String,
    pub state: State,
    pub pids: Vec<u32>,
    pub uptime_s: Option<u64>,
    pub restarts_in_window: usize,
    pub retry_max: u32,
    pub last_event: Option<String>,
    pub last_event_time: Option<String>,
    /// Last stall probe: "ok" or "failed: why"; None without a probe yet.
    #[serde(default)]
    pub probe: Option<String>,
    #[serde(default)]
    pub probe_failures: u32,
    /// How the last main process ended: null when never seen or unknown.
    #[serde(default)]
    pub last_exit: Option<ExitStatus>,
}

/// A restart put off: by `delay`, after the script of attempt `after`
/// (0: none) failed.
#[derive(Debug, Clone, Copy)]
struct Delay {
    delay: Ms,
    after: u32,
}

pub struct Monitor {
    targets: Vec<Target>,
    index: HashMap<String, usize>,
    rng: u64,
}

/// Actions collected while handling one input.
struct Out<'a> {
    actions: &'a mut Vec<Action>,
    now: Ms,
}

impl Out<'_> {
    fn emit(&mut self, t: &mut Target, ev: EventSpec) {
        t.last_event = Some((ev.id.to_string(), self.now));
        self.actions.push(Action::Emit(ev));
    }
    fn push(&mut self, a: Action) {
        self.actions.push(a);
    }
}

impl Monitor {
    pub fn new<S: Into<Arc<TargetSpec>>>(
        specs: impl IntoIterator<Item = S>,
        state: &BTreeMap<String, Persisted>,
        seed: u64,
    ) -> Self {
        let specs = specs.into_iter();
        let n = specs.size_hint().0;
        let mut m = Monitor {
            targets: Vec::with_capacity(n),
            index: HashMap::with_capacity(n),
            rng: seed | 1,
        };
        for spec in specs {
            let spec: Arc<TargetSpec> = spec.into();
            let p = state.get(&spec.name).cloned().unwrap_or_default();
            m.index.insert(spec.name.clone(), m.targets.len());
            m.targets.push(Target::new(spec, &p));
        }
        m
    }

    /// What to do when procward starts on saved state: resume the
    /// recoveries that were under way (wait for a running script, arm the
    /// backoff and settle timers) instead of starting them again.
    pub fn startup(&mut self, now: Ms) -> Vec<Action> {
        let mut actions = vec![Action::ScanSoon];
        for t in &mut self.targets {
            let name = t.id.clone();
            match t.phase {
                Phase::Backoff { due, .. } => actions.push(Action::Arm {
                    target: name,
                    token: t.token,
                    at: due.max(now),
                }),
                Phase::Restarting {
                    attempt, script, ..
                } => match script {
                    Some(proc) => actions.push(Action::AdoptScript {
                        target: name,
                        attempt,
                        proc,
                    }),
                    // Stopped between saving the attempt and seeing its
                    // script: do not run it again, see whether it came up.
                    None => actions.push(Action::AdoptScript {
                        target: name,
                        attempt,
                        proc: ProcRef { pid: 0, start: 0 },
                    }),
                },
                Phase::Settling { .. } => actions.push(Action::Arm {
                    target: name,
                    token: t.token,
                    at: now + t.spec.restart.settle.as_millis() as u64,
                }),
                _ => {}
            }
        }
        actions
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    pub fn target(&self, name: &str) -> Option<&Target> {
        self.index.get(name).map(|&i| &self.targets[i])
    }

    /// Whether a target is settling: scan often (its script has run, it
    /// must be found soon).
    pub fn fast_scan(&self) -> bool {
        self.targets
            .iter()
            .any(|t| matches!(t.phase, Phase::Settling { .. } | Phase::Halting { .. }))
    }

    /// Targets a /proc scan must look for now.
    pub fn scan_targets(&self) -> impl Iterator<Item = &Arc<TargetSpec>> {
        self.targets
            .iter()
            .filter(|t| t.needs_scan())
            .map(|t| &t.spec)
    }

    /// Up targets whose children must be counted: (target, main pid).
    pub fn children_checks(&self) -> impl Iterator<Item = (&TargetId, u32)> {
        self.targets
            .iter()
            .filter_map(|t| match (&t.phase, t.spec.children_min, t.main()) {
                (Phase::Up(_), Some(_), Some(m)) => Some((&t.id, m.pid)),
                _ => None,
            })
    }

    /// Up targets with a stall probe: (target, main process).
    pub fn probe_targets(&self) -> impl Iterator<Item = (&Arc<TargetSpec>, ProcRef)> {
        self.targets
            .iter()
            .filter_map(|t| match (&t.phase, &t.spec.stall, t.main()) {
                (Phase::Up(_), Some(_), Some(m)) => Some((&t.spec, m)),
                _ => None,
            })
    }

    /// Every tracked process, with its target.
    pub fn tracked(&self) -> impl Iterator<Item = (&str, ProcRef)> {
        self.targets
            .iter()
            .flat_map(|t| t.procs.iter().map(move |p| (t.spec.name.as_str(), *p)))
    }

    /// One target's state, as the state file would hold it.
    pub fn persisted_of(&self, target: &str) -> Option<Persisted> {
        self.target(target).map(|t| t.persisted())
    }

    /// Every target's state to save, in the core's order: a reference
    /// count and a small copy per target (taken after every change).
    pub fn snapshot_list(&self) -> Vec<(TargetId, Persisted)> {
        self.targets
            .iter()
            .map(|t| (t.id.clone(), t.persisted()))
            .collect()
    }

    pub fn snapshot(&self) -> BTreeMap<String, Persisted> {
        self.targets
            .iter()
            .map(|t| (t.spec.name.clone(), t.persisted()))
            .collect()
    }

    pub fn status(&self, now: Ms) -> Vec<TargetStatus> {
        self.targets
            .iter()
            .map(|t| TargetStatus {
                target: t.spec.name.clone(),
                state: t.phase.state(),
                pids: t.procs.iter().map(|p| p.pid).collect(),
                uptime_s: matches!(t.phase, Phase::Up(_))
                    .then_some(t.up_since)
                    .flatten()
                    .map(|s| now.saturating_sub(s) / 1000),
                restarts_in_window: t.in_window(now),
                retry_max: t.spec.retry.max,
                last_event: t.last_event.as_ref().map(|(id, _)| id.clone()),
                last_event_time: t
                    .last_event
                    .as_ref()
                    .map(|(_, ms)| crate::model::event::rfc3339_ms(*ms)),
                probe: match &t.phase {
                    Phase::Up(u) => u.last_probe.as_ref().map(|(ok, d)| {
                        if *ok {
                            "ok".to_string()
                        } else {
                            format!("failed: {d}")
                        }
                    }),
                    _ => None,
                },
                probe_failures: match &t.phase {
                    Phase::Up(u) => u.probe_failures,
                    _ => 0,
                },
                last_exit: t.last_exit,
            })
            .collect()
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Backoff before attempt number `n + 1`, where `n` attempts are in the
    /// window: none for the first (recovery is immediate), then
    /// initial × 2^(n-1), capped, less up to 20 % jitter.
    fn backoff(&mut self, t: usize, n: usize) -> Ms {
        let r = self.targets[t].spec.retry;
        let initial = r.backoff_initial.as_millis() as u64;
        let cap = r.backoff_max.as_millis() as u64;
        if initial == 0 || n == 0 {
            return 0;
        }
        let exp = initial.saturating_mul(1u64 << (n - 1).min(40)).min(cap);
        self.jitter(exp)
    }

    fn jitter(&mut self, d: Ms) -> Ms {
        let j = self.next_rand() % 1000; // 0..999 per mille
        d - d * j / 5000 // up to 20 % less
    }

    /// Apply a new configuration: targets with the same name keep their
    /// state (counters, pause, tracked processes unless `match` changed).
    pub fn reconfigure<S: Into<Arc<TargetSpec>>>(
        &mut self,
        specs: impl IntoIterator<Item = S>,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut old: HashMap<String, Target> = self
            .targets
            .drain(..)
            .map(|t| (t.spec.name.clone(), t))
            .collect();
        self.index.clear();
        for spec in specs {
            let spec: Arc<TargetSpec> = spec.into();
            let t = match old.remove(&spec.name) {
                Some(mut t) => {
                    let changed =
                        t.spec.match_raw != spec.match_raw || t.spec.is_group() != spec.is_group();
                    t.spec = spec;
                    if changed && matches!(t.phase, Phase::Up(_)) {
                        actions.push(Action::UntrackAll {
                            target: t.id.clone(),
                        });
                        t.procs.clear();
                        t.up_since = None;
                        t.enter(Phase::WAITING);
                    }
                    t
                }
                None => Target::new(spec, &Persisted::default()),
            };
            self.index.insert(t.spec.name.clone(), self.targets.len());
            self.targets.push(t);
        }
        for (name, _) in old {
            actions.push(Action::UntrackAll {
                target: name.into(),
            });
        }
        actions.push(Action::ScanSoon);
        actions.push(Action::Persist);
        actions
    }

    /// An operator command for one target. `by` names who asked.
    pub fn command(
        &mut self,
        name: &str,
        cmd: Command,
        by: &str,
        now: Ms,
    ) -> Result<Vec<Action>, String> {
        let &i = self
            .index
            .get(name)
            .ok_or_else(|| format!("no target named `{name}`"))?;
        let mut actions = Vec::new();
        let mut out = Out {
            actions: &mut actions,
            now,
        };
        let t = &mut self.targets[i];
        let changed = match cmd {
            Command::Pause => t.pause(&mut out, by)?,
            Command::Resume => t.resume(&mut out, by)?,
            Command::Start => t.start(&mut out, by)?,
            Command::Stop { timeout } => t.stop(&mut out, by, timeout),
            Command::Reset => t.reset(&mut out, by),
        };
        if changed {
            out.push(Action::Persist);
        }
        Ok(actions)
    }

    pub fn handle(&mut self, input: Input, now: Ms) -> Vec<Action> {
        let mut actions = Vec::new();
        let name = input.target().clone();
        let Some(&i) = self.index.get(name.as_str()) else {
            return actions; // a target removed by a reload
        };
        match input {
            Input::Found { procs, .. } => self.on_found(i, procs, now, &mut actions),
            Input::Exited {
                proc, kind, status, ..
            } => self.on_exited(i, proc, kind, status, now, &mut actions),
            Input::Children { pid, count, .. } => {
                let t = &mut self.targets[i];
                let min = t.spec.children_min.unwrap_or(0);
                let main = t.main().map(|m| m.pid) == Some(pid);
                if let (true, Some(up)) = (main, t.up()) {
                    if count >= min {
                        up.children_armed = true;
                    } else if up.children_armed {
                        let ev = EventSpec::new(msg::CHILDREN_LOST)
                            .target(&name)
                            .pid(pid)
                            .field("children", count)
                            .field("min", min);
                        self.fail(i, Reason::Children, Some(pid), ev, now, &mut actions);
                    }
                }
            }
            Input::Probe {
                pid, ok, detail, ..
            } => self.on_probe(i, pid, ok, detail, now, &mut actions),
            Input::ScriptStarted { attempt, proc, .. } => {
                let t = &mut self.targets[i];
                let mut out = Out {
                    actions: &mut actions,
                    now,
                };
                if let Phase::Restarting {
                    attempt: a, script, ..
                } = &mut t.phase
                {
                    if *a == attempt {
                        *script = Some(proc);
                        out.push(Action::Persist);
                    }
                } else {
                    t.halting_script(&mut out, attempt, Some(proc));
                }
            }
            Input::ScriptDone {
                attempt, outcome, ..
            } => self.on_script_done(i, attempt, outcome, now, &mut actions),
            Input::CommandDone { outcome, .. } => {
                let t = &mut self.targets[i];
                let mut out = Out {
                    actions: &mut actions,
                    now,
                };
                let ev = match outcome {
                    ScriptOutcome::Exited { code: 0, .. } => {
                        EventSpec::new(msg::RETRY_OVER_COMMAND_OK).target(&name)
                    }
                    other => EventSpec::new(msg::RETRY_OVER_COMMAND_FAILED)
                        .target(&name)
                        .field("status", outcome_status(&other))
                        .field("output", outcome_output(&other)),
                };
                out.emit(t, ev);
            }
            Input::Timer { token, .. } => {
                let t = &self.targets[i];
                if token != t.token {
                    return actions;
                }
                match t.phase.clone() {
                    Phase::Backoff { .. } => self.look(i, &mut actions),
                    Phase::Stopping { reason } => {
                        // It did not die even after SIGKILL (D state?):
                        // give it up and restart.
                        let t = &mut self.targets[i];
                        let pid = t.main().map(|m| m.pid);
                        if !t.procs.is_empty() {
                            actions.push(Action::UntrackAll {
                                target: name.clone(),
                            });
                        }
                        t.procs.clear();
                        self.recover(i, reason, pid, None, now, &mut actions);
                    }
                    Phase::Settling { attempt, reason } => {
                        let t = &mut self.targets[i];
                        let settle = humantime::format_duration(t.spec.restart.settle).to_string();
                        let mut out = Out {
                            actions: &mut actions,
                            now,
                        };
                        let ev = if reason == Reason::Manual {
                            EventSpec::new(msg::START_FAILED)
                                .field("status", format!("no process within {settle}"))
                                .field("output", "")
                        } else {
                            EventSpec::new(msg::RESTART_NOT_SETTLED)
                                .field("attempt", attempt)
                                .field("settle", settle)
                        };
                        out.emit(t, ev.target(&name));
                        self.recover(i, reason, None, Some(attempt), now, &mut actions);
                    }
                    _ => {}
                }
            }
        }
        actions
    }

    fn on_found(&mut self, i: usize, procs: Vec<ProcRef>, now: Ms, actions: &mut Vec<Action>) {
        let t = &self.targets[i];
        let enough = procs.len() as u32 >= t.spec.min_count();
        match &t.phase {
            Phase::Waiting { .. }
            | Phase::Down
            | Phase::Backoff { .. }
            | Phase::Settling { .. }
                if enough =>
            {
                self.adopt(i, procs, now, actions)
            }
            Phase::Waiting { manual: true, .. } => {
                self.start_restart(i, Reason::Manual, None, now, actions);
            }
            Phase::Halting { .. } => {
                let mut out = Out { actions, now };
                self.targets[i].halting_found(&mut out, &procs);
            }
            // Looked for once more before the attempt: not there.
            &Phase::Backoff {
                looking: true,
                reason,
                pid,
                ..
            } => self.start_restart(i, reason, pid, now, actions),
            Phase::Waiting {
                announced: false, ..
            } => self.absent(i, now, actions),
            Phase::Up(_) if t.spec.is_group() => self.members(i, procs, now, actions),
            _ => {}
        }
    }

    /// Enough processes found: the target is up (found, recovered, or
    /// back by itself).
    fn adopt(&mut self, i: usize, procs: Vec<ProcRef>, now: Ms, actions: &mut Vec<Action>) {
        let t = &mut self.targets[i];
        let name = t.id.clone();
        let ev = match &t.phase {
            Phase::Waiting { .. } => EventSpec::new(msg::TARGET_FOUND),
            Phase::Settling {
                reason: Reason::Manual,
                ..
            } => EventSpec::new(msg::STARTED_BY_SCRIPT),
            Phase::Settling { attempt, .. } => {
                EventSpec::new(msg::TARGET_RECOVERED).field("attempt", *attempt)
            }
            // The last script failed, yet what it started is up.
            Phase::Backoff { after, .. } if *after > 0 => {
                EventSpec::new(msg::TARGET_RECOVERED).field("attempt", *after)
            }
            _ => EventSpec::new(msg::TARGET_BACK),
        };
        let mut out = Out { actions, now };
        let main = procs[0];
        let adopt: Vec<ProcRef> = if t.spec.is_group() {
            procs.clone()
        } else {
            vec![main]
        };
        for p in &adopt {
            out.push(Action::Track {
                target: name.clone(),
                proc: *p,
            });
        }
        t.procs = adopt;
        t.enter(Phase::Up(Up::default()));
        // Uptime is the process's: the same process found again (after
        // pause and resume, a reload, a restart of procward) keeps it.
        if t.up_proc != Some(main) || t.up_since.is_none() {
            t.up_since = Some(now);
            t.up_proc = Some(main);
        }
        t.down_reported = false;
        let newly = !t.ever_up || t.last_pid != Some(main.pid);
        t.ever_up = true;
        t.last_pid = Some(main.pid);
        out.emit(
            t,
            ev.target(&name).pid(main.pid).field("count", procs.len()),
        );
        if newly {
            out.push(Action::Persist);
        }
    }

    /// Nothing found while waiting: said once. A target that was up when
    /// procward last ran is recovered (its end said, unless it was).
    fn absent(&mut self, i: usize, now: Ms, actions: &mut Vec<Action>) {
        let t = &mut self.targets[i];
        let name = t.id.clone();
        if let Phase::Waiting { announced, .. } = &mut t.phase {
            *announced = true;
        }
        let pid = t.last_pid;
        if t.ever_up && t.down_reported {
            // Its end was reported already (before a reset, or before
            // procward restarted): recover without saying it again.
            self.recover(i, Reason::Disappeared, pid, None, now, actions);
        } else if t.ever_up {
            let mut ev = EventSpec::new(msg::PROCESS_DISAPPEARED).target(&name);
            if let Some(p) = pid {
                ev = ev.pid(p);
            }
            // Gone while procward was not running: how it ended is unknown.
            let ev = ExitStatus::fields(None, ev);
            self.fail(i, Reason::Disappeared, pid, ev, now, actions);
        } else {
            let mut out = Out { actions, now };
            out.emit(t, EventSpec::new(msg::TARGET_WAITING).target(&name));
        }
    }

    /// A group's scan: new members are tracked; the count is checked
    /// against min and max.
    fn members(&mut self, i: usize, procs: Vec<ProcRef>, now: Ms, actions: &mut Vec<Action>) {
        let t = &mut self.targets[i];
        let name = t.id.clone();
        let mut out = Out { actions, now };
        for p in &procs {
            if !t.procs.contains(p) {
                t.procs.push(*p);
                out.push(Action::Track {
                    target: name.clone(),
                    proc: *p,
                });
            }
        }
        let count = procs.len() as u32;
        let (min, max) = t.spec.count.unwrap_or((1, None));
        if count < min.max(1) {
            let pid = t.main().map(|m| m.pid);
            self.below_min(i, count, pid, now, actions);
            return;
        }
        let (Some(max), Some(up)) = (max, t.up()) else {
            return;
        };
        let id = if count > max && !up.over_max {
            up.over_max = true;
            msg::COUNT_ABOVE_MAX
        } else if count <= max && up.over_max {
            up.over_max = false;
            msg::COUNT_NORMAL
        } else {
            return;
        };
        let ev = EventSpec::new(id)
            .target(&name)
            .field("count", count)
            .field("max", max);
        out.emit(t, ev);
    }

    fn on_exited(
        &mut self,
        i: usize,
        proc: ProcRef,
        kind: ExitKind,
        status: Option<ExitStatus>,
        now: Ms,
        actions: &mut Vec<Action>,
    ) {
        let t = &mut self.targets[i];
        if let Phase::Stopping { reason } = t.phase {
            if t.main() == Some(proc) {
                t.last_exit = status;
                // The stalled process we stopped is gone: restart it.
                if t.procs.len() > 1 {
                    actions.push(Action::UntrackAll {
                        target: t.id.clone(),
                    });
                }
                t.procs.clear();
                self.recover(i, reason, Some(proc.pid), None, now, actions);
            }
            return;
        }
        if !matches!(t.phase, Phase::Up(_)) || !t.procs.contains(&proc) {
            return; // stale: already handled, or not ours
        }
        let name = t.id.clone();
        let was_main = t.main() == Some(proc);
        t.procs.retain(|p| *p != proc);
        // In a group, members are equal; only a pidfile names a main
        // process (the master) whose end is the group's.
        let member = t.spec.is_group() && !(was_main && t.spec.matcher.pidfile.is_some());
        if member {
            let count = t.procs.len() as u32;
            let min = t.spec.min_count();
            let max = t.spec.count.and_then(|c| c.1);
            let mut out = Out { actions, now };
            if count < min {
                self.below_min(i, count, Some(proc.pid), now, actions);
            } else if let (Some(up), Some(max)) =
                (t.up().filter(|u| u.over_max), max.filter(|&m| count <= m))
            {
                up.over_max = false;
                let ev = EventSpec::new(msg::COUNT_NORMAL)
                    .target(&name)
                    .field("count", count)
                    .field("max", max);
                out.emit(t, ev);
            } else {
                let ev = EventSpec::new(msg::MEMBER_EXITED)
                    .target(&name)
                    .pid(proc.pid)
                    .field("count", count)
                    .field("min", min);
                out.emit(t, ev);
            }
            return;
        }
        if was_main {
            t.last_exit = status;
            // An end the operator declared normal (success-exit): said,
            // not restarted; the target waits for its next start.
            let normal = status
                .and_then(|e| e.code)
                .is_some_and(|c| t.spec.success_exit.contains(&c));
            if normal && kind == ExitKind::Disappeared {
                t.procs.clear();
                t.up_proc = None;
                t.down_reported = true;
                t.enter(Phase::Waiting {
                    announced: true,
                    manual: false,
                });
                let ev = EventSpec::new(msg::ENDED_NORMALLY)
                    .target(&name)
                    .pid(proc.pid)
                    .field("exit_code", status.and_then(|e| e.code).unwrap_or(0));
                Out { actions, now }.emit(t, ev);
                return;
            }
            let (reason, ev) = match kind {
                ExitKind::Disappeared => (
                    Reason::Disappeared,
                    EventSpec::new(msg::PROCESS_DISAPPEARED)
                        .target(&name)
                        .pid(proc.pid),
                ),
                ExitKind::Zombie { ppid } => (
                    Reason::Zombie,
                    EventSpec::new(msg::PROCESS_ZOMBIE)
                        .target(&name)
                        .pid(proc.pid)
                        .field("ppid", ppid),
                ),
            };
            let ev = ExitStatus::fields(status.as_ref(), ev);
            self.fail(i, reason, Some(proc.pid), ev, now, actions);
        }
        // Any other tracked process is a group member, handled above.
    }

    /// A group below `count.min`: a failure (PW2005), restarted with
    /// reason `count`.
    fn below_min(
        &mut self,
        i: usize,
        count: u32,
        pid: Option<u32>,
        now: Ms,
        actions: &mut Vec<Action>,
    ) {
        let t = &self.targets[i];
        let ev = EventSpec::new(msg::COUNT_BELOW_MIN)
            .target(&t.id)
            .field("count", count)
            .field("min", t.spec.min_count());
        self.fail(i, Reason::Count, pid, ev, now, actions);
    }

    fn on_probe(
        &mut self,
        i: usize,
        pid: u32,
        ok: bool,
        detail: String,
        now: Ms,
        actions: &mut Vec<Action>,
    ) {
        let t = &mut self.targets[i];
        let Some(stall) = t.spec.stall.as_deref().cloned() else {
            return;
        };
        let main = match t.main() {
            Some(m) if m.pid == pid && matches!(t.phase, Phase::Up(_)) => m,
            _ => return, // a result for a process we no longer watch
        };
        let name = t.id.clone();
        let kind = stall.probe.kind();
        let mut out = Out { actions, now };
        let up = t.up().expect("up");
        up.last_probe = Some((ok, detail.clone()));
        if ok {
            up.probe_failures = 0;
            if std::mem::take(&mut up.stalled) {
                let ev = EventSpec::new(msg::STALL_CLEARED)
                    .target(&name)
                    .pid(pid)
                    .field("probe", kind);
                out.emit(t, ev);
            }
            return;
        }
        up.probe_failures += 1;
        let failures = up.probe_failures;
        if failures < stall.failures || up.stalled {
            return;
        }
        let notify = stall.action == crate::config::StallAction::Notify;
        up.stalled = notify;
        let ev = EventSpec::new(msg::TARGET_STALLED)
            .target(&name)
            .pid(pid)
            .field("probe", kind)
            .field("failures", failures)
            .field("error", detail)
            .field("action", if notify { "notify" } else { "restart" });
        out.emit(t, ev);
        if notify {
            return;
        }
        t.enter(Phase::Stopping {
            reason: Reason::Stalled,
        });
        t.up_since = None;
        out.push(Action::Stop {
            target: name.clone(),
            proc: main,
            group: stall.signal_group,
            timeout: stall.stop_timeout,
        });
        let give_up = now + stall.stop_timeout.as_millis() as u64 + 5000;
        out.push(Action::Arm {
            target: name,
            token: t.token,
            at: give_up,
        });
    }

    /// The target failed: say so, drop its processes, and recover.
    fn fail(
        &mut self,
        i: usize,
        reason: Reason,
        pid: Option<u32>,
        ev: EventSpec,
        now: Ms,
        actions: &mut Vec<Action>,
    ) {
        let t = &mut self.targets[i];
        let name = t.id.clone();
        let mut out = Out { actions, now };
        out.emit(t, ev);
        t.down_reported = true;
        if !t.procs.is_empty() {
            out.push(Action::UntrackAll { target: name });
        }
        t.procs.clear();
        t.up_since = None;
        self.recover(i, reason, pid, None, now, actions);
    }

    /// Decide what follows a failure: restart now, after a backoff, or
    /// retry-over. `after`: the attempt whose script just ran (it may have
    /// started the target after all: a restart due now looks for it once
    /// more first); `None` when the target was just seen gone.
    fn recover(
        &mut self,
        i: usize,
        reason: Reason,
        pid: Option<u32>,
        after: Option<u32>,
        now: Ms,
        actions: &mut Vec<Action>,
    ) {
        // What follows a failed operator's start is an ordinary, counted
        // recovery of an absent process.
        let reason = match reason {
            Reason::Manual => Reason::Disappeared,
            r => r,
        };
        let t = &mut self.targets[i];
        if t.spec.restart.script.is_none() {
            t.enter(Phase::Down);
            return;
        }
        t.prune(now);
        let n = t.attempts.len();
        if n >= t.spec.retry.max as usize {
            self.retry_over(i, reason, pid, after, now, actions);
            return;
        }
        t.over = false;
        let delay = self.backoff(i, n);
        match (delay, after) {
            (0, None) => self.start_restart(i, reason, pid, now, actions),
            (0, Some(after)) => {
                self.targets[i].enter(Phase::Backoff {
                    reason,
                    pid,
                    due: now,
                    after,
                    looking: false,
                });
                self.look(i, actions);
            }
            _ => {
                let after = after.unwrap_or(0);
                let d = Delay { delay, after };
                self.delay_restart(i, reason, pid, d, now, actions, msg::RESTART_DELAYED);
            }
        }
    }

    /// Before an attempt after a backoff or a failed script: look for the
    /// target once more (a scan); the attempt runs only if it is not there
    /// (`on_found`).
    fn look(&mut self, i: usize, actions: &mut Vec<Action>) {
        if let Phase::Backoff { looking, .. } = &mut self.targets[i].phase {
            *looking = true;
            actions.push(Action::ScanSoon);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn delay_restart(
        &mut self,
        i: usize,
        reason: Reason,
        pid: Option<u32>,
        Delay { delay, after }: Delay,
        now: Ms,
        actions: &mut Vec<Action>,
        id: &'static str,
    ) {
        let t = &mut self.targets[i];
        let name = t.id.clone();
        t.enter(Phase::Backoff {
            reason,
            pid,
            due: now + delay,
            after,
            looking: false,
        });
        let mut out = Out { actions, now };
        out.push(Action::Arm {
            target: name.clone(),
            token: t.token,
            at: now + delay,
        });
        let ev = EventSpec::new(id)
            .target(&name)
            .field(
                "delay",
                // Whole seconds, tenths below ten seconds: "900ms", "1s 800ms", "37s".
                humantime::format_duration(std::time::Duration::from_millis(if delay < 10_000 {
                    delay / 100 * 100
                } else {
                    delay / 1000 * 1000
                }))
                .to_string(),
            )
            .field("delay_ms", delay)
            .field("attempt", t.attempts.len() as u64 + 1)
            .field("max", t.spec.retry.max)
            .field("reason", reason.as_str());
        let ev = if id == msg::RETRY_OVER {
            ev.field("attempts", t.attempts.len())
                .field(
                    "window",
                    humantime::format_duration(t.spec.retry.window).to_string(),
                )
                .field("action", OnRetryOver::Continue.as_str())
        } else {
            ev
        };
        out.emit(t, ev);
    }

    fn retry_over(
        &mut self,
        i: usize,
        reason: Reason,
        pid: Option<u32>,
        after: Option<u32>,
        now: Ms,
        actions: &mut Vec<Action>,
    ) {
        let t = &mut self.targets[i];
        let name = t.id.clone();
        let action = t.spec.on_retry_over;
        if action == OnRetryOver::Continue {
            let cap = t.spec.retry.backoff_max.as_millis() as u64;
            let first = !t.over;
            t.over = true;
            let delay = self.jitter(cap);
            let id = if first {
                msg::RETRY_OVER
            } else {
                msg::RESTART_DELAYED
            };
            let d = Delay {
                delay,
                after: after.unwrap_or(0),
            };
            self.delay_restart(i, reason, pid, d, now, actions, id);
            return;
        }
        let mut out = Out { actions, now };
        let ev = EventSpec::new(msg::RETRY_OVER)
            .target(&name)
            .field("attempts", t.attempts.len())
            .field(
                "window",
                humantime::format_duration(t.spec.retry.window).to_string(),
            )
            .field("action", action.as_str())
            .field("reason", reason.as_str())
            .field("delay", "-")
            .field("delay_ms", 0)
            .field("attempt", t.attempts.len() as u64 + 1)
            .field("max", t.spec.retry.max);
        t.enter(if action == OnRetryOver::Failover {
            Phase::Failed
        } else {
            Phase::RetryOver
        });
        out.emit(t, ev);
        if let (OnRetryOver::Failover | OnRetryOver::Exec, Some(f)) = (action, &t.spec.failover) {
            let ev = EventSpec::new(msg::RETRY_OVER_COMMAND)
                .target(&name)
                .field("command", f.command.join(" "))
                .field("action", action.as_str());
            out.emit(t, ev);
            out.push(Action::RunCommand {
                target: name,
                attempts: t.attempts.len() as u32,
            });
        }
        out.push(Action::Persist);
    }

    fn start_restart(
        &mut self,
        i: usize,
        reason: Reason,
        pid: Option<u32>,
        now: Ms,
        actions: &mut Vec<Action>,
    ) {
        let t = &mut self.targets[i];
        let name = t.id.clone();
        let attempt = if reason == Reason::Manual {
            0 // an operator's start is not counted
        } else {
            t.attempts.push_back(now);
            t.attempts.len() as u32
        };
        t.enter(Phase::Restarting {
            attempt,
            reason,
            script: None,
        });
        let mut out = Out { actions, now };
        let script = t
            .spec
            .restart
            .script
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut ev = if reason == Reason::Manual {
            EventSpec::new(msg::START_SCRIPT_STARTED)
        } else {
            EventSpec::new(msg::RESTART_STARTED)
                .field("attempt", attempt)
                .field("max", t.spec.retry.max)
                .field("reason", reason.as_str())
        }
        .target(&name)
        .field("script", script);
        if let Some(p) = pid {
            ev = ev.pid(p);
        }
        out.emit(t, ev);
        // How the process this restart replaces ended (not known for a
        // count or children failure, nor for an operator's start).
        let exit = match reason {
            Reason::Disappeared | Reason::Zombie | Reason::Stalled => t.last_exit,
            _ => None,
        };
        out.push(Action::RunScript {
            target: name,
            attempt,
            reason,
            pid,
            exit,
        });
        out.push(Action::Persist);
    }

    fn on_script_done(
        &mut self,
        i: usize,
        attempt: u32,
        outcome: ScriptOutcome,
        now: Ms,
        actions: &mut Vec<Action>,
    ) {
        let t = &mut self.targets[i];
        let mut out = Out {
            actions: &mut *actions,
            now,
        };
        if t.halting_script(&mut out, attempt, None) {
            return;
        }
        let reason = match t.phase {
            Phase::Restarting {
                attempt: a, reason, ..
            } if a == attempt => reason,
            _ => return, // paused, reset or reloaded meanwhile
        };
        let name = t.id.clone();
        let manual = reason == Reason::Manual;
        let mut out = Out { actions, now };
        match outcome {
            ScriptOutcome::Exited { code: 0, .. }
            | ScriptOutcome::Unknown
            | ScriptOutcome::Lost => {
                let settle = t.spec.restart.settle;
                let status = match outcome {
                    ScriptOutcome::Unknown | ScriptOutcome::Lost => outcome_status(&outcome),
                    _ => "exit code 0".to_string(),
                };
                t.enter(Phase::Settling { attempt, reason });
                out.push(Action::Arm {
                    target: name.clone(),
                    token: t.token,
                    at: now + settle.as_millis() as u64,
                });
                let ev = if manual {
                    EventSpec::new(msg::START_SCRIPT_DONE)
                } else {
                    EventSpec::new(msg::RESTART_SCRIPT_DONE).field("attempt", attempt)
                };
                out.emit(
                    t,
                    ev.target(&name)
                        .field("settle", humantime::format_duration(settle).to_string())
                        .field("status", status),
                );
                out.push(Action::ScanSoon);
                out.push(Action::Persist);
            }
            ref other if manual => {
                let ev = EventSpec::new(msg::START_FAILED)
                    .target(&name)
                    .field("status", outcome_status(other))
                    .field("output", outcome_output(other));
                out.emit(t, ev);
                self.recover(i, reason, None, Some(attempt), now, actions);
            }
            ScriptOutcome::TimedOut { ref output } => {
                let ev = EventSpec::new(msg::RESTART_SCRIPT_TIMEOUT)
                    .target(&name)
                    .field("attempt", attempt)
                    .field(
                        "timeout",
                        humantime::format_duration(t.spec.restart.timeout).to_string(),
                    )
                    .field("output", output.clone());
                out.emit(t, ev);
                self.recover(i, reason, None, Some(attempt), now, actions);
            }
            ScriptOutcome::SpawnFailed(ref e) => {
                let ev = EventSpec::new(msg::RESTART_SPAWN_FAILED)
                    .target(&name)
                    .field("attempt", attempt)
                    .field("error", e.clone());
                out.emit(t, ev);
                self.recover(i, reason, None, Some(attempt), now, actions);
            }
            other => {
                let ev = EventSpec::new(msg::RESTART_SCRIPT_FAILED)
                    .target(&name)
                    .field("attempt", attempt)
                    .field("status", outcome_status(&other))
                    .field("output", outcome_output(&other));
                out.emit(t, ev);
                self.recover(i, reason, None, Some(attempt), now, actions);
            }
        }
    }
}

pub fn outcome_status(o: &ScriptOutcome) -> String {
    match o {
        ScriptOutcome::Exited { code, .. } => format!("exit code {code}"),
        ScriptOutcome::Signaled { signal, .. } => format!("killed by signal {signal}"),
        ScriptOutcome::TimedOut { .. } => "timed out".into(),
        ScriptOutcome::SpawnFailed(e) => format!("not started: {e}"),
        ScriptOutcome::Unknown => "exit status unknown: started by an earlier procward".into(),
        ScriptOutcome::Lost => "exit status unknown: its spawner was killed".into(),
    }
}

pub fn outcome_output(o: &ScriptOutcome) -> String {
    match o {
        ScriptOutcome::Exited { output, .. }
        | ScriptOutcome::Signaled { output, .. }
        | ScriptOutcome::TimedOut { output } => output.clone(),
        ScriptOutcome::SpawnFailed(_) | ScriptOutcome::Unknown | ScriptOutcome::Lost => {
            String::new()
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
