//! Every rejected configuration in tests/invalid_configs/ has an asserted
//! message (NAME.expect: each line must appear in `procward check`'s
//! output); every file in tests/valid_configs/ passes `procward check`.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn fixtures(dir: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join(dir),
    )
    .unwrap()
    .flatten()
    .map(|e| e.path())
    .filter(|p| p.extension().is_some_and(|e| e == "toml"))
    .collect();
    v.sort();
    v
}

/// Copy a fixture into a fresh directory with the scripts it refers to.
fn install(src: &Path, env: &Env) -> std::path::PathBuf {
    let dir = env.dir.path();
    write_exec(&dir.join("ok.sh"), "#!/bin/sh\nexit 0\n");
    std::fs::write(dir.join("noexec.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        dir.join("noexec.sh"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(dir.join("writable.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        dir.join("writable.sh"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    // Files and directories that someone other than root controls.
    let nobody = |p: &Path| std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
    write_exec(&dir.join("nobody.sh"), "#!/bin/sh\nexit 0\n");
    nobody(&dir.join("nobody.sh"));
    std::fs::create_dir_all(dir.join("wdir")).unwrap();
    std::fs::set_permissions(dir.join("wdir"), std::fs::Permissions::from_mode(0o777)).unwrap();
    write_exec(&dir.join("wdir/ok.sh"), "#!/bin/sh\nexit 0\n");
    std::fs::create_dir_all(dir.join("nobody.d")).unwrap();
    std::fs::write(dir.join("nobody.d/a.toml"), "").unwrap();
    nobody(&dir.join("nobody.d/a.toml"));
    std::fs::create_dir_all(dir.join("tpl")).unwrap();
    std::fs::write(dir.join("tpl/console.hbs"), "{{id}} {{text}}").unwrap();
    nobody(&dir.join("tpl/console.hbs"));
    let name = src.file_name().unwrap().to_str().unwrap();
    let text = std::fs::read_to_string(src)
        .unwrap()
        .replace("@DIR@", &dir.display().to_string());
    let dst = dir.join(name);
    std::fs::write(&dst, text).unwrap();
    let mode = match name {
        "config_writable.toml" => 0o664,
        "snmp_secret_readable.toml" => 0o644,
        _ => 0o600,
    };
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode)).unwrap();
    if name == "config_writable.toml" {
        // Group-writable is refused for any group but root's.
        std::os::unix::fs::chown(&dst, None, Some(65534)).unwrap();
    }
    let confd = src.parent().unwrap().join("conf.d");
    if confd.is_dir() {
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        for f in std::fs::read_dir(confd).unwrap().flatten() {
            let d = dir.join("conf.d").join(f.file_name());
            let text = std::fs::read_to_string(f.path())
                .unwrap()
                .replace("@DIR@", &dir.display().to_string());
            std::fs::write(&d, text).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    dst
}

#[test]
fn invalid_configs_are_refused_with_every_error_located() {
    let all = fixtures("invalid_configs");
    assert!(all.len() >= 12, "fixtures missing: {all:?}");
    let mut failures = Vec::new();
    for src in all {
        let env = Env::new();
        let cfg = install(&src, &env);
        let o = Command::new(BIN)
            .args(["check", "-c"])
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        if o.status.code() != Some(1) {
            failures.push(format!(
                "{}: exit {:?}, expected 1\n{err}",
                src.display(),
                o.status.code()
            ));
            continue;
        }
        let expect = std::fs::read_to_string(src.with_extension("expect"))
            .expect("NAME.expect beside NAME.toml");
        for line in expect.lines().filter(|l| !l.trim().is_empty()) {
            let line = line.replace("@DIR@", &env.dir.path().display().to_string());
            if !err.contains(&line) {
                failures.push(format!("{}: missing `{line}` in:\n{err}", src.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn valid_configs_pass_check() {
    for src in fixtures("valid_configs") {
        let env = Env::new();
        let cfg = install(&src, &env);
        let o = Command::new(BIN)
            .args(["check", "-c"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}: {}",
            src.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(String::from_utf8_lossy(&o.stdout).contains(": OK ("));
    }
}

#[test]
fn the_bundled_example_config_passes_check() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/procward.toml");
    let env = Env::new();
    let cfg = install(&p, &env);
    let o = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
