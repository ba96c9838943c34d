//! `[[target.check]]` at the edge: when each check runs, and running it.
//! Checks of one interval are aligned to the same instants, so that the
//! resource checks due together are read in one blocking task (cheap at
//! thousands of targets); probes run each in their own task, an exec
//! probe (and an exec action) through the spawner as the target's user.

use super::{Daemon, Msg};
use crate::config::{Check, CheckAction, TargetSpec, Test};
use crate::model::{ProcRef, TargetId};
use crate::monitor::{Input, Reading};
use crate::probe::resource::{self, CpuSample};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A resource reading done off the loop, with its next CPU sample.
pub(super) struct Measured {
    target: TargetId,
    check: usize,
    pid: u32,
    value: Option<f64>,
    sample: Option<CpuSample>,
}

#[derive(Default)]
pub(super) struct Checks {
    /// (when, target, check) of each check's next run.
    due: BTreeSet<(Instant, TargetId, usize)>,
    /// Checks being run now (a slow probe is not started twice).
    running: HashSet<(TargetId, usize)>,
    /// The last CPU sample of each `cpu` check.
    cpu: HashMap<(TargetId, usize), CpuSample>,
    /// The instant the alignment counts from.
    epoch: Option<Instant>,
}

impl Checks {
    /// The schedule for `targets` (at start and after a reload).
    pub(super) fn plan<'a>(&mut self, targets: impl Iterator<Item = &'a Arc<TargetSpec>>) {
        let now = Instant::now();
        let epoch = *self.epoch.get_or_insert(now);
        self.due.clear();
        let mut keep = HashSet::new();
        for spec in targets {
            for (j, c) in spec.checks.iter().enumerate() {
                let id: TargetId = spec.name.as_str().into();
                self.due
                    .insert((next_at(epoch, now, c.interval), id.clone(), j));
                keep.insert((id, j));
            }
        }
        self.cpu.retain(|k, _| keep.contains(k));
    }

    pub(super) fn next_wake(&self) -> Option<Instant> {
        self.due.first().map(|d| d.0)
    }

    /// The checks due at `now`, each rescheduled at its next instant.
    fn take_due(
        &mut self,
        now: Instant,
        interval: impl Fn(&str, usize) -> Option<Duration>,
    ) -> Vec<(TargetId, usize)> {
        let epoch = self.epoch.unwrap_or(now);
        let mut out = Vec::new();
        while let Some(first) = self.due.first().filter(|d| d.0 <= now).cloned() {
            self.due.remove(&first);
            let (_, target, j) = first;
            // Gone from the configuration: dropped from the schedule.
            let Some(every) = interval(&target, j) else {
                continue;
            };
            self.due
                .insert((next_at(epoch, now, every), target.clone(), j));
            if self.running.insert((target.clone(), j)) {
                out.push((target, j));
            }
        }
        out
    }
}

/// The first instant after `now` on `epoch` + k × `every`.
fn next_at(epoch: Instant, now: Instant, every: Duration) -> Instant {
    let every_ms = every.as_millis().max(1);
    let since = now.saturating_duration_since(epoch).as_millis();
    let k = since / every_ms + 1;
    epoch + Duration::from_millis((k * every_ms) as u64)
}

impl Daemon {
    /// Run the checks due now.
    pub(super) fn start_checks(&mut self, now: Instant) {
        let monitor = &self.monitor;
        let due = self.checks.take_due(now, |t, j| {
            Some(monitor.target(t)?.spec.checks.get(j)?.interval)
        });
        let mut batch = Vec::new();
        for (target, j) in due {
            let Some((spec, main)) = self.monitor.up_main(&target) else {
                self.checks.running.remove(&(target, j));
                continue; // not up: nothing to check now
            };
            let spec = spec.clone();
            let check = &spec.checks[j];
            match &check.test {
                Test::Probe(_) => self.run_probe_check(target, j, spec.clone(), main),
                Test::Resource { what, scope, .. } => {
                    let prev = self.checks.cpu.get(&(target.clone(), j)).cloned();
                    batch.push((target, j, main, *what, *scope, prev));
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let readings = batch
                .into_iter()
                .map(|(target, check, main, what, scope, prev)| {
                    let (value, sample) = resource::measure(main, what, scope, prev.as_ref());
                    Measured {
                        target,
                        check,
                        pid: main.pid,
                        value,
                        sample,
                    }
                })
                .collect();
            let _ = tx.send(Msg::Measured(readings));
        });
    }

    /// Resource readings back from their task: to the core.
    pub(super) fn measured(&mut self, readings: Vec<Measured>) {
        for m in readings {
            let key = (m.target.clone(), m.check);
            self.checks.running.remove(&key);
            match m.sample {
                Some(s) => {
                    self.checks.cpu.insert(key, s);
                }
                None => {
                    self.checks.cpu.remove(&key);
                }
            }
            self.feed(Input::Check {
                target: m.target,
                check: m.check,
                pid: m.pid,
                reading: Reading::Value(m.value),
            });
        }
    }

    /// A probe check's result is in (through `Msg::Input`).
    pub(super) fn check_done(&mut self, target: &TargetId, check: usize) {
        self.checks.running.remove(&(target.clone(), check));
    }

    fn run_probe_check(
        &mut self,
        target: TargetId,
        j: usize,
        spec: Arc<TargetSpec>,
        main: ProcRef,
    ) {
        let tx = self.tx.clone();
        let spawner = self.spawner.clone();
        let state_dir = self.cfg.daemon.state_dir.clone();
        tokio::spawn(async move {
            let check = &spec.checks[j];
            let result = match &check.test {
                Test::Probe(crate::config::Probe::Exec { argv, timeout }) => {
                    let run =
                        check_run(&spec, check, argv, *timeout, main.pid, &state_dir, "probe");
                    let ran = crate::action::run(run, Some(&spawner), |_| {}).await;
                    match ran.outcome {
                        crate::monitor::ScriptOutcome::Exited { code: 0, .. } => Ok(()),
                        other => Err(probe_failure(&argv[0], &other)),
                    }
                }
                Test::Probe(p) => crate::probe::stall::run(p, main).await,
                Test::Resource { .. } => return,
            };
            let _ = tx.send(Msg::Input(Input::Check {
                target,
                check: j,
                pid: main.pid,
                reading: Reading::Probe(result),
            }));
        });
    }

    /// `action = "exec"` of a failed check: its command, through the
    /// spawner, as the target's user; its output in its log.
    pub(super) fn run_check_command(&mut self, target: TargetId, j: usize, pid: u32) {
        let Some(spec) = self.monitor.target(&target).map(|t| t.spec.clone()) else {
            return;
        };
        let Some(CheckAction::Exec(argv)) = spec.checks.get(j).map(|c| &c.action) else {
            return;
        };
        let check = &spec.checks[j];
        let run = check_run(
            &spec,
            check,
            argv,
            check.interval.max(Duration::from_secs(60)),
            pid,
            &self.cfg.daemon.state_dir,
            "action",
        );
        let tx = self.tx.clone();
        let spawner = self.spawner.clone();
        tokio::spawn(async move {
            let log = run.log.clone();
            let ran = crate::action::run(run, Some(&spawner), |_| {}).await;
            let what = format!("check command log of {target}");
            let _ = tx.send(Msg::Wrote(what, log, ran.log_error.map_or(Ok(()), Err)));
        });
    }
}

/// A check's command as a run: a clean environment that names the
/// target, its process and the check; the target's restart.user; the
/// output in `script-logs/TARGET.check-NAME.log`.
fn check_run(
    spec: &TargetSpec,
    check: &Check,
    argv: &[String],
    timeout: Duration,
    pid: u32,
    state_dir: &std::path::Path,
    what: &str,
) -> crate::action::Run {
    crate::action::Run {
        argv: argv.to_vec(),
        env: vec![
            ("PROCWARD_TARGET".into(), spec.name.clone()),
            ("PROCWARD_PID".into(), pid.to_string()),
            ("PROCWARD_CHECK".into(), check.name.clone()),
            ("PROCWARD_CHECK_KIND".into(), check.kind().into()),
        ],
        user: spec.restart.user.clone(),
        timeout,
        log: state_dir
            .join("script-logs")
            .join(format!("{}.check-{}.log", spec.name, check.name)),
        header: format!(
            "{} check {} {what}",
            crate::model::event::rfc3339_ms(crate::model::event::now_ms()),
            check.name
        ),
    }
}

/// Why an exec probe failed, in the words of a stall probe's.
fn probe_failure(program: &str, o: &crate::monitor::ScriptOutcome) -> String {
    let status = crate::monitor::outcome_status(o);
    let output = crate::monitor::outcome_output(o);
    if output.is_empty() {
        format!("{program}: {status}")
    } else {
        format!("{program}: {status}: {output}")
    }
}
