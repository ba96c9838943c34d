//! `[[target.check]]` with real processes: one that leaks memory, one
//! that spins a CPU, one that opens files and forks children, one that
//! stops answering on its port, an exec probe that hangs. What is
//! asserted is the behaviour (events, fields, state, actions), not a
//! timing.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A Perl program with one misbehaviour per mode (`leak`, `spin`,
/// `files`, `listen`, `calm`); SIGUSR1 ends it (and, for `listen`, closes
/// the port). Its children are reaped by the kernel (SIGCHLD ignored).
const APP: &str = r#"#!/usr/bin/perl
use strict;
use IO::Socket::INET;
my ($tok, $mode, $port) = @ARGV;
$SIG{CHLD} = 'IGNORE';
my $calm = 0;
$SIG{USR1} = sub { $calm = 1 };
my @keep;
if ($mode eq 'leak') {
    # 4 MiB every 50 ms, at most 1 GiB.
    for (1 .. 256) { last if $calm; push @keep, 'x' x (4 << 20); select(undef, undef, undef, 0.05) }
} elsif ($mode eq 'spin') {
    my $n = 0;
    while (!$calm) { $n++ }
} elsif ($mode eq 'files') {
    for (1 .. 64) { open(my $fh, '<', '/dev/null') or die; push @keep, $fh }
    for (1 .. 6) { my $p = fork; if (defined $p && $p == 0) { sleep 60; exit 0 } }
} elsif ($mode eq 'listen') {
    my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port", Listen => 5, ReuseAddr => 1) or die "listen: $!";
    push @keep, $s;
    sleep 1 while !$calm;
    @keep = ();
}
sleep 1 for 1 .. 600;
"#;

struct App {
    env: Env,
    tok: String,
    script: PathBuf,
}

impl App {
    fn new() -> App {
        let env = Env::new();
        // nobody (a restart.user below) must reach the scripts.
        std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let script = env.path("app.pl");
        write_exec(&script, APP);
        App {
            env,
            tok: token(),
            script,
        }
    }

    /// The program in `mode`, as the test's own child.
    fn spawn(&self, mode: &str, port: u16) -> Proc {
        let s = self.script.display().to_string();
        Proc::spawn(&["/usr/bin/perl", &s, &self.tok, mode, &port.to_string()])
    }

    /// A `[[target]]` matching the program; its restart script starts it
    /// again in `calm` mode (detached, killed when the Env goes).
    fn target(&self, name: &str, extra: &str) -> String {
        let restart = self.env.path(&format!("{name}.sh"));
        write_exec(
            &restart,
            &format!(
                "#!/bin/sh\nsetsid -f /bin/sh -c 'echo $$ >> {pids}; exec /usr/bin/perl {app} {tok} calm 0' </dev/null >/dev/null 2>&1\n",
                pids = self.env.path("started.pids").display(),
                app = self.script.display(),
                tok = self.tok
            ),
        );
        format!(
            "[[target]]\nname = \"{name}\"\nmatch.cmdline = 'app\\.pl {tok} '\nrestart.script = \"{}\"\nrestart.settle = \"3s\"\n{extra}\n",
            restart.display(),
            tok = self.tok
        )
    }

    fn config(&self, daemon_extra: &str, targets: &str) {
        self.env.write_config(&format!(
            "{}{targets}",
            self.env.daemon_section(daemon_extra)
        ));
    }

    fn check(&self, target: &str, name: &str) -> serde_json::Value {
        let st = self.env.target_status(target);
        st["checks"]
            .as_array()
            .unwrap_or_else(|| panic!("no checks in {st}"))
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no check {name} in {st}"))
    }
}

const LONG: Duration = Duration::from_secs(20);

#[test]
fn a_process_that_leaks_memory_is_restarted_and_the_failure_closes_after() {
    let app = App::new();
    app.config(
        "",
        &app.target(
            "leaky",
            "[[target.check]]\nname = \"leak\"\nkind = \"memory\"\nabove = \"64MiB\"\ninterval = \"200ms\"\nfor = 2\naction = \"restart\"\nstop-timeout = \"1s\"\n",
        ),
    );
    let leaky = app.spawn("leak", 0);
    let _d = app.env.start();
    app.env.wait_event(T, |e| e["id"] == "PW2001");
    let failed = app.env.wait_event(LONG, |e| e["id"] == "PW2042");
    assert_eq!(failed["pid"], leaky.pid);
    let f = &failed["fields"];
    assert_eq!(f["check"], "leak");
    assert_eq!(f["kind"], "memory");
    assert_eq!(f["limit"], "at most 64.0MiB");
    assert_eq!(f["held"], "2 checks in a row");
    assert_eq!(f["action"], "restart");
    let value = f["value"].as_str().unwrap();
    let mib: f64 = value.trim_end_matches("MiB").parse().unwrap_or(0.0);
    assert!(value.ends_with("MiB") && mib > 64.0, "{failed}");
    let text = failed["text"].as_str().unwrap();
    assert!(
        text.starts_with("target leaky: check leak (memory) failed for 2 checks in a row: "),
        "{text}"
    );
    let r = app.env.wait_event(T, |e| e["id"] == "PW2010");
    assert_eq!(r["fields"]["reason"], "check");
    assert!(
        !app.env.ids().contains(&"PW2003".to_string()),
        "a stop procward made is not a disappearance"
    );
    app.env.wait_event(T, |e| e["id"] == "PW2015");
    // The new (calm) process passes: the failure is closed.
    let passes = app.env.wait_event(T, |e| e["id"] == "PW2043");
    assert_ne!(passes["pid"], leaky.pid);
    assert_eq!(passes["fields"]["check"], "leak");
    let st = app.env.target_status("leaky");
    assert_eq!(st["state"], "up");
    assert_eq!(st["restarts_in_window"], 1);
}

#[test]
fn a_spinning_process_degrades_its_target_until_it_calms_down() {
    if !require("curl") {
        return;
    }
    let app = App::new();
    let port = free_tcp_port();
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let sink = format!(
        "[[sink.syslog]]\nname = \"ja\"\ntransport = \"udp\"\naddress = \"{}\"\nformat = \"rfc5424\"\nlanguage = \"ja\"\nmin-severity = \"warning\"\n\n",
        rx.local_addr().unwrap()
    );
    app.config(
        &format!("metrics-listen = \"127.0.0.1:{port}\""),
        &format!("{sink}{}", app.target(
            "busy",
            "[[target.check]]\nname = \"cpu\"\nkind = \"cpu\"\nabove = 50\ninterval = \"300ms\"\nfor = \"1s\"\n\n[[target.check]]\nname = \"threads\"\nkind = \"threads\"\nabove = 100\ninterval = \"300ms\"\n",
        )),
    );
    let busy = app.spawn("spin", 0);
    let _d = app.env.start();
    let failed = app.env.wait_event(LONG, |e| e["id"] == "PW2042");
    let f = &failed["fields"];
    assert_eq!((&f["check"], &f["kind"]), (&"cpu".into(), &"cpu".into()));
    assert_eq!(f["held"], "1s");
    assert_eq!(f["action"], "notify");
    assert_eq!(f["limit"], "at most 50.0%");
    let pct: f64 = f["value"]
        .as_str()
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!(pct > 50.0, "{failed}");
    // The same event in Japanese, as a manager receives it.
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + T;
    let mut ja = String::new();
    while !ja.contains("PW2042") && Instant::now() < deadline {
        if let Ok(n) = rx.recv(&mut buf) {
            ja = String::from_utf8_lossy(&buf[..n]).to_string();
        }
    }
    assert!(
        ja.contains("監視対象 busy: チェック cpu (CPU 使用率) が1秒間続けて失敗しました: "),
        "{ja}"
    );
    assert!(ja.contains("(期待値: 50.0% 以下) (処置: 通知のみ)"), "{ja}");
    // Degraded: running (for the OCF agent too), the check shown failed.
    let st = app.env.target_status("busy");
    assert_eq!(st["state"], "degraded", "{st}");
    let cpu = app.check("busy", "cpu");
    assert_eq!(cpu["state"], "failed", "{cpu}");
    assert!(cpu["since"].is_string(), "{cpu}");
    let threads = app.check("busy", "threads");
    assert_eq!(threads["state"], "ok", "{threads}");
    assert_eq!(threads["value"], "1", "{threads}");
    let ocf = app.env.cli(&["status", "--ocf", "busy"]);
    assert_eq!(ocf.status.code(), Some(0));
    let table = String::from_utf8_lossy(&app.env.cli(&["status"]).stdout).to_string();
    assert!(table.contains("degraded"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.trim_start().starts_with("check cpu") && l.contains("failed")),
        "{table}"
    );
    let metrics = Command::new("curl")
        .args(["-sS", "-f", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    for line in [
        "procward_check_failed{target=\"busy\",check=\"cpu\",kind=\"cpu\"} 1",
        "procward_check_failed{target=\"busy\",check=\"threads\",kind=\"threads\"} 0",
        "procward_check_value{target=\"busy\",check=\"threads\",kind=\"threads\"} 1.0",
        "procward_target_state{target=\"busy\",state=\"degraded\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    busy.signal(libc::SIGUSR1);
    let passes = app.env.wait_event(LONG, |e| e["id"] == "PW2043");
    assert_eq!(passes["fields"]["check"], "cpu");
    assert_eq!(app.env.target_status("busy")["state"], "up");
    assert!(
        !app.env.ids().contains(&"PW2010".to_string()),
        "notify only"
    );
}

#[test]
fn open_files_and_children_are_counted_and_an_exec_action_runs_as_the_user() {
    let app = App::new();
    let hook = app.env.path("hook.sh");
    write_exec(
        &hook,
        "#!/bin/sh\necho \"uid=$(id -u) check=$PROCWARD_CHECK kind=$PROCWARD_CHECK_KIND pid=$PROCWARD_PID\"\nenv | grep -c . | sed 's/^/vars=/'\n",
    );
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    app.config(
        "",
        &app.target(
            "files",
            &format!("restart.user = \"nobody\"\n\n[[target.check]]\nname = \"fds\"\nkind = \"fds\"\nabove = 40\ninterval = \"200ms\"\n\n[[target.check]]\nname = \"kids\"\nkind = \"children\"\nscope = \"tree\"\nabove = 3\ninterval = \"200ms\"\naction = \"exec\"\nexec = [\"{}\"]\n", hook.display()),
        ),
    );
    let files = app.spawn("files", 0);
    let kids_of = |pid: u32| -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let _d = app.env.start();
    let fds = app.env.wait_event(LONG, |e| {
        e["id"] == "PW2042" && e["fields"]["check"] == "fds"
    });
    let n: u32 = fds["fields"]["value"].as_str().unwrap().parse().unwrap();
    assert!(n > 64, "64 files and the standard ones: {fds}");
    let kids = app.env.wait_event(LONG, |e| {
        e["id"] == "PW2042" && e["fields"]["check"] == "kids"
    });
    assert_eq!(kids["fields"]["value"], "6", "{kids}");
    assert_eq!(kids["fields"]["action"], "exec");
    let log = app.env.state().join("script-logs/files.check-kids.log");
    let deadline = Instant::now() + T;
    let mut text = String::new();
    while Instant::now() < deadline && !text.contains("vars=") {
        std::thread::sleep(Duration::from_millis(50));
        text = std::fs::read_to_string(&log).unwrap_or_default();
    }
    assert!(
        text.contains(&format!(
            "uid=65534 check=kids kind=children pid={}",
            files.pid
        )),
        "{text}"
    );
    // A clean environment, not procward's (which has the test's).
    let vars: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("vars="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(vars < 15, "{text}");
    assert_eq!(app.env.target_status("files")["state"], "degraded");
    for k in kids_of(files.pid) {
        kill(k, libc::SIGKILL);
    }
}

#[test]
fn a_port_that_stops_answering_stops_the_target() {
    let app = App::new();
    let port = free_tcp_port();
    app.config(
        "",
        &app.target(
            "api",
            &format!("[[target.check]]\nname = \"port\"\nkind = \"tcp\"\naddress = \"127.0.0.1:{port}\"\ntimeout = \"300ms\"\ninterval = \"200ms\"\nfor = 2\naction = \"stop\"\nstop-timeout = \"1s\"\n"),
        ),
    );
    let api = app.spawn("listen", port);
    let _d = app.env.start();
    app.env.wait_event(T, |e| e["id"] == "PW2001");
    // Answering: the check passes.
    let deadline = Instant::now() + T;
    while app.check("api", "port")["state"] != "ok" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(app.check("api", "port")["state"], "ok");
    api.signal(libc::SIGUSR1);
    let failed = app.env.wait_event(LONG, |e| e["id"] == "PW2042");
    assert_eq!(failed["fields"]["kind"], "tcp");
    assert_eq!(failed["fields"]["limit"], "a pass");
    assert!(
        failed["fields"]["value"]
            .as_str()
            .unwrap()
            .contains(&format!("connect 127.0.0.1:{port}")),
        "{failed}"
    );
    let stopped = app.env.wait_event(T, |e| e["id"] == "PW1011");
    assert_eq!(stopped["fields"]["by"], "check port");
    let deadline = Instant::now() + T;
    while app.env.target_status("api")["state"] != "stopped" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(app.env.target_status("api")["state"], "stopped");
    assert!(
        !std::path::Path::new(&format!("/proc/{}/cmdline", api.pid)).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", api.pid))
                .unwrap_or_default()
                .contains(") Z")
    );
}

/// `sleep 100.TOKEN` processes alive now.
fn hung(tok: &str) -> Vec<u32> {
    let want = format!("sleep\0100.{tok}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want.as_bytes())
        })
        .collect()
}

#[test]
fn an_exec_probe_that_hangs_is_killed_with_its_group_and_delays_no_other_check() {
    let app = App::new();
    let probe = app.env.path("hang-probe.sh");
    write_exec(
        &probe,
        &format!(
            "#!/bin/sh\necho \"uid=$(id -u) ppid-comm=$(cat /proc/$PPID/comm)\"\nsleep 100.{} &\nwait\n",
            app.tok
        ),
    );
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
    app.config(
        "",
        &app.target(
            "hang",
            &format!("restart.user = \"nobody\"\n\n[[target.check]]\nname = \"probe\"\nkind = \"exec\"\ncommand = [\"{}\"]\ntimeout = \"300ms\"\ninterval = \"200ms\"\nfor = 2\n\n[[target.check]]\nname = \"fds\"\nkind = \"fds\"\nabove = 1000\ninterval = \"100ms\"\n", probe.display()),
        ),
    );
    let _target = app.spawn("calm", 0);
    let _d = app.env.start();
    let failed = app.env.wait_event(LONG, |e| e["id"] == "PW2042");
    assert_eq!(failed["fields"]["check"], "probe");
    assert!(
        failed["fields"]["value"]
            .as_str()
            .unwrap()
            .contains("no answer within 300ms"),
        "{failed}"
    );
    // The other check ran on its own pace meanwhile.
    let fds = app.check("hang", "fds");
    assert_eq!(fds["state"], "ok", "{fds}");
    // Each hung probe went with its group: never more than the one running.
    for _ in 0..20 {
        let n = hung(&app.tok).len();
        assert!(n <= 1, "{n} hung probes alive");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log =
        std::fs::read_to_string(app.env.state().join("script-logs/hang.check-probe.log")).unwrap();
    assert!(log.contains("uid=65534 ppid-comm=procward-spawn"), "{log}");
}
