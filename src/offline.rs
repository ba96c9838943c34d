//! Daemonless `status`, `stop` and `start` of one target (`--offline`):
//! what the OCF agent falls back on when procward does not answer, so that
//! the cluster decides from the application itself. Without it, a stop
//! while procward is down would leave the application running (and the
//! cluster would start it on the other node too), and a monitor while
//! procward restarts would fail the resource over for nothing.
//!
//! The processes are found with the configuration's matchers, exactly as
//! the daemon finds them (one scan of /proc, pidfiles checked the same
//! way). `stop` and `start` also record the outcome in the state file, so
//! that a procward started later neither restarts what the cluster moved
//! away nor ignores what the cluster started. They hold the state
//! directory's locks from start to end: they refuse while procward runs,
//! a second offline command waits for the first (two starts at once run
//! the script once), and a procward starting meanwhile waits for them,
//! then adopts what the start started.

use crate::config::{Config, TargetSpec};
use crate::model::{Halted, ProcRef, Reason};
use crate::monitor::Persisted;
use crate::probe::procfs;
use crate::sys::process::stop_with_grace_blocking;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit codes, as for `status --ocf` (the OCF agent's codes).
use crate::model::state::ocf::{
    ERR_CONFIGURED as UNKNOWN_TARGET, ERR_GENERIC as FAILED, NOT_RUNNING, SUCCESS as RUNNING,
};

fn load(cfg_path: &std::path::Path) -> Result<Config, String> {
    crate::config::load(cfg_path).map_err(|e| e.to_string())
}

fn spec(cfg: &Config, target: &str) -> Option<Arc<TargetSpec>> {
    cfg.targets.iter().find(|t| t.name == target).cloned()
}

/// The live processes of `spec`, main process first.
pub(crate) fn processes(spec: &TargetSpec) -> Vec<ProcRef> {
    procfs::scan(&[spec], std::process::id())
        .remove(&spec.name)
        .unwrap_or_default()
}

fn alive(p: ProcRef, buf: &mut Vec<u8>) -> bool {
    crate::sys::proc::read_pinned(p, buf).is_some_and(|s| !s.is_dead())
}

/// Enough processes to count as running (a group needs `count.min`).
fn running(spec: &TargetSpec, procs: &[ProcRef]) -> bool {
    !procs.is_empty() && procs.len() as u32 >= spec.min_count()
}

/// `status TARGET --offline`: running (0) or not (7), from the processes.
pub(crate) fn status(cfg_path: &std::path::Path, target: &str, quiet: bool) -> Result<u8, String> {
    let cfg = load(cfg_path)?;
    let Some(spec) = spec(&cfg, target) else {
        if !quiet {
            eprintln!("procward: no target {target} in {}", cfg_path.display());
        }
        return Ok(UNKNOWN_TARGET);
    };
    let procs = processes(&spec);
    let up = running(&spec, &procs);
    if !quiet {
        let pids: Vec<String> = procs.iter().map(|p| p.pid.to_string()).collect();
        if up {
            println!(
                "{target} running (processes {}; procward not asked)",
                pids.join(",")
            );
        } else if procs.is_empty() {
            println!("{target} not running (no matching process; procward not asked)");
        } else {
            println!(
                "{target} not running (processes {}, fewer than count.min {})",
                pids.join(","),
                spec.min_count()
            );
        }
    }
    Ok(if up { RUNNING } else { NOT_RUNNING })
}

/// How long an offline command waits for another one under way.
const OFFLINE_WAIT: Duration = Duration::from_secs(300);

/// The state directory's locks for the whole offline command: it fails
/// while procward runs, and waits for another offline command (so two
/// starts at once run the script once; the second finds it up).
fn lock(cfg: &Config) -> Result<crate::store::state::OfflineLock, String> {
    let dir = &cfg.daemon.state_dir;
    crate::store::state::lock_offline(dir, OFFLINE_WAIT, || {
        eprintln!(
            "procward: waiting for another offline command on {} to finish",
            dir.display()
        );
    })
    .map_err(|e| format!("{e}: if procward runs, ask it (without --offline)"))
}

/// Record what the operator (or cluster) did in the state file, as the
/// daemon would (the caller holds the locks).
fn record(
    cfg: &Config,
    _locked: &crate::store::state::OfflineLock,
    target: &str,
    f: impl FnOnce(&mut Persisted),
) -> Result<(), String> {
    let dir = &cfg.daemon.state_dir;
    let mut all = crate::store::state::load(dir).unwrap_or_default();
    f(all.entry(target.to_string()).or_default());
    crate::store::state::save(dir, &all).map_err(|e| {
        format!(
            "cannot save the state in {}: {e}",
            crate::store::state::path(dir).display()
        )
    })
}

/// The target found running, recorded as the next procward's to monitor:
/// the process it will look for (and report by pid if it is gone).
fn record_up(
    cfg: &Config,
    locked: &crate::store::state::OfflineLock,
    target: &str,
    main: ProcRef,
) -> Result<(), String> {
    record(cfg, locked, target, |p| {
        p.ever_up = true;
        p.down_reported = false;
        p.last_pid = Some(main.pid);
        if p.up.is_none_or(|(proc, _)| proc != main) {
            p.up = Some((main, crate::model::event::now_ms()));
        }
    })
}

/// `stop TARGET --offline`: SIGTERM every process of the target, SIGKILL
/// after `timeout`; succeeds only once they are all gone. The target is
/// recorded as stopped: a procward started later leaves it alone until
/// `start`.
pub(crate) fn stop(
    cfg_path: &std::path::Path,
    target: &str,
    timeout: Duration,
) -> Result<u8, String> {
    use rustix::process::{kill_process, Pid, Signal};
    let cfg = load(cfg_path)?;
    let Some(spec) = spec(&cfg, target) else {
        eprintln!("procward: no target {target} in {}", cfg_path.display());
        return Ok(UNKNOWN_TARGET);
    };
    // Recorded first, under the locks held to the end: a procward
    // starting meanwhile waits, then leaves it stopped.
    let locked = lock(&cfg)?;
    record(&cfg, &locked, target, |p| {
        p.halted = Some(Halted::Stopped);
        p.recovering = None;
        p.paused = false;
    })?;
    let mut buf = Vec::with_capacity(512);
    let procs = processes(&spec);
    let signal = |sig: Signal, buf: &mut Vec<u8>| {
        for p in &procs {
            // Only the very process found (pid and start time).
            if alive(*p, buf) {
                if let Some(pid) = Pid::from_raw(p.pid as i32) {
                    let _ = kill_process(pid, sig);
                }
            }
        }
    };
    let mut seen = Vec::with_capacity(512);
    let mut ended = || !procs.iter().any(|p| alive(*p, &mut seen));
    let killed = !stop_with_grace_blocking(|s| signal(s, &mut buf), timeout, &mut ended);
    // After SIGKILL, up to 5 s more for the kernel to end them.
    let start = Instant::now();
    while killed && !ended() {
        if start.elapsed() >= Duration::from_secs(5) {
            let left: Vec<u32> = procs
                .iter()
                .filter(|p| alive(**p, &mut buf))
                .map(|p| p.pid)
                .collect();
            eprintln!("procward: {target}: processes {left:?} still there after SIGKILL");
            return Ok(FAILED);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Anything that matched meanwhile (a late restart) is not stopped here:
    // say so rather than claim success.
    let again = processes(&spec);
    if !again.is_empty() {
        let pids: Vec<u32> = again.iter().map(|p| p.pid).collect();
        eprintln!("procward: {target}: processes {pids:?} appeared while stopping");
        return Ok(FAILED);
    }
    let pids: Vec<String> = procs.iter().map(|p| p.pid.to_string()).collect();
    if pids.is_empty() {
        println!("{target} stopped (no process was running; procward not asked)");
    } else {
        println!(
            "{target} stopped (processes {} ended{}; procward not asked)",
            pids.join(","),
            if killed { ", SIGKILL needed" } else { "" }
        );
    }
    Ok(RUNNING)
}

/// `start TARGET --offline`: run the restart script once (reason
/// `manual`, as `procward start` does) unless the target already runs,
/// then wait up to `wait` for its processes. The target is recorded as
/// started, its retry window empty: a procward started later monitors it.
pub(crate) fn start(
    cfg_path: &std::path::Path,
    target: &str,
    wait: Duration,
) -> Result<u8, String> {
    let cfg = load(cfg_path)?;
    let Some(spec) = spec(&cfg, target) else {
        eprintln!("procward: no target {target} in {}", cfg_path.display());
        return Ok(UNKNOWN_TARGET);
    };
    let locked = lock(&cfg)?;
    record(&cfg, &locked, target, |p| {
        p.halted = None;
        p.paused = false;
        p.attempts.clear();
        p.recovering = None;
    })?;
    let procs = processes(&spec);
    if running(&spec, &procs) {
        record_up(&cfg, &locked, target, procs[0])?;
        println!("{target} is up (already running; procward not asked)");
        return Ok(RUNNING);
    }
    let ctx = crate::action::Context {
        spec: &spec,
        state_dir: &cfg.daemon.state_dir,
        event_seq: 0,
        exit: None,
    };
    let Some(run) = ctx.restart(0, Reason::Manual, None) else {
        eprintln!("procward: {target} has no restart.script: nothing can start it");
        return Ok(FAILED);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let ran = rt.block_on(crate::action::run(run, None, |_| {}));
    let ok = matches!(
        ran.outcome,
        crate::monitor::ScriptOutcome::Exited { code: 0, .. }
    );
    if !ok {
        eprintln!(
            "procward: {target}: the start script failed ({}): {}",
            crate::monitor::outcome_status(&ran.outcome),
            crate::monitor::outcome_output(&ran.outcome)
        );
        return Ok(FAILED);
    }
    let deadline = Instant::now() + wait;
    loop {
        let procs = processes(&spec);
        if running(&spec, &procs) {
            record_up(&cfg, &locked, target, procs[0])?;
            println!("{target} is up (started by its restart script; procward not asked)");
            return Ok(RUNNING);
        }
        if Instant::now() >= deadline {
            eprintln!(
                "procward: {target} not up {} after its start script",
                humantime::format_duration(wait)
            );
            return Ok(FAILED);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
