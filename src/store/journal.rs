//! The event journal: JSON lines in `state-dir/events.jsonl`, rotated to
//! `events.jsonl.1` past 16 MiB. Lines are whole: a write that fails part
//! way is cut back off, and a partial last line left by a crash is removed
//! at start-up. Sequence numbers are reserved in blocks in `seq` before
//! use, so a number is never given twice in the life of the state
//! directory, even when procward is killed before the journal is written.

use crate::model::event::Event;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const FILE: &str = "events.jsonl";
const LIMIT: u64 = 16 << 20;
/// The file holding the highest sequence number reserved.
const SEQ_FILE: &str = "seq";
/// Sequence numbers reserved per write of [`SEQ_FILE`].
const SEQ_BLOCK: u64 = 1000;
/// How far from the end of the journal a partial line or the last
/// sequence number is looked for (an event is a few KiB at most).
const TAIL: u64 = 1 << 20;

pub(super) use super::read::scan_file;
pub use super::read::{read, read_after, read_after_at, scan_after, Place};
pub use crate::config::{JOURNAL_KEEP as KEEP, JOURNAL_MAX_KEEP as MAX_KEEP};

pub struct Journal {
    path: PathBuf,
    /// Shared with the sync thread, which fsyncs it in groups.
    file: std::sync::Arc<std::fs::File>,
    size: u64,
    /// Rotated generations kept.
    keep: u32,
    /// Size past which the journal rotates ([`LIMIT`]).
    limit: u64,
    /// A failed write could not be cut back: cut it before the next one.
    torn: bool,
    /// The readers: rotation keeps the generations the slowest still
    /// needs, beyond `keep`, up to `spool_max` bytes of generations.
    readers: Option<std::sync::Arc<super::cursor::Cursors>>,
    spool_max: u64,
}

fn open(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    let f = crate::sys::fs::open_append(path)?;
    let size = repair(&f)?;
    Ok((f, size))
}

/// Remove a partial last line (no newline at the end), left by a crash or
/// a full disk; return the size after.
fn repair(f: &std::fs::File) -> std::io::Result<u64> {
    let size = f.metadata()?.len();
    if size == 0 {
        return Ok(0);
    }
    let from = size.saturating_sub(TAIL);
    let mut tail = Vec::new();
    let mut r = f;
    r.seek(SeekFrom::Start(from))?;
    r.take(size - from).read_to_end(&mut tail)?;
    if tail.last() == Some(&b'\n') {
        return Ok(size);
    }
    let keep = match tail.iter().rposition(|&b| b == b'\n') {
        Some(i) => from + i as u64 + 1,
        None if from == 0 => 0,
        None => return Ok(size), // no line end in the tail: leave it alone
    };
    f.set_len(keep)?;
    Ok(keep)
}

impl Journal {
    pub fn open(dir: &Path, keep: u32) -> std::io::Result<Journal> {
        let path = dir.join(FILE);
        let (file, size) = open(&path)?;
        Ok(Journal {
            path,
            file: std::sync::Arc::new(file),
            size,
            keep: keep.clamp(1, MAX_KEEP),
            limit: LIMIT,
            torn: false,
            readers: None,
            spool_max: u64::from(MAX_KEEP) * LIMIT,
        })
    }

    /// Rotation keeps what these readers have not done with yet, up to
    /// `spool_max` bytes of rotated generations; past it, the oldest
    /// events are given up for the readers behind (each is told).
    pub fn with_readers(
        mut self,
        readers: std::sync::Arc<super::cursor::Cursors>,
        spool_max: u64,
    ) -> Journal {
        self.readers = Some(readers);
        self.spool_max = spool_max;
        self
    }

    /// How many rotated generations to keep at this rotation: `keep`, and
    /// more while the oldest of them holds events the slowest reader has
    /// not done with.
    fn generations(&self) -> u32 {
        let Some(slowest) = self.readers.as_ref().and_then(|r| r.slowest()) else {
            return self.keep;
        };
        let spool = u32::try_from(self.spool_max / self.limit.max(1)).unwrap_or(u32::MAX);
        let mut n = self.keep;
        while n < spool.max(self.keep)
            && last_seq_of(&generation(&self.path, n)).is_some_and(|s| s > slowest)
        {
            n += 1;
        }
        n
    }

    /// Generations `keep` and older are about to be overwritten or
    /// removed: what the readers behind had not done there is given up,
    /// oldest first.
    fn give_up_from(&self, keep: u32) {
        let Some(r) = &self.readers else {
            return;
        };
        let going: Vec<PathBuf> = (keep..)
            .map(|n| generation(&self.path, n))
            .take_while(|p| p.exists())
            .collect();
        for p in going.iter().rev() {
            if r.slowest()
                .is_some_and(|s| last_seq_of(p).is_some_and(|l| l > s))
            {
                r.give_up(p);
            }
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        // events.jsonl.N-1 -> .N, …, events.jsonl -> .1; what is past the
        // generations kept goes.
        let keep = self.generations();
        self.give_up_from(keep);
        for n in (1..keep).rev() {
            let _ = std::fs::rename(generation(&self.path, n), generation(&self.path, n + 1));
        }
        for n in keep + 1.. {
            match std::fs::remove_file(generation(&self.path, n)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                _ => {}
            }
        }
        std::fs::rename(&self.path, generation(&self.path, 1))?;
        let (f, s) = open(&self.path)?;
        self.file = std::sync::Arc::new(f);
        self.size = s;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file being written (for its fsync).
    pub fn file(&self) -> &std::sync::Arc<std::fs::File> {
        &self.file
    }

    pub fn append(&mut self, ev: &Event) -> std::io::Result<()> {
        self.append_all(std::iter::once(ev))
    }

    /// Append events in as few writes as the rotation allows (one write
    /// for a group that fits the current file).
    pub fn append_all<'a>(
        &mut self,
        evs: impl IntoIterator<Item = &'a Event>,
    ) -> std::io::Result<()> {
        if self.torn {
            self.file.set_len(self.size)?;
            self.torn = false;
        }
        let mut buf = Vec::new();
        for ev in evs {
            let at = buf.len();
            serde_json::to_writer(&mut buf, ev)?;
            buf.push(b'\n');
            if self.size + buf.len() as u64 > self.limit && self.size + at as u64 > 0 {
                // What came before this line goes in the current file.
                self.write(&buf[..at])?;
                buf.drain(..at);
                self.rotate()?;
            }
        }
        self.write(&buf)
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = (&*self.file).write_all(buf) {
            // Never leave half a line for the next one to run into.
            self.torn = self.file.set_len(self.size).is_err();
            return Err(e);
        }
        self.size += buf.len() as u64;
        Ok(())
    }
}

/// `events.jsonl.N`.
pub(super) fn generation(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// The highest sequence number in the last lines of one journal file
/// (`None`: no event there). Reads at most its last MiB.
pub(super) fn last_seq_of(path: &Path) -> Option<u64> {
    let mut f = crate::sys::fs::open_read(path).ok()?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = size.saturating_sub(TAIL);
    let mut tail = Vec::new();
    f.seek(SeekFrom::Start(from)).ok()?;
    f.read_to_end(&mut tail).ok()?;
    tail.split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice::<Event>(l).ok())
        .map(|e| e.seq)
        .filter(|&seq| seq <= SEQ_MAX)
        .max()
}

/// The highest sequence number in the last lines of the journal (or of
/// its rotated generation when the journal is empty); 0 for none. Reads
/// at most the last MiB, not the whole journal.
pub fn last_seq(dir: &Path) -> u64 {
    last_seq_of(&dir.join(FILE))
        .or_else(|| last_seq_of(&dir.join(format!("{FILE}.1"))))
        .unwrap_or(0)
}

/// Sequence numbers reserved durably ahead of use. The next block is
/// written on a thread of its own once half of the current one is used:
/// the event loop never waits for the disk (a reservation written in
/// place, every 1,000 events, stalled it 27 ms at 10,000 targets: the
/// fsync's cache flush and the discard of the replaced file's blocks),
/// unless the numbers run out before that write is done.
pub struct Seq {
    dir: PathBuf,
    next: u64,
    reserved: u64,
    /// The block being written: its upper bound and the writer's answer.
    pending: Option<(u64, std::thread::JoinHandle<Result<(), String>>)>,
}

/// The highest sequence number that can be right: 2^53 - 1, the largest
/// integer every JSON reader keeps exactly (a million events a second
/// would take 285 years to reach it). A sequence file or journal line
/// above it is damage, not history.
const SEQ_MAX: u64 = (1 << 53) - 1;

/// A sequence file whose number cannot be right (unreadable, or above
/// [`SEQ_MAX`]): numbering went on after the journal's highest instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqRefused {
    /// What the file held (cut, escaped by the renderer).
    pub value: String,
    /// The journal's highest sequence number.
    pub journal: u64,
    /// The first number given out now.
    pub next: u64,
}

/// The sequence file's number: `Ok(None)` when there is no file,
/// `Err(text)` when it holds something that cannot be right.
fn saved_seq(dir: &Path) -> Result<Option<u64>, String> {
    let bytes = match crate::sys::fs::read_bounded(&dir.join(SEQ_FILE), 64) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("unreadable: {e}")),
    };
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    match text.parse::<u64>() {
        Ok(n) if n <= SEQ_MAX => Ok(Some(n)),
        _ => Err(text.chars().take(40).collect()),
    }
}

impl Seq {
    /// Continue after everything ever reserved or journaled: the larger
    /// of the sequence file and the journal's highest number, so a number
    /// never goes back and never repeats. A sequence file that cannot be
    /// right is refused (`SeqRefused`, said as PW1014), never wrapped
    /// around. The first block is reserved before the first number is
    /// given out.
    pub fn open(dir: &Path) -> (Seq, Result<(), String>, Option<SeqRefused>) {
        let journal = last_seq(dir);
        let (saved, refused) = match saved_seq(dir) {
            Ok(n) => (n.unwrap_or(0), None),
            Err(value) => (0, Some(value)),
        };
        let last = saved.max(journal);
        let mut s = Seq {
            dir: dir.to_path_buf(),
            next: last + 1,
            reserved: last,
            pending: None,
        };
        let r = s.reserve();
        let refused = refused.map(|value| SeqRefused {
            value,
            journal,
            next: last + 1,
        });
        (s, r, refused)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(SEQ_FILE)
    }

    /// The next number, and how the last reservation written went, if one
    /// ended since (`Err`: the number is still unique for this run, but a
    /// crash before the next successful reservation could give it again).
    pub fn take(&mut self) -> (u64, Option<Result<(), String>>) {
        let mut said = self.collect(false);
        if self.next > self.reserved {
            // Ran out first: wait for the block being written, else write
            // one here (a failing disk: tried again at the next number).
            if self.pending.is_some() {
                said = self.collect(true);
            }
            if self.next > self.reserved {
                said = Some(self.reserve());
            }
        }
        if self.pending.is_none() && self.reserved.saturating_sub(self.next) < SEQ_BLOCK / 2 {
            self.reserve_ahead();
        }
        let n = self.next;
        self.next += 1;
        (n, said)
    }

    /// The answer of the block being written (waiting for it with `wait`).
    fn collect(&mut self, wait: bool) -> Option<Result<(), String>> {
        if !wait && !self.pending.as_ref()?.1.is_finished() {
            return None;
        }
        let (upto, writer) = self.pending.take()?;
        let r = writer
            .join()
            .unwrap_or_else(|_| Err("the sequence file's writer stopped".into()));
        if r.is_ok() {
            self.reserved = self.reserved.max(upto);
        }
        Some(r)
    }

    /// Write the next block on a thread of its own.
    fn reserve_ahead(&mut self) {
        let upto = self.reserved.max(self.next).saturating_add(SEQ_BLOCK);
        let dir = self.dir.clone();
        let spawned = std::thread::Builder::new()
            .name("procward-seq".into())
            .spawn(move || write_reservation(&dir, upto));
        // No thread: the block is written here when the numbers run out.
        if let Ok(writer) = spawned {
            self.pending = Some((upto, writer));
        }
    }

    fn reserve(&mut self) -> Result<(), String> {
        let upto = self.next.saturating_add(SEQ_BLOCK);
        let r = write_reservation(&self.dir, upto);
        // Failed: go on in memory; try again at the next number.
        self.reserved = if r.is_ok() { upto } else { self.next };
        r
    }
}

/// Write `upto` as the sequence file (temporary file, sync, rename).
fn write_reservation(dir: &Path, upto: u64) -> Result<(), String> {
    crate::sys::fs::replace_with(
        &dir.join("seq.tmp"),
        &dir.join(SEQ_FILE),
        format!("{upto}\n").as_bytes(),
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::read::line_seq;

    /// A reader going on from its place reads what `read_after` reads,
    /// across a rotation too.
    #[test]
    fn reading_on_from_a_place_gives_what_a_full_scan_gives() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(d.path(), 3).unwrap();
        j.limit = 2000;
        let mut place = None;
        let (mut after, mut got) = (0, Vec::new());
        for seq in 1..=40 {
            j.append(&test_event(seq)).unwrap();
            if seq % 7 == 0 {
                let read = read_after_at(d.path(), after, 3, &mut place);
                assert_eq!(
                    read.iter().map(|e| e.seq).collect::<Vec<_>>(),
                    read_after(d.path(), after, 3)
                        .iter()
                        .map(|e| e.seq)
                        .collect::<Vec<_>>(),
                    "after {after}"
                );
                after = read.last().map_or(after, |e| e.seq);
                got.extend(read.iter().map(|e| e.seq));
            }
        }
        loop {
            let read = read_after_at(d.path(), after, 3, &mut place);
            if read.is_empty() {
                break;
            }
            after = read.last().unwrap().seq;
            got.extend(read.iter().map(|e| e.seq));
        }
        assert_eq!(got, (1..=40).collect::<Vec<_>>());
    }

    #[test]
    fn a_lines_seq_is_read_from_its_start_as_serde_writes_it() {
        let line = serde_json::to_string(&test_event(4711)).unwrap();
        assert_eq!(line_seq(&line), Some(4711));
        assert_eq!(line_seq("{\"time\":1}"), None);
        assert_eq!(
            line_seq("{\"seq\":12"),
            None,
            "cut: parsed in full, not guessed"
        );
    }

    #[test]
    fn a_partial_last_line_is_removed_at_open() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE);
        std::fs::write(&p, "{\"a\":1}\n{\"b\":").unwrap();
        let j = Journal::open(d.path(), KEEP).unwrap();
        assert_eq!(j.size, 8);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":1}\n");
    }

    pub(crate) fn test_event(seq: u64) -> Event {
        Event {
            seq,
            time: String::new(),
            time_ms: seq,
            id: "PW1001".into(),
            name: "daemonStarted".into(),
            severity: crate::model::event::Severity::Info,
            host: "h".into(),
            target: None,
            pid: None,
            fields: Default::default(),
            text: "x".repeat(100),
            lang: "en".into(),
        }
    }

    #[test]
    fn rotation_keeps_the_configured_generations_and_read_sees_them_all() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(d.path(), 2).unwrap();
        j.limit = 700; // about two events per file
        let ev = test_event;
        for seq in 1..=20 {
            j.append(&ev(seq)).unwrap();
        }
        assert!(d.path().join("events.jsonl.2").exists());
        assert!(!d.path().join("events.jsonl.3").exists());
        let seqs: Vec<u64> = read(d.path(), 0).iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        assert_eq!(seqs.last(), Some(&20));
        assert!(seqs.len() >= 4 && seqs.len() <= 8, "{seqs:?}");
    }

    /// A reader behind keeps its events in the journal past `keep`
    /// generations; once it has done with them, the next rotation lets
    /// them go. `read_after` gives it exactly what it has still to do.
    #[test]
    fn rotation_keeps_what_the_slowest_reader_still_needs() {
        let d = tempfile::tempdir().unwrap();
        let readers = std::sync::Arc::new(crate::store::cursor::Cursors::open(d.path()));
        readers.join("slow", 3);
        let mut j = Journal::open(d.path(), 2)
            .unwrap()
            .with_readers(readers.clone(), 1 << 30);
        j.limit = 700; // about two events per file
        for seq in 1..=20 {
            j.append(&test_event(seq)).unwrap();
        }
        let behind: Vec<u64> = read_after(d.path(), 3, usize::MAX)
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(
            behind,
            (4..=20).collect::<Vec<_>>(),
            "nothing the reader needs is gone"
        );
        assert!(
            d.path().join("events.jsonl.3").exists(),
            "kept past journal-keep = 2"
        );
        let first5: Vec<u64> = read_after(d.path(), 3, 5).iter().map(|e| e.seq).collect();
        assert_eq!(first5, vec![4, 5, 6, 7, 8], "at most max, oldest first");
        for seq in 21..=30 {
            j.append(&test_event(seq)).unwrap();
        }
        assert!(
            d.path().join("events.jsonl.4").exists(),
            "still behind at 3"
        );
        readers.done("slow", 30);
        for seq in 31..=34 {
            j.append(&test_event(seq)).unwrap();
        }
        assert!(d.path().join("events.jsonl.2").exists());
        assert!(
            !d.path().join("events.jsonl.3").exists(),
            "done with: let go"
        );
        let rest: Vec<u64> = read_after(d.path(), 30, 10).iter().map(|e| e.seq).collect();
        assert_eq!(rest, vec![31, 32, 33, 34]);
    }

    /// Past spool-max, a reader behind gives up the oldest events: its
    /// cursor passes them, and it is told exactly how many of the events
    /// it takes were lost, and their seq range; a reader that was done
    /// with them loses nothing.
    #[test]
    fn past_spool_max_the_oldest_events_are_given_up_and_counted() {
        let d = tempfile::tempdir().unwrap();
        let readers = std::sync::Arc::new(crate::store::cursor::Cursors::open(d.path()));
        readers.join("slow", 0);
        readers.join("fast", 0);
        // "slow" takes only even seqs.
        readers.want(
            "slow",
            std::sync::Arc::new(|e: &Event| e.seq.is_multiple_of(2)),
        );
        let mut j = Journal::open(d.path(), 1)
            .unwrap()
            .with_readers(readers.clone(), 4 * 700);
        j.limit = 700; // about two events per file
        for seq in 1..=40 {
            j.append(&test_event(seq)).unwrap();
            readers.done("fast", seq);
        }
        let g = readers.take_given_up("slow").expect("slow lost events");
        let kept_from = read_after(d.path(), 0, usize::MAX)[0].seq;
        let lost_even = (1..kept_from).filter(|s| s.is_multiple_of(2)).count() as u64;
        assert_eq!(g.count, lost_even, "{g:?}, journal starts at {kept_from}");
        let last_even = (1..kept_from)
            .filter(|s| s.is_multiple_of(2))
            .max()
            .unwrap();
        assert_eq!((g.first, g.last), (2, last_even), "{g:?}");
        assert!(readers.position("slow") >= Some(kept_from - 1));
        assert!(readers.take_given_up("slow").is_none(), "said once");
        assert!(readers.take_given_up("fast").is_none(), "fast lost nothing");
        let files = (1..)
            .take_while(|n| generation(j.path(), *n).exists())
            .count();
        assert!(files <= 4, "no more than spool-max: {files} generations");
    }

    #[test]
    fn sequence_numbers_continue_past_every_reservation() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, r, _) = Seq::open(d.path());
        r.unwrap();
        assert_eq!(s.take().0, 1);
        assert_eq!(s.take().0, 2);
        // Killed here: the next run starts after the whole reserved block.
        drop(s);
        let (mut s, _, _) = Seq::open(d.path());
        assert_eq!(s.take().0, SEQ_BLOCK + 2);
        // Past half a block, the next is written ahead, before the numbers
        // run out: every number given out is below what the file says.
        let saved = |d: &Path| -> u64 {
            std::fs::read_to_string(d.join(SEQ_FILE))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let mut last = 0;
        for _ in 0..3 * SEQ_BLOCK {
            let (n, r) = s.take();
            assert!(r.is_none_or(|r| r.is_ok()));
            assert!(n > last);
            last = n;
        }
        s.collect(true);
        assert!(
            saved(d.path()) > last + SEQ_BLOCK / 2,
            "{} {last}",
            saved(d.path())
        );
        // Killed at any point: a new run starts after every number given.
        drop(s);
        let (mut s, _, _) = Seq::open(d.path());
        assert!(s.take().0 > last);
    }

    /// A damaged sequence file (u64::MAX, garbage) is refused: numbers
    /// go on after the journal's highest, never wrap to 0.
    #[test]
    fn a_sequence_file_that_cannot_be_right_is_refused_and_never_wraps() {
        for bad in ["18446744073709551615", "9007199254740992", "25x", "-3"] {
            let d = tempfile::tempdir().unwrap();
            let mut j = Journal::open(d.path(), 3).unwrap();
            for seq in 1..=25 {
                j.append(&test_event(seq)).unwrap();
            }
            std::fs::write(d.path().join(SEQ_FILE), format!("{bad}\n")).unwrap();
            let (mut s, r, refused) = Seq::open(d.path());
            assert!(r.is_ok());
            let refused = refused.expect("refused");
            assert_eq!(refused.value, bad);
            assert_eq!((refused.journal, refused.next), (25, 26));
            assert_eq!(s.take().0, 26, "{bad}");
        }
        // A plausible file ahead of the journal is kept.
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(SEQ_FILE), "5000\n").unwrap();
        let (mut s, _, refused) = Seq::open(d.path());
        assert_eq!((s.take().0, refused), (5001, None));
    }

    #[test]
    fn a_sequence_file_that_cannot_be_written_is_said_and_numbers_go_on() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, r, _) = Seq::open(d.path());
        r.unwrap();
        // The directory goes read-only (as root: a file in the way of the
        // temporary name, a directory, makes the write fail instead).
        std::fs::create_dir(d.path().join("seq.tmp")).unwrap();
        std::fs::write(d.path().join("seq.tmp").join("x"), "").unwrap();
        let mut errors = 0;
        let mut last = 0;
        for _ in 0..2 * SEQ_BLOCK {
            let (n, r) = s.take();
            if let Some(Err(_)) = r {
                errors += 1;
            }
            assert!(n > last);
            last = n;
        }
        assert!(errors >= 1, "the failed reservation is said");
    }
}
