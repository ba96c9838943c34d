//! The `processsaver` profile through a real rsyslogd, with a manager
//! filter written for ProcessSaver's Down line (issue 31).

mod common;

use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// rsyslogd on a unix socket: every line to all.log, and the lines an
/// existing ProcessSaver filter matches (`pcheck`, `] Down`) to alert.log.
struct Receiver {
    child: Child,
    dir: std::path::PathBuf,
}

impl Receiver {
    fn start(dir: &Path) -> Receiver {
        let dir = dir.join("rsyslog");
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{d}")
module(load="imuxsock" SysSock.Use="off")
template(name="t" type="string" string="%syslogfacility-text% %syslogtag%%msg%\n")
input(type="imuxsock" Socket="{d}/log.sock")
*.* action(type="omfile" file="{d}/all.log" template="t")
if $programname == 'pcheck' and re_match($msg, "Process \\['[^']+',pid=[0-9]+\\] Down") then {{
  action(type="omfile" file="{d}/alert.log" template="t")
}}
"#,
                d = dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("rsyslogd")
            .args(["-n", "-i"])
            .arg(dir.join("rsyslogd.pid"))
            .arg("-f")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("rsyslogd.err")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + T;
        while !dir.join("log.sock").exists() {
            assert!(Instant::now() < deadline, "rsyslogd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Receiver { child, dir }
    }

    fn lines(&self, file: &str) -> Vec<String> {
        file_lines(&self.dir.join(file))
    }

    fn wait(&self, file: &str, needle: &str) -> String {
        wait_line(&self.dir.join(file), needle)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(10));
    }
}

#[test]
fn a_processsaver_filter_fires_on_a_procward_disappearance() {
    if !require("rsyslogd") {
        return;
    }
    let env = Env::new();
    let rx = Receiver::start(env.dir.path());
    let tok = token();
    env.write_config(&format!(
        "{}[[sink.syslog]]\nname = \"legacy\"\naddress = \"{}\"\nprofile = \"processsaver\"\nprocesssaver = {{ facility = \"local5\" }}\nmin-severity = \"debug\"\n{}",
        env.daemon_section(""),
        rx.dir.join("log.sock").display(),
        env.target_section("app", &tok, "")
    ));
    let app = Proc::sleeper(&tok);
    let d = env.start();
    let me = d.procward_pid();
    let up = rx.wait("all.log", ") Up");
    assert_eq!(
        up,
        format!("local5 pcheck[{me}]: ('app' ,pid={}) Up", app.pid)
    );
    let pid = app.pid;
    drop(app);
    let alert = rx.wait("alert.log", "Down");
    assert_eq!(
        alert,
        format!("local5 pcheck[{me}]: Process ['app',pid={pid}] Down")
    );
    rx.wait(
        "all.log",
        &format!("local5 pcheck[{me}]: Try to restart ('app')"),
    );
    // Events without a legacy line keep procward's own (the sink's facility).
    rx.wait(
        "all.log",
        &format!("daemon procward[{me}]: PW2011 target app"),
    );
    let o = env.cli(&["stop", "app"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    rx.wait(
        "all.log",
        &format!("local5 padmin[{me}]: Command execute. [stop] pfile='app'"),
    );
    // Only the Down line matched the manager's filter.
    assert_eq!(
        rx.lines("alert.log").len(),
        1,
        "{:?}",
        rx.lines("alert.log")
    );
}

const GUIDES: [&str; 2] = [
    "docs/migration-processsaver.md",
    "docs/migration-processsaver.ja.md",
];

fn guide(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The worked example of each guide (its `toml` block with a
/// `[[target]]`) passes `procward check`, with its restart script installed
/// where it says (under the test's directory) and its state directory
/// there too.
#[test]
fn the_migration_guides_example_passes_check() {
    for g in GUIDES {
        let text = guide(g);
        let block = text
            .split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .find(|b| b.contains("[[target]]"))
            .unwrap_or_else(|| panic!("{g}: no example"));
        let env = Env::new();
        let root = env.path("root");
        let script = root.join("opt/app/sbin/restart-appserver.sh");
        std::fs::create_dir_all(script.parent().unwrap()).unwrap();
        write_exec(&script, "#!/bin/sh\nexit 0\n");
        let cfg = block
            .replace(
                "/opt/app/sbin/",
                &format!("{}/opt/app/sbin/", root.display()),
            )
            .replace("/var/lib/procward", &env.state().display().to_string())
            .replace(
                "[daemon]\n",
                &format!("[daemon]\ncontrol-socket = \"{}\"\n", env.sock().display()),
            );
        env.write_config(&cfg);
        let o = env.cli(&["check"]);
        assert_eq!(o.status.code(), Some(0), "{g}: {o:?}\n{cfg}");
    }
}

/// Each guide's table names every catalog message once, with the legacy
/// line the code writes for it (or none).
#[test]
fn the_guides_map_every_message_as_the_code_does() {
    use procward::notify::legacy::{line_of, Line};
    let catalog = Command::new(BIN)
        .args(["catalog", "list"])
        .output()
        .unwrap();
    let ids: Vec<String> = String::from_utf8_lossy(&catalog.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("PW"))
        .map(str::to_string)
        .collect();
    assert!(ids.len() > 40, "{ids:?}");
    for g in GUIDES {
        let text = guide(g);
        for id in &ids {
            let rows: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("| {id} |")))
                .collect();
            assert_eq!(rows.len(), 1, "{g}: {id}: {rows:?}");
            let legacy = rows[0].rsplit('|').nth(1).unwrap().trim();
            let want = match line_of(id) {
                None => None,
                Some(Line::Up) => Some("pcheck[PID]: ('NAME' ,pid=N) Up".to_string()),
                Some(Line::Down) => Some("pcheck[PID]: Process ['NAME',pid=N] Down".into()),
                Some(Line::TryRestart) => Some("pcheck[PID]: Try to restart ('NAME')".into()),
                Some(Line::SetPidFail) => Some("pcheck[PID]: Set pid fail ('NAME')".into()),
                Some(Line::Admin(a)) => Some(format!(
                    "padmin[PID]: Command execute. [{a}] pfile='{}'",
                    if a == "reload" { "CONFIG" } else { "NAME" }
                )),
            };
            match want {
                None => assert!(legacy == "none" || legacy == "なし", "{g}: {id}: {legacy}"),
                Some(w) => assert_eq!(legacy, format!("`{w}`"), "{g}: {id}"),
            }
        }
    }
}
