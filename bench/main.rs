//! Side-by-side benchmark: procward, monit (pidfiles), monit (`matching`)
//! and a `ps`-per-cycle shell loop, each watching N idle processes at a
//! 1 s interval. Records CPU (utime+stime of the monitor and its reaped
//! children, % of one core) over a steady-state period, peak RSS, and for
//! procward and monit the latency from SIGKILL of a random target to the
//! monitor's reaction. Run through scripts/bench.sh.
// Test harness, not procward: raw libc calls set up the conditions tested.
#![allow(unsafe_code)]
// A scenario reads best in one piece: the 100-line rule is for production
// code (clippy.toml).
#![allow(clippy::too_many_lines)]

mod delivery;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Counts the harness's own heap allocations (for the /proc reader
/// comparison: bytes allocated per stat read).
struct Counting;
static ALLOCATED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
// SAFETY: forwards to the system allocator; only counts.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        ALLOCATED.fetch_add(l.size() as u64, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        // SAFETY: p was allocated by System with l.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, n: usize) -> *mut u8 {
        ALLOCATED.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: p was allocated by System with l.
        unsafe { std::alloc::System.realloc(p, l, n) }
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

/// procward's hand-written /proc reader against the `procfs` crate on the
/// same processes: µs and bytes allocated per stat read, and a walk of
/// /proc reading every stat. Best of 5 rounds.
fn proc_readers(targets: &Targets) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let pids: Vec<u32> = targets.children.iter().map(|c| c.id()).collect();
    let n = pids.len() as f64;
    let best = |f: &mut dyn FnMut() -> usize| {
        let mut out = (f64::MAX, 0.0, 0usize);
        for _ in 0..5 {
            let a0 = ALLOCATED.load(Relaxed);
            let t = Instant::now();
            let k = f();
            let us = t.elapsed().as_secs_f64() * 1e6;
            let bytes = (ALLOCATED.load(Relaxed) - a0) as f64;
            if us < out.0 {
                out = (us, bytes, k);
            }
        }
        out
    };
    let mut buf = Vec::with_capacity(512);
    let ours_stat = best(&mut || {
        pids.iter()
            .filter(|&&p| matches!(procward::sys::proc::read_stat(p, &mut buf), Ok(Some(_))))
            .count()
    });
    let crate_stat = best(&mut || {
        pids.iter()
            .filter(|&&p| {
                procfs::process::Process::new(p as i32)
                    .and_then(|pr| pr.stat())
                    .is_ok()
            })
            .count()
    });
    let ours_walk = best(&mut || {
        std::fs::read_dir("/proc")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|&p| matches!(procward::sys::proc::read_stat(p, &mut buf), Ok(Some(_))))
                    .count()
            })
            .unwrap_or(0)
    });
    let crate_walk = best(&mut || {
        procfs::process::all_processes()
            .map(|it| it.flatten().filter(|p| p.stat().is_ok()).count())
            .unwrap_or(0)
    });
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## /proc reader: hand-written against the `procfs` crate
"
    );
    let _ = writeln!(
        md,
        "The same {} `sleep` processes; best of 5 rounds. *stat* reads /proc/PID/stat of each known pid; \
         *walk* lists /proc and reads every process's stat (what a scan does).\n",
        pids.len()
    );
    let _ = writeln!(md, "| reader | stat µs / process | bytes allocated / process | walk ms (processes) | walk bytes allocated / process |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    for (name, st, walk) in [
        ("procward (probe/procfs.rs)", ours_stat, ours_walk),
        ("procfs 0.17", crate_stat, crate_walk),
    ] {
        let _ = writeln!(
            md,
            "| {name} | {:.2} | {:.0} | {:.1} ({}) | {:.0} |",
            st.0 / n,
            st.1 / n,
            walk.0 / 1000.0,
            walk.2,
            walk.1 / walk.2.max(1) as f64
        );
    }
    let _ = writeln!(md);
    md
}

struct Args {
    ns: Vec<usize>,
    steady: u64,
    samples: usize,
    out: PathBuf,
    procward: PathBuf,
    /// Only these rows (procward, procward-regex, procward-loaded,
    /// procward-checks (at N = 1,000),
    /// monit-pidfile, monit-matching, ps-loop); no /proc reader or
    /// discovery table then. For working on one row; BENCHMARKS.md is
    /// written from a run without it.
    only: Option<Vec<String>>,
    /// Only the discovery measurement (prints its table).
    discovery_only: bool,
    /// Switch the kernel's DAMON monitors off during the run.
    damon_off: bool,
    /// Events of the delivery run (RELP, beside omrelp).
    delivery_events: usize,
    /// The .deb built from the same binary (its size is reported).
    deb: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut a = Args {
        ns: vec![100, 1000, 10000],
        steady: 20,
        samples: 50,
        out: PathBuf::from("BENCHMARKS.md"),
        procward: PathBuf::from("target/release/procward"),
        only: None,
        discovery_only: false,
        damon_off: false,
        delivery_events: 100_000,
        deb: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--n" => {
                a.ns = v
                    .split(',')
                    .map(|x| x.parse().expect("--n 100,1000"))
                    .collect()
            }
            "--steady" => a.steady = v.parse().expect("--steady SECONDS"),
            "--samples" => a.samples = v.parse().expect("--samples N"),
            "--out" => a.out = PathBuf::from(v),
            "--procward" => a.procward = PathBuf::from(v),
            "--deb" => a.deb = Some(PathBuf::from(v)),
            "--delivery-events" => a.delivery_events = v.parse().expect("--delivery-events N"),
            "--only" => a.only = Some(v.split(',').map(str::to_string).collect()),
            "--discovery-only" => {
                a.discovery_only = true;
                i += 1;
                continue;
            }
            "--damon-off" => {
                a.damon_off = true;
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}; see scripts/bench.sh"),
        }
        i += 2;
    }
    a
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// CPU time of a process in ns: its threads' on-CPU time from
/// /proc/PID/task/*/schedstat (nanoseconds, unlike the 10 ms ticks of
/// /proc/PID/stat), plus cutime+cstime of its reaped children (ticks).
fn cpu_ns(pid: u32) -> Option<u64> {
    let mut ns = 0u64;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let child_ticks: u64 = (13..=14).map(|i| f[i].parse::<u64>().unwrap_or(0)).sum();
    Some(ns + (child_ticks as f64 * 1e9 / clk_tck()) as u64)
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Where the monitor's resident memory is now: anonymous (heap, stacks)
/// and file-backed (the binary's and libraries' pages), from
/// /proc/PID/smaps_rollup, and its threads.
fn rss_split(pid: u32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let kib = |key: &str| -> Option<f64> {
        s.lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let (rss, anon) = (kib("Rss:")?, kib("Anonymous:")?);
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.count();
    Some(format!(
        "RSS now {:.1} MiB = {:.1} anonymous + {:.1} file-backed, {threads} threads",
        rss / 1024.0,
        anon / 1024.0,
        (rss - anon) / 1024.0
    ))
}

/// The binary's size on disk, stripped of its debug information (what
/// the .deb installs), and the .deb's size.
fn binary_sizes(bin: &Path, deb: Option<&Path>) -> String {
    let mib = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64 / 1048576.0)
            .ok()
    };
    let stripped = std::env::temp_dir().join(format!("pw-bench-strip-{}", std::process::id()));
    let ok = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(bin)
        .status()
        .is_ok_and(|s| s.success());
    let s = ok.then(|| mib(&stripped)).flatten();
    let _ = std::fs::remove_file(&stripped);
    let deb = match deb.map(|d| (d, mib(d))) {
        Some((d, Some(m))) => format!(
            ", package {} {m:.1} MiB",
            d.file_name().unwrap_or_default().to_string_lossy()
        ),
        Some((d, None)) => format!(", package {}: not found", d.display()),
        None => ", package: not built (scripts/bench.sh builds it)".to_string(),
    };
    format!(
        "procward binary: {} MiB, stripped {} MiB{deb}.",
        fmt_opt(mib(bin), 1),
        fmt_opt(s, 1)
    )
}

/// How much of link/symbol-order.txt (the functions the daemon runs, put
/// first by the linker: build.rs) the binary still has, and the span they
/// take: a low count means the list is stale (scripts/symbol-order.sh).
fn symbol_order(bin: &Path) -> String {
    let list = Path::new(env!("CARGO_MANIFEST_DIR")).join("link/symbol-order.txt");
    let Ok(text) = std::fs::read_to_string(&list) else {
        return "Symbol order: no link/symbol-order.txt.".into();
    };
    let wanted: std::collections::HashSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let Ok(out) = Command::new("nm").arg("-S").arg(bin).output() else {
        return "Symbol order: nm did not run.".into();
    };
    let nm = String::from_utf8_lossy(&out.stdout);
    let (mut found, mut lo, mut hi) = (0usize, u64::MAX, 0u64);
    for l in nm.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 4 && wanted.contains(f[3]) {
            let (a, n) = (u64::from_str_radix(f[0], 16), u64::from_str_radix(f[1], 16));
            if let (Ok(a), Ok(n)) = (a, n) {
                found += 1;
                lo = lo.min(a);
                hi = hi.max(a + n);
            }
        }
    }
    let span = hi.saturating_sub(lo) as f64 / 1048576.0;
    format!(
        "Symbol order (link/symbol-order.txt): {found} of its {} functions in the binary, together in {span:.1} MiB of text.",
        wanted.len()
    )
}

fn which(p: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
            .map(|d| d.join(p))
            .find(|f| f.is_file())
    })
}

fn write_exec(p: &Path, text: &str) {
    std::fs::write(p, text).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).unwrap();
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: signalling a process this harness started, by pid.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

fn stop(mut c: Child) {
    procward::action::stop_child(&mut c, Duration::from_secs(10));
}

/// The idle targets, with their pidfiles.
struct Targets {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Targets {
    fn spawn_one(&self, i: usize) -> Child {
        let c = Command::new("sleep")
            .arg(format!("100000.{i}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        std::fs::write(self.dir.join(format!("t{i}.pid")), format!("{}\n", c.id())).unwrap();
        c
    }

    fn start(dir: &Path, n: usize) -> Targets {
        std::fs::create_dir_all(dir).unwrap();
        let mut t = Targets {
            dir: dir.to_path_buf(),
            children: Vec::with_capacity(n),
        };
        for i in 0..n {
            let c = t.spawn_one(i);
            t.children.push(c);
        }
        t
    }

    /// SIGKILL target i (reaped here at once), then start a replacement.
    fn kill_and_replace(&mut self, i: usize) -> u128 {
        let t0 = now_ns();
        signal(self.children[i].id(), libc::SIGKILL);
        let _ = self.children[i].wait();
        t0
    }

    fn replace(&mut self, i: usize) {
        let c = self.spawn_one(i);
        self.children[i] = c;
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        for c in &mut self.children {
            signal(c.id(), libc::SIGKILL);
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
    }
}

#[derive(Default, Clone)]
struct Row {
    monitor: String,
    cpu_pct: Option<f64>,
    rss_mib: Option<f64>,
    detect: Option<(f64, f64)>,
    restart: Option<(f64, f64)>,
    note: String,
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// CPU % of one core used by `pid` (and its reaped children) over `secs`.
fn measure_cpu(pid: u32, secs: u64) -> Option<f64> {
    let a = cpu_ns(pid)?;
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let b = cpu_ns(pid)?;
    Some(b.saturating_sub(a) as f64 / 1e9 / t.elapsed().as_secs_f64() * 100.0)
}

fn wait_file(p: &Path, timeout: Duration) -> Option<u128> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(s) = std::fs::read_to_string(p) {
            if let Ok(v) = s.trim().parse() {
                return Some(v);
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    None
}

/// procward's journal, read incrementally (the harness must not compete
/// with the monitor for CPU by re-reading a large journal in a loop).
struct Journal {
    path: PathBuf,
    offset: u64,
    /// (id, target) -> event times in ms
    times: HashMap<(String, String), Vec<u64>>,
}

impl Journal {
    fn new(state: &Path) -> Journal {
        Journal {
            path: state.join("events.jsonl"),
            offset: 0,
            times: HashMap::new(),
        }
    }

    fn update(&mut self) {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = String::new();
        let _ = f.read_to_string(&mut buf);
        let complete = buf.rfind('\n').map(|i| i + 1).unwrap_or(0);
        for line in buf[..complete].lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if let (Some(id), Some(t), Some(ms)) = (
                v["id"].as_str(),
                v["target"].as_str(),
                v["time_ms"].as_u64(),
            ) {
                self.times
                    .entry((id.to_string(), t.to_string()))
                    .or_default()
                    .push(ms);
            }
        }
        self.offset += complete as u64;
    }

    fn count(&self, id: &str, target: &str) -> usize {
        self.times
            .get(&(id.to_string(), target.to_string()))
            .map(Vec::len)
            .unwrap_or(0)
    }

    fn last(&self, id: &str, target: &str) -> Option<u64> {
        self.times
            .get(&(id.to_string(), target.to_string()))
            .and_then(|v| v.last().copied())
    }

    fn targets_with(&self, id: &str) -> usize {
        self.times.keys().filter(|(i, _)| i == id).count()
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// How the procward run finds its targets and what else the machine does.
#[derive(Clone, Copy, PartialEq)]
enum Variant {
    /// `match.pidfile` (as monit's rows).
    Pidfile,
    /// `match.cmdline` with a real regex (not a plain literal):
    /// `^(/bin/)?sleep +100000\.I$`.
    Regex,
    /// Pidfiles, with one busy loop per core running during the latency
    /// samples (no steady-state CPU figure: the loops would be in it).
    Loaded,
    /// Pidfiles, and two resource checks per target (memory and CPU of
    /// the tree, every 10 s): the steady-state CPU of the checks.
    Checks,
}

/// The two checks of each target in the `Checks` variant.
const CHECKS: &str = "[[target.check]]\nname = \"leak\"\nkind = \"memory\"\nscope = \"tree\"\nabove = \"1GiB\"\ninterval = \"10s\"\nfor = 3\naction = \"restart\"\n[[target.check]]\nname = \"busy\"\nkind = \"cpu\"\nscope = \"tree\"\nabove = 90\ninterval = \"10s\"\nfor = \"1m\"\n";

fn bench_procward(
    a: &Args,
    n: usize,
    dir: &Path,
    targets: &mut Targets,
    latency: bool,
    variant: Variant,
) -> Row {
    let state = dir.join("pw-state");
    let _ = std::fs::remove_dir_all(&state);
    let script = dir.join("pw-restart.sh");
    write_exec(
        &script,
        &format!(
            "#!/bin/sh\ndate +%s%N > {}/started.$PROCWARD_TARGET\n",
            dir.display()
        ),
    );
    let mut cfg = format!(
        "[daemon]\ninterval = \"1s\"\nstate-dir = \"{}\"\ncontrol-socket = \"{}/pw.sock\"\nzombie-grace = \"100ms\"\n",
        state.display(),
        dir.display()
    );
    // Every restart immediate (no backoff): the bench measures the
    // latency of detection and restart, not the retry policy.
    for i in 0..n {
        let matcher = match variant {
            Variant::Regex => format!("match.cmdline = '^(/bin/)?sleep +100000\\.{i}$'"),
            _ => format!("match.pidfile = \"{}/t{i}.pid\"", dir.display()),
        };
        let _ = writeln!(
            cfg,
            "[[target]]\nname = \"t{i}\"\n{matcher}\nrestart.script = \"{}\"\nrestart.settle = \"5s\"\nretry.max = 1000\nretry.window = \"1h\"\nretry.backoff = {{ initial = \"0s\", max = \"1s\" }}",
            script.display()
        );
        if variant == Variant::Checks {
            cfg.push_str(CHECKS);
        }
    }
    let cfg_path = dir.join("procward.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    std::fs::set_permissions(&cfg_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let child = Command::new(&a.procward)
        .args(["run", "--quiet", "-c"])
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(match std::env::var_os("BENCH_SAMPLES") {
            // With BENCH_SAMPLES=DIR, procward's stderr goes to DIR/procward.log.
            Some(d) => {
                Stdio::from(std::fs::File::create(Path::new(&d).join("procward.log")).unwrap())
            }
            None => Stdio::null(),
        })
        .spawn()
        .expect("start procward");
    let pid = child.id();
    let spawned_ms = (now_ns() / 1_000_000) as u64;
    // Warm-up: every target found.
    let mut journal = Journal::new(&state);
    let deadline = Instant::now() + Duration::from_secs(60);
    while journal.targets_with("PW2001") < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        journal.update();
    }
    // Start-up: the spawn to the last target's PW2001 (journal stamps).
    let startup_s = (journal.targets_with("PW2001") == n).then(|| {
        let last = journal
            .times
            .iter()
            .filter(|((id, _), _)| id == "PW2001")
            .filter_map(|(_, v)| v.first().copied())
            .max()
            .unwrap_or(spawned_ms);
        last.saturating_sub(spawned_ms) as f64 / 1000.0
    });
    std::thread::sleep(Duration::from_secs(2));
    // Reload of the same configuration: the `procward reload` command,
    // which returns once the daemon has applied it.
    let t = Instant::now();
    let reload_ok = Command::new(&a.procward)
        .args(["reload", "-c"])
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let reload_s = reload_ok.then(|| t.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_secs(1));
    eprintln!(
        "   procward after start-up: VmHWM {:?} KiB",
        vm_hwm_kib(pid)
    );
    if variant == Variant::Checks {
        // Steady state: after the first round of checks, which opens the
        // files the later ones read again (probe/resource.rs).
        std::thread::sleep(Duration::from_secs(11));
    }
    let cpu = if variant == Variant::Loaded {
        None
    } else {
        measure_cpu(pid, a.steady)
    };
    eprintln!(
        "   procward after steady state: VmHWM {:?} KiB",
        vm_hwm_kib(pid)
    );
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let mut row = Row {
        monitor: match variant {
            Variant::Pidfile => "procward".into(),
            Variant::Regex => "procward (cmdline regex)".into(),
            Variant::Loaded => format!("procward, {cores} busy loops"),
            Variant::Checks => {
                "procward, 2 resource checks per target (memory and cpu of the tree, 10 s)".into()
            }
        },
        cpu_pct: cpu,
        note: format!(
            "start-up {}, reload {}",
            startup_s.map_or("–".into(), |s| format!("{s:.2} s")),
            reload_s.map_or("failed".into(), |s| format!("{s:.2} s"))
        ),
        ..Default::default()
    };
    // One busy loop per core while the samples run.
    let mut busy: Vec<Child> = Vec::new();
    if variant == Variant::Loaded {
        for _ in 0..cores {
            busy.push(
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()
                    .expect("busy loop"),
            );
        }
    }
    if latency {
        let mut rng = Rng(0x9e3779b97f4a7c15 ^ n as u64);
        let mut det = Vec::new();
        let mut res = Vec::new();
        for _ in 0..a.samples {
            let i = rng.next(n);
            let name = format!("t{i}");
            let started = dir.join(format!("started.{name}"));
            let _ = std::fs::remove_file(&started);
            journal.update();
            let before = journal.count("PW2015", &name);
            // A random pause, so kills fall anywhere in the 1 s cycle.
            std::thread::sleep(Duration::from_millis(rng.next(1000) as u64));
            let t0 = targets.kill_and_replace(i);
            if let Some(t1) = wait_file(&started, Duration::from_secs(5)) {
                res.push((t1.saturating_sub(t0)) as f64 / 1e6);
                if std::env::var_os("BENCH_SAMPLES").is_some() {
                    eprintln!(
                        "   sample {name}: killed at {} µs, restart {:.1} ms",
                        t0 / 1000,
                        (t1.saturating_sub(t0)) as f64 / 1e6
                    );
                }
            }
            targets.replace(i);
            // Detection: the PW2003 event's time.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                journal.update();
                if journal.count("PW2015", &name) > before || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(t) = journal.last("PW2003", &name) {
                det.push((t as f64 - (t0 / 1_000_000) as f64).max(0.0));
            }
        }
        if !det.is_empty() {
            row.detect = Some((
                percentile(&mut det.clone(), 50.0),
                percentile(&mut det, 99.0),
            ));
        }
        if !res.is_empty() {
            row.restart = Some((
                percentile(&mut res.clone(), 50.0),
                percentile(&mut res, 99.0),
            ));
        }
    }
    for b in busy {
        stop(b);
    }
    eprintln!(
        "   procward after the latency samples: VmHWM {:?} KiB",
        vm_hwm_kib(pid)
    );
    row.rss_mib = vm_hwm_kib(pid).map(|k| k as f64 / 1024.0);
    if let Some(split) = rss_split(pid) {
        row.note = format!("{}; {split}", row.note);
    }
    stop(child);
    row
}

/// Discovery: a process matching a waiting target is started; the time
/// from the spawn to PW2001 (or PW2017) in procward's journal, in ms, with
/// the process-events connector and with the scan alone (events off).
fn bench_discovery(a: &Args, dir: &Path, events: bool) -> Option<(f64, f64)> {
    std::fs::create_dir_all(dir).unwrap();
    let state = dir.join("state-discovery");
    let _ = std::fs::remove_dir_all(&state);
    let tok = std::process::id();
    let cfg = format!(
        "[daemon]\ninterval = \"1s\"\nstate-dir = \"{}\"\ncontrol-socket = \"{}/pw-d.sock\"\n\n[[target]]\nname = \"late\"\nmatch.cmdline = '^sleep 1000\\.{tok}$'\n",
        state.display(),
        dir.display()
    );
    let cfg_path = dir.join("procward-discovery.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    std::fs::set_permissions(&cfg_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cmd = Command::new(&a.procward);
    cmd.args(["run", "--quiet", "-c"])
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if !events {
        cmd.env("PROCWARD_PROC_EVENTS", "off");
    }
    let child = cmd.spawn().expect("start procward");
    let mut journal = Journal::new(&state);
    let deadline = Instant::now() + Duration::from_secs(10);
    while journal.count("PW2002", "late") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        journal.update();
    }
    let mut rng = Rng(0x2545f4914f6cdd1d);
    let mut lat = Vec::new();
    for _ in 0..a.samples {
        // Anywhere in the scan's 1 s cycle.
        std::thread::sleep(Duration::from_millis(rng.next(1000) as u64));
        journal.update();
        let found = |j: &Journal| j.count("PW2001", "late") + j.count("PW2017", "late");
        let gone = journal.count("PW2003", "late");
        let before = found(&journal);
        let t0 = now_ns();
        let mut p = Command::new("sleep")
            .arg(format!("1000.{tok}"))
            .spawn()
            .expect("sleep");
        let deadline = Instant::now() + Duration::from_secs(5);
        while found(&journal) == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            journal.update();
        }
        let t = journal
            .last("PW2001", "late")
            .into_iter()
            .chain(journal.last("PW2017", "late"))
            .max();
        if let Some(t) = t {
            lat.push((t as f64 - (t0 / 1_000_000) as f64).max(0.0));
        }
        let _ = p.kill();
        let _ = p.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while journal.count("PW2003", "late") == gone && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            journal.update();
        }
    }
    stop(child);
    if lat.is_empty() {
        return None;
    }
    Some((
        percentile(&mut lat.clone(), 50.0),
        percentile(&mut lat, 99.0),
    ))
}

fn discovery_table(a: &Args, dir: &Path) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## Discovery\n");
    let _ = writeln!(
        md,
        "A process matching a waiting target (`match.cmdline`, `interval = \"1s\"`) is started at a random point of \
         the scan cycle; the time from the spawn to PW2001/PW2017 in the journal (millisecond stamps), p50 / p99 of {} starts.\n",
        a.samples
    );
    let _ = writeln!(md, "| discovery | spawn → found p50 / p99 ms |");
    let _ = writeln!(md, "|---|---:|");
    for (label, events) in [
        ("process events (root)", true),
        ("scan only (`PROCWARD_PROC_EVENTS=off`)", false),
    ] {
        let r = bench_discovery(a, dir, events);
        let _ = writeln!(md, "| {label} | {} |", fmt_pair(r));
    }
    let _ = writeln!(md);
    md
}

fn bench_monit(
    a: &Args,
    n: usize,
    dir: &Path,
    targets: &mut Targets,
    matching: bool,
    latency: bool,
) -> Row {
    let label = if matching {
        "monit (matching)"
    } else {
        "monit (pidfile)"
    };
    let mut row = Row {
        monitor: label.into(),
        ..Default::default()
    };
    let Some(monit) = which("monit") else {
        row.note = "skipped: monit is not installed (scripts/bench.sh --install-monit)".into();
        return row;
    };
    let mdir = dir.join(if matching { "monit-m" } else { "monit-p" });
    let _ = std::fs::remove_dir_all(&mdir);
    std::fs::create_dir_all(&mdir).unwrap();
    let script = mdir.join("restart.sh");
    write_exec(
        &script,
        &format!("#!/bin/sh\ndate +%s%N > {}/started.$1\n", mdir.display()),
    );
    let mut cfg = format!(
        "set daemon 1\nset logfile {m}/monit.log\nset pidfile {m}/monit.pid\nset idfile {m}/monit.id\nset statefile {m}/monit.state\n",
        m = mdir.display()
    );
    for i in 0..n {
        let check = if matching {
            format!("check process t{i} matching \"^sleep 100000\\.{i}$\"")
        } else {
            format!("check process t{i} with pidfile {}/t{i}.pid", dir.display())
        };
        let _ = writeln!(
            cfg,
            "{check}\n  start program = \"{} t{i}\"",
            script.display()
        );
    }
    let rc = mdir.join("monitrc");
    std::fs::write(&rc, cfg).unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let child = Command::new(monit)
        .args(["-I", "-c"])
        .arg(&rc)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start monit");
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(4));
    row.cpu_pct = measure_cpu(pid, a.steady);
    if latency {
        let mut rng = Rng(0x51ed270b27d1c0a3 ^ n as u64);
        let mut res = Vec::new();
        for _ in 0..a.samples {
            let i = rng.next(n);
            let started = mdir.join(format!("started.t{i}"));
            let _ = std::fs::remove_file(&started);
            // A random pause, so kills fall anywhere in monit's 1 s cycle.
            std::thread::sleep(Duration::from_millis(rng.next(1000) as u64));
            let t0 = targets.kill_and_replace(i);
            if let Some(t1) = wait_file(&started, Duration::from_secs(5)) {
                res.push((t1.saturating_sub(t0)) as f64 / 1e6);
            }
            targets.replace(i);
            std::thread::sleep(Duration::from_millis(1200)); // monit sees the new pid
        }
        if !res.is_empty() {
            // monit's first reaction is running the start program.
            let p = (
                percentile(&mut res.clone(), 50.0),
                percentile(&mut res, 99.0),
            );
            row.detect = Some(p);
            row.restart = Some(p);
        }
    }
    row.rss_mib = vm_hwm_kib(pid).map(|k| k as f64 / 1024.0);
    stop(child);
    row
}

fn bench_ps_loop(a: &Args, n: usize, dir: &Path) -> Row {
    let script = dir.join("ps-loop.sh");
    write_exec(
        &script,
        &format!(
            "#!/bin/sh\n# A naive monitor: one ps per cycle, then each pidfile looked up in it.\nwhile :; do\n  ps -e -o pid= > {d}/ps.out\n  for f in {d}/t*.pid; do\n    read p < \"$f\"\n    grep -qx \" *$p\" {d}/ps.out || echo \"$f down\" >> {d}/ps-loop.log\n  done\n  sleep 1\ndone\n",
            d = dir.display()
        ),
    );
    let child = Command::new("/bin/sh")
        .arg(&script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(2));
    let mut row = Row {
        monitor: "ps + shell loop".into(),
        ..Default::default()
    };
    row.cpu_pct = measure_cpu(pid, a.steady);
    row.rss_mib = vm_hwm_kib(pid).map(|k| k as f64 / 1024.0);
    let _ = n;
    stop(child);
    row
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<u64>().ok())
        .map(|k| format!("{:.0} GiB", k as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let monit = which("monit")
        .and_then(|m| Command::new(m).arg("-V").output().ok())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_else(|| "monit not installed".into());
    format!(
        "{cores} cores ({cpu}), {mem} RAM, Linux {kernel}; {monit}; DAMON: {}",
        damon_describe()
    )
}

const DAMON: &str = "/sys/kernel/mm/damon/admin/kdamonds";

/// The kernel's DAMON monitors (kdamond threads) and what they do. With
/// `pageout` in physical-address mode they walk the reverse map of pages
/// mapped by every one of the N `sleep` processes (libc, the binary) and
/// hold the page locks meanwhile: an exit or an exec that needs one
/// waits (measured with `perf sched timehist`: a SIGKILLed target's exit
/// and the restart script's exec woken by kdamond after 30–170 ms).
fn damon_describe() -> String {
    let Ok(dir) = std::fs::read_dir(DAMON) else {
        return "not present".into();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let p = e.path();
        let Ok(state) = std::fs::read_to_string(p.join("state")) else {
            continue;
        };
        let ops = std::fs::read_to_string(p.join("contexts/0/operations")).unwrap_or_default();
        let action =
            std::fs::read_to_string(p.join("contexts/0/schemes/0/action")).unwrap_or_default();
        out.push(format!(
            "kdamond {} {} ({}{})",
            e.file_name().to_string_lossy(),
            state.trim(),
            ops.trim(),
            if action.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", action.trim())
            }
        ));
    }
    if out.is_empty() {
        "none running".into()
    } else {
        out.join(", ")
    }
}

/// `--damon-off`: the kdamonds that were on are switched off for the run
/// and on again at its end (also when the run panics; not after SIGKILL).
struct DamonPaused(Vec<PathBuf>);

impl DamonPaused {
    fn pause() -> DamonPaused {
        let mut paused = Vec::new();
        if let Ok(dir) = std::fs::read_dir(DAMON) {
            for e in dir.flatten() {
                let state = e.path().join("state");
                if std::fs::read_to_string(&state).is_ok_and(|s| s.trim() == "on") {
                    match std::fs::write(&state, "off") {
                        Ok(()) => paused.push(state),
                        Err(e) => eprintln!("bench: cannot switch DAMON off: {e}"),
                    }
                }
            }
        }
        DamonPaused(paused)
    }
}

impl Drop for DamonPaused {
    fn drop(&mut self) {
        for state in &self.0 {
            if let Err(e) = std::fs::write(state, "on") {
                eprintln!("bench: cannot switch {} on again: {e}", state.display());
            }
        }
    }
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "–".into())
}

fn fmt_pair(v: Option<(f64, f64)>) -> String {
    v.map(|(a, b)| format!("{a:.1} / {b:.1}"))
        .unwrap_or_else(|| "–".into())
}

fn main() {
    let a = parse_args();
    let base = std::env::temp_dir().join(format!("procward-bench-{}", std::process::id()));
    let started = Instant::now();
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(md, "Machine: {}.\n", machine());
    let _ = writeln!(
        md,
        "{} {}\n",
        binary_sizes(&a.procward, a.deb.as_deref()),
        symbol_order(&a.procward)
    );
    let _damon = a.damon_off.then(|| {
        let p = DamonPaused::pause();
        let _ = writeln!(
            md,
            "DAMON was switched off for this run (`--damon-off`: {} kdamond(s), on again at the end). \
             With a kdamond doing `pageout` in physical-address mode (this machine's default), the kernel \
             walks the reverse map of the pages the N `sleep` processes share (libc, the binary) and holds \
             their locks meanwhile: at N = 10,000 a SIGKILLed target's exit and the restart script's exec \
             wait for it, whatever the monitor (`perf sched timehist`: both woken by kdamond after 30–170 ms). \
             Measured with it on during the development (scripts/bench.sh --only procward, same build): \
             restart p99 130–212 ms and detect p99 30–49 ms at N = 10,000, p50 unchanged.\n",
            p.0.len()
        );
        p
    });
    let _ = writeln!(
        md,
        "Command: `scripts/bench.sh` (= `cargo run --release --example bench -- --n {} --steady {} --samples {}{}`), run on {}.\n",
        a.ns.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
        a.steady,
        a.samples,
        if a.damon_off { " --damon-off" } else { "" },
        humantime::format_rfc3339_seconds(SystemTime::now())
    );
    let _ = writeln!(
        md,
        "Each monitor watches N idle `sleep` processes at a 1 s interval (procward: `interval = \"1s\"`, targets by \
         pidfile; monit: `set daemon 1`). CPU is utime+stime of the monitor and its reaped children over a {}-second \
         steady state, in % of one core (threads' on-CPU nanoseconds from schedstat, plus reaped children); RSS is the monitor's peak (VmHWM). Latency, in ms (p50 / p99 of {} SIGKILLs of \
         random targets): *detect* is the kill to the monitor's first reaction (procward: the PW2003 event in its journal, \
         millisecond stamps; monit: its start program running), *restart* is the kill to the restart script's first \
         line. Ratios are against procward in the same run. *procward (cmdline regex)* finds each target by \
         `match.cmdline = '^(/bin/)?sleep +100000\\\\.I$'` (a regex, not a plain literal) instead of a pidfile; the \
         *busy loops* row repeats the pidfile latency samples with one `while :; do :; done` per core running. The \
         *resource checks* row (N = 1,000) gives each target two `[[target.check]]`, memory and CPU of its tree every \
         10 s; its CPU is taken after the first round of checks, which opens the /proc files the later rounds read \
         again. The \
         note gives procward's start-up (its spawn to the last target's PW2001) and the time of a `procward reload` \
         of the same configuration.\n",
        a.steady, a.samples
    );
    if a.discovery_only {
        let md = discovery_table(&a, &base);
        let _ = std::fs::remove_dir_all(&base);
        print!("{md}");
        return;
    }
    let run_delivery = a
        .only
        .as_ref()
        .is_none_or(|o| o.iter().any(|x| x == "delivery"));
    for &n in a.ns.iter().filter(|_| {
        a.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|x| x != "delivery"))
    }) {
        eprintln!("== N = {n}");
        let dir = base.join(format!("n{n}"));
        let mut targets = Targets::start(&dir, n);
        let largest = n == *a.ns.iter().max().unwrap_or(&n);
        let want = |m: &str| a.only.as_ref().is_none_or(|o| o.iter().any(|x| x == m));
        let mut rows = Vec::new();
        if want("procward") {
            rows.push(bench_procward(
                &a,
                n,
                &dir,
                &mut targets,
                true,
                Variant::Pidfile,
            ));
            eprintln!("   procward done");
        }
        if want("procward-regex") {
            rows.push(bench_procward(
                &a,
                n,
                &dir,
                &mut targets,
                true,
                Variant::Regex,
            ));
            eprintln!("   procward (regex) done");
        }
        if largest && want("procward-loaded") {
            rows.push(bench_procward(
                &a,
                n,
                &dir,
                &mut targets,
                true,
                Variant::Loaded,
            ));
            eprintln!("   procward (loaded) done");
        }
        if n == 1000 && want("procward-checks") {
            rows.push(bench_procward(
                &a,
                n,
                &dir,
                &mut targets,
                false,
                Variant::Checks,
            ));
            eprintln!("   procward (checks) done");
        }
        if want("monit-pidfile") {
            rows.push(bench_monit(&a, n, &dir, &mut targets, false, n <= 1000));
            eprintln!("   monit (pidfile) done");
        }
        if want("monit-matching") {
            if n <= 1000 {
                rows.push(bench_monit(&a, n, &dir, &mut targets, true, false));
            } else {
                rows.push(Row {
                    monitor: "monit (matching)".into(),
                    note: "skipped: every `matching` check scans the whole process table, N² per cycle"
                        .into(),
                    ..Default::default()
                });
            }
            eprintln!("   monit (matching) done");
        }
        if want("ps-loop") {
            rows.push(bench_ps_loop(&a, n, &dir));
            eprintln!("   ps loop done");
        }
        let readers = (largest && a.only.is_none()).then(|| proc_readers(&targets));
        drop(targets);
        let base_cpu = rows.first().and_then(|r| r.cpu_pct);
        let base_rss = rows.first().and_then(|r| r.rss_mib);
        let _ = writeln!(md, "## N = {n}\n");
        let _ = writeln!(
            md,
            "| monitor | CPU % of one core | × procward | peak RSS MiB | × procward | detect p50 / p99 ms | restart p50 / p99 ms | note |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---|");
        for r in &rows {
            let ratio = |x: Option<f64>, b: Option<f64>| match (x, b) {
                (Some(x), Some(b)) if b > 0.0 => format!("{:.1}", x / b),
                _ => "–".into(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.monitor,
                fmt_opt(r.cpu_pct, 3),
                ratio(r.cpu_pct, base_cpu),
                fmt_opt(r.rss_mib, 1),
                ratio(r.rss_mib, base_rss),
                fmt_pair(r.detect),
                fmt_pair(r.restart),
                r.note
            );
        }
        let _ = writeln!(md);
        if let Some(r) = readers {
            md.push_str(&r);
        }
    }
    if run_delivery {
        eprintln!("== delivery");
        md.push_str(&delivery::table(&a.procward, &base, a.delivery_events));
    }
    if a.only.is_none() {
        eprintln!("== discovery");
        md.push_str(&discovery_table(&a, &base));
    }
    let _ = writeln!(
        md,
        "Total run time: {:.0} s.",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&base);
    std::fs::write(&a.out, &md).unwrap();
    print!("{md}");
}
