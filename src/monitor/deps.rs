//! `depends-on` in the core. A restart (or start) of a target runs only
//! while every target it depends on runs; until then it is `blocked`
//! (PW2044 says for what). A target that goes down for good (stopped,
//! RETRY-OVER, FAILED, down without a script) has its dependents stopped,
//! the deepest first, and started again once it runs, in order.
//! Only targets with `depends-on` are looked at (`with_deps`), and only
//! when a target's state changed.

use super::*;

/// A dependency that counts as running (a paused one is not watched:
/// nothing says it does not run).
fn runs(st: State) -> bool {
    matches!(
        st,
        State::Up | State::Degraded | State::Stalled | State::Paused
    )
}

/// A dependency down until an operator (or its recovery from RETRY-OVER)
/// brings it back.
fn down_for_good(st: State) -> bool {
    st.given_up() || matches!(st, State::Stopped)
}

impl Monitor {
    /// Index the targets that depend on others (at start and reload).
    pub(super) fn index_deps(&mut self) {
        self.with_deps = (0..self.targets.len())
            .filter(|&i| !self.targets[i].spec.depends_on().is_empty())
            .collect();
    }

    /// After a reload: a blocked target whose dependencies changed may go
    /// on (its `depends-on` removed, or naming a target that runs).
    pub(super) fn unblock_after_reload(&mut self, now: Ms, actions: &mut Vec<Action>) {
        for i in 0..self.targets.len() {
            if let Phase::Blocked { reason, pid, .. } = self.targets[i].phase.clone() {
                if self.blocked_by(i).is_none() {
                    self.start_restart(i, reason, pid, now, actions);
                }
            }
        }
    }

    /// The first dependency of target `i` that does not run, with its state.
    pub(super) fn blocked_by(&self, i: usize) -> Option<(TargetId, State)> {
        self.targets[i].spec.depends_on().iter().find_map(|d| {
            let t = &self.targets[*self.index.get(d.as_str())?];
            let st = t.phase.state();
            (!runs(st)).then(|| (t.id.clone(), st))
        })
    }

    /// Before a restart of target `i`: `true` (and blocked, said once per
    /// dependency) when a dependency does not run.
    pub(super) fn wait_for_deps(
        &mut self,
        i: usize,
        reason: Reason,
        pid: Option<u32>,
        now: Ms,
        actions: &mut Vec<Action>,
    ) -> bool {
        let Some((dep, st)) = self.blocked_by(i) else {
            return false;
        };
        let t = &mut self.targets[i];
        let said = matches!(&t.phase, Phase::Blocked { on, .. } if *on == dep);
        t.enter(Phase::Blocked {
            reason,
            pid,
            on: dep.clone(),
        });
        if !said {
            let ev = EventSpec::new(msg::DEPENDENCY_WAIT)
                .target(&t.id)
                .field("dependency", dep.to_string())
                .field("state", st.as_str())
                .field("reason", reason.as_str());
            let mut out = Out { actions, now };
            out.emit(t, ev);
            out.push(Action::Persist);
        }
        true
    }

    /// The targets that depend on `j`, directly or not, the deepest first.
    pub(super) fn dependents(&self, j: usize) -> Vec<usize> {
        let mut depth: HashMap<usize, usize> = HashMap::new();
        let mut frontier = vec![(j, 0usize)];
        // Bounded: each round goes one level deeper, and there is no cycle.
        while let Some((n, d)) = frontier.pop() {
            let name = self.targets[n].spec.name.as_str();
            for &i in &self.with_deps {
                let on = self.targets[i].spec.depends_on().iter().any(|x| x == name);
                if on && depth.get(&i).is_none_or(|&old| old < d + 1) && d < self.targets.len() {
                    depth.insert(i, d + 1);
                    frontier.push((i, d + 1));
                }
            }
        }
        let mut v: Vec<(usize, usize)> = depth.into_iter().collect();
        v.sort_by_key(|&(i, d)| (std::cmp::Reverse(d), i));
        v.into_iter().map(|(i, _)| i).collect()
    }

    /// Stop the dependents of `j` (deepest first), to be started again
    /// once it runs.
    pub(super) fn stop_dependents(&mut self, j: usize, now: Ms, actions: &mut Vec<Action>) -> bool {
        let by = format!("dependency {}", self.targets[j].spec.name);
        let id = self.targets[j].id.clone();
        let mut changed = false;
        for i in self.dependents(j) {
            let t = &mut self.targets[i];
            let st = t.phase.state();
            // Not running, or an operator's start that waits (blocked)
            // for the dependency: nothing to stop.
            let waits = matches!(
                t.phase,
                Phase::Halting { .. }
                    | Phase::Paused
                    | Phase::Blocked { .. }
                    | Phase::Waiting { manual: true, .. }
            );
            if down_for_good(st) || waits {
                continue;
            }
            let mut out = Out { actions, now };
            if t.stop(&mut out, &by, STOP_TIMEOUT) {
                t.extra().held_for = Some(id.clone());
                out.push(Action::Persist);
                changed = true;
            }
        }
        changed
    }

    /// After target `i`'s state changed: stop or start what depends on it,
    /// unblock what waited. Repeated while anything changes (bounded).
    pub(super) fn propagate(&mut self, now: Ms, actions: &mut Vec<Action>) {
        for _ in 0..=self.with_deps.len() {
            if !self.propagate_once(now, actions) {
                break;
            }
        }
    }

    fn propagate_once(&mut self, now: Ms, actions: &mut Vec<Action>) -> bool {
        let mut changed = false;
        // A dependency down for good: its dependents stop.
        let mut gone: Vec<usize> = self
            .with_deps
            .iter()
            .flat_map(|&i| self.targets[i].spec.depends_on().iter())
            .filter_map(|d| self.index.get(d.as_str()).copied())
            .filter(|&j| down_for_good(self.targets[j].phase.state()))
            .collect();
        // Named by several dependents: its dependents are stopped once.
        gone.sort_unstable();
        gone.dedup();
        for j in gone {
            changed |= self.stop_dependents(j, now, actions);
        }
        for k in 0..self.with_deps.len() {
            let i = self.with_deps[k];
            if self.blocked_by(i).is_some() {
                // Blocked on another dependency than before: said.
                if let Phase::Blocked { reason, pid, .. } = self.targets[i].phase.clone() {
                    self.wait_for_deps(i, reason, pid, now, actions);
                }
                continue;
            }
            let t = &mut self.targets[i];
            match t.phase.clone() {
                Phase::Blocked { reason, pid, .. } => {
                    self.start_restart(i, reason, pid, now, actions);
                    changed = true;
                }
                Phase::Stopped if t.held_for().is_some() => {
                    let held = t.extra().held_for.take().expect("held");
                    let by = format!("dependency {held}");
                    let mut out = Out { actions, now };
                    changed |= t.start(&mut out, &by).unwrap_or(false);
                    out.push(Action::Persist);
                }
                _ => {}
            }
        }
        changed
    }
}

/// How long a dependent stopped for its dependency gets between SIGTERM
/// and SIGKILL (as `procward stop`'s default).
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
