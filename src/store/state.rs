//! Persistent state in `state-dir`: retry counters, pause flags and
//! RETRY-OVER/FAILED states, so a restart of procward (or a crash loop of
//! procward itself) never resets the retry window.

use crate::monitor::Persisted;
use crate::sys::fs::{
    ensure_subdir, named, open_append, read_bounded, regular, replace_with, NOFOLLOW,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const FILE: &str = "state.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    /// The snapshot's generation ([`stamp`]; named for the wall-clock
    /// stamp it once was): in-flight records of a higher generation
    /// override their target's entry at load.
    #[serde(default)]
    saved_ms: u64,
    targets: BTreeMap<String, Persisted>,
}

/// One target's record: its state written just before its restart script
/// runs, or (with many targets) at each change. Merged over state.json at
/// load when newer. Kept in the slots of `inflight/ring` (see `SLOT`), or
/// as `inflight/TARGET.json` (temporary file, fsync, rename).
#[derive(Debug, Serialize, Deserialize)]
struct InFlightFile {
    saved_ms: u64,
    target: String,
    state: Persisted,
}

const INFLIGHT: &str = "inflight";

/// Records are slots of the ring file `inflight/ring`: `RING_SLOTS` slots
/// of `SLOT` bytes, each `PWR1`, the stamp (u64), the body's length (u32),
/// FNV-1a 64 of stamp, length and body (u64), then the JSON body. The file
/// is made once (zeros, fsync); a record is then written in place into the
/// next slot: an overwrite of blocks already written needs no new inode
/// and no journal commit. The restart waits for the write only, not for
/// its `fdatasync`, which follows at once (`Records::sync`): written is
/// what a procward started after a crash of procward reads (the page
/// cache outlives the process), and the disk's cache flush took 40–85 ms
/// every few seconds here at N = 10,000 (the outliers of the restart
/// p99). A crash of the machine before the flush may lose the record, and
/// with it nothing a restart needs: its script died with the machine.
/// Once a state
/// file is written, every record is older than it: the next record goes
/// to the first slot again. When the ring is full before that, records go
/// to `inflight/TARGET.json` files as all did before (and so does one too
/// large for a slot). A write torn by a crash spoils one slot, the record
/// being written, which is all a crash at that point may lose: the script
/// it was written for had not started. (A checksum against torn writes,
/// not an attacker: the directory is root's; FNV is a few lines.)
const SLOT: usize = 1024;
const SLOT_HEAD: usize = 24;
const SLOT_MAGIC: &[u8; 4] = b"PWR1";
const RING_SLOTS: usize = 512;
const RING: &str = "ring";

fn slot_sum(stamp: u64, body: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stamp
        .to_le_bytes()
        .iter()
        .chain((body.len() as u32).to_le_bytes().iter())
        .chain(body)
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn slot_encode(stamp: u64, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(SLOT_HEAD + body.len());
    v.extend_from_slice(SLOT_MAGIC);
    v.extend_from_slice(&stamp.to_le_bytes());
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(&slot_sum(stamp, body).to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// The stamp and body of a valid slot.
fn slot_decode(slot: &[u8]) -> Option<(u64, &[u8])> {
    if slot.len() < SLOT_HEAD || &slot[..4] != SLOT_MAGIC {
        return None;
    }
    let stamp = u64::from_le_bytes(slot[4..12].try_into().ok()?);
    let len = u32::from_le_bytes(slot[12..16].try_into().ok()?) as usize;
    let sum = u64::from_le_bytes(slot[16..24].try_into().ok()?);
    let body = slot.get(SLOT_HEAD..SLOT_HEAD.checked_add(len)?)?;
    (len <= SLOT - SLOT_HEAD && slot_sum(stamp, body) == sum).then_some((stamp, body))
}

/// The valid records of the ring file's bytes, with their slot.
fn ring_records(bytes: &[u8]) -> Vec<(usize, InFlightFile)> {
    bytes
        .chunks(SLOT)
        .enumerate()
        .filter_map(|(i, slot)| {
            let (stamp, body) = slot_decode(slot)?;
            let rec = serde_json::from_slice::<InFlightFile>(body).ok()?;
            (rec.saved_ms == stamp).then_some((i, rec))
        })
        .collect()
}

fn read_ring(dir: &Path) -> Vec<(usize, InFlightFile)> {
    read_bounded(&dir.join(INFLIGHT).join(RING), (RING_SLOTS * SLOT) as u64)
        .map(|b| ring_records(&b))
        .unwrap_or_default()
}

/// Writes records: the notifier's records thread holds one.
#[derive(Default)]
pub struct Records {
    /// The ring file, open, and the next slot (None: not opened yet).
    ring: Option<(std::fs::File, usize)>,
    /// The ring could not be made (a full disk): records are `.json`
    /// files until the next state file is written, then it is tried again.
    no_ring: bool,
    dir: PathBuf,
    /// A slot was written and not yet synced.
    unsynced: bool,
    /// The newest stamp in the ring since it last started over.
    newest: u64,
}

impl Records {
    /// Write `target`'s record: readable by the next procward when this
    /// returns (a record in the ring is durable after `sync`).
    pub fn save(
        &mut self,
        dir: &Path,
        target: &str,
        state: &Persisted,
        saved_ms: u64,
    ) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let sub = dir.join(INFLIGHT);
        ensure_subdir(&sub)?;
        let body = serde_json::to_vec(&InFlightFile {
            saved_ms,
            target: target.to_string(),
            state: state.clone(),
        })?;
        if self.dir != dir {
            self.ring = None;
            self.no_ring = false;
            self.dir = dir.to_path_buf();
        }
        if self.ring.is_none() && !self.no_ring {
            match open_ring(dir, &sub) {
                Ok((f, next, newest)) => {
                    self.ring = Some((f, next));
                    self.newest = newest;
                }
                Err(_) => self.no_ring = true,
            }
        }
        match &mut self.ring {
            Some((f, next)) if *next < RING_SLOTS && body.len() <= SLOT - SLOT_HEAD => {
                f.write_all_at(&slot_encode(saved_ms, &body), (*next * SLOT) as u64)?;
                *next += 1;
                self.unsynced = true;
                self.newest = self.newest.max(saved_ms);
                Ok(())
            }
            _ => save_json(&sub, target, &body),
        }
    }

    /// Make the ring's records written so far durable (`fdatasync`).
    pub fn sync(&mut self) -> std::io::Result<()> {
        if !std::mem::take(&mut self.unsynced) {
            return Ok(());
        }
        match &self.ring {
            Some((f, _)) => f.sync_data(),
            None => Ok(()),
        }
    }

    /// Whether records wait for `sync`.
    pub fn unsynced(&self) -> bool {
        self.unsynced
    }

    /// Open (or make) the ring now, so that the first record does not
    /// wait for it (the records thread, at start-up).
    pub fn prepare(&mut self, dir: &Path) -> std::io::Result<()> {
        let sub = dir.join(INFLIGHT);
        ensure_subdir(&sub)?;
        self.dir = dir.to_path_buf();
        match open_ring(dir, &sub) {
            Ok((f, next, newest)) => {
                self.ring = Some((f, next));
                self.newest = newest;
            }
            Err(e) => {
                self.no_ring = true;
                return Err(e);
            }
        }
        Ok(())
    }

    /// A state file stamped `upto` was written: when every record in the
    /// ring is older, the ring starts over. (Records are written on their
    /// own thread: one taken after that state file's snapshot may already
    /// be in the ring; then the ring goes on, and starts over at a later
    /// state file.)
    pub fn folded(&mut self, upto: u64) {
        if self.newest <= upto {
            if let Some((_, next)) = &mut self.ring {
                *next = 0;
            }
            self.newest = 0;
        }
        self.no_ring = false;
    }
}

/// Open the ring (made the first time), its next slot after the newest
/// record not yet in the state file.
/// Also the newest stamp among those records (0: none).
fn open_ring(dir: &Path, sub: &Path) -> std::io::Result<(std::fs::File, usize, u64)> {
    let file = sub.join(RING);
    let size = (RING_SLOTS * SLOT) as u64;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(NOFOLLOW)
        .open(&file)
        .map_err(|e| named(&file, e))
        .and_then(|f| regular(f, &file));
    match opened {
        Ok(f) if f.metadata()?.len() == size => {
            let saved = saved_stamp(dir);
            let (next, newest) = read_ring(dir)
                .into_iter()
                .filter(|(_, r)| r.saved_ms > saved)
                .fold((0, 0), |(n, s), (i, r)| (n.max(i + 1), s.max(r.saved_ms)));
            Ok((f, next, newest))
        }
        _ => {
            // New (or not a ring): made whole, then put in place.
            let tmp = sub.join(format!("{RING}.tmp"));
            if let Err(e) = replace_with(&tmp, &file, &vec![0u8; RING_SLOTS * SLOT]) {
                // No half-made ring left taking the space of a full disk.
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(NOFOLLOW)
                .open(&file)
                .map_err(|e| named(&file, e))?;
            Ok((regular(f, &file)?, 0, 0))
        }
    }
}

/// The newest record of `target` (ring or `.json`), for tools and tests.
pub fn newest_record(dir: &Path, target: &str) -> Option<(u64, Persisted)> {
    read_inflight(dir)
        .into_iter()
        .filter(|r| r.target == target)
        .max_by_key(|r| r.saved_ms)
        .map(|r| (r.saved_ms, r.state))
}

/// The state file's stamp (0: none or unreadable), for tools and tests.
pub fn saved_stamp(dir: &Path) -> u64 {
    read_bounded(&path(dir), STATE_MAX)
        .ok()
        .and_then(|t| serde_json::from_slice::<StateFile>(&t).ok())
        .map_or(0, |s| s.saved_ms)
}

/// The highest generation given out or seen on disk by this process.
static LAST_STAMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The generation that orders state snapshots and in-flight records: it
/// only grows, within a run and across runs. It starts from the wall
/// clock (microseconds since the epoch) but is always above every
/// generation loaded from the state directory ([`observe_stamp`]): state
/// written while the clock was ahead (a host booted with a wrong clock,
/// then corrected) never outranks what is written after the correction.
pub fn stamp() -> u64 {
    use std::sync::atomic::Ordering;
    let now = crate::model::event::now_ms().saturating_mul(1000);
    let mut last = LAST_STAMP.load(Ordering::Relaxed);
    loop {
        let next = now.max(last.saturating_add(1));
        match LAST_STAMP.compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// A generation read from the state directory: every later [`stamp`] is
/// above it.
fn observe_stamp(seen: u64) {
    LAST_STAMP.fetch_max(seen, std::sync::atomic::Ordering::Relaxed);
}

/// The largest in-flight record procward reads.
const INFLIGHT_MAX: u64 = 1 << 20;

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Create the state directory (0700) when missing; refuse one that is
/// not a directory, is owned by another user, or that others (or a group
/// other than root's) can write, or any directory above it that they can:
/// they could plant files that root then overwrites.
fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    crate::sys::trust::directory(dir).map_err(std::io::Error::other)
}

/// The daemon's lock: held by `procward run` for its life, and by an
/// offline command for its run (which thus fails while procward runs).
const DAEMON_LOCK: &str = "procward.lock";
/// Held by an offline command (`start|stop --offline`) for its whole run,
/// script and wait included: the next offline command, or a starting
/// daemon, waits for it.
const OFFLINE_LOCK: &str = "offline.lock";

/// Create (or check) the state directory and open one of its lock files.
fn lock_file(dir: &Path, name: &str) -> std::io::Result<std::fs::File> {
    ensure_dir(dir).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot use the state directory {}: {e}", dir.display()),
        )
    })?;
    open_append(&dir.join(name))
}

/// Take `f`'s exclusive lock, trying until `wait` has passed; `waiting`
/// is called once if it has to wait.
fn flock_within(f: &std::fs::File, wait: std::time::Duration, waiting: impl FnOnce()) -> bool {
    use rustix::fs::{flock, FlockOperation};
    let deadline = std::time::Instant::now() + wait;
    let mut waiting = Some(waiting);
    loop {
        if flock(f, FlockOperation::NonBlockingLockExclusive).is_ok() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        if let Some(w) = waiting.take() {
            w();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn daemon_lock(dir: &Path) -> std::io::Result<std::fs::File> {
    let f = lock_file(dir, DAEMON_LOCK)?;
    if !flock_within(&f, std::time::Duration::ZERO, || {}) {
        return Err(std::io::Error::other(format!(
            "another procward is running with state directory {}",
            dir.display()
        )));
    }
    Ok(f)
}

/// One procward per state directory: the daemon's lock, held while the
/// file stays open. An offline command under way (`start|stop
/// --offline`) is waited for first, up to `wait` (`waiting` is called if
/// it must wait): the daemon then loads what it recorded and adopts what
/// it started instead of starting it again.
pub fn lock(
    dir: &Path,
    wait: std::time::Duration,
    waiting: impl FnOnce(),
) -> std::io::Result<std::fs::File> {
    let offline = lock_file(dir, OFFLINE_LOCK)?;
    if !flock_within(&offline, wait, waiting) {
        return Err(std::io::Error::other(format!(
            "an offline command (start or stop --offline) still holds state directory {} after {}",
            dir.display(),
            humantime::format_duration(wait)
        )));
    }
    daemon_lock(dir)
    // The offline lock goes with `offline`: the next offline command
    // takes it, then finds the daemon's lock taken and refuses.
}

/// The locks of an offline command, held until dropped.
pub struct OfflineLock {
    _offline: std::fs::File,
    _daemon: std::fs::File,
}

/// An offline command's locks: another offline command under way is
/// waited for, up to `wait` (`waiting` is called if it must wait); a
/// running daemon is not (`Err`: ask the daemon).
pub fn lock_offline(
    dir: &Path,
    wait: std::time::Duration,
    waiting: impl FnOnce(),
) -> Result<OfflineLock, String> {
    let offline = lock_file(dir, OFFLINE_LOCK).map_err(|e| e.to_string())?;
    if !flock_within(&offline, wait, waiting) {
        return Err(format!(
            "another offline command still holds state directory {} after {}",
            dir.display(),
            humantime::format_duration(wait)
        ));
    }
    let daemon = daemon_lock(dir).map_err(|e| e.to_string())?;
    Ok(OfflineLock {
        _offline: offline,
        _daemon: daemon,
    })
}

/// The largest state.json procward reads.
const STATE_MAX: u64 = 64 << 20;

/// Load the state. A missing file is an empty state; an unreadable one is
/// moved aside to `state.json.bad` and reported as `Err` (with the empty
/// state to go on with).
pub fn load(dir: &Path) -> Result<BTreeMap<String, Persisted>, String> {
    load_with_records(dir).0
}

/// `load`, and whether records newer than the state file were merged (not
/// yet folded into it: the daemon folds them once quiet).
pub fn load_with_records(dir: &Path) -> (Result<BTreeMap<String, Persisted>, String>, bool) {
    let p = path(dir);
    let (mut targets, saved_ms, result) = match read_bounded(&p, STATE_MAX) {
        Ok(text) => match serde_json::from_slice::<StateFile>(&text) {
            Ok(s) => (s.targets, s.saved_ms, Ok(())),
            Err(e) => {
                let _ = std::fs::rename(&p, dir.join("state.json.bad"));
                (BTreeMap::new(), 0, Err(e.to_string()))
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (BTreeMap::new(), 0, Ok(())),
        Err(e) => (BTreeMap::new(), 0, Err(e.to_string())),
    };
    // Records newer than the state file, the newest last. What is
    // written from now on is newer than all of them.
    let mut records = read_inflight(dir);
    observe_stamp(saved_ms);
    records.iter().for_each(|r| observe_stamp(r.saved_ms));
    records.retain(|r| r.saved_ms > saved_ms);
    records.sort_by_key(|r| r.saved_ms);
    let newer = !records.is_empty();
    for rec in records {
        targets.insert(rec.target, rec.state);
    }
    (result.map(|()| targets), newer)
}

/// The in-flight records (unreadable ones are skipped: the state file or
/// a fresh start covers them).
fn read_inflight(dir: &Path) -> Vec<InFlightFile> {
    let mut records: Vec<InFlightFile> = read_ring(dir).into_iter().map(|(_, r)| r).collect();
    let Ok(entries) = std::fs::read_dir(dir.join(INFLIGHT)) else {
        return records;
    };
    records.extend(
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| read_bounded(&e.path(), INFLIGHT_MAX).ok())
            .filter_map(|b| serde_json::from_slice::<InFlightFile>(&b).ok()),
    );
    records
}

/// A record as its own file (temporary file, fsync, rename).
fn save_json(sub: &Path, target: &str, body: &[u8]) -> std::io::Result<()> {
    // Target names are letters, digits, `-`, `_` and `.`: no separator.
    let file = sub.join(format!("{target}.json"));
    let tmp = sub.join(format!("{target}.json.tmp"));
    replace_with(&tmp, &file, body)
}

/// Remove the `.json` records a state file saved at `saved_ms` holds (the
/// ring's are left: older than the state file, they are passed over).
fn prune_inflight(dir: &Path, saved_ms: u64) {
    let Ok(entries) = std::fs::read_dir(dir.join(INFLIGHT)) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name() == RING {
            continue;
        }
        let old = read_bounded(&e.path(), INFLIGHT_MAX)
            .ok()
            .and_then(|b| serde_json::from_slice::<InFlightFile>(&b).ok())
            .is_none_or(|r| r.saved_ms <= saved_ms);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A snapshot of the state, to be written by whoever does the I/O (the
/// notifier's I/O thread): notify writes state without knowing its types.
///
/// A list in the core's order, not a map: the event loop takes one after
/// each change, and with 10,000 targets building a map of fresh name
/// strings was the loop's largest cost per event. The I/O thread sorts it.
pub struct Pending {
    dir: PathBuf,
    targets: Vec<(crate::model::TargetId, Persisted)>,
    saved_ms: u64,
}

impl Pending {
    pub fn new(dir: &Path, targets: Vec<(crate::model::TargetId, Persisted)>) -> Pending {
        Pending {
            dir: dir.to_path_buf(),
            targets,
            saved_ms: stamp(),
        }
    }

    pub fn path(&self) -> PathBuf {
        path(&self.dir)
    }

    /// The stamp the state file is written with.
    pub fn stamp(&self) -> u64 {
        self.saved_ms
    }

    pub fn write(mut self) -> std::io::Result<()> {
        self.targets.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let list: Vec<(&str, &Persisted)> =
            self.targets.iter().map(|(k, v)| (k.as_str(), v)).collect();
        save_at(&self.dir, &list, self.saved_ms)
    }
}

/// Write the state atomically (temp file, fsync, rename).
pub fn save(dir: &Path, targets: &BTreeMap<String, Persisted>) -> std::io::Result<()> {
    let list: Vec<(&str, &Persisted)> = targets.iter().map(|(k, v)| (k.as_str(), v)).collect();
    save_at(dir, &list, stamp())
}

/// The state file as written: the same layout `StateFile` reads, from a
/// sorted list (no copy of the targets' state).
#[derive(Serialize)]
struct StateFileOut<'a> {
    version: u32,
    saved_ms: u64,
    #[serde(serialize_with = "as_map")]
    targets: &'a [(&'a str, &'a Persisted)],
}

fn as_map<S: serde::Serializer>(list: &&[(&str, &Persisted)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(list.iter().map(|(k, v)| (*k, *v)))
}

fn save_at(dir: &Path, targets: &[(&str, &Persisted)], saved_ms: u64) -> std::io::Result<()> {
    let tmp = dir.join("state.json.tmp");
    let body = serde_json::to_vec(&StateFileOut {
        version: 1,
        saved_ms,
        targets,
    })?;
    replace_with(&tmp, &path(dir), &body)?;
    prune_inflight(dir, saved_ms);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A restart's record newer than state.json wins at load; a state
    /// file written after it takes over and removes it.
    #[test]
    fn a_pending_list_is_written_as_the_sorted_map_load_reads() {
        let d = tempfile::tempdir().unwrap();
        let b = Persisted {
            attempts: vec![7],
            ..Default::default()
        };
        Pending::new(
            d.path(),
            vec![("b".into(), b.clone()), ("a".into(), Persisted::default())],
        )
        .write()
        .unwrap();
        let text = std::fs::read_to_string(path(d.path())).unwrap();
        assert!(
            text.find("\"a\"").unwrap() < text.find("\"b\"").unwrap(),
            "{text}"
        );
        let loaded = load(d.path()).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded["b"], b);
    }

    /// A record written while the clock was a day ahead: once loaded,
    /// what is written next outranks it, whatever the wall clock says.
    #[test]
    fn state_written_after_a_clock_correction_outranks_state_from_the_future() {
        let d = tempfile::tempdir().unwrap();
        let ahead = crate::model::event::now_ms() * 1000 + 86_400_000_000;
        let future = Persisted {
            ever_up: true,
            ..Default::default()
        };
        Records::default()
            .save(d.path(), "a", &future, ahead)
            .unwrap();
        assert_eq!(load(d.path()).unwrap()["a"], future);
        let stopped = Persisted {
            halted: Some(crate::model::Halted::Stopped),
            ..Default::default()
        };
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), stopped.clone());
        save(d.path(), &m).unwrap();
        assert!(saved_stamp(d.path()) > ahead);
        assert_eq!(load(d.path()).unwrap()["a"], stopped);
    }

    #[test]
    fn inflight_records_override_older_state_and_are_pruned_by_newer() {
        let d = tempfile::tempdir().unwrap();
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), Persisted::default());
        save(d.path(), &m).unwrap();
        let restarting = Persisted {
            attempts: vec![5],
            ..Default::default()
        };
        Records::default()
            .save(d.path(), "a", &restarting, stamp())
            .unwrap();
        assert_eq!(load(d.path()).unwrap()["a"], restarting);
        // An older snapshot written later does not hide the record.
        let old = Pending {
            dir: d.path().to_path_buf(),
            targets: vec![("a".into(), Persisted::default())],
            saved_ms: 1,
        };
        old.write().unwrap();
        assert_eq!(load(d.path()).unwrap()["a"], restarting);
        // A newer one replaces it.
        save(d.path(), &m).unwrap();
        assert_eq!(load(d.path()).unwrap()["a"], Persisted::default());
        assert!(!load_with_records(d.path()).1);
        // Garbage in the directory is ignored, never a panic.
        std::fs::write(d.path().join(INFLIGHT).join("x.json"), b"{garbage").unwrap();
        assert!(load(d.path()).is_ok());
    }

    /// Records go into the ring slot after slot; a torn write (a crash in
    /// the middle) spoils that record only; when the ring is full, or a
    /// record too large for a slot, `.json` files; a state file written
    /// starts the ring over; a reopened ring goes on after its newest.
    #[test]
    fn records_fill_the_ring_survive_a_torn_write_and_overflow_to_json() {
        let d = tempfile::tempdir().unwrap();
        let ring = d.path().join(INFLIGHT).join(RING);
        let st = |n: u64| Persisted {
            attempts: vec![n],
            ..Default::default()
        };
        let mut w = Records::default();
        let s1 = stamp();
        w.save(d.path(), "a", &st(1), s1).unwrap();
        let s2 = stamp();
        w.save(d.path(), "b", &st(2), s2).unwrap();
        let s3 = stamp();
        w.save(d.path(), "a", &st(3), s3).unwrap();
        // Read back as written, before the flush (what a procward
        // restarted after a crash of procward reads); then flushed.
        assert!(w.unsynced());
        assert_eq!(newest_record(d.path(), "a"), Some((s3, st(3))));
        w.sync().unwrap();
        assert!(!w.unsynced());
        let bytes = std::fs::read(&ring).unwrap();
        assert_eq!(bytes.len(), RING_SLOTS * SLOT);
        assert_eq!(slot_decode(&bytes[..SLOT]).unwrap().0, s1);
        assert_eq!(slot_decode(&bytes[2 * SLOT..3 * SLOT]).unwrap().0, s3);
        let loaded = load(d.path()).unwrap();
        assert_eq!((&loaded["a"], &loaded["b"]), (&st(3), &st(2)));
        // Torn: the record before it counts.
        let mut torn = bytes.clone();
        torn[2 * SLOT + SLOT_HEAD + 3] ^= 0xff;
        std::fs::write(&ring, &torn).unwrap();
        assert_eq!(load(d.path()).unwrap()["a"], st(1));
        std::fs::write(&ring, &bytes).unwrap();
        // Another writer (a restarted procward) goes on after the newest.
        let mut again = Records::default();
        let s4 = stamp();
        again.save(d.path(), "b", &st(4), s4).unwrap();
        let bytes = std::fs::read(&ring).unwrap();
        assert_eq!(slot_decode(&bytes[3 * SLOT..4 * SLOT]).unwrap().0, s4);
        // Too large for a slot: a .json record, which wins when newer.
        let big = Persisted {
            attempts: (0..1000).collect(),
            ..Default::default()
        };
        again.save(d.path(), "a", &big, stamp()).unwrap();
        assert!(d.path().join(INFLIGHT).join("a.json").exists());
        assert_eq!(load(d.path()).unwrap()["a"], big);
        again.save(d.path(), "a", &st(5), stamp()).unwrap();
        assert_eq!(load(d.path()).unwrap()["a"], st(5));
        // A state file: older records pass, the .json goes, the ring
        // starts over (its old slots are older than the state file).
        let now = load(d.path()).unwrap();
        save(d.path(), &now).unwrap();
        again.folded(saved_stamp(d.path()));
        assert!(!load_with_records(d.path()).1);
        assert!(!d.path().join(INFLIGHT).join("a.json").exists());
        let s6 = stamp();
        again.save(d.path(), "b", &st(6), s6).unwrap();
        let bytes = std::fs::read(&ring).unwrap();
        assert_eq!(slot_decode(&bytes[..SLOT]).unwrap().0, s6);
        let loaded = load(d.path()).unwrap();
        assert_eq!((&loaded["a"], &loaded["b"]), (&st(5), &st(6)));
        // A record taken after a state file's snapshot and written before
        // that file is (records have their own thread): the ring does not
        // start over under it.
        let before = load(d.path()).unwrap();
        let snap = stamp();
        again.save(d.path(), "d", &st(70), stamp()).unwrap();
        let list: Vec<(&str, &Persisted)> = before.iter().map(|(k, v)| (k.as_str(), v)).collect();
        save_at(d.path(), &list, snap).unwrap();
        again.folded(snap);
        again.save(d.path(), "e", &st(71), stamp()).unwrap();
        again.save(d.path(), "f", &st(72), stamp()).unwrap();
        let loaded = load(d.path()).unwrap();
        assert_eq!(
            (&loaded["d"], &loaded["e"], &loaded["f"]),
            (&st(70), &st(71), &st(72))
        );
        // The next state file has them all: the ring starts over.
        save(d.path(), &loaded).unwrap();
        again.folded(saved_stamp(d.path()));
        assert_eq!(again.ring.as_ref().map(|r| r.1), Some(0));
        // Full: the rest goes to .json files, nothing is lost.
        if let Some((_, next)) = &mut again.ring {
            *next = RING_SLOTS;
        }
        again.save(d.path(), "c", &st(7), stamp()).unwrap();
        assert_eq!(load(d.path()).unwrap()["c"], st(7));
        assert!(d.path().join(INFLIGHT).join("c.json").exists());
        // Garbage or a short ring is no record, never a panic.
        std::fs::write(&ring, b"PWR1\xff\xff").unwrap();
        assert!(load(d.path()).is_ok());
        // A planted symlink in its place is replaced, never followed.
        let victim = d.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::fs::remove_file(&ring).unwrap();
        std::os::unix::fs::symlink(&victim, &ring).unwrap();
        let mut fresh = Records::default();
        fresh.save(d.path(), "a", &st(8), stamp()).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(std::fs::symlink_metadata(&ring).unwrap().is_file());
        assert_eq!(load(d.path()).unwrap()["a"], st(8));
    }

    #[test]
    fn round_trip_and_corruption() {
        let d = tempfile::tempdir().unwrap();
        assert!(load(d.path()).unwrap().is_empty());
        let mut m = BTreeMap::new();
        m.insert(
            "a".to_string(),
            Persisted {
                attempts: vec![1, 2],
                paused: true,
                ..Default::default()
            },
        );
        save(d.path(), &m).unwrap();
        assert_eq!(load(d.path()).unwrap(), m);
        std::fs::write(path(d.path()), "{garbage").unwrap();
        assert!(load(d.path()).is_err());
        assert!(d.path().join("state.json.bad").exists());
        assert!(load(d.path()).unwrap().is_empty());
    }
}
