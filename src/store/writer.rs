//! The store's writer threads, the sole writers of STATE-DIR while the
//! daemon runs:
//!
//! - `procward-io`: the journal. Each event is appended (the write has
//!   returned) before anyone else sees it: then the console, followers of
//!   `events --follow`, and the sinks (`Deliver`) get it, in seq order.
//! - `procward-sync`: what may wait for the disk without holding up an
//!   event: the journal's fsync in groups ([`SYNC_EVERY`] events or
//!   [`SYNC_WITHIN`], whichever comes first) and the state file.
//! - `procward-rec` (records.rs): a restart's record, never behind either.

use super::queue::{queue, Queue, QueueRx};
use super::records::{records_loop, RecMsg};
use super::{journal, Reporter};
use crate::model::event::{Event, EventSpec};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// The journal is fsynced once this many events wait for it...
const SYNC_EVERY: u32 = 256;
/// ...or once the oldest has waited this long. fdatasync of the journal
/// took 0.15 ms (median) to 4 ms (p99) on the test machine's ext4, so a
/// sync every 50 ms costs at most 20 a second whatever the event rate;
/// a power loss loses at most the events of the last 50 ms (README,
/// "What a power loss can lose").
const SYNC_WITHIN: Duration = Duration::from_millis(50);

/// Where each event goes once it is in the journal (the sinks' queues).
pub type Deliver = Box<dyn Fn(&Arc<Event>) + Send>;

enum IoMsg {
    Event(Arc<Event>, Option<String>),
    Sync(std::sync::mpsc::Sender<()>),
    /// Answered once every event before it is journaled.
    Journaled(tokio::sync::oneshot::Sender<()>),
}

enum SyncMsg {
    /// Events (how many) were appended to this journal file.
    Wrote(Arc<File>, u32),
    /// The state slot holds a newer snapshot.
    State,
    /// Sync the journal now and answer.
    Flush(std::sync::mpsc::Sender<()>),
    /// A reader's cursor moved (saved within SYNC_WITHIN).
    CursorMoved,
}

/// One target's record to write (`state::Records`).
pub struct InFlight {
    pub dir: PathBuf,
    pub target: String,
    pub state: crate::monitor::Persisted,
    /// `state::stamp()` when the loop took it: orders it against the
    /// whole-file snapshots taken in the same loop.
    pub saved_ms: u64,
}

/// Write failures of procward's own files, one PW1012 per outage and one
/// PW1013 when the file can be written again.
#[derive(Default)]
pub struct Outages {
    failures: std::collections::HashMap<String, u64>,
}

impl Outages {
    /// A write of `what` at `path` failed: the event to say, if this
    /// failure starts an outage.
    pub fn failed(&mut self, what: &str, path: &std::path::Path, error: &str) -> Option<EventSpec> {
        let n = self.failures.entry(what.to_string()).or_insert(0);
        *n += 1;
        (*n == 1).then(|| {
            EventSpec::new(crate::model::event::msg::WRITE_FAILED)
                .field("what", what)
                .field("path", path.display().to_string())
                .field("error", error)
        })
    }

    /// A write of `what` succeeded: the event to say, if it ends an outage.
    pub fn ok(&mut self, what: &str, path: &std::path::Path) -> Option<EventSpec> {
        self.failures.remove(what).map(|n| {
            EventSpec::new(crate::model::event::msg::WRITE_RECOVERED)
                .field("what", what)
                .field("path", path.display().to_string())
                .field("failures", n)
        })
    }
}

/// The outages, shared by the I/O and the records threads.
#[derive(Clone, Default)]
pub(crate) struct SharedOutages(Arc<std::sync::Mutex<Outages>>);

impl SharedOutages {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Outages> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Only the newest state snapshot matters: one slot, not a queue, so a
/// burst of changes with many targets never piles up snapshots.
type StateSlot = Arc<std::sync::Mutex<Option<super::state::Pending>>>;

/// Fans events out. Cheap to call from the event loop: it never blocks.
pub struct Notifier {
    /// The journal's readers (cursor.rs).
    cursors: Arc<super::cursor::Cursors>,
    io: Queue<IoMsg>,
    durable: Queue<SyncMsg>,
    /// The sender readers' cursor moves go through: they hold it weakly,
    /// so a reader still running never keeps the sync thread (and the
    /// daemon's exit) waiting.
    moved: Arc<Queue<SyncMsg>>,
    rec: Queue<RecMsg>,
    state: StateSlot,
    pub bus: broadcast::Sender<Arc<Event>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// The journal thread's part.
struct Io {
    journal: journal::Journal,
    outages: SharedOutages,
    report: Reporter,
    bus: broadcast::Sender<Arc<Event>>,
    deliver: Deliver,
    durable: Queue<SyncMsg>,
}

/// Events journaled in one write, at most (what waits when the journal
/// thread wakes: one write and one wake-up of the sync thread for all).
const IO_BATCH: usize = 256;

impl Io {
    fn run(mut self, rx: QueueRx<IoMsg>) {
        let mut events: Vec<(Arc<Event>, Option<String>)> = Vec::with_capacity(IO_BATCH);
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(m) = next.take() {
                match m {
                    IoMsg::Event(ev, console) => events.push((ev, console)),
                    // In order: the events before it are journaled first.
                    IoMsg::Sync(done) => {
                        self.events(&mut events);
                        let _ = done.send(());
                    }
                    IoMsg::Journaled(done) => {
                        self.events(&mut events);
                        let _ = done.send(());
                    }
                }
                if events.len() < IO_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            self.events(&mut events);
        }
    }

    /// Journal the events first (one write); then the console, the
    /// followers and the sinks. A journal that cannot be written (PW1012)
    /// does not keep an event from the manager.
    fn events(&mut self, events: &mut Vec<(Arc<Event>, Option<String>)>) {
        if events.is_empty() {
            return;
        }
        let said = match self.journal.append_all(events.iter().map(|(e, _)| &**e)) {
            Err(e) => {
                eprintln!("procward: cannot write the event journal: {e}");
                let path = self.journal.path();
                self.outages
                    .lock()
                    .failed("event journal", path, &e.to_string())
            }
            Ok(()) => {
                let n = u32::try_from(events.len()).unwrap_or(u32::MAX);
                let _ = self
                    .durable
                    .send(SyncMsg::Wrote(self.journal.file().clone(), n));
                self.outages.lock().ok("event journal", self.journal.path())
            }
        };
        if let Some(spec) = said {
            (self.report)(spec);
        }
        // The console's lines in one write.
        let mut lines = String::new();
        for line in events.iter().filter_map(|(_, c)| c.as_deref()) {
            lines.push_str(line);
            lines.push('\n');
        }
        if !lines.is_empty() {
            use std::io::Write;
            let _ = std::io::stderr().lock().write_all(lines.as_bytes());
        }
        for (ev, _) in events.drain(..) {
            let _ = self.bus.send(ev.clone());
            (self.deliver)(&ev);
        }
    }
}

/// The sync thread's part: the journal's group fsync, the state file.
struct Durable {
    journal: PathBuf,
    cursors: Option<Arc<super::cursor::Cursors>>,
    slot: StateSlot,
    folded: Queue<RecMsg>,
    outages: SharedOutages,
    report: Reporter,
    /// The journal file written since its last sync, how many events, and
    /// since when.
    dirty: Option<(Arc<File>, u32, Instant)>,
    /// Since when a cursor has moved unsaved.
    moved: Option<Instant>,
}

impl Durable {
    fn run(mut self, rx: QueueRx<SyncMsg>) {
        loop {
            let since = self
                .dirty
                .as_ref()
                .map(|d| d.2)
                .into_iter()
                .chain(self.moved)
                .min();
            let m = match since {
                None => rx.recv().map_err(|_| true),
                Some(since) => {
                    let left = (since + SYNC_WITHIN).saturating_duration_since(Instant::now());
                    rx.recv_timeout(left)
                        .map_err(|e| matches!(e, std::sync::mpsc::RecvTimeoutError::Disconnected))
                }
            };
            match m {
                Ok(SyncMsg::Wrote(f, n)) => self.wrote(f, n),
                Ok(SyncMsg::State) => self.save_state(),
                Ok(SyncMsg::CursorMoved) => {
                    self.moved.get_or_insert_with(Instant::now);
                }
                Ok(SyncMsg::Flush(done)) => {
                    self.sync();
                    let _ = done.send(());
                }
                Err(false) => self.sync(),
                Err(true) => break,
            }
        }
        self.sync();
    }

    fn wrote(&mut self, f: Arc<File>, k: u32) {
        match &mut self.dirty {
            // The journal rotated: the old file's last events first.
            Some((old, _, _)) if !Arc::ptr_eq(old, &f) => {
                self.sync();
                self.dirty = Some((f, k, Instant::now()));
            }
            Some((_, n, _)) => *n += k,
            None => self.dirty = Some((f, k, Instant::now())),
        }
        if self
            .dirty
            .as_ref()
            .is_some_and(|(_, n, _)| *n >= SYNC_EVERY)
        {
            self.sync();
        }
    }

    fn sync(&mut self) {
        self.moved = None;
        if let Some(c) = &self.cursors {
            if let Err(e) = c.save() {
                eprintln!("procward: cannot save the readers' cursors: {e}");
            }
        }
        let Some((f, _, _)) = self.dirty.take() else {
            return;
        };
        if let Err(e) = f.sync_data() {
            eprintln!("procward: cannot sync the event journal: {e}");
            let said = self
                .outages
                .lock()
                .failed("event journal", &self.journal, &e.to_string());
            if let Some(spec) = said {
                (self.report)(spec);
            }
        }
    }

    fn save_state(&mut self) {
        let snapshot = self.slot.lock().expect("state slot").take();
        let Some(s) = snapshot else {
            return;
        };
        let (path, stamp) = (s.path(), s.stamp());
        let said = match s.write() {
            Err(e) => {
                eprintln!("procward: cannot save state in {}: {e}", path.display());
                self.outages
                    .lock()
                    .failed("state file", &path, &e.to_string())
            }
            Ok(()) => {
                let _ = self.folded.send(RecMsg::Folded(stamp));
                self.outages.lock().ok("state file", &path)
            }
        };
        if let Some(spec) = said {
            (self.report)(spec);
        }
    }
}

fn thread(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(f)
}

impl Notifier {
    /// `report` receives the events about the journal's and the state
    /// file's own writes (PW1012, PW1013); `deliver` each event once it is
    /// in the journal.
    pub fn start(
        state_dir: &Path,
        journal_keep: u32,
        spool_max: u64,
        report: Reporter,
        deliver: Deliver,
    ) -> std::io::Result<Notifier> {
        let cursors = Arc::new(super::cursor::Cursors::open(state_dir));
        let journal = journal::Journal::open(state_dir, journal_keep)?
            .with_readers(cursors.clone(), spool_max);
        let (io, io_rx) = queue::<IoMsg>(65_536);
        let (durable, durable_rx) = queue::<SyncMsg>(usize::MAX);
        let (rec, rec_rx) = queue::<RecMsg>(65_536);
        // One account of outages for every thread: each kind of write
        // failure is said once per outage, whichever thread meets it.
        let outages = SharedOutages::default();
        let state: StateSlot = Arc::default();
        // Followers of `events --follow` that fall this far behind are told
        // to read the journal.
        let (bus, _) = broadcast::channel(512);
        let d = Durable {
            journal: journal.path().to_path_buf(),
            cursors: Some(cursors.clone()),
            moved: None,
            slot: state.clone(),
            folded: rec.clone(),
            outages: outages.clone(),
            report: report.clone(),
            dirty: None,
        };
        let i = Io {
            journal,
            outages: outages.clone(),
            report: report.clone(),
            bus: bus.clone(),
            deliver,
            durable: durable.clone(),
        };
        let dir = state_dir.to_path_buf();
        let threads = vec![
            thread("procward-rec", move || {
                records_loop(rec_rx, dir, report, outages)
            })?,
            thread("procward-sync", move || d.run(durable_rx))?,
            thread("procward-io", move || i.run(io_rx))?,
        ];
        Ok(Notifier {
            cursors,
            io,
            moved: Arc::new(durable.clone()),
            durable,
            rec,
            state,
            bus,
            threads,
        })
    }

    /// The journal's readers: each joins with its name, reads with
    /// `journal::read_after` from its cursor and moves it when done; the
    /// sync thread saves the cursors with the journal's fsync.
    pub fn cursors(&self) -> Arc<super::cursor::Cursors> {
        self.cursors.clone()
    }

    /// What a reader calls when its cursor moved: the cursors are saved
    /// within SYNC_WITHIN.
    pub fn cursor_moved(&self) -> Arc<dyn Fn() + Send + Sync> {
        let q = Arc::downgrade(&self.moved);
        Arc::new(move || {
            if let Some(q) = q.upgrade() {
                let _ = q.try_send(SyncMsg::CursorMoved);
            }
        })
    }

    /// Journal `ev`, then hand it on (console line first, when given).
    /// Never dropped: past the bound the queue grows, and says so.
    pub fn publish(&self, ev: Arc<Event>, console: Option<String>) {
        if let Err(m) = self.io.try_send(IoMsg::Event(ev, console)) {
            if let IoMsg::Event(ev, _) = &m {
                eprintln!(
                    "procward: the journal is behind by 65,536 events (slow disk?); event {} {} waits",
                    ev.seq, ev.id
                );
            }
            let _ = self.io.send(m);
        }
    }

    /// Completes once every event published so far is journaled (and
    /// handed on).
    pub fn journaled(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = self.io.send(IoMsg::Journaled(tx));
        rx
    }

    pub fn save_state(&self, s: super::state::Pending) {
        let older = self.state.lock().expect("state slot").replace(s);
        if older.is_none() {
            // State must not be lost: queued past the bound, never dropped.
            let _ = self.durable.send(SyncMsg::State);
        }
    }

    /// Write one target's state ahead of the whole state file (a restart
    /// about to run); `synced` after it waits for this record only, plus
    /// the records sent before it (never for the journal or a state file).
    pub fn save_inflight(&self, r: InFlight) {
        let _ = self.rec.send(RecMsg::Record(Box::new(r)));
    }

    /// Completes once the records sent so far are written (or failed to
    /// be): what must be written before a restart script runs.
    pub fn synced(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = self.rec.try_send(RecMsg::Synced(tx));
        rx
    }

    /// Wait until everything sent so far is written, handed on and synced
    /// (the journal, the state file, the records).
    pub fn sync(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.io.send(IoMsg::Sync(tx)).is_ok() {
            let _ = rx.recv();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        if self.durable.send(SyncMsg::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        if self.rec.send(RecMsg::Sync(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.sync();
        // Each thread ends with its last sender: the journal thread's
        // (holding the sync thread's), the sync thread's (holding the
        // records thread's), then the records thread's.
        let (dummy, _) = queue(1);
        drop(std::mem::replace(&mut self.io, dummy));
        let (dummy, _) = queue(1);
        drop(std::mem::replace(&mut self.durable, dummy));
        let (dummy, _) = queue(1);
        drop(std::mem::replace(&mut self.moved, Arc::new(dummy)));
        let (dummy, _) = queue(1);
        drop(std::mem::replace(&mut self.rec, dummy));
        for t in self.threads.drain(..).rev() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::tests::test_event;
    use std::sync::Mutex;

    /// Every event is in the journal file when the sinks get it, and
    /// they get them all, in order.
    #[test]
    fn an_event_reaches_the_sinks_only_once_it_is_in_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(journal::FILE);
        let seen: Arc<Mutex<Vec<(u64, bool)>>> = Arc::default();
        let log = seen.clone();
        let deliver: Deliver = Box::new(move |ev| {
            let journal = std::fs::read_to_string(&file).unwrap_or_default();
            let there = journal.contains(&format!("\"seq\":{},", ev.seq));
            log.lock().unwrap().push((ev.seq, there));
        });
        let report: Reporter = Arc::new(|_| {});
        let n = Notifier::start(dir.path(), 3, 1 << 30, report, deliver).unwrap();
        let mut follower = n.bus.subscribe();
        for seq in 1..=300 {
            n.publish(Arc::new(test_event(seq)), None);
        }
        n.sync();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 300);
        for (i, (seq, there)) in seen.iter().enumerate() {
            assert_eq!(*seq, i as u64 + 1, "in order");
            assert!(
                there,
                "event {seq} reached a sink before the journal had it"
            );
        }
        assert_eq!(
            follower.try_recv().unwrap().seq,
            1,
            "followers get them too"
        );
    }

    fn durable(dir: &Path) -> Durable {
        let (folded, _) = queue(1);
        Durable {
            journal: dir.join(journal::FILE),
            cursors: None,
            moved: None,
            slot: Arc::default(),
            folded,
            outages: SharedOutages::default(),
            report: Arc::new(|_| {}),
            dirty: None,
        }
    }

    /// The journal is synced every SYNC_EVERY events, and a rotated file's
    /// last events are synced before the new file's.
    #[test]
    fn the_journal_is_synced_in_groups_and_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = durable(dir.path());
        let a = Arc::new(File::create(dir.path().join("a")).unwrap());
        for _ in 1..SYNC_EVERY {
            d.wrote(a.clone(), 1);
        }
        assert_eq!(d.dirty.as_ref().map(|x| x.1), Some(SYNC_EVERY - 1));
        d.wrote(a.clone(), 1);
        assert!(d.dirty.is_none(), "synced at SYNC_EVERY");
        d.wrote(a.clone(), 1);
        let b = Arc::new(File::create(dir.path().join("b")).unwrap());
        d.wrote(b.clone(), 1);
        let (f, n, _) = d.dirty.as_ref().unwrap();
        assert!(Arc::ptr_eq(f, &b) && *n == 1, "a synced, b waits");
    }

    /// A lone event is synced within SYNC_WITHIN by the running thread.
    #[test]
    fn a_lone_event_is_synced_within_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = queue::<SyncMsg>(8);
        let d = durable(dir.path());
        let t = std::thread::spawn(move || d.run(rx));
        let f = Arc::new(File::create(dir.path().join("a")).unwrap());
        tx.send(SyncMsg::Wrote(f.clone(), 1)).ok().unwrap();
        // The thread holds the file until it has synced it.
        let deadline = Instant::now() + SYNC_WITHIN * 40;
        while Arc::strong_count(&f) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(Arc::strong_count(&f), 1, "synced and released");
        drop(tx);
        t.join().unwrap();
    }
}
