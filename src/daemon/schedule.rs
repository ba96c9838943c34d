//! When the daemon wakes: the core's timers, the discovery scan and the
//! stall probes, in one place with one `next_wake()`.

use crate::model::TargetId;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

pub(super) struct Schedule {
    /// (when, target, token) of each armed core timer.
    timers: BTreeSet<(Instant, TargetId, u64)>,
    last_scan: Instant,
    scanning: bool,
    scan_soon: bool,
    /// When each target's next stall probe is due; targets probing now.
    probes_due: HashMap<String, Instant>,
    probing: HashSet<String>,
}

impl Schedule {
    pub(super) fn new() -> Schedule {
        Schedule {
            timers: BTreeSet::new(),
            last_scan: Instant::now(),
            scanning: false,
            scan_soon: true,
            probes_due: HashMap::new(),
            probing: HashSet::new(),
        }
    }

    /// The earliest of everything due, given the scan interval.
    pub(super) fn next_wake(&self, interval: Duration) -> Option<Instant> {
        [
            self.timers.first().map(|t| t.0),
            self.next_scan(interval),
            self.probes_due
                .iter()
                .filter(|(k, _)| !self.probing.contains(*k))
                .map(|(_, t)| *t)
                .min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(super) fn arm(&mut self, at: Instant, target: TargetId, token: u64) {
        self.timers.insert((at, target, token));
    }

    /// The timers due now, removed: (target, token).
    pub(super) fn due_timers(&mut self, now: Instant) -> Vec<(TargetId, u64)> {
        let mut due = Vec::new();
        while let Some(first) = self.timers.first() {
            if first.0 > now {
                break;
            }
            let (_, target, token) = self.timers.pop_first().expect("first");
            due.push((target, token));
        }
        due
    }

    fn next_scan(&self, interval: Duration) -> Option<Instant> {
        if self.scanning {
            None
        } else if self.scan_soon {
            Some(self.last_scan) // now or in the past
        } else {
            Some(self.last_scan + interval)
        }
    }

    pub(super) fn scan_due(&self, now: Instant, interval: Duration) -> bool {
        self.next_scan(interval).is_some_and(|t| t <= now)
    }

    pub(super) fn scan_soon(&mut self) {
        self.scan_soon = true;
    }

    /// A scan was asked for (not just the interval).
    pub(super) fn soon(&self) -> bool {
        self.scan_soon
    }

    pub(super) fn scan_started(&mut self, running: bool) {
        self.last_scan = Instant::now();
        self.scan_soon = false;
        self.scanning = running;
    }

    pub(super) fn scan_done(&mut self) {
        self.scanning = false;
    }

    /// Keep the probe schedule in step with the targets that have one
    /// now: (target, probe interval).
    pub(super) fn sync_probes<'a>(&mut self, live: impl Iterator<Item = (&'a str, Duration)>) {
        let now = Instant::now();
        let mut seen = HashSet::new();
        for (name, every) in live {
            if !self.probes_due.contains_key(name) {
                self.probes_due.insert(name.to_string(), now + every);
            }
            seen.insert(name);
        }
        if seen.len() != self.probes_due.len() {
            self.probes_due.retain(|k, _| seen.contains(k.as_str()));
        }
    }

    /// Is `target`'s probe due now (and not running)?
    pub(super) fn probe_due(&self, target: &str, now: Instant) -> bool {
        !self.probing.contains(target) && self.probes_due.get(target).is_some_and(|t| *t <= now)
    }

    pub(super) fn probe_started(&mut self, target: &str, next: Instant) {
        self.probes_due.insert(target.to_string(), next);
        self.probing.insert(target.to_string());
    }

    pub(super) fn probe_done(&mut self, target: &str) {
        self.probing.remove(target);
    }
}
