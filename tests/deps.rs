//! `depends-on` with a chain of three real services: app → web → db.
//! A restart waits for the dependency it needs; the middle one stopped
//! stops what depends on it first, and its start brings that back after.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn seq(e: &serde_json::Value) -> u64 {
    e["seq"].as_u64().unwrap()
}

fn wait_state(env: &Env, target: &str, state: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = env.target_status(target);
        if st["state"] == state {
            return st;
        }
        assert!(Instant::now() < deadline, "{target} not {state}: {st}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_chain_of_three_services_waits_stops_and_starts_in_order() {
    let env = Env::new();
    let (db_tok, web_tok, app_tok) = (token(), token(), token());
    env.write_config(&format!(
        "{}{}{}{}",
        env.daemon_section(""),
        env.target_section("db", &db_tok, ""),
        env.target_section("web", &web_tok, "depends-on = [\"db\"]"),
        env.target_section("app", &app_tok, "depends-on = [\"web\"]"),
    ));
    // db takes a second to come back: long enough to see web wait.
    write_exec(
        &env.path("db.sh"),
        &format!("#!/bin/sh\nsleep 1\n{}", env.start_app_line(&db_tok)),
    );
    let db = Proc::sleeper(&db_tok);
    let web = Proc::sleeper(&web_tok);
    let _app = Proc::sleeper(&app_tok);
    let _d = env.start();
    for t in ["db", "web", "app"] {
        env.wait_nth("PW2001", t, 1, T);
    }

    // db and web die: web's restart waits until db runs again.
    db.signal(libc::SIGKILL);
    env.wait_nth("PW2010", "db", 1, T);
    web.signal(libc::SIGKILL);
    let wait = env.wait_nth("PW2044", "web", 1, T);
    assert_eq!(wait["fields"]["dependency"], "db");
    assert_eq!(wait["fields"]["state"], "restarting");
    assert_eq!(env.target_status("web")["waits_for"], "db");
    let db_back = env.wait_nth("PW2015", "db", 1, T);
    let web_restart = env.wait_nth("PW2010", "web", 1, T);
    assert!(
        seq(&web_restart) > seq(&db_back),
        "web restarts after db is back"
    );
    env.wait_nth("PW2015", "web", 1, T);
    assert_eq!(env.target_status("app")["state"], "up", "app never stopped");

    // The middle one stopped: app goes first, then web.
    let o = env.cli(&["stop", "web"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let app_stop = env.wait_nth("PW1011", "app", 1, T);
    let web_stop = env.wait_nth("PW1011", "web", 1, T);
    assert_eq!(app_stop["fields"]["by"], "dependency web");
    assert!(seq(&app_stop) < seq(&web_stop), "the dependent stops first");
    let st = wait_state(&env, "app", "stopped");
    assert_eq!(st["waits_for"], "web");
    wait_state(&env, "web", "stopped");
    assert!(sleepers(&app_tok).is_empty(), "app's process is gone");
    assert!(sleepers(&web_tok).is_empty(), "web's process is gone");
    let table = String::from_utf8_lossy(&env.cli(&["status"]).stdout).to_string();
    assert!(table.contains("waits for web (depends-on)"), "{table}");

    // web started again: app follows once web runs.
    let o = env.cli(&["start", "web"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let app_start = env.wait_nth("PW1010", "app", 1, T);
    assert_eq!(app_start["fields"]["by"], "dependency web");
    let web_up = env.wait_nth("PW2024", "web", 1, T);
    assert!(seq(&app_start) > seq(&web_up), "app starts after web runs");
    wait_state(&env, "app", "up");
    assert_eq!(sleepers(&app_tok).len(), 1);
}
