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
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The resource checks of one target due together: (target, its
/// processes (the main one first), [(check, what, scope, its last CPU
/// sample)]).
type Batch = (
    TargetId,
    Vec<ProcRef>,
    Vec<(
        usize,
        crate::config::Resource,
        crate::config::Scope,
        Option<CpuSample>,
    )>,
);

/// A resource reading done off the loop, with its next CPU sample.
pub(super) struct Measured {
    target: TargetId,
    check: usize,
    pid: u32,
    value: Option<f64>,
    sample: Option<CpuSample>,
}

/// The checks of one interval: all due at the same instants.
struct Bucket {
    every: Duration,
    next: Instant,
    checks: Vec<(TargetId, usize)>,
}

#[derive(Default)]
pub(super) struct Checks {
    /// The checks by interval.
    buckets: Vec<Bucket>,
    /// Checks being run now (a slow probe is not started twice).
    running: HashSet<(TargetId, usize)>,
    /// The last CPU sample of each `cpu` check.
    cpu: HashMap<(TargetId, usize), CpuSample>,
    /// The instant the alignment counts from.
    epoch: Option<Instant>,
    /// The /proc files of the main processes checked, kept open.
    files: Arc<std::sync::Mutex<resource::Files>>,
}

impl Checks {
    /// The schedule for `targets` (at start and after a reload).
    pub(super) fn plan<'a>(&mut self, targets: impl Iterator<Item = &'a Arc<TargetSpec>>) {
        let now = Instant::now();
        let epoch = *self.epoch.get_or_insert(now);
        let mut by: BTreeMap<Duration, Vec<(TargetId, usize)>> = BTreeMap::new();
        for spec in targets.filter(|s| !s.checks().is_empty()) {
            let id: TargetId = spec.name.as_str().into();
            for (j, c) in spec.checks().iter().enumerate() {
                by.entry(c.interval).or_default().push((id.clone(), j));
            }
        }
        let keep: HashSet<&(TargetId, usize)> = by.values().flatten().collect();
        self.cpu.retain(|k, _| keep.contains(k));
        self.buckets = by
            .into_iter()
            .map(|(every, checks)| Bucket {
                every,
                next: next_at(epoch, now, every),
                checks,
            })
            .collect();
    }

    pub(super) fn next_wake(&self) -> Option<Instant> {
        self.buckets.iter().map(|b| b.next).min()
    }

    /// The checks due at `now` (not still running), their buckets moved
    /// to their next instant.
    fn take_due(&mut self, now: Instant) -> Vec<(TargetId, usize)> {
        let epoch = self.epoch.unwrap_or(now);
        let mut out = Vec::new();
        for b in self.buckets.iter_mut().filter(|b| b.next <= now) {
            b.next = next_at(epoch, now, b.every);
            for c in &b.checks {
                if self.running.insert(c.clone()) {
                    out.push(c.clone());
                }
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
    /// Run the checks due now: probes each in a task, the resource checks
    /// in one blocking task, those of one target read together.
    pub(super) fn start_checks(&mut self, now: Instant) {
        let due = self.checks.take_due(now);
        // (target, its processes, [(check, what, scope, last CPU sample)])
        let mut batch: Vec<Batch> = Vec::new();
        for (target, j) in due {
            let Some((spec, procs)) = self.monitor.up_procs(&target) else {
                self.checks.running.remove(&(target, j));
                continue; // not up: nothing to check now
            };
            let (spec, main) = (spec.clone(), procs[0]);
            let Some(check) = spec.checks().get(j) else {
                self.checks.running.remove(&(target, j));
                continue;
            };
            let Test::Resource { what, scope, .. } = check.test else {
                self.run_probe_check(target, j, spec.clone(), main);
                continue;
            };
            let prev = self.checks.cpu.get(&(target.clone(), j)).cloned();
            match batch.last_mut() {
                Some(b) if b.0 == target => b.2.push((j, what, scope, prev)),
                _ => batch.push((target, procs.to_vec(), vec![(j, what, scope, prev)])),
            }
        }
        if batch.is_empty() {
            return;
        }
        let tx = self.tx.clone();
        let files = self.checks.files.clone();
        tokio::task::spawn_blocking(move || {
            let mut files = files.lock().unwrap_or_else(|e| e.into_inner());
            files.sweep();
            let boot = resource::boot_ticks();
            let mut readings = Vec::new();
            for (target, procs, checks) in batch {
                let wants: Vec<resource::Want> = checks
                    .iter()
                    .map(|(_, what, scope, prev)| resource::Want {
                        what: *what,
                        scope: *scope,
                        prev: prev.as_ref(),
                    })
                    .collect();
                let got = resource::measure(&procs, &wants, boot, &mut files);
                for ((j, ..), (value, sample)) in checks.iter().zip(got) {
                    readings.push(Measured {
                        target: target.clone(),
                        check: *j,
                        pid: procs[0].pid,
                        value,
                        sample,
                    });
                }
            }
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
        let Test::Probe(probe) = &spec.checks()[j].test else {
            return;
        };
        let probe = self.probe_task(&spec, Some(j), probe, main);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(Msg::Input(Input::Check {
                target,
                check: j,
                pid: main.pid,
                reading: Reading::Probe(probe.await),
            }));
        });
    }

    /// One probe of `p` (a stall probe, or check `check`'s) as a future to
    /// spawn: an exec probe through the spawner as the target's user, the
    /// others here (probe/stall.rs).
    pub(super) fn probe_task(
        &self,
        spec: &TargetSpec,
        check: Option<usize>,
        probe: &crate::config::Probe,
        p: ProcRef,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
        let exec = match probe {
            crate::config::Probe::Exec { argv, timeout } => Some(check_run(
                spec,
                check.map(|j| &spec.checks()[j]),
                argv,
                *timeout,
                p.pid,
                &self.cfg.daemon.state_dir,
                "probe",
            )),
            _ => None,
        };
        let (probe, spawner) = (probe.clone(), self.spawner.clone());
        async move {
            match exec {
                Some(run) => exec_probe(run, &spawner).await,
                None => crate::probe::stall::run(&probe, p).await,
            }
        }
    }

    /// `action = "exec"` of a failed check: its command, through the
    /// spawner, as the target's user; its output in its log.
    pub(super) fn run_check_command(&mut self, target: TargetId, j: usize, pid: u32) {
        let Some(spec) = self.monitor.target(&target).map(|t| t.spec.clone()) else {
            return;
        };
        let Some(CheckAction::Exec(argv)) = spec.checks().get(j).map(|c| &c.action) else {
            return;
        };
        let check = &spec.checks()[j];
        let run = check_run(
            &spec,
            Some(check),
            argv,
            spec.restart.timeout,
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

/// A check's command (or a stall probe's, `check` None) as a run: a clean
/// environment that names the target, its process and the check; the
/// target's restart.user; the output in `script-logs/TARGET.check-NAME.log`
/// (`TARGET.stall.log`).
fn check_run(
    spec: &TargetSpec,
    check: Option<&Check>,
    argv: &[String],
    timeout: Duration,
    pid: u32,
    state_dir: &std::path::Path,
    what: &str,
) -> crate::action::Run {
    let mut env = vec![
        ("PROCWARD_TARGET".into(), spec.name.clone()),
        ("PROCWARD_PID".into(), pid.to_string()),
    ];
    let (log, label) = match check {
        Some(c) => {
            env.push(("PROCWARD_CHECK".into(), c.name.clone()));
            env.push(("PROCWARD_CHECK_KIND".into(), c.kind().into()));
            (
                format!("{}.check-{}.log", spec.name, c.name),
                format!("check {}", c.name),
            )
        }
        None => (format!("{}.stall.log", spec.name), "stall".into()),
    };
    crate::action::Run {
        argv: argv.to_vec(),
        env,
        user: spec.restart.user.clone(),
        timeout,
        log: state_dir.join("script-logs").join(log),
        header: format!(
            "{} {label} {what}",
            crate::model::event::rfc3339_ms(crate::model::event::now_ms()),
        ),
    }
}

/// Run an exec probe through the spawner: `Ok` when it exits 0, else why
/// not.
async fn exec_probe(
    run: crate::action::Run,
    spawner: &crate::action::spawner::Spawner,
) -> Result<(), String> {
    let program = run.argv[0].clone();
    let timeout = humantime::format_duration(run.timeout);
    match crate::action::run(run, Some(spawner), |_| {}).await.outcome {
        crate::monitor::ScriptOutcome::Exited { code: 0, .. } => Ok(()),
        crate::monitor::ScriptOutcome::TimedOut { .. } => {
            Err(format!("{program}: no answer within {timeout}"))
        }
        other => Err(probe_failure(&program, &other)),
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
