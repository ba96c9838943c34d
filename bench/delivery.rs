//! The delivery run: events per second from procward over RELP into a
//! local rsyslogd, beside rsyslog's own omrelp forwarding the same number
//! of messages to the same receiver at the same window size, and the
//! event-to-receiver latency at 100 events/s. The receiver writes each
//! message before it answers (Direct queues, omfile), as in tests/relp.rs.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Rsyslogd {
    child: Child,
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        super::signal(self.child.id(), libc::SIGTERM);
        let _ = self.child.wait();
    }
}

/// rsyslogd with `conf` in `dir`, ready once `port` accepts.
fn rsyslogd(dir: &Path, name: &str, conf: &str, port: u16) -> Rsyslogd {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join(format!("{name}.conf"));
    std::fs::write(
        &file,
        format!("global(workDirectory=\"{}\")\n{conf}", dir.display()),
    )
    .unwrap();
    let child = Command::new("rsyslogd")
        .args(["-n", "-i"])
        .arg(dir.join(format!("{name}.pid")))
        .arg("-f")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "rsyslogd {name} did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Rsyslogd { child }
}

/// The receiver: imrelp on `port`, each message a line of `out` with the
/// time it was received and the message's own timestamp.
fn receiver(dir: &Path, port: u16, out: &Path) -> Rsyslogd {
    let conf = format!(
        "main_queue(queue.type=\"Direct\")\nmodule(load=\"imrelp\")\n\
         template(name=\"t\" type=\"string\" string=\"%timegenerated:::date-unixtimestamp% %timegenerated:::date-rfc3339% %timereported:::date-rfc3339% %msgid%\\n\")\n\
         ruleset(name=\"in\" queue.type=\"Direct\") {{ action(type=\"omfile\" file=\"{}\" template=\"t\") }}\n\
         input(type=\"imrelp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"in\")\n",
        out.display()
    );
    rsyslogd(dir, "receiver", &conf, port)
}

/// Wait until `out` has `n` lines; the time it took from `t0`. Reads
/// only what the receiver added since the last look (a whole read of a
/// growing file every few ms would take the CPU the run measures).
fn wait_lines(out: &Path, n: usize, t0: Instant, limit: Duration) -> Option<f64> {
    use std::io::Read as _;
    let (mut seen, mut file, mut buf) = (0, None, vec![0u8; 1 << 16]);
    while seen < n {
        if t0.elapsed() > limit {
            return None;
        }
        if file.is_none() {
            file = std::fs::File::open(out).ok();
        }
        let got = match file.as_mut() {
            Some(f) => f.read(&mut buf).unwrap_or(0),
            None => 0,
        };
        seen += buf[..got].iter().filter(|c| **c == b'\n').count();
        if got == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Some(t0.elapsed().as_secs_f64())
}

struct Procward {
    reaper: Child,
    bin: PathBuf,
    cfg: PathBuf,
}

impl Drop for Procward {
    fn drop(&mut self) {
        super::signal(self.reaper.id(), libc::SIGTERM);
        let _ = self.reaper.wait();
    }
}

impl Procward {
    fn start(bin: &Path, dir: &Path, port: u16, window: usize) -> Procward {
        std::fs::create_dir_all(dir).unwrap();
        let cfg = dir.join("procward.toml");
        std::fs::write(
            &cfg,
            format!(
                "[daemon]\nstate-dir = \"{d}/state\"\ncontrol-socket = \"{d}/control.sock\"\n\
                 [[sink.syslog]]\nname = \"relp\"\ntransport = \"relp\"\naddress = \"127.0.0.1:{port}\"\n\
                 format = \"rfc5424\"\nmin-severity = \"debug\"\nwindow = {window}\n",
                d = dir.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
        let reaper = Command::new(bin)
            .args(["reaper", "--"])
            .arg(bin)
            .args(["run", "-c"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(dir.join("control.sock")).is_err() {
            assert!(Instant::now() < deadline, "procward did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Procward {
            reaper,
            bin: bin.to_path_buf(),
            cfg,
        }
    }

    fn test_events(&self, n: usize) {
        let o = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.cfg)
            .args(["test-event", "--count", &n.to_string()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// procward: `n` test events (in chunks), timed from the first request
/// to the receiver's last line. Events/s.
fn procward_rate(bin: &Path, dir: &Path, n: usize, window: usize) -> Option<f64> {
    let port = free_port();
    let out = dir.join("procward.out");
    let _rx = receiver(&dir.join("rx"), port, &out);
    let p = Procward::start(bin, &dir.join("pw"), port, window);
    // procward's own start-up message first.
    wait_lines(&out, 1, Instant::now(), Duration::from_secs(10))?;
    let t0 = Instant::now();
    let mut left = n;
    while left > 0 {
        let k = left.min(10_000);
        p.test_events(k);
        left -= k;
    }
    let secs = wait_lines(&out, n + 1, t0, Duration::from_secs(600))?;
    Some(n as f64 / secs)
}

/// rsyslog's omrelp: a sender rsyslogd takes `n` messages on imtcp and
/// forwards them over RELP with `window`; timed from the first message
/// written to the receiver's last line. Messages/s.
fn omrelp_rate(dir: &Path, n: usize, window: usize) -> Option<f64> {
    let (port, feed) = (free_port(), free_port());
    let out = dir.join("omrelp.out");
    let _rx = receiver(&dir.join("rx"), port, &out);
    let conf = format!(
        "module(load=\"omrelp\")\nmodule(load=\"imtcp\")\n\
         ruleset(name=\"fwd\") {{ action(type=\"omrelp\" target=\"127.0.0.1\" port=\"{port}\" windowSize=\"{window}\") }}\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{feed}\" ruleset=\"fwd\")\n"
    );
    let _tx = rsyslogd(&dir.join("tx"), "sender", &conf, feed);
    let mut batch = Vec::with_capacity(n * 120);
    let stamp = humantime::format_rfc3339_millis(SystemTime::now());
    for i in 0..n {
        let m = format!("<14>1 {stamp} bench omrelp - PW1015 - test message {i} of {n}");
        let _ = write!(batch, "{} {m}", m.len());
    }
    let t0 = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", feed)).ok()?;
    s.write_all(&batch).ok()?;
    drop(s);
    let secs = wait_lines(&out, n, t0, Duration::from_secs(600))?;
    Some(n as f64 / secs)
}

/// Latency at 100 events/s: one test event every 10 ms for `secs`
/// seconds; for each line, the receiver's receive time minus the event's
/// own time (ms). (p50, p99).
fn procward_latency(bin: &Path, dir: &Path, secs: u64) -> Option<(f64, f64)> {
    let port = free_port();
    let out = dir.join("latency.out");
    let _rx = receiver(&dir.join("rx"), port, &out);
    let p = Procward::start(bin, &dir.join("pw"), port, 128);
    wait_lines(&out, 1, Instant::now(), Duration::from_secs(10))?;
    let n = (secs * 100) as usize;
    let t0 = Instant::now();
    for i in 0..n {
        let due = t0 + Duration::from_millis(10 * i as u64);
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        p.test_events(1);
    }
    wait_lines(&out, n + 1, Instant::now(), Duration::from_secs(60))?;
    let text = std::fs::read_to_string(&out).ok()?;
    let mut ms: Vec<f64> = text
        .lines()
        .filter(|l| l.ends_with("PW1015"))
        .filter_map(|l| {
            let mut f = l.split(' ');
            let _unix = f.next()?;
            let got = chrono::DateTime::parse_from_rfc3339(f.next()?).ok()?;
            let sent = chrono::DateTime::parse_from_rfc3339(f.next()?).ok()?;
            Some((got - sent).num_microseconds()? as f64 / 1000.0)
        })
        .collect();
    if ms.is_empty() {
        return None;
    }
    Some((
        super::percentile(&mut ms, 50.0),
        super::percentile(&mut ms, 99.0),
    ))
}

/// The delivery section of BENCHMARKS.md.
pub fn table(bin: &Path, base: &Path, n: usize) -> String {
    let mut md = String::new();
    if super::which("rsyslogd").is_none() {
        let _ = writeln!(
            md,
            "## Delivery\n\nskipped: rsyslogd is not installed (rsyslog, rsyslog-relp).\n"
        );
        return md;
    }
    let _ = writeln!(md, "## Delivery over RELP\n");
    let _ = writeln!(
        md,
        "{n} events from procward (`procward test-event` in chunks of 10,000, through the journal and a \
         `transport = \"relp\"` sink) and {n} messages through rsyslog's omrelp (a second rsyslogd fed over \
         imtcp), each into the same local rsyslogd receiver (imrelp, Direct queues, omfile: a message is \
         written before it is acknowledged), at the same window; timed from the first event to the receiver's \
         last line. Latency: one test event every 10 ms for 10 s, the receiver's time of reception minus the \
         event's own timestamp (rsyslog stamps at µs, procward's events at ms).\n"
    );
    let _ = writeln!(
        md,
        "| window | procward events/s | omrelp messages/s | × omrelp |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---:|");
    for window in [128, 1024] {
        eprintln!("   delivery, window {window}");
        let dir = base.join(format!("delivery-{window}"));
        let pw = procward_rate(bin, &dir, n, window);
        let om = omrelp_rate(&dir, n, window);
        let ratio = match (pw, om) {
            (Some(p), Some(o)) if o > 0.0 => format!("{:.1}", p / o),
            _ => "–".into(),
        };
        let _ = writeln!(
            md,
            "| {window} | {} | {} | {ratio} |",
            super::fmt_opt(pw, 0),
            super::fmt_opt(om, 0)
        );
    }
    let lat = procward_latency(bin, &base.join("delivery-latency"), 10);
    let _ = writeln!(
        md,
        "\nEvent-to-receiver latency at 100 events/s (procward, window 128): p50 / p99 {} ms.\n",
        super::fmt_pair(lat)
    );
    md
}
