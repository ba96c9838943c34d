//! The edges that look at processes: stall probes, exit watches, the
//! discovery scan (blocking, off the event loop).

use super::{Daemon, Msg, ScanResult};
use crate::config;
use crate::model::ProcRef;
use crate::model::TargetId;
use crate::monitor::Input;
use crate::probe::{procfs, watch};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::Instant;

impl Daemon {
    pub(super) fn start_probes(&mut self, now: Instant) {
        let due: Vec<(Arc<config::TargetSpec>, ProcRef)> = self
            .monitor
            .probe_targets()
            .filter(|(spec, _)| self.schedule.probe_due(&spec.name, now))
            .map(|(spec, p)| (spec.clone(), p))
            .collect();
        for (spec, p) in due {
            let Some(stall) = spec.stall.as_deref() else {
                continue;
            };
            let name = spec.name.clone();
            self.schedule.probe_started(&name, now + stall.interval);
            let probe = self.probe_task(&spec, None, &stall.probe, p);
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let result = probe.await;
                let (ok, detail) = match result {
                    Ok(()) => (true, String::new()),
                    Err(e) => (false, e),
                };
                let pid = p.pid;
                let _ = tx.send(Msg::Input(Input::Probe {
                    target: name.into(),
                    pid,
                    ok,
                    detail,
                }));
            });
        }
    }

    /// Watch `p`: its pidfd joins the loop's epoll set.
    pub(super) fn track(&mut self, target: TargetId, p: ProcRef) {
        match self.watches.add(target.clone(), p) {
            watch::Added::Watching | watch::Added::Polled => {}
            // Gone before the watch began: reported through the channel,
            // after the actions that asked for this watch (the PW2001 or
            // PW2015 that adopted it comes first).
            watch::Added::Gone => self.report_end_later(target, p, None),
        }
    }

    /// The pidfds that say their process ended: report each.
    pub(super) fn on_watch_ready(&mut self) -> bool {
        let ended = self.watches.take_ended();
        let more = !ended.is_empty();
        for e in ended {
            self.report_end(e.target, e.proc, Some(e.fd));
        }
        more
    }

    /// A tracked process ended: tell the core how. A process already
    /// reaped (the usual case) is reported in this loop turn; a zombie or
    /// a process still there is classified by a task (zombie-grace).
    fn report_end(&mut self, target: TargetId, p: ProcRef, fd: Option<std::os::fd::OwnedFd>) {
        let woke = tokio::time::Instant::now();
        let mut buf = Vec::with_capacity(512);
        if crate::sys::proc::read_pinned(p, &mut buf).is_none() {
            let ended = Input::Exited {
                target,
                proc: p,
                kind: crate::model::ExitKind::Disappeared,
                status: exit_status(&fd).map(crate::model::ExitStatus::from_wait),
            };
            self.on_msg(Msg::Ended(ended, woke));
            return;
        }
        self.report_end_later(target, p, fd);
    }

    /// Classify the end of `p` in a task (zombie-grace) and report it.
    fn report_end_later(&mut self, target: TargetId, p: ProcRef, fd: Option<std::os::fd::OwnedFd>) {
        let woke = tokio::time::Instant::now();
        let tx = self.tx.clone();
        let grace = self.cfg.daemon.zombie_grace;
        tokio::spawn(async move {
            let (kind, zombie_status) = procfs::classify_exit(p, grace).await;
            // Reaped by now (unless a zombie): the kernel has the status.
            let status = exit_status(&fd)
                .or(zombie_status)
                .map(crate::model::ExitStatus::from_wait);
            let ended = Input::Exited {
                target,
                proc: p,
                kind,
                status,
            };
            let _ = tx.send(Msg::Ended(ended, woke));
        });
    }

    pub(super) fn classify_and_report(&mut self, target: TargetId, p: ProcRef) {
        let tx = self.tx.clone();
        let grace = self.cfg.daemon.zombie_grace;
        tokio::spawn(async move {
            let (kind, status) = procfs::classify_exit(p, grace).await;
            let _ = tx.send(Msg::Input(Input::Exited {
                target,
                proc: p,
                kind,
                status: status.map(crate::model::ExitStatus::from_wait),
            }));
        });
    }

    pub(super) fn start_scan(&mut self) {
        // With process events, /proc is walked only when a new process
        // matched, while settling, and as a rare safety net.
        // A pidfile is written after the exec (no event says when): targets
        // waiting for one keep the normal pace (a pidfile read, no walk).
        let pidfiles = self
            .monitor
            .scan_targets()
            .any(|t| t.matcher.pidfile.is_some());
        let full = self.discovery.full_scan(
            self.cfg.daemon.interval,
            self.schedule.soon(),
            self.monitor.fast_scan() || pidfiles,
        );
        let targets: Vec<Arc<config::TargetSpec>> = if full {
            self.monitor.scan_targets().cloned().collect()
        } else {
            Vec::new()
        };
        let children: Vec<(TargetId, u32)> = self
            .monitor
            .children_checks()
            .map(|(t, p)| (t.clone(), p))
            .collect();
        let polled = self.watches.polled();
        let idle = targets.is_empty() && children.is_empty() && polled.is_empty();
        self.schedule.scan_started(!idle);
        if idle {
            return;
        }
        let tx = self.tx.clone();
        let me = std::process::id();
        let lookups = self.discovery.lookups.clone();
        tokio::task::spawn_blocking(move || {
            let (found, refused) = if targets.is_empty() {
                (HashMap::new(), Vec::new())
            } else {
                procfs::scan_cached(&targets, me, &lookups.scan)
            };
            let children = children
                .into_iter()
                .filter_map(|(t, pid)| {
                    crate::sys::proc::children_count(pid)
                        .ok()
                        .map(|n| (t, pid, n))
                })
                .collect();
            let mut buf = Vec::with_capacity(512);
            let polled_dead = polled
                .into_iter()
                .filter(|(_, p)| {
                    crate::sys::proc::read_pinned(*p, &mut buf).is_none_or(|s| s.is_dead())
                })
                .collect();
            let _ = tx.send(Msg::Scanned(ScanResult {
                found,
                refused,
                children,
                polled_dead,
            }));
        });
    }
}

/// The exit status the kernel keeps for an ended process's pidfd.
fn exit_status(fd: &Option<std::os::fd::OwnedFd>) -> Option<i32> {
    use std::os::fd::AsFd;
    fd.as_ref()
        .and_then(|fd| crate::probe::exit::from_pidfd(fd.as_fd()))
}
