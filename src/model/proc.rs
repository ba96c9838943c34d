//! What a process is to procward: its pinned reference and its target's name.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Wall-clock milliseconds since the Unix epoch.
pub type Ms = u64;

/// A target's name as the core and the daemon pass it around: shared, so
/// an input or action costs a reference count, not a string copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId(Arc<str>);

impl TargetId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for TargetId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for TargetId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TargetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for TargetId {
    fn from(s: &str) -> Self {
        TargetId(Arc::from(s))
    }
}

impl From<String> for TargetId {
    fn from(s: String) -> Self {
        TargetId(Arc::from(s))
    }
}

impl PartialEq<str> for TargetId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

/// A process pinned by pid and start time (clock ticks after boot), so that
/// a reused pid never counts as the same process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcRef {
    pub pid: u32,
    pub start: u64,
}
