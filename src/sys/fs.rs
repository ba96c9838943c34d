//! Safe opens of procward's own files: never through a symlink, regular
//! files only, created 0600 (directories 0700), reads bounded.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// A subdirectory of the state directory (e.g. `script-logs`), created
/// 0700; a symlink or a directory owned by another user is refused.
pub fn ensure_subdir(dir: &Path) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let md = std::fs::symlink_metadata(dir)?;
    if !md.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    match crate::sys::trust::component_problem(dir, &md, true) {
        Some(p) => Err(std::io::Error::other(p)),
        None => Ok(()),
    }
}

pub const NOFOLLOW: i32 = libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;

/// The error of opening `path`, naming it (and a symlink as such).
pub fn named(path: &Path, e: std::io::Error) -> std::io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        std::io::Error::other(format!(
            "{} is a symbolic link; procward does not follow links in its state directory",
            path.display()
        ))
    } else {
        std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
    }
}

pub fn regular(f: std::fs::File, path: &Path) -> std::io::Result<std::fs::File> {
    if f.metadata()?.is_file() {
        Ok(f)
    } else {
        Err(std::io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )))
    }
}

/// Open a file of the state directory for appending (created 0600),
/// never through a symlink, regular files only.
pub fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(NOFOLLOW)
        .open(path)
        .map_err(|e| named(path, e))?;
    regular(f, path)
}

/// Create a temporary file anew (O_EXCL, never through a symlink): what
/// was at `path` (a planted symlink, a stale temporary) is removed first.
fn create_new(path: &Path) -> std::io::Result<std::fs::File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(named(path, e)),
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(NOFOLLOW)
        .open(path)
        .map_err(|e| named(path, e))
}

/// Replace `file` with `body` atomically: written to `tmp` (made anew,
/// see `create_new`), synced, renamed over `file`.
pub fn replace_with(tmp: &Path, file: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut f = create_new(tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(tmp, file)
}

/// Open a file of the state directory for reading, never through a
/// symlink, regular files only.
pub fn open_read(path: &Path) -> std::io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(NOFOLLOW)
        .open(path)
        .map_err(|e| named(path, e))?;
    regular(f, path)
}

/// Read a whole state file of at most `max` bytes (a larger one is an
/// error, not an allocation).
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    read_all_bounded(open_read(path)?, path, max)
}

/// The whole of the open file `f` (read from `path`), at most `max` bytes.
pub fn read_all_bounded(f: std::fs::File, path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("{} is larger than {max} bytes", path.display()),
        ));
    }
    Ok(buf)
}
