//! syslog delivery into a real rsyslogd started by the test on loopback
//! ports and a unix socket in a temporary directory.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Rsyslog {
    child: Option<Child>,
    conf: PathBuf,
    dir: PathBuf,
}

impl Rsyslog {
    /// Inputs: unix socket (RFC 3164 template), UDP `udp` and TCP `tcp`
    /// (RFC 5424 template), and one more UDP port with the RFC 3164 template.
    fn start(dir: &Path, udp: u16, tcp: u16) -> Rsyslog {
        Rsyslog::start_with(dir, udp, tcp, free_udp_port())
    }

    fn start_with(dir: &Path, udp: u16, tcp: u16, udp3164: u16) -> Rsyslog {
        let work = dir.join("rsyslog");
        std::fs::create_dir_all(&work).unwrap();
        let conf = work.join("rsyslog.conf");
        let out = |n: &str| work.join(n).display().to_string();
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{work}")
module(load="imuxsock" SysSock.Use="off")
module(load="imudp")
module(load="imtcp")
template(name="t3164" type="string" string="%syslogtag%%msg%\n")
template(name="t5424" type="string" string="%app-name% %procid% %msgid% %structured-data% %msg%\n")
ruleset(name="unix") {{ action(type="omfile" file="{unix}" template="t3164") }}
ruleset(name="udp") {{ action(type="omfile" file="{udp_out}" template="t5424") }}
ruleset(name="tcp") {{ action(type="omfile" file="{tcp_out}" template="t5424") }}
ruleset(name="udp3164") {{ action(type="omfile" file="{udp3164_out}" template="t3164") }}
input(type="imudp" address="127.0.0.1" port="{udp3164}" ruleset="udp3164")
input(type="imuxsock" Socket="{sock}" ruleset="unix")
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="udp")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="tcp")
"#,
                work = work.display(),
                unix = out("unix.log"),
                udp_out = out("udp.log"),
                tcp_out = out("tcp.log"),
                sock = out("log.sock"),
                udp3164_out = out("udp3164.log"),
            ),
        )
        .unwrap();
        let mut r = Rsyslog {
            child: None,
            conf,
            dir: work,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("rsyslogd")
            .args(["-n", "-i"])
            .arg(self.dir.join("rsyslogd.pid"))
            .arg("-f")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("rsyslogd.err")).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Ready when the unix socket exists and the TCP port accepts.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !self.dir.join("log.sock").exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(10));
        }
    }

    fn lines(&self, file: &str) -> Vec<String> {
        file_lines(&self.dir.join(file))
    }

    fn wait_line(&self, file: &str, needle: &str) -> String {
        wait_line(&self.dir.join(file), needle)
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sink(name: &str, transport: &str, address: &str, format: &str, lang: &str) -> String {
    format!(
        "[[sink.syslog]]\nname = \"{name}\"\ntransport = \"{transport}\"\naddress = \"{address}\"\nformat = \"{format}\"\nlanguage = \"{lang}\"\nmin-severity = \"debug\"\n"
    )
}

#[test]
fn rsyslogd_receives_exact_lines_in_both_formats_and_languages() {
    if !require("rsyslogd") {
        return;
    }
    let env = Env::new();
    let (udp, tcp, udp3164) = (free_udp_port(), free_tcp_port(), free_udp_port());
    let rs = Rsyslog::start_with(env.dir.path(), udp, tcp, udp3164);
    let tok = token();
    let sock = env.path("rsyslog/log.sock").display().to_string();
    env.write_config(&format!(
        "{}{}{}{}{}{}",
        env.daemon_section("hostname = \"node1\""),
        sink("local", "unix", &sock, "rfc3164", "en"),
        sink(
            "udp3164",
            "udp",
            &format!("127.0.0.1:{udp3164}"),
            "rfc3164",
            "ja"
        ),
        sink("udp", "udp", &format!("127.0.0.1:{udp}"), "rfc5424", "ja"),
        sink("tcp", "tcp", &format!("127.0.0.1:{tcp}"), "rfc5424", "en"),
        env.target_section("web", &tok, "")
    ));
    let target = Proc::sleeper(&tok);
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2001");
    target.signal(libc::SIGKILL);
    env.wait_event(T, |e| e["id"] == "PW2015");
    let seq = env.wait_event(T, |e| e["id"] == "PW2003")["seq"].clone();
    let pid = target.pid;
    // RFC 3164 on the local socket, English: the text starts with the ID.
    let l = rs.wait_line("unix.log", "PW2003");
    let tag_end = l.find("]: ").expect("tag procward[PID]: ");
    assert!(l.starts_with("procward["), "{l}");
    assert_eq!(
        &l[tag_end + 2..],
        format!(" PW2003 target web: process {pid} disappeared (killed by SIGKILL)"),
        "{l}"
    );
    // RFC 3164 over UDP, Japanese (with the host name, as on the network).
    let l = rs.wait_line("udp3164.log", "PW2003");
    assert!(l.starts_with("procward["), "{l}");
    assert!(
        l.ends_with(&format!(
            "]: PW2003 監視対象 web: プロセス {pid} の消滅を検出しました (シグナル SIGKILL で終了)"
        )),
        "{l}"
    );
    // RFC 5424 over UDP, Japanese: MSGID is the ID, fields are structured data.
    let l = rs.wait_line("udp.log", "PW2003");
    let procid = &l["procward ".len()..l.find(" PW2003").unwrap()];
    assert_eq!(
        l,
        format!(
            "procward {procid} PW2003 [procward@32473 seq=\"{seq}\" severity=\"error\" core_dumped=\"false\" exit=\"killed by SIGKILL\" pid=\"{pid}\" signal=\"SIGKILL\" target=\"web\"] 監視対象 web: プロセス {pid} の消滅を検出しました (シグナル SIGKILL で終了)"
        )
    );
    // RFC 5424 over TCP (octet counting), English.
    let rec = env.wait_event(T, |e| e["id"] == "PW2015");
    let l = rs.wait_line("tcp.log", "PW2015");
    assert!(l.contains(" PW2015 [procward@32473 seq="), "{l}");
    assert!(
        l.ends_with(&format!(
            "] target web: recovered by restart 1, process {}",
            rec["pid"]
        )),
        "{l}"
    );
    let l = rs.wait_line("tcp.log", "PW2003");
    assert!(
        l.ends_with(&format!(
            "] target web: process {pid} disappeared (killed by SIGKILL)"
        )),
        "{l}"
    );
}

#[test]
fn a_receiver_restart_during_a_tcp_burst_loses_nothing_and_duplicates_nothing() {
    if !require("rsyslogd") {
        return;
    }
    let env = Env::new();
    let (udp, tcp) = (free_udp_port(), free_tcp_port());
    let mut rs = Rsyslog::start(env.dir.path(), udp, tcp);
    env.write_config(&format!(
        "{}{}[[target]]\nname = \"burst\"\nmatch.comm = \"no-such-proc\"\n",
        env.daemon_section(""),
        sink("tcp", "tcp", &format!("127.0.0.1:{tcp}"), "rfc5424", "en")
    ));
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2002");
    // A burst of events: pause/resume 100 times while rsyslogd restarts.
    let burst = std::thread::scope(|s| {
        let h = s.spawn(|| {
            for i in 0..100 {
                let cmd = if i % 2 == 0 { "pause" } else { "resume" };
                let o = env.cli(&[cmd, "burst"]);
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        std::thread::sleep(Duration::from_millis(400));
        rs.stop();
        std::thread::sleep(Duration::from_millis(300));
        rs.spawn();
        h.join().is_ok()
    });
    assert!(burst);
    // Every event but those about the tcp sink itself (never queued into it).
    let expected: Vec<u64> = env
        .events()
        .iter()
        .filter(|e| e["fields"]["sink"] != "tcp")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let last = *expected.last().unwrap();
    // Wait until the last event arrived, then count every seq.
    rs.wait_line("tcp.log", &format!("seq=\"{last}\""));
    let mut got: BTreeMap<u64, usize> = BTreeMap::new();
    for l in rs.lines("tcp.log") {
        if let Some(s) = l
            .split("seq=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|s| s.parse().ok())
        {
            *got.entry(s).or_default() += 1;
        }
    }
    let missing: Vec<&u64> = expected.iter().filter(|s| !got.contains_key(s)).collect();
    let doubled: Vec<(&u64, &usize)> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(expected.len() > 100, "{} events", expected.len());
    assert!(missing.is_empty(), "lost across the restart: {missing:?}");
    assert!(doubled.is_empty(), "delivered twice: {doubled:?}");
    // The outage itself was reported to the journal, not into the failing sink.
    let ids = env.ids();
    assert!(
        ids.iter().any(|i| i == "PW3002") && ids.iter().any(|i| i == "PW3003"),
        "{ids:?}"
    );
}

#[test]
fn hostile_script_output_becomes_one_clean_line() {
    if !require("rsyslogd") {
        return;
    }
    let env = Env::new();
    let (udp, tcp) = (free_udp_port(), free_tcp_port());
    let rs = Rsyslog::start(env.dir.path(), udp, tcp);
    let tok = token();
    let sock = env.path("rsyslog/log.sock").display().to_string();
    env.write_config(&format!(
        "{}{}{}",
        env.daemon_section(""),
        sink("local", "unix", &sock, "rfc3164", "en"),
        env.failing_target("evil", &tok, "bad\\rPW9999 forged\\033[31m red\\033[0m\\n")
    ));
    let target = Proc::sleeper(&tok);
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2001");
    target.signal(libc::SIGKILL);
    env.wait_event(T, |e| e["id"] == "PW2012");
    let l = rs.wait_line("unix.log", "PW2012");
    assert!(
        l.ends_with(" PW2012 target evil: restart script of attempt 1 failed (exit code 7): bad\\x0dPW9999 forged\\x1b[31m red\\x1b[0m"),
        "{l:?}"
    );
    let all = rs.lines("unix.log");
    assert!(
        !all.iter()
            .any(|l| l.starts_with("PW9999") || l.contains("\u{1b}")),
        "{all:?}"
    );
}

#[test]
fn unicode_line_separators_and_bidi_controls_are_escaped_everywhere() {
    if !require("rsyslogd") {
        return;
    }
    let env = Env::new();
    let (udp, tcp) = (free_udp_port(), free_tcp_port());
    let rs = Rsyslog::start(env.dir.path(), udp, tcp);
    let tok = token();
    // U+2028 LINE SEPARATOR, U+2029 PARAGRAPH SEPARATOR, U+202E RIGHT-TO-LEFT
    // OVERRIDE, U+2066 LEFT-TO-RIGHT ISOLATE, U+2069 POP DIRECTIONAL ISOLATE.
    let evil = env.failing_target(
        "evil",
        &tok,
        "bad\\342\\200\\250PW9999 forged\\342\\200\\251x\\342\\200\\256y\\342\\201\\246z\\342\\201\\251\\n",
    );
    let sock = env.path("rsyslog/log.sock").display().to_string();
    env.write_config(&format!(
        "{}{}{}{evil}",
        env.daemon_section(""),
        sink("local", "unix", &sock, "rfc3164", "en"),
        sink("net", "udp", &format!("127.0.0.1:{udp}"), "rfc5424", "en"),
    ));
    let target = Proc::sleeper(&tok);
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2001");
    target.signal(libc::SIGKILL);
    let ev = env.wait_event(T, |e| e["id"] == "PW2012");
    let escaped = "bad\\u2028PW9999 forged\\u2029x\\u202ey\\u2066z\\u2069";
    assert!(ev["text"].as_str().unwrap().ends_with(escaped), "{ev}");
    let l = rs.wait_line("unix.log", "PW2012");
    assert!(l.ends_with(escaped), "{l:?}");
    let l = rs.wait_line("udp.log", "PW2012");
    assert!(l.contains(escaped), "{l:?}");
    let raw = ['\u{2028}', '\u{2029}', '\u{202e}', '\u{2066}', '\u{2069}'];
    for file in ["unix.log", "udp.log"] {
        for l in rs.lines(file) {
            assert!(!l.contains(raw), "{file}: {l:?}");
        }
    }
    let journal = std::fs::read_to_string(env.state().join("events.jsonl")).unwrap();
    assert!(!journal.contains(raw));
}

#[test]
/// A TCP sink whose receiver (a real rsyslogd) is down while 20 events
/// happen, with a queue of 5: what does not fit stays in the journal, not
/// dropped; once rsyslogd is back every event arrives, oldest first.
fn a_tcp_sink_keeps_what_its_queue_cannot_hold_in_the_journal() {
    if !require("rsyslogd") {
        return;
    }
    let env = Env::new();
    let (udp, tcp) = (free_udp_port(), free_tcp_port());
    let mut rs = Rsyslog::start(env.dir.path(), udp, tcp);
    rs.stop(); // the receiver is down while events happen
    env.write_config(&format!(
        "{}{}queue = 5\n[[target]]\nname = \"q\"\nmatch.comm = \"no-such-proc\"\n",
        env.daemon_section(""),
        sink("tcp", "tcp", &format!("127.0.0.1:{tcp}"), "rfc5424", "en")
    ));
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW3002");
    for i in 0..20 {
        let o = env.cli(&[if i % 2 == 0 { "pause" } else { "resume" }, "q"]);
        assert!(o.status.success());
    }
    rs.spawn();
    env.wait_event(Duration::from_secs(40), |e| e["id"] == "PW3003");
    assert!(env.cli(&["pause", "q"]).status.success());
    // The last event for this sink (not its own PW3003: a sink never
    // carries news of itself; the pause may not be journaled yet).
    let last = env
        .events()
        .iter()
        .filter(|e| e["fields"]["sink"] != "tcp")
        .filter_map(|e| e["seq"].as_u64())
        .max()
        .unwrap();
    rs.wait_line("tcp.log", &format!("seq=\"{last}\""));
    std::thread::sleep(Duration::from_millis(500));
    let events = env.events();
    assert!(
        !events.iter().any(|e| e["id"] == "PW3001"),
        "nothing dropped"
    );
    let got: Vec<u64> = rs
        .lines("tcp.log")
        .iter()
        .filter_map(|l| l.split("seq=\"").nth(1)?.split('"').next()?.parse().ok())
        .collect();
    let missing: Vec<u64> = events
        .iter()
        .filter(|e| e["fields"]["sink"] != "tcp")
        .filter_map(|e| e["seq"].as_u64())
        .filter(|s| *s <= last && !got.contains(s))
        .collect();
    assert!(
        missing.is_empty(),
        "never received {missing:?}: got {got:?}"
    );
    // One connection after the outage: in order (a resend may repeat one).
    let mut seen = std::collections::BTreeSet::new();
    let mut highest = 0;
    for s in &got {
        assert!(
            *s > highest || seen.contains(s),
            "{s} after {highest}: {got:?}"
        );
        seen.insert(*s);
        highest = highest.max(*s);
    }
}
