//! The event journal: JSON lines in `state-dir/events.jsonl`, rotated to
//! `events.jsonl.1` past 16 MiB.

use crate::event::Event;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

pub const FILE: &str = "events.jsonl";
pub const LIMIT: u64 = 16 << 20;

pub struct Journal {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
}

fn open(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    let f = crate::state::open_append(path)?;
    let size = f.metadata()?.len();
    Ok((f, size))
}

impl Journal {
    pub fn open(dir: &Path) -> std::io::Result<Journal> {
        let path = dir.join(FILE);
        let (file, size) = open(&path)?;
        Ok(Journal { path, file, size })
    }

    pub fn append(&mut self, ev: &Event) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(ev)?;
        line.push(b'\n');
        if self.size + line.len() as u64 > LIMIT {
            let mut old = self.path.as_os_str().to_owned();
            old.push(".1");
            std::fs::rename(&self.path, old)?;
            let (f, s) = open(&self.path)?;
            self.file = f;
            self.size = s;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }
}

/// Events in the journal (rotated file first) with `time_ms >= since`.
pub fn read(dir: &Path, since_ms: u64) -> Vec<Event> {
    let mut out = Vec::new();
    for name in [format!("{FILE}.1"), FILE.to_string()] {
        let Ok(f) = crate::state::open_read(&dir.join(name)) else {
            continue;
        };
        for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
            if let Ok(ev) = serde_json::from_str::<Event>(&line) {
                if ev.time_ms >= since_ms {
                    out.push(ev);
                }
            }
        }
    }
    out
}

/// The highest sequence number written so far (0 for none).
pub fn last_seq(dir: &Path) -> u64 {
    read(dir, 0).last().map(|e| e.seq).unwrap_or(0)
}
