//! Stall detection with real processes: a SIGSTOPped process, a TCP server
//! that accepts and never answers HTTP, a heartbeat file that stops being
//! touched, an exec probe that hangs. Each detection time is printed
//! against its bound (interval × failures + timeout), not asserted as a
//! timing: the machines are shared. What is asserted is the behaviour.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn event_time(e: &serde_json::Value) -> u64 {
    e["time_ms"].as_u64().unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn a_stopped_process_is_detected_killed_and_restarted() {
    let env = Env::new();
    let tok = token();
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        env.target_section(
            "frozen",
            &tok,
            "stall.probe = { kind = \"state\", max-duration = \"300ms\" }\nstall.interval = \"200ms\"\nstall.failures = 2\nstall.stop-timeout = \"300ms\""
        )
    ));
    let target = Proc::sleeper(&tok);
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2001");
    let t0 = now_ms();
    target.signal(libc::SIGSTOP);
    let st = env.wait_event(T, |e| e["id"] == "PW2040");
    assert_eq!(st["pid"], target.pid);
    assert_eq!(st["fields"]["probe"], "state");
    assert_eq!(st["fields"]["action"], "restart");
    assert!(
        st["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("stopped (T)"),
        "{st}"
    );
    println!(
        "SIGSTOP detected after {} ms (bound: 300ms + 200ms x 2 + one interval = 900 ms)",
        event_time(&st) - t0
    );
    // SIGTERM stays pending on a stopped process: SIGKILL after stop-timeout ends it.
    let r = env.wait_event(T, |e| e["id"] == "PW2010");
    assert_eq!(r["fields"]["reason"], "stalled");
    assert!(
        !env.ids().contains(&"PW2003".to_string()),
        "a stop we caused is not a disappearance"
    );
    env.wait_event(T, |e| e["id"] == "PW2015");
    assert!(env.cli(&["status", "--json"]).status.success());
}

/// A server that accepts connections and, until `answer` is set, never
/// replies; then replies 200.
fn silent_http_server(
    answer: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> (u16, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            match l.accept() {
                Ok((mut s, _)) => {
                    if answer.load(Ordering::Relaxed) {
                        use std::io::{Read, Write};
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                        let mut buf = [0u8; 1024];
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        );
                    } else {
                        held.push(s);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (port, h)
}

#[test]
fn an_http_server_that_never_answers_is_reported_and_cleared_under_notify() {
    let env = Env::new();
    let tok = token();
    let answer = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (port, server) = silent_http_server(answer.clone(), stop.clone());
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        env.target_section(
            "api",
            &tok,
            &format!("stall.probe = {{ kind = \"http\", url = \"http://127.0.0.1:{port}/health\", timeout = \"300ms\" }}\nstall.interval = \"200ms\"\nstall.failures = 2\nstall.action = \"notify\"")
        )
    ));
    let target = Proc::sleeper(&tok);
    let _d = env.start();
    let found = env.wait_event(T, |e| e["id"] == "PW2001");
    let st = env.wait_event(T, |e| e["id"] == "PW2040");
    assert_eq!(st["fields"]["action"], "notify");
    assert!(
        st["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("no answer within 300ms"),
        "{st}"
    );
    println!(
        "silent HTTP detected {} ms after monitoring began (bound: (200ms + 300ms) x 2 = 1000 ms)",
        event_time(&st) - event_time(&found)
    );
    let status = env.target_status("api");
    assert!(
        status["probe"]
            .as_str()
            .unwrap()
            .starts_with("failed: GET http://127.0.0.1"),
        "{status}"
    );
    assert!(status["probe_failures"].as_u64().unwrap() >= 2);
    answer.store(true, Ordering::Relaxed);
    env.wait_event(T, |e| e["id"] == "PW2041");
    assert_eq!(env.target_status("api")["probe"], "ok");
    // notify never restarts.
    assert!(!env.ids().contains(&"PW2010".to_string()));
    assert_eq!(env.target_status("api")["pids"][0], target.pid);
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

#[test]
fn a_heartbeat_file_that_stops_being_touched_means_a_restart() {
    let env = Env::new();
    let tok = token();
    let hb = env.path("heartbeat");
    std::fs::write(&hb, "").unwrap();
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        env.target_section(
            "beat",
            &tok,
            &format!("stall.probe = {{ kind = \"heartbeat\", path = \"{}\", max-age = \"500ms\" }}\nstall.interval = \"200ms\"\nstall.failures = 2\nstall.stop-timeout = \"1s\"", hb.display())
        )
    ));
    let target = Proc::sleeper(&tok);
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2001");
    // Touch it for a while: no stall.
    for _ in 0..10 {
        std::fs::File::options()
            .write(true)
            .open(&hb)
            .unwrap()
            .set_modified(std::time::SystemTime::now())
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !env.ids().contains(&"PW2040".to_string()),
        "{:?}",
        env.ids()
    );
    let t0 = now_ms();
    let st = env.wait_event(T, |e| e["id"] == "PW2040");
    assert!(
        st["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("old (max 500ms)"),
        "{st}"
    );
    println!(
        "stale heartbeat detected {} ms after the last touch (bound: 500ms + 200ms x 2 = 900 ms)",
        event_time(&st) - t0
    );
    // SIGTERM ends a sleeping process: restart with reason stalled.
    let r = env.wait_event(T, |e| e["id"] == "PW2010");
    assert_eq!(r["fields"]["reason"], "stalled");
    assert_eq!(r["pid"], target.pid);
}

#[test]
fn a_hanging_exec_probe_is_killed_with_its_children() {
    let env = Env::new();
    let tok = token();
    let pids = env.path("probe.pids");
    let probe = env.path("probe.sh");
    write_exec(
        &probe,
        &format!(
            "#!/bin/sh\ncat /proc/$PPID/comm >> {p}.parent\nsleep 100 &\necho $! >> {p}\necho $$ >> {p}\nwait\n",
            p = pids.display()
        ),
    );
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        env.target_section(
            "hang",
            &tok,
            &format!("stall.probe = {{ kind = \"exec\", command = [\"{}\"], timeout = \"300ms\" }}\nstall.interval = \"200ms\"\nstall.failures = 2\nstall.action = \"notify\"", probe.display())
        )
    ));
    let _target = Proc::sleeper(&tok);
    let _d = env.start();
    let found = env.wait_event(T, |e| e["id"] == "PW2001");
    let st = env.wait_event(T, |e| e["id"] == "PW2040");
    assert!(
        st["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("no answer within 300ms"),
        "{st}"
    );
    println!(
        "hanging exec probe detected {} ms after monitoring began (bound: (200ms + 300ms) x 2 = 1000 ms)",
        event_time(&st) - event_time(&found)
    );
    // Started by the spawner, not forked from the daemon.
    let parents = std::fs::read_to_string(env.path("probe.pids.parent")).unwrap();
    assert!(parents.lines().all(|l| l == "procward-spawn"), "{parents}");
    // Every probe shell and its background sleep are gone (or zombies
    // awaiting their reaper), none left running.
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&pids).unwrap();
    let all: Vec<u32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert!(all.len() >= 4, "{all:?}");
    let mut buf = Vec::new();
    // The last probe may still be running: check all but the last two pids.
    for pid in &all[..all.len() - 2] {
        if let Ok(Some(s)) = procward::sys::proc::read_stat(*pid, &mut buf) {
            assert!(
                s.is_dead() || s.comm != "sleep" && s.comm != "probe.sh",
                "probe process {pid} ({}) leaked",
                s.comm
            );
        }
    }
}
