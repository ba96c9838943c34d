//! How a process ended, for processes procward did not start: the
//! application is started by its restart script with `setsid -f` (a double
//! fork), so its parent is the test's child subreaper above procward, as
//! with systemd; procward learns the exit status from the kernel anyway.

mod common;

use common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// An application `/bin/sh APP` that runs until `APP.stop` exists and
/// exits with the number in it; started (detached) by its restart script,
/// which records its environment in `start.env.ATTEMPT`. With `zombie`,
/// its parent never reaps it (a zombie until procward gives up waiting).
fn app(env: &Env, tok: &str, zombie: bool) -> (PathBuf, String) {
    let app = env.path(&format!("app-{tok}.sh"));
    write_exec(
        &app,
        &format!(
            "#!/bin/sh\nulimit -c unlimited\nstop={s}\nwhile [ ! -e $stop ]; do sleep 0.02; done\nexit $(cat $stop)\n",
            s = env.path("stop").display()
        ),
    );
    let pids = env.path("started.pids").display().to_string();
    let launch = if zombie {
        // The parent execs into sleep: it never waits for the application.
        format!(
            "setsid -f /bin/sh -c 'echo $$ >> {pids}; /bin/sh {a} & echo $! >> {pids}; exec sleep 1000.{tok}' </dev/null >/dev/null 2>&1",
            a = app.display()
        )
    } else {
        format!(
            "setsid -f /bin/sh -c 'echo $$ >> {pids}; exec /bin/sh {a}' </dev/null >/dev/null 2>&1",
            a = app.display()
        )
    };
    let script = env.path("start.sh");
    write_exec(
        &script,
        &format!(
            "#!/bin/sh\ncd {dir}\nenv | grep ^PROCWARD_ | sort > {dir}/start.env.tmp\nmv {dir}/start.env.tmp {dir}/start.env.$PROCWARD_ATTEMPT\nrm -f {dir}/stop\n{launch}\n",
            dir = env.dir.path().display()
        ),
    );
    let section = format!(
        "[[target]]\nname = \"app\"\nmatch.cmdline = '^/bin/sh {}$'\nrestart.script = \"{}\"\nrestart.settle = \"3s\"\nretry.max = 5\n",
        regex::escape(&app.display().to_string()),
        script.display()
    );
    (app, section)
}

fn start_app(env: &Env) -> u32 {
    let o = env.cli(&["start", "app", "--wait", "10s"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    env.target_status("app")["pids"][0].as_u64().unwrap() as u32
}

/// The n-th PW2003/PW2004 for app.
fn end_event(env: &Env, id: &str, n: usize) -> Value {
    env.wait_nth(id, "app", n, T)
}

fn script_env(env: &Env, attempt: u32) -> String {
    let p = env.path(&format!("start.env.{attempt}"));
    let deadline = std::time::Instant::now() + T;
    while !p.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::read_to_string(p).unwrap()
}

fn stop_with(env: &Env, code: i32) {
    std::fs::write(env.path("stop.tmp"), code.to_string()).unwrap();
    std::fs::rename(env.path("stop.tmp"), env.path("stop")).unwrap();
}

#[test]
fn signals_exit_statuses_and_core_dumps_of_processes_procward_did_not_start() {
    let env = Env::new();
    let tok = token();
    let (_, section) = app(&env, &tok, false);
    env.write_config(&format!("{}{section}", env.daemon_section("")));
    let _d = env.start();
    let started = env.wait_event(T, |e| e["id"] == "PW1001");
    assert_eq!(started["fields"]["exit_source"], "pidfd info, zombie stat");

    // SIGKILL
    let pid = start_app(&env);
    kill(pid, libc::SIGKILL);
    let ev = end_event(&env, "PW2003", 1);
    assert_eq!(ev["pid"], pid);
    assert_eq!(ev["fields"]["signal"], "SIGKILL");
    assert_eq!(ev["fields"]["core_dumped"], false);
    assert!(ev["fields"].get("exit_code").is_none(), "{ev}");
    assert_eq!(
        ev["text"],
        format!("target app: process {pid} disappeared (killed by SIGKILL)")
    );
    let e = script_env(&env, 1);
    assert!(e.contains("PROCWARD_EXIT_SIGNAL=SIGKILL\n"), "{e}");
    assert!(e.contains("PROCWARD_EXIT_CODE=\n"), "{e}");
    assert!(e.contains("PROCWARD_CORE_DUMPED=false\n"), "{e}");
    env.wait_nth("PW2015", "app", 1, T);

    // SIGSEGV with core dumps allowed (ulimit -c unlimited, core_pattern
    // "core" in the working directory: the test's directory).
    let pid = env.target_status("app")["pids"][0].as_u64().unwrap() as u32;
    kill(pid, libc::SIGSEGV);
    let ev = end_event(&env, "PW2003", 2);
    assert_eq!(ev["fields"]["signal"], "SIGSEGV");
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    if core_pattern.trim() == "core" {
        assert_eq!(ev["fields"]["core_dumped"], true, "{ev}");
        assert_eq!(
            ev["text"],
            format!("target app: process {pid} disappeared (killed by SIGSEGV, core dumped)")
        );
        let e = script_env(&env, 2);
        assert!(e.contains("PROCWARD_CORE_DUMPED=true\n"), "{e}");
    }
    env.wait_nth("PW2015", "app", 2, T);

    // exit 3, then exit 0
    let pid = env.target_status("app")["pids"][0].as_u64().unwrap() as u32;
    stop_with(&env, 3);
    let ev = end_event(&env, "PW2003", 3);
    assert_eq!(ev["pid"], pid);
    assert_eq!(ev["fields"]["exit_code"], 3);
    assert!(ev["fields"].get("signal").is_none(), "{ev}");
    assert_eq!(ev["fields"]["core_dumped"], false);
    assert_eq!(
        ev["text"],
        format!("target app: process {pid} disappeared (exit status 3)")
    );
    let e = script_env(&env, 3);
    assert!(
        e.contains("PROCWARD_EXIT_CODE=3\n") && e.contains("PROCWARD_EXIT_SIGNAL=\n"),
        "{e}"
    );
    env.wait_nth("PW2015", "app", 3, T);
    stop_with(&env, 0);
    let ev = end_event(&env, "PW2003", 4);
    assert_eq!(ev["fields"]["exit_code"], 0);
    assert_eq!(ev["fields"]["exit"], "exit status 0");
    env.wait_nth("PW2015", "app", 4, T);

    // status --json and the Japanese text
    let st = env.target_status("app");
    assert_eq!(st["last_exit"]["code"], 0, "{st}");
    let o = env.cli(&["render", "PW2003", "--lang", "ja"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("(シグナル SIGSEGV で終了、コアダンプあり)")
    );
}

#[test]
fn success_exit_statuses_end_the_target_without_a_restart() {
    let env = Env::new();
    let tok = token();
    let (_, section) = app(&env, &tok, false);
    env.write_config(&format!(
        "{}{section}success-exit = [0, 2]\n",
        env.daemon_section("")
    ));
    let _d = env.start();
    let pid = start_app(&env);
    stop_with(&env, 2);
    let ev = env.wait_event(T, |e| e["id"] == "PW2019");
    assert_eq!(ev["pid"], pid);
    assert_eq!(ev["fields"]["exit_code"], 2);
    std::thread::sleep(Duration::from_millis(500));
    let ids = env.ids_for("app");
    assert!(
        !ids.contains(&"PW2010".into()) && !ids.contains(&"PW2003".into()),
        "{ids:?}"
    );
    assert_eq!(env.target_status("app")["state"], "waiting");
    // Started again: found, and an exit status not listed is a failure.
    start_app(&env);
    stop_with(&env, 1);
    let ev = end_event(&env, "PW2003", 1);
    assert_eq!(ev["fields"]["exit_code"], 1);
    env.wait_nth("PW2010", "app", 1, T);
    // A status outside 0..=255 is refused by check.
    env.write_config(&format!(
        "{}{section}success-exit = [256]\n",
        env.daemon_section("")
    ));
    let o = env.cli(&["check"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("success-exit: 256 is not an exit status"));
}

/// Each source forced by PROCWARD_EXIT_SOURCE: `pidfd` alone still knows
/// (the application's parent reaps it at once); `zombie` alone reads the
/// status of a process whose parent does not reap it; `none` says
/// "unknown" and leaves the fields and PROCWARD_EXIT_* empty.
#[test]
fn each_exit_source_forced_and_the_unknown_fallback() {
    // pidfd only
    let env = Env::new();
    let tok = token();
    let (_, section) = app(&env, &tok, false);
    env.write_config(&format!("{}{section}", env.daemon_section("")));
    let d = env.start_with(&[("PROCWARD_EXIT_SOURCE", "pidfd")]);
    assert_eq!(
        env.wait_event(T, |e| e["id"] == "PW1001")["fields"]["exit_source"],
        "pidfd info"
    );
    start_app(&env);
    stop_with(&env, 7);
    assert_eq!(end_event(&env, "PW2003", 1)["fields"]["exit_code"], 7);
    drop(d);

    // none
    let env = Env::new();
    let tok = token();
    let (_, section) = app(&env, &tok, false);
    env.write_config(&format!("{}{section}", env.daemon_section("")));
    let _d = env.start_with(&[("PROCWARD_EXIT_SOURCE", "none")]);
    assert_eq!(
        env.wait_event(T, |e| e["id"] == "PW1001")["fields"]["exit_source"],
        "none"
    );
    let pid = start_app(&env);
    stop_with(&env, 7);
    let ev = end_event(&env, "PW2003", 1);
    assert_eq!(
        ev["text"],
        format!("target app: process {pid} disappeared (exit status unknown)")
    );
    for f in ["exit_code", "signal", "core_dumped"] {
        assert!(ev["fields"].get(f).is_none(), "{ev}");
    }
    let e = script_env(&env, 1);
    for v in [
        "PROCWARD_EXIT_CODE=\n",
        "PROCWARD_EXIT_SIGNAL=\n",
        "PROCWARD_CORE_DUMPED=\n",
    ] {
        assert!(e.contains(v), "{e}");
    }

    // zombie only: the parent never reaps the application.
    let env = Env::new();
    let tok = token();
    let (_, section) = app(&env, &tok, true);
    env.write_config(&format!("{}{section}", env.daemon_section("")));
    let _d = env.start_with(&[("PROCWARD_EXIT_SOURCE", "zombie")]);
    assert_eq!(
        env.wait_event(T, |e| e["id"] == "PW1001")["fields"]["exit_source"],
        "zombie stat"
    );
    let pid = start_app(&env);
    stop_with(&env, 5);
    let ev = end_event(&env, "PW2004", 1);
    assert_eq!(ev["pid"], pid);
    assert_eq!(ev["fields"]["exit_code"], 5, "{ev}");
    assert!(
        ev["text"].as_str().unwrap().ends_with("; exit status 5)"),
        "{ev}"
    );
    let e = script_env(&env, 1);
    assert!(e.contains("PROCWARD_EXIT_CODE=5\n"), "{e}");
}

/// The application ends while procward itself is down (being restarted):
/// nobody can tell how; the next procward says so, and the restart
/// script gets empty PROCWARD_EXIT_*.
#[test]
fn an_end_while_procward_is_down_is_reported_as_unknown() {
    let env = Env::new();
    let tok = token();
    let (_, section) = app(&env, &tok, false);
    env.write_config(&format!("{}{section}", env.daemon_section("")));
    let mut d = env.start();
    let pid = start_app(&env);
    d.stop();
    stop_with(&env, 3);
    // Gone before procward comes back (bounded).
    let deadline = std::time::Instant::now() + T;
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let _d = env.start();
    let ev = end_event(&env, "PW2003", 1);
    assert_eq!(ev["pid"], pid);
    assert_eq!(ev["fields"]["exit"], "exit status unknown", "{ev}");
    let e = script_env(&env, 1);
    assert!(e.contains("PROCWARD_EXIT_CODE=\n"), "{e}");
}
