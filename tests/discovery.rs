//! Discovery without scans: with the process-events connector (root, the
//! initial namespaces) a process procward waits for is found when it
//! execs, long before the next /proc scan; without it (forced off) the
//! scan finds it at its interval.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn config(env: &Env, tok: &str) -> String {
    // A scan every 30 s: a process found within 2 s was not found by it.
    format!(
        "[daemon]\ninterval = \"30s\"\nstate-dir = \"{}\"\ncontrol-socket = \"{}\"\n\n[[target]]\nname = \"late\"\nmatch.cmdline = '^sleep 1000\\.{tok}$'\n",
        env.state().display(),
        env.sock().display()
    )
}

#[test]
fn a_waited_for_process_is_found_when_it_starts_not_at_the_next_scan() {
    let env = Env::new();
    let tok = token();
    env.write_config(&config(&env, &tok));
    let _d = env.start();
    let started = env.wait_event(T, |e| e["id"] == "PW1001");
    if started["fields"]["discovery"] == "scan" {
        assert!(
            std::env::var("CI").is_err(),
            "no process events under CI (root is expected): {started}"
        );
        eprintln!("skipped: the process-events connector is not available");
        return;
    }
    assert_eq!(
        started["fields"]["discovery"],
        "process events, scan as safety net"
    );
    env.wait_event(T, |e| e["id"] == "PW2002");
    // Several rounds: start, found, kill (the target waits again).
    let mut took = Vec::new();
    // Found: PW2001 the first time, PW2017 ("back") after each end.
    let count = |ids: &[&str]| {
        env.events()
            .iter()
            .filter(|e| e["target"] == "late" && ids.iter().any(|i| e["id"] == *i))
            .count()
    };
    for _ in 0..5 {
        let n = count(&["PW2001", "PW2017"]);
        let t0 = Instant::now();
        let p = Proc::sleeper(&tok);
        while count(&["PW2001", "PW2017"]) == n {
            assert!(
                t0.elapsed() < Duration::from_secs(2),
                "not found within 2s (the scan runs every 30s): {:?}",
                env.ids()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        took.push(t0.elapsed());
        assert_eq!(env.target_status("late")["pids"][0], p.pid);
        let m = count(&["PW2003"]);
        p.signal(libc::SIGKILL);
        let deadline = Instant::now() + T;
        while count(&["PW2003"]) == m {
            assert!(Instant::now() < deadline, "{:?}", env.ids());
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(p);
    }
    println!("start → PW2001 (including the test's own polling): {took:?}");
}

#[test]
fn with_process_events_off_the_scan_still_finds_it() {
    let env = Env::new();
    let tok = token();
    env.write_config(&config(&env, &tok).replace("\"30s\"", "\"1s\""));
    let _d = env.start_with(&[("PROCWARD_PROC_EVENTS", "off")]);
    let started = env.wait_event(T, |e| e["id"] == "PW1001");
    assert_eq!(started["fields"]["discovery"], "scan");
    env.wait_event(T, |e| e["id"] == "PW2002");
    let p = Proc::sleeper(&tok);
    let found = env.wait_event(T, |e| e["id"] == "PW2001");
    assert_eq!(found["pid"], p.pid);
}
