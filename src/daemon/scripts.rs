//! Restart scripts and retry-over commands: built by `action::Context`,
//! run off the loop, their start and end fed back to the core.

use super::{Daemon, Msg};
use crate::action;
use crate::model::TargetId;
use crate::model::{ExitStatus, ProcRef, Reason};
use crate::monitor::Input;
use std::time::Duration;

impl Daemon {
    pub(super) fn script_context(
        &self,
        target: &str,
        exit: Option<ExitStatus>,
    ) -> Option<action::Context<'_>> {
        Some(action::Context {
            spec: &self.monitor.target(target)?.spec,
            state_dir: &self.cfg.daemon.state_dir,
            event_seq: self.out.last_seq(target),
            exit,
        })
    }

    pub(super) fn run_script(
        &mut self,
        target: TargetId,
        attempt: u32,
        reason: Reason,
        pid: Option<u32>,
        exit: Option<ExitStatus>,
    ) {
        let Some(run) = self
            .script_context(&target, exit)
            .and_then(|c| c.restart(attempt, reason, pid))
        else {
            return;
        };
        // The attempt is on disk before its script runs: a procward killed
        // meanwhile waits for this script when it starts again, and never
        // runs a second one. Only this target's record is written and
        // synced first (small, whatever the number of targets); the state
        // file (or, with many targets, nothing more: daemon/persist.rs)
        // follows. (A failed write does not hold the restart up.)
        if self.save_record(&target) {
            self.persist.recorded(&target, tokio::time::Instant::now());
        }
        self.persist.soon();
        let saved = self.out.synced();
        let tx = self.tx.clone();
        let spawner = self.spawner.clone();
        tokio::spawn(async move {
            let _ = saved.await;
            let (log, name, started) = (run.log.clone(), target.clone(), tx.clone());
            let ran = action::run(run, Some(&spawner), move |pid| {
                let mut buf = Vec::with_capacity(512);
                if let Ok(Some(st)) = crate::sys::proc::read_stat(pid, &mut buf) {
                    let proc = st.proc_ref();
                    let _ = started.send(Msg::Input(Input::ScriptStarted {
                        target: name,
                        attempt,
                        proc,
                    }));
                }
            })
            .await;
            let what = format!("restart script log of {target}");
            let _ = tx.send(Msg::Wrote(what, log, ran.log_error.map_or(Ok(()), Err)));
            let outcome = ran.outcome;
            let _ = tx.send(Msg::Input(Input::ScriptDone {
                target,
                attempt,
                outcome,
            }));
        });
    }

    /// Wait for a restart script started by an earlier procward (pid 0:
    /// none was seen) and report its end.
    pub(super) fn adopt_script(&mut self, target: TargetId, attempt: u32, proc: ProcRef) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            if proc.pid != 0 {
                crate::sys::pidfd::gone(proc, Duration::from_millis(200)).await;
            }
            let outcome = crate::monitor::ScriptOutcome::Unknown;
            let _ = tx.send(Msg::Input(Input::ScriptDone {
                target,
                attempt,
                outcome,
            }));
        });
    }

    pub(super) fn run_command(&mut self, target: TargetId, attempts: u32) {
        let exit = self.monitor.target(&target).and_then(|t| t.last_exit());
        let Some(run) = self
            .script_context(&target, exit)
            .and_then(|c| c.retry_over(attempts))
        else {
            return;
        };
        let tx = self.tx.clone();
        let spawner = self.spawner.clone();
        tokio::spawn(async move {
            let log = run.log.clone();
            let ran = action::run(run, Some(&spawner), |_| {}).await;
            let what = format!("retry-over command log of {target}");
            let _ = tx.send(Msg::Wrote(what, log, ran.log_error.map_or(Ok(()), Err)));
            let outcome = ran.outcome;
            let _ = tx.send(Msg::Input(Input::CommandDone { target, outcome }));
        });
    }
}
