//! Filter definitions: fresh against the catalog, every pattern matches
//! exactly its own messages in every format and language, the rsyslog
//! rules route real messages in a real rsyslogd, the snmptt definitions
//! translate real traps from procward, and `install` is idempotent.
// A scenario reads best in one piece: the 100-line rule is for production
// code (clippy.toml).
#![allow(clippy::too_many_lines)]

mod common;

use common::*;
use procward::catalog::render::Renderer;
use procward::catalog::Catalog;
use procward::config::{SyslogFormat, SyslogSink, Transport};
use procward::filters::{self, MANAGERS};
use procward::model::event::{Event, Severity};
use procward::model::Lang;
use procward::notify::syslog;
use regex::Regex;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROOT: &[u32] = &[1, 3, 6, 1, 4, 1, 32473];

fn renderer() -> Renderer {
    Renderer::new(Arc::new(Catalog::embedded()), None, "node1").unwrap()
}

fn sink(format: SyslogFormat, transport: Transport, lang: Lang) -> SyslogSink {
    SyslogSink::for_rendering(format, transport, lang)
}

/// Events of every message, with sample fields and with hostile ones
/// (values that look like other messages, brackets, Japanese).
fn all_events(r: &Renderer, lang: Lang) -> Vec<Event> {
    let mut out = Vec::new();
    for m in &r.catalog.messages {
        out.push(r.sample_event(&m.id, lang));
        let mut ev = r.sample_event(&m.id, lang);
        for (k, v) in ev.fields.iter_mut() {
            if v.is_string() {
                *v = serde_json::Value::from(format!(
                    "x]PW2003 target {k}: process 1 disappeared [監視] $1 \\"
                ));
            }
        }
        ev.text = r.text(&m.id, &ev.fields, lang).unwrap();
        out.push(ev);
        // Every way a process can end, for the messages that say it.
        if m.fields.contains_key("exit") {
            for status in [
                Some(procward::model::ExitStatus::from_wait(3 << 8)),
                Some(procward::model::ExitStatus::from_wait(0)),
                Some(procward::model::ExitStatus::from_wait(9)),
                Some(procward::model::ExitStatus::from_wait(11 | 0x80)),
                None,
            ] {
                let spec = procward::model::ExitStatus::fields(
                    status.as_ref(),
                    procward::model::event::EventSpec::new(crate_id(&m.id))
                        .target("web")
                        .pid(4242)
                        .field("ppid", 1),
                );
                out.push(r.event(&spec, 1, 0, lang));
            }
        }
    }
    out
}

/// The catalog's IDs as the &'static str an EventSpec takes.
fn crate_id(id: &str) -> &'static str {
    match id {
        "PW2003" => procward::model::event::msg::PROCESS_DISAPPEARED,
        "PW2004" => procward::model::event::msg::PROCESS_ZOMBIE,
        other => panic!("no exit fields expected in {other}"),
    }
}

/// What a filter sees of one message: "ID text", from the real line of
/// each format.
fn matchable(r: &Renderer, ev: &Event, lang: Lang) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let l3164 = String::from_utf8(syslog::format(
        &sink(SyslogFormat::Rfc3164, Transport::Unix, lang),
        r,
        ev,
        7,
    ))
    .unwrap();
    v.push((
        "rfc3164".into(),
        l3164.split_once("]: ").unwrap().1.to_string(),
    ));
    let l5424 = String::from_utf8(syslog::format(
        &sink(SyslogFormat::Rfc5424, Transport::Udp, lang),
        r,
        ev,
        7,
    ))
    .unwrap();
    // <PRI>1 TIME HOST APP PROCID MSGID [SD] MSG
    let msgid = l5424.split(' ').nth(5).unwrap().to_string();
    let msg = &l5424[l5424.find("\"] ").unwrap() + 3..];
    v.push(("rfc5424".into(), format!("{msgid} {msg}")));
    let trap_text = r.output("trap", ev, lang).unwrap();
    v.push(("trap".into(), format!("{} {trap_text}", ev.id)));
    v
}

#[test]
fn committed_filter_defs_are_fresh() {
    let r = renderer();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("filter-defs");
    let mut stale = Vec::new();
    for (m, _, _) in MANAGERS {
        for f in filters::generate(m, &r, ROOT, &Default::default()).unwrap() {
            let p = dir.join(m).join(&f.name);
            if std::fs::read_to_string(&p).ok().as_deref() != Some(f.content.as_str()) {
                stale.push(p.display().to_string());
            }
        }
    }
    assert!(stale.is_empty(), "stale: {stale:?}\nrun: cargo run -- filters generate --manager all (and commit filter-defs/)");
}

#[test]
fn every_pattern_matches_exactly_its_own_messages_in_every_format_and_language() {
    let r = renderer();
    let mut checked = 0;
    let catch_all = Regex::new(filters::CATCH_ALL).unwrap();
    for lang in [Lang::En, Lang::Ja] {
        let own_catch_all = Regex::new(filters::catch_all(lang)).unwrap();
        let patterns: Vec<(String, Regex)> = r
            .catalog
            .messages
            .iter()
            .map(|m| {
                (
                    m.id.clone(),
                    Regex::new(&filters::pattern(m, lang).unwrap()).unwrap(),
                )
            })
            .collect();
        for msg_lang in [Lang::En, Lang::Ja] {
            for ev in all_events(&r, msg_lang) {
                for (format, text) in matchable(&r, &ev, msg_lang) {
                    assert!(
                        catch_all.is_match(&text),
                        "catch-all misses {format} {text}"
                    );
                    // Each language's catch-all takes its own lines only.
                    assert_eq!(
                        own_catch_all.is_match(&text),
                        lang == msg_lang,
                        "{} catch-all on {format} {text:?}",
                        lang.as_str()
                    );
                    for (id, re) in &patterns {
                        let meant = *id == ev.id && lang == msg_lang;
                        assert_eq!(
                            re.is_match(&text),
                            meant,
                            "{} pattern of {id} ({}) on {format} {text:?}",
                            lang.as_str(),
                            re.as_str()
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    println!("{checked} pattern checks");
}

/// WebSAM-style: first match decides; each message hits its own filter,
/// reported when warning or worse, never the catch-all.
#[test]
fn websam_filters_in_order_hit_each_message_s_own_entry() {
    let r = renderer();
    for lang in [Lang::En, Lang::Ja] {
        let file = filters::generate("websam", &r, ROOT, &Default::default())
            .unwrap()
            .into_iter()
            .find(|f| f.name == format!("procward-{}.tsv", lang.as_str()))
            .unwrap();
        let rows: Vec<Vec<String>> = file
            .content
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect();
        assert_eq!(rows.last().unwrap()[1], "CATCHALL", "catch-all last");
        let orders: Vec<u32> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
        assert!(orders.windows(2).all(|w| w[0] < w[1]));
        let first_suppress = rows.iter().position(|r| r[1] == "SUPPRESS").unwrap();
        assert!(
            rows[..first_suppress].iter().all(|r| r[1] == "REPORT"),
            "report before suppress"
        );
        for msg_lang in [Lang::En, Lang::Ja] {
            for ev in all_events(&r, msg_lang) {
                for (format, text) in matchable(&r, &ev, msg_lang) {
                    let hit = rows
                        .iter()
                        .find(|row| Regex::new(&row[5]).unwrap().is_match(&text));
                    if msg_lang != lang {
                        // A line in the other language: not this set's business.
                        assert!(
                            hit.is_none(),
                            "{} set took {format} {text}: {hit:?}",
                            lang.as_str()
                        );
                        continue;
                    }
                    let hit = hit.unwrap();
                    assert_eq!(hit[2], ev.id, "{format} {text}");
                    let m = r.catalog.get(&ev.id).unwrap();
                    let want = if filters::reported(m, &r.catalog) {
                        "REPORT"
                    } else {
                        "SUPPRESS"
                    };
                    assert_eq!(hit[1], want, "{}", ev.id);
                }
            }
        }
        // Alerts close: every recovery is reported at NORMAL and names what
        // it closes; what it closes is reported; critical is FATAL, the top.
        for m in &r.catalog.messages {
            let row = rows.iter().find(|row| row[2] == m.id).unwrap();
            if !m.clears.is_empty() {
                assert_eq!(
                    (row[1].as_str(), row[3].as_str()),
                    ("REPORT", "NORMAL"),
                    "{}",
                    m.id
                );
                assert_eq!(row[7], m.clears.join(" "), "{}", m.id);
                assert!(row[8].starts_with("host"), "{}: {}", m.id, row[8]);
                for c in &m.clears {
                    let cleared = rows.iter().find(|row| &row[2] == c).unwrap();
                    assert_eq!(
                        cleared[1], "REPORT",
                        "{c} is closed by {} but not reported",
                        m.id
                    );
                }
            }
            if m.severity.code() <= 2 {
                assert_eq!(row[3], "FATAL", "{}", m.id);
            }
        }
        for id in [
            "PW2015", "PW2017", "PW2041", "PW2007", "PW3003", "PW1002", "PW1001",
        ] {
            let row = rows.iter().find(|row| row[2] == id).unwrap();
            assert_eq!(row[1], "REPORT", "{id}");
        }
        // A message this version does not know yet still reaches the
        // catch-all of its language, and only that one.
        let new = match lang {
            Lang::En => "PW2999 something new",
            Lang::Ja => "PW2999 新しいメッセージ",
        };
        let hit = rows
            .iter()
            .find(|row| Regex::new(&row[5]).unwrap().is_match(new))
            .unwrap();
        assert_eq!(hit[1], "CATCHALL");
    }
}

#[test]
fn rsyslog_rules_keep_the_hosts_logs_by_default_and_forward_only_when_asked() {
    if !require("rsyslogd") {
        return;
    }
    // Default: procward's files AND the host's own rules; nothing forwarded.
    let env = Env::new();
    let default = route(&env.path("default"), false, false);
    assert!(default.forwarded.is_empty(), "{}", default.forwarded);
    // --exclusive --forward: only procward's files, warnings forwarded.
    let chosen = route(&env.path("chosen"), true, true);
    assert!(!chosen.forwarded.is_empty());
    assert!(!default.rules.contains("omfwd") && !default.rules.contains("stop"));
    assert!(!chosen.rules.contains("loghost"));
}

struct Routed {
    rules: String,
    forwarded: String,
}

/// Route every message through the generated rules in a real rsyslogd
/// whose own configuration has a catch-all rule after procward's file
/// (like /var/log/syslog on a Debian host).
fn route(work: &Path, exclusive: bool, forward: bool) -> Routed {
    let logs = work.join("log");
    std::fs::create_dir_all(&logs).unwrap();
    // The forward target: a TCP listener collecting lines.
    let fwd = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fwd_port = fwd.local_addr().unwrap().port();
    fwd.set_nonblocking(true).unwrap();
    let r = renderer();
    let opts = filters::Options {
        forward: forward.then(|| ("127.0.0.1".to_string(), fwd_port)),
        exclusive,
    };
    let rules = filters::generate("rsyslog", &r, ROOT, &opts)
        .unwrap()
        .remove(0)
        .content;
    let rules = rules.replace("/var/log/procward", &logs.display().to_string());
    std::fs::write(work.join("30-procward.conf"), &rules).unwrap();
    let udp = free_udp_port();
    let sock = work.join("log.sock");
    std::fs::write(
        work.join("rsyslog.conf"),
        format!(
            "global(workDirectory=\"{w}\")\nmodule(load=\"imuxsock\" SysSock.Use=\"off\")\nmodule(load=\"imudp\")\n\
             input(type=\"imuxsock\" Socket=\"{s}\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"{udp}\")\n\
             include(file=\"{w}/30-procward.conf\")\n\
             action(type=\"omfile\" file=\"{w}/other.log\")\n",
            w = work.display(),
            s = sock.display()
        ),
    )
    .unwrap();
    let o = Command::new("rsyslogd")
        .args(["-N1", "-f"])
        .arg(work.join("rsyslog.conf"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "rsyslogd -N1: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut child = Command::new("rsyslogd")
        .args(["-n", "-i"])
        .arg(work.join("pid"))
        .arg("-f")
        .arg(work.join("rsyslog.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + T;
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    // Every message: RFC 3164 over the unix socket (en), RFC 5424 over UDP (ja).
    let c = std::os::unix::net::UnixDatagram::unbound().unwrap();
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut expect = Vec::new();
    for m in &r.catalog.messages {
        let ev = r.sample_event(&m.id, Lang::En);
        c.send_to(
            &syslog::format(
                &sink(SyslogFormat::Rfc3164, Transport::Unix, Lang::En),
                &r,
                &ev,
                7,
            ),
            &sock,
        )
        .unwrap();
        let ev_ja = r.sample_event(&m.id, Lang::Ja);
        u.send_to(
            &syslog::format(
                &sink(SyslogFormat::Rfc5424, Transport::Udp, Lang::Ja),
                &r,
                &ev_ja,
                7,
            ),
            ("127.0.0.1", udp),
        )
        .unwrap();
        expect.push((m.id.clone(), m.severity));
        std::thread::sleep(Duration::from_millis(2));
    }
    // Not procward's: must not land in procward's files.
    c.send_to(
        b"<27>Nov 25 10:00:00 other[1]: PW2003 target x: process 1 disappeared",
        &sock,
    )
    .unwrap();
    let n = expect.len();
    let read = |f: &str| std::fs::read_to_string(logs.join(f)).unwrap_or_default();
    let deadline = Instant::now() + T;
    while read("procward.log").lines().count() < 2 * n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Collect forwarded lines.
    let mut forwarded = String::new();
    let deadline = Instant::now() + T;
    let want_fwd = if forward {
        2 * expect
            .iter()
            .filter(|(_, s)| s.at_least(Severity::Warning))
            .count()
    } else {
        // Nothing may come: wait a little for what should not.
        std::thread::sleep(Duration::from_millis(500));
        0
    };
    let mut conns = Vec::new();
    while forwarded.matches(" procward 7 ").count() < want_fwd.max(1) && Instant::now() < deadline {
        if want_fwd == 0 {
            break;
        }
        if let Ok((s, _)) = fwd.accept() {
            s.set_nonblocking(true).unwrap();
            conns.push(s);
        }
        for s in conns.iter_mut() {
            let mut buf = [0u8; 65536];
            use std::io::Read;
            if let Ok(k) = s.read(&mut buf) {
                forwarded.push_str(&String::from_utf8_lossy(&buf[..k]));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(child.id(), libc::SIGTERM);
    let _ = child.wait();
    let all = read("procward.log");
    assert_eq!(all.lines().count(), 2 * n, "{all}");
    assert!(
        !all.contains("other[1]"),
        "a foreign line was taken for procward's"
    );
    let other = std::fs::read_to_string(work.join("other.log")).unwrap_or_default();
    assert!(other.contains("other[1]"), "other.log:\n{other}");
    let in_other = other.lines().filter(|l| l.contains("procward[7]")).count();
    if exclusive {
        assert_eq!(in_other, 0, "--exclusive keeps procward out:\n{other}");
    } else {
        assert_eq!(
            in_other,
            2 * n,
            "the host's own log lacks procward lines:\n{other}"
        );
    }
    for (id, sev) in &expect {
        let file = match sev.code() {
            0..=2 => Some("critical.log"),
            3 => Some("error.log"),
            4 => Some("warning.log"),
            _ => None,
        };
        for f in ["critical.log", "error.log", "warning.log"] {
            let count = read(f)
                .lines()
                .filter(|l| l.contains(&format!(" procward[7]: {id} ")))
                .count();
            let want = if Some(f) == file { 2 } else { 0 };
            assert_eq!(count, want, "{id} ({}) in {f}:\n{}", sev.as_str(), read(f));
        }
    }
    // RFC 5424 on the wire: "... procward 7 MSGID SD MSG"; from an RFC 3164
    // original the MSGID is "-" and the ID starts the MSG.
    let frame = Regex::new(r" procward 7 (?:- - +(PW[0-9]{4}) |(PW[0-9]{4}) \[)").unwrap();
    let mut got: Vec<String> = frame
        .captures_iter(&forwarded)
        .map(|c| c.get(1).or(c.get(2)).unwrap().as_str().to_string())
        .collect();
    got.sort();
    let mut want: Vec<String> = expect
        .iter()
        .filter(|(_, s)| forward && s.at_least(Severity::Warning))
        .flat_map(|(id, _)| [id.clone(), id.clone()])
        .collect();
    want.sort();
    assert_eq!(
        got,
        want,
        "forwarded:\n{}",
        &forwarded[..forwarded.len().min(3000)]
    );
    Routed { rules, forwarded }
}
#[test]
fn snmptt_translates_real_traps_from_procward() {
    if !require("snmptrapd") || !require("snmptt") {
        return;
    }
    let env = Env::new();
    let r = renderer();
    let conf = env.path("snmptt.procward.conf");
    std::fs::write(
        &conf,
        &filters::generate("snmptt", &r, ROOT, &Default::default()).unwrap()[0].content,
    )
    .unwrap();
    let ini = env.path("snmptt.ini");
    let log = env.path("snmptt.log");
    std::fs::write(
        &ini,
        format!(
            "[General]\nsnmptt_system_name = test\nmode = standalone\nmultiple_event = 1\ndns_enable = 0\nstrip_domain = 0\n\
             net_snmp_perl_enable = 0\ntranslate_log_trap_oid = 0\n[Logging]\nstdout_enable = 0\nlog_enable = 1\nlog_file = {}\n\
             log_system_enable = 0\nunknown_trap_log_enable = 1\nunknown_trap_log_file = {}\nsyslog_enable = 0\n\
             syslog_system_enable = 0\n[Debugging]\nDEBUGGING = 0\n[TrapFiles]\nsnmptt_conf_files = <<END\n{}\nEND\n",
            log.display(),
            env.path("unknown.log").display(),
            conf.display()
        ),
    )
    .unwrap();
    let port = free_udp_port();
    std::fs::write(
        env.path("snmptrapd.conf"),
        format!("authCommunity log,execute,net s3cret-community\ntraphandle default /usr/sbin/snmptt --ini={}\n", ini.display()),
    )
    .unwrap();
    let mut trapd = Command::new("snmptrapd")
        .args(["-f", "-On", "-Lf"])
        .arg(env.path("snmptrapd.log"))
        .args(["-C", "-c"])
        .arg(env.path("snmptrapd.conf"))
        .arg(format!("udp:127.0.0.1:{port}"))
        .env("SNMP_PERSISTENT_DIR", env.path("persist"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let tok = token();
    let tok2 = token();
    let sink = |name: &str, lang: &str| {
        format!(
            "[[sink.snmp]]\nname = \"{name}\"\naddress = \"127.0.0.1:{port}\"\nversion = \"2c\"\ncommunity = \"s3cret-community\"\nmin-severity = \"debug\"\nlanguage = \"{lang}\"\n"
        )
    };
    env.write_config(&format!(
        "{}{}{}{}{}",
        env.daemon_section(""),
        sink("nms", "en"),
        sink("nms-ja", "ja"),
        env.target_section("web", &tok, ""),
        // Characters snmptt removes from values: ; | [ ] $ `
        env.failing_target("bad", &tok2, "cannot bind [::]:80; retry|abort $HOME `id`"),
    ));
    let target = Proc::sleeper(&tok);
    let bad = Proc::sleeper(&tok2);
    let d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2001" && e["target"] == "web");
    env.wait_event(T, |e| e["id"] == "PW2001" && e["target"] == "bad");
    target.signal(libc::SIGKILL);
    bad.signal(libc::SIGKILL);
    env.wait_event(T, |e| e["id"] == "PW2015");
    let failed = env.wait_event(T, |e| e["id"] == "PW2012");
    // The exact texts procward sent, in both languages.
    let disappeared = env
        .events()
        .into_iter()
        .find(|e| e["id"] == "PW2003" && e["target"] == "web")
        .unwrap();
    let fields = |e: &serde_json::Value| -> std::collections::BTreeMap<String, serde_json::Value> {
        serde_json::from_value(e["fields"].clone()).unwrap()
    };
    let mut lines = Vec::new();
    for (ev, sev) in [(&disappeared, "Major"), (&failed, "Major")] {
        for lang in [Lang::En, Lang::Ja] {
            let text = r
                .text(ev["id"].as_str().unwrap(), &fields(ev), lang)
                .unwrap();
            lines.push(
                format!(
                    ".1.3.6.1.4.1.32473.0.{} {sev} \"procward\" ",
                    &ev["id"].as_str().unwrap()[2..]
                ) + &format!("- {} {text}", ev["id"].as_str().unwrap()),
            );
        }
    }
    assert!(lines[1].contains("監視対象"), "{}", lines[1]);
    assert!(
        lines[2].contains("[::]:80; retry|abort $HOME `id`"),
        "{}",
        lines[2]
    );
    let deadline = Instant::now() + T;
    let mut text = String::new();
    let has = |text: &str, l: &str| {
        // DATE OID SEVERITY "CATEGORY" HOST - FORMAT
        let (head, tail) = l.split_once("\" ").unwrap();
        text.lines()
            .any(|t| t.contains(head) && t.ends_with(tail.split_once(' ').unwrap().1))
    };
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if lines.iter().all(|l| has(&text, l))
            && text.contains("PW2015 target web: recovered by restart 1")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(d);
    kill(trapd.id(), libc::SIGTERM);
    let _ = trapd.wait();
    for l in &lines {
        assert!(has(&text, l), "snmptt log lacks `{l}`:\n{text}");
    }
    assert!(
        text.contains(".1.3.6.1.4.1.32473.0.2015 Normal \"procward\""),
        "{text}"
    );
    let unknown = std::fs::read_to_string(env.path("unknown.log")).unwrap_or_default();
    assert!(unknown.is_empty(), "traps snmptt did not know: {unknown}");
}

#[test]
fn install_writes_backs_up_and_is_idempotent() {
    if !require("rsyslogd") {
        return;
    }
    let env = Env::new();
    let root = env.path("root");
    let run = |args: &[&str]| {
        let o = Command::new(BIN)
            .args(["filters", "install", "-c", "/nonexistent", "--root"])
            .arg(&root)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let dry = run(&["--manager", "rsyslog", "--dry-run"]);
    assert!(dry.contains("would write"), "{dry}");
    assert!(
        !root.join("etc/rsyslog.d/30-procward.conf").exists(),
        "dry run wrote"
    );
    let first = run(&["--manager", "rsyslog"]);
    assert!(
        first.contains("wrote ") && first.contains("rsyslogd -N1 accepts"),
        "{first}"
    );
    let second = run(&["--manager", "rsyslog"]);
    assert!(second.contains("nothing to do"), "{second}");
    let f = root.join("etc/rsyslog.d/30-procward.conf");
    std::fs::write(&f, "# local edit\n").unwrap();
    let third = run(&["--manager", "rsyslog"]);
    assert!(third.contains("the old one saved as"), "{third}");
    assert_eq!(
        std::fs::read_to_string(format!("{}.bak.1", f.display())).unwrap(),
        "# local edit\n"
    );
    for (m, _, _) in MANAGERS {
        run(&["--manager", m]);
    }
    assert!(root.join("usr/share/snmp/mibs/PROCWARD-MIB").exists());
    assert!(root
        .join("etc/procward/managers/websam/procward-ja.tsv")
        .exists());
}

/// ESMPRO-style: critical at FATAL, recoveries at NORMAL naming what they
/// close, the catch-all of each file taking its own language only.
#[test]
fn esmpro_definitions_pair_recoveries_and_put_critical_on_top() {
    let r = renderer();
    for f in filters::generate("esmpro", &r, ROOT, &Default::default()).unwrap() {
        let lang = if f.name.ends_with("-ja.ini") {
            Lang::Ja
        } else {
            Lang::En
        };
        let section = |id: &str| -> std::collections::BTreeMap<String, String> {
            let start = f.content.find(&format!("\n[{id}]\n")).unwrap();
            f.content[start..]
                .lines()
                .skip(2)
                .take_while(|l| !l.is_empty())
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        for m in &r.catalog.messages {
            let s = section(&m.id);
            if m.severity.code() <= 2 {
                assert_eq!(s["EventLevel"], "FATAL", "{}", m.id);
            }
            if !m.clears.is_empty() {
                assert_eq!(s["EventLevel"], "NORMAL", "{}", m.id);
                assert_eq!(s["Recovers"], m.clears.join(" "), "{}", m.id);
            }
            assert_eq!(
                s["Description"],
                m.description
                    .get(lang)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        let other = section("PW-OTHER");
        assert_eq!(other["Pattern"], filters::catch_all(lang));
    }
}
