//! Recovery: failing a target, the retry window, backoff, retry-over,
//! restart scripts and their outcomes.

use super::*;

impl Monitor {
    /// The target failed: say so, drop its processes, and recover.
    pub(super) fn fail(
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
    pub(super) fn recover(
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
    pub(super) fn look(&mut self, i: usize, actions: &mut Vec<Action>) {
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

    pub(super) fn start_restart(
        &mut self,
        i: usize,
        reason: Reason,
        pid: Option<u32>,
        now: Ms,
        actions: &mut Vec<Action>,
    ) {
        if self.wait_for_deps(i, reason, pid, now, actions) {
            return;
        }
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
            Reason::Disappeared | Reason::Zombie | Reason::Stalled | Reason::Check => t.last_exit,
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

    pub(super) fn on_script_done(
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
