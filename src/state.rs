//! Persistent state in `state-dir`: retry counters, pause flags and
//! RETRY-OVER/FAILED states, so a restart of procward (or a crash loop of
//! procward itself) never resets the retry window.

use crate::monitor::Persisted;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const FILE: &str = "state.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    /// When the snapshot was taken (ms since the epoch): in-flight records
    /// newer than this override their target's entry at load.
    #[serde(default)]
    saved_ms: u64,
    targets: BTreeMap<String, Persisted>,
}

/// One target's state written just before its restart script runs
/// (`inflight/TARGET.json`): small and quick to fsync, so the restart does
/// not wait for the whole state file of every target. Merged at load,
/// removed once a newer state.json holds it.
#[derive(Debug, Serialize, Deserialize)]
struct InFlightFile {
    saved_ms: u64,
    target: String,
    state: Persisted,
}

const INFLIGHT: &str = "inflight";

/// A strictly increasing stamp (microseconds since the epoch, bumped on a
/// tie) that orders state snapshots and in-flight records.
pub fn stamp() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = crate::event::now_ms().saturating_mul(1000);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
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
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    crate::trust::directory(dir).map_err(std::io::Error::other)
}

/// Create (or check) the state directory and take its lock: one procward
/// per state directory. The lock is held while the file stays open.
pub fn lock(dir: &Path) -> std::io::Result<std::fs::File> {
    ensure_dir(dir).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot use the state directory {}: {e}", dir.display()),
        )
    })?;
    let f = open_append(&dir.join("procward.lock"))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|_| {
        std::io::Error::other(format!(
            "another procward is running with state directory {}",
            dir.display()
        ))
    })?;
    Ok(f)
}

/// A subdirectory of the state directory (e.g. `script-logs`), created
/// 0700; a symlink or a directory owned by another user is refused.
pub fn ensure_subdir(dir: &Path) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let md = std::fs::symlink_metadata(dir)?;
    if !md.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    match crate::trust::component_problem(dir, &md, true) {
        Some(p) => Err(std::io::Error::other(p)),
        None => Ok(()),
    }
}

const NOFOLLOW: i32 = libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;

/// The error of opening `path`, naming it (and a symlink as such).
fn named(path: &Path, e: std::io::Error) -> std::io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        std::io::Error::other(format!(
            "{} is a symbolic link; procward does not follow links in its state directory",
            path.display()
        ))
    } else {
        std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
    }
}

fn regular(f: std::fs::File, path: &Path) -> std::io::Result<std::fs::File> {
    if f.metadata()?.is_file() {
        Ok(f)
    } else {
        Err(std::io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )))
    }
}

/// Open a file of the state directory for appending (created 0600),
/// never through a symlink, regular files only.
pub fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(NOFOLLOW)
        .open(path)
        .map_err(|e| named(path, e))?;
    regular(f, path)
}

/// Create a temporary file anew (O_EXCL, never through a symlink): what
/// was at `path` (a planted symlink, a stale temporary) is removed first.
pub fn create_new(path: &Path) -> std::io::Result<std::fs::File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(named(path, e)),
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(NOFOLLOW)
        .open(path)
        .map_err(|e| named(path, e))
}

/// Open a file of the state directory for reading, never through a
/// symlink, regular files only.
pub fn open_read(path: &Path) -> std::io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(NOFOLLOW)
        .open(path)
        .map_err(|e| named(path, e))?;
    regular(f, path)
}

/// Read a whole state file of at most `max` bytes (a larger one is an
/// error, not an allocation).
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = open_read(path)?;
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "{} is larger than {max} bytes",
            path.display()
        )));
    }
    Ok(buf)
}

/// The largest state.json procward reads.
pub const STATE_MAX: u64 = 64 << 20;

/// Load the state. A missing file is an empty state; an unreadable one is
/// moved aside to `state.json.bad` and reported as `Err` (with the empty
/// state to go on with).
pub fn load(dir: &Path) -> Result<BTreeMap<String, Persisted>, String> {
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
    // Restarts whose record is newer than the state file.
    for rec in read_inflight(dir) {
        if rec.saved_ms > saved_ms {
            targets.insert(rec.target, rec.state);
        }
    }
    result.map(|()| targets)
}

/// Whether the state directory holds records not yet folded into the
/// state file.
pub fn has_records(dir: &Path) -> bool {
    std::fs::read_dir(dir.join(INFLIGHT)).is_ok_and(|mut d| d.next().is_some())
}

/// The in-flight records (unreadable ones are skipped: the state file or
/// a fresh start covers them).
fn read_inflight(dir: &Path) -> Vec<InFlightFile> {
    let Ok(entries) = std::fs::read_dir(dir.join(INFLIGHT)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| read_bounded(&e.path(), INFLIGHT_MAX).ok())
        .filter_map(|b| serde_json::from_slice::<InFlightFile>(&b).ok())
        .collect()
}

/// Write `target`'s state before its restart script runs (temp file,
/// fsync, rename): what a procward killed meanwhile finds at start-up.
pub fn save_inflight(
    dir: &Path,
    target: &str,
    state: &Persisted,
    saved_ms: u64,
) -> std::io::Result<()> {
    let sub = dir.join(INFLIGHT);
    ensure_subdir(&sub)?;
    // Target names are letters, digits, `-`, `_` and `.`: no separator.
    let file = sub.join(format!("{target}.json"));
    let tmp = sub.join(format!("{target}.json.tmp"));
    let body = serde_json::to_vec(&InFlightFile {
        saved_ms,
        target: target.to_string(),
        state: state.clone(),
    })?;
    {
        let mut f = create_new(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &file)
}

/// Remove the in-flight records a state file saved at `saved_ms` holds.
fn prune_inflight(dir: &Path, saved_ms: u64) {
    let Ok(entries) = std::fs::read_dir(dir.join(INFLIGHT)) else {
        return;
    };
    for e in entries.flatten() {
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
    targets: Vec<(crate::monitor::TargetId, Persisted)>,
    saved_ms: u64,
}

impl Pending {
    pub fn new(dir: &Path, targets: Vec<(crate::monitor::TargetId, Persisted)>) -> Pending {
        Pending {
            dir: dir.to_path_buf(),
            targets,
            saved_ms: stamp(),
        }
    }

    pub fn path(&self) -> PathBuf {
        path(&self.dir)
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
    {
        let mut f = create_new(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path(dir))?;
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
        save_inflight(d.path(), "a", &restarting, stamp()).unwrap();
        assert_eq!(load(d.path()).unwrap()["a"], restarting);
        // An older snapshot written later does not hide the record.
        let old = Pending {
            dir: d.path().to_path_buf(),
            targets: vec![("a".into(), Persisted::default())],
            saved_ms: 1,
        };
        old.write().unwrap();
        assert_eq!(load(d.path()).unwrap()["a"], restarting);
        // A newer one replaces it and removes it.
        save(d.path(), &m).unwrap();
        assert_eq!(load(d.path()).unwrap()["a"], Persisted::default());
        assert_eq!(
            std::fs::read_dir(d.path().join(INFLIGHT)).unwrap().count(),
            0
        );
        // Garbage in the directory is ignored, never a panic.
        std::fs::write(d.path().join(INFLIGHT).join("x.json"), b"{garbage").unwrap();
        assert!(load(d.path()).is_ok());
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
