//! The Debian package: scripts/package.sh builds it with cargo-deb (here
//! from the debug build, for time), dpkg installs it on this machine, the
//! installed procward checks the installed configuration, systemd-analyze
//! verifies the unit, man finds the page, and dpkg --purge removes it all.
// A scenario reads best in one piece: the 100-line rule is for production
// code (clippy.toml).
#![allow(clippy::too_many_lines)]

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd).args(args).output().unwrap()
}

/// Purges the package when dropped, whatever happened before.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "procward"]);
    }
}

#[test]
fn the_deb_installs_checks_and_purges() {
    if !require("dpkg-deb") || !require("cargo") {
        return;
    }
    if Path::new("/usr/bin/procward").exists() && !run("dpkg", &["-s", "procward"]).status.success()
    {
        panic!("/usr/bin/procward exists and is not from the package: not overwriting it");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = Command::new(root.join("scripts/package.sh"))
        .args(["--profile", "dev"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let deb = out
        .lines()
        .rev()
        .find(|l| l.ends_with(".deb"))
        .expect("the package path")
        .to_string();
    let list = String::from_utf8_lossy(&run("dpkg-deb", &["-c", &deb]).stdout).to_string();
    for path in [
        "./usr/bin/procward",
        "./lib/systemd/system/procward.service",
        "./etc/procward/procward.toml",
        "./etc/logrotate.d/procward",
        "./usr/lib/ocf/resource.d/procward/procward",
        "./usr/share/snmp/mibs/PROCWARD-MIB",
        "./usr/share/procward/mibs/PROCWARD-MIB",
        "./usr/share/procward/mibs/SNMPv2-SMI",
        "./usr/share/procward/filter-defs/esmpro/procward-ja.ini",
        "./usr/share/procward/filter-defs/snmptt/snmptt.procward.conf",
        "./usr/share/man/man1/procward.1.gz",
        "./usr/share/man/man1/procward-status.1.gz",
        "./usr/share/man/ja/man1/procward.1.gz",
        "./usr/share/doc/procward/README.ja.md",
        "./usr/share/doc/procward/migration-processsaver.ja.md",
        "./usr/share/bash-completion/completions/procward",
        "./usr/share/zsh/vendor-completions/_procward",
        "./usr/share/fish/vendor_completions.d/procward.fish",
    ] {
        assert!(
            list.lines().any(|l| l.ends_with(path)),
            "{path} missing:\n{list}"
        );
    }
    let info = String::from_utf8_lossy(&run("dpkg-deb", &["-I", &deb]).stdout).to_string();
    assert!(info.contains("Package: procward"), "{info}");
    let conffiles =
        String::from_utf8_lossy(&run("dpkg-deb", &["-I", &deb, "conffiles"]).stdout).to_string();
    assert!(
        conffiles.contains("/etc/procward/procward.toml"),
        "{conffiles}"
    );

    let _installed = Installed;
    let o = run("dpkg", &["-i", &deb]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The installed binary checks the installed configuration.
    let o = run("/usr/bin/procward", &["check"]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("/etc/procward/procward.toml: OK"));
    let mode = std::fs::metadata("/etc/procward/procward.toml").unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let o = run(
            "systemd-analyze",
            &["verify", "/lib/systemd/system/procward.service"],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() && !err.contains("procward.service:"),
            "systemd-analyze: {err}"
        );
    }
    if Path::new("/usr/bin/man").exists() {
        let o = run("man", &["-P", "cat", "procward"]);
        assert!(String::from_utf8_lossy(&o.stdout).contains("procward"));
        // The Japanese page: `man -L ja procward`.
        let o = Command::new("man")
            .args(["-L", "ja", "-P", "cat", "procward"])
            .env("LANG", "C.UTF-8")
            .output()
            .unwrap();
        let page = String::from_utf8_lossy(&o.stdout);
        assert!(
            page.contains("業務プロセスを監視") && page.contains("終了コード"),
            "man -L ja procward: {page}{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = run("dpkg", &["--purge", "procward"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!Path::new("/usr/bin/procward").exists());
    assert!(!Path::new("/etc/procward/procward.toml").exists());
}
