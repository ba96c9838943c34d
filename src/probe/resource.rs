//! Resource readings for `[[target.check]]`: CPU, memory (RSS), threads,
//! descriptors, children, uptime of a target's main process or its tree.
//! Only the per-PID files of the processes concerned are read (one `stat`
//! each, which has the CPU time, the thread count and the RSS; the
//! `children` list; `fd/` for a descriptor count): never a walk of /proc.
//! All the checks of one target due together share these reads. Blocking.

use crate::config::{Resource, Scope};
use crate::model::ProcRef;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

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

/// A file kept open this long without a reading is closed.
const KEEP_IDLE: Duration = Duration::from_secs(600);

/// The `stat` and `children` files of the main processes checked, kept
/// open between readings: reading an open /proc file again costs about
/// half of an open, a read and a close (measured: 5 against 8.7 µs for a
/// `stat` here), which is most of a resource check. At most `cap`
/// descriptors (a quarter of the open-file limit); past it, files are
/// opened for each reading as before.
pub struct Files {
    kept: HashMap<ProcRef, Kept>,
    cap: usize,
}

struct Kept {
    stat: OwnedFd,
    children: Option<OwnedFd>,
    used: Instant,
}

impl Files {
    pub fn new() -> Files {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(1024);
        Files {
            kept: HashMap::new(),
            cap: (limit / 4).min(65_536) as usize,
        }
    }

    /// Close the files of processes not read for a while (gone, or no
    /// longer the main process of a target).
    pub fn sweep(&mut self) {
        self.kept.retain(|_, k| k.used.elapsed() < KEEP_IDLE);
    }

    /// `main`'s figures, from its kept `stat` (or a new one, kept when
    /// there is room). `None` when it is gone: its files are closed.
    fn main(&mut self, main: ProcRef, buf: &mut Vec<u8>) -> Option<Figures> {
        if let Some(k) = self.kept.get_mut(&main) {
            k.used = Instant::now();
            let f = crate::sys::proc::reread(&k.stat, buf)
                .ok()
                .and_then(|()| parse_figures(buf))
                .filter(|f| f.proc == main);
            if f.is_none() {
                self.kept.remove(&main);
            }
            return f;
        }
        let fd = crate::sys::proc::open_proc(&format!("/proc/{}/stat", main.pid)).ok()?;
        crate::sys::proc::reread(&fd, buf).ok()?;
        let f = parse_figures(buf).filter(|f| f.proc == main)?;
        if self.kept.len() + 2 <= self.cap {
            let used = Instant::now();
            self.kept.insert(
                main,
                Kept {
                    stat: fd,
                    children: None,
                    used,
                },
            );
        }
        Some(f)
    }

    /// `main`'s children (single-threaded: its kept `children` file).
    fn children(&mut self, main: &Figures, out: &mut Vec<u32>, buf: &mut Vec<u8>) {
        let Some(k) = self.kept.get_mut(&main.proc).filter(|_| main.threads <= 1) else {
            return children(main.proc.pid, main.threads, out);
        };
        if k.children.is_none() {
            let pid = main.proc.pid;
            k.children =
                crate::sys::proc::open_proc(&format!("/proc/{pid}/task/{pid}/children")).ok();
        }
        match &k.children {
            Some(fd) if crate::sys::proc::reread(fd, buf).is_ok() => {
                crate::sys::proc::add_pids(buf, out)
            }
            _ => children(main.proc.pid, main.threads, out),
        }
    }
}

impl Default for Files {
    fn default() -> Self {
        Files::new()
    }
}

/// What one `stat` read says of a process.
#[derive(Debug, Clone, Copy)]
struct Figures {
    proc: ProcRef,
    /// utime + stime, clock ticks.
    ticks: u64,
    threads: u64,
    rss_pages: u64,
}

fn figures(pid: u32, buf: &mut Vec<u8>) -> Option<Figures> {
    crate::sys::proc::read_small(&format!("/proc/{pid}/stat"), buf).ok()?;
    parse_figures(buf)
}

fn parse_figures(buf: &[u8]) -> Option<Figures> {
    let st = crate::sys::proc::parse_stat(buf)?;
    if st.is_dead() {
        return None;
    }
    // After the command name: num_threads is its 18th field (field 20 of
    // stat), rss its 22nd (field 24).
    let close = buf.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(buf.get(close + 2..)?).ok()?;
    let mut f = rest.split_ascii_whitespace();
    let threads = f.nth(17)?.parse().ok()?;
    let rss_pages = f.nth(3)?.parse().ok()?;
    Some(Figures {
        proc: st.proc_ref(),
        ticks: st.utime + st.stime,
        threads,
        rss_pages,
    })
}

/// Direct children of `pid` (a single-threaded process: its one
/// `children` file; else every thread's). A process gone meanwhile adds
/// none: it is read again at the next round.
fn children(pid: u32, threads: u64, out: &mut Vec<u32>) {
    let _ = crate::sys::proc::children(pid, threads <= 1, out);
}

/// The figures of the target's processes `procs` (its main process
/// first; a group target's members after it) and, for a tree, of their
/// descendants (breadth first, each once, bounded). Empty when the main
/// process is gone; with the number of tracked processes found.
fn tree(
    procs: &[ProcRef],
    whole: bool,
    files: &mut Files,
    buf: &mut Vec<u8>,
) -> (Vec<Figures>, usize) {
    let Some(first) = procs.first().and_then(|&m| files.main(m, buf)) else {
        return (Vec::new(), 0);
    };
    let mut all = vec![first];
    if whole {
        all.extend(procs[1..].iter().filter_map(|&p| files.main(p, buf)));
    }
    let tracked = all.len();
    let mut seen: std::collections::HashSet<u32> = all.iter().map(|f| f.proc.pid).collect();
    let mut i = 0;
    while whole && i < all.len() && all.len() < TREE_MAX {
        let mut next = Vec::new();
        if i < tracked {
            files.children(&all[i], &mut next, buf);
        } else {
            children(all[i].proc.pid, all[i].threads, &mut next);
        }
        next.retain(|p| seen.insert(*p));
        all.extend(next.into_iter().filter_map(|p| figures(p, buf)));
        i += 1;
    }
    all.truncate(TREE_MAX);
    (all, tracked)
}

fn fd_count(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// Clock ticks since boot (/proc/uptime).
pub fn boot_ticks() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_ascii_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |secs| (secs * crate::sys::proc::clk_tck() as f64) as u64)
}

/// One check of a target to read: what, over whom, its last CPU sample.
pub struct Want<'a> {
    pub what: Resource,
    pub scope: Scope,
    pub prev: Option<&'a CpuSample>,
}

/// Read the checks `wants` of a target whose processes are `procs` (its
/// main process first; the checks due together), at `boot` ticks since
/// boot. Each gets its value (`None` when the main process is gone, or
/// for CPU at the first sample) and, for CPU, its new sample. A tree is
/// every tracked process with its descendants.
pub fn measure(
    procs: &[ProcRef],
    wants: &[Want],
    boot: u64,
    files: &mut Files,
) -> Vec<(Option<f64>, Option<CpuSample>)> {
    let mut buf = Vec::with_capacity(1024);
    let whole = wants.iter().any(|w| w.scope == Scope::Tree);
    let (all, tracked) = tree(procs, whole, files, &mut buf);
    if all.is_empty() {
        return wants.iter().map(|_| (None, None)).collect();
    }
    let main = procs[0];
    let page = rustix::param::page_size() as u64;
    wants
        .iter()
        .map(|w| {
            let set = match w.scope {
                Scope::Tree => &all[..],
                Scope::Process => &all[..1],
            };
            let sum = |f: &dyn Fn(&Figures) -> u64| set.iter().map(f).sum::<u64>() as f64;
            let v = match w.what {
                Resource::Memory => sum(&|f| f.rss_pages * page),
                Resource::Threads => sum(&|f| f.threads),
                Resource::Fds => sum(&|f| fd_count(f.proc.pid)),
                Resource::Children => match w.scope {
                    Scope::Tree => (all.len() - tracked) as f64,
                    Scope::Process => {
                        let mut c = Vec::new();
                        children(main.pid, all[0].threads, &mut c);
                        c.len() as f64
                    }
                },
                Resource::Uptime => {
                    boot.saturating_sub(main.start) as f64 / crate::sys::proc::clk_tck() as f64
                }
                Resource::Cpu => return cpu(set, w.prev, boot),
            };
            (Some(v), None)
        })
        .collect()
}

/// CPU % of one core over the time since `prev`.
fn cpu(set: &[Figures], prev: Option<&CpuSample>, boot: u64) -> (Option<f64>, Option<CpuSample>) {
    let mut ticks: Vec<(ProcRef, u64)> = set.iter().map(|f| (f.proc, f.ticks)).collect();
    ticks.sort_by_key(|t| t.0.pid);
    let now = CpuSample {
        at: Some(Instant::now()),
        boot_ticks: boot,
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

    fn one(
        p: ProcRef,
        what: Resource,
        prev: Option<&CpuSample>,
    ) -> (Option<f64>, Option<CpuSample>) {
        let w = Want {
            what,
            scope: Scope::Process,
            prev,
        };
        measure(&[p], &[w], boot_ticks(), &mut Files::new()).remove(0)
    }

    #[test]
    fn this_process_s_figures_are_read() {
        let p = me();
        let get = |w| one(p, w, None).0.unwrap();
        assert!(get(Resource::Memory) > 1_000_000.0, "RSS of a test binary");
        assert!(get(Resource::Threads) >= 1.0);
        assert!(get(Resource::Fds) >= 3.0);
        assert!(get(Resource::Uptime) < 3600.0);
        let (first, sample) = one(p, Resource::Cpu, None);
        assert_eq!(first, None, "the first CPU sample has nothing to compare");
        let t0 = Instant::now();
        let mut x = 0u64;
        while t0.elapsed().as_millis() < 300 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let pct = one(p, Resource::Cpu, sample.as_ref()).0.unwrap();
        assert!(pct > 30.0, "a busy thread shows: {pct}");
    }

    #[test]
    fn a_tree_counts_the_descendants() {
        let mut sh = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap();
        let mut buf = Vec::new();
        let p = crate::sys::proc::read_stat(sh.id(), &mut buf)
            .unwrap()
            .unwrap()
            .proc_ref();
        let want = |scope| Want {
            what: Resource::Children,
            scope,
            prev: None,
        };
        let mut n = 0.0;
        let mut files = Files::new();
        for _ in 0..100 {
            n = measure(&[p], &[want(Scope::Tree)], boot_ticks(), &mut files)[0]
                .0
                .unwrap();
            if n >= 2.0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(n, 2.0);
        assert_eq!(files.kept.len(), 1, "its files kept open");
        let both = measure(
            &[p],
            &[want(Scope::Process), want(Scope::Tree)],
            boot_ticks(),
            &mut files,
        );
        assert_eq!(both[0].0, Some(2.0));
        let kids: Vec<u32> =
            std::fs::read_to_string(format!("/proc/{}/task/{}/children", p.pid, p.pid))
                .unwrap()
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
        for k in kids {
            let _ = std::process::Command::new("kill")
                .arg(k.to_string())
                .status();
        }
        let _ = sh.wait();
    }

    #[test]
    fn a_gone_process_has_no_reading() {
        let gone = ProcRef {
            pid: me().pid,
            start: 1,
        };
        let w = Want {
            what: Resource::Memory,
            scope: Scope::Tree,
            prev: None,
        };
        let mut files = Files::new();
        assert_eq!(measure(&[gone], &[w], boot_ticks(), &mut files)[0].0, None);
        assert!(files.kept.is_empty(), "nothing kept of a process gone");
    }

    #[test]
    fn a_group_target_s_tree_is_every_member_with_its_descendants() {
        let mut kids: Vec<_> = (0..2)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut buf = Vec::new();
        let procs: Vec<ProcRef> = kids
            .iter()
            .map(|k| {
                crate::sys::proc::read_stat(k.id(), &mut buf)
                    .unwrap()
                    .unwrap()
                    .proc_ref()
            })
            .collect();
        let want = |scope| Want {
            what: Resource::Threads,
            scope,
            prev: None,
        };
        let mut files = Files::new();
        let got = measure(
            &procs,
            &[want(Scope::Process), want(Scope::Tree)],
            boot_ticks(),
            &mut files,
        );
        assert_eq!((got[0].0, got[1].0), (Some(1.0), Some(2.0)));
        let kids_tree = Want {
            what: Resource::Children,
            scope: Scope::Tree,
            prev: None,
        };
        let got = measure(&procs, &[kids_tree], boot_ticks(), &mut files);
        assert_eq!(got[0].0, Some(0.0), "members are not children");
        for k in &mut kids {
            let _ = k.kill();
            let _ = k.wait();
        }
    }
}
