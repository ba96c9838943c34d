//! The offline commands: catalog, render, check exit codes, usage errors.

mod common;

use common::*;
use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

#[test]
fn catalog_list_and_show() {
    let o = run(&["catalog", "list"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.lines().any(|l| l.starts_with("PW2003  error")), "{out}");
    let o = run(&["catalog", "show", "PW2020", "--lang", "ja"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("PW2020 retryOver (critical)"), "{out}");
    assert!(
        out.contains("text:        監視対象 {{target}}: リトライオーバー"),
        "{out}"
    );
    assert!(
        out.contains("action:      アプリケーションを調査してください。"),
        "{out}"
    );
    let o = run(&["catalog", "show", "PW9999"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn render_every_format() {
    let o = run(&["render", "PW2003", "--format", "rfc3164"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("<27>")
            && out.trim_end().ends_with(
                "]: PW2003 target httpd: process 4242 disappeared (killed by SIGSEGV, core dumped)"
            ),
        "{out}"
    );
    let o = run(&["render", "PW2003", "--format", "rfc5424", "--lang", "ja"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(" PW2003 [procward@32473 ")
            && out.contains("プロセス 4242 の消滅を検出しました"),
        "{out}"
    );
    let o = run(&["render", "PW2003", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["id"], "PW2003");
    assert_eq!(v["severity"], "error");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(run(&["render"]).status.code(), Some(2));
}

#[test]
fn config_from_the_environment_variable() {
    let env = Env::new();
    env.write_config("[[target]]\nname = \"x\"\nmatch.comm = \"x\"\n");
    let o = Command::new(BIN)
        .arg("check")
        .env("PROCWARD_CONFIG", env.cfg())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(BIN)
        .arg("check")
        .env("PROCWARD_CONFIG", env.path("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.toml:1:1: cannot read"));
}

#[test]
fn render_catalog_filters_and_mib_use_the_configured_catalog_and_templates() {
    let env = Env::new();
    let cat = env.path("catalog");
    let tpl = env.path("templates");
    std::fs::create_dir_all(&cat).unwrap();
    std::fs::create_dir_all(&tpl).unwrap();
    let embedded = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("message-catalog/messages.toml"),
    )
    .unwrap();
    let ours = embedded.replace(
        "text.en = \"target {{target}}: process {{pid}} disappeared ({{exit}})\"",
        "text.en = \"target {{target}}: process {{pid}} vanished ({{exit}})\"",
    );
    assert_ne!(ours, embedded);
    std::fs::write(cat.join("messages.toml"), ours).unwrap();
    std::fs::write(tpl.join("console.hbs"), "CONSOLE {{id}} {{text}}").unwrap();
    env.write_config(&format!(
        "[daemon]\ncatalog-dir = \"{}\"\ntemplates-dir = \"{}\"\nsnmp-root = \"1.3.6.1.4.1.99999\"\n",
        cat.display(),
        tpl.display()
    ));
    let out = |args: &[&str]| {
        let o = env.cli(args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert!(out(&["render", "PW2003"])
        .ends_with("process 4242 vanished (killed by SIGSEGV, core dumped)\n"));
    assert!(out(&["catalog", "show", "PW2003"]).contains("process {{pid}} vanished"));
    let dir = env.path("defs");
    out(&[
        "filters",
        "generate",
        "--manager",
        "esmpro",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let ini = std::fs::read_to_string(dir.join("esmpro/procward-en.ini")).unwrap();
    assert!(
        ini.contains(
            "Pattern=^PW2003 target .*: process [0-9]+ vanished \\(.*\\)( \\[seq=[0-9]+\\])?$"
        ),
        "{ini}"
    );
    assert!(out(&["mib"]).contains("enterprises 99999"));
    // Without a configuration file: the embedded catalog.
    let o = Command::new(BIN)
        .args(["render", "PW2003", "-c", "/nonexistent/procward.toml"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout)
        .ends_with("process 4242 disappeared (killed by SIGSEGV, core dumped)\n"));
}

/// README's first command: the demo runs the tour and ends cleanly (under
/// the test reaper, as every daemon in the suite).
#[test]
fn the_demo_runs_the_tour_and_ends_cleanly() {
    let o = Command::new(BIN)
        .args(["reaper", "--", BIN, "demo", "--timeout", "60"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for want in ["recovered in", "state retry-over", "PW2003", "done."] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
    // procward's own events, as it prints them in the foreground.
    let events = String::from_utf8_lossy(&o.stderr);
    for want in ["PW2015", "PW2020", "PW1002"] {
        assert!(events.contains(want), "{want} missing:\n{events}");
    }
}
