//! Reading the journal: by time (`events`), and by seq for the readers
//! (acknowledged sinks), who go on from their place in the file being
//! written instead of reading it from its start each time.

use super::journal::{generation, last_seq_of, FILE};
use crate::model::event::Event;
use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The journal's files, oldest generation first, the rotated ones only
/// where `wanted` says so.
fn files(dir: &Path, wanted: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let current = dir.join(FILE);
    let mut files: Vec<PathBuf> = (1..)
        .map(|n| generation(&current, n))
        .take_while(|p| p.exists())
        .filter(|p| wanted(p))
        .collect();
    files.reverse();
    files.push(current);
    files
}

/// Each event of one journal file, in order, to `f`.
pub(crate) fn scan_file(path: &Path, f: impl FnMut(Event) -> bool) {
    scan(vec![path.to_path_buf()], f);
}

/// Each event of `files` in order to `f` (which returns whether to go on).
fn scan(files: Vec<PathBuf>, f: impl FnMut(Event) -> bool) {
    scan_from(files, 0, f);
}

/// The seq of a journal line, read from its start (`{"seq":N,`) without
/// parsing the rest; `None` when the line does not start so.
pub(super) fn line_seq(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("{\"seq\":")?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// `scan`, passing over the lines whose seq is at most `after` without
/// parsing them (a reader far into a large file).
fn scan_from(files: Vec<PathBuf>, after: u64, mut f: impl FnMut(Event) -> bool) {
    for path in files {
        let Ok(file) = crate::sys::fs::open_read(&path) else {
            continue;
        };
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            if line_seq(&line).is_some_and(|s| s <= after) {
                continue;
            }
            if let Ok(ev) = serde_json::from_str::<Event>(&line) {
                if !f(ev) {
                    return;
                }
            }
        }
    }
}

/// Events in the journal, oldest generation first, with `time_ms >= since`.
pub fn read(dir: &Path, since_ms: u64) -> Vec<Event> {
    let mut out = Vec::new();
    scan(files(dir, |_| true), |ev| {
        if ev.time_ms >= since_ms {
            out.push(ev);
        }
        true
    });
    out
}

/// Events with a sequence number above `after`, oldest first, at most
/// `max`: what a reader whose cursor is `after` has still to do.
/// Generations wholly at or below `after` are not read.
pub fn read_after(dir: &Path, after: u64, max: usize) -> Vec<Event> {
    let mut out = Vec::new();
    scan_after(dir, after, |ev| {
        out.push(ev);
        out.len() < max
    });
    out
}

/// Where a reader stopped in the journal being written: its inode, the
/// byte offset after the last line read, and that line's seq. The next
/// read goes on from there instead of reading the file from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    ino: u64,
    offset: u64,
    seq: u64,
}

/// `read_after`, going on from `place` when it is where `after` ended
/// (same file, not rotated since); `place` is updated for the next read.
pub fn read_after_at(dir: &Path, after: u64, max: usize, place: &mut Option<Place>) -> Vec<Event> {
    if let Some(p) = place.filter(|p| p.seq == after) {
        if let Some(out) = read_on(dir, p, max, place) {
            return out;
        }
    }
    let out = read_after(dir, after, max);
    *place = out.last().and_then(|l| locate(dir, l.seq));
    out
}

/// Read up to `max` events of the current file from `p`; `None` when the
/// file is not the one `p` is in any more (rotated).
fn read_on(dir: &Path, p: Place, max: usize, place: &mut Option<Place>) -> Option<Vec<Event>> {
    use std::os::unix::fs::MetadataExt;
    let mut f = crate::sys::fs::open_read(&dir.join(FILE)).ok()?;
    let md = f.metadata().ok()?;
    if md.ino() != p.ino || md.len() < p.offset {
        return None;
    }
    f.seek(SeekFrom::Start(p.offset)).ok()?;
    let mut r = std::io::BufReader::new(f);
    let (mut out, mut at, mut line) = (Vec::new(), p, String::new());
    while out.len() < max {
        line.clear();
        match r.read_line(&mut line) {
            Ok(n) if n > 0 && line.ends_with('\n') => at.offset += n as u64,
            _ => break, // the end, or a line being written
        }
        if let Ok(ev) = serde_json::from_str::<Event>(line.trim_end()) {
            at.seq = ev.seq;
            out.push(ev);
        }
    }
    *place = Some(at);
    Some(out)
}

/// The place just after the line of `seq` in the current file.
fn locate(dir: &Path, seq: u64) -> Option<Place> {
    use std::os::unix::fs::MetadataExt;
    let f = crate::sys::fs::open_read(&dir.join(FILE)).ok()?;
    let ino = f.metadata().ok()?.ino();
    let mut r = std::io::BufReader::new(f);
    let (mut offset, mut line) = (0u64, String::new());
    loop {
        line.clear();
        let n = r.read_line(&mut line).ok()?;
        if n == 0 || !line.ends_with('\n') {
            return None;
        }
        offset += n as u64;
        if line_seq(&line) == Some(seq) {
            return Some(Place { ino, offset, seq });
        }
    }
}

/// Each event with a sequence number above `after`, oldest first, to `f`
/// (which returns whether to go on), without holding them all.
pub fn scan_after(dir: &Path, after: u64, mut f: impl FnMut(Event) -> bool) {
    let newer = |p: &Path| last_seq_of(p).is_some_and(|s| s > after);
    scan_from(files(dir, newer), after, |ev| ev.seq <= after || f(ev));
}
