//! Discovery without scans: the process-events connector reports every
//! fork and exec; a new process that matches a target procward looks for
//! (waiting, a group, settling) brings the /proc scan forward at once. The
//! scan stays as the fallback (no connector: not root, a container, an old
//! kernel) and as a safety net, ten times rarer while events flow; an
//! overrun (ENOBUFS) brings a full scan at once.

use super::{Daemon, Msg};
use crate::config::TargetSpec;
use crate::probe::procfs;
use crate::sys::connector::{ProcEvent, ProcEvents};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Pids reported by the connector thread, not yet looked at.
#[derive(Default)]
struct Pending {
    pids: Vec<u32>,
    /// Events were lost (kernel overrun, or this buffer was full).
    overflow: bool,
    /// A Msg::Spawned is on its way: no need for another.
    posted: bool,
}

/// Bounded: past this many pids between two looks, a full scan instead.
const PENDING_MAX: usize = 4096;

pub(super) struct Discovery {
    pending: Arc<Mutex<Pending>>,
    /// Process events arrive (the scan may be rarer).
    pub active: bool,
    last_full: Option<Instant>,
    /// A check of new pids runs (one at a time: an exec storm never piles
    /// up blocking tasks; what comes meanwhile waits in `pending`).
    checking: Arc<std::sync::atomic::AtomicBool>,
    /// The lookups of the new-process check and of the scan, kept while
    /// the targets they serve stay the same (procfs::LookupCache).
    pub lookups: Arc<Lookups>,
}

#[derive(Default)]
pub(super) struct Lookups {
    pub spawned: procfs::LookupCache,
    pub scan: procfs::LookupCache,
}

impl Lookups {
    /// A reload: the old targets are let go.
    pub(super) fn clear(&self) {
        self.spawned.clear();
        self.scan.clear();
    }
}

impl Discovery {
    /// Subscribe to process events, unless PROCWARD_PROC_EVENTS=off or
    /// the kernel refuses (no CAP_NET_ADMIN, not the initial namespaces).
    pub(super) fn start(tx: mpsc::UnboundedSender<Msg>) -> Discovery {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let off = std::env::var("PROCWARD_PROC_EVENTS").as_deref() == Ok("off");
        let events = if off { None } else { ProcEvents::open().ok() };
        let active = events.is_some();
        if let Some(ev) = events {
            let p = pending.clone();
            let spawned = std::thread::Builder::new()
                .name("procward-events".into())
                .spawn(move || read_events(ev, p, tx));
            if spawned.is_err() {
                return Discovery {
                    pending,
                    active: false,
                    last_full: None,
                    checking: Arc::default(),
                    lookups: Arc::default(),
                };
            }
        }
        Discovery {
            pending,
            active,
            last_full: None,
            checking: Arc::default(),
            lookups: Arc::default(),
        }
    }

    /// How procward finds processes (PW1001 field `discovery`).
    pub(super) fn describe(&self) -> &'static str {
        if self.active {
            "process events, scan as safety net"
        } else {
            "scan"
        }
    }

    /// Whether the scan that starts now must walk /proc.
    pub(super) fn full_scan(&mut self, interval: Duration, requested: bool, fast: bool) -> bool {
        let due = self
            .last_full
            .is_none_or(|t| t.elapsed() >= interval.saturating_mul(10));
        let full = !self.active || requested || fast || due;
        if full {
            self.last_full = Some(Instant::now());
        }
        full
    }
}

fn read_events(ev: ProcEvents, pending: Arc<Mutex<Pending>>, tx: mpsc::UnboundedSender<Msg>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = Vec::new();
    loop {
        got.clear();
        let lost = match ev.recv(&mut buf, &mut got) {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                let _ = tx.send(Msg::EventsLost);
                return;
            }
        };
        if got.is_empty() && !lost {
            continue;
        }
        let post = {
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            p.overflow |= lost;
            for e in &got {
                let (ProcEvent::Fork(pid) | ProcEvent::Exec(pid)) = *e;
                if p.pids.len() < PENDING_MAX {
                    p.pids.push(pid);
                } else {
                    p.overflow = true;
                }
            }
            !std::mem::replace(&mut p.posted, true)
        };
        if post && tx.send(Msg::Spawned).is_err() {
            return;
        }
    }
}

impl Daemon {
    /// New processes were reported: any that a waiting target matches
    /// brings the scan forward.
    pub(super) fn spawned(&mut self) {
        use std::sync::atomic::Ordering;
        if self.discovery.checking.load(Ordering::Acquire) {
            return; // the running check asks again when it is done
        }
        let (pids, overflow) = {
            let mut p = self
                .discovery
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            p.posted = false;
            (std::mem::take(&mut p.pids), std::mem::take(&mut p.overflow))
        };
        if overflow {
            self.schedule.scan_soon();
            return;
        }
        let targets: Vec<Arc<TargetSpec>> = self.monitor.scan_targets().cloned().collect();
        if targets.is_empty() || pids.is_empty() {
            return;
        }
        let tx = self.tx.clone();
        let me = std::process::id();
        let checking = self.discovery.checking.clone();
        let lookups = self.discovery.lookups.clone();
        checking.store(true, Ordering::Release);
        tokio::task::spawn_blocking(move || {
            let matched = procfs::any_matches(&pids, &targets, me, &lookups.spawned);
            checking.store(false, Ordering::Release);
            if matched {
                let _ = tx.send(Msg::ScanNow);
            }
            // What arrived meanwhile.
            let _ = tx.send(Msg::Spawned);
        });
    }
}
