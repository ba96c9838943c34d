//! The edges that look at processes: stall probes, exit watches, the
//! discovery scan (blocking, off the event loop).

use super::{Daemon, Msg, ScanResult};
use crate::config;
use crate::monitor::TargetId;
use crate::monitor::{Input, ProcRef};
use crate::probe::{procfs, watch};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::Instant;

impl Daemon {
    pub(super) fn start_probes(&mut self, now: Instant) {
        let due: Vec<(String, crate::config::Stall, ProcRef)> = self
            .monitor
            .probe_targets()
            .filter(|(spec, _)| self.schedule.probe_due(&spec.name, now))
            .filter_map(|(spec, p)| spec.stall.clone().map(|s| (spec.name.clone(), s, p)))
            .collect();
        for (name, stall, p) in due {
            self.schedule.probe_started(&name, now + stall.interval);
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let (ok, detail) = match crate::probe::stall::run(&stall.probe, p).await {
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

    pub(super) fn track(&mut self, target: TargetId, p: ProcRef) {
        let tx = self.tx.clone();
        let grace = self.cfg.daemon.zombie_grace;
        let name = target.clone();
        let h = tokio::spawn(async move {
            let fd = match watch::wait_end(p).await {
                watch::Ended::Unsupported => {
                    let _ = tx.send(Msg::Poll(name, p));
                    return;
                }
                watch::Ended::Gone => None,
                watch::Ended::Pidfd(fd) => Some(fd),
            };
            let woke = tokio::time::Instant::now();
            let (kind, zombie_status) = procfs::classify_exit(p, grace).await;
            // Reaped by now (unless a zombie): the kernel has the status.
            let status = fd
                .as_ref()
                .and_then(|fd| {
                    use std::os::fd::AsFd;
                    crate::probe::exit::from_pidfd(fd.as_fd())
                })
                .or(zombie_status)
                .map(crate::monitor::ExitStatus::from_wait);
            let ended = Input::Exited {
                target: name,
                proc: p,
                kind,
                status,
            };
            let _ = tx.send(Msg::Ended(ended, woke));
        });
        self.watches.add(target, p, h.abort_handle());
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
                status: status.map(crate::monitor::ExitStatus::from_wait),
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
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&config::TargetSpec> = targets.iter().map(|t| t.as_ref()).collect();
            let found = if refs.is_empty() {
                HashMap::new()
            } else {
                procfs::scan(&refs, me)
            };
            let children = children
                .into_iter()
                .filter_map(|(t, pid)| procfs::children_count(pid).ok().map(|n| (t, pid, n)))
                .collect();
            let mut buf = Vec::with_capacity(512);
            let polled_dead = polled
                .into_iter()
                .filter(|(_, p)| procfs::read_pinned(*p, &mut buf).is_none_or(|s| s.is_dead()))
                .collect();
            let _ = tx.send(Msg::Scanned(ScanResult {
                found,
                children,
                polled_dead,
            }));
        });
    }
}
