//! What the core hears: processes found or gone, exits, probe results.

use super::*;

impl Monitor {
    pub(crate) fn handle(&mut self, input: Input, now: Ms) -> Vec<Action> {
        let mut actions = Vec::new();
        let name = input.target().clone();
        let Some(&i) = self.index.get(name.as_str()) else {
            return actions; // a target removed by a reload
        };
        // Dependencies are looked at only when some target has them.
        let before = (!self.with_deps.is_empty()).then(|| self.targets[i].phase.state());
        self.dispatch(i, input, now, &mut actions);
        if before.is_some_and(|b| self.targets[i].phase.state() != b) {
            self.propagate(now, &mut actions);
        }
        actions
    }

    fn dispatch(&mut self, i: usize, input: Input, now: Ms, actions: &mut Vec<Action>) {
        let name = input.target().clone();
        match input {
            Input::Found { procs, .. } => self.on_found(i, procs, now, actions),
            Input::Exited {
                proc, kind, status, ..
            } => self.on_exited(i, proc, kind, status, now, actions),
            Input::Children { pid, count, .. } => self.on_children(i, pid, count, now, actions),
            Input::Probe {
                pid, ok, detail, ..
            } => self.on_probe(i, pid, ok, detail, now, actions),
            Input::Check {
                check,
                pid,
                reading,
                ..
            } => self.on_check(i, check, pid, reading, now, actions),
            Input::ScriptStarted { attempt, proc, .. } => {
                let t = &mut self.targets[i];
                let mut out = Out { actions, now };
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
            } => self.on_script_done(i, attempt, outcome, now, actions),
            Input::CommandDone { outcome, .. } => {
                let t = &mut self.targets[i];
                let mut out = Out { actions, now };
                let ev = match outcome {
                    ScriptOutcome::Exited { code: 0, .. } => {
                        EventSpec::new(msg::RETRY_OVER_COMMAND_DONE).target(&name)
                    }
                    other => EventSpec::new(msg::RETRY_OVER_COMMAND_FAILED)
                        .target(&name)
                        .field("status", outcome_status(&other))
                        .field("output", outcome_output(&other)),
                };
                out.emit(t, ev);
            }
            Input::Timer { token, .. } => self.on_timer(i, token, now, actions),
        }
    }

    /// The main process's children counted (`children.min`).
    fn on_children(&mut self, i: usize, pid: u32, count: u32, now: Ms, actions: &mut Vec<Action>) {
        let t = &mut self.targets[i];
        let min = t.spec.children_min.unwrap_or(0);
        let main = t.main().map(|m| m.pid) == Some(pid);
        if let (true, Some(up)) = (main, t.up()) {
            if count >= min {
                up.children_armed = true;
            } else if up.children_armed {
                let ev = EventSpec::new(msg::CHILDREN_LOST)
                    .target(&t.spec.name)
                    .pid(pid)
                    .field("children", count)
                    .field("min", min);
                self.fail(i, Reason::Children, Some(pid), ev, now, actions);
            }
        }
    }

    /// A timer of the target's phase went off (stale ones are ignored).
    fn on_timer(&mut self, i: usize, token: u64, now: Ms, actions: &mut Vec<Action>) {
        let name = self.targets[i].id.clone();
        let t = &self.targets[i];
        if token != t.token {
            return;
        }
        match t.phase.clone() {
            Phase::Backoff { .. } => self.look(i, actions),
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
                self.recover(i, reason, pid, None, now, actions);
            }
            Phase::Settling { attempt, reason } => {
                let t = &mut self.targets[i];
                let settle = humantime::format_duration(t.spec.restart.settle).to_string();
                let mut out = Out { actions, now };
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
                self.recover(i, reason, None, Some(attempt), now, actions);
            }
            _ => {}
        }
    }

    pub(super) fn on_found(
        &mut self,
        i: usize,
        procs: Vec<ProcRef>,
        now: Ms,
        actions: &mut Vec<Action>,
    ) {
        let t = &self.targets[i];
        let enough = procs.len() as u32 >= t.spec.min_count();
        match &t.phase {
            Phase::Waiting { .. }
            | Phase::Down
            | Phase::Backoff { .. }
            | Phase::Blocked { .. }
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
    pub(super) fn absent(&mut self, i: usize, now: Ms, actions: &mut Vec<Action>) {
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
    pub(super) fn members(
        &mut self,
        i: usize,
        procs: Vec<ProcRef>,
        now: Ms,
        actions: &mut Vec<Action>,
    ) {
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
            let reason = kind.reason();
            let ev = match kind {
                ExitKind::Disappeared => EventSpec::new(msg::PROCESS_DISAPPEARED),
                ExitKind::Zombie { ppid } => {
                    EventSpec::new(msg::PROCESS_ZOMBIE).field("ppid", ppid)
                }
            };
            let ev = ev.target(&name).pid(proc.pid);
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
        t.stop_for_restart(
            &mut out,
            Reason::Stalled,
            main,
            stall.signal_group,
            stall.stop_timeout,
        );
    }
}
