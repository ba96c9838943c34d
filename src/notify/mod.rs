//! Notification: every event goes to the journal (and the console in the
//! foreground) on a dedicated I/O thread, to followers of `procward events
//! --follow`, and to each configured sink through its own bounded queue, so
//! that a slow receiver never blocks monitoring.

pub mod journal;
pub mod queue;
pub mod render;
pub mod snmp;
pub mod syslog;
pub mod usm;

use crate::event::Event;
use crate::monitor::Persisted;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::broadcast;

enum IoMsg {
    Event(Arc<Event>, Option<String>),
    /// The state slot holds a newer snapshot.
    State,
    Sync(std::sync::mpsc::Sender<()>),
}

/// Only the newest state snapshot matters: one slot, not a queue, so a
/// burst of changes with many targets never piles up snapshots.
type StateSlot = Arc<std::sync::Mutex<Option<BTreeMap<String, Persisted>>>>;

/// Fans events out. Cheap to call from the event loop: it never blocks.
pub struct Notifier {
    io: std::sync::mpsc::SyncSender<IoMsg>,
    state: StateSlot,
    pub bus: broadcast::Sender<Arc<Event>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Notifier {
    pub fn start(state_dir: PathBuf) -> std::io::Result<Notifier> {
        let mut journal = journal::Journal::open(&state_dir)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<IoMsg>(65_536);
        let state: StateSlot = Arc::default();
        let slot = state.clone();
        let thread = std::thread::Builder::new()
            .name("procward-io".into())
            .spawn(move || {
                use std::io::Write;
                for m in rx {
                    match m {
                        IoMsg::Event(ev, console) => {
                            if let Err(e) = journal.append(&ev) {
                                eprintln!("procward: cannot write the event journal: {e}");
                            }
                            if let Some(line) = console {
                                let mut err = std::io::stderr().lock();
                                let _ = writeln!(err, "{line}");
                            }
                        }
                        IoMsg::State => {
                            let snapshot = slot.lock().expect("state slot").take();
                            if let Some(s) = snapshot {
                                if let Err(e) = crate::state::save(&state_dir, &s) {
                                    eprintln!(
                                        "procward: cannot save state in {}: {e}",
                                        state_dir.display()
                                    );
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
            state,
            bus,
            thread: Some(thread),
        })
    }

    pub fn publish(&self, ev: Event, console: Option<String>) {
        let ev = Arc::new(ev);
        if self.io.try_send(IoMsg::Event(ev.clone(), console)).is_err() {
            eprintln!(
                "procward: journal queue full, event {} {} not journaled",
                ev.seq, ev.id
            );
        }
        let _ = self.bus.send(ev);
    }

    pub fn save_state(&self, s: BTreeMap<String, Persisted>) {
        let older = self.state.lock().expect("state slot").replace(s);
        if older.is_none() {
            // State must not be lost: wait for room rather than drop.
            let _ = self.io.send(IoMsg::State);
        }
    }

    /// Wait until everything sent so far is written.
    pub fn sync(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.io.send(IoMsg::Sync(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.sync();
        let (dummy, _) = std::sync::mpsc::sync_channel(1);
        drop(std::mem::replace(&mut self.io, dummy));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
