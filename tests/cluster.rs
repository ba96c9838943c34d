//! Clusterware: the OCF agent passes ocf-tester, and a real single-node
//! corosync + Pacemaker on loopback fails a procward target over once
//! procward gives up on it (RETRY-OVER with on-retry-over = "failover").
//! Every cluster daemon the test starts is stopped by pid, pass or fail.
// Test harness, not procward: raw libc calls set up the conditions tested.
#![allow(unsafe_code)]

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn agent() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/ocf/procward")
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// A restart script that works only when an operator or the cluster starts
/// the target (PROCWARD_REASON=manual): automatic restarts fail, so the
/// target ends in RETRY-OVER.
fn cluster_target(env: &Env, tok: &str, extra: &str) -> String {
    let script = env.path("start-app.sh");
    write_exec(
        &script,
        &format!(
            "#!/bin/sh\n[ \"$PROCWARD_REASON\" = manual ] || {{ echo automatic restart refused; exit 1; }}\n{}",
            env.start_app_line(tok)
        ),
    );
    format!(
        "[[target]]\nname = \"app\"\nmatch.cmdline = '^sleep 1000\\.{tok}$'\nrestart.script = \"{}\"\nrestart.settle = \"5s\"\nretry.max = 1\n{extra}\n",
        script.display()
    )
}

#[test]
fn the_ocf_agent_passes_ocf_tester() {
    if !require("ocf-tester") || !require("xmllint") {
        return;
    }
    let env = Env::new();
    let tok = token();
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        cluster_target(&env, &tok, "")
    ));
    let _d = env.start();
    let cfg = env.cfg().display().to_string();
    let o = Command::new("ocf-tester")
        .args(["-n", "app", "-o", "target=app", "-o"])
        .arg(format!("config={cfg}"))
        .arg("-o")
        .arg(format!("binary={BIN}"))
        .arg(agent())
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success() && out.contains("passed all tests"),
        "{out}"
    );
    // It really started and stopped the target through procward.
    let ids = env.ids();
    assert!(
        ids.contains(&"PW1010".into()) && ids.contains(&"PW1011".into()),
        "{ids:?}"
    );
    assert_eq!(env.target_status("app")["state"], "stopped");
}

/// Run the agent's `action` as Pacemaker would: its OCF exit code.
fn agent_action(env: &Env, action: &str) -> (i32, String) {
    let o = Command::new(agent())
        .arg(action)
        .env("OCF_ROOT", "/usr/lib/ocf")
        .env("OCF_RESOURCE_INSTANCE", "pwapp")
        .env("OCF_RESKEY_target", "app")
        .env("OCF_RESKEY_config", env.cfg())
        .env("OCF_RESKEY_binary", BIN)
        .env("OCF_RESKEY_stop_timeout", "5s")
        .env("OCF_RESKEY_start_wait", "10s")
        .env("HA_LOGFILE", env.path("agent.log"))
        .env("HA_debug", "0")
        // A recurring monitor, not a probe (what fails a resource over).
        .env(
            "OCF_RESKEY_CRM_meta_interval",
            if action == "monitor" { "2000" } else { "0" },
        )
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), out)
}

fn apps(tok: &str) -> Vec<u32> {
    sleepers(tok)
}

/// With procward down the agent decides from the application itself:
/// monitor says running (no failover because procward restarts), stop ends
/// the application (no double run after a failover), start starts it, and
/// the next procward honours both.
#[test]
fn with_procward_down_the_agent_decides_from_the_application() {
    if !require("ocf-tester") {
        // resource-agents provides ocf-shellfuncs, which the agent sources.
        return;
    }
    let env = Env::new();
    let tok = token();
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        cluster_target(&env, &tok, "")
    ));
    let mut d = env.start();
    assert_eq!(agent_action(&env, "start").0, 0);
    let first = apps(&tok);
    assert_eq!(first.len(), 1, "{first:?}");

    // procward dies (or is being restarted): the application runs on.
    kill(d.procward_pid(), libc::SIGKILL);
    d.stop();
    let (rc, out) = agent_action(&env, "monitor");
    assert_eq!(rc, 0, "monitor with procward down, application up: {out}");

    // Pacemaker stops the resource (to move it): the application must end.
    let (rc, out) = agent_action(&env, "stop");
    assert_eq!(rc, 0, "{out}");
    assert!(apps(&tok).is_empty(), "stop left the application running");
    let (rc, out) = agent_action(&env, "monitor");
    assert_eq!(rc, 7, "{out}");

    // procward comes back: it must not restart what the cluster stopped.
    let d = env.start();
    env.wait_event(T, |e| e["id"] == "PW1001");
    std::thread::sleep(Duration::from_secs(2));
    assert!(apps(&tok).is_empty(), "procward restarted a stopped target");
    assert_eq!(env.target_status("app")["state"], "stopped");
    drop(d);

    // Started by the cluster while procward is down ...
    let (rc, out) = agent_action(&env, "start");
    assert_eq!(rc, 0, "{out}");
    let started = apps(&tok);
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(agent_action(&env, "monitor").0, 0);
    // ... and monitored by procward once it is back.
    let _d = env.start();
    let found = env.wait_event(T, |e| e["id"] == "PW2001" || e["id"] == "PW2017");
    assert_eq!(found["pid"].as_u64(), Some(started[0] as u64));
    assert_eq!(env.target_status("app")["state"], "up");
    assert_eq!(agent_action(&env, "monitor").0, 0);
    assert_eq!(apps(&tok), started, "exactly one instance");
}

struct Cluster {
    corosync: Option<Child>,
    pacemaker: Option<Child>,
    agent_dir: PathBuf,
}

/// Stop a cluster daemon; if it does not end by itself, kill the children
/// it had too (by pid).
fn stop_daemon(c: &mut Option<Child>, grace: Duration) {
    if let Some(mut c) = c.take() {
        let kids = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", c.id()))
            .unwrap_or_default();
        if !stop_child(&mut c, grace) {
            for k in kids
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
            {
                kill(k, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("cibadmin")
            .args(["--delete", "--xml-text", "<primitive id=\"pwapp\"/>"])
            .output();
        stop_daemon(&mut self.pacemaker, Duration::from_secs(60));
        stop_daemon(&mut self.corosync, Duration::from_secs(10));
        let _ = std::fs::remove_file(self.agent_dir.join("procward"));
        let _ = std::fs::remove_dir(&self.agent_dir);
    }
}

/// The log file of the Pacemaker started by the test, for diagnostics.
static PCMK_LOG: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

fn wait_for(what: &str, timeout: Duration, f: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            let mon = run("crm_mon", &["-1", "--include=failcounts"]);
            let log = PCMK_LOG
                .lock()
                .unwrap()
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            let agent_lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("pwapp") || l.contains("procward"))
                .collect();
            panic!(
                "timed out waiting for {what}; crm_mon:\n{}\npacemaker log:\n{}",
                String::from_utf8_lossy(&mon.stdout),
                agent_lines[agent_lines.len().saturating_sub(40)..].join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let agent_dir = PathBuf::from("/usr/lib/ocf/resource.d/procward");
        std::fs::create_dir_all(&agent_dir).unwrap();
        std::fs::copy(agent(), agent_dir.join("procward")).unwrap();
        let conf = dir.join("corosync.conf");
        std::fs::write(
            &conf,
            format!(
                "totem {{\n version: 2\n cluster_name: procwardtest\n crypto_cipher: none\n crypto_hash: none\n}}\n\
                 logging {{\n to_stderr: no\n to_logfile: yes\n logfile: {}\n to_syslog: no\n}}\n\
                 quorum {{\n provider: corosync_votequorum\n}}\n\
                 nodelist {{\n node {{\n  name: node1\n  nodeid: 1\n  ring0_addr: 127.0.0.1\n }}\n}}\n",
                dir.join("corosync.log").display()
            ),
        )
        .unwrap();
        let mut c = Cluster {
            corosync: None,
            pacemaker: None,
            agent_dir,
        };
        *PCMK_LOG.lock().unwrap() = Some(dir.join("pacemaker.log"));
        c.corosync = Some(
            Command::new("corosync")
                .args(["-f", "-c"])
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for("corosync quorum", Duration::from_secs(30), || {
            String::from_utf8_lossy(&run("corosync-quorumtool", &["-s"]).stdout)
                .contains("Quorate:          Yes")
        });
        c.pacemaker = Some(
            Command::new("pacemakerd")
                .arg("-f")
                .env("PCMK_logfile", dir.join("pacemaker.log"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for("a DC and node1 online", Duration::from_secs(120), || {
            let out = String::from_utf8_lossy(&run("crm_mon", &["-1"]).stdout).to_string();
            out.contains("Current DC: node1") && out.contains("Online: [ node1 ]")
        });
        for (name, value) in [("stonith-enabled", "false"), ("no-quorum-policy", "ignore")] {
            let o = run(
                "crm_attribute",
                &["--type", "crm_config", "--name", name, "--update", value],
            );
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        c
    }
}

fn located() -> String {
    String::from_utf8_lossy(&run("crm_resource", &["--locate", "--resource", "pwapp"]).stdout)
        .to_string()
}

fn failcount() -> u64 {
    let out = String::from_utf8_lossy(
        &run(
            "crm_failcount",
            &["--query", "--resource", "pwapp", "--node", "node1"],
        )
        .stdout,
    )
    .to_string();
    out.split("value=")
        .nth(1)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn pacemaker_recovers_the_resource_after_procward_gives_up() {
    for p in [
        "corosync",
        "pacemakerd",
        "crm_mon",
        "cibadmin",
        "crm_resource",
    ] {
        if !require(p) {
            return;
        }
    }
    let env = Env::new();
    let tok = token();
    let failover = "on-retry-over = \"failover\"\nfailover.command = [\"/usr/sbin/crm_resource\", \"--fail\", \"--resource\", \"pwapp\", \"--node\", \"node1\"]";
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        cluster_target(&env, &tok, failover)
    ));
    let _d = env.start();
    let _cluster = Cluster::start(env.dir.path());
    let cfg = env.cfg().display().to_string();
    let xml = format!(
        "<primitive id=\"pwapp\" class=\"ocf\" provider=\"procward\" type=\"procward\">\
         <instance_attributes id=\"pwapp-ia\">\
         <nvpair id=\"pwapp-target\" name=\"target\" value=\"app\"/>\
         <nvpair id=\"pwapp-config\" name=\"config\" value=\"{cfg}\"/>\
         <nvpair id=\"pwapp-binary\" name=\"binary\" value=\"{BIN}\"/>\
         </instance_attributes>\
         <operations><op id=\"pwapp-monitor\" name=\"monitor\" interval=\"2s\" timeout=\"20s\"/></operations>\
         </primitive>"
    );
    let o = run(
        "cibadmin",
        &["--create", "--scope", "resources", "--xml-text", &xml],
    );
    assert!(
        o.status.success(),
        "cibadmin: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Pacemaker starts it through the agent (`procward start`) and then
    // monitors it: wait for the first successful recurring monitor, so the
    // start operation is over before the application is killed.
    wait_for(
        "pwapp started and monitored",
        Duration::from_secs(60),
        || {
            let ops = String::from_utf8_lossy(
                &run(
                    "crm_resource",
                    &["--list-operations", "--resource", "pwapp"],
                )
                .stdout,
            )
            .to_string();
            located().contains("is running on: node1")
                && ops
                    .lines()
                    .any(|l| l.contains("pwapp_monitor_2000") && l.contains("rc=0"))
        },
    );
    env.wait_event(T, |e| e["id"] == "PW1010");
    let up = env.wait_event(T, |e| e["id"] == "PW2024");
    assert_eq!(failcount(), 0);

    // The application dies; procward's automatic restart fails: RETRY-OVER,
    // FAILED, and the failover command tells Pacemaker.
    kill(up["pid"].as_u64().unwrap() as u32, libc::SIGKILL);
    let over = env.wait_event(T, |e| e["id"] == "PW2020");
    assert_eq!(over["fields"]["action"], "failover");
    env.wait_event(T, |e| e["id"] == "PW2031");
    wait_for("a fail count on pwapp", Duration::from_secs(60), || {
        failcount() >= 1
    });
    // Pacemaker recovers the resource: stop, then start through procward.
    let seq = over["seq"].as_u64().unwrap();
    env.wait_event(Duration::from_secs(60), |e| {
        e["id"] == "PW1011" && e["seq"].as_u64().unwrap() > seq
    });
    let started = env.wait_event(Duration::from_secs(60), |e| {
        e["id"] == "PW1010" && e["seq"].as_u64().unwrap() > seq
    });
    env.wait_event(Duration::from_secs(60), |e| {
        e["id"] == "PW2024" && e["seq"].as_u64() > started["seq"].as_u64()
    });
    let started_line = || {
        let mon = String::from_utf8_lossy(&run("crm_mon", &["-1"]).stdout).to_string();
        mon.lines()
            .any(|l| l.contains("pwapp") && l.contains("Started node1"))
    };
    wait_for("pwapp Started again", Duration::from_secs(60), || {
        located().contains("is running on: node1") && started_line()
    });
    let mon = String::from_utf8_lossy(&run("crm_mon", &["-1", "--include=failcounts"]).stdout)
        .to_string();
    println!("{mon}");
    // The failover command and the agent's monitor (FAILED) may both count.
    let count: u64 = mon
        .split("pwapp: migration-threshold=1000000 fail-count=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!((1..=2).contains(&count), "{mon}");
    assert_eq!(env.target_status("app")["state"], "up");
}

/// What `scripts/cluster-demo.sh` left behind, from the names it printed:
/// its work directory, namespaces, bridge, mounts.
fn leftovers(out: &str) -> Vec<String> {
    let mut left = Vec::new();
    let work = out
        .lines()
        .find_map(|l| l.strip_prefix("work directory: "))
        .map(str::to_string);
    let names: Vec<String> = out
        .lines()
        .find(|l| l.contains("(namespaces "))
        .map(|l| {
            l.split(['(', ')', ',', ' '])
                .filter(|w| w.starts_with("pwc") || w.starts_with("pwbr"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let netns = String::from_utf8_lossy(&run("ip", &["netns", "list"]).stdout).to_string();
    let links = String::from_utf8_lossy(&run("ip", &["-o", "link"]).stdout).to_string();
    for n in &names {
        if netns.contains(n.as_str()) || links.contains(&format!(" {n}:")) {
            left.push(n.clone());
        }
    }
    if let Some(w) = work {
        if Path::new(&w).exists() {
            left.push(w.clone());
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if mounts.contains(&w) {
            left.push(format!("mounts under {w}"));
        }
    }
    left
}

/// The two-node scenario of `scripts/cluster-demo.sh`: failover to node2
/// after RETRY-OVER on node1, then procward SIGKILLed on node2 without a
/// failover or a second instance; and the script leaves nothing behind,
/// also when interrupted.
#[test]
fn two_nodes_fail_over_and_survive_a_procward_crash() {
    for p in [
        "corosync",
        "pacemakerd",
        "crm_mon",
        "ip",
        "unshare",
        "nsenter",
    ] {
        if !require(p) {
            return;
        }
    }
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("CI").is_err(),
            "the two-node cluster test needs root under CI"
        );
        eprintln!("skipped: the two-node cluster needs root");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster-demo.sh");
    let mut child = Command::new(&script)
        .env("PROCWARD", BIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: the script takes well under a minute here.
    let deadline = Instant::now() + Duration::from_secs(170);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            kill(child.id(), libc::SIGTERM);
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    println!("{out}");
    assert!(
        status.success(),
        "cluster-demo.sh failed: {status}\n{out}\n{err}"
    );
    assert_eq!(out.lines().last(), Some("moved to: node2"), "{out}");
    for want in [
        "node1  PW2020 target app: RETRY-OVER",
        "<- Pacemaker stopped the resource on node1",
        "<- Pacemaker started the resource on node2",
        "one instance, on node2; node1 restarted it 2 times",
        "node2: resource still Started node2, no new failure, one instance",
        "restarts in the window still 1",
    ] {
        assert!(out.contains(want), "missing `{want}`:\n{out}");
    }
    assert_eq!(leftovers(&out), Vec::<String>::new());

    // Interrupted while the nodes run: everything is removed all the same.
    let mut child = Command::new(&script)
        .env("PROCWARD", BIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.contains("(namespaces ") && Instant::now() < deadline {
        use std::io::BufRead;
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
    }
    assert!(seen.contains("(namespaces "), "{seen}");
    kill(child.id(), libc::SIGINT);
    // Bounded, with room for a loaded machine: a `crm_mon` under way is
    // cut at 20 s (on() in the script), then cleanup waits up to 10 s a node.
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.try_wait().unwrap();
    assert!(status.is_some(), "cluster-demo.sh ignored SIGINT");
    assert_eq!(leftovers(&seen), Vec::<String>::new());
}
