//! Sink health as a manager sees it: receivers that are absent, reset
//! every connection or never read. One PW3002 per outage, one PW3003 per
//! confirmed recovery, PW3001 drop counts that add up exactly.
//!
//! The receivers are plain sockets of the test on loopback ports: what
//! matters here is how the transport behaves (ICMP port unreachable, RST,
//! a full receive window), not what a syslog daemon does with the lines
//! (tests/syslog.rs runs a real rsyslogd).
// Test harness, not procward: raw libc calls set up the conditions tested.
#![allow(unsafe_code)]

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A target that never runs: pausing and resuming it makes events.
fn config(env: &Env, sink: &str) -> String {
    format!(
        "{}{sink}[[target]]\nname = \"q\"\nmatch.comm = \"no-such-proc\"\n",
        env.daemon_section("")
    )
}

/// `n` events (PW1005/PW1006), one control request each.
fn make_events(env: &Env, n: usize) {
    for i in 0..n {
        let o = env.cli(&[if i % 2 == 0 { "pause" } else { "resume" }, "q"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

fn count(env: &Env, id: &str, sink: &str) -> usize {
    env.events()
        .iter()
        .filter(|e| e["id"] == id && e["fields"]["sink"] == sink)
        .count()
}

fn last_seq(env: &Env) -> u64 {
    env.events()
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .max()
        .unwrap()
}

/// Sequence numbers in whatever the receiver got (RFC 5424 SD param).
fn seqs(text: &str) -> BTreeSet<u64> {
    text.split("seq=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect()
}

/// Start procward while the receiver is away: 16 events, retries for
/// `retrying`, and exactly one PW3002 and no PW3003 for `sink`.
fn one_outage(env: &Env, sink: &str, retrying: Duration) -> Daemon {
    let d = env.start();
    env.wait_event(T, |e| e["id"] == "PW1001");
    make_events(env, 16);
    // Time for a few retries (backoff 100ms, 200ms, ...).
    std::thread::sleep(retrying);
    assert_eq!(count(env, "PW3002", sink), 1, "{:?}", env.ids());
    assert_eq!(
        count(env, "PW3003", sink),
        0,
        "nothing was delivered: no recovery may be said: {:?}",
        env.ids()
    );
    d
}

#[test]
fn an_absent_udp_receiver_is_one_outage_and_recovers_only_once_delivery_is_confirmed() {
    let env = Env::new();
    let port = free_udp_port();
    env.write_config(&config(
        &env,
        &format!(
            "[[sink.syslog]]\nname = \"udp\"\ntransport = \"udp\"\naddress = \"127.0.0.1:{port}\"\nformat = \"rfc5424\"\nmin-severity = \"debug\"\nhold-down = \"500ms\"\n"
        ),
    ));
    let _d = one_outage(&env, "udp", Duration::from_secs(3));
    let failed = env
        .events()
        .into_iter()
        .find(|e| e["id"] == "PW3002")
        .unwrap();
    assert!(
        failed["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{failed}"
    );

    // The receiver comes up: one recovery, and the queued events arrive.
    let rx = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let recovered = env.wait_event(Duration::from_secs(40), |e| e["id"] == "PW3003");
    assert!(recovered["fields"]["failures"].as_u64().unwrap() >= 1);
    make_events(&env, 2);
    let want = last_seq(&env);
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + T;
    let mut buf = vec![0u8; 65536];
    while !got.contains(&want) && Instant::now() < deadline {
        if let Ok(n) = rx.recv(&mut buf) {
            got.extend(seqs(&String::from_utf8_lossy(&buf[..n])));
        }
    }
    assert!(
        got.contains(&want),
        "last event {want} not received: {got:?}"
    );
    // Everything from the first refused send on was queued and delivered.
    let first_failed = failed["seq"].as_u64().unwrap();
    let queued: Vec<u64> = env
        .events()
        .iter()
        .filter(|e| e["fields"]["sink"] != "udp")
        .filter_map(|e| e["seq"].as_u64())
        .filter(|s| *s > first_failed && *s <= want)
        .collect();
    let lost: Vec<&u64> = queued.iter().filter(|s| !got.contains(s)).collect();
    assert!(lost.is_empty(), "lost {lost:?}");
    assert_eq!(count(&env, "PW3002", "udp"), 1);
    assert_eq!(count(&env, "PW3003", "udp"), 1);
}

/// A TCP receiver on `port` whose behaviour the test switches:
/// 0 = reset every connection at once, 1 = read everything, 2 = accept
/// and never read.
struct TcpReceiver {
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    data: Arc<Mutex<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    port: u16,
}

const RESET: u8 = 0;
const READ: u8 = 1;
const STALL: u8 = 2;
/// Reset the connections held without reading (RST, with what procward
/// wrote still unacknowledged in its send queue), then read new ones.
const RESET_HELD: u8 = 3;

/// SO_LINGER 0: closing `c` sends RST.
fn rst(c: TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a linger struct.
    unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as u32,
        );
    }
    drop(c);
}

fn set_int(fd: i32, level: i32, opt: i32, v: i32) {
    // SAFETY: setsockopt with an int of the right size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &v as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as u32,
        )
    };
    assert_eq!(r, 0);
}

impl TcpReceiver {
    fn start(mode: u8) -> TcpReceiver {
        TcpReceiver::start_on(0, mode)
    }

    /// On `port` (0: any free one).
    fn start_on(port: u16, mode: u8) -> TcpReceiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        // A small receive buffer: a receiver that does not read is full soon.
        set_int(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            4096,
        );
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(mode));
        let stop = Arc::new(AtomicBool::new(false));
        let data = Arc::new(Mutex::new(Vec::new()));
        let (m, s, d) = (mode.clone(), stop.clone(), data.clone());
        let thread = std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            let mut readers = Vec::new();
            while !s.load(Ordering::Relaxed) {
                // Stalled connections are read once the mode says so.
                if m.load(Ordering::Relaxed) == READ {
                    for c in held.drain(..) {
                        readers.push(reader(c, d.clone(), s.clone()));
                    }
                }
                if m.load(Ordering::Relaxed) == RESET_HELD {
                    held.drain(..).for_each(rst);
                    m.store(READ, Ordering::Relaxed);
                }
                match listener.accept() {
                    Ok((c, _)) => match m.load(Ordering::Relaxed) {
                        RESET => rst(c),
                        READ => readers.push(reader(c, d.clone(), s.clone())),
                        _ => held.push(c),
                    },
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for r in readers {
                let _ = r.join();
            }
        });
        TcpReceiver {
            mode,
            stop,
            data,
            thread: Some(thread),
            port,
        }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::Relaxed);
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data.lock().unwrap()).into_owned()
    }
}

fn reader(
    mut c: TcpStream,
    data: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        c.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            match c.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => data.lock().unwrap().extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
    })
}

impl Drop for TcpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tcp_sink(port: u16, extra: &str) -> String {
    format!(
        "[[sink.syslog]]\nname = \"tcp\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{port}\"\nformat = \"rfc5424\"\nmin-severity = \"debug\"\nhold-down = \"500ms\"\n{extra}"
    )
}

/// Wait until the receiver has the event `seq`.
fn wait_received(rx: &TcpReceiver, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !seqs(&rx.text()).contains(&seq) {
        assert!(
            Instant::now() < deadline,
            "event {seq} never reached the receiver"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_tcp_receiver_that_resets_every_connection_is_one_outage_not_a_storm() {
    let env = Env::new();
    let rx = TcpReceiver::start(RESET);
    env.write_config(&config(&env, &tcp_sink(rx.port, "")));
    // A receiver that resets every connection never recovers.
    let _d = one_outage(&env, "tcp", Duration::from_secs(3));

    rx.set(READ);
    env.wait_event(Duration::from_secs(40), |e| e["id"] == "PW3003");
    make_events(&env, 2);
    wait_received(&rx, last_seq(&env));
    assert_eq!(count(&env, "PW3002", "tcp"), 1);
    assert_eq!(count(&env, "PW3003", "tcp"), 1);
}

/// A TCP receiver that stops reading: one PW3002 ("stalled"); what does
/// not fit the queue (20) stays in the journal instead of being dropped
/// (no PW3001); when it reads again, every event arrives.
#[test]
fn a_tcp_receiver_that_never_reads_is_reported_as_stalled_and_loses_nothing() {
    let env = Env::new();
    let rx = TcpReceiver::start(STALL);
    env.write_config(&config(
        &env,
        &tcp_sink(rx.port, "queue = 20\nwrite-timeout = \"1s\"\n"),
    ));
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW1001");
    // Fill the receiver's window until the write stalls (bounded).
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&env, "PW3002", "tcp") == 0 {
        assert!(
            Instant::now() < deadline,
            "a write that cannot go on was never reported"
        );
        make_events(&env, 20);
    }
    let failed = env
        .events()
        .into_iter()
        .find(|e| e["id"] == "PW3002")
        .unwrap();
    assert!(
        failed["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("stalled"),
        "{failed}"
    );
    // Three times more events than the queue holds.
    make_events(&env, 60);

    // The receiver reads again: everything arrives.
    rx.set(READ);
    env.wait_event(Duration::from_secs(60), |e| {
        e["id"] == "PW3003" && e["fields"]["sink"] == "tcp"
    });
    make_events(&env, 2);
    let want = last_seq(&env);
    wait_received(&rx, want);
    let events = env.events();
    assert_eq!(count(&env, "PW3001", "tcp"), 0, "nothing dropped");
    let got = seqs(&rx.text());
    let missing: Vec<u64> = events
        .iter()
        .filter(|e: &&Value| e["fields"]["sink"] != "tcp")
        .filter_map(|e| e["seq"].as_u64())
        .filter(|s| *s <= want && !got.contains(s))
        .collect();
    assert!(missing.is_empty(), "never received: {missing:?}");
    // (Order is checked where one connection carries everything: here the
    // stalled connection's bytes and their resend on the next one are read
    // by two readers.)
}

/// A connection reset while frames wait unacknowledged in procward's send
/// queue, and nothing new to send: they go again at once on a new
/// connection, not with the next event (which may be hours away).
#[test]
fn a_reset_connection_s_unacknowledged_frames_go_again_without_a_new_event() {
    let env = Env::new();
    let rx = TcpReceiver::start(STALL);
    env.write_config(&config(&env, &tcp_sink(rx.port, "")));
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW1001");
    // More than the receiver's window (it does not read), less than
    // procward's send buffer: the last frames wait unacknowledged.
    make_events(&env, 100);
    std::thread::sleep(Duration::from_secs(1));
    let last = last_seq(&env);
    rx.set(RESET_HELD);
    // No event after this one: only a resend can bring it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seqs(&rx.text()).contains(&last) {
        assert!(
            Instant::now() < deadline,
            "event {last} not sent again after the reset: {:?}",
            seqs(&rx.text())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nothing for the sink came meanwhile (its own PW3002/PW3003 are never
    // sent to it).
    let later: Vec<Value> = env
        .events()
        .into_iter()
        .filter(|e| e["seq"].as_u64() > Some(last))
        .filter(|e| e["fields"]["sink"] != "tcp")
        .collect();
    assert!(later.is_empty(), "an event came meanwhile: {later:?}");
}

/// Sequence numbers in the order received.
fn seq_order(text: &str) -> Vec<u64> {
    text.split("seq=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect()
}

/// An SNMP trap sink whose manager is absent: one PW3002, no PW3003 until
/// a trap gets through without an ICMP error.
#[test]
fn an_absent_snmp_manager_is_one_outage() {
    let env = Env::new();
    let port = free_udp_port();
    env.write_config(&config(
        &env,
        &format!(
            "[[sink.snmp]]\nname = \"nms\"\naddress = \"127.0.0.1:{port}\"\nversion = \"2c\"\ncommunity = \"public-ish\"\nmin-severity = \"debug\"\nhold-down = \"500ms\"\n"
        ),
    ));
    let _d = one_outage(&env, "nms", Duration::from_secs(3));
    let rx = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    env.wait_event(Duration::from_secs(40), |e| e["id"] == "PW3003");
    let mut buf = [0u8; 4096];
    assert!(rx.recv(&mut buf).is_ok(), "no trap arrived");
    assert_eq!(count(&env, "PW3002", "nms"), 1);
    assert_eq!(count(&env, "PW3003", "nms"), 1);
}

/// A unix datagram sink whose socket does not exist yet: one PW3002; the
/// recovery is said once a receiver binds the path.
#[test]
fn a_missing_unix_socket_is_one_outage_until_a_receiver_binds_it() {
    let env = Env::new();
    let path = env.path("log.sock");
    env.write_config(&config(
        &env,
        &format!(
            "[[sink.syslog]]\nname = \"local\"\ntransport = \"unix\"\naddress = \"{}\"\nmin-severity = \"debug\"\n",
            path.display()
        ),
    ));
    let _d = one_outage(&env, "local", Duration::from_secs(2));
    let rx = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    env.wait_event(Duration::from_secs(40), |e| e["id"] == "PW3003");
    make_events(&env, 1);
    let want = last_seq(&env);
    let mut got = String::new();
    let deadline = Instant::now() + T;
    let mut buf = vec![0u8; 65536];
    while !got.contains("PW1005") && Instant::now() < deadline {
        if let Ok(n) = rx.recv(&mut buf) {
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
            got.push('\n');
        }
    }
    assert!(got.contains("PW1005"), "event {want} not received: {got}");
    assert_eq!(count(&env, "PW3002", "local"), 1);
    assert_eq!(count(&env, "PW3003", "local"), 1);
}

/// What a TCP sink had not delivered when procward was SIGKILLed is sent
/// after the restart, from its cursor in the state directory, oldest
/// first: nothing waited only in memory.
#[test]
fn a_tcp_sink_resumes_from_its_cursor_after_procward_is_killed() {
    let env = Env::new();
    // The receiver is away (nothing listens): nothing is sent, and
    // nothing is acknowledged by a kernel on its behalf.
    let port = free_tcp_port();
    env.write_config(&config(&env, &tcp_sink(port, "queue = 5\n")));
    let mut d = env.start();
    env.wait_event(T, |e| e["id"] == "PW1001");
    make_events(&env, 12);
    env.wait_event(T, |e| e["id"] == "PW3002" && e["fields"]["sink"] == "tcp");
    let before = last_seq(&env);
    kill(d.procward_pid(), libc::SIGKILL);
    d.stop();
    assert!(
        env.state().join("cursors/tcp").exists(),
        "the sink's cursor is kept in the state directory"
    );

    let _d = env.start();
    env.wait_event(T, |e| {
        e["id"] == "PW1001" && e["seq"].as_u64() > Some(before)
    });
    let rx = TcpReceiver::start_on(port, READ);
    let o = env.cli(&["test-event", "--count", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = env
        .events()
        .iter()
        .filter(|e| e["id"] == "PW1015")
        .filter_map(|e| e["seq"].as_u64())
        .max()
        .unwrap();
    wait_received(&rx, want);
    let got = seqs(&rx.text());
    let missing: Vec<u64> = env
        .events()
        .iter()
        .filter(|e| e["fields"]["sink"] != "tcp")
        .filter_map(|e| e["seq"].as_u64())
        .filter(|s| *s <= want && !got.contains(s))
        .collect();
    assert!(missing.is_empty(), "never received: {missing:?}");
    let first_run: Vec<u64> = seq_order(&rx.text())
        .into_iter()
        .filter(|s| *s <= before)
        .collect();
    assert!(
        first_run.windows(2).all(|w| w[0] <= w[1]),
        "the first run's events, oldest first: {first_run:?}"
    );
}

/// `procward sinks`: per sink its state, cursor, backlog and the age of
/// the oldest event not delivered, from the daemon, then from the state
/// directory once the daemon is down.
#[test]
fn sinks_shows_each_sinks_state_and_backlog_online_and_offline() {
    let env = Env::new();
    let away = free_tcp_port();
    let udp_rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp = udp_rx.local_addr().unwrap().port();
    let metrics = free_tcp_port();
    env.write_config(&format!(
        "{}{}[[sink.syslog]]\nname = \"udp\"\ntransport = \"udp\"\naddress = \"127.0.0.1:{udp}\"\n\
         [[target]]\nname = \"q\"\nmatch.comm = \"no-such-proc\"\n",
        env.daemon_section(&format!("metrics-listen = \"127.0.0.1:{metrics}\"")),
        tcp_sink(away, "queue = 3\n")
    ));
    let mut d = env.start();
    env.wait_event(T, |e| e["id"] == "PW3002" && e["fields"]["sink"] == "tcp");
    env.wait_event(T, |e| e["id"] == "PW2002");
    // Events that are all journaled when the command returns (nothing
    // follows them that could be counted on one side only).
    let o = env.cli(&["test-event", "--count", "6"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Every event not about the tcp sink itself is for it.
    let for_tcp = |env: &Env| {
        env.events()
            .iter()
            .filter(|e| e["fields"]["sink"] != "tcp")
            .count() as u64
    };
    let rows = |env: &Env| -> Vec<Value> {
        let o = env.cli(&["sinks", "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Vec<Value>>(&o.stdout).unwrap()
    };
    let online = rows(&env);
    let tcp = online.iter().find(|r| r["sink"] == "tcp").unwrap();
    let udp = online.iter().find(|r| r["sink"] == "udp").unwrap();
    let waiting = for_tcp(&env);
    assert_eq!(tcp["kind"], "syslog/tcp");
    assert_eq!(tcp["acknowledged"], true);
    assert_eq!(tcp["state"], "failing", "{tcp}");
    assert!(tcp["error"].as_str().unwrap().contains("refused"), "{tcp}");
    assert_eq!(tcp["cursor"], 0, "{tcp}");
    assert_eq!(tcp["backlog"].as_u64(), Some(waiting), "{tcp}");
    assert!(tcp["oldest_age_s"].is_u64(), "{tcp}");
    assert_eq!(udp["state"], "up", "{udp}");
    assert_eq!(udp["acknowledged"], false);
    assert_eq!(udp["backlog"], 0, "{udp}");
    // The same on the metrics endpoint (from the loop's own counts).
    let o = std::process::Command::new("curl")
        .args(["-sS", "-f", &format!("http://127.0.0.1:{metrics}/metrics")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    for line in [
        "procward_sink_up{sink=\"tcp\"} 0".to_string(),
        "procward_sink_up{sink=\"udp\"} 1".to_string(),
        format!("procward_sink_backlog{{sink=\"tcp\"}} {waiting}"),
        "procward_sink_backlog{sink=\"udp\"} 0".to_string(),
        "procward_sink_cursor{sink=\"tcp\"} 0".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert!(text.contains("procward_sink_oldest_undelivered_age_seconds{sink=\"tcp\"}"));

    d.stop();
    let offline = rows(&env);
    let tcp = offline.iter().find(|r| r["sink"] == "tcp").unwrap();
    let udp = offline.iter().find(|r| r["sink"] == "udp").unwrap();
    let waiting = for_tcp(&env);
    assert_eq!(tcp["state"], "daemon not running");
    assert_eq!(tcp["cursor"], 0, "{tcp}");
    assert_eq!(tcp["backlog"].as_u64(), Some(waiting), "{tcp}");
    assert!(
        udp["backlog"].is_null(),
        "best effort: not known offline: {udp}"
    );
    let table = env.cli(&["sinks"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("SINK"), "{text}");
    assert!(
        text.contains("syslog/tcp") && text.contains("daemon not running"),
        "{text}"
    );
}

/// A SIGTERM ends procward promptly even while an acknowledged sink's
/// receiver is away (its events wait in the journal, from its cursor):
/// the sink's retries must not keep the daemon from exiting.
#[test]
fn procward_exits_on_sigterm_while_an_acknowledged_sink_is_failing() {
    let env = Env::new();
    let port = free_tcp_port(); // nothing listens
    env.write_config(&config(&env, &tcp_sink(port, "")));
    let mut d = env.start();
    env.wait_event(T, |e| e["id"] == "PW3002" && e["fields"]["sink"] == "tcp");
    // Let the sink's backoff grow past a few seconds.
    std::thread::sleep(Duration::from_secs(4));
    let pid = d.procward_pid();
    kill(pid, libc::SIGTERM);
    let t0 = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
        && t0.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = t0.elapsed();
    d.stop();
    assert!(
        took < Duration::from_secs(8),
        "procward took {took:?} to exit (or never did)"
    );
    assert!(env.ids().iter().any(|i| i == "PW1002"));
}
