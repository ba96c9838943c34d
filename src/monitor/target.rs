//! One target: its phase and what it keeps, the operator's commands on it
//! (pause, resume, start, stop, reset), its persisted form.

use super::*;

#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub spec: Arc<TargetSpec>,
    /// `spec.name`, shared with every input and action about the target.
    pub id: TargetId,
    pub phase: Phase,
    pub(super) attempts: VecDeque<Ms>,
    pub(super) procs: Vec<ProcRef>,
    pub(super) ever_up: bool,
    /// In retry-over under `continue`: RETRY-OVER was said once.
    pub(super) over: bool,
    pub(super) up_since: Option<Ms>,
    /// Timers armed in an earlier phase carry an older token: stale.
    pub(super) token: u64,
    pub(super) last_pid: Option<u32>,
    pub(super) last_event: Option<(String, Ms)>,
    pub(super) down_reported: bool,
    /// The process `up_since` belongs to.
    pub(super) up_proc: Option<ProcRef>,
    /// How the last main process ended, when that could be learned.
    pub(super) last_exit: Option<ExitStatus>,
    /// What only targets with checks or dependencies keep (boxed: most
    /// have neither).
    pub(super) extra: Option<Box<Extra>>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Extra {
    /// Checks (index, when they failed) whose PW2042 awaits its PW2043,
    /// across restarts and stops of the target: the next pass says it.
    pub(super) owed: Vec<(usize, Ms)>,
    /// Stopped because this dependency went down for good: started again
    /// once it runs.
    pub(super) held_for: Option<TargetId>,
    /// `[[target.check]]` states of the main process `checks_of`, by
    /// index (they start again with a new process).
    pub(super) checks: Vec<CheckState>,
    pub(super) checks_of: Option<ProcRef>,
}

impl Target {
    pub(super) fn new(spec: Arc<TargetSpec>, p: &Persisted) -> Self {
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
            extra: None,
            last_exit: p.last_exit,
        }
    }

    pub(super) fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }

    pub(super) fn owed(&self) -> &[(usize, Ms)] {
        self.extra.as_deref().map_or(&[], |x| &x.owed)
    }

    pub(super) fn held_for(&self) -> Option<&TargetId> {
        self.extra.as_deref().and_then(|x| x.held_for.as_ref())
    }

    /// Stop the main process `main` (SIGTERM, to its group if `group`;
    /// SIGKILL after `timeout`) to restart it with `reason` once it is
    /// gone (a stall or a check); given up on at a timer if it never goes.
    pub(super) fn stop_for_restart(
        &mut self,
        out: &mut Out,
        reason: Reason,
        main: ProcRef,
        group: bool,
        timeout: std::time::Duration,
    ) {
        self.enter(Phase::Stopping { reason });
        self.up_since = None;
        out.push(Action::Stop {
            target: self.id.clone(),
            proc: main,
            group,
            timeout,
        });
        out.push(Action::Arm {
            target: self.id.clone(),
            token: self.token,
            at: out.now + timeout.as_millis() as u64 + 5000,
        });
    }

    pub(super) fn main(&self) -> Option<ProcRef> {
        self.procs.first().copied()
    }

    /// How the last main process ended, when that could be learned.
    pub(crate) fn last_exit(&self) -> Option<ExitStatus> {
        self.last_exit
    }

    /// The one way to change phase. Timers armed for the phase left
    /// behind go stale.
    pub(super) fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.token += 1;
    }

    pub(super) fn up(&mut self) -> Option<&mut Up> {
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
    pub(super) fn needs_scan(&self) -> bool {
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

    pub(super) fn prune(&mut self, now: Ms) {
        let window = self.spec.retry.window.as_millis() as u64;
        while let Some(&t) = self.attempts.front() {
            if t.saturating_add(window) <= now {
                self.attempts.pop_front();
            } else {
                break;
            }
        }
    }

    pub(super) fn in_window(&self, now: Ms) -> usize {
        let window = self.spec.retry.window.as_millis() as u64;
        self.attempts
            .iter()
            .filter(|&&t| t.saturating_add(window) > now)
            .count()
    }

    pub(super) fn persisted(&self) -> Persisted {
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
    pub(super) fn pause(&mut self, out: &mut Out, by: &str) -> Result<bool, String> {
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

    pub(super) fn resume(&mut self, out: &mut Out, by: &str) -> Result<bool, String> {
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
    pub(super) fn start(&mut self, out: &mut Out, by: &str) -> Result<bool, String> {
        let name = self.id.clone();
        if let Some(x) = &mut self.extra {
            x.held_for = None;
        }
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
    pub(super) fn stop(&mut self, out: &mut Out, by: &str, timeout: std::time::Duration) -> bool {
        let name = self.id.clone();
        if let Some(x) = &mut self.extra {
            x.held_for = None;
        }
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
    pub(super) fn halting_script(
        &mut self,
        out: &mut Out,
        attempt: u32,
        proc: Option<ProcRef>,
    ) -> bool {
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
    pub(super) fn halting_found(&mut self, out: &mut Out, procs: &[ProcRef]) {
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

    pub(super) fn reset(&mut self, out: &mut Out, by: &str) -> bool {
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
