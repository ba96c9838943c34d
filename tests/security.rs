//! The trust boundaries of a root daemon, tried as a hostile local user
//! (uid 65534) would: pidfiles, the control socket, the state directory,
//! hostile state files. (Configuration and executables: the fixtures in
//! tests/invalid_configs/ and `run_refuses_an_untrusted_restart_script`.)
// Test harness, not procward: raw libc calls set up the conditions tested.
#![allow(unsafe_code)]

mod common;

use common::*;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

const NOBODY: u32 = 65534;

/// Run `f` on a thread whose credentials are uid/gid 65534 (Linux keeps
/// credentials per thread; the raw syscalls change this thread's only).
fn as_nobody<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(move || {
        // SAFETY: plain syscalls on this thread's own credentials.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()),
                0
            );
            assert_eq!(
                libc::syscall(libc::SYS_setresgid, NOBODY, NOBODY, NOBODY),
                0
            );
            assert_eq!(
                libc::syscall(libc::SYS_setresuid, NOBODY, NOBODY, NOBODY),
                0
            );
        }
        f()
    })
    .join()
    .unwrap()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// `procward run` on the environment's config, expected to refuse to start.
fn run_refused(env: &Env) -> String {
    let mut child = Command::new(BIN)
        .args(["run", "-c"])
        .arg(env.cfg())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + T;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert_eq!(st.code(), Some(1), "{err}");
            return err;
        }
        if Instant::now() > deadline {
            stop_child(&mut child, Duration::from_secs(5));
            panic!("procward run did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pidfile_target(name: &str, pidfile: &Path, extra: &str) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\nmatch.pidfile = \"{}\"\n{extra}\n",
        pidfile.display()
    )
}

/// Wait long enough for several discovery scans (interval 200 ms).
fn a_few_scans() {
    std::thread::sleep(Duration::from_millis(1200));
}

#[test]
fn run_refuses_an_untrusted_restart_script() {
    let env = Env::new();
    let script = env.path("restart.sh");
    write_exec(&script, "#!/bin/sh\nexit 0\n");
    std::os::unix::fs::chown(&script, Some(NOBODY), Some(NOBODY)).unwrap();
    env.write_config(&format!(
        "{}[[target]]\nname = \"app\"\nmatch.comm = \"app\"\nrestart.script = \"{}\"\n",
        env.daemon_section(""),
        script.display()
    ));
    let err = run_refused(&env);
    assert!(
        err.contains(&format!(
            "target[0].restart.script: {} is owned by nobody (uid 65534), not root; run: chown root {}",
            script.display(),
            script.display()
        )),
        "{err}"
    );
}

#[test]
fn a_pidfile_naming_an_unrelated_process_is_not_adopted_and_stop_leaves_it_alone() {
    let env = Env::new();
    let run = env.path("run-app");
    std::fs::create_dir(&run).unwrap();
    chmod(&run, 0o777); // the application's own directory, open to its user
    chmod(env.dir.path(), 0o755);
    let pidfile = run.join("app.pid");
    let victim = Proc::spawn(&["tail", "-f", "/dev/null"]);
    std::fs::write(&pidfile, format!("{}\n", victim.pid)).unwrap();
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        pidfile_target("app", &pidfile, "match.comm = \"sleep\"")
    ));
    // With another matcher, `check` has nothing to warn about.
    let o = env.cli(&["check"]);
    assert!(o.status.success());
    assert!(!String::from_utf8_lossy(&o.stderr).contains("warning"));
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2002" && e["target"] == "app");
    a_few_scans();
    assert!(!env.ids_for("app").contains(&"PW2001".to_string()));
    let o = env.cli(&["stop", "app", "--timeout", "1s"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(victim.pid), "procward signalled an unrelated process");

    // Without another matcher, `check` warns that others can write it.
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        pidfile_target("app", &pidfile, "")
    ));
    let o = env.cli(&["check"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "warning: {}:9:7: target[0].match.pidfile: can be written by others than root ({} is writable by others (mode 777); run: chmod o-w {}): whoever can write it chooses the process procward adopts",
            env.cfg().display(),
            run.display(),
            run.display()
        )),
        "{err}"
    );
    assert!(err.contains("add match.exe, match.comm, match.cmdline or match.user"));
}

#[test]
fn symlinked_pidfiles_are_followed_only_when_root_owns_the_link_and_the_file() {
    let env = Env::new();
    let tok = token();
    let app = Proc::sleeper(&tok);
    std::thread::sleep(Duration::from_millis(50));
    let real = env.path("real.pid");
    std::fs::write(&real, format!("{}\n", app.pid)).unwrap();
    let theirs = env.path("theirs.pid");
    std::fs::write(&theirs, format!("{}\n", app.pid)).unwrap();
    std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    let root_link = env.path("root-link.pid");
    std::os::unix::fs::symlink(&real, &root_link).unwrap();
    let their_link = env.path("their-link.pid");
    std::os::unix::fs::symlink(&real, &their_link).unwrap();
    std::os::unix::fs::lchown(&their_link, Some(NOBODY), Some(NOBODY)).unwrap();
    let link_to_theirs = env.path("link-to-theirs.pid");
    std::os::unix::fs::symlink(&theirs, &link_to_theirs).unwrap();
    env.write_config(&format!(
        "{}{}{}{}",
        env.daemon_section(""),
        pidfile_target("root-link", &root_link, ""),
        pidfile_target("their-link", &their_link, ""),
        pidfile_target("link-to-theirs", &link_to_theirs, "")
    ));
    let _d = env.start();
    let found = env.wait_event(T, |e| e["id"] == "PW2001" && e["target"] == "root-link");
    assert_eq!(found["pid"], app.pid);
    a_few_scans();
    assert!(!env.ids_for("their-link").contains(&"PW2001".to_string()));
    assert!(!env
        .ids_for("link-to-theirs")
        .contains(&"PW2001".to_string()));
}

#[test]
fn init_kernel_threads_and_procward_itself_are_never_adopted() {
    let env = Env::new();
    // A kernel thread other than kthreadd: a child of pid 2.
    let kthread: u32 = std::fs::read_to_string("/proc/2/task/2/children")
        .unwrap()
        .split_whitespace()
        .next()
        .expect("kthreadd has children")
        .parse()
        .unwrap();
    let names = ["init", "kthreadd", "kthread", "procward"];
    let mut cfg = env.daemon_section("");
    for n in names {
        cfg.push_str(&pidfile_target(n, &env.path(&format!("{n}.pid")), ""));
    }
    env.write_config(&cfg);
    let d = env.start();
    let me = d.procward_pid();
    // Written now: fresh files, so only the kind of process can refuse them.
    for (n, pid) in names.iter().zip([1, 2, kthread, me]) {
        std::fs::write(env.path(&format!("{n}.pid")), format!("{pid}\n")).unwrap();
    }
    for n in names {
        env.wait_event(T, |e| e["id"] == "PW2002" && e["target"] == n);
    }
    a_few_scans();
    let adopted: Vec<_> = env
        .events()
        .into_iter()
        .filter(|e| e["id"] == "PW2001")
        .collect();
    assert!(adopted.is_empty(), "{adopted:?}");
}

#[test]
fn a_fifo_or_dev_zero_pidfile_delays_no_other_target() {
    let env = Env::new();
    let tok = token();
    let fifo = env.path("fifo.pid");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let zero = env.path("zero.pid");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    env.write_config(&format!(
        "{}{}{}{}",
        env.daemon_section(""),
        pidfile_target("fifo", &fifo, ""),
        pidfile_target("zero", &zero, ""),
        env.target_section("web", &tok, "")
    ));
    let target = Proc::sleeper(&tok);
    let d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2001" && e["target"] == "web");
    // Scans go on: a crash of the other target is still recovered.
    target.signal(libc::SIGKILL);
    env.wait_event(T, |e| e["id"] == "PW2015" && e["target"] == "web");
    for t in ["fifo", "zero"] {
        env.wait_event(T, |e| e["id"] == "PW2002" && e["target"] == t);
    }
    // /dev/zero is never read in bulk: procward stays small.
    assert!(rss_kib(d.procward_pid()) < 64 * 1024);
}

#[test]
fn a_pidfile_older_than_the_process_it_names_never_counts() {
    let env = Env::new();
    let tok = token();
    let app = Proc::sleeper(&tok);
    std::thread::sleep(Duration::from_millis(400));
    // The file says it was written 300 ms before this process started:
    // the pid was reused after the file was written.
    let pidfile = env.path("app.pid");
    std::fs::write(&pidfile, format!("{}\n", app.pid)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&pidfile)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_millis(700))
        .unwrap();
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        pidfile_target("app", &pidfile, "")
    ));
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2002");
    a_few_scans();
    assert!(
        !env.ids().contains(&"PW2001".to_string()),
        "{:?}",
        env.ids()
    );
    // Written again by the process's own start-up: it counts.
    std::fs::write(&pidfile, format!("{}\n", app.pid)).unwrap();
    let found = env.wait_event(T, |e| e["id"] == "PW2001");
    assert_eq!(found["pid"], app.pid);
}

#[test]
fn control_group_lets_allowed_users_in_and_others_read_permission_denied() {
    let env = Env::new();
    chmod(env.dir.path(), 0o755);
    env.write_config(
        &env.daemon_section("control-allow = [\"root\", \"nobody\"]\ncontrol-group = \"nogroup\""),
    );
    let _d = env.start();
    let md = std::fs::metadata(env.sock()).unwrap();
    assert_eq!(md.mode() & 0o777, 0o660);
    assert_eq!(md.gid(), NOBODY);
    use std::os::unix::process::CommandExt;
    let o = Command::new(BIN)
        .args(["status", "--json"])
        .env("PROCWARD_SOCKET", env.sock())
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Without the group the socket is root's: the client says why.
    let env2 = Env::new();
    chmod(env2.dir.path(), 0o755);
    env2.write_config(&env2.daemon_section("control-allow = [\"root\", \"nobody\"]"));
    let w = env2.cli(&["check"]);
    assert!(
        String::from_utf8_lossy(&w.stderr).contains("daemon.control-allow: names users other than root, but the control socket is root's alone"),
        "{}",
        String::from_utf8_lossy(&w.stderr)
    );
    let _d2 = env2.start();
    let o = Command::new(BIN)
        .args(["status"])
        .env("PROCWARD_SOCKET", env2.sock())
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("permission denied on the control socket"),
        "{err}"
    );
    assert!(!err.contains("is the daemon running"), "{err}");
}

#[test]
fn a_refused_user_cannot_make_procward_read_or_buffer_anything() {
    let env = Env::new();
    chmod(env.dir.path(), 0o755);
    env.write_config(&env.daemon_section("control-group = \"nogroup\""));
    let d = env.start();
    let pid = d.procward_pid();
    let before = rss_kib(pid);
    let sock = env.sock();
    let (answer, written) = as_nobody(move || {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let chunk = vec![b'x'; 1 << 20];
        let mut written = 0usize;
        // 200 MB without a newline, unless procward hangs up first.
        while written < 200 << 20 {
            match s.write(&chunk) {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        (answer, written)
    });
    assert!(answer.contains("permission denied"), "{answer:?}");
    assert!(written < 16 << 20, "procward accepted {written} bytes");
    let after = rss_kib(pid);
    assert!(after < before + 16 * 1024, "RSS {before} -> {after} KiB");
    let denied = env.wait_event(T, |e| e["id"] == "PW1008");
    assert_eq!(denied["fields"]["uid"], NOBODY);
    assert_eq!(denied["fields"]["count"], 1);
}

#[test]
fn an_allowed_user_cannot_send_an_unbounded_request() {
    let env = Env::new();
    env.write_config(&env.daemon_section(""));
    let d = env.start();
    let pid = d.procward_pid();
    let before = rss_kib(pid);
    let mut s = UnixStream::connect(env.sock()).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'{'; 1 << 20];
        let mut written = 0usize;
        while written < 200 << 20 {
            match w.write(&chunk) {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        written
    });
    s.set_read_timeout(Some(T)).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let written = writer.join().unwrap();
    assert!(
        answer.contains("request longer than 65536 bytes"),
        "{answer:?}"
    );
    assert!(written < 16 << 20, "procward accepted {written} bytes");
    assert!(rss_kib(pid) < before + 16 * 1024);
    // The daemon still answers.
    assert!(env.cli(&["status"]).status.success());
}

#[test]
fn refused_connections_are_reported_once_per_interval_with_a_count() {
    let env = Env::new();
    chmod(env.dir.path(), 0o755);
    env.write_config(
        &env.daemon_section("control-group = \"nogroup\"\ncontrol-denied-interval = \"1s\""),
    );
    let _d = env.start();
    let sock = env.sock();
    const N: u64 = 2000;
    let started = Instant::now();
    as_nobody(move || {
        for _ in 0..N {
            let mut s = UnixStream::connect(&sock).unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).unwrap();
            assert!(answer.contains("permission denied"));
        }
    });
    let took = started.elapsed();
    // Every refused connection is counted, in few events (the last count
    // comes when its interval ends; allow for a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (events, total) = loop {
        let ev: Vec<_> = env
            .events()
            .into_iter()
            .filter(|e| e["id"] == "PW1008")
            .collect();
        let total: u64 = ev
            .iter()
            .map(|e| e["fields"]["count"].as_u64().unwrap())
            .sum();
        if total == N || Instant::now() > deadline {
            break (ev, total);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(total, N, "{events:?}");
    assert_eq!(events[0]["fields"]["count"], 1);
    let most = took.as_secs() as usize + 2;
    assert!(
        events.len() <= most,
        "{} PW1008 events for {N} connections in {took:?}",
        events.len()
    );
}

#[test]
fn run_refuses_to_replace_anything_but_a_stale_socket() {
    let env = Env::new();
    env.write_config(&env.daemon_section(""));
    std::fs::write(env.sock(), "precious").unwrap();
    let err = run_refused(&env);
    assert!(
        err.contains(&format!(
            "refusing to replace {} with the control socket: it is a regular file, not a stale socket",
            env.sock().display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(env.sock()).unwrap(), "precious");
}

#[test]
fn an_unsafe_state_directory_is_refused() {
    let env = Env::new();
    env.write_config(&env.daemon_section(""));
    std::fs::create_dir(env.state()).unwrap();
    chmod(&env.state(), 0o777);
    let err = run_refused(&env);
    assert!(
        err.contains(&format!(
            "{} is writable by others (mode 777); run: chmod o-w {}",
            env.state().display(),
            env.state().display()
        )),
        "{err}"
    );
    chmod(&env.state(), 0o700);
    std::os::unix::fs::chown(env.state(), Some(NOBODY), Some(NOBODY)).unwrap();
    let err = run_refused(&env);
    assert!(
        err.contains(&format!(
            "{} is owned by nobody (uid 65534), not root",
            env.state().display()
        )),
        "{err}"
    );
    // A new state directory is made 0700.
    std::fs::remove_dir(env.state()).unwrap();
    let mut d = env.start();
    d.stop();
    assert_eq!(
        std::fs::metadata(env.state()).unwrap().mode() & 0o777,
        0o700
    );
}

#[test]
fn planted_symlinks_in_the_state_directory_are_never_followed() {
    let env = Env::new();
    let tok = token();
    let victim = env.path("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::fs::create_dir(env.state()).unwrap();
    chmod(&env.state(), 0o700);
    std::os::unix::fs::symlink(&victim, env.state().join("state.json.tmp")).unwrap();
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        env.target_section("web", &tok, "")
    ));
    let mut d = env.start();
    let o = env.cli(&["pause", "web"]);
    assert!(o.status.success());
    env.wait_event(T, |e| e["id"] == "PW1005");
    d.stop();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let state = std::fs::symlink_metadata(env.state().join("state.json")).unwrap();
    assert!(state.is_file());
    assert!(std::fs::read_to_string(env.state().join("state.json"))
        .unwrap()
        .contains("\"paused\":true"));

    // The journal replaced by a symlink: procward refuses to write through it.
    std::fs::remove_file(env.state().join("events.jsonl")).unwrap();
    std::os::unix::fs::symlink(&victim, env.state().join("events.jsonl")).unwrap();
    let err = run_refused(&env);
    assert!(
        err.contains(&format!(
            "{} is a symbolic link; procward does not follow links in its state directory",
            env.state().join("events.jsonl").display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

#[test]
fn hostile_state_files_never_make_procward_panic() {
    let env = Env::new();
    let tok = token();
    std::fs::create_dir(env.state()).unwrap();
    chmod(&env.state(), 0o700);
    std::fs::write(
        env.state().join("snmp-engine.json"),
        r#"{"engine_id": "0xé€é€é€é€é€é€", "boots": 4294967295}"#,
    )
    .unwrap();
    std::fs::write(
        env.state().join("state.json"),
        r#"{"version":1,"targets":{"web":{"attempts":[18446744073709551615,0,18446744073709551614],"paused":false,"halted":"no-such-state","ever_up":true,"last_pid":4294967295}}}"#,
    )
    .unwrap();
    let port = free_udp_port();
    env.write_config(&format!(
        "{}[[sink.snmp]]\nname = \"nms\"\naddress = \"127.0.0.1:{port}\"\nversion = \"2c\"\ncommunity = \"public\"\n{}",
        env.daemon_section(""),
        env.target_section("web", &tok, "")
    ));
    let target = Proc::sleeper(&tok);
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2001");
    target.signal(libc::SIGKILL);
    env.wait_event(T, |e| e["id"] == "PW2003");
    let st = env.target_status("web");
    assert!(st["state"].is_string());
    let engine: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.state().join("snmp-engine.json")).unwrap(),
    )
    .unwrap();
    let id = engine["engine_id"].as_str().unwrap();
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
}
