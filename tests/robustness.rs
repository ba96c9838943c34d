//! Robustness, round 3 (issue 27): what an unlucky operator or a hostile
//! local user could still do. Each test reproduces one defect with real
//! processes, files and sockets.

mod common;

use common::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `[daemon]` section with its own `interval` (Env::daemon_section
/// fixes 200ms).
fn daemon_with_interval(env: &Env, interval: &str, extra: &str) -> String {
    format!(
        "[daemon]\ninterval = \"{interval}\"\nstate-dir = \"{}\"\ncontrol-socket = \"{}\"\nzombie-grace = \"300ms\"\n{extra}\n",
        env.state().display(),
        env.sock().display()
    )
}

fn runs(env: &Env, name: &str) -> usize {
    std::fs::read_to_string(env.path(&format!("{name}.runs")))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// A restart script: counts its runs in NAME.runs, then `body`.
fn script(env: &Env, name: &str, body: &str) -> PathBuf {
    let p = env.path(&format!("{name}.sh"));
    write_exec(
        &p,
        &format!(
            "#!/bin/sh\necho run >> {}\n{body}",
            env.path(&format!("{name}.runs")).display()
        ),
    );
    p
}

fn target(name: &str, tok: &str, script: &Path, extra: &str) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\nmatch.cmdline = '^sleep 1000\\.{tok}$'\nrestart.script = \"{}\"\n{extra}\n",
        script.display()
    )
}

/// A target `app` whose restart script is `body` (after counting its run),
/// found up, then its process killed: the daemon, now recovering it.
fn up_then_killed(env: &Env, tok: &str, daemon: &str, body: &str, extra: &str) -> Daemon {
    let s = script(env, "app", body);
    env.write_config(&format!("{daemon}{}", target("app", tok, &s, extra)));
    let app = Proc::sleeper(tok);
    let d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2001");
    drop(app);
    d
}

fn wait_for(what: &str, timeout: Duration, f: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------- 1 ----

/// A directory owned by uid 65534 (nobody), mode 0755, inside the test's
/// directory (made traversable for nobody).
fn nobody_dir(env: &Env, name: &str) -> PathBuf {
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let d = env.path(name);
    std::fs::create_dir(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
    d
}

/// A pidfile that nobody (uid 65534) can write names a root process:
/// procward must not adopt it, must say so, and `procward stop` must not
/// signal it. A process that runs as nobody is adopted.
#[test]
fn a_pidfile_another_user_can_write_never_points_procward_at_a_root_process() {
    let env = Env::new();
    let run = nobody_dir(&env, "run");
    let tok = token();
    let victim = Proc::sleeper(&tok); // root's
    let pidfile = run.join("app.pid");
    std::fs::write(&pidfile, format!("{}\n", victim.pid)).unwrap();
    std::os::unix::fs::chown(&pidfile, Some(65534), Some(65534)).unwrap();
    env.write_config(&format!(
        "{}[[target]]\nname = \"app\"\nmatch.pidfile = \"{}\"\n",
        env.daemon_section(""),
        pidfile.display()
    ));
    let _d = env.start();
    let refused = env.wait_event(T, |e| e["id"] == "PW2025");
    assert_eq!(refused["pid"], victim.pid, "{refused}");
    let text = refused["text"].as_str().unwrap();
    assert!(text.contains("uid 0") && text.contains("65534"), "{text}");
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        !env.ids_for("app").contains(&"PW2001".to_string()),
        "adopted: {:?}",
        env.ids_for("app")
    );
    let refusals = env.ids().iter().filter(|i| *i == "PW2025").count();
    assert_eq!(refusals, 1, "said once per process, not per scan");
    let o = env.cli(&["stop", "app", "--timeout", "1s"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        Path::new(&format!("/proc/{}", victim.pid)).exists()
            && std::fs::read_to_string(format!("/proc/{}/stat", victim.pid))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false),
        "procward stop signalled root's process {}",
        victim.pid
    );

    // A process of the user who can write the pidfile is the target.
    let tok2 = token();
    let mut own = Command::new("sleep");
    own.arg(format!("1000.{tok2}"))
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .process_group(0);
    let mut own = own.spawn().unwrap();
    let pidfile2 = run.join("own.pid");
    std::fs::write(&pidfile2, format!("{}\n", own.id())).unwrap();
    std::os::unix::fs::chown(&pidfile2, Some(65534), Some(65534)).unwrap();
    let cfg = std::fs::read_to_string(env.cfg()).unwrap();
    env.write_config(&format!(
        "{cfg}[[target]]\nname = \"own\"\nmatch.pidfile = \"{}\"\n",
        pidfile2.display()
    ));
    assert_eq!(env.cli(&["reload"]).status.code(), Some(0));
    let found = env.wait_event(T, |e| e["id"] == "PW2001" && e["target"] == "own");
    assert_eq!(found["pid"], own.id());
    let _ = own.kill();
    let _ = own.wait();
}

// ---------------------------------------------------------------- 2 ----

/// A burst of connections to the metrics port that send a request and
/// never read the answer: `status` keeps answering within a second and a
/// killed target is restarted at once.
#[test]
fn a_metrics_burst_never_delays_monitoring_or_control() {
    const N: usize = 400;
    let env = Env::new();
    let tok = token();
    let port = free_tcp_port();
    let tok_of = |i: usize| format!("{tok}{i:04}");
    let start_line = env.start_app_line(&tok_of(0));
    let script = script(&env, "t0", &start_line);
    let mut cfg = env.daemon_section(&format!("metrics-listen = \"127.0.0.1:{port}\""));
    let mut procs = Vec::new();
    for i in 0..N {
        let t = tok_of(i);
        cfg.push_str(&target(
            &format!("t{i}"),
            &t,
            &script,
            "restart.settle = \"5s\"",
        ));
        if i > 0 {
            procs.push(Proc::sleeper(&t));
        }
    }
    let first = Proc::sleeper(&tok_of(0));
    env.write_config(&cfg);
    let _d = env.start();
    let up = || env.ids().iter().filter(|i| *i == "PW2001").count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while up() < N {
        assert!(
            Instant::now() < deadline,
            "{} of {N} targets up; journal: {:?}",
            up(),
            env.ids()
                .iter()
                .filter(|i| *i != "PW2001")
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let burst: Vec<_> = (0..6)
        .map(|_| {
            let stop = stop.clone();
            let sent = sent.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(15);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline
                {
                    if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
                        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let t0 = Instant::now();
        let o = env.cli(&["status", "t1", "--json"]);
        slowest = slowest.max(t0.elapsed());
        assert!(o.status.code().is_some(), "{o:?}");
    }
    let killed = Instant::now();
    first.signal(libc::SIGKILL);
    drop(first);
    let rec = Duration::from_secs(10);
    env.wait_event(rec, |e| e["id"] == "PW2015" && e["target"] == "t0");
    let recovered = killed.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for b in burst {
        b.join().unwrap();
    }
    eprintln!(
        "metrics burst: {} requests; status at most {slowest:?}; recovery {recovered:?}",
        sent.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(slowest < Duration::from_secs(1), "status took {slowest:?}");
    assert!(
        recovered < Duration::from_secs(2),
        "recovery took {recovered:?}"
    );
    // Scrapes still work after the burst.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut body);
    assert!(
        body.contains("procward_target_up{target=\"t1\"} 1"),
        "{body:.300}"
    );
}

// ---------------------------------------------------------------- 3 ----

/// A target `app` whose script starts it after 1 s.
fn slow_start_config(env: &Env, tok: &str) {
    let s = script(env, "app", &format!("sleep 1\n{}", env.start_app_line(tok)));
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        target("app", tok, &s, "")
    ));
}

/// `procward start app --offline --wait 10s`, running.
fn offline_start(env: &Env) -> std::process::Child {
    Command::new(BIN)
        .args(["start", "app", "--offline", "--wait", "10s", "-c"])
        .arg(env.cfg())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Two `start --offline` at once start the application once.
#[test]
fn two_offline_starts_at_once_start_one_instance() {
    let env = Env::new();
    let tok = token();
    slow_start_config(&env, &tok);
    let (a, b) = (offline_start(&env), offline_start(&env));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(a.status.code(), Some(0), "{a:?}");
    assert_eq!(b.status.code(), Some(0), "{b:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(runs(&env, "app"), 1, "the script ran twice");
    assert_eq!(sleepers(&tok).len(), 1, "instances: {:?}", sleepers(&tok));
}

/// `procward run` while `start --offline` runs the script: the daemon
/// waits for it and adopts what it started.
#[test]
fn the_daemon_adopts_what_an_offline_start_is_starting() {
    let env = Env::new();
    let tok = token();
    slow_start_config(&env, &tok);
    let offline = offline_start(&env);
    wait_for("the offline start's script", T, || runs(&env, "app") == 1);
    let _d = env.start();
    let o = offline.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    env.wait_event(T, |e| e["id"] == "PW2001" && e["target"] == "app");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(runs(&env, "app"), 1, "the script ran twice");
    assert_eq!(sleepers(&tok).len(), 1, "instances: {:?}", sleepers(&tok));
    let ids = env.ids_for("app");
    assert!(!ids.contains(&"PW2010".to_string()), "{ids:?}");
    assert!(!ids.contains(&"PW2021".to_string()), "{ids:?}");
}

// ---------------------------------------------------------------- 4 ----

/// Started offline, then died while procward was down: the next procward
/// says which process disappeared, in full text.
#[test]
fn an_application_started_offline_that_died_is_reported_with_its_text() {
    let env = Env::new();
    let tok = token();
    let s = script(&env, "app", &env.start_app_line(&tok));
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        target("app", &tok, &s, "retry.max = 1")
    ));
    let o = env.cli(&["start", "app", "--offline"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let pid = sleepers(&tok)[0];
    kill(pid, libc::SIGKILL);
    wait_for("its end", T, || sleepers(&tok).is_empty());
    let _d = env.start();
    let ev = env.wait_event(T, |e| e["id"] == "PW2003");
    let text = ev["text"].as_str().unwrap();
    assert!(!text.contains("text unavailable"), "{text}");
    assert!(
        text.contains(&format!("process {pid} disappeared")),
        "{text}"
    );
    env.wait_event(T, |e| e["id"] == "PW2015");
}

// ---------------------------------------------------------------- 5 ----

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// A script that writes 100 MB: the log stays bounded while it runs, and
/// its failure event keeps a short excerpt of the end.
#[test]
fn script_output_is_bounded_while_the_script_runs() {
    let env = Env::new();
    let tok = token();
    let body = format!(
        "head -c 100000000 /dev/zero | tr '\\000' x\necho\necho the-last-line\ntouch {}\nsleep 2\nexit 3\n",
        env.path("written").display()
    );
    let daemon = env.daemon_section("");
    let extra = "retry.max = 1\nrestart.timeout = \"60s\"";
    let _d = up_then_killed(&env, &tok, &daemon, &body, extra);
    let logs = env.state().join("script-logs");
    wait_for("the script's output", Duration::from_secs(30), || {
        env.path("written").exists()
    });
    let during = dir_size(&logs);
    let failed = env.wait_event(Duration::from_secs(30), |e| e["id"] == "PW2012");
    let after = dir_size(&logs);
    eprintln!("script-logs: {during} bytes while it ran, {after} after");
    let bound = 2 * (1 << 20) + 64 * 1024;
    assert!(during <= bound, "{during} bytes while the script ran");
    assert!(after <= bound, "{after} bytes after");
    let output = failed["fields"]["output"].as_str().unwrap();
    assert!(output.contains("the-last-line"), "{output:.100}");
    assert!(output.chars().count() <= 301, "{}", output.len());
}

// ---------------------------------------------------------------- 6 ----

/// A script that starts the application and then exits 1: procward finds
/// the application before the next attempt and never runs the script
/// again. Discovery runs at 5 s, the backoff is 300 ms.
#[test]
fn a_failing_script_that_started_the_application_is_not_run_again() {
    for initial in ["300ms", "0s"] {
        let env = Env::new();
        let tok = token();
        // It starts the application, checks for 0.2 s, then fails.
        let body = format!("{}sleep 0.2\nexit 1\n", env.start_app_line(&tok));
        let daemon = daemon_with_interval(&env, "5s", "");
        let retry =
            format!("retry.max = 3\nretry.backoff = {{ initial = \"{initial}\", max = \"1s\" }}");
        let _d = up_then_killed(&env, &tok, &daemon, &body, &retry);
        env.wait_event(T, |e| e["id"] == "PW2012");
        let back = env.wait_event(T, |e| e["id"] == "PW2015" || e["id"] == "PW2017");
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(runs(&env, "app"), 1, "backoff {initial}: ran again");
        let pids = sleepers(&tok);
        assert_eq!(pids.len(), 1, "backoff {initial}: instances {pids:?}");
        assert_eq!(back["pid"], pids[0]);
        assert_eq!(env.target_status("app")["state"], "up");
    }
}

// ---------------------------------------------------------------- 7 ----

/// A damaged sequence file holding u64::MAX: numbers go on after the
/// journal's highest, never back to 0, and the damage is said.
#[test]
fn a_damaged_sequence_file_never_sends_seq_back() {
    let env = Env::new();
    let tok = token();
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        env.target_section("app", &tok, "")
    ));
    let mut d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2002");
    d.stop();
    let before = env
        .events()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .max()
        .unwrap();
    std::fs::write(env.state().join("seq"), "18446744073709551615\n").unwrap();
    let _d = env.start();
    let said = env.wait_event(T, |e| e["id"] == "PW1014");
    assert!(
        said["text"]
            .as_str()
            .unwrap()
            .contains("18446744073709551615"),
        "{said}"
    );
    let all = env.events();
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(*seqs.last().unwrap() > before);
    assert!(seqs.iter().all(|&s| s < 1 << 53), "{seqs:?}");
}

// ---------------------------------------------------------------- 8 ----

/// State written while the clock was a day ahead (a record of a restart)
/// must not win over the operator's `stop` after the correction.
#[test]
fn a_clock_a_day_ahead_does_not_undo_a_stop() {
    let env = Env::new();
    let tok = token();
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        env.target_section("app", &tok, "")
    ));
    let app = Proc::sleeper(&tok);
    // A record of the target written while the wall clock was a day ahead.
    let ahead_us = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64)
        + 86_400_000_000;
    let inflight = env.state().join("inflight");
    std::fs::create_dir_all(&inflight).unwrap();
    for d in [env.state(), inflight.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::write(
        inflight.join("app.json"),
        format!(
            "{{\"saved_ms\":{ahead_us},\"target\":\"app\",\"state\":{{\"attempts\":[],\"paused\":false,\"ever_up\":true,\"last_pid\":{}}}}}",
            app.pid
        ),
    )
    .unwrap();
    let mut d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2001");
    let o = env.cli(&["stop", "app"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    drop(app);
    std::thread::sleep(Duration::from_millis(300));
    kill(d.procward_pid(), libc::SIGKILL);
    d.stop();
    let _d = env.start();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(env.target_status("app")["state"], "stopped");
    assert!(
        sleepers(&tok).is_empty(),
        "started again: {:?}",
        sleepers(&tok)
    );
}

// ---------------------------------------------------------------- 9 ----

/// `procward stop` while the restart script runs (it starts the
/// application after 2 s), or while the next attempt waits for its
/// backoff: stop succeeds only when nothing of the target runs, and
/// nothing starts it afterwards.
#[test]
fn stop_during_a_restart_leaves_nothing_running() {
    // (a) the script is running; it starts the application after 2 s.
    let env = Env::new();
    let tok = token();
    let body = format!("sleep 2\n{}", env.start_app_line(&tok));
    let daemon = env.daemon_section("");
    let _d = up_then_killed(&env, &tok, &daemon, &body, "restart.settle = \"5s\"");
    env.wait_event(T, |e| e["id"] == "PW2010");
    let o = env.cli(&["stop", "app", "--timeout", "2s"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(sleepers(&tok).is_empty(), "running at stop's return");
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        sleepers(&tok).is_empty(),
        "an instance came back: {:?}",
        sleepers(&tok)
    );
    assert_eq!(env.target_status("app")["state"], "stopped");

    // (b) the script started the application and goes on running.
    let env = Env::new();
    let tok = token();
    let body = format!("{}sleep 30\n", env.start_app_line(&tok));
    let daemon = env.daemon_section("");
    let _d = up_then_killed(&env, &tok, &daemon, &body, "");
    wait_for("the new instance", T, || sleepers(&tok).len() == 1);
    let o = env.cli(&["stop", "app", "--timeout", "2s"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        sleepers(&tok).is_empty(),
        "left running: {:?}",
        sleepers(&tok)
    );

    // (c) the next attempt waits for its backoff.
    let env = Env::new();
    let tok = token();
    let body = format!(
        "[ -e {ok} ] || exit 1\n{}",
        env.start_app_line(&tok),
        ok = env.path("ok").display()
    );
    let daemon = env.daemon_section("");
    let backoff = "retry.backoff = { initial = \"2s\", max = \"2s\" }";
    let _d = up_then_killed(&env, &tok, &daemon, &body, backoff);
    env.wait_event(T, |e| e["id"] == "PW2016");
    std::fs::write(env.path("ok"), "").unwrap();
    let o = env.cli(&["stop", "app"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs(&env, "app"), 1, "the backoff's attempt ran");
    assert!(sleepers(&tok).is_empty(), "{:?}", sleepers(&tok));
}
