//! `[[target.check]]` in the core: each reading judged against its limit
//! and its `for`, a failure said once (PW2042) and acted on, a pass after
//! it said (PW2043). A failed notify or exec check leaves the target up
//! but `degraded`.

use super::*;
use crate::config::{CheckAction, Hold, Test};

/// One check's reading, measured off the loop.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reading {
    /// A probe passed, or why it failed.
    Probe(Result<(), String>),
    /// A resource's value; `None` when there is none to judge yet (the
    /// first CPU sample) or the process is gone.
    Value(Option<f64>),
}

// Readings are never NaN (the core's inputs compare as equal in tests).
impl Eq for Reading {}

/// A check's state while its target is up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct CheckState {
    /// Failing readings in a row.
    failures: u32,
    /// When the current run of failures began.
    failing_since: Option<Ms>,
    /// Failed for its `for`: PW2042 said, PW2043 due on a pass.
    pub(super) failed: bool,
    /// The last reading.
    last: Option<Last>,
    /// When it last changed between passing and failed.
    changed: Option<Ms>,
}

/// A check's last reading: a resource's value (as f64 bits: the state
/// compares as Eq), shown only when asked (events, status); a probe's
/// result.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Last {
    Value(u64),
    Probe(Result<(), String>),
}

impl Last {
    fn shown(&self, c: &crate::config::Check) -> String {
        match (self, &c.test) {
            (Last::Value(v), Test::Resource { what, .. }) => what.show(f64::from_bits(*v)),
            (Last::Probe(Err(e)), _) => e.clone(),
            _ => "passed".into(),
        }
    }

    fn value(&self) -> Option<f64> {
        match self {
            Last::Value(v) => Some(f64::from_bits(*v)),
            Last::Probe(_) => None,
        }
    }
}

/// A row of a target's checks in `status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct CheckStatus {
    pub name: String,
    pub kind: String,
    /// pending (no reading yet), ok, failing (not for long enough yet),
    /// failed.
    pub state: String,
    pub value: Option<String>,
    /// The last resource reading in its unit (bytes, %, count, seconds).
    #[serde(default)]
    pub measured: Option<f64>,
    pub limit: String,
    pub since: Option<String>,
}

impl CheckState {
    fn status(&self, c: &crate::config::Check) -> CheckStatus {
        let state = match (self.failed, self.failures, &self.last) {
            (true, _, _) => "failed",
            (false, 0, None) => "pending",
            (false, 0, Some(_)) => "ok",
            (false, _, _) => "failing",
        };
        CheckStatus {
            name: c.name.clone(),
            kind: c.kind().into(),
            state: state.into(),
            value: self.last.as_ref().map(|l| l.shown(c)),
            measured: self.last.as_ref().and_then(Last::value),
            limit: c.limit(),
            since: self.changed.map(crate::model::event::rfc3339_ms),
        }
    }
}

/// The checks of target `t` as `status` shows them (pending when the
/// target is not up).
pub(super) fn statuses(t: &Target) -> Vec<CheckStatus> {
    let states = match (&t.phase, &t.extra) {
        (Phase::Up(_), Some(x)) if x.checks_of == t.main() => x.checks.as_slice(),
        _ => &[],
    };
    t.spec
        .checks()
        .iter()
        .enumerate()
        .map(|(j, c)| states.get(j).cloned().unwrap_or_default().status(c))
        .collect()
}

/// The reading as kept, and whether it fails; `None`: nothing to judge.
fn judge(c: &crate::config::Check, reading: Reading) -> Option<(bool, Last)> {
    match reading {
        Reading::Probe(r) => Some((r.is_err(), Last::Probe(r))),
        Reading::Value(Some(v)) if matches!(c.test, Test::Resource { .. }) => {
            Some((c.breaks(v), Last::Value(v.to_bits())))
        }
        Reading::Value(_) => None,
    }
}

/// The limit a failing reading broke, as events show it.
fn broken_limit(c: &crate::config::Check, last: &Last) -> String {
    let (
        Test::Resource {
            what, above, below, ..
        },
        Some(v),
    ) = (&c.test, last.value())
    else {
        return "a pass".into();
    };
    match (above, below) {
        (_, Some(b)) if v < *b => format!("at least {}", what.show(*b)),
        (Some(a), _) => format!("at most {}", what.show(*a)),
        (None, Some(b)) => format!("at least {}", what.show(*b)),
        (None, None) => String::new(),
    }
}

impl Monitor {
    /// The main process `pid` of target `i` was checked by check `j`.
    pub(super) fn on_check(
        &mut self,
        i: usize,
        j: usize,
        pid: u32,
        reading: Reading,
        now: Ms,
        actions: &mut Vec<Action>,
    ) {
        let t = &mut self.targets[i];
        let spec = t.spec.clone();
        let Some(check) = spec.checks().get(j) else {
            return; // a check removed by a reload
        };
        if t.main().map(|m| m.pid) != Some(pid) || !matches!(t.phase, Phase::Up(_)) {
            return; // a result for a process we no longer watch
        }
        let Some((fail, last)) = judge(check, reading) else {
            return;
        };
        let n = spec.checks().len();
        let main = t.main().expect("up");
        let x = t.extra();
        if x.checks_of != Some(main) || x.checks.len() != n {
            // A new process: its checks start again.
            x.checks = vec![CheckState::default(); n];
            x.checks_of = Some(main);
        }
        let cs = &mut x.checks[j];
        cs.last = Some(last.clone());
        let was_failed = cs.failed;
        let outcome = if fail {
            cs.failures = cs.failures.saturating_add(1);
            let since = *cs.failing_since.get_or_insert(now);
            let held = match check.hold {
                Hold::Count(n) => cs.failures >= n,
                Hold::For(d) => now.saturating_sub(since) >= d.as_millis() as u64,
            };
            if held && !cs.failed {
                cs.failed = true;
                cs.changed = Some(now);
            }
            (held && !was_failed).then_some(since)
        } else {
            cs.failures = 0;
            cs.failing_since = None;
            if std::mem::take(&mut cs.failed) {
                cs.changed = Some(now);
            }
            None
        };
        let degraded = x.checks.iter().any(|c| c.failed);
        if let Some(up) = t.up() {
            up.degraded = degraded;
        }
        let mut out = Out { actions, now };
        match (fail, outcome) {
            (false, _) => Self::check_passed(t, &mut out, j, pid, &last),
            (true, Some(since)) => {
                if Self::check_failed(t, &mut out, j, pid, since, &last) {
                    self.act_on_check(i, j, now, actions);
                }
            }
            (true, None) => {}
        }
    }

    /// A pass of check `j`: PW2043 when a failure was said for this
    /// process or one before it (restarted, stopped).
    fn check_passed(t: &mut Target, out: &mut Out, j: usize, pid: u32, last: &Last) {
        let Some(k) = t.owed().iter().position(|o| o.0 == j) else {
            return;
        };
        let (_, since) = t.extra().owed.swap_remove(k);
        let spec = t.spec.clone();
        let check = &spec.checks()[j];
        let failed_for = std::time::Duration::from_secs(out.now.saturating_sub(since) / 1000);
        let ev = EventSpec::new(msg::CHECK_PASSES)
            .target(&spec.name)
            .pid(pid)
            .field("check", check.name.as_str())
            .field("kind", check.kind())
            .field("value", last.shown(check))
            .field(
                "duration",
                humantime::format_duration(failed_for).to_string(),
            );
        out.emit(t, ev);
    }

    /// Check `j` failed for its `for` (since `since`): PW2042, unless it is
    /// still open from the process before and there is nothing to do
    /// again. `true`: its action is to be taken.
    fn check_failed(
        t: &mut Target,
        out: &mut Out,
        j: usize,
        pid: u32,
        since: Ms,
        last: &Last,
    ) -> bool {
        let spec = t.spec.clone();
        let check = &spec.checks()[j];
        let open = t.owed().iter().any(|o| o.0 == j);
        if !open {
            t.extra().owed.push((j, since));
        }
        // Still failing on the process that replaced the one it failed on
        // (restarted for another cause): its PW2042 is still open. Said
        // again only with an action taken again.
        if open && check.action == CheckAction::Notify {
            return false;
        }
        let ev = EventSpec::new(msg::CHECK_FAILED)
            .target(&spec.name)
            .pid(pid)
            .field("check", check.name.as_str())
            .field("kind", check.kind())
            .field("value", last.shown(check))
            .field("limit", broken_limit(check, last))
            .field("held", check.hold.show())
            .field("action", check.action.as_str());
        out.emit(t, ev);
        true
    }

    /// Do what failed check `j` of target `i` asks.
    fn act_on_check(&mut self, i: usize, j: usize, now: Ms, actions: &mut Vec<Action>) {
        let t = &mut self.targets[i];
        let spec = t.spec.clone();
        let check = &spec.checks()[j];
        let main = t.main().expect("up");
        let mut out = Out { actions, now };
        match &check.action {
            CheckAction::Notify => {}
            CheckAction::Exec(_) => out.push(Action::RunCheckCommand {
                target: t.id.clone(),
                check: j,
                pid: main.pid,
            }),
            CheckAction::Stop => {
                let by = format!("check {}", check.name);
                t.stop(&mut out, &by, check.stop_timeout);
                out.push(Action::Persist);
            }
            CheckAction::Restart => t.stop_for_restart(
                &mut out,
                Reason::Check,
                main,
                check.signal_group,
                check.stop_timeout,
            ),
        }
    }

    /// Target `name`'s processes (its main process first), if it is up.
    pub(crate) fn up_procs(&self, name: &str) -> Option<(&Arc<TargetSpec>, &[ProcRef])> {
        let t = self.target(name)?;
        match (&t.phase, t.procs.is_empty()) {
            (Phase::Up(_), false) => Some((&t.spec, &t.procs)),
            _ => None,
        }
    }
}
