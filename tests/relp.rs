//! Acknowledged delivery into a real rsyslogd: RELP (imrelp), RELP over
//! TLS and RFC 5425 syslog over TLS (imtcp with the openssl driver), with
//! certificates the test makes with openssl. The receiver writes each
//! message before it acknowledges it (Direct queues, omfile's defaults),
//! so what it acknowledged is in its file even when it is SIGKILLed.
//!
//! The soak test scales with PROCWARD_SOAK_EVENTS, PROCWARD_SOAK_KILLS and
//! PROCWARD_SOAK_DAEMON_KILLS (scripts/relp-soak.sh runs the full size).

#![allow(clippy::too_many_lines)]

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A CA, a server certificate for localhost/127.0.0.1, and a second CA
/// that signed nothing the receiver has.
struct Pki {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Pki {
    fn make(dir: &Path) -> Pki {
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir).unwrap();
        for ca in ["ca", "other-ca"] {
            openssl(
                &dir,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.pem"),
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=procward test {ca}"),
                ],
            );
        }
        openssl(
            &dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        );
        std::fs::write(
            dir.join("ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "ext",
            ],
        );
        Pki { dir }
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }
}

/// rsyslogd with one input per kind: `relp` (plain), `relptls`, `tls`
/// (RFC 5425); each writes `NAME.log`, one line per message.
struct Receiver {
    child: Option<Child>,
    dir: PathBuf,
    ports: BTreeMap<&'static str, u16>,
}

impl Receiver {
    fn start(dir: &Path, pki: Option<&Pki>) -> Receiver {
        let dir = dir.join("receiver");
        std::fs::create_dir_all(&dir).unwrap();
        let mut ports = BTreeMap::new();
        ports.insert("relp", free_tcp_port());
        let mut global = String::new();
        let mut inputs = format!(
            "module(load=\"imrelp\" tls.tlslib=\"openssl\")\n\
             input(type=\"imrelp\" address=\"127.0.0.1\" port=\"{}\" ruleset=\"relp\")\n",
            ports["relp"]
        );
        if let Some(p) = pki {
            ports.insert("relptls", free_tcp_port());
            ports.insert("tls", free_tcp_port());
            let (ca, cert, key) = (p.path("ca.pem"), p.path("server.pem"), p.path("server.key"));
            global = format!(
                " DefaultNetstreamDriverCAFile=\"{ca}\" DefaultNetstreamDriverCertFile=\"{cert}\" \
                 DefaultNetstreamDriverKeyFile=\"{key}\""
            );
            inputs += &format!(
                "input(type=\"imrelp\" address=\"127.0.0.1\" port=\"{}\" ruleset=\"relptls\" tls=\"on\" \
                 tls.cacert=\"{ca}\" tls.mycert=\"{cert}\" tls.myprivkey=\"{key}\")\n\
                 module(load=\"imtcp\" StreamDriver.Name=\"ossl\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")\n\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{}\" ruleset=\"tls\")\n",
                ports["relptls"], ports["tls"]
            );
        }
        let rulesets: String = ports
            .keys()
            .map(|n| {
                format!(
                    "ruleset(name=\"{n}\" queue.type=\"Direct\") {{ action(type=\"omfile\" file=\"{}\" template=\"t\") }}\n",
                    dir.join(format!("{n}.log")).display()
                )
            })
            .collect();
        std::fs::write(
            dir.join("rsyslog.conf"),
            format!(
                "global(workDirectory=\"{}\"{global})\nmain_queue(queue.type=\"Direct\")\n\
                 template(name=\"t\" type=\"string\" string=\"%msgid% %structured-data%\\n\")\n{rulesets}{inputs}",
                dir.display()
            ),
        )
        .unwrap();
        let mut r = Receiver {
            child: None,
            dir,
            ports,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        // A SIGKILLed rsyslogd leaves its pid file, which stops the next.
        let _ = std::fs::remove_file(self.dir.join("rsyslogd.pid"));
        let child = Command::new("rsyslogd")
            .args(["-n", "-i"])
            .arg(self.dir.join("rsyslogd.pid"))
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join("rsyslogd.err"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Ready when every port accepts.
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in self.ports.values() {
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "rsyslogd did not listen on {port}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Kill it with `sig` and wait until it is gone.
    fn kill(&mut self, sig: i32) {
        if let Some(mut c) = self.child.take() {
            kill(c.id(), sig);
            let _ = c.wait();
        }
    }

    /// The seqs in `NAME.log`, in the order received.
    fn seqs(&self, name: &str) -> Vec<u64> {
        file_lines(&self.dir.join(format!("{name}.log")))
            .iter()
            .filter_map(|l| l.split("seq=\"").nth(1)?.split('"').next()?.parse().ok())
            .collect()
    }

    fn address(&self, name: &str) -> String {
        format!("127.0.0.1:{}", self.ports[name])
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(10));
        }
    }
}

fn sink(name: &str, transport: &str, address: &str, extra: &str) -> String {
    format!(
        "[[sink.syslog]]\nname = \"{name}\"\ntransport = \"{transport}\"\naddress = \"{address}\"\n\
         format = \"rfc5424\"\nmin-severity = \"debug\"\n{extra}"
    )
}

/// The seqs of the journal's events meant for sink `name` up to `last`.
fn journal_for(env: &Env, name: &str, last: u64) -> BTreeSet<u64> {
    env.events()
        .iter()
        .filter(|e| e["fields"]["sink"] != name)
        .filter_map(|e| e["seq"].as_u64())
        .filter(|s| *s <= last)
        .collect()
}

/// Wait until `rx` has every seq of the journal meant for `name` up to
/// `last`; returns what is missing when `limit` runs out.
fn wait_all(env: &Env, rx: &Receiver, name: &str, last: u64, limit: Duration) -> Vec<u64> {
    let deadline = Instant::now() + limit;
    // Events after `last` may still come; those up to it are all there.
    let want = journal_for(env, name, last);
    loop {
        let got: BTreeSet<u64> = rx.seqs(name).into_iter().collect();
        let missing: Vec<u64> = want.difference(&got).copied().collect();
        if missing.is_empty() || Instant::now() > deadline {
            return missing;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `test-event --count n`; the last seq it journaled.
fn test_events(env: &Env, n: u32) -> u64 {
    let o = env.cli(&["test-event", "--count", &n.to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    last_seq_said(&out).unwrap_or_else(|| panic!("no seq range in {out}"))
}

/// The last seq of `test-event`'s "journaled, seq A-B".
fn last_seq_said(out: &str) -> Option<u64> {
    out.split("seq ")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn relp_relp_over_tls_and_rfc5425_deliver_every_event_to_rsyslogd() {
    if !require("rsyslogd") || !require("openssl") {
        return;
    }
    let env = Env::new();
    let pki = Pki::make(env.dir.path());
    let rx = Receiver::start(env.dir.path(), Some(&pki));
    let ca = pki.path("ca.pem");
    env.write_config(&format!(
        "{}{}{}{}",
        env.daemon_section(""),
        sink("relp", "relp", &rx.address("relp"), ""),
        sink(
            "relptls",
            "relp",
            &rx.address("relptls"),
            &format!("tls = {{ ca = \"{ca}\", server-name = \"localhost\" }}\n")
        ),
        sink(
            "tls",
            "tls",
            &rx.address("tls"),
            &format!("tls = {{ ca = \"{ca}\" }}\n")
        ),
    ));
    let _d = env.start();
    let last = test_events(&env, 300);
    for name in ["relp", "relptls", "tls"] {
        let missing = wait_all(&env, &rx, name, last, Duration::from_secs(30));
        assert!(missing.is_empty(), "{name}: never received {missing:?}");
        let got = rx.seqs(name);
        let unique: BTreeSet<u64> = got.iter().copied().collect();
        assert_eq!(
            got.len(),
            unique.len(),
            "{name}: no duplicates without a break"
        );
    }
    assert!(
        !env.ids().iter().any(|i| i == "PW3002"),
        "no sink failed: {:?}",
        env.events()
            .iter()
            .filter(|e| e["id"] == "PW3002")
            .collect::<Vec<_>>()
    );
    let o = env.cli(&["sinks", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kinds: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["syslog/relp", "syslog/relp+tls", "syslog/tls"]);
}

/// A CA that did not sign the receiver's certificate, or a name it does
/// not carry: one PW3002 each that says so; once the right CA is
/// configured and procward reloaded, everything journaled meanwhile
/// arrives.
#[test]
fn a_wrong_ca_or_name_is_said_plainly_and_nothing_is_lost_once_fixed() {
    if !require("rsyslogd") || !require("openssl") {
        return;
    }
    let env = Env::new();
    let pki = Pki::make(env.dir.path());
    let rx = Receiver::start(env.dir.path(), Some(&pki));
    let config = |ca: &str, name: &str| {
        format!(
            "{}{}{}",
            env.daemon_section(""),
            sink(
                "relptls",
                "relp",
                &rx.address("relptls"),
                &format!("tls = {{ ca = \"{}\" }}\n", pki.path(ca))
            ),
            sink(
                "tls",
                "tls",
                &rx.address("tls"),
                &format!(
                    "tls = {{ ca = \"{}\", server-name = \"{name}\" }}\n",
                    pki.path("ca.pem")
                )
            ),
        )
    };
    env.write_config(&config("other-ca.pem", "logs.example.com"));
    let _d = env.start();
    let failed = |sink: &str| {
        env.wait_event(T, |e| e["id"] == "PW3002" && e["fields"]["sink"] == sink)["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let ca_text = failed("relptls");
    assert!(
        ca_text.contains("is not signed by a CA in") && ca_text.contains("other-ca.pem"),
        "{ca_text}"
    );
    let name_text = failed("tls");
    assert!(
        name_text.contains("is not for logs.example.com") && name_text.contains("localhost"),
        "{name_text}"
    );
    let last = test_events(&env, 50);
    std::thread::sleep(Duration::from_millis(300));
    assert!(rx.seqs("relptls").is_empty() && rx.seqs("tls").is_empty());
    assert_eq!(
        env.events().iter().filter(|e| e["id"] == "PW3002").count(),
        2,
        "one PW3002 per sink and outage"
    );
    env.write_config(&config("ca.pem", "localhost"));
    assert!(env.cli(&["reload"]).status.success());
    for name in ["relptls", "tls"] {
        let missing = wait_all(&env, &rx, name, last, Duration::from_secs(40));
        assert!(missing.is_empty(), "{name}: never received {missing:?}");
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A pseudo-random number from the clock (pauses; no crate needed).
fn jitter(max_ms: u64) -> Duration {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    Duration::from_millis(n % max_ms.max(1))
}

/// `test-event --count n`, or `None` when the daemon is not there.
fn try_test_events(env: &Env, n: u64) -> Option<u64> {
    let o = env.cli(&["test-event", "--count", &n.to_string()]);
    o.status.success().then_some(())?;
    last_seq_said(&String::from_utf8_lossy(&o.stdout))
}

/// Events produced while the RELP receiver is killed again and again
/// (SIGTERM and SIGKILL alternating, restarted after random pauses) and
/// procward itself is SIGKILLed and restarted: every event of the journal
/// reaches the receiver's file; duplicates stay within window × breaks.
#[test]
fn relp_loses_nothing_over_receiver_kills_and_procward_kills() {
    if !require("rsyslogd") {
        return;
    }
    let events = env_or("PROCWARD_SOAK_EVENTS", 20_000);
    let kills = env_or("PROCWARD_SOAK_KILLS", 10);
    let daemon_kills = env_or("PROCWARD_SOAK_DAEMON_KILLS", 1);
    let env = Env::new();
    let mut rx = Receiver::start(env.dir.path(), None);
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        sink(
            "relp",
            "relp",
            &rx.address("relp"),
            "hold-down = \"200ms\"\n"
        )
    ));
    let mut d = env.start();
    let started = Instant::now();
    let produced = std::sync::atomic::AtomicU64::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    let kills_done = std::sync::atomic::AtomicU64::new(0);
    let chunk = 200u64;
    let share = |k: u64, of: u64| events * k / (of + 1);
    // Where each kill is due (receiver and procward kills together).
    let due: Vec<u64> = (1..=kills)
        .map(|k| share(k, kills))
        .chain((1..=daemon_kills).map(|k| share(k, daemon_kills)))
        .collect();
    std::thread::scope(|s| {
        // The producer: test events in chunks until `events` are
        // journaled (a chunk cut by a procward kill is asked again).
        s.spawn(|| {
            use std::sync::atomic::Ordering::Relaxed;
            let deadline = Instant::now() + Duration::from_secs(600);
            while produced.load(Relaxed) < events && Instant::now() < deadline {
                // Kills happen while events flow, but production does not
                // run away from them: at most two chunks past a kill due.
                let p = produced.load(Relaxed);
                let owed = due.iter().filter(|d| **d + 2 * chunk <= p).count() as u64;
                if kills_done.load(Relaxed) < owed {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                let n = chunk.min(events - p);
                match try_test_events(&env, n) {
                    Some(_) => produced.fetch_add(n, Relaxed),
                    None => {
                        std::thread::sleep(Duration::from_millis(50));
                        0
                    }
                };
            }
            done.store(true, Relaxed);
        });
        // Receiver and procward kills spread over the production.
        let (mut rkills, mut dkills) = (0u64, 0u64);
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let now = produced.load(std::sync::atomic::Ordering::Relaxed);
            if rkills < kills && now >= share(rkills + 1, kills) {
                rkills += 1;
                rx.kill(if rkills % 2 == 0 {
                    libc::SIGKILL
                } else {
                    libc::SIGTERM
                });
                std::thread::sleep(jitter(500));
                rx.spawn();
                kills_done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            } else if dkills < daemon_kills && now >= share(dkills + 1, daemon_kills) {
                dkills += 1;
                kill(d.procward_pid(), libc::SIGKILL);
                d.stop();
                d = env.start();
                kills_done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            } else {
                std::thread::sleep(jitter(30));
            }
        }
        assert_eq!(
            (rkills, dkills),
            (kills, daemon_kills),
            "every kill happened"
        );
    });
    let last = try_test_events(&env, 1).expect("the daemon answers");
    let missing = wait_all(&env, &rx, "relp", last, Duration::from_secs(120));
    let got = rx.seqs("relp");
    let unique: BTreeSet<u64> = got.iter().copied().collect();
    let duplicates = got.len() - unique.len();
    let breaks = kills + daemon_kills;
    eprintln!(
        "soak: {} test events (journal up to seq {last}), {kills} receiver kills, \
         {daemon_kills} procward kills, {} missing, {duplicates} duplicates, {:.1} s",
        produced.into_inner(),
        missing.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        missing.is_empty(),
        "never received {} events: {:?}",
        missing.len(),
        &missing[..missing.len().min(50)]
    );
    assert!(
        duplicates as u64 <= 128 * breaks,
        "{duplicates} duplicates over {breaks} breaks"
    );
    drop(d);
}

/// The rsyslog receiver of filter-defs/README.md ("Receiving over
/// RELP"), as written there (ports and paths changed): it drops the
/// duplicates a resend brings and writes the gaps it sees.
#[test]
fn the_documented_relp_receiver_drops_duplicates_and_flags_gaps() {
    if !require("rsyslogd") {
        return;
    }
    let env = Env::new();
    let readme = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("filter-defs/README.md"),
    )
    .unwrap();
    let section = readme.split("## Receiving over RELP").nth(1).unwrap();
    let conf = section
        .split("```")
        .nth(1)
        .unwrap()
        .trim_start_matches('\n');
    let work = env.path("gaprx");
    std::fs::create_dir_all(&work).unwrap();
    let port = free_tcp_port();
    let conf = format!("global(workDirectory=\"{}\")\n{conf}", work.display())
        .replace("/var/log/procward", &work.display().to_string())
        .replace(
            "port=\"2514\"",
            &format!("address=\"127.0.0.1\" port=\"{port}\""),
        );
    std::fs::write(work.join("rsyslog.conf"), conf).unwrap();
    let mut rsyslogd = Command::new("rsyslogd")
        .args(["-n", "-i"])
        .arg(work.join("pid"))
        .arg("-f")
        .arg(work.join("rsyslog.conf"))
        .stderr(std::fs::File::create(work.join("err")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "rsyslogd did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let config = format!(
        "{}{}[[sink.syslog]]\nname = \"other\"\ntransport = \"udp\"\naddress = \"127.0.0.1:9\"\n",
        env.daemon_section(""),
        sink("relp", "relp", &format!("127.0.0.1:{port}"), "")
    );
    env.write_config(&config);
    let mut d = env.start();
    let first = test_events(&env, 20);
    let lines = |f: &str| file_lines(&work.join(f));
    let seq_of = |l: &String| -> u64 {
        l.split(" seq=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let wait_for = |want: u64| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !lines("relp.log").iter().any(|l| seq_of(l) == want) {
            assert!(Instant::now() < deadline, "{want} never written");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(first);
    // Duplicates: procward stopped, its cursor put back 10 events, so
    // they are sent again.
    d.stop();
    std::fs::write(
        env.state().join("cursors/relp"),
        format!("{}\n", first - 10),
    )
    .unwrap();
    let mut d = env.start();
    // A gap: three test events for the other sink only.
    let o = env.cli(&["test-event", "--count", "3", "--sink", "other"]);
    assert!(o.status.success());
    let last = test_events(&env, 1);
    wait_for(last);
    let seqs: Vec<u64> = lines("relp.log").iter().map(seq_of).collect();
    let unique: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(seqs.len(), unique.len(), "duplicates dropped: {seqs:?}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    let other: Vec<u64> = env
        .events()
        .iter()
        .filter(|e| e["id"] == "PW1015" && e["fields"]["sinks"] == "sink other")
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    let (from, to) = (other[0], other[2]);
    let gaps = lines("gaps.log");
    assert!(
        gaps.iter()
            .any(|g| g.contains(&format!("seq {from} to {to} never arrived"))),
        "the gap of the other sink's events: {gaps:?}"
    );
    d.stop();
    kill(rsyslogd.id(), libc::SIGTERM);
    let _ = rsyslogd.wait();
}

/// procward's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A receiver away while 200,000 events happen costs disk, not memory:
/// procward's RSS stays within a few MiB of its idle size, and once the
/// receiver starts, every event arrives.
#[test]
fn an_absent_receiver_costs_disk_not_memory_and_gets_everything_later() {
    if !require("rsyslogd") {
        return;
    }
    let events = env_or("PROCWARD_ABSENT_EVENTS", 200_000);
    let env = Env::new();
    let mut rx = Receiver::start(env.dir.path(), None);
    rx.kill(libc::SIGTERM);
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        sink("relp", "relp", &rx.address("relp"), "")
    ));
    let d = env.start();
    env.wait_event(T, |e| e["id"] == "PW3002");
    let pid = d.procward_pid();
    // Idle, after a first round of work (buffers and caches grown).
    for _ in 0..10 {
        test_events(&env, 2_000);
    }
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_kib(pid);
    let peak = std::sync::atomic::AtomicU64::new(idle);
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut last = 0;
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        // In chunks of 2,000: what is measured is the outage, not the
        // burst of one `test-event` call waiting for the journal thread.
        let mut produced = 0;
        while produced < events {
            let n = (events - produced).min(2_000);
            last = test_events(&env, n as u32);
            produced += n;
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let peak = peak.into_inner();
    rx.spawn();
    let missing = wait_all(&env, &rx, "relp", last, Duration::from_secs(300));
    eprintln!(
        "absent receiver: {events} events, RSS idle {} KiB, peak {} KiB while they were produced",
        idle, peak
    );
    assert!(
        missing.is_empty(),
        "never received {} events",
        missing.len()
    );
    assert!(
        peak <= idle + 8 * 1024,
        "RSS grew from {idle} KiB to {peak} KiB while the receiver was away"
    );
}
