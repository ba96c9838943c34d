//! Actions: restart scripts and retry-over commands. Each runs in its own
//! process group with stdin closed, a clean environment, its output
//! appended to a log in the state directory that is bounded while it runs
//! (scriptlog.rs), and is killed with its whole group at its timeout.

pub mod scriptlog;
pub mod spawner;

use crate::config::RunAs;
use crate::monitor::ScriptOutcome;
use crate::sys::process::{stop_with_grace, stop_with_grace_blocking, Whom};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// A log grows to this size, then is moved to `NAME.log.1`.
pub const LOG_LIMIT: u64 = 1 << 20;
/// How much of the output goes into the event.
const OUTPUT_TAIL: usize = 300;
/// After SIGTERM to the group at the timeout, SIGKILL follows after this.
const KILL_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Run {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub user: Option<RunAs>,
    pub timeout: Duration,
    pub log: PathBuf,
    pub header: String,
}

fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        crate::sys::fs::ensure_subdir(dir)?;
    }
    if std::fs::symlink_metadata(path)
        .map(|m| m.len() > LOG_LIMIT)
        .unwrap_or(false)
    {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        std::fs::rename(path, old)?;
    }
    crate::sys::fs::open_append(path)
}

/// The last bytes written since `offset`, on one line, cut at a character
/// boundary.
fn tail(path: &Path, offset: u64) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = crate::sys::fs::open_read(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let from = offset.max(len.saturating_sub(OUTPUT_TAIL as u64 * 4));
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let _ = f.take(OUTPUT_TAIL as u64 * 4).read_to_end(&mut buf);
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let joined = text
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    if joined.len() <= OUTPUT_TAIL {
        return joined;
    }
    let mut start = joined.len() - OUTPUT_TAIL;
    while !joined.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &joined[start..])
}

/// How a script ran, and whether its log could be written.
#[derive(Debug)]
pub struct Ran {
    pub outcome: ScriptOutcome,
    /// The log could not be opened: the script ran with its output
    /// discarded (restarts never depend on procward's own disk).
    pub log_error: Option<String>,
}

/// Run one script or command to its end (or its timeout), started by
/// `spawner` when there is one (the daemon's), else by this process.
/// `on_spawn` gets the script's pid as soon as it runs.
pub async fn run(r: Run, spawner: Option<&spawner::Spawner>, on_spawn: impl FnOnce(u32)) -> Ran {
    let mut log_error = None;
    let outcome = run_logged(r, spawner, on_spawn, &mut log_error).await;
    Ran { outcome, log_error }
}

/// A started script: this process's child, or the spawner's.
enum Running {
    Child(tokio::process::Child),
    Spawned {
        proc: Option<crate::model::ProcRef>,
        exit: tokio::sync::oneshot::Receiver<i32>,
        done: Option<Option<std::process::ExitStatus>>,
    },
}

impl Running {
    /// Wait for its end: `None` when its status cannot be known (the
    /// spawner went away first; then this waits for the process to go).
    async fn wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        use std::os::unix::process::ExitStatusExt;
        match self {
            Running::Child(c) => c.wait().await.map(Some),
            Running::Spawned { proc, exit, done } => {
                if let Some(d) = done {
                    return Ok(*d);
                }
                let status = match (&mut *exit).await {
                    Ok(raw) => Some(std::process::ExitStatus::from_raw(raw)),
                    Err(_) => {
                        if let Some(p) = proc {
                            crate::sys::pidfd::gone(*p, Duration::from_millis(200)).await;
                        }
                        None
                    }
                };
                *done = Some(status);
                Ok(status)
            }
        }
    }
}

async fn run_logged(
    r: Run,
    spawner: Option<&spawner::Spawner>,
    on_spawn: impl FnOnce(u32),
    log_error: &mut Option<String>,
) -> ScriptOutcome {
    let Some(program) = r.argv.first() else {
        return ScriptOutcome::SpawnFailed("empty command".into());
    };
    let opened = {
        let path = r.log.clone();
        let header = r.header.clone();
        match tokio::task::spawn_blocking(move || -> std::io::Result<(std::fs::File, u64)> {
            let mut f = open_log(&path)?;
            writeln!(f, "=== {header}")?;
            let off = f.metadata()?.len();
            Ok((f, off))
        })
        .await
        {
            Ok(Ok(x)) => Ok(x),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    // Without its log the script still runs, its output discarded.
    let (output, pipe) = match opened.and_then(|(log, offset)| LogPipe::new(&log, offset)) {
        Ok((output, pipe)) => (Some(output), Some(pipe)),
        Err(e) => {
            *log_error = Some(e);
            (None, None)
        }
    };
    let mut env: Vec<(String, String)> = vec![(
        "PATH".into(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    )];
    env.extend(r.env.iter().cloned());
    if let Some(u) = &r.user {
        env.push(("HOME".into(), home_of(&u.name)));
        env.push(("USER".into(), u.name.clone()));
        env.push(("LOGNAME".into(), u.name.clone()));
    }
    let user = r.user.as_ref().map(|u| (u.uid, u.gid, u.groups.clone()));
    let started = match spawner {
        Some(s) => {
            let req = spawner::Request {
                id: 0,
                argv: r.argv.clone(),
                env: env.clone(),
                user: user.clone(),
            };
            s.spawn(req, output.as_ref()).await
        }
        None => None,
    };
    let (pgid, mut child) = match started {
        Some(Ok(s)) => {
            drop(output); // the script's now: the pipe ends with its last writer
            let mut buf = Vec::with_capacity(512);
            let proc = crate::sys::proc::read_stat(s.pid, &mut buf)
                .ok()
                .flatten()
                .map(|st| st.proc_ref());
            let running = Running::Spawned {
                proc,
                exit: s.exit,
                done: None,
            };
            (s.pid, running)
        }
        Some(Err(e)) => return ScriptOutcome::SpawnFailed(e),
        None => {
            let mut cmd = tokio::process::Command::from(command(&r.argv, &env, user, output));
            match cmd.kill_on_drop(false).spawn() {
                Ok(c) => (c.id().unwrap_or(0), Running::Child(c)),
                Err(e) => return ScriptOutcome::SpawnFailed(format!("{program}: {e}")),
            }
        }
    };
    on_spawn(pgid);
    let mut copier = match pipe {
        Some(p) => Some(p.start(&r.log).await),
        None => None,
    };
    let status = match tokio::time::timeout(r.timeout, child.wait()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return ScriptOutcome::SpawnFailed(e.to_string()),
        Err(_) => return timed_out(pgid, &mut child, &r.log, &mut copier).await,
    };
    let output = output_since(&r.log, &mut copier).await;
    use std::os::unix::process::ExitStatusExt;
    match status.map(|s| (s.code(), s.signal())) {
        None => ScriptOutcome::Lost,
        Some((Some(code), _)) => ScriptOutcome::Exited { code, output },
        Some((None, Some(signal))) => ScriptOutcome::Signaled { signal, output },
        Some(_) => ScriptOutcome::Exited { code: -1, output },
    }
}

/// The pipe a script writes its output into, before its copier runs:
/// the read end, and where the log stood when the script's header was
/// written (its inode and size).
struct LogPipe {
    read: OwnedFd,
    inode: u64,
    offset: u64,
}

/// The copier of a running script's output (`procward script-log`), and
/// where the script's output starts in the log.
struct Copier {
    child: Option<tokio::process::Child>,
    /// The copying thread's end, when a thread copies instead.
    thread: Option<tokio::sync::oneshot::Receiver<()>>,
    inode: u64,
    offset: u64,
}

impl LogPipe {
    /// A pipe for the script's output (its stdout and stderr), with the
    /// log as it is now.
    fn new(log: &std::fs::File, offset: u64) -> Result<((OwnedFd, OwnedFd), LogPipe), String> {
        use std::os::unix::fs::MetadataExt;
        let inode = log.metadata().map_err(|e| e.to_string())?.ino();
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| format!("pipe: {e}"))?;
        let err = write.try_clone().map_err(|e| e.to_string())?;
        Ok((
            (write, err),
            LogPipe {
                read,
                inode,
                offset,
            },
        ))
    }

    /// Start the copier (`procward script-log LOG`, a process of its own:
    /// see scriptlog.rs); when it cannot start, a thread copies instead.
    async fn start(self, log: &Path) -> Copier {
        let mut cmd = tokio::process::Command::new("/proc/self/exe");
        cmd.arg("script-log")
            .arg(log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        // In the library's own unit tests this executable is the test
        // harness, not procward: they copy on a thread. The fork waits for
        // the child's exec, which closes its copies of procward's
        // descriptors (a pidfd per watched process: milliseconds at 10,000
        // targets): not on an async worker.
        let child = match self.read.try_clone() {
            Ok(r) if !cfg!(test) => {
                cmd.stdin(Stdio::from(r));
                tokio::task::spawn_blocking(move || cmd.spawn().ok())
                    .await
                    .ok()
                    .flatten()
            }
            _ => None,
        };
        let mut thread = None;
        if child.is_none() {
            let (read, log) = (self.read, log.to_path_buf());
            let (done, ended) = tokio::sync::oneshot::channel();
            let copy = move || {
                scriptlog::copy(std::fs::File::from(read), &log, LOG_LIMIT);
                let _ = done.send(());
            };
            let spawned = std::thread::Builder::new()
                .name("procward-log".into())
                .spawn(copy);
            thread = spawned.is_ok().then_some(ended);
        }
        Copier {
            child,
            thread,
            inode: self.inode,
            offset: self.offset,
        }
    }
}

/// The timeout: SIGTERM to the group, SIGKILL after KILL_GRACE.
async fn timed_out(
    pgid: u32,
    child: &mut Running,
    log: &Path,
    copier: &mut Option<Copier>,
) -> ScriptOutcome {
    let group = Whom::Group(pgid);
    let leader_ended = async {
        let _ = child.wait().await;
    };
    if stop_with_grace(move |s| group.send(s), KILL_GRACE, leader_ended).await {
        // The leader is gone; its group may not be.
        group.send(rustix::process::Signal::KILL);
    }
    let _ = child.wait().await;
    ScriptOutcome::TimedOut {
        output: output_since(log, copier).await,
    }
}

/// The command of a script or retry-over command, whoever starts it (the
/// spawner, or procward itself): `argv` (not empty), only `env` in its
/// environment, `/` as its directory, stdin closed, its own process group,
/// stdout and stderr to `output` (or discarded), as `user` (uid, gid,
/// groups) when given.
pub(crate) fn command(
    argv: &[String],
    env: &[(String, String)],
    user: Option<(u32, u32, Vec<u32>)>,
    output: Option<(OwnedFd, OwnedFd)>,
) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let (stdout, stderr) = match output {
        Some((o, e)) => (Stdio::from(o), Stdio::from(e)),
        None => (Stdio::null(), Stdio::null()),
    };
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    if let Some((uid, gid, groups)) = user {
        crate::sys::process::run_as(&mut cmd, uid, gid, groups);
    }
    cmd
}

/// The end of what a script wrote, for its event, once its copier has
/// copied it: the copier ends with the pipe (waited for up to 200 ms: an
/// application the script started may hold the pipe, and the copier then
/// goes on, reaped whenever it ends). From where the script's output
/// starts, or from the top of a log the copier has moved meanwhile.
async fn output_since(log: &Path, copier: &mut Option<Copier>) -> String {
    let Some(c) = copier else {
        return String::new();
    };
    let copied = Duration::from_millis(200);
    if let Some(mut child) = c.child.take() {
        if tokio::time::timeout(copied, child.wait()).await.is_err() {
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
    }
    if let Some(ended) = c.thread.take() {
        let _ = tokio::time::timeout(copied, ended).await;
    }
    let (p, inode, offset) = (log.to_path_buf(), c.inode, c.offset);
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::MetadataExt;
        let same = std::fs::symlink_metadata(&p).is_ok_and(|m| m.ino() == inode);
        tail(&p, if same { offset } else { 0 })
    })
    .await
    .unwrap_or_default()
}

/// Stop a child process by pid: SIGTERM, wait up to `grace`, then SIGKILL.
/// Returns whether it ended by itself. (Used by the demo, the benchmark and
/// the tests.)
pub fn stop_child(c: &mut std::process::Child, grace: Duration) -> bool {
    let me = Whom::Process(c.id());
    let ended = stop_with_grace_blocking(
        |s| me.send(s),
        grace,
        || matches!(c.try_wait(), Ok(Some(_))),
    );
    if !ended {
        let _ = c.wait();
    }
    ended
}

/// SIGTERM to a stalled process (or its group), SIGKILL after `timeout`
/// if it is still there. Its exit is seen by its pidfd watch.
pub fn stop_process(p: crate::model::ProcRef, group: bool, timeout: Duration) {
    let Some(pid) = rustix::process::Pid::from_raw(p.pid as i32) else {
        return;
    };
    let whom = match group
        .then(|| rustix::process::getpgid(Some(pid)).ok())
        .flatten()
    {
        Some(g) => Whom::Group(g.as_raw_nonzero().get() as u32),
        None => Whom::Process(p.pid),
    };
    // SIGKILL only if the very process (pid and start time) outlives it.
    let stopping = stop_with_grace(
        move |s| whom.send(s),
        timeout,
        crate::sys::pidfd::gone(p, Duration::from_millis(200)),
    );
    tokio::spawn(stopping);
}

/// End a restart script being stopped (`procward stop`) with its whole
/// process group (its pgid is its pid): SIGTERM now, SIGKILL to what is
/// left of the group after `timeout`, whether or not the script itself
/// is still there (a child of it may be about to start the application).
pub fn stop_script_group(p: crate::model::ProcRef, timeout: Duration) {
    let mut buf = Vec::with_capacity(512);
    if crate::sys::proc::read_pinned(p, &mut buf).is_none() {
        // Gone already: its group id may be anyone's by now.
        return;
    }
    // SIGKILL to what is left of the group in any case.
    let group = Whom::Group(p.pid);
    tokio::spawn(stop_with_grace(
        move |s| group.send(s),
        timeout,
        std::future::pending(),
    ));
}

/// What a restart script or retry-over command is told about the target
/// (its `PROCWARD_*` environment) and where its output goes.
pub struct Context<'a> {
    pub spec: &'a crate::config::TargetSpec,
    pub state_dir: &'a Path,
    /// The journal sequence number of the event that started it.
    pub event_seq: u64,
    /// How the process that failed ended (PROCWARD_EXIT_*; empty when
    /// unknown).
    pub exit: Option<crate::model::ExitStatus>,
}

impl Context<'_> {
    fn env(&self, attempt: u32, reason: &str, pid: Option<u32>) -> Vec<(String, String)> {
        vec![
            ("PROCWARD_TARGET".into(), self.spec.name.clone()),
            (
                "PROCWARD_PID".into(),
                pid.map(|p| p.to_string()).unwrap_or_default(),
            ),
            ("PROCWARD_REASON".into(), reason.into()),
            ("PROCWARD_ATTEMPT".into(), attempt.to_string()),
            ("PROCWARD_MAX".into(), self.spec.retry.max.to_string()),
            ("PROCWARD_EVENT_ID".into(), self.event_seq.to_string()),
        ]
        .into_iter()
        .chain(crate::model::ExitStatus::env(self.exit.as_ref()))
        .collect()
    }

    fn log(&self, suffix: &str) -> PathBuf {
        self.state_dir
            .join("script-logs")
            .join(format!("{}{suffix}.log", self.spec.name))
    }

    /// The restart script's run for `attempt`, if the target has one.
    pub fn restart(
        &self,
        attempt: u32,
        reason: crate::model::Reason,
        pid: Option<u32>,
    ) -> Option<Run> {
        let script = self.spec.restart.script.as_ref()?;
        let mut argv = vec![script.to_string_lossy().into_owned()];
        argv.extend(self.spec.restart.args.iter().cloned());
        Some(Run {
            argv,
            env: self.env(attempt, reason.as_str(), pid),
            user: self.spec.restart.user.clone(),
            timeout: self.spec.restart.timeout,
            log: self.log(""),
            header: format!(
                "{} restart attempt {attempt} ({})",
                crate::model::event::rfc3339_ms(crate::model::event::now_ms()),
                reason.as_str()
            ),
        })
    }

    /// The retry-over command's run, if the target has one; `attempts`
    /// are the restarts in the window.
    pub fn retry_over(&self, attempts: u32) -> Option<Run> {
        let f = self.spec.failover.as_ref()?;
        Some(Run {
            argv: f.command.clone(),
            env: self.env(attempts, "retry-over", None),
            user: None,
            timeout: f.timeout,
            log: self.log(".retry-over"),
            header: format!(
                "{} retry-over command",
                crate::model::event::rfc3339_ms(crate::model::event::now_ms())
            ),
        })
    }
}

fn home_of(user: &str) -> String {
    nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .map(|u| u.dir.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_sh(script: &str, timeout: Duration, dir: &Path) -> ScriptOutcome {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run(
            Run {
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                env: vec![("PROCWARD_TARGET".into(), "t".into())],
                user: None,
                timeout,
                log: dir.join("logs/t.log"),
                header: "test".into(),
            },
            None,
            |_| {},
        ))
        .outcome
    }

    #[test]
    fn exit_code_output_and_environment() {
        let d = tempfile::tempdir().unwrap();
        let o = run_sh(
            "echo target=$PROCWARD_TARGET; echo oops >&2; exit 3",
            Duration::from_secs(5),
            d.path(),
        );
        assert_eq!(
            o,
            ScriptOutcome::Exited {
                code: 3,
                output: "target=t | oops".into()
            }
        );
        let log = std::fs::read_to_string(d.path().join("logs/t.log")).unwrap();
        assert!(log.contains("=== test\ntarget=t\noops\n"), "{log}");
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let d = tempfile::tempdir().unwrap();
        let pidfile = d.path().join("child.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let t0 = std::time::Instant::now();
        let o = run_sh(&script, Duration::from_millis(300), d.path());
        assert!(matches!(o, ScriptOutcome::TimedOut { .. }), "{o:?}");
        assert!(t0.elapsed() < Duration::from_secs(5));
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background sleep of the script's group is gone too (or a
        // zombie of the killed shell, reaped by init).
        let mut buf = Vec::new();
        let mut gone = false;
        for _ in 0..50 {
            match crate::sys::proc::read_stat(pid, &mut buf).unwrap() {
                None => gone = true,
                Some(s) if s.is_dead() => gone = true,
                Some(_) => std::thread::sleep(Duration::from_millis(20)),
            }
            if gone {
                break;
            }
        }
        assert!(gone, "child {pid} of the timed-out script survived");
    }

    #[test]
    fn without_its_log_the_script_still_runs() {
        let d = tempfile::tempdir().unwrap();
        // The log's directory cannot be made: a file is in the way.
        std::fs::write(d.path().join("logs"), "").unwrap();
        let marker = d.path().join("ran");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut spawned = 0;
        let r = rt.block_on(run(
            Run {
                argv: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    format!("echo out; touch {}", marker.display()),
                ],
                env: vec![],
                user: None,
                timeout: Duration::from_secs(5),
                log: d.path().join("logs/t.log"),
                header: "x".into(),
            },
            None,
            |pid| spawned = pid,
        ));
        assert_eq!(
            r.outcome,
            ScriptOutcome::Exited {
                code: 0,
                output: String::new()
            }
        );
        assert!(r.log_error.is_some());
        assert!(marker.exists());
        assert!(spawned > 0);
    }

    #[test]
    fn missing_program_is_a_spawn_failure() {
        let d = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let o = rt
            .block_on(run(
                Run {
                    argv: vec!["/nonexistent/script".into()],
                    env: vec![],
                    user: None,
                    timeout: Duration::from_secs(1),
                    log: d.path().join("l.log"),
                    header: "x".into(),
                },
                None,
                |_| {},
            ))
            .outcome;
        assert!(
            matches!(o, ScriptOutcome::SpawnFailed(ref e) if e.contains("/nonexistent/script")),
            "{o:?}"
        );
    }
}
