//! The records thread: one target's state written ahead of the whole
//! state file (a restart about to run, or one change among many targets).

use super::queue::QueueRx;
use super::writer::{InFlight, SharedOutages};
use super::Reporter;
use std::collections::HashMap;
use std::path::PathBuf;

/// To the records thread: a restart's record never waits behind the
/// journal or a state file's fsync (40–85 ms when the disk flushes).
pub(crate) enum RecMsg {
    /// One target's record: before its restart script runs, or a change
    /// of one target among many (daemon/persist.rs).
    Record(Box<InFlight>),
    /// A state file with this stamp was written.
    Folded(u64),
    Sync(std::sync::mpsc::Sender<()>),
    /// Like Sync, for an async waiter.
    Synced(tokio::sync::oneshot::Sender<()>),
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
pub(crate) fn records_loop(
    rx: QueueRx<RecMsg>,
    state_dir: PathBuf,
    report: Reporter,
    outages: SharedOutages,
) {
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
