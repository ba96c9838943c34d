//! `procward demo`: a self-contained tour. It writes a sample service, a
//! restart script and a configuration into a temporary directory, starts
//! the real daemon on them, kills the service with SIGKILL three times and
//! shows detection, restart, RETRY-OVER and the rendered messages.

use crate::catalog::render::Renderer;
use crate::catalog::Catalog;
use crate::config::{SyslogFormat, SyslogSink, Transport};
use crate::control::{Client, Request};
use crate::model::Lang;
use crate::model::State;
use crate::monitor::TargetStatus;
use crate::notify::syslog;
use anyhow::{bail, Context};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Cleanup {
    dir: PathBuf,
    daemon: Option<Child>,
    service_pids: Vec<u32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            crate::action::stop_child(&mut d, Duration::from_secs(5));
        }
        // The service started last by the restart script, and every pid
        // seen as the demo service.
        let last = std::fs::read_to_string(self.dir.join("service.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        for pid in last.iter().chain(&self.service_pids) {
            kill(*pid);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SIGKILL by pid.
fn kill(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn status(sock: &Path) -> Option<TargetStatus> {
    let r = Client::call(sock, &Request::Status).ok()?;
    let rows: Vec<TargetStatus> = serde_json::from_value(r.result?).ok()?;
    rows.into_iter().next()
}

fn wait_for(
    sock: &Path,
    timeout: Duration,
    what: &str,
    f: impl Fn(&TargetStatus) -> bool,
) -> anyhow::Result<TargetStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(s) = status(sock) {
            if f(&s) {
                return Ok(s);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

/// A heading: bold on a terminal, plain into a pipe or with NO_COLOR.
fn say(s: &str) {
    use std::io::IsTerminal;
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    if colour {
        println!("\n\x1b[1m== {s}\x1b[0m");
    } else {
        println!("\n== {s}");
    }
}

pub(crate) fn run(timeout: Duration) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("procward-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let mut guard = Cleanup {
        dir: dir.clone(),
        daemon: None,
        service_pids: Vec::new(),
    };
    let (restart, cfg, sock) = write_files(&dir)?;
    say(&format!("configuration {}", cfg.display()));
    print!("{}", std::fs::read_to_string(&cfg)?);

    say("starting the sample service and procward (events print below as they happen)");
    let exe = std::env::current_exe()?;
    let script = format!(
        "{} && exec {} run -c {}",
        restart.display(),
        exe.display(),
        cfg.display()
    );
    let child = Command::new(&exe)
        .args(["reaper", "--", "/bin/sh", "-c", &script])
        .spawn()?;
    guard.daemon = Some(child);
    let st = wait_for(&sock, timeout, "the service to be monitored", |s| {
        s.state == State::Up
    })?;
    guard.service_pids.push(st.pids[0]);
    kill_three_times(&sock, st.pids[0], timeout, &mut guard)?;

    say("procward status");
    let out = Command::new(&exe)
        .args(["status", "-c"])
        .arg(&cfg)
        .output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    show_as_a_manager_sees_it(&dir)?;
    say("stopping procward and the sample service; removing the demo directory");
    drop(guard);
    println!("done. Next: `procward catalog list`, and README.md for a real configuration.");
    Ok(())
}

/// The sample service, its restart script and the configuration:
/// (restart script, configuration, control socket).
fn write_files(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let service = dir.join("demo-service.sh");
    let restart = dir.join("restart.sh");
    let cfg = dir.join("procward.toml");
    let sock = dir.join("control.sock");
    write(
        &service,
        &format!(
            "#!/bin/sh\necho $$ > {}\nwhile :; do sleep 1; done\n",
            dir.join("service.pid").display()
        ),
        0o700,
    )?;
    write(
        &restart,
        &format!(
            "#!/bin/sh\n# Started by procward with PROCWARD_TARGET=$PROCWARD_TARGET PROCWARD_REASON=$PROCWARD_REASON\nsetsid -f {} >/dev/null 2>&1 </dev/null\necho \"started demo-service (attempt ${{PROCWARD_ATTEMPT:-0}}/${{PROCWARD_MAX:-0}})\"\n",
            service.display()
        ),
        0o700,
    )?;
    write(
        &cfg,
        &format!(
            r#"[daemon]
interval = "1s"
state-dir = "{state}"
control-socket = "{sock}"

[[target]]
name = "demo-service"
match.cmdline = '^/bin/sh {svc}$'
restart.script = "{restart}"
restart.settle = "5s"
retry.max = 2
retry.window = "1h"
on-retry-over = "unmonitor"
"#,
            state = dir.join("state").display(),
            sock = sock.display(),
            svc = regex::escape(&service.display().to_string()),
            restart = restart.display(),
        ),
        0o600,
    )?;
    Ok((restart, cfg, sock))
}

/// SIGKILL the service three times: two restarts, then RETRY-OVER.
fn kill_three_times(
    sock: &Path,
    mut pid: u32,
    timeout: Duration,
    guard: &mut Cleanup,
) -> anyhow::Result<()> {
    for round in 1..=3 {
        std::thread::sleep(Duration::from_millis(800)); // time to read
        say(&format!(
            "kill -9 {pid}  (failure {round} of 3; retry.max = 2)"
        ));
        let t0 = Instant::now();
        kill(pid);
        if round < 3 {
            let st = wait_for(sock, timeout, "the restart", |s| {
                s.state == State::Up && s.pids.first() != Some(&pid)
            })?;
            println!(
                "   recovered in {:.0} ms: new pid {}, restarts in window {}/{}",
                t0.elapsed().as_secs_f64() * 1000.0,
                st.pids[0],
                st.restarts_in_window,
                st.retry_max
            );
            pid = st.pids[0];
            guard.service_pids.push(pid);
        } else {
            let st = wait_for(sock, timeout, "RETRY-OVER", |s| s.state == State::RetryOver)?;
            println!(
                "   state {}: procward stopped restarting ({} restarts in the window)",
                st.state, st.restarts_in_window
            );
        }
    }

    Ok(())
}

/// The first PW2003 of the journal as syslog and the journal carry it.
fn show_as_a_manager_sees_it(dir: &Path) -> anyhow::Result<()> {
    say("the same failure as an operations manager receives it");
    let events = crate::store::journal::read(&dir.join("state"), 0);
    let ev = events
        .iter()
        .find(|e| e.id == "PW2003")
        .context("no PW2003 in the journal")?;
    let r = Renderer::new(Arc::new(Catalog::embedded()), None, &ev.host)
        .map_err(|e| anyhow::anyhow!(e.join("; ")))?;
    for (label, format, transport, lang) in [
        (
            "RFC 3164 (local /dev/log)",
            SyslogFormat::Rfc3164,
            Transport::Unix,
            Lang::En,
        ),
        (
            "RFC 3164, Japanese",
            SyslogFormat::Rfc3164,
            Transport::Unix,
            Lang::Ja,
        ),
        (
            "RFC 5424 (network)",
            SyslogFormat::Rfc5424,
            Transport::Udp,
            Lang::En,
        ),
    ] {
        let sink = SyslogSink::for_rendering(format, transport, lang);
        println!(
            "{label}:\n   {}",
            String::from_utf8_lossy(&syslog::format(&sink, &r, ev, std::process::id()))
        );
    }
    println!(
        "journal (JSON lines in {}):\n   {}",
        dir.join("state/events.jsonl").display(),
        serde_json::to_string(ev)?
    );
    Ok(())
}
