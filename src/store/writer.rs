//! The store's writer threads: the journal (and the console in the
//! foreground), the state file, and the records of restarts under way.
//! The sole writers of STATE-DIR while the daemon runs.

use super::{journal, Reporter};
use crate::model::event::{Event, EventSpec};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::broadcast;

enum IoMsg {
    Event(Arc<Event>, Option<String>),
    /// The state slot holds a newer snapshot.
    State,
    Sync(std::sync::mpsc::Sender<()>),
}

/// To the records thread: a restart's record never waits behind the
/// journal or a state file's fsync (40–85 ms when the disk flushes).
enum RecMsg {
    /// One target's record: before its restart script runs, or a change
    /// of one target among many (daemon/persist.rs).
    Record(Box<InFlight>),
    /// A state file with this stamp was written.
    Folded(u64),
    Sync(std::sync::mpsc::Sender<()>),
    /// Like Sync, for an async waiter.
    Synced(tokio::sync::oneshot::Sender<()>),
}

/// A queue to a writer thread, bounded for `try_send` at `cap` messages.
/// Not `std::sync::mpsc::sync_channel(cap)`: that allocates and touches
/// all of its slots at once (4 MiB resident for the two 65,536-message
/// queues below, which are nearly always empty: a quarter of an idle
/// procward's memory at 100 targets). The unbounded channel allocates its
/// slots in small blocks as they are used; the count keeps the bound.
struct Queue<T> {
    tx: std::sync::mpsc::Sender<T>,
    len: Arc<std::sync::atomic::AtomicUsize>,
    cap: usize,
}

struct QueueRx<T> {
    rx: std::sync::mpsc::Receiver<T>,
    len: Arc<std::sync::atomic::AtomicUsize>,
}

fn queue<T>(cap: usize) -> (Queue<T>, QueueRx<T>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let len = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    (
        Queue {
            tx,
            len: len.clone(),
            cap,
        },
        QueueRx { rx, len },
    )
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            tx: self.tx.clone(),
            len: self.len.clone(),
            cap: self.cap,
        }
    }
}

impl<T> Queue<T> {
    /// Queue `m` whatever the count (what must not be dropped).
    fn send(&self, m: T) -> Result<(), T> {
        use std::sync::atomic::Ordering::Relaxed;
        self.len.fetch_add(1, Relaxed);
        self.tx.send(m).map_err(|e| {
            self.len.fetch_sub(1, Relaxed);
            e.0
        })
    }

    /// Queue `m` unless `cap` messages wait.
    fn try_send(&self, m: T) -> Result<(), T> {
        if self.len.load(std::sync::atomic::Ordering::Relaxed) >= self.cap {
            return Err(m);
        }
        self.send(m)
    }
}

impl<T> QueueRx<T> {
    fn took(&self, m: T) -> T {
        self.len.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        m
    }

    fn recv(&self) -> Result<T, std::sync::mpsc::RecvError> {
        self.rx.recv().map(|m| self.took(m))
    }

    fn try_recv(&self) -> Result<T, std::sync::mpsc::TryRecvError> {
        self.rx.try_recv().map(|m| self.took(m))
    }
}

impl<T> Iterator for QueueRx<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.recv().ok()
    }
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
struct SharedOutages(Arc<std::sync::Mutex<Outages>>);

impl SharedOutages {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outages> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Flush the records written so far; a failure is a state-file outage.
fn sync_records(
    records: &mut super::state::Records,
    state_dir: &std::path::Path,
    outages: &SharedOutages,
    report: &Reporter,
) {
    if !records.unsynced() {
        return;
    }
    let file = state_dir.join("inflight");
    let said = match records.sync() {
        Err(e) => {
            eprintln!("procward: cannot sync {}: {e}", file.display());
            outages.lock().failed("state file", &file, &e.to_string())
        }
        Ok(()) => outages.lock().ok("state file", &file),
    };
    if let Some(spec) = said {
        report(spec);
    }
}

/// The records thread: writes each record, answers `Synced` once what
/// came before is written, flushes after that and whenever it falls idle.
fn records_loop(rx: QueueRx<RecMsg>, state_dir: PathBuf, report: Reporter, outages: SharedOutages) {
    // The records written since the ring last started over: one equal to
    // the last written is not written again.
    let mut written: HashMap<String, crate::monitor::Persisted> = HashMap::new();
    let mut records = super::state::Records::default();
    if let Err(e) = records.prepare(&state_dir) {
        // Records are written as files of their own meanwhile.
        eprintln!(
            "procward: cannot make {}: {e}; restarts are recorded in files of their own",
            state_dir.join("inflight/ring").display()
        );
    }
    loop {
        let m = match rx.try_recv() {
            Ok(m) => m,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                sync_records(&mut records, &state_dir, &outages, &report);
                match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                }
            }
            Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
        };
        match m {
            RecMsg::Record(r) => {
                if written.get(&r.target) == Some(&r.state) {
                    continue;
                }
                let file = r.dir.join("inflight");
                let said = match records.save(&r.dir, &r.target, &r.state, r.saved_ms) {
                    Err(e) => {
                        eprintln!(
                            "procward: cannot save the restart of {} in {}: {e}",
                            r.target,
                            file.display()
                        );
                        outages.lock().failed("state file", &file, &e.to_string())
                    }
                    Ok(()) => {
                        written.insert(r.target, r.state);
                        outages.lock().ok("state file", &file)
                    }
                };
                if let Some(spec) = said {
                    report(spec);
                }
            }
            RecMsg::Folded(upto) => {
                records.folded(upto);
                written.clear();
            }
            RecMsg::Sync(done) => {
                sync_records(&mut records, &state_dir, &outages, &report);
                let _ = done.send(());
            }
            RecMsg::Synced(done) => {
                // The restart goes on once its record is written; the
                // flush follows (state::Records).
                let _ = done.send(());
                sync_records(&mut records, &state_dir, &outages, &report);
            }
        }
    }
    sync_records(&mut records, &state_dir, &outages, &report);
}

/// Only the newest state snapshot matters: one slot, not a queue, so a
/// burst of changes with many targets never piles up snapshots.
type StateSlot = Arc<std::sync::Mutex<Option<super::state::Pending>>>;

/// Fans events out. Cheap to call from the event loop: it never blocks.
pub struct Notifier {
    io: Queue<IoMsg>,
    rec: Queue<RecMsg>,
    state: StateSlot,
    pub bus: broadcast::Sender<Arc<Event>>,
    thread: Option<std::thread::JoinHandle<()>>,
    rec_thread: Option<std::thread::JoinHandle<()>>,
}

impl Notifier {
    /// `report` receives the events about the journal's and the state
    /// file's own writes (PW1012, PW1013).
    pub fn start(
        state_dir: PathBuf,
        journal_keep: u32,
        report: Reporter,
    ) -> std::io::Result<Notifier> {
        let mut journal = journal::Journal::open(&state_dir, journal_keep)?;
        let (tx, rx) = queue::<IoMsg>(65_536);
        let (rec, rec_rx) = queue::<RecMsg>(65_536);
        // One account of outages for both threads: each kind of write
        // failure is said once per outage, whichever thread meets it.
        let outages = SharedOutages::default();
        let rec_thread = {
            let (dir, report, outages) = (state_dir.clone(), report.clone(), outages.clone());
            std::thread::Builder::new()
                .name("procward-rec".into())
                .spawn(move || records_loop(rec_rx, dir, report, outages))?
        };
        let folded = rec.clone();
        let state: StateSlot = Arc::default();
        let slot = state.clone();
        let thread = std::thread::Builder::new()
            .name("procward-io".into())
            .spawn(move || {
                use std::io::Write;
                for m in rx {
                    match m {
                        IoMsg::Event(ev, console) => {
                            let said = match journal.append(&ev) {
                                Err(e) => {
                                    eprintln!("procward: cannot write the event journal: {e}");
                                    outages.lock().failed(
                                        "event journal",
                                        journal.path(),
                                        &e.to_string(),
                                    )
                                }
                                Ok(()) => outages.lock().ok("event journal", journal.path()),
                            };
                            if let Some(spec) = said {
                                report(spec);
                            }
                            if let Some(line) = console {
                                let mut err = std::io::stderr().lock();
                                let _ = writeln!(err, "{line}");
                            }
                        }
                        IoMsg::State => {
                            let snapshot = slot.lock().expect("state slot").take();
                            if let Some(s) = snapshot {
                                let (path, stamp) = (s.path(), s.stamp());
                                let said = match s.write() {
                                    Err(e) => {
                                        eprintln!(
                                            "procward: cannot save state in {}: {e}",
                                            path.display()
                                        );
                                        outages.lock().failed("state file", &path, &e.to_string())
                                    }
                                    Ok(()) => {
                                        let _ = folded.send(RecMsg::Folded(stamp));
                                        outages.lock().ok("state file", &path)
                                    }
                                };
                                if let Some(spec) = said {
                                    report(spec);
                                }
                            }
                        }
                        IoMsg::Sync(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })?;
        // Followers of `events --follow` that fall this far behind are told
        // to read the journal.
        let (bus, _) = broadcast::channel(512);
        Ok(Notifier {
            io: tx,
            rec,
            state,
            bus,
            thread: Some(thread),
            rec_thread: Some(rec_thread),
        })
    }

    pub fn publish(&self, ev: Arc<Event>, console: Option<String>) {
        if self.io.try_send(IoMsg::Event(ev.clone(), console)).is_err() {
            eprintln!(
                "procward: journal queue full, event {} {} not journaled",
                ev.seq, ev.id
            );
        }
        let _ = self.bus.send(ev);
    }

    pub fn save_state(&self, s: super::state::Pending) {
        let older = self.state.lock().expect("state slot").replace(s);
        if older.is_none() {
            // State must not be lost: queued past the bound, never dropped.
            let _ = self.io.send(IoMsg::State);
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

    /// Wait until everything sent so far is written (and the records
    /// flushed).
    pub fn sync(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.io.send(IoMsg::Sync(tx)).is_ok() {
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
        let (dummy, _) = queue(1);
        drop(std::mem::replace(&mut self.io, dummy));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // The I/O thread (its `Folded` sender) is gone: the records
        // thread ends once this last sender goes too.
        let (dummy, _) = queue(1);
        drop(std::mem::replace(&mut self.rec, dummy));
        if let Some(t) = self.rec_thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod queue_tests {
    use super::*;

    /// `try_send` refuses past the bound, `send` never does; receiving
    /// makes room again; nothing is allocated for slots not used.
    #[test]
    fn the_queue_keeps_its_bound_for_try_send_only() {
        let (tx, mut rx) = queue::<u32>(3);
        for i in 0..3 {
            assert_eq!(tx.try_send(i), Ok(()));
        }
        assert_eq!(tx.try_send(9), Err(9), "full");
        assert_eq!(tx.send(3), Ok(()), "what must not be dropped is queued");
        assert_eq!(rx.recv(), Ok(0));
        assert_eq!(tx.try_send(4), Err(4), "4 still queued: full");
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(tx.try_send(4), Ok(()));
        drop(tx);
        assert_eq!(rx.by_ref().collect::<Vec<_>>(), vec![2, 3, 4]);
    }
}
