//! What to write when the core asks to persist: the whole state file, or
//! only the records of the targets that changed.
//!
//! With many targets the state file is large (about 200 bytes a target:
//! 2 MB at 10,000), and writing and syncing it after every change was the
//! largest cost per event; a restart script waiting for its own small
//! record queued behind it. So a large configuration writes one record
//! per changed target (`inflight/TARGET.json`, the same records a restart
//! writes before its script runs, merged over the state file at load) and
//! folds them into the whole file now and then. A small configuration
//! writes the whole file each time, as it always did.

use crate::monitor::{Action, TargetId};
use std::collections::HashSet;

/// From this many targets on, changes are written as records.
pub const RECORDS_FROM_TARGETS: usize = 256;
/// More changed targets than this at once: the whole file instead.
const RECORDS_PER_SAVE: usize = 64;
/// After this many records the whole file is written (and the records it
/// holds removed), so a start-up never reads more than this many.
const RECORDS_BEFORE_FULL: usize = 256;

#[derive(Debug, PartialEq, Eq)]
pub enum Save {
    /// The records of these targets (sorted).
    Records(Vec<TargetId>),
    Full,
}

pub struct Persist {
    /// The core asked to persist: saved after this wake-up.
    requested: bool,
    /// Targets changed since the last save; `None`: any may have.
    dirty: Option<HashSet<TargetId>>,
    /// Records written since the whole file was.
    records: usize,
}

impl Persist {
    pub fn new() -> Persist {
        Persist {
            requested: false,
            dirty: None,
            records: 0,
        }
    }

    pub fn soon(&mut self) {
        self.requested = true;
    }

    /// The core's answer to an input or command for `target`: if it asks
    /// to persist, that target's state changed. (Inputs that change
    /// nothing, such as a scan finding a waiting target still absent, do
    /// not make a record.)
    pub fn changed(&mut self, target: &TargetId, actions: &[Action]) {
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
    pub fn touched_all(&mut self) {
        self.dirty = None;
    }

    /// A record was written outside `take` (before a restart script).
    pub fn recorded(&mut self) {
        self.records += 1;
    }

    /// What to write now, if anything was asked for.
    pub fn take(&mut self, targets: usize) -> Option<Save> {
        if !std::mem::take(&mut self.requested) {
            return None;
        }
        let dirty = self.dirty.replace(HashSet::new());
        match dirty {
            Some(set)
                if targets >= RECORDS_FROM_TARGETS
                    && !set.is_empty()
                    && set.len() <= RECORDS_PER_SAVE
                    && self.records + set.len() <= RECORDS_BEFORE_FULL =>
            {
                self.records += set.len();
                let mut list: Vec<TargetId> = set.into_iter().collect();
                list.sort();
                Some(Save::Records(list))
            }
            _ => {
                self.records = 0;
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
        let mut p = Persist::new();
        let persist = [Action::ScanSoon, Action::Persist];
        assert_eq!(p.take(10_000), None, "nothing asked");
        // The first save is whole: nothing says what changed before it.
        p.soon();
        assert_eq!(p.take(10_000), Some(Save::Full));
        // An input that changed nothing makes no record.
        p.changed(&id("z"), &[Action::ScanSoon]);
        p.changed(&id("b"), &persist);
        p.changed(&id("a"), &persist);
        p.changed(&id("b"), &persist);
        p.soon();
        assert_eq!(p.take(10_000), Some(Save::Records(vec![id("a"), id("b")])));
        // A small configuration always writes the whole file.
        p.changed(&id("a"), &persist);
        p.soon();
        assert_eq!(p.take(RECORDS_FROM_TARGETS - 1), Some(Save::Full));
        // Many changes at once: the whole file.
        for i in 0..=RECORDS_PER_SAVE {
            p.changed(&id(&format!("t{i}")), &persist);
        }
        p.soon();
        assert_eq!(p.take(10_000), Some(Save::Full));
        // A reload: the whole file.
        p.changed(&id("a"), &persist);
        p.touched_all();
        p.soon();
        assert_eq!(p.take(10_000), Some(Save::Full));
        // Records are folded into the whole file after RECORDS_BEFORE_FULL.
        let mut full = 0;
        for i in 0..RECORDS_BEFORE_FULL + 1 {
            p.changed(&id(&format!("t{i}")), &persist);
            p.soon();
            if p.take(10_000) == Some(Save::Full) {
                full += 1;
                assert_eq!(i, RECORDS_BEFORE_FULL, "folded after exactly the limit");
            }
        }
        assert_eq!(full, 1);
        // Records written before restart scripts count too.
        for _ in 0..RECORDS_BEFORE_FULL {
            p.recorded();
        }
        p.changed(&id("a"), &persist);
        p.soon();
        assert_eq!(p.take(10_000), Some(Save::Full));
    }
}
