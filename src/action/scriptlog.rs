//! A script's output, bounded while the script runs: the script writes
//! into a pipe, and `procward script-log PATH` (a process of its own)
//! appends what comes out of it to the script's log, moving the log to
//! `PATH.1` whenever it would grow past [`super::LOG_LIMIT`]. So a script
//! that writes 100 MB leaves at most two logs of a MiB each.
//!
//! Why a process, not a thread of procward: an application that a script
//! starts without redirecting its output inherits the pipe. Were the
//! reader procward, its next restart would close the pipe's last reader
//! and the application's next write would kill it (SIGPIPE). The copier
//! lives as long as anyone can write into the pipe, and ends at its end.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Copy `input` to the log at `path` until the end of `input`, moving
/// the log to `PATH.1` before it would pass `limit` bytes. A log that
/// cannot be written is not a reason to stop reading: the writer must
/// never block on a full pipe.
pub fn copy(mut input: impl Read, path: &Path, limit: u64) {
    let mut log = Log::open(path);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        log.write(&buf[..n], limit);
    }
}

struct Log {
    path: PathBuf,
    file: Option<std::fs::File>,
    size: u64,
}

impl Log {
    fn open(path: &Path) -> Log {
        let file = crate::sys::fs::open_append(path).ok();
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        Log {
            path: path.to_path_buf(),
            file,
            size,
        }
    }

    /// Append `bytes`, rotating first when they would pass `limit` (a
    /// chunk larger than the limit is cut to its last `limit` bytes).
    fn write(&mut self, bytes: &[u8], limit: u64) {
        let bytes = &bytes[bytes.len().saturating_sub(limit as usize)..];
        if self.size + bytes.len() as u64 > limit && self.size > 0 {
            let mut old = self.path.as_os_str().to_owned();
            old.push(".1");
            let _ = std::fs::rename(&self.path, old);
            *self = Log::open(&self.path);
        }
        if let Some(f) = &mut self.file {
            if f.write_all(bytes).is_ok() {
                self.size += bytes.len() as u64;
            }
        }
    }
}

/// `procward script-log PATH`: standard input to the log at `PATH`.
pub fn serve(path: &Path) -> u8 {
    copy(std::io::stdin().lock(), path, super::LOG_LIMIT);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_output_leaves_two_bounded_logs_with_its_end() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("t.log");
        std::fs::write(&path, "=== header\n").unwrap();
        let mut out = vec![b'x'; 10_000_000];
        out.extend_from_slice(b"\nthe end\n");
        copy(&out[..], &path, 1 << 20);
        let cur = std::fs::read(&path).unwrap();
        let old = std::fs::metadata(d.path().join("t.log.1")).unwrap().len();
        assert!(cur.len() as u64 <= 1 << 20 && old <= 1 << 20);
        assert!(cur.ends_with(b"the end\n"));
    }
}
