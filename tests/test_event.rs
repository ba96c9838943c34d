//! `procward test-event`: test messages (PW1015) through the journal and
//! real sinks (UDP syslog receivers on loopback), to every sink or one,
//! answered once they are journaled.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// A syslog receiver on loopback and the lines it got.
struct Receiver {
    sock: UdpSocket,
    lines: Vec<String>,
}

impl Receiver {
    fn new() -> Receiver {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Receiver {
            sock,
            lines: Vec::new(),
        }
    }

    fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    /// Read what arrives for `wait` (or until `enough` lines with PW1015).
    fn collect(&mut self, wait: Duration, enough: usize) {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline && self.tests().len() < enough {
            if let Ok(n) = self.sock.recv(&mut buf) {
                self.lines
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }

    /// The sequence numbers of the test messages received.
    fn tests(&self) -> BTreeSet<u64> {
        self.lines
            .iter()
            .filter(|l| l.contains(" PW1015 "))
            .filter_map(|l| l.split("seq=\"").nth(1)?.split('"').next()?.parse().ok())
            .collect()
    }
}

fn sink(name: &str, port: u16, extra: &str) -> String {
    format!(
        "[[sink.syslog]]\nname = \"{name}\"\ntransport = \"udp\"\naddress = \"127.0.0.1:{port}\"\n\
         format = \"rfc5424\"\nmin-severity = \"debug\"\n{extra}"
    )
}

/// "3 test message(s) journaled, seq 7-9, …": (7, 9).
fn seq_range(stdout: &str) -> (u64, u64) {
    let range = stdout
        .split("seq ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or_else(|| panic!("no seq range in {stdout:?}"));
    let (a, b) = range.split_once('-').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

fn tests_in_journal(env: &Env) -> Vec<Value> {
    env.events()
        .into_iter()
        .filter(|e| e["id"] == "PW1015")
        .collect()
}

#[test]
fn test_messages_reach_every_sink_or_the_one_named_and_are_journaled_first() {
    let env = Env::new();
    let (mut a, mut b) = (Receiver::new(), Receiver::new());
    env.write_config(&format!(
        "{}{}{}",
        env.daemon_section(""),
        sink("a", a.port(), "language = \"ja\"\n"),
        sink("b", b.port(), "")
    ));
    let _d = env.start();

    let o = env.cli(&["test-event", "--count", "3"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (first, last) = seq_range(&out);
    assert_eq!(last - first, 2, "{out}");
    // Journaled when the command returns: all three, numbered 1 to 3.
    let journal = tests_in_journal(&env);
    assert_eq!(journal.len(), 3, "{journal:?}");
    for (k, e) in journal.iter().enumerate() {
        assert_eq!(e["seq"].as_u64().unwrap(), first + k as u64);
        assert_eq!(e["fields"]["k"], k as u64 + 1);
        assert_eq!(e["fields"]["n"], 3);
        assert_eq!(e["fields"]["user"], "root");
        assert_eq!(e["severity"], "info");
        assert_eq!(
            e["text"].as_str().unwrap(),
            format!(
                "test message {} of 3, requested by root (to every sink)",
                k + 1
            )
        );
    }
    let want: BTreeSet<u64> = (first..=last).collect();
    a.collect(Duration::from_secs(10), 3);
    b.collect(Duration::from_secs(10), 3);
    assert_eq!(a.tests(), want, "{:?}", a.lines);
    assert_eq!(b.tests(), want, "{:?}", b.lines);
    assert!(
        a.lines
            .iter()
            .any(|l| l.contains("テストメッセージ 1/3 (要求元: root、送信先: すべてのシンク)")),
        "{:?}",
        a.lines
    );

    // One sink only.
    let o = env.cli(&["test-event", "--count", "2", "--sink", "b"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (first, last) = seq_range(&out);
    let only: BTreeSet<u64> = (first..=last).collect();
    b.collect(Duration::from_secs(10), 5);
    assert!(only.is_subset(&b.tests()), "{:?}", b.lines);
    // `a` would have had them by now (b had): none came.
    a.collect(Duration::from_secs(1), 5);
    assert!(a.tests().is_disjoint(&only), "{:?}", a.lines);
    let e = env.wait_event(Duration::from_secs(5), |e| e["seq"] == last);
    assert_eq!(e["fields"]["sinks"], "sink b");
}

#[test]
fn a_test_event_request_that_cannot_be_served_says_why() {
    let env = Env::new();
    let r = Receiver::new();
    env.write_config(&format!(
        "{}{}",
        env.daemon_section(""),
        sink("a", r.port(), "")
    ));
    // No daemon: unreachable (3), as every client command.
    let o = env.cli(&["test-event"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _d = env.start();
    let o = env.cli(&["test-event", "--sink", "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no sink named `nosuch`"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = env.cli(&["test-event", "--count", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("count must be 1 to 1000000"));
    assert!(tests_in_journal(&env).is_empty());
}
