//! Persistent state in `state-dir`: retry counters, pause flags and
//! RETRY-OVER/FAILED states, so a restart of procward (or a crash loop of
//! procward itself) never resets the retry window.

use crate::monitor::Persisted;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const FILE: &str = "state.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    targets: BTreeMap<String, Persisted>,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Load the state. A missing file is an empty state; an unreadable one is
/// moved aside to `state.json.bad` and reported as `Err` (with the empty
/// state to go on with).
pub fn load(dir: &Path) -> Result<BTreeMap<String, Persisted>, String> {
    let p = path(dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e.to_string()),
    };
    match serde_json::from_str::<StateFile>(&text) {
        Ok(s) => Ok(s.targets),
        Err(e) => {
            let _ = std::fs::rename(&p, dir.join("state.json.bad"));
            Err(e.to_string())
        }
    }
}

/// Write the state atomically (temp file, fsync, rename).
pub fn save(dir: &Path, targets: &BTreeMap<String, Persisted>) -> std::io::Result<()> {
    let tmp = dir.join("state.json.tmp");
    let body = serde_json::to_vec(&StateFile {
        version: 1,
        targets: targets.clone(),
    })?;
    {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let d = tempfile::tempdir().unwrap();
        assert!(load(d.path()).unwrap().is_empty());
        let mut m = BTreeMap::new();
        m.insert(
            "a".to_string(),
            Persisted {
                attempts: vec![1, 2],
                paused: true,
                ..Default::default()
            },
        );
        save(d.path(), &m).unwrap();
        assert_eq!(load(d.path()).unwrap(), m);
        std::fs::write(path(d.path()), "{garbage").unwrap();
        assert!(load(d.path()).is_err());
        assert!(d.path().join("state.json.bad").exists());
        assert!(load(d.path()).unwrap().is_empty());
    }
}
