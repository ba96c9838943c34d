//! Readers' cursors: for each reader of the journal (an acknowledged
//! sink), the highest sequence number it is done with, kept in
//! `STATE-DIR/cursors/NAME` so that it resumes there after a restart of
//! procward, and so that rotation keeps what the slowest reader still
//! needs (`Journal::append`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The subdirectory of STATE-DIR.
pub const DIR: &str = "cursors";

/// A cursor file holds a number and a newline.
const CURSOR_MAX: u64 = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// Done with every event up to this seq.
    done: u64,
    /// What the file says.
    saved: u64,
    /// The sync thread was told of a move since the last save began.
    told: bool,
}

/// The cursors of every reader, shared by the readers (which move them)
/// and the store (which saves them and rotates the journal by them).
pub struct Cursors {
    dir: PathBuf,
    readers: Mutex<BTreeMap<String, Entry>>,
    /// What each reader takes of the journal (to count what it lost).
    wants: Mutex<BTreeMap<String, Wants>>,
    /// Events removed from the journal before a reader had them
    /// (daemon.spool-max), not yet taken by the reader.
    given_up: Mutex<BTreeMap<String, GivenUp>>,
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursors").field("dir", &self.dir).finish()
    }
}

/// Which events a reader takes.
pub type Wants = std::sync::Arc<dyn Fn(&crate::model::event::Event) -> bool + Send + Sync>;

/// Events a reader never got: how many it would have taken, and the seq
/// range they lie in.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GivenUp {
    pub count: u64,
    pub first: u64,
    pub last: u64,
}

impl GivenUp {
    /// `n` more events, between `first` and `last`.
    pub fn add(&mut self, n: u64, first: u64, last: u64) {
        self.first = if self.count == 0 {
            first
        } else {
            self.first.min(first)
        };
        self.last = self.last.max(last);
        self.count += n;
    }
}

/// A reader's name as a file name: what is not `[A-Za-z0-9._-]` becomes
/// `%XX`, so no name can leave the directory or hide another.
fn file_name(reader: &str) -> String {
    let mut out = String::with_capacity(reader.len());
    for b in reader.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-') || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn read_cursor(path: &Path) -> Option<u64> {
    let bytes = crate::sys::fs::read_bounded(path, CURSOR_MAX).ok()?;
    String::from_utf8_lossy(&bytes).trim().parse().ok()
}

/// A reader's saved cursor in `state_dir`, read without joining (offline
/// views).
pub fn saved(state_dir: &Path, reader: &str) -> Option<u64> {
    read_cursor(&state_dir.join(DIR).join(file_name(reader)))
}

impl Cursors {
    /// The cursors of `state_dir` (the directory made 0700 when missing).
    /// A directory that cannot be made (a full disk) does not stop
    /// procward: the cursors are kept in memory, and saving them fails
    /// (said) until it can be made.
    pub fn open(state_dir: &Path) -> Cursors {
        let dir = state_dir.join(DIR);
        if let Err(e) = crate::sys::fs::ensure_subdir(&dir) {
            eprintln!("procward: cannot make {}: {e}", dir.display());
        }
        Cursors {
            dir,
            readers: Mutex::new(BTreeMap::new()),
            wants: Mutex::new(BTreeMap::new()),
            given_up: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.readers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take part as `reader`: where it left off (its saved cursor), or
    /// `start` for a reader never seen (a new sink starts from now, not
    /// from the journal's first event).
    pub fn join(&self, reader: &str, start: u64) -> u64 {
        let saved = read_cursor(&self.dir.join(file_name(reader)));
        let done = saved.unwrap_or(start);
        let entry = Entry {
            told: false,
            done,
            saved: saved.unwrap_or(u64::MAX), // not saved yet: save it
        };
        self.lock().insert(reader.to_string(), entry);
        done
    }

    /// What `reader` takes of the journal.
    pub fn want(&self, reader: &str, wants: Wants) {
        let mut w = self.wants.lock().unwrap_or_else(|e| e.into_inner());
        w.insert(reader.to_string(), wants);
    }

    /// The journal file `file` (a rotated generation) is about to be
    /// removed: every reader not done with it gives up its events there
    /// (counted with what the reader takes) and its cursor passes them.
    pub fn give_up(&self, file: &Path) {
        let behind: Vec<(String, u64)> = self
            .lock()
            .iter()
            .map(|(n, e)| (n.clone(), e.done))
            .collect();
        if behind.is_empty() {
            return;
        }
        let wants = self.wants.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut lost: BTreeMap<String, GivenUp> = BTreeMap::new();
        let mut last = None;
        super::journal::scan_file(file, |ev| {
            last = Some(ev.seq);
            for (reader, _) in behind.iter().filter(|(_, d)| ev.seq > *d) {
                if wants.get(reader).is_none_or(|w| w(&ev)) {
                    lost.entry(reader.clone())
                        .or_default()
                        .add(1, ev.seq, ev.seq);
                }
            }
            true
        });
        let Some(last) = last else {
            return;
        };
        for (reader, done) in &behind {
            if *done < last {
                self.done(reader, last);
            }
        }
        let mut given = self.given_up.lock().unwrap_or_else(|e| e.into_inner());
        for (reader, g) in lost {
            given
                .entry(reader)
                .or_default()
                .add(g.count, g.first, g.last);
        }
    }

    /// What the journal lost of `reader`'s events since it last asked.
    pub fn take_given_up(&self, reader: &str) -> Option<GivenUp> {
        let mut given = self.given_up.lock().unwrap_or_else(|e| e.into_inner());
        given.remove(reader)
    }

    /// `reader` is done with every event up to `seq` (never moves back).
    /// Returns whether the sync thread must be told (the first move since
    /// a save began; later ones are saved with it).
    pub fn done(&self, reader: &str, seq: u64) -> bool {
        let mut readers = self.lock();
        let Some(e) = readers.get_mut(reader) else {
            return false;
        };
        e.done = e.done.max(seq);
        let tell = !e.told && e.done != e.saved;
        e.told |= tell;
        tell
    }

    /// Where `reader` is.
    pub fn position(&self, reader: &str) -> Option<u64> {
        self.lock().get(reader).map(|e| e.done)
    }

    /// `reader` is gone for good (its sink removed): its cursor too.
    pub fn leave(&self, reader: &str) {
        self.lock().remove(reader);
        let mut w = self.wants.lock().unwrap_or_else(|e| e.into_inner());
        w.remove(reader);
        let _ = std::fs::remove_file(self.dir.join(file_name(reader)));
    }

    /// The slowest reader's cursor (`None`: no reader).
    pub fn slowest(&self) -> Option<u64> {
        self.lock().values().map(|e| e.done).min()
    }

    /// Write the cursors that moved since they were last written (each
    /// replaced atomically). Called in groups by the store's sync thread.
    pub fn save(&self) -> std::io::Result<()> {
        let moved: Vec<(String, u64)> = self
            .lock()
            .iter_mut()
            .filter(|(_, e)| e.done != e.saved)
            .map(|(n, e)| {
                // A move from now on is told again.
                e.told = false;
                (n.clone(), e.done)
            })
            .collect();
        if !moved.is_empty() {
            // Made at start-up, unless the disk was full then.
            crate::sys::fs::ensure_subdir(&self.dir)?;
        }
        for (reader, done) in moved {
            let file = self.dir.join(file_name(&reader));
            let tmp = self.dir.join(format!(".{}.tmp", file_name(&reader)));
            crate::sys::fs::replace_with(&tmp, &file, format!("{done}\n").as_bytes())?;
            if let Some(e) = self.lock().get_mut(&reader) {
                e.saved = done;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_a_restart_and_never_moves_back() {
        let d = tempfile::tempdir().unwrap();
        let c = Cursors::open(d.path());
        assert_eq!(c.join("relp", 40), 40, "new: starts where it is told");
        c.done("relp", 45);
        c.done("relp", 44);
        assert_eq!(c.position("relp"), Some(45));
        c.save().unwrap();
        let again = Cursors::open(d.path());
        assert_eq!(again.join("relp", 99), 45, "saved: resumes there");
        assert_eq!(again.slowest(), Some(45));
        again.leave("relp");
        assert_eq!(again.slowest(), None);
        assert_eq!(Cursors::open(d.path()).join("relp", 7), 7);
    }

    #[test]
    fn a_name_never_leaves_the_directory() {
        assert_eq!(file_name("../etc/passwd"), "%2E.%2Fetc%2Fpasswd");
        assert_eq!(file_name("syslog-1.a"), "syslog-1.a");
        assert_eq!(file_name(".hidden"), "%2Ehidden");
        let d = tempfile::tempdir().unwrap();
        let c = Cursors::open(d.path());
        c.join("../x", 3);
        c.save().unwrap();
        assert!(d.path().join(DIR).join("%2E.%2Fx").exists());
        assert!(!d.path().join("x").exists());
    }
}
