//! Test support: a temporary procward installation (config, scripts, state
//! dir) and a real daemon process, stopped by pid when dropped.
// Test harness, not procward: raw libc calls set up the conditions tested.
#![allow(unsafe_code)]
#![allow(dead_code)]

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_procward");

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A token unique to this test run, for process command lines.
pub fn token() -> String {
    format!(
        "{}{:03}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
}

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Drop for Env {
    /// Kill, by pid, every process the restart scripts started; then fail
    /// the test if any event it journaled lacks its text (every event
    /// must carry the fields its message needs).
    fn drop(&mut self) {
        if let Ok(text) = std::fs::read_to_string(self.path("started.pids")) {
            for pid in text.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                kill(pid, libc::SIGKILL);
            }
        }
        if !std::thread::panicking() {
            let broken = self.untexted();
            assert!(broken.is_empty(), "events without their text: {broken:?}");
        }
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("pw-test-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        Env { dir }
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    pub fn state(&self) -> PathBuf {
        self.path("state")
    }
    pub fn sock(&self) -> PathBuf {
        self.path("control.sock")
    }
    pub fn cfg(&self) -> PathBuf {
        self.path("procward.toml")
    }

    /// The `[daemon]` section every test uses, plus `extra` lines.
    pub fn daemon_section(&self, extra: &str) -> String {
        format!(
            "[daemon]\ninterval = \"200ms\"\nstate-dir = \"{}\"\ncontrol-socket = \"{}\"\nzombie-grace = \"300ms\"\n{extra}\n",
            self.state().display(),
            self.sock().display()
        )
    }

    pub fn write_config(&self, body: &str) {
        std::fs::write(self.cfg(), body).unwrap();
        std::fs::set_permissions(self.cfg(), std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// A restart script that records its environment in `NAME.env` (one
    /// file per attempt: NAME.env.N) and starts `sleep SECS.TOKEN`
    /// detached, reaped by the test reaper above procward.
    /// The shell line a restart script starts the application with: a
    /// detached `sleep 1000.TOKEN` whose pid goes to `started.pids` (killed
    /// when the Env is dropped).
    pub fn start_app_line(&self, tok: &str) -> String {
        format!(
            "setsid -f /bin/sh -c 'echo $$ >> {}; exec sleep 1000.{tok}' </dev/null >/dev/null 2>&1\n",
            self.path("started.pids").display()
        )
    }

    pub fn restart_script(&self, name: &str, tok: &str) -> PathBuf {
        let p = self.path(&format!("{name}.sh"));
        let env_file = self.path(&format!("{name}.env"));
        write_exec(
            &p,
            &format!(
                "#!/bin/sh\ndate +%s%N > {e}.start.$PROCWARD_ATTEMPT\nenv | grep ^PROCWARD_ | sort > {e}.$PROCWARD_ATTEMPT\n{start}echo restarted\n",
                e = env_file.display(),
                start = self.start_app_line(tok)
            ),
        );
        p
    }

    pub fn target_section(&self, name: &str, tok: &str, extra: &str) -> String {
        let script = self.restart_script(name, tok);
        format!(
            "[[target]]\nname = \"{name}\"\nmatch.cmdline = '^sleep 1000\\.{tok}$'\nrestart.script = \"{}\"\nrestart.settle = \"3s\"\n{extra}\n",
            script.display()
        )
    }

    /// A `[[target]]` NAME (matching `sleep 1000.TOKEN`, retry.max = 1)
    /// whose restart script prints `printf_format` and exits 7: hostile
    /// output in a PW2012 event.
    pub fn failing_target(&self, name: &str, tok: &str, printf_format: &str) -> String {
        let script = self.path(&format!("{name}.sh"));
        write_exec(
            &script,
            &format!("#!/bin/sh\nprintf '{printf_format}'\nexit 7\n"),
        );
        format!(
            "[[target]]\nname = \"{name}\"\nmatch.cmdline = '^sleep 1000\\.{tok}$'\nrestart.script = \"{}\"\nretry.max = 1\n",
            script.display()
        )
    }

    pub fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.state().join("events.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Journaled events (all generations) whose text could not be
    /// rendered.
    pub fn untexted(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir(self.state()) else {
            return out;
        };
        for e in dir.flatten() {
            if !e.file_name().to_string_lossy().starts_with("events.jsonl") {
                continue;
            }
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            out.extend(
                text.lines()
                    .filter(|l| l.contains("text unavailable"))
                    .map(str::to_string),
            );
        }
        out
    }

    pub fn ids(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn ids_for(&self, target: &str) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["target"] == target)
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Wait until an event matching `pred` is in the journal.
    pub fn wait_event(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            if Instant::now() > deadline {
                panic!(
                    "no matching event within {timeout:?}; journal ids: {:?}",
                    self.ids()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wait for the n-th (1-based) event with `id` for `target`.
    pub fn wait_nth(&self, id: &str, target: &str, n: usize, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let hits: Vec<Value> = self
                .events()
                .into_iter()
                .filter(|e| e["id"] == id && e["target"] == target)
                .collect();
            if hits.len() >= n {
                return hits[n - 1].clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "no {n}. {id} for {target} within {timeout:?}; journal ids: {:?}",
                    self.ids()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("-c")
            .arg(self.cfg())
            .output()
            .unwrap()
    }

    /// `status --json`: exit 0 when every target is up, 4 when one is not.
    pub fn status(&self) -> Vec<Value> {
        let o = self.cli(&["status", "--json"]);
        assert!(
            matches!(o.status.code(), Some(0 | 4)),
            "status failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap()
    }

    pub fn target_status(&self, name: &str) -> Value {
        self.status()
            .into_iter()
            .find(|t| t["target"] == name)
            .expect("target in status")
    }

    /// Start procward (under the reaper) on this environment.
    pub fn start(&self) -> Daemon {
        self.start_with(&[])
    }

    pub fn start_with(&self, env: &[(&str, &str)]) -> Daemon {
        let log = std::fs::File::create(self.path("daemon.log")).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["reaper", "--", BIN, "run", "-c"])
            .arg(self.cfg())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let d = Daemon {
            child: Some(child),
            log: self.path("daemon.log"),
        };
        // Ready when the control socket answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(self.sock()).is_ok() {
                return d;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "procward did not start: {}",
            std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
        );
    }
}

pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    /// The pid of the reaper that runs procward.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The pid of procward itself (the reaper's child).
    pub fn procward_pid(&self) -> u32 {
        let r = self.pid();
        let text = std::fs::read_to_string(format!("/proc/{r}/task/{r}/children")).unwrap();
        text.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// The pid of procward's spawner (its child named `procward-spawn`,
    /// forked by whichever of procward's threads started it). It names
    /// itself once it runs, which under load may come after procward's
    /// first events: looked for up to `T`.
    pub fn spawner_pid(&self) -> Option<u32> {
        let deadline = Instant::now() + T;
        loop {
            let found = self.spawner_now();
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn spawner_now(&self) -> Option<u32> {
        let p = self.procward_pid();
        let tasks = std::fs::read_dir(format!("/proc/{p}/task")).ok()?;
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|text| {
                text.split_whitespace()
                    .filter_map(|c| c.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .find(|c| {
                std::fs::read_to_string(format!("/proc/{c}/comm"))
                    .is_ok_and(|n| n.trim() == "procward-spawn")
            })
    }

    /// SIGTERM, and wait for the exit (bounded).
    /// SIGTERM (through the reaper), SIGKILL after 10 s. procward must
    /// have ended by then: one still running is killed by pid (nothing is
    /// left behind) and the test fails, unless it is failing already.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let reaper = c.id();
        let procward: Option<u32> =
            std::fs::read_to_string(format!("/proc/{reaper}/task/{reaper}/children"))
                .ok()
                .and_then(|t| t.split_whitespace().next()?.parse().ok());
        let ended = stop_child(&mut c, Duration::from_secs(10));
        let alive = |p: u32| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .is_ok_and(|s| s.contains("procward") && !s.contains(") Z "))
        };
        if let Some(p) = procward.filter(|p| alive(*p)) {
            kill(p, libc::SIGKILL);
            if !std::thread::panicking() {
                panic!("procward {p} was still running 10 s after SIGTERM (ended: {ended})");
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A process the test starts and reaps itself (so a kill makes it
/// disappear, not linger as a zombie). Killed by pid when dropped.
pub struct Proc {
    pub pid: u32,
    reaper: Option<std::thread::JoinHandle<()>>,
}

impl Proc {
    pub fn spawn(argv: &[&str]) -> Proc {
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        Proc::adopt(cmd.spawn().unwrap())
    }

    /// A child the caller spawned (in a process group of its own, for
    /// the drop to kill).
    pub fn adopt(mut child: std::process::Child) -> Proc {
        let pid = child.id();
        let reaper = std::thread::spawn(move || {
            let _ = child.wait();
        });
        Proc {
            pid,
            reaper: Some(reaper),
        }
    }

    /// `sleep 1000.TOKEN`, matched by the test targets.
    pub fn sleeper(tok: &str) -> Proc {
        Proc::spawn(&["sleep", &format!("1000.{tok}")])
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid as i32, sig);
        }
    }
}

impl Drop for Proc {
    /// Kills its process group (its own, from `spawn`): what a shell
    /// started goes with it.
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
        kill_group(self.pid);
        if let Some(r) = self.reaper.take() {
            let _ = r.join();
        }
    }
}

fn kill_group(pgid: u32) {
    if pgid > 1 {
        unsafe {
            libc::kill(-(pgid as i32), libc::SIGKILL);
        }
    }
}

pub fn kill(pid: u32, sig: i32) {
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// The pids of `sleep 1000.TOKEN` processes that are alive.
pub fn sleepers(tok: &str) -> Vec<u32> {
    let want = format!("sleep\01000.{tok}\0");
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() {
            if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) {
                if c == want.as_bytes() {
                    v.push(pid);
                }
            }
        }
    }
    v
}

/// Whether a required external program is here. Under CI a missing one is
/// a failure; elsewhere the test says so and is skipped.
pub fn require(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
                .any(|d| d.join(program).is_file())
        })
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
            panic!("{program} is required under CI=true (scripts/test.sh installs it)");
        }
        eprintln!("SKIPPED: {program} is not installed; run scripts/test.sh to install it");
    }
    found
}

pub const T: Duration = Duration::from_secs(10);

pub use procward::action::stop_child;

/// A loopback TCP port nobody listens on (now).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback UDP port nobody listens on (now).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The lines of a file (none while it does not exist).
pub fn file_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Wait (up to `T`) for a line of `path` that contains `needle`.
pub fn wait_line(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + T;
    loop {
        if let Some(l) = file_lines(path).into_iter().find(|l| l.contains(needle)) {
            return l;
        }
        if Instant::now() > deadline {
            panic!(
                "{}: no line with `{needle}`: {:?}",
                path.display(),
                file_lines(path)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
