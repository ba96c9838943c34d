//! The pure monitor core: one state machine per target plus the sliding
//! retry window. It takes inputs (process found or exited, script finished,
//! timer fired, operator command) with the current wall-clock time and
//! returns actions (emit event, track pid, run script, arm timer, persist).
//! It never reads /proc, spawns or sleeps, so every rule is unit-tested with
//! a fake clock.

mod checks;
mod deps;
mod inputs;
mod recovery;
mod target;

use crate::config::{OnRetryOver, TargetSpec};
use crate::model::event::{msg, EventSpec};
use crate::model::{ExitKind, ExitStatus, Halted, Ms, ProcRef, Reason, State, TargetId};
use checks::CheckState;
pub(crate) use checks::{CheckStatus, Reading};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
pub(crate) use target::Target;

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
pub(crate) enum Input {
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
    /// A reading of check `check` (its index) of the main process `pid`.
    Check {
        target: TargetId,
        check: usize,
        pid: u32,
        reading: Reading,
    },
}

impl Input {
    /// The target the input is about.
    pub(crate) fn target(&self) -> &TargetId {
        match self {
            Input::Found { target, .. }
            | Input::Exited { target, .. }
            | Input::Children { target, .. }
            | Input::ScriptStarted { target, .. }
            | Input::ScriptDone { target, .. }
            | Input::CommandDone { target, .. }
            | Input::Timer { target, .. }
            | Input::Probe { target, .. }
            | Input::Check { target, .. } => target,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
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
pub(crate) enum Action {
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
    /// Run the command of check `check` (its index; `action = "exec"`),
    /// which failed on the main process `pid`.
    RunCheckCommand {
        target: TargetId,
        check: usize,
        pid: u32,
    },
    /// Scan /proc soon instead of at the next interval.
    ScanSoon,
    Persist,
}

/// Where a target is. Each phase carries what only it needs; the phase
/// changes only through [`Target::enter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
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
    /// A restart (or start: `reason` manual) waits for `on`, a target it
    /// depends on, to run.
    Blocked {
        reason: Reason,
        pid: Option<u32>,
        on: TargetId,
    },
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
pub(crate) struct Up {
    /// Above `count.max` (PW2006 said, PW2007 due when back).
    over_max: bool,
    /// `children.min` was reached once: losing children counts from now.
    children_armed: bool,
    /// Consecutive stall probe failures.
    probe_failures: u32,
    /// Stalled under `stall.action = "notify"`: said once, cleared on a pass.
    stalled: bool,
    last_probe: Option<(bool, String)>,
    /// A `[[target.check]]` of this process failed (notify or exec: the
    /// target is degraded; the states are in the target's `Extra`).
    degraded: bool,
}

impl Phase {
    /// Waiting, nothing said yet.
    pub(crate) const WAITING: Phase = Phase::Waiting {
        announced: false,
        manual: false,
    };

    pub(crate) fn state(&self) -> State {
        match self {
            Phase::Waiting { .. } => State::Waiting,
            Phase::Up(u) if u.stalled => State::Stalled,
            Phase::Up(u) if u.degraded => State::Degraded,
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
            Phase::Blocked { .. } => State::Blocked,
        }
    }

    /// The state's name, as events say what a target was before (a
    /// stalled target was "up").
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Phase::Up(_) => State::Up.as_str(),
            other => other.state().as_str(),
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

/// A row of `procward status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct TargetStatus {
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
    /// The dependency a blocked target waits for, or the one it was
    /// stopped for (to be started again once it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waits_for: Option<String>,
    /// `[[target.check]]`: each one's state, last value and last change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckStatus>,
}

/// A restart put off: by `delay`, after the script of attempt `after`
/// (0: none) failed.
#[derive(Debug, Clone, Copy)]
struct Delay {
    delay: Ms,
    after: u32,
}

pub(crate) struct Monitor {
    targets: Vec<Target>,
    index: HashMap<String, usize>,
    rng: u64,
    /// The targets with `depends-on` (deps.rs).
    with_deps: Vec<usize>,
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
    pub(crate) fn new<S: Into<Arc<TargetSpec>>>(
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
            with_deps: Vec::new(),
        };
        for spec in specs {
            let spec: Arc<TargetSpec> = spec.into();
            let p = state.get(&spec.name).cloned().unwrap_or_default();
            m.index.insert(spec.name.clone(), m.targets.len());
            m.targets.push(Target::new(spec, &p));
        }
        m.index_deps();
        m
    }

    /// What to do when procward starts on saved state: resume the
    /// recoveries that were under way (wait for a running script, arm the
    /// backoff and settle timers) instead of starting them again.
    pub(crate) fn startup(&mut self, now: Ms) -> Vec<Action> {
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

    pub(crate) fn targets(&self) -> &[Target] {
        &self.targets
    }

    pub(crate) fn target(&self, name: &str) -> Option<&Target> {
        self.index.get(name).map(|&i| &self.targets[i])
    }

    /// Whether a target is settling: scan often (its script has run, it
    /// must be found soon).
    pub(crate) fn fast_scan(&self) -> bool {
        self.targets
            .iter()
            .any(|t| matches!(t.phase, Phase::Settling { .. } | Phase::Halting { .. }))
    }

    /// Targets a /proc scan must look for now.
    pub(crate) fn scan_targets(&self) -> impl Iterator<Item = &Arc<TargetSpec>> {
        self.targets
            .iter()
            .filter(|t| t.needs_scan())
            .map(|t| &t.spec)
    }

    /// Up targets whose children must be counted: (target, main pid).
    pub(crate) fn children_checks(&self) -> impl Iterator<Item = (&TargetId, u32)> {
        self.targets
            .iter()
            .filter_map(|t| match (&t.phase, t.spec.children_min, t.main()) {
                (Phase::Up(_), Some(_), Some(m)) => Some((&t.id, m.pid)),
                _ => None,
            })
    }

    /// Up targets with a stall probe: (target, main process).
    pub(crate) fn probe_targets(&self) -> impl Iterator<Item = (&Arc<TargetSpec>, ProcRef)> {
        self.targets
            .iter()
            .filter_map(|t| match (&t.phase, &t.spec.stall, t.main()) {
                (Phase::Up(_), Some(_), Some(m)) => Some((&t.spec, m)),
                _ => None,
            })
    }

    /// Every tracked process, with its target.
    pub(crate) fn tracked(&self) -> impl Iterator<Item = (&str, ProcRef)> {
        self.targets
            .iter()
            .flat_map(|t| t.procs.iter().map(move |p| (t.spec.name.as_str(), *p)))
    }

    /// One target's state, as the state file would hold it.
    pub(crate) fn persisted_of(&self, target: &str) -> Option<Persisted> {
        self.target(target).map(|t| t.persisted())
    }

    /// Every target's state to save, in the core's order: a reference
    /// count and a small copy per target (taken after every change).
    pub(crate) fn snapshot_list(&self) -> Vec<(TargetId, Persisted)> {
        self.targets
            .iter()
            .map(|t| (t.id.clone(), t.persisted()))
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> BTreeMap<String, Persisted> {
        self.targets
            .iter()
            .map(|t| (t.spec.name.clone(), t.persisted()))
            .collect()
    }

    pub(crate) fn status(&self, now: Ms) -> Vec<TargetStatus> {
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
                checks: checks::statuses(t),
                waits_for: match &t.phase {
                    Phase::Blocked { on, .. } => Some(on.to_string()),
                    _ => t.held_for().map(|h| h.to_string()),
                },
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
    pub(crate) fn reconfigure<S: Into<Arc<TargetSpec>>>(
        &mut self,
        specs: impl IntoIterator<Item = S>,
        now: Ms,
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
                    if t.spec.checks() != spec.checks() {
                        // Check states are by index: they start again.
                        if let Some(u) = t.up() {
                            u.degraded = false;
                        }
                        if let Some(x) = &mut t.extra {
                            x.owed.clear();
                            x.checks.clear();
                        }
                    }
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
        self.index_deps();
        self.unblock_after_reload(now, &mut actions);
        actions.push(Action::ScanSoon);
        actions.push(Action::Persist);
        actions
    }

    /// An operator command for one target. `by` names who asked.
    pub(crate) fn command(
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
        let before = self.targets[i].phase.state();
        if matches!(cmd, Command::Stop { .. }) && before != State::Stopped {
            // What depends on it stops first, the deepest first.
            self.stop_dependents(i, now, &mut actions);
        }
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
        if self.targets[i].phase.state() != before {
            self.propagate(now, &mut actions);
        }
        Ok(actions)
    }
}

pub(crate) fn outcome_status(o: &ScriptOutcome) -> String {
    match o {
        ScriptOutcome::Exited { code, .. } => format!("exit code {code}"),
        ScriptOutcome::Signaled { signal, .. } => format!("killed by signal {signal}"),
        ScriptOutcome::TimedOut { .. } => "timed out".into(),
        ScriptOutcome::SpawnFailed(e) => format!("not started: {e}"),
        ScriptOutcome::Unknown => "exit status unknown: started by an earlier procward".into(),
        ScriptOutcome::Lost => "exit status unknown: its spawner was killed".into(),
    }
}

pub(crate) fn outcome_output(o: &ScriptOutcome) -> String {
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
