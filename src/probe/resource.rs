//! Resource readings for `[[target.check]]`: CPU, memory (RSS), threads,
//! descriptors, children, uptime of a target's main process or its tree.
//! Only the per-PID files of the processes concerned are read (stat,
//! statm, fd/, task/*/children): never a walk of /proc. Blocking.

use crate::config::{Resource, Scope};
use crate::model::ProcRef;
use std::time::Instant;

/// The most processes a tree is followed to (a fork bomb stops here).
const TREE_MAX: usize = 10_000;

/// CPU time of a check's processes at one moment, to average the next
/// reading over the interval between them.
#[derive(Debug, Clone, Default)]
pub struct CpuSample {
    at: Option<Instant>,
    /// Clock ticks since boot when sampled.
    boot_ticks: u64,
    /// utime + stime of each process, by pid (sorted).
    ticks: Vec<(ProcRef, u64)>,
}

/// One process's figures from its stat: (proc, utime + stime, threads).
fn stat(pid: u32, buf: &mut Vec<u8>) -> Option<(ProcRef, u64, u64)> {
    let st = crate::sys::proc::read_stat(pid, buf).ok()??;
    // num_threads is field 20: the 18th after the command name.
    let close = buf.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(buf.get(close + 2..)?).ok()?;
    let threads = rest.split_ascii_whitespace().nth(17)?.parse().ok()?;
    Some((st.proc_ref(), st.utime + st.stime, threads))
}

/// Direct children of `pid` (from /proc/PID/task/*/children).
fn children(pid: u32, out: &mut Vec<u32>) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                s.split_ascii_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
}

/// `main` and, for a tree, its descendants (breadth first, bounded).
fn pids(main: u32, scope: Scope) -> Vec<u32> {
    let mut all = vec![main];
    if scope == Scope::Tree {
        let mut i = 0;
        while i < all.len() && all.len() < TREE_MAX {
            let mut next = Vec::new();
            children(all[i], &mut next);
            all.extend(next);
            i += 1;
        }
        all.truncate(TREE_MAX);
    }
    all
}

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_ascii_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * rustix::param::page_size() as u64)
}

fn fd_count(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// Clock ticks since boot (/proc/uptime).
fn boot_ticks() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = s.split_ascii_whitespace().next()?.parse().ok()?;
    Some((secs * crate::sys::proc::clk_tck() as f64) as u64)
}

/// Measure `what` for `main` (or its tree). `None` when `main` is gone or
/// (CPU) this is the first sample; `prev` is the last CPU sample, and the
/// new one is returned for the next reading.
pub fn measure(
    main: ProcRef,
    what: Resource,
    scope: Scope,
    prev: Option<&CpuSample>,
) -> (Option<f64>, Option<CpuSample>) {
    let mut buf = Vec::with_capacity(512);
    if crate::sys::proc::read_pinned(main, &mut buf).is_none() {
        return (None, None);
    }
    let pids = pids(main.pid, scope);
    let sum = |f: &dyn Fn(u32) -> u64| pids.iter().map(|p| f(*p)).sum::<u64>() as f64;
    let v = match what {
        Resource::Memory => sum(&rss_bytes),
        Resource::Fds => sum(&fd_count),
        Resource::Threads => {
            let mut b = Vec::with_capacity(512);
            pids.iter()
                .filter_map(|p| stat(*p, &mut b).map(|s| s.2))
                .sum::<u64>() as f64
        }
        Resource::Children => match scope {
            Scope::Tree => (pids.len() - 1) as f64,
            Scope::Process => {
                let mut c = Vec::new();
                children(main.pid, &mut c);
                c.len() as f64
            }
        },
        Resource::Uptime => {
            let now = boot_ticks().unwrap_or(0);
            now.saturating_sub(main.start) as f64 / crate::sys::proc::clk_tck() as f64
        }
        Resource::Cpu => return cpu(&pids, prev),
    };
    (Some(v), None)
}

/// CPU % of one core over the time since `prev`.
fn cpu(pids: &[u32], prev: Option<&CpuSample>) -> (Option<f64>, Option<CpuSample>) {
    let mut buf = Vec::with_capacity(512);
    let mut ticks: Vec<(ProcRef, u64)> = pids
        .iter()
        .filter_map(|p| stat(*p, &mut buf).map(|s| (s.0, s.1)))
        .collect();
    ticks.sort_by_key(|t| t.0.pid);
    let now = CpuSample {
        at: Some(Instant::now()),
        boot_ticks: boot_ticks().unwrap_or(0),
        ticks,
    };
    let Some((prev, at)) = prev.and_then(|p| Some((p, p.at?))) else {
        return (None, Some(now));
    };
    let elapsed = at.elapsed().as_secs_f64();
    if elapsed <= 0.0 {
        return (None, Some(now));
    }
    // Processes in both samples count what they used since; one started
    // after the last sample counts all it used; others (seen first now,
    // older) count from now on.
    let used: u64 = now
        .ticks
        .iter()
        .map(
            |(p, t)| match prev.ticks.binary_search_by_key(&p.pid, |q| q.0.pid) {
                Ok(k) if prev.ticks[k].0 == *p => t.saturating_sub(prev.ticks[k].1),
                _ if p.start >= prev.boot_ticks => *t,
                _ => 0,
            },
        )
        .sum();
    let pct = used as f64 / crate::sys::proc::clk_tck() as f64 / elapsed * 100.0;
    (Some(pct), Some(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> ProcRef {
        let mut buf = Vec::new();
        crate::sys::proc::read_stat(std::process::id(), &mut buf)
            .unwrap()
            .unwrap()
            .proc_ref()
    }

    #[test]
    fn this_process_s_figures_are_read() {
        let p = me();
        let get = |w| measure(p, w, Scope::Process, None).0.unwrap();
        assert!(get(Resource::Memory) > 1_000_000.0, "RSS of a test binary");
        assert!(get(Resource::Threads) >= 1.0);
        assert!(get(Resource::Fds) >= 3.0);
        assert!(get(Resource::Uptime) < 3600.0);
        let (first, sample) = measure(p, Resource::Cpu, Scope::Process, None);
        assert_eq!(first, None, "the first CPU sample has nothing to compare");
        let t0 = Instant::now();
        let mut x = 0u64;
        while t0.elapsed().as_millis() < 300 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let (pct, _) = measure(p, Resource::Cpu, Scope::Process, sample.as_ref());
        let pct = pct.unwrap();
        assert!(pct > 30.0, "a busy thread shows: {pct}");
    }

    #[test]
    fn a_gone_process_has_no_reading() {
        let gone = ProcRef {
            pid: me().pid,
            start: 1,
        };
        assert_eq!(measure(gone, Resource::Memory, Scope::Tree, None).0, None);
    }
}
