//! Trust at the edges. procward runs as root: whoever can change a file it
//! executes or reads as configuration, or any directory on the way to it,
//! can run code as root. The rule, as sshd's StrictModes and sudo apply it:
//! every component of the path (each directory from `/`, each symlink, the
//! file itself) is owned by root or by the uid procward runs as, and is not
//! writable by others, nor by a group other than root's.
//!
//! One exception keeps `/tmp`-style directories usable as ancestors: a
//! directory with the sticky bit (others cannot rename or remove what they
//! do not own) may be writable by others when it is not the last component,
//! because the next component must itself pass the rule.
//!
//! Written by hand: no maintained crate checks a whole path this way
//! (sudo and OpenSSH each carry their own walk, in C).

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed on one path before giving up (as the kernel's ELOOP).
const MAX_LINKS: usize = 40;

/// The uid procward runs as.
fn my_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Root or procward's own uid.
fn trusted_uid(uid: u32) -> bool {
    uid == 0 || uid == my_uid()
}

fn user_label(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("{} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

fn group_label(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(g)) => format!("{} (gid {gid})", g.name),
        _ => format!("gid {gid}"),
    }
}

/// Why one path component (already `lstat`ed) cannot be trusted. `last`:
/// it is the final component (the sticky exception does not apply).
pub fn component_problem(p: &Path, md: &std::fs::Metadata, last: bool) -> Option<String> {
    let mode = md.mode() & 0o7777;
    if !trusted_uid(md.uid()) {
        return Some(format!(
            "{} is owned by {}, not root; run: chown root {}",
            p.display(),
            user_label(md.uid()),
            p.display()
        ));
    }
    let sticky_dir = md.is_dir() && !last && mode & 0o1000 != 0;
    if mode & 0o002 != 0 && !sticky_dir && !md.file_type().is_symlink() {
        return Some(format!(
            "{} is writable by others (mode {mode:o}); run: chmod o-w {}",
            p.display(),
            p.display()
        ));
    }
    if mode & 0o020 != 0 && md.gid() != 0 && !sticky_dir && !md.file_type().is_symlink() {
        return Some(format!(
            "{} is writable by group {} (mode {mode:o}); run: chmod g-w {}",
            p.display(),
            group_label(md.gid()),
            p.display()
        ));
    }
    None
}

/// Walk `path` from `/`, following symlinks, and check every component.
/// Returns the resolved path and its metadata, or the first problem found
/// (naming the offending component and the fix).
pub fn check(path: &Path) -> Result<(PathBuf, std::fs::Metadata), String> {
    if !path.is_absolute() {
        return Err(format!("{} must be an absolute path", path.display()));
    }
    let mut todo: Vec<OsString> = Vec::new(); // reversed: next component last
    push_components(&mut todo, path);
    let mut cur = PathBuf::from("/");
    let root = std::fs::symlink_metadata(&cur).map_err(|e| format!("/: {e}"))?;
    if let Some(p) = component_problem(&cur, &root, todo.is_empty()) {
        return Err(p);
    }
    let mut md = root;
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&c);
        let m = std::fs::symlink_metadata(&next).map_err(|e| format!("{}: {e}", next.display()))?;
        if m.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(format!(
                    "{}: too many levels of symbolic links",
                    path.display()
                ));
            }
            if let Some(p) = component_problem(&next, &m, false) {
                return Err(p);
            }
            let target =
                std::fs::read_link(&next).map_err(|e| format!("{}: {e}", next.display()))?;
            if target.is_absolute() {
                cur = PathBuf::from("/");
            }
            push_components(&mut todo, &target);
            continue;
        }
        let last = todo.is_empty();
        if !last && !m.is_dir() {
            return Err(format!("{} is not a directory", next.display()));
        }
        if let Some(p) = component_problem(&next, &m, last) {
            return Err(p);
        }
        cur = next;
        md = m;
    }
    Ok((cur, md))
}

fn push_components(todo: &mut Vec<OsString>, p: &Path) {
    let parts: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    todo.extend(parts.into_iter().rev());
}

/// A file procward reads as configuration: trusted path, regular file.
/// A relative path is taken from the current directory (`-c procward.toml`).
pub fn config_file(path: &Path) -> Result<(), String> {
    let abs = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (real, md) = check(&abs).map_err(|e| located(path, e))?;
    if !md.is_file() {
        return Err(format!("{} is not a regular file", real.display()));
    }
    Ok(())
}

/// A program procward executes: trusted path, regular, executable.
pub fn executable(path: &Path) -> Result<(), String> {
    let (real, md) = check(path).map_err(|e| located(path, e))?;
    if !md.is_file() {
        return Err(format!("{} is not a regular file", real.display()));
    }
    if md.mode() & 0o111 == 0 {
        return Err(format!(
            "{} is not executable; run: chmod +x {}",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// A directory procward reads files from: trusted path, a directory
/// (a relative path is taken from the current directory).
pub fn directory(path: &Path) -> Result<(), String> {
    let abs = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (real, md) = check(&abs).map_err(|e| located(path, e))?;
    if !md.is_dir() {
        return Err(format!("{} is not a directory", real.display()));
    }
    Ok(())
}

/// Prefix a problem found on the way with the path that was asked for,
/// unless it already starts with it.
fn located(path: &Path, problem: String) -> String {
    if problem.starts_with(&path.display().to_string()) {
        problem
    } else {
        format!("{}: {problem}", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_root_owned_tree_passes_and_writable_components_do_not() {
        if my_uid() != 0 {
            return; // the fixtures below are created as this user
        }
        let d = tempfile::tempdir().unwrap();
        chmod(d.path(), 0o755);
        let f = d.path().join("s.sh");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        chmod(&f, 0o755);
        executable(&f).unwrap();
        chmod(d.path(), 0o777);
        let e = executable(&f).unwrap_err();
        assert!(e.contains("is writable by others (mode 777)"), "{e}");
        assert!(
            e.contains(&format!("chmod o-w {}", d.path().display())),
            "{e}"
        );
        chmod(d.path(), 0o1777); // sticky: fine as an ancestor
        executable(&f).unwrap();
        assert!(directory(d.path()).is_err()); // but not as the last component
        chmod(d.path(), 0o755);
        chmod(&f, 0o775); // group root may write
        executable(&f).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        executable(&link).unwrap();
        let dots = d.path().join("x/../s.sh");
        assert!(executable(&dots).is_err()); // x does not exist
    }
}
