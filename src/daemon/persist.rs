//! What to write when the core asks to persist: the whole state file, or
//! only the records of the targets that changed.
//!
//! With many targets the state file is large (about 120 bytes a target:
//! 1.2 MB at 10,000), and writing and syncing it after every change was
//! the largest cost per event; a restart script waiting for its own small
//! record queued behind it (and, on ext4, its fsync behind the big one's).
//! So a large configuration writes one record per changed target
//! (`state::Records`, the same records a restart writes before its script
//! runs, merged over the state file at load) and folds them into
//! the whole file when nothing has changed for a while, or when records
//! of many targets have piled up. A small configuration writes the whole
//! file each time, as it always did.

use crate::monitor::Action;

use crate::model::TargetId;
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;

/// From this many targets on, changes are written as records.
pub(super) const RECORDS_FROM_TARGETS: usize = 256;
/// More changed targets than this at once: the whole file instead.
const RECORDS_PER_SAVE: usize = 64;
/// Records of this many targets are folded into the whole file at the
/// next change, quiet or not (a start-up reads at most this many).
const FOLD_AT: usize = 1024;
/// Records are folded into the whole file once no record was written for
/// this long.
pub(super) const FOLD_WHEN_QUIET: Duration = Duration::from_secs(5);

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Save {
    /// The records of these targets (sorted).
    Records(Vec<TargetId>),
    Full,
}

pub(super) struct Persist {
    /// The core asked to persist: saved after this wake-up.
    requested: bool,
    /// Targets changed since the last save; `None`: any may have.
    dirty: Option<HashSet<TargetId>>,
    /// Targets with a record newer than the whole file.
    unfolded: HashSet<TargetId>,
    last_record: Option<Instant>,
}

impl Persist {
    /// At start-up the files on disk hold the state just loaded: only
    /// what changes from here on is written. `records`: the state
    /// directory holds records (of an earlier procward), to be folded once
    /// quiet.
    pub(super) fn new(records: bool, now: Instant) -> Persist {
        Persist {
            requested: false,
            dirty: Some(HashSet::new()),
            unfolded: HashSet::new(),
            last_record: records.then_some(now),
        }
    }

    pub(super) fn soon(&mut self) {
        self.requested = true;
    }

    /// The core's answer to an input or command for `target`: if it asks
    /// to persist, that target's state changed. (Inputs that change
    /// nothing, such as a scan finding a waiting target still absent, do
    /// not make a record.)
    pub(super) fn changed(&mut self, target: &TargetId, actions: &[Action]) {
        if actions.iter().any(|a| matches!(a, Action::Persist)) {
            self.touched(target);
        }
    }

    fn touched(&mut self, target: &TargetId) {
        if let Some(d) = &mut self.dirty {
            if d.len() <= RECORDS_PER_SAVE && !d.contains(target) {
                d.insert(target.clone());
            }
        }
    }

    /// The core changed in a way not tied to one target (a reload).
    pub(super) fn touched_all(&mut self) {
        self.dirty = None;
    }

    /// `target`'s record was written outside `take` (before its restart
    /// script).
    pub(super) fn recorded(&mut self, target: &TargetId, now: Instant) {
        self.unfolded.insert(target.clone());
        self.last_record = Some(now);
    }

    /// When the records are to be folded into the whole file, if any are
    /// waiting: a wake-up of the loop.
    pub(super) fn fold_at(&self) -> Option<Instant> {
        self.last_record.map(|t| t + FOLD_WHEN_QUIET)
    }

    /// What to write now, if anything was asked for or the records are
    /// due to be folded.
    pub(super) fn take(&mut self, targets: usize, now: Instant) -> Option<Save> {
        let fold = self.fold_at().is_some_and(|t| t <= now);
        if !std::mem::take(&mut self.requested) && !fold {
            return None;
        }
        let dirty = self.dirty.replace(HashSet::new());
        match dirty {
            Some(set)
                if !fold
                    && targets >= RECORDS_FROM_TARGETS
                    && !set.is_empty()
                    && set.len() <= RECORDS_PER_SAVE
                    && self.unfolded.len()
                        + set.iter().filter(|t| !self.unfolded.contains(*t)).count()
                        <= FOLD_AT =>
            {
                let mut list: Vec<TargetId> = set.into_iter().collect();
                list.sort();
                self.unfolded.extend(list.iter().cloned());
                self.last_record = Some(now);
                Some(Save::Records(list))
            }
            _ => {
                self.unfolded.clear();
                self.last_record = None;
                Some(Save::Full)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TargetId {
        TargetId::from(s)
    }

    #[test]
    fn records_for_a_few_changes_of_a_large_configuration_then_the_whole_file() {
        let t0 = Instant::now();
        // Records left by an earlier procward are folded once quiet.
        let mut p = Persist::new(true, t0);
        assert_eq!(p.fold_at(), Some(t0 + FOLD_WHEN_QUIET));
        assert_eq!(p.take(10_000, t0), None, "nothing asked");
        assert_eq!(p.take(10_000, t0 + FOLD_WHEN_QUIET), Some(Save::Full));
        assert_eq!(p.fold_at(), None);
        let mut p = Persist::new(false, t0);
        assert_eq!(p.fold_at(), None);
        let persist = [Action::ScanSoon, Action::Persist];
        assert_eq!(p.take(10_000, t0), None, "nothing asked");
        // A save asked for with no target known to have changed: whole.
        p.soon();
        assert_eq!(p.take(10_000, t0), Some(Save::Full));
        assert_eq!(p.fold_at(), None);
        // An input that changed nothing makes no record.
        p.changed(&id("z"), &[Action::ScanSoon]);
        p.changed(&id("b"), &persist);
        p.changed(&id("a"), &persist);
        p.changed(&id("b"), &persist);
        p.soon();
        assert_eq!(
            p.take(10_000, t0),
            Some(Save::Records(vec![id("a"), id("b")]))
        );
        // Folded once quiet: the loop wakes for it.
        assert_eq!(p.fold_at(), Some(t0 + FOLD_WHEN_QUIET));
        let t1 = t0 + FOLD_WHEN_QUIET / 2;
        p.changed(&id("a"), &persist);
        p.soon();
        assert_eq!(p.take(10_000, t1), Some(Save::Records(vec![id("a")])));
        assert_eq!(p.take(10_000, t0 + FOLD_WHEN_QUIET), None, "not quiet yet");
        assert_eq!(p.take(10_000, t1 + FOLD_WHEN_QUIET), Some(Save::Full));
        assert_eq!(p.fold_at(), None);
        // A small configuration always writes the whole file.
        p.changed(&id("a"), &persist);
        p.soon();
        assert_eq!(p.take(RECORDS_FROM_TARGETS - 1, t1), Some(Save::Full));
        // Many changes at once: the whole file.
        for i in 0..=RECORDS_PER_SAVE {
            p.changed(&id(&format!("t{i}")), &persist);
        }
        p.soon();
        assert_eq!(p.take(10_000, t1), Some(Save::Full));
        // A reload: the whole file.
        p.changed(&id("a"), &persist);
        p.touched_all();
        p.soon();
        assert_eq!(p.take(10_000, t1), Some(Save::Full));
        // Records of FOLD_AT targets are folded at the next change; the
        // same target again adds no record to fold.
        let mut full = 0;
        for i in 0..FOLD_AT + 1 {
            p.changed(&id(&format!("t{i}")), &persist);
            p.changed(&id("t0"), &persist);
            p.soon();
            if p.take(10_000, t1) == Some(Save::Full) {
                full += 1;
                assert_eq!(i, FOLD_AT, "folded after exactly the limit");
            }
        }
        assert_eq!(full, 1);
        // Records written before restart scripts count too.
        for i in 0..FOLD_AT {
            p.recorded(&id(&format!("r{i}")), t1);
        }
        assert_eq!(p.fold_at(), Some(t1 + FOLD_WHEN_QUIET));
        p.changed(&id("a"), &persist);
        p.soon();
        assert_eq!(p.take(10_000, t1), Some(Save::Full));
    }
}
