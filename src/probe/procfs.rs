//! /proc reading: one process's stat by itself, and the discovery scan
//! that serves every untracked target in one pass. Blocking: call these
//! from a blocking thread, never from an async worker.
//!
//! Hand-written rather than the `procfs` crate: procward needs nine fields
//! of `stat` (and field 52, the exit code) read into a reused buffer, and
//! the bench measures both readers on the same processes (BENCHMARKS.md,
//! "/proc reader"): this one is faster per stat and per walk of /proc and
//! allocates less, so the crate would cost something measurable on the
//! path every scan and every exit takes. `procfs` stays a dev-dependency
//! of the bench only.

use crate::config::{Matcher, TargetSpec};
use crate::model::ProcRef;
use crate::sys::proc::{clk_tck, read_pinned, read_stat, Stat, PF_KTHREAD};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The most a pidfile may hold that procward reads: a pid and a newline,
/// with room for blanks.
pub const PIDFILE_MAX: usize = 64;

/// A pidfile's pid and modification time. Opened non-blocking (a FIFO
/// never blocks the scan), regular files only (never /dev/zero), at most
/// [`PIDFILE_MAX`] bytes read; a symlink is followed only when the link
/// and the file it names are both owned by root.
pub fn read_pidfile(path: &Path) -> Option<(u32, SystemTime)> {
    read_pidfile_owned(path).map(|(pid, mtime, _)| (pid, mtime))
}

/// `read_pidfile`, with the file's owner, group and mode.
fn read_pidfile_owned(path: &Path) -> Option<(u32, SystemTime, (u32, u32, u32))> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = match rustix::fs::open(path, flags | OFlags::NOFOLLOW, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP) => {
            let link = std::fs::symlink_metadata(path).ok()?;
            if !link.file_type().is_symlink() || link.uid() != 0 {
                return None;
            }
            let fd = rustix::fs::open(path, flags, Mode::empty()).ok()?;
            if rustix::fs::fstat(&fd).ok()?.st_uid != 0 {
                return None;
            }
            fd
        }
        Err(_) => return None,
    };
    let st = rustix::fs::fstat(&fd).ok()?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return None;
    }
    let mut buf = [0u8; PIDFILE_MAX];
    let mut n = 0;
    while n < buf.len() {
        match rustix::io::read(&fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
        }
    }
    let pid = parse_pidfile(&buf[..n])?;
    let mtime = SystemTime::UNIX_EPOCH
        + Duration::new(
            st.st_mtime.max(0) as u64,
            st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
        );
    Some((pid, mtime, (st.st_uid, st.st_gid, st.st_mode)))
}

/// Who other than root (and procward's own user) can write a pidfile,
/// and so choose the process procward adopts: the owners of the file and
/// of every directory above it (`uids`), and `anyone` when the file, or a
/// directory without the sticky bit, is writable by others or by a group
/// other than root's (what makes it so, for the event).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Writers {
    pub uids: Vec<(u32, PathBuf)>,
    pub anyone: Option<PathBuf>,
}

impl Writers {
    pub(crate) fn trusted(&self) -> bool {
        self.uids.is_empty() && self.anyone.is_none()
    }

    /// One of them, or one of the users the target is configured to run
    /// as, is `uid`: a pid it wrote may be adopted. When anyone can write
    /// the file, only the configured users are.
    fn allow(&self, uid: u32, spec: &TargetSpec) -> bool {
        let configured = spec.matcher.uid == Some(uid)
            || spec.restart.user.as_ref().is_some_and(|u| u.uid == uid);
        self.trusted()
            || configured
            || (self.anyone.is_none() && self.uids.iter().any(|(u, _)| *u == uid))
    }

    /// Who, in words: `uid 1000 (owner of /run/app)`, `anyone (/run/app
    /// is writable by others)`.
    pub(crate) fn describe(&self) -> String {
        let mut v: Vec<String> = self
            .uids
            .iter()
            .map(|(u, p)| format!("uid {u} (owner of {})", p.display()))
            .collect();
        if let Some(p) = &self.anyone {
            v.push(format!(
                "any user ({} is writable by a group or by others)",
                p.display()
            ));
        }
        v.join(", ")
    }

    fn add(&mut self, path: &Path, (uid, gid, mode): (u32, u32, u32), dir: bool) {
        let me = rustix::process::geteuid().as_raw();
        if uid != 0 && uid != me && !self.uids.iter().any(|(u, _)| *u == uid) {
            self.uids.push((uid, path.to_path_buf()));
        }
        let sticky = dir && mode & 0o1000 != 0;
        let writable = mode & 0o002 != 0 || (mode & 0o020 != 0 && gid != 0);
        if writable && !sticky && self.anyone.is_none() {
            self.anyone = Some(path.to_path_buf());
        }
    }
}

/// The writers of the directories above a pidfile (`dir` and each one up
/// to `/`, symlinks resolved).
fn directory_writers(dir: &Path) -> Writers {
    use std::os::unix::fs::MetadataExt;
    let mut w = Writers::default();
    let Ok(real) = std::fs::canonicalize(dir) else {
        return w;
    };
    for d in real.ancestors() {
        if let Ok(m) = std::fs::symlink_metadata(d) {
            w.add(d, (m.uid(), m.gid(), m.mode()), true);
        }
    }
    w
}

/// A pidfile procward does not trust names a process of another user:
/// not adopted, said once (PW2025).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub target: String,
    pub pid: u32,
    pub uid: u32,
    pub pidfile: PathBuf,
    pub writers: String,
}

/// The pid in a pidfile's first bytes: decimal digits, blanks around them,
/// nothing else on the first line; 0 is no pid.
pub fn parse_pidfile(bytes: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(bytes).ok()?;
    let first = text.lines().next()?.trim();
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    first.parse::<u32>().ok().filter(|&p| p > 0)
}

/// Processes procward never adopts: init, kernel threads, itself, its
/// spawner and their children (restart scripts, probes).
fn adoptable(st: &Stat, me: u32) -> bool {
    let helper = crate::sys::process::helper_pid();
    if helper != 0 && (st.pid == helper || st.ppid == helper) {
        return false;
    }
    st.pid != 1
        && st.pid != me
        && st.ppid != me
        && st.pid != 2
        && st.ppid != 2
        && st.flags & PF_KTHREAD == 0
}

/// Nanoseconds of CLOCK_REALTIME minus CLOCK_BOOTTIME now: what turns a
/// wall-clock file time into the boot-relative clock of process start times.
fn realtime_minus_boottime_ns() -> i128 {
    use rustix::time::{clock_gettime, ClockId};
    let ns = |t: rustix::time::Timespec| t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128;
    let real = ns(clock_gettime(ClockId::Realtime));
    let boot = ns(clock_gettime(ClockId::Boottime));
    real - boot
}

/// How much later than its pidfile's mtime a process may seem to start
/// and still be the process that file names: the start time is in clock
/// ticks (10 ms), a file time is stamped from the coarse clock (one jiffy,
/// at most 10 ms). A pid taken over later than this is a reused pid.
const PIDFILE_SLACK_NS: i128 = 20_000_000;

/// Did the process (start time in ticks after boot) start before the
/// pidfile was last written (within the clocks' resolution)?
fn started_before(starttime_ticks: u64, mtime: SystemTime) -> bool {
    let Ok(m) = mtime.duration_since(SystemTime::UNIX_EPOCH) else {
        return false;
    };
    let mtime_boot = m.as_nanos() as i128 - realtime_minus_boottime_ns();
    let start = starttime_ticks as i128 * 1_000_000_000 / clk_tck() as i128;
    start <= mtime_boot + PIDFILE_SLACK_NS
}

/// The process named by a pidfile, if the file is fresh (a process that
/// started after the file was written is a reused pid, not the target)
/// and it is a process procward may adopt. `me` is procward's pid. Also
/// who can write the file (`dirs` keeps its directories' writers for the
/// rest of a scan).
fn pidfile_pid(
    path: &Path,
    buf: &mut Vec<u8>,
    me: u32,
    dirs: &mut HashMap<PathBuf, Writers>,
) -> Option<(Stat, Writers)> {
    let (pid, mtime, owner) = read_pidfile_owned(path)?;
    let st = read_stat(pid, buf).ok()??;
    if st.is_dead() || !adoptable(&st, me) || !started_before(st.starttime, mtime) {
        return None;
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut w = dirs
        .entry(dir.to_path_buf())
        .or_insert_with(|| directory_writers(dir))
        .clone();
    w.add(path, owner, false);
    Some((st, w))
}

/// What we know of one process during a scan; the costly parts (exe,
/// cmdline, uid) are read only when a target asks.
struct Candidate {
    stat: Stat,
    exe: Option<Option<String>>,
    cmdline: Option<Option<String>>,
    uid: Option<Option<u32>>,
}

impl Candidate {
    fn new(stat: Stat) -> Self {
        Candidate {
            stat,
            exe: None,
            cmdline: None,
            uid: None,
        }
    }

    fn exe(&mut self) -> Option<&str> {
        let pid = self.stat.pid;
        self.exe
            .get_or_insert_with(|| {
                std::fs::read_link(format!("/proc/{pid}/exe"))
                    .ok()
                    .map(|p| {
                        let s = p.to_string_lossy().into_owned();
                        s.strip_suffix(" (deleted)")
                            .map(str::to_string)
                            .unwrap_or(s)
                    })
            })
            .as_deref()
    }

    fn cmdline(&mut self) -> Option<&str> {
        let pid = self.stat.pid;
        self.cmdline
            .get_or_insert_with(|| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .ok()
                    .map(|mut b| {
                        while b.last() == Some(&0) {
                            b.pop();
                        }
                        for x in b.iter_mut() {
                            if *x == 0 {
                                *x = b' ';
                            }
                        }
                        String::from_utf8_lossy(&b).into_owned()
                    })
            })
            .as_deref()
    }

    fn uid(&mut self) -> Option<u32> {
        let pid = self.stat.pid;
        *self.uid.get_or_insert_with(|| {
            std::fs::metadata(format!("/proc/{pid}"))
                .ok()
                .map(|m| m.uid())
        })
    }

    fn matches(&mut self, m: &Matcher) -> bool {
        if let Some(comm) = &m.comm {
            if &self.stat.comm != comm {
                return false;
            }
        }
        if let Some(uid) = m.uid {
            if self.uid() != Some(uid) {
                return false;
            }
        }
        if let Some(exe) = &m.exe {
            if self.exe() != Some(exe.to_string_lossy().as_ref()) {
                return false;
            }
        }
        if let Some(re) = &m.cmdline {
            match self.cmdline() {
                Some(c) if re.is_match(c) => {}
                _ => return false,
            }
        }
        true
    }
}

/// Does any of `pids` (new processes) match one of `targets`? Pidfiles
/// are not read here: a target with one matches on its other matchers.
pub fn any_matches(
    pids: &[u32],
    targets: &[Arc<TargetSpec>],
    me: u32,
    cache: &LookupCache,
) -> bool {
    let mut buf = Vec::with_capacity(512);
    cache.with(
        targets,
        |t| (0..t.len()).collect(),
        |targets, _, index| {
            pids.iter().any(|&pid| {
                let Ok(Some(st)) = read_stat(pid, &mut buf) else {
                    return false;
                };
                if !adoptable(&st, me) || st.is_dead() {
                    return false;
                }
                let mut c = Candidate::new(st);
                !index.matches_of(targets, &mut c).is_empty()
            })
        },
    )
}

/// The last `Lookup` built, kept with what it indexes: the same waiting
/// targets are looked up again at every fork and exec on the machine and
/// at every scan, and with 10,000 cmdline targets a build costs ~35 ms
/// (the literal automaton; it was most of a 10,000-target start-up's
/// spare CPU). The targets are kept as `Arc`s, not addresses, so that a
/// target freed by a reload can never pass for a new one at its address.
/// One cache per kind of use (its `which` differs).
#[derive(Default)]
pub struct LookupCache {
    slot: Mutex<Option<Cached>>,
    /// `clear` came while a check held the slot: that check empties it.
    stale: std::sync::atomic::AtomicBool,
}

struct Cached {
    targets: Vec<Arc<TargetSpec>>,
    which: Vec<usize>,
    lookup: Lookup,
}

impl LookupCache {
    /// Run `f` with the lookup of `which(targets)`, built only when the
    /// targets or the choice differ from the last call's.
    fn with<R>(
        &self,
        targets: &[Arc<TargetSpec>],
        which: impl FnOnce(&[&TargetSpec]) -> Vec<usize>,
        f: impl FnOnce(&[&TargetSpec], &[usize], &mut Lookup) -> R,
    ) -> R {
        let refs: Vec<&TargetSpec> = targets.iter().map(|t| t.as_ref()).collect();
        let which = which(&refs);
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let same = slot.as_ref().is_some_and(|c| {
            c.which == which
                && c.targets.len() == targets.len()
                && c.targets
                    .iter()
                    .zip(targets)
                    .all(|(a, b)| Arc::ptr_eq(a, b))
        });
        if !same {
            *slot = None; // the old one's memory first
            *slot = Some(Cached {
                lookup: Lookup::new(&refs, &which),
                targets: targets.to_vec(),
                which,
            });
        }
        let c = slot.as_mut().expect("set above");
        let r = f(&refs, &c.which, &mut c.lookup);
        if self.stale.swap(false, Ordering::AcqRel) {
            *slot = None;
        }
        r
    }

    /// Forget the kept lookup (a reload: the old targets go with it).
    /// Never waits: a check that holds it lets it go when it is done.
    pub fn clear(&self) {
        match self.slot.try_lock() {
            Ok(mut slot) => *slot = None,
            Err(std::sync::TryLockError::Poisoned(e)) => *e.into_inner() = None,
            Err(std::sync::TryLockError::WouldBlock) => self.stale.store(true, Ordering::Release),
        }
    }
}

/// Which targets a process may belong to, without trying every target on
/// every process (10,000 waiting targets × 10,000 processes was 10^8
/// matches a scan): by command name, by the literals of the cmdline
/// patterns (config::PatternIndex), and the rest one by one.
struct Lookup {
    by_comm: HashMap<String, Vec<usize>>,
    /// Target numbers of the patterns in `index`, in its order.
    by_pattern: Vec<usize>,
    index: Option<crate::config::PatternIndex>,
    always: Vec<usize>,
    candidates: Vec<u32>,
    hits: Vec<usize>,
}

impl Lookup {
    /// Index `which` of `targets`.
    fn new(targets: &[&TargetSpec], which: &[usize]) -> Lookup {
        let mut by_comm: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_pattern = Vec::new();
        let mut always = Vec::new();
        for &i in which {
            let m = &targets[i].matcher;
            if let Some(comm) = &m.comm {
                by_comm.entry(comm.clone()).or_default().push(i);
            } else if m.cmdline.is_some() {
                by_pattern.push(i);
            } else {
                always.push(i);
            }
        }
        let index = (!by_pattern.is_empty()).then(|| {
            crate::config::PatternIndex::new(
                by_pattern
                    .iter()
                    .filter_map(|&i| targets[i].matcher.cmdline.as_ref()),
            )
        });
        Lookup {
            by_comm,
            by_pattern,
            index,
            always,
            candidates: Vec::new(),
            hits: Vec::new(),
        }
    }

    /// The targets `c` matches.
    fn matches_of(&mut self, targets: &[&TargetSpec], c: &mut Candidate) -> &[usize] {
        self.hits.clear();
        if let Some(v) = self.by_comm.get(c.stat.comm.as_str()) {
            for &i in v {
                if c.matches(&targets[i].matcher) {
                    self.hits.push(i);
                }
            }
        }
        for &i in &self.always {
            if c.matches(&targets[i].matcher) {
                self.hits.push(i);
            }
        }
        if let Some(index) = &mut self.index {
            if let Some(line) = c.cmdline() {
                index.candidates(line, &mut self.candidates);
                for &p in &self.candidates {
                    let i = self.by_pattern[p as usize];
                    if c.matches(&targets[i].matcher) {
                        self.hits.push(i);
                    }
                }
            }
        }
        &self.hits
    }
}

/// Order matching processes: top-most (parent does not match) first,
/// oldest first; the first is the main process.
fn order(mut matched: Vec<Stat>) -> Vec<ProcRef> {
    let pids: std::collections::HashSet<u32> = matched.iter().map(|s| s.pid).collect();
    matched.sort_by_key(|s| (pids.contains(&s.ppid), s.starttime, s.pid));
    matched.iter().map(Stat::proc_ref).collect()
}

/// Find the live processes of every target in `targets`, in one pass over
/// /proc (skipped entirely when every target names a pidfile).
/// `exclude` is procward's own pid.
/// A process named by an untrusted pidfile that does not run as a user
/// who can write it is not found (see [`Writers`]).
pub fn scan(targets: &[&TargetSpec], exclude: u32) -> HashMap<String, Vec<ProcRef>> {
    let walk = walked(targets);
    let mut lookup = Lookup::new(targets, &walk);
    scan_with(targets, exclude, &walk, &mut lookup).0
}

/// What a scan found, and the pidfiles it did not trust.
pub type Scanned = (HashMap<String, Vec<ProcRef>>, Vec<Refusal>);

/// `scan`, with the lookup kept in `cache` from one scan to the next, and
/// the refused pidfiles.
pub fn scan_cached(targets: &[Arc<TargetSpec>], exclude: u32, cache: &LookupCache) -> Scanned {
    cache.with(targets, walked, |refs, walk, lookup| {
        scan_with(refs, exclude, walk, lookup)
    })
}

/// The targets found by walking /proc: those without a pidfile.
fn walked(targets: &[&TargetSpec]) -> Vec<usize> {
    (0..targets.len())
        .filter(|&i| targets[i].matcher.pidfile.is_none())
        .collect()
}

fn scan_with(
    targets: &[&TargetSpec],
    exclude: u32,
    walk: &[usize],
    lookup: &mut Lookup,
) -> Scanned {
    let mut buf = Vec::with_capacity(512);
    let mut out: HashMap<String, Vec<ProcRef>> = HashMap::new();
    let mut refused = Vec::new();
    let mut dirs = HashMap::new();
    let need_full = targets
        .iter()
        .any(|t| t.matcher.pidfile.is_none() || t.is_group());
    let mut all: Vec<Candidate> = Vec::new();
    if need_full {
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let name = entry.file_name();
                let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if pid == exclude {
                    continue;
                }
                if let Ok(Some(st)) = read_stat(pid, &mut buf) {
                    if !adoptable(&st, exclude) || st.is_dead() {
                        continue;
                    }
                    all.push(Candidate::new(st));
                }
            }
        }
    }
    // Targets without a pidfile: one pass over the processes.
    let mut walked: Vec<Vec<Stat>> = vec![Vec::new(); targets.len()];
    if !walk.is_empty() {
        for c in all.iter_mut() {
            for &i in lookup.matches_of(targets, c) {
                walked[i].push(c.stat.clone());
            }
        }
    }
    for (ti, t) in targets.iter().enumerate() {
        let m = &t.matcher;
        let matched: Vec<Stat> = if let Some(pf) = &m.pidfile {
            match pidfile_pid(pf, &mut buf, exclude, &mut dirs) {
                Some((st, writers)) => {
                    let mut c = Candidate::new(st);
                    // The owner is read only when the pidfile is not
                    // trusted (root's, in root's directories).
                    let uid = (!writers.trusted()).then(|| c.uid().unwrap_or(0));
                    if let Some(uid) = uid.filter(|&u| !writers.allow(u, t)) {
                        refused.push(Refusal {
                            target: t.name.clone(),
                            pid: c.stat.pid,
                            uid,
                            pidfile: pf.clone(),
                            writers: writers.describe(),
                        });
                        Vec::new()
                    } else if c.matches(m) {
                        // With a pidfile, the group is the pidfile's process
                        // and its matching descendants found in the scan.
                        let main = c.stat.clone();
                        let mut v = vec![main.clone()];
                        if t.is_group() {
                            for c in all.iter_mut() {
                                if c.stat.ppid == main.pid && c.matches(m) {
                                    v.push(c.stat.clone());
                                }
                            }
                        }
                        v
                    } else {
                        Vec::new()
                    }
                }
                _ => Vec::new(),
            }
        } else {
            std::mem::take(&mut walked[ti])
        };
        out.insert(t.name.clone(), order(matched));
    }
    (out, refused)
}

/// How a tracked process ended. A zombie is usually reaped by its parent
/// at once: it counts as a zombie only if it stays one for `grace`.
pub async fn classify_exit(p: ProcRef, grace: Duration) -> (crate::model::ExitKind, Option<i32>) {
    use crate::model::ExitKind;
    let deadline = tokio::time::Instant::now() + grace;
    // The zombie's wait status (field 52), when seen before the reaping.
    let mut status = None;
    // Its parent usually reaps it within a millisecond: look again soon,
    // then less and less often.
    let mut wait = Duration::from_micros(100);
    loop {
        let st = tokio::task::spawn_blocking(move || {
            let mut buf = Vec::with_capacity(512);
            read_pinned(p, &mut buf)
        })
        .await
        .ok()
        .flatten();
        match st {
            None => return (ExitKind::Disappeared, status),
            Some(s) if s.is_dead() => {
                if crate::probe::exit::use_zombie() {
                    status = status.or(s.exit_code);
                }
                if tokio::time::Instant::now() >= deadline {
                    return (ExitKind::Zombie { ppid: s.ppid }, status);
                }
            }
            // Still running: the caller was wrong to ask; treat as gone
            // only if it stays so (poll again).
            Some(_) => {
                if tokio::time::Instant::now() >= deadline {
                    return (ExitKind::Disappeared, status);
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::proc::{children_count, parse_stat};

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = b"4242 (my (evil) app) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 123456 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "my (evil) app");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.utime, 7);
        assert_eq!(s.stime, 3);
        assert_eq!(s.starttime, 123456);
    }

    #[test]
    fn reads_own_stat_and_children() {
        let me = std::process::id();
        let mut buf = Vec::new();
        let st = read_stat(me, &mut buf).unwrap().unwrap();
        assert_eq!(st.pid, me);
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(children_count(me).unwrap() >= 1);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(read_stat(child.id(), &mut buf).unwrap().is_none());
    }

    /// A cmdline target with `pattern`.
    fn by_cmdline(name: &str, pattern: &str) -> Arc<TargetSpec> {
        let mut t = crate::monitor::tests::spec(name);
        t.matcher.comm = None;
        t.matcher.cmdline = Some(crate::config::Pattern::new(pattern).unwrap());
        Arc::new(t)
    }

    #[test]
    fn a_kept_lookup_serves_the_same_targets_and_never_changed_ones() {
        // Not procward's pid: its children are never adopted, this test's are.
        let me = u32::MAX;
        struct Killed(std::process::Child);
        impl Drop for Killed {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let child = Killed(
            std::process::Command::new("sleep")
                .arg("4243.5")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let pid = child.0.id();
        let a = vec![
            by_cmdline("t0", r"^(/bin/)?sleep +4243\.5$"),
            by_cmdline("t1", r"^(/bin/)?sleep +4243\.6$"),
        ];
        let cache = LookupCache::default();
        let found = |targets: &[Arc<TargetSpec>]| -> Vec<(String, bool)> {
            let f = scan_cached(targets, me, &cache).0;
            let mut v: Vec<(String, bool)> = f
                .into_iter()
                .map(|(n, ps)| (n, ps.iter().any(|p| p.pid == pid)))
                .collect();
            v.sort();
            v
        };
        let want = |x: bool, y: bool| vec![("t0".to_string(), x), ("t1".to_string(), y)];
        assert_eq!(found(&a), want(true, false));
        // Kept: the cache holds the targets (a second reference each).
        assert_eq!(Arc::strong_count(&a[0]), 2);
        assert_eq!(found(&a), want(true, false));
        // Same names, new patterns (a reload): built again, not the old one.
        let b = vec![
            by_cmdline("t0", r"^(/bin/)?sleep +4243\.6$"),
            by_cmdline("t1", r"^(/bin/)?sleep +4243\.5$"),
        ];
        assert_eq!(found(&b), want(false, true));
        assert_eq!(Arc::strong_count(&a[0]), 1, "the old targets let go");
        // A subset of the same targets is another lookup too.
        assert_eq!(found(&b[1..]), vec![("t1".to_string(), true)]);
        // New processes: the same answers through their own cache.
        let spawned = LookupCache::default();
        assert!(any_matches(&[pid], &a, me, &spawned));
        assert!(!any_matches(&[pid], &a[1..], me, &spawned));
        assert!(any_matches(&[pid], &b[1..], me, &spawned));
        // clear lets the targets go.
        let held = Arc::strong_count(&b[1]);
        spawned.clear();
        assert_eq!(Arc::strong_count(&b[1]), held - 1);
        cache.clear();
        assert_eq!(Arc::strong_count(&b[1]), 1);
        drop(child);
    }
}
