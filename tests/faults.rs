//! Restarts under faults, with real processes: a failing operator's start,
//! a full state directory, write failures, procward killed in the middle
//! of a restart, sequence numbers across a crash, default backoff,
//! operator commands after RETRY-OVER, process groups, and status.

mod common;

use common::*;
use serde_json::Value;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn count_of(env: &Env, id: &str) -> usize {
    env.ids().iter().filter(|i| *i == id).count()
}

/// A restart script that counts its runs in `NAME.runs` and starts the
/// target only when `NAME.ok` exists (after sleeping `delay` seconds).
fn counting_script(env: &Env, name: &str, tok: &str, delay: &str) -> PathBuf {
    let p = env.path(&format!("{name}.sh"));
    write_exec(
        &p,
        &format!(
            "#!/bin/sh\necho run >> {runs}\nsleep {delay}\n[ -e {ok} ] || {{ echo not starting; exit 1; }}\n{start}",
            runs = env.path(&format!("{name}.runs")).display(),
            ok = env.path(&format!("{name}.ok")).display(),
            start = env.start_app_line(tok),
        ),
    );
    p
}

fn runs(env: &Env, name: &str) -> usize {
    std::fs::read_to_string(env.path(&format!("{name}.runs")))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn target(name: &str, tok: &str, script: &Path, extra: &str) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\nmatch.cmdline = '^sleep 1000\\.{tok}$'\nrestart.script = \"{}\"\n{}\n{extra}\n",
        script.display(),
        if extra.contains("restart.settle") {
            ""
        } else {
            "restart.settle = \"500ms\""
        }
    )
}

#[test]
fn start_with_a_failing_script_is_one_attempt_then_counted_retries_and_retry_over() {
    let env = Env::new();
    let tok = token();
    let script = counting_script(&env, "web", &tok, "0");
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        target(
            "web",
            &tok,
            &script,
            "retry.max = 2\nretry.backoff = { initial = \"100ms\", max = \"1s\" }"
        )
    ));
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2002");
    let o = env.cli(&["start", "web", "--wait", "20s"]);
    assert_eq!(o.status.code(), Some(1), "start must fail");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("state retry-over"), "{err}");
    env.wait_event(T, |e| e["id"] == "PW2020");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(runs(&env, "web"), 3, "one start, then retry.max restarts");
    let ids = env.ids_for("web");
    let seq: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|i| i.starts_with("PW1") || ["PW2021", "PW2023", "PW2010", "PW2020"].contains(i))
        .collect();
    assert_eq!(
        seq,
        ["PW1010", "PW2021", "PW2023", "PW2010", "PW2010", "PW2020"],
        "{ids:?}"
    );
    let started = env.wait_event(T, |e| e["id"] == "PW2021");
    assert!(
        started["text"].as_str().unwrap().starts_with(
            "target web: starting it for the operator's start (not counted as a retry)"
        ),
        "{started}"
    );
    let failed = env.wait_event(T, |e| e["id"] == "PW2023");
    assert_eq!(
        failed["text"],
        "target web: the operator's start failed (exit code 1): not starting"
    );
    let st = env.target_status("web");
    assert_eq!(st["state"], "retry-over");
    assert_eq!(st["restarts_in_window"], 2);
}

#[test]
fn start_whose_script_starts_nothing_ends_in_retry_over_too() {
    let env = Env::new();
    let tok = token();
    let script = env.path("noop.sh");
    write_exec(
        &script,
        &format!(
            "#!/bin/sh\necho run >> {}\n",
            env.path("noop.runs").display()
        ),
    );
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        target(
            "web",
            &tok,
            &script,
            "retry.max = 1\nretry.backoff = { initial = \"100ms\", max = \"1s\" }"
        )
    ));
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2002");
    let o = env.cli(&["start", "web", "--wait", "20s"]);
    assert_eq!(o.status.code(), Some(1));
    env.wait_event(T, |e| e["id"] == "PW2020");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(runs(&env, "noop"), 2);
    let failed = env.wait_event(T, |e| e["id"] == "PW2023");
    assert_eq!(
        failed["text"],
        "target web: the operator's start failed (no process within 500ms): "
    );
}

/// A tmpfs of `kib` KiB mounted at `dir`, unmounted when dropped.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(dir: &Path, kib: u32) -> SmallFs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        SmallFs(dir.to_path_buf())
    }

    /// Fill it: write until the disk says no.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let p = self.0.join("filler");
        let mut f = std::fs::File::create(&p).unwrap();
        let block = vec![0u8; 4096];
        for _ in 0..100_000 {
            if f.write_all(&block).is_err() {
                break;
            }
        }
        let _ = f.sync_all();
        p
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A syslog receiver on a Unix datagram socket: what the manager sees
/// when procward's own disk is full.
struct Receiver {
    sock: UnixDatagram,
    lines: Vec<String>,
}

impl Receiver {
    fn bind(path: &Path) -> Receiver {
        let sock = UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Receiver {
            sock,
            lines: Vec::new(),
        }
    }

    fn wait(&mut self, needle: &str) -> String {
        self.wait_count(needle, 1)
    }

    /// Wait for the first line with `needle` from line `from` on.
    fn wait_from(&mut self, from: usize, needle: &str) -> String {
        self.wait_where(
            |lines| {
                lines
                    .iter()
                    .skip(from)
                    .find(|l| l.contains(needle))
                    .cloned()
            },
            needle,
        )
    }

    /// Wait for the `n`-th line with `needle`, return it.
    fn wait_count(&mut self, needle: &str, n: usize) -> String {
        self.wait_where(
            |lines| {
                lines
                    .iter()
                    .filter(|l| l.contains(needle))
                    .nth(n - 1)
                    .cloned()
            },
            needle,
        )
    }

    fn wait_where(&mut self, find: impl Fn(&[String]) -> Option<String>, needle: &str) -> String {
        let deadline = Instant::now() + T;
        let mut buf = vec![0u8; 65536];
        loop {
            if let Some(l) = find(&self.lines) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no `{needle}` in {:#?}",
                self.lines
            );
            if let Ok(n) = self.sock.recv(&mut buf) {
                self.lines
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }
}

#[test]
fn a_full_state_directory_stops_no_restart_and_is_reported_once() {
    let env = Env::new();
    let tok = token();
    let fs = SmallFs::mount(&env.state(), 256);
    let mut rx = Receiver::bind(&env.path("syslog.sock"));
    env.write_config(&format!(
        "{}[[sink.syslog]]\nname = \"local\"\ntransport = \"unix\"\naddress = \"{}\"\nmin-severity = \"debug\"\n{}",
        env.daemon_section(""),
        env.path("syslog.sock").display(),
        env.target_section("web", &tok, "")
    ));
    let target = Proc::sleeper(&tok);
    let _d = env.start();
    rx.wait("PW2001");
    let filler = fs.fill();
    target.signal(libc::SIGKILL);
    rx.wait(&format!("PW2003 target web: process {}", target.pid));
    rx.wait("PW2010");
    let back = rx.wait("PW2015");
    assert!(back.contains("recovered by restart 1"), "{back}");
    let new = sleepers(&tok);
    assert_eq!(new.len(), 1, "the restart script ran: {new:?}");
    rx.wait("PW1012 cannot write the restart script log of web");
    // Events go on until the journal's last page is full too.
    for _ in 0..100 {
        if rx
            .lines
            .iter()
            .any(|l| l.contains("PW1012 cannot write the event journal"))
        {
            break;
        }
        assert!(env.cli(&["pause", "web"]).status.success());
        assert!(env.cli(&["resume", "web"]).status.success());
        rx.wait_count("PW1006", 1);
    }
    rx.wait("PW1012 cannot write the event journal");
    // Each kind of write failure is said once per outage.
    let mut said: Vec<&str> = rx
        .lines
        .iter()
        .filter_map(|l| {
            l.split("PW1012 cannot write the ")
                .nth(1)?
                .split(" at ")
                .next()
        })
        .collect();
    let n = said.len();
    said.dedup();
    assert_eq!(said.len(), n, "{:#?}", rx.lines);
    // Space again: the journal recovers, and says how many writes failed.
    std::fs::remove_file(filler).unwrap();
    assert!(env.cli(&["pause", "web"]).status.success());
    let ok = rx.wait("PW1013 writing the event journal");
    assert!(ok.contains("(failed writes meanwhile: "), "{ok}");
    // No line of the journal is torn or merged with the next.
    let journal = std::fs::read_to_string(env.state().join("events.jsonl")).unwrap();
    assert!(journal.ends_with('\n'));
    for l in journal.lines() {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}"));
    }
    drop(_d);
}

#[test]
fn a_partial_last_journal_line_is_repaired_at_start_up() {
    let env = Env::new();
    env.write_config(&env.daemon_section(""));
    let mut d = env.start();
    env.wait_event(T, |e| e["id"] == "PW1001");
    d.stop();
    let j = env.state().join("events.jsonl");
    let mut text = std::fs::read_to_string(&j).unwrap();
    text.push_str("{\"seq\":99,\"id\":\"PW10");
    std::fs::write(&j, text).unwrap();
    let _d = env.start();
    let deadline = Instant::now() + T;
    while count_of(&env, "PW1001") < 2 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            std::fs::read_to_string(&j)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let journal = std::fs::read_to_string(&j).unwrap();
    for l in journal.lines() {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}"));
    }
    assert_eq!(count_of(&env, "PW1001"), 2);
}

#[test]
fn procward_killed_during_a_slow_restart_runs_the_script_once() {
    let env = Env::new();
    let tok = token();
    let script = counting_script(&env, "web", &tok, "2");
    std::fs::write(env.path("web.ok"), "").unwrap();
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        target("web", &tok, &script, "restart.settle = \"3s\"")
    ));
    let app = Proc::sleeper(&tok);
    let mut d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2001");
    app.signal(libc::SIGKILL);
    env.wait_event(T, |e| e["id"] == "PW2010");
    let deadline = Instant::now() + T;
    while runs(&env, "web") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The script is sleeping: kill procward now, start it again.
    common::kill(d.procward_pid(), libc::SIGKILL);
    d.stop();
    let _d = env.start();
    let rec = env.wait_event(T, |e| e["id"] == "PW2015");
    assert_eq!(rec["fields"]["attempt"], 1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(runs(&env, "web"), 1, "the script ran twice");
    assert_eq!(count_of(&env, "PW2003"), 1, "{:?}", env.ids());
    assert_eq!(count_of(&env, "PW2010"), 1, "{:?}", env.ids());
    assert_eq!(sleepers(&tok).len(), 1, "two application instances");
    let done = env.wait_event(T, |e| e["id"] == "PW2011");
    assert!(
        done["text"]
            .as_str()
            .unwrap()
            .contains("exit status unknown: started by an earlier procward"),
        "{done}"
    );
    assert_eq!(env.target_status("web")["restarts_in_window"], 1);
}

#[test]
fn sequence_numbers_stay_unique_across_a_crash() {
    let env = Env::new();
    let tok = token();
    let mut rx = Receiver::bind(&env.path("syslog.sock"));
    env.write_config(&format!(
        "{}[[sink.syslog]]\nname = \"local\"\ntransport = \"unix\"\naddress = \"{}\"\nformat = \"rfc5424\"\nmin-severity = \"debug\"\n{}",
        env.daemon_section(""),
        env.path("syslog.sock").display(),
        env.target_section("web", &tok, "")
    ));
    let mut d = env.start();
    rx.wait("PW2002");
    for _ in 0..5 {
        assert!(env.cli(&["pause", "web"]).status.success());
        assert!(env.cli(&["resume", "web"]).status.success());
    }
    common::kill(d.procward_pid(), libc::SIGKILL);
    d.stop();
    let _d = env.start();
    let second = rx.wait_count(" PW1001 ", 2);
    let from = rx.lines.iter().position(|l| *l == second).unwrap();
    // (Whether the last resume was saved before the kill is a race: reset
    // works either way.)
    assert!(env.cli(&["reset", "web"]).status.success());
    rx.wait_from(from, " PW1007 ");
    // Every message the receiver got has its own seq.
    let seqs: Vec<u64> = rx
        .lines
        .iter()
        .filter_map(|l| {
            let i = l.find(" seq=\"")? + 6;
            l[i..].split('"').next()?.parse().ok()
        })
        .collect();
    let mut unique = seqs.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seqs.len(), "{seqs:?}");
    // And the journal's are increasing.
    let js: Vec<u64> = env
        .events()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(js.windows(2).all(|w| w[0] < w[1]), "{js:?}");
    assert!(env.state().join("seq").exists());
}

#[test]
fn by_default_only_the_first_restart_is_immediate() {
    let env = Env::new();
    let tok = token();
    let script = counting_script(&env, "web", &tok, "0");
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        target("web", &tok, &script, "")
    ));
    let app = Proc::sleeper(&tok);
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2001");
    app.signal(libc::SIGKILL);
    env.wait_event(Duration::from_secs(20), |e| e["id"] == "PW2020");
    let ev = env.events();
    let at = |id: &str, n: usize| -> u64 {
        ev.iter()
            .filter(|e| e["id"] == id)
            .nth(n)
            .map(|e| e["time_ms"].as_u64().unwrap())
            .unwrap()
    };
    assert!(
        at("PW2010", 0) - at("PW2003", 0) < 500,
        "first restart at once"
    );
    let d2 = at("PW2010", 1) - at("PW2012", 0);
    let d3 = at("PW2010", 2) - at("PW2012", 1);
    assert!((750..1500).contains(&d2), "second after ~1s: {d2} ms");
    assert!((1550..2600).contains(&d3), "third after ~2s: {d3} ms");
    let delayed = ev.iter().find(|e| e["id"] == "PW2016").unwrap();
    assert_eq!(delayed["fields"]["attempt"], 2);
}

#[test]
fn reset_and_start_after_retry_over() {
    let env = Env::new();
    let tok = token();
    let script = counting_script(&env, "web", &tok, "0");
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        target(
            "web",
            &tok,
            &script,
            "retry.max = 1\nretry.backoff = { initial = \"100ms\", max = \"1s\" }"
        )
    ));
    let app = Proc::sleeper(&tok);
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2001");
    app.signal(libc::SIGKILL);
    env.wait_event(T, |e| e["id"] == "PW2020");
    // reset: the counter is cleared, the process's end is not said again.
    assert!(env.cli(&["reset", "web"]).status.success());
    env.wait_event(T, |e| e["id"] == "PW1007");
    env.wait_nth("PW2020", "web", 2, T);
    assert_eq!(count_of(&env, "PW2003"), 1, "{:?}", env.ids());
    // start: "try again" clears the window; the start script works now.
    std::fs::write(env.path("web.ok"), "").unwrap();
    let o = env.cli(&["start", "web", "--wait", "10s"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let started = env.wait_event(T, |e| e["id"] == "PW1010");
    assert_eq!(started["fields"]["cleared"], 1);
    let up = env.wait_event(T, |e| e["id"] == "PW2024");
    assert!(up["text"]
        .as_str()
        .unwrap()
        .starts_with("target web: started for the operator's start, process "));
    assert_eq!(env.target_status("web")["restarts_in_window"], 0);
    // The next failure is restarted, not straight RETRY-OVER.
    let pid = up["pid"].as_u64().unwrap() as u32;
    common::kill(pid, libc::SIGKILL);
    env.wait_event(T, |e| e["id"] == "PW2015");
    assert_eq!(count_of(&env, "PW2020"), 2);
}

#[test]
fn a_group_counts_its_members_and_restarts_only_below_min() {
    let env = Env::new();
    let tok = token();
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        env.target_section("pool", &tok, "count = { min = 3, max = 4 }")
    ));
    let members: Vec<Proc> = (0..5).map(|_| Proc::sleeper(&tok)).collect();
    let _d = env.start();
    let found = env.wait_event(T, |e| e["id"] == "PW2001");
    assert_eq!(found["fields"]["count"], 5);
    env.wait_event(T, |e| e["id"] == "PW2006");
    // The first-found member ends: back within max, nothing else.
    let first = found["pid"].as_u64().unwrap() as u32;
    let m0 = members.iter().find(|m| m.pid == first).unwrap();
    m0.signal(libc::SIGKILL);
    let normal = env.wait_event(T, |e| e["id"] == "PW2007");
    assert_eq!(normal["fields"]["count"], 4);
    let st = env.target_status("pool");
    assert_eq!(st["state"], "up");
    assert_eq!(st["pids"].as_array().unwrap().len(), 4);
    // Another: 3 left, said, no restart.
    let others: Vec<&Proc> = members.iter().filter(|m| m.pid != first).collect();
    others[0].signal(libc::SIGKILL);
    let left = env.wait_event(T, |e| e["id"] == "PW2009");
    assert_eq!(left["pid"], others[0].pid);
    assert_eq!(left["fields"]["count"], 3);
    // Below min: restart (the script starts one more: 3 again).
    others[1].signal(libc::SIGKILL);
    let below = env.wait_event(T, |e| e["id"] == "PW2005");
    assert_eq!(below["fields"]["count"], 2);
    let started = env.wait_event(T, |e| e["id"] == "PW2010");
    assert_eq!(started["fields"]["reason"], "count");
    env.wait_event(T, |e| e["id"] == "PW2015");
    for id in ["PW2003", "PW2004", "PW2017"] {
        assert_eq!(count_of(&env, id), 0, "{id}: {:?}", env.ids());
    }
    assert_eq!(env.target_status("pool")["state"], "up");
}

#[test]
fn status_says_stalled_and_uptime_survives_pause_and_resume() {
    let env = Env::new();
    let tok = token();
    let probe = env.path("probe.sh");
    write_exec(
        &probe,
        &format!(
            "#!/bin/sh\n[ -e {} ] && exit 1\nexit 0\n",
            env.path("sick").display()
        ),
    );
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        env.target_section(
            "web",
            &tok,
            &format!(
                "stall.probe = {{ kind = \"exec\", command = [\"{}\"], timeout = \"2s\" }}\nstall.interval = \"200ms\"\nstall.failures = 2\nstall.action = \"notify\"",
                probe.display()
            )
        )
    ));
    let _app = Proc::sleeper(&tok);
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2001");
    std::thread::sleep(Duration::from_millis(2200));
    assert!(env.cli(&["pause", "web"]).status.success());
    assert!(env.cli(&["resume", "web"]).status.success());
    env.wait_nth("PW2001", "web", 2, T);
    let st = env.target_status("web");
    assert_eq!(st["state"], "up");
    assert!(st["uptime_s"].as_u64().unwrap() >= 2, "{st}");
    std::fs::write(env.path("sick"), "").unwrap();
    env.wait_event(T, |e| e["id"] == "PW2040");
    assert_eq!(env.target_status("web")["state"], "stalled");
    let table = String::from_utf8_lossy(&env.cli(&["status"]).stdout).to_string();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web") && l.contains("stalled")),
        "{table}"
    );
    std::fs::remove_file(env.path("sick")).unwrap();
    env.wait_event(T, |e| e["id"] == "PW2041");
    assert_eq!(env.target_status("web")["state"], "up");
}

/// With many targets, one target's change is written as its own record
/// (not the whole state file): what a procward killed right after finds.
#[test]
fn with_many_targets_a_change_survives_a_crash_as_its_record() {
    let env = Env::new();
    let tok = token();
    let mut cfg = format!(
        "{}{}",
        env.daemon_section(""),
        env.target_section("web", &tok, "retry.max = 5")
    );
    // 299 more targets whose pidfile never appears.
    for i in 0..299 {
        cfg.push_str(&format!(
            "[[target]]\nname = \"idle{i}\"\nmatch.pidfile = \"{}\"\nrestart.script = \"/bin/true\"\n",
            env.path(&format!("idle{i}.pid")).display()
        ));
    }
    env.write_config(&cfg);
    let app = Proc::sleeper(&tok);
    let mut d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2001");
    std::thread::sleep(Duration::from_millis(500));
    app.signal(libc::SIGKILL);
    env.wait_event(T, |e| e["id"] == "PW2015");
    let o = env.cli(&["pause", "idle7"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    env.wait_event(T, |e| e["id"] == "PW1005");
    assert_eq!(env.target_status("web")["restarts_in_window"], 1);
    // The change is a record, the state file was not rewritten for it.
    let dir = env.state();
    // A record newer than the state file: what a start-up applies.
    let pending = |name: &str| {
        procward::store::state::newest_record(&dir, name)
            .filter(|(stamp, _)| *stamp > procward::store::state::saved_stamp(&dir))
    };
    let deadline = Instant::now() + T;
    while pending("idle7").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, rec) = pending("idle7").expect("a record of the pause");
    assert!(rec.paused, "{rec:?}");
    // (No state file yet is fine: nothing was folded.)
    let whole = std::fs::read_to_string(env.state().join("state.json"))
        .ok()
        .map(|t| serde_json::from_str::<Value>(&t).unwrap());
    assert!(
        whole
            .as_ref()
            .is_none_or(|w| w["targets"]["idle7"]["paused"] != true),
        "{whole:?}"
    );

    common::kill(d.procward_pid(), libc::SIGKILL);
    d.stop();
    let mut d = env.start();
    let st = env.target_status("idle7");
    assert_eq!(st["state"], "paused", "{st}");
    assert_eq!(env.target_status("web")["restarts_in_window"], 1);
    // Once nothing changed for 5 s, the records are folded into the whole
    // file (newer than every record). (After the start-up's first scan.)
    let second = env
        .events()
        .iter()
        .filter(|e| e["id"] == "PW1001")
        .filter_map(|e| e["seq"].as_u64())
        .max()
        .unwrap();
    env.wait_event(T, |e| {
        e["id"] == "PW2002" && e["target"] == "idle298" && e["seq"].as_u64() > Some(second)
    });
    let o = env.cli(&["resume", "idle7"]);
    assert!(o.status.success());
    let resumed = || pending("idle7").is_some_and(|(_, r)| !r.paused);
    let deadline = Instant::now() + T;
    while !resumed() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(resumed(), "no record of the resume");
    let written = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pending("idle7").is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(pending("idle7").is_none(), "not folded when quiet");
    assert!(
        written.elapsed() >= Duration::from_secs(4),
        "folded too soon"
    );
    let whole: Value =
        serde_json::from_str(&std::fs::read_to_string(env.state().join("state.json")).unwrap())
            .unwrap();
    assert_eq!(whole["targets"]["idle7"]["paused"], false);
    // A clean stop writes the whole file too.
    let o = env.cli(&["pause", "idle7"]);
    assert!(o.status.success());
    let deadline = Instant::now() + T;
    while count_of(&env, "PW1005") < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    d.stop();
    let whole: Value =
        serde_json::from_str(&std::fs::read_to_string(env.state().join("state.json")).unwrap())
            .unwrap();
    assert_eq!(whole["targets"]["idle7"]["paused"], true);
    assert!(pending("idle7").is_none() && pending("web").is_none());
}
