//! The daemon: wires config, monitor core, probes, actions, notifier and
//! control socket on tokio. All decisions are the core's; this file only
//! turns its actions into I/O and I/O back into its inputs.

use crate::action;
use crate::catalog::Catalog;
use crate::config::{self, Config};
use crate::control::{self, Request, Response};
use crate::event::{msg, now_ms, EventSpec};
use crate::monitor::{Action, Command, Input, Monitor, ProcRef, Reason};
use crate::notify::{journal, queue, render::Renderer, snmp, syslog, Notifier};
use crate::probe::{self, procfs, Pidfd};
use anyhow::Context;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// A validated configuration with its renderer, or every error found.
pub type Loaded = Result<(Config, Arc<Renderer>), Vec<String>>;

/// Validate everything a daemon needs: configuration, catalog, templates.
pub fn load_all(path: &Path) -> Loaded {
    let cfg =
        config::load(path).map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let catalog = Catalog::load(cfg.daemon.catalog_dir.as_deref())?;
    let renderer = Renderer::new(
        Arc::new(catalog),
        cfg.daemon.templates_dir.as_deref(),
        &cfg.daemon.hostname,
    )?;
    Ok((cfg, Arc::new(renderer)))
}

pub struct Options {
    pub config: PathBuf,
    /// Print each event on stderr (the foreground).
    pub console: bool,
    /// Handle SIGTERM/SIGINT/SIGHUP (off when embedded, as in the demo).
    pub signals: bool,
}

enum Msg {
    Input(Input),
    Poll(String, ProcRef),
    Scanned(ScanResult),
    Control(Request, String, oneshot::Sender<Response>),
    Reloaded(Box<Loaded>, String, oneshot::Sender<Response>),
    Denied(u32, String),
    /// How a write of one of procward's own files went.
    Wrote(String, PathBuf, Result<(), String>),
    Sink(EventSpec),
}

struct ScanResult {
    found: HashMap<String, Vec<ProcRef>>,
    children: Vec<(String, u32, u32)>,
    polled_dead: Vec<(String, ProcRef)>,
}

/// What the control connections share with the loop.
struct Shared {
    allow: RwLock<config::Allow>,
    state_dir: PathBuf,
    bus: tokio::sync::broadcast::Sender<Arc<crate::event::Event>>,
}

pub struct Handle {
    stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Handle {
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await?
    }
}

struct Daemon {
    cfg: Config,
    renderer: Arc<Renderer>,
    monitor: Monitor,
    notifier: Notifier,
    sinks: Vec<queue::SinkHandle>,
    engine: Option<Arc<snmp::Engine>>,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Msg>,
    console: bool,
    seq: journal::Seq,
    last_seq: HashMap<String, u64>,
    watchers: HashMap<String, Vec<(ProcRef, tokio::task::AbortHandle)>>,
    polled: HashSet<(String, ProcRef)>,
    timers: BTreeSet<(Instant, String, u64)>,
    scanning: bool,
    scan_soon: bool,
    probes_due: HashMap<String, Instant>,
    probing: HashSet<String>,
    last_scan: Instant,
    dirty: bool,
    /// Refused control-socket users: one PW1008 per interval each.
    denials: HashMap<u32, Denial>,
    /// Failed writes of procward's own files (PW1012/PW1013).
    outages: crate::notify::Outages,
    _lock: std::fs::File,
}

struct Denial {
    user: String,
    /// When the last PW1008 for this uid was said.
    since: Instant,
    /// Connections refused since then, not yet reported.
    refused: u64,
}

fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        if let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(name) {
            let _ = sock.send_to_addr(state.as_bytes(), &addr);
        }
    } else {
        let _ = sock.send_to(state.as_bytes(), &path);
    }
}

fn lock_state_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    crate::state::ensure_dir(dir)
        .with_context(|| format!("cannot create state directory {}", dir.display()))?;
    let f = crate::state::open_append(&dir.join("procward.lock"))
        .with_context(|| format!("cannot open {}", dir.join("procward.lock").display()))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|_| {
        anyhow::anyhow!(
            "another procward is running with state directory {}",
            dir.display()
        )
    })?;
    Ok(f)
}

fn bind_control(path: &Path, group: Option<u32>) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // Whoever can write the socket's directory can put another socket
        // in its place and answer procward's clients.
        crate::trust::directory(dir).map_err(|e| anyhow::anyhow!("control socket: {e}"))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "control socket {} is in use: is procward already running?",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
        }
        Ok(md) => anyhow::bail!(
            "refusing to replace {} with the control socket: it is a {}, not a stale socket; remove it or set daemon.control-socket",
            path.display(),
            file_kind(&md)
        ),
        Err(_) => {}
    }
    let l = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind {}", path.display()))?;
    set_socket_group(path, group)?;
    Ok(l)
}

/// Mode 0660, group `group` (root's when None).
fn set_socket_group(path: &Path, group: Option<u32>) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    std::os::unix::fs::lchown(path, None, Some(group.unwrap_or(0)))
        .with_context(|| format!("cannot give {} to its group", path.display()))?;
    Ok(())
}

fn file_kind(md: &std::fs::Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_symlink() {
        "symbolic link"
    } else if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "regular file"
    } else if t.is_fifo() {
        "FIFO"
    } else {
        "special file"
    }
}

/// One pidfd per tracked process: raise the soft limit on open files to
/// the hard limit.
fn raise_nofile_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
}

/// Start the daemon on the current tokio runtime.
pub async fn start(opts: Options) -> anyhow::Result<Handle> {
    raise_nofile_limit();
    let path = opts.config.clone();
    let (cfg, renderer) = tokio::task::spawn_blocking(move || load_all(&path))
        .await?
        .map_err(|errs| anyhow::anyhow!("invalid configuration:\n{}", errs.join("\n")))?;
    let lock = lock_state_dir(&cfg.daemon.state_dir)?;
    let (state, state_err) = match crate::state::load(&cfg.daemon.state_dir) {
        Ok(s) => (s, None),
        Err(e) => (Default::default(), Some(e)),
    };
    for w in &cfg.warnings {
        eprintln!("procward: warning: {w}");
    }
    let listener = bind_control(&cfg.daemon.control_socket, cfg.daemon.control_group)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let notifier = Notifier::start(cfg.daemon.state_dir.clone(), sink_reporter(tx.clone()))
        .with_context(|| {
            format!(
                "cannot open the journal in {}",
                cfg.daemon.state_dir.display()
            )
        })?;
    let (seq, seq_err) = journal::Seq::open(&cfg.daemon.state_dir);
    let shared = Arc::new(Shared {
        allow: RwLock::new(cfg.daemon.allow.clone()),
        state_dir: cfg.daemon.state_dir.clone(),
        bus: notifier.bus.clone(),
    });
    let mut engine = None;
    let sinks = start_sinks(&cfg, &renderer, &mut engine, &tx)?;
    let monitor = Monitor::new(
        cfg.targets.clone(),
        &state,
        now_ms() ^ std::process::id() as u64,
    );
    let mut d = Daemon {
        cfg,
        renderer,
        monitor,
        notifier,
        sinks,
        engine,
        shared: shared.clone(),
        tx: tx.clone(),
        console: opts.console,
        seq,
        last_seq: HashMap::new(),
        watchers: HashMap::new(),
        polled: HashSet::new(),
        timers: BTreeSet::new(),
        scanning: false,
        scan_soon: true,
        probes_due: HashMap::new(),
        probing: HashSet::new(),
        last_scan: Instant::now(),
        dirty: false,
        denials: HashMap::new(),
        outages: crate::notify::Outages::default(),
        _lock: lock,
    };
    if let Err(e) = seq_err {
        d.write_result("sequence file", &d.seq.path(), Err(e));
    }
    d.emit(
        EventSpec::new(msg::DAEMON_STARTED)
            .field("version", env!("CARGO_PKG_VERSION"))
            .field("targets", d.cfg.targets.len())
            .field("config", d.cfg.path.display().to_string()),
    );
    if let Some(e) = state_err {
        d.emit(
            EventSpec::new(msg::STATE_UNREADABLE)
                .field(
                    "path",
                    crate::state::path(&d.cfg.daemon.state_dir)
                        .display()
                        .to_string(),
                )
                .field("error", e),
        );
    }
    // Recoveries that were under way when procward stopped go on where
    // they were: a running restart script is waited for, not run again.
    let acts = d.monitor.startup(now_ms());
    d.apply(acts);
    tokio::spawn(control_server(listener, shared, tx.clone()));
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(async move { d.run(rx, stop_rx, opts.signals).await });
    sd_notify("READY=1");
    Ok(Handle {
        stop: Some(stop_tx),
        task,
    })
}

/// Start every sink of `cfg`; the SNMP engine (ID, boots) is loaded the
/// first time a configuration has an SNMP sink.
fn start_sinks(
    cfg: &Config,
    renderer: &Arc<Renderer>,
    engine: &mut Option<Arc<snmp::Engine>>,
    tx: &mpsc::UnboundedSender<Msg>,
) -> anyhow::Result<Vec<queue::SinkHandle>> {
    let mut sinks = syslog::start_all(cfg, renderer.clone(), sink_reporter(tx.clone()));
    if !cfg.snmp.is_empty() {
        if engine.is_none() {
            let e = snmp::Engine::load(&cfg.daemon.state_dir).with_context(|| {
                format!(
                    "cannot keep the SNMP engine in {}",
                    cfg.daemon.state_dir.display()
                )
            })?;
            *engine = Some(Arc::new(e));
        }
        let e = engine.clone().expect("loaded");
        sinks.extend(snmp::start_all(
            cfg,
            renderer.clone(),
            e,
            sink_reporter(tx.clone()),
        ));
    }
    Ok(sinks)
}

fn sink_reporter(tx: mpsc::UnboundedSender<Msg>) -> queue::Reporter {
    Arc::new(move |spec| {
        let _ = tx.send(Msg::Sink(spec));
    })
}

impl Daemon {
    async fn run(
        &mut self,
        mut rx: mpsc::UnboundedReceiver<Msg>,
        mut stop: oneshot::Receiver<()>,
        signals: bool,
    ) -> anyhow::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signals
            .then(|| signal(SignalKind::terminate()))
            .transpose()?;
        let mut int = signals
            .then(|| signal(SignalKind::interrupt()))
            .transpose()?;
        let mut hup = signals.then(|| signal(SignalKind::hangup())).transpose()?;
        async fn sig(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let stop_reason;
        loop {
            let next_timer = self.timers.first().map(|t| t.0).unwrap_or(far);
            let next_scan = if self.scanning {
                far
            } else {
                self.next_scan_at()
            };
            let next_probe = self.next_probe_at().unwrap_or(far);
            let next_denial = self.next_denial_report().unwrap_or(far);
            tokio::select! {
                _ = &mut stop => { stop_reason = "shutdown request"; break; }
                _ = sig(&mut term) => { stop_reason = "SIGTERM"; break; }
                _ = sig(&mut int) => { stop_reason = "SIGINT"; break; }
                _ = sig(&mut hup) => {
                    let (tx, _rx) = oneshot::channel();
                    self.start_reload("SIGHUP".into(), tx);
                }
                Some(m) = rx.recv() => self.on_msg(m),
                _ = tokio::time::sleep_until(next_timer) => self.fire_timers(),
                _ = tokio::time::sleep_until(next_scan) => self.start_scan(),
                _ = tokio::time::sleep_until(next_probe) => self.start_probes(),
                _ = tokio::time::sleep_until(next_denial) => self.report_denials(),
            }
            self.after();
        }
        sd_notify("STOPPING=1");
        self.emit(EventSpec::new(msg::DAEMON_STOPPING).field("signal", stop_reason));
        for (_, ws) in self.watchers.drain() {
            for (_, h) in ws {
                h.abort();
            }
        }
        self.notifier.save_state(self.monitor.snapshot());
        self.notifier.sync();
        queue::flush_all(&self.sinks, Duration::from_secs(2)).await;
        let _ = std::fs::remove_file(&self.cfg.daemon.control_socket);
        Ok(())
    }

    fn next_scan_at(&self) -> Instant {
        let settling = self
            .monitor
            .targets()
            .iter()
            .any(|t| matches!(t.phase, crate::monitor::Phase::Settling { .. }));
        if self.scan_soon {
            return self.last_scan; // now or in the past
        }
        let every = if settling {
            Duration::from_millis(100).min(self.cfg.daemon.interval)
        } else {
            self.cfg.daemon.interval
        };
        self.last_scan + every
    }

    /// Work after each wake-up: persist, scan if asked.
    fn after(&mut self) {
        if self.dirty {
            self.dirty = false;
            self.notifier.save_state(self.monitor.snapshot());
        }
        if self.scan_soon && !self.scanning {
            self.start_scan();
        }
    }

    fn on_msg(&mut self, m: Msg) {
        match m {
            Msg::Input(i) => {
                if let Input::Probe { target, .. } = &i {
                    self.probing.remove(target);
                }
                if let Input::Exited { target, proc, .. } = &i {
                    if let Some(ws) = self.watchers.get_mut(target) {
                        ws.retain(|(p, _)| p != proc);
                    }
                    self.polled.remove(&(target.clone(), *proc));
                }
                let acts = self.monitor.handle(i, now_ms());
                self.apply(acts);
            }
            Msg::Poll(target, p) => {
                self.polled.insert((target, p));
            }
            Msg::Scanned(r) => {
                self.scanning = false;
                let now = now_ms();
                let mut found: Vec<_> = r.found.into_iter().collect();
                found.sort_by(|a, b| a.0.cmp(&b.0));
                for (target, procs) in found {
                    let acts = self.monitor.handle(Input::Found { target, procs }, now);
                    self.apply(acts);
                }
                for (target, pid, count) in r.children {
                    let acts = self
                        .monitor
                        .handle(Input::Children { target, pid, count }, now);
                    self.apply(acts);
                }
                for (target, p) in r.polled_dead {
                    if self.polled.remove(&(target.clone(), p)) {
                        self.classify_and_report(target, p);
                    }
                }
            }
            Msg::Control(req, user, reply) => {
                let resp = self.on_control(req, &user, reply);
                if let Some((resp, reply)) = resp {
                    let _ = reply.send(resp);
                }
            }
            Msg::Reloaded(result, by, reply) => self.finish_reload(*result, by, reply),
            Msg::Denied(uid, user) => self.denied(uid, user),
            Msg::Wrote(what, path, r) => self.write_result(&what, &path, r),
            Msg::Sink(spec) => self.emit(spec),
        }
    }

    fn on_control(
        &mut self,
        req: Request,
        user: &str,
        reply: oneshot::Sender<Response>,
    ) -> Option<(Response, oneshot::Sender<Response>)> {
        let now = now_ms();
        let resp = match req {
            Request::Status => {
                Response::ok(serde_json::to_value(self.monitor.status(now)).unwrap_or_default())
            }
            Request::Pause { target, all } | Request::Resume { target, all }
                if all == target.is_some() =>
            {
                let _ = (target, all);
                Response::err("name one target or --all")
            }
            Request::Pause { target, all } => self.command_many(target, all, Command::Pause, user),
            Request::Resume { target, all } => {
                self.command_many(target, all, Command::Resume, user)
            }
            Request::Reset { target } => {
                self.command_many(Some(target), false, Command::Reset, user)
            }
            Request::Start { target } => {
                self.command_many(Some(target), false, Command::Start, user)
            }
            Request::Stop { target, timeout_ms } => {
                let pids: Vec<u32> = self
                    .monitor
                    .tracked()
                    .filter(|(t, _)| *t == target)
                    .map(|(_, p)| p.pid)
                    .collect();
                let stop = Command::Stop {
                    timeout: Duration::from_millis(timeout_ms),
                };
                let mut r = self.command_many(Some(target), false, stop, user);
                if r.ok {
                    r.result = Some(serde_json::json!({ "pids": pids }));
                }
                r
            }
            Request::Reload => {
                self.start_reload(user.to_string(), reply);
                return None;
            }
            Request::Events { .. } => Response::err("events are served by the connection"),
        };
        Some((resp, reply))
    }

    fn command_many(
        &mut self,
        target: Option<String>,
        all: bool,
        cmd: Command,
        user: &str,
    ) -> Response {
        let names: Vec<String> = match target {
            Some(t) => vec![t],
            None => self
                .monitor
                .targets()
                .iter()
                .map(|t| t.spec.name.clone())
                .collect(),
        };
        let mut done = Vec::new();
        let mut errors = Vec::new();
        for n in names {
            match self.monitor.command(&n, cmd.clone(), user, now_ms()) {
                Ok(acts) => {
                    self.apply(acts);
                    done.push(n);
                }
                // With --all, targets already in the asked state are skipped.
                Err(e) if !all => errors.push(e),
                Err(_) => {}
            }
        }
        if errors.is_empty() {
            Response::ok(serde_json::json!({ "targets": done }))
        } else {
            Response::err(errors.join("; "))
        }
    }

    fn start_reload(&mut self, by: String, reply: oneshot::Sender<Response>) {
        let path = self.cfg.path.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let r = tokio::task::spawn_blocking(move || load_all(&path))
                .await
                .unwrap_or_else(|e| Err(vec![e.to_string()]));
            let _ = tx.send(Msg::Reloaded(Box::new(r), by, reply));
        });
    }

    fn finish_reload(
        &mut self,
        r: Result<(Config, Arc<Renderer>), Vec<String>>,
        by: String,
        reply: oneshot::Sender<Response>,
    ) {
        match r {
            Err(errors) => {
                self.emit(
                    EventSpec::new(msg::CONFIG_REJECTED)
                        .field("errors", errors.len())
                        .field("first", errors.first().cloned().unwrap_or_default())
                        .field("by", by),
                );
                let _ = reply.send(Response::err(format!(
                    "configuration rejected, the old one stays in force:\n{}",
                    errors.join("\n")
                )));
            }
            Ok((mut cfg, renderer)) => {
                // Settings that need a restart (socket, state dir) keep their old values.
                cfg.daemon.control_socket = self.cfg.daemon.control_socket.clone();
                cfg.daemon.state_dir = self.cfg.daemon.state_dir.clone();
                let old: HashSet<String> =
                    self.cfg.targets.iter().map(|t| t.name.clone()).collect();
                let new: HashSet<String> = cfg.targets.iter().map(|t| t.name.clone()).collect();
                let list = |s: Vec<&String>| {
                    let mut v: Vec<&str> = s.into_iter().map(String::as_str).collect();
                    v.sort();
                    if v.is_empty() {
                        "-".to_string()
                    } else {
                        v.join(", ")
                    }
                };
                let added = list(new.difference(&old).collect());
                let removed = list(old.difference(&new).collect());
                *self.shared.allow.write().expect("allow lock") = cfg.daemon.allow.clone();
                if cfg.daemon.control_group != self.cfg.daemon.control_group {
                    if let Err(e) =
                        set_socket_group(&cfg.daemon.control_socket, cfg.daemon.control_group)
                    {
                        eprintln!("procward: {e:#}");
                    }
                }
                let acts = self.monitor.reconfigure(cfg.targets.clone(), now_ms());
                let new_sinks = start_sinks(&cfg, &renderer, &mut self.engine, &self.tx)
                    .unwrap_or_else(|e| {
                        eprintln!("procward: {e:#}; SNMP sinks are not started");
                        syslog::start_all(&cfg, renderer.clone(), sink_reporter(self.tx.clone()))
                    });
                let old_sinks = std::mem::take(&mut self.sinks);
                queue::abort_all(&old_sinks);
                queue::carry_over(&old_sinks, &new_sinks);
                self.sinks = new_sinks;
                self.renderer = renderer;
                let n = cfg.targets.len();
                self.cfg = cfg;
                self.apply(acts);
                self.emit(
                    EventSpec::new(msg::CONFIG_RELOADED)
                        .field("targets", n)
                        .field("added", added)
                        .field("removed", removed)
                        .field("by", by),
                );
                let _ = reply.send(Response::ok(serde_json::json!({ "targets": n })));
            }
        }
    }

    /// Say PW1012 when a write of `what` starts failing, PW1013 when it
    /// works again; nothing while it keeps failing or working.
    fn write_result(&mut self, what: &str, path: &Path, r: Result<(), String>) {
        let said = match r {
            Err(e) => self.outages.failed(what, path, &e),
            Ok(()) => self.outages.ok(what, path),
        };
        if let Some(spec) = said {
            self.emit(spec);
        }
    }

    fn emit(&mut self, spec: EventSpec) {
        let (seq, reserved) = self.seq.take();
        let lang = self.cfg.daemon.language;
        let ev = self.renderer.event(&spec, seq, now_ms(), lang);
        if let Some(t) = &spec.target {
            self.last_seq.insert(t.clone(), seq);
        }
        let console = self.console.then(|| {
            self.renderer
                .output("console", &ev, lang)
                .unwrap_or_else(|_| ev.text.clone())
        });
        let ev = Arc::new(ev);
        for s in &self.sinks {
            s.push(ev.clone());
        }
        self.notifier.publish((*ev).clone(), console);
        let path = self.seq.path();
        self.write_result("sequence file", &path, reserved);
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Emit(spec) => self.emit(spec),
                Action::Track { target, proc } => self.track(target, proc),
                Action::UntrackAll { target } => {
                    if let Some(ws) = self.watchers.remove(&target) {
                        for (_, h) in ws {
                            h.abort();
                        }
                    }
                    self.polled.retain(|(t, _)| *t != target);
                }
                Action::RunScript {
                    target,
                    attempt,
                    reason,
                    pid,
                } => self.run_script(target, attempt, reason, pid),
                Action::RunCommand { target } => self.run_command(target),
                Action::AdoptScript {
                    target,
                    attempt,
                    proc,
                } => self.adopt_script(target, attempt, proc),
                Action::Arm { target, token, at } => {
                    let delay = at.saturating_sub(now_ms());
                    self.timers.insert((
                        Instant::now() + Duration::from_millis(delay),
                        target,
                        token,
                    ));
                }
                Action::Stop {
                    target: _,
                    proc,
                    group,
                    timeout,
                } => stop_process(proc, group, timeout),
                Action::ScanSoon => self.scan_soon = true,
                Action::Persist => self.dirty = true,
            }
        }
    }

    /// A refused control connection: the first of a user is said at once,
    /// the next ones within `control-denied-interval` are counted and said
    /// in one PW1008 when the interval ends.
    fn denied(&mut self, uid: u32, user: String) {
        let now = Instant::now();
        let every = self.cfg.daemon.denied_interval;
        if let Some(d) = self.denials.get_mut(&uid) {
            if now < d.since + every {
                d.refused += 1;
                return;
            }
        }
        self.denials.insert(
            uid,
            Denial {
                user: user.clone(),
                since: now,
                refused: 0,
            },
        );
        self.emit_denied(uid, user, 1);
    }

    fn next_denial_report(&self) -> Option<Instant> {
        let every = self.cfg.daemon.denied_interval;
        self.denials
            .values()
            .filter(|d| d.refused > 0)
            .map(|d| d.since + every)
            .min()
    }

    fn report_denials(&mut self) {
        let now = Instant::now();
        let every = self.cfg.daemon.denied_interval;
        let mut due = Vec::new();
        self.denials.retain(|uid, d| {
            if now < d.since + every {
                return true;
            }
            if d.refused == 0 {
                return false;
            }
            due.push((*uid, d.user.clone(), d.refused));
            d.since = now;
            d.refused = 0;
            true
        });
        for (uid, user, n) in due {
            self.emit_denied(uid, user, n);
        }
    }

    fn emit_denied(&mut self, uid: u32, user: String, count: u64) {
        self.emit(
            EventSpec::new(msg::CONTROL_DENIED)
                .field("uid", uid)
                .field("user", user)
                .field("count", count),
        );
    }

    /// When the next stall probe is due; keeps the schedule in step with
    /// the targets that are up and have a probe.
    fn next_probe_at(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let mut live = HashSet::new();
        for (spec, _) in self.monitor.probe_targets() {
            let every = spec.stall.as_ref().map(|s| s.interval).unwrap_or_default();
            self.probes_due
                .entry(spec.name.clone())
                .or_insert(now + every);
            live.insert(spec.name.clone());
        }
        if live.len() != self.probes_due.len() {
            self.probes_due.retain(|k, _| live.contains(k));
        }
        self.probes_due
            .iter()
            .filter(|(k, _)| !self.probing.contains(*k))
            .map(|(_, t)| *t)
            .min()
    }

    fn start_probes(&mut self) {
        let now = Instant::now();
        let due: Vec<(String, crate::config::Stall, ProcRef)> = self
            .monitor
            .probe_targets()
            .filter(|(spec, _)| {
                !self.probing.contains(&spec.name)
                    && self.probes_due.get(&spec.name).is_some_and(|t| *t <= now)
            })
            .filter_map(|(spec, p)| spec.stall.clone().map(|s| (spec.name.clone(), s, p)))
            .collect();
        for (name, stall, p) in due {
            self.probes_due.insert(name.clone(), now + stall.interval);
            self.probing.insert(name.clone());
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let r = probe::stall::run(&stall.probe, p).await;
                let (ok, detail) = match r {
                    Ok(()) => (true, String::new()),
                    Err(e) => (false, e),
                };
                let _ = tx.send(Msg::Input(Input::Probe {
                    target: name,
                    pid: p.pid,
                    ok,
                    detail,
                }));
            });
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(first) = self.timers.first().cloned() {
            if first.0 > now {
                break;
            }
            self.timers.remove(&first);
            let acts = self.monitor.handle(
                Input::Timer {
                    target: first.1,
                    token: first.2,
                },
                now_ms(),
            );
            self.apply(acts);
        }
    }

    fn track(&mut self, target: String, p: ProcRef) {
        let tx = self.tx.clone();
        let grace = self.cfg.daemon.zombie_grace;
        let name = target.clone();
        let h = tokio::spawn(async move {
            let opened = tokio::task::spawn_blocking(move || probe::open_pidfd(p)).await;
            match opened {
                Ok(Pidfd::Open(fd)) => {
                    // SAFETY: the AsyncFd owns the pidfd, which stays open
                    // for as long as it is registered.
                    let afd = unsafe {
                        tokio::io::unix::AsyncFd::register_with_interest(
                            fd,
                            tokio::io::Interest::READABLE,
                        )
                    };
                    match afd {
                        Ok(afd) => {
                            let _ = afd.readable().await;
                        }
                        Err(_) => {
                            let _ = tx.send(Msg::Poll(name, p));
                            return;
                        }
                    }
                }
                Ok(Pidfd::Gone) => {}
                Ok(Pidfd::Unsupported) | Err(_) => {
                    let _ = tx.send(Msg::Poll(name, p));
                    return;
                }
            }
            let kind = procfs::classify_exit(p, grace).await;
            let _ = tx.send(Msg::Input(Input::Exited {
                target: name,
                proc: p,
                kind,
            }));
        });
        self.watchers
            .entry(target)
            .or_default()
            .push((p, h.abort_handle()));
    }

    fn classify_and_report(&mut self, target: String, p: ProcRef) {
        let tx = self.tx.clone();
        let grace = self.cfg.daemon.zombie_grace;
        let h = tokio::spawn(async move {
            let kind = procfs::classify_exit(p, grace).await;
            let _ = tx.send(Msg::Input(Input::Exited {
                target,
                proc: p,
                kind,
            }));
        });
        drop(h);
    }

    fn start_scan(&mut self) {
        self.last_scan = Instant::now();
        self.scan_soon = false;
        let targets: Vec<Arc<config::TargetSpec>> = self.monitor.scan_targets().cloned().collect();
        let children: Vec<(String, u32)> = self
            .monitor
            .children_checks()
            .map(|(t, p)| (t.to_string(), p))
            .collect();
        let polled: Vec<(String, ProcRef)> = self.polled.iter().cloned().collect();
        if targets.is_empty() && children.is_empty() && polled.is_empty() {
            return;
        }
        self.scanning = true;
        let tx = self.tx.clone();
        let me = std::process::id();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&config::TargetSpec> = targets.iter().map(|t| t.as_ref()).collect();
            let found = if refs.is_empty() {
                HashMap::new()
            } else {
                procfs::scan(&refs, me)
            };
            let children = children
                .into_iter()
                .filter_map(|(t, pid)| procfs::children_count(pid).ok().map(|n| (t, pid, n)))
                .collect();
            let mut buf = Vec::with_capacity(512);
            let polled_dead = polled
                .into_iter()
                .filter(|(_, p)| {
                    procfs::read_pinned(*p, &mut buf)
                        .map(|s| s.is_dead())
                        .unwrap_or(true)
                })
                .collect();
            let _ = tx.send(Msg::Scanned(ScanResult {
                found,
                children,
                polled_dead,
            }));
        });
    }

    fn script_env(
        &self,
        target: &str,
        attempt: u32,
        reason: Reason,
        pid: Option<u32>,
    ) -> Vec<(String, String)> {
        let spec = self.monitor.target(target).map(|t| &t.spec);
        let seq = self.last_seq.get(target).copied().unwrap_or(0);
        vec![
            ("PROCWARD_TARGET".into(), target.to_string()),
            (
                "PROCWARD_PID".into(),
                pid.map(|p| p.to_string()).unwrap_or_default(),
            ),
            ("PROCWARD_REASON".into(), reason.as_str().into()),
            ("PROCWARD_ATTEMPT".into(), attempt.to_string()),
            (
                "PROCWARD_MAX".into(),
                spec.map(|s| s.retry.max).unwrap_or(0).to_string(),
            ),
            ("PROCWARD_EVENT_ID".into(), seq.to_string()),
        ]
    }

    fn run_script(&mut self, target: String, attempt: u32, reason: Reason, pid: Option<u32>) {
        let Some(t) = self.monitor.target(&target) else {
            return;
        };
        let Some(script) = t.spec.restart.script.clone() else {
            return;
        };
        let run = action::Run {
            argv: vec![script.to_string_lossy().into_owned()],
            env: self.script_env(&target, attempt, reason, pid),
            user: t.spec.restart.user.clone(),
            timeout: t.spec.restart.timeout,
            log: self
                .cfg
                .daemon
                .state_dir
                .join("script-logs")
                .join(format!("{target}.log")),
            header: format!(
                "{} restart attempt {attempt} ({})",
                crate::event::rfc3339_ms(now_ms()),
                reason.as_str()
            ),
        };
        // The attempt is on disk before its script runs: a procward killed
        // meanwhile waits for this script when it starts again, and never
        // runs a second one. (A failed write does not hold the restart up.)
        self.dirty = false;
        self.notifier.save_state(self.monitor.snapshot());
        let saved = self.notifier.synced();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let _ = saved.await;
            let log = run.log.clone();
            let name = target.clone();
            let started = tx.clone();
            let ran = action::run(run, move |pid| {
                let mut buf = Vec::with_capacity(512);
                if let Ok(Some(st)) = procfs::read_stat(pid, &mut buf) {
                    let _ = started.send(Msg::Input(Input::ScriptStarted {
                        target: name,
                        attempt,
                        proc: st.proc_ref(),
                    }));
                }
            })
            .await;
            let what = format!("restart script log of {target}");
            let _ = tx.send(Msg::Wrote(what, log, ran.log_error.map_or(Ok(()), Err)));
            let _ = tx.send(Msg::Input(Input::ScriptDone {
                target,
                attempt,
                outcome: ran.outcome,
            }));
        });
    }

    /// Wait for a restart script started by an earlier procward (pid 0:
    /// none was seen) and report its end.
    fn adopt_script(&mut self, target: String, attempt: u32, proc: ProcRef) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            if proc.pid != 0 {
                wait_gone(proc).await;
            }
            let _ = tx.send(Msg::Input(Input::ScriptDone {
                target,
                attempt,
                outcome: crate::monitor::ScriptOutcome::Unknown,
            }));
        });
    }

    fn run_command(&mut self, target: String) {
        let Some(t) = self.monitor.target(&target) else {
            return;
        };
        let Some(f) = t.spec.failover.clone() else {
            return;
        };
        let attempts = self
            .monitor
            .status(now_ms())
            .iter()
            .find(|s| s.target == target)
            .map(|s| s.restarts_in_window)
            .unwrap_or(0);
        let run = action::Run {
            argv: f.command.clone(),
            env: self
                .script_env(&target, attempts as u32, Reason::Disappeared, None)
                .into_iter()
                .filter(|(k, _)| k != "PROCWARD_REASON")
                .chain([("PROCWARD_REASON".to_string(), "retry-over".to_string())])
                .collect(),
            user: None,
            timeout: f.timeout,
            log: self
                .cfg
                .daemon
                .state_dir
                .join("script-logs")
                .join(format!("{target}.retry-over.log")),
            header: format!("{} retry-over command", crate::event::rfc3339_ms(now_ms())),
        };
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let log = run.log.clone();
            let ran = action::run(run, |_| {}).await;
            let what = format!("retry-over command log of {target}");
            let _ = tx.send(Msg::Wrote(what, log, ran.log_error.map_or(Ok(()), Err)));
            let _ = tx.send(Msg::Input(Input::CommandDone {
                target,
                outcome: ran.outcome,
            }));
        });
    }
}

/// Until the pinned process has ended: by its pidfd, else by polling.
async fn wait_gone(p: ProcRef) {
    match tokio::task::spawn_blocking(move || probe::open_pidfd(p)).await {
        Ok(Pidfd::Open(fd)) => {
            // SAFETY: the AsyncFd owns the pidfd while it is registered.
            if let Ok(afd) = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            } {
                let _ = afd.readable().await;
                return;
            }
        }
        Ok(Pidfd::Gone) => return,
        _ => {}
    }
    loop {
        let alive = tokio::task::spawn_blocking(move || {
            let mut buf = Vec::with_capacity(512);
            procfs::read_pinned(p, &mut buf).is_some_and(|s| !s.is_dead())
        })
        .await
        .unwrap_or(false);
        if !alive {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGTERM to a stalled process (or its group), SIGKILL after `timeout`
/// if it is still there. Its exit is seen by its pidfd watch.
fn stop_process(p: ProcRef, group: bool, timeout: Duration) {
    use rustix::process::{kill_process, kill_process_group, Pid, Signal};
    let Some(pid) = Pid::from_raw(p.pid as i32) else {
        return;
    };
    let pgid = if group {
        rustix::process::getpgid(Some(pid)).ok()
    } else {
        None
    };
    let send = move |sig: Signal| match pgid {
        Some(g) => {
            let _ = kill_process_group(g, sig);
        }
        None => {
            let _ = kill_process(pid, sig);
        }
    };
    send(Signal::TERM);
    tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        let alive = tokio::task::spawn_blocking(move || {
            let mut buf = Vec::with_capacity(512);
            procfs::read_pinned(p, &mut buf).is_some_and(|s| !s.is_dead())
        })
        .await
        .unwrap_or(false);
        if alive {
            send(Signal::KILL);
        }
    });
}

async fn control_server(
    listener: tokio::net::UnixListener,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Msg>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let shared = shared.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = serve(stream, shared, tx).await;
        });
    }
}

async fn write_line(w: &mut tokio::net::unix::OwnedWriteHalf, r: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(r).unwrap_or_default();
    line.push(b'\n');
    w.write_all(&line).await
}

async fn serve(
    stream: tokio::net::UnixStream,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Msg>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    // Who is there, before a single byte is read: a user not allowed
    // cannot make procward buffer anything.
    let cred = stream.peer_cred()?;
    let (uid, gid) = (cred.uid(), cred.gid());
    let (r, mut w) = stream.into_split();
    let user = tokio::task::spawn_blocking(move || control::user_name(uid))
        .await
        .unwrap_or_default();
    let allow = shared.allow.read().expect("allow lock").clone();
    let ok = tokio::task::spawn_blocking(move || control::allowed(&allow, uid, gid))
        .await
        .unwrap_or(false);
    if !ok {
        let _ = tx.send(Msg::Denied(uid, user.clone()));
        write_line(
            &mut w,
            &Response::err(format!(
                "permission denied: {user} is not in daemon.control-allow"
            )),
        )
        .await?;
        // Let the answer reach the client: closing with its request still
        // unread would reset the connection before it reads the answer.
        // Discarded, never kept: at most one request's worth, briefly.
        let _ = w.shutdown().await;
        let mut sink = tokio::io::sink();
        let mut rest = r.take(control::MAX_REQUEST as u64);
        let drain = tokio::io::copy(&mut rest, &mut sink);
        let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
        return Ok(());
    }
    let mut reader = BufReader::new(r);
    loop {
        let mut line = Vec::new();
        let limit = control::MAX_REQUEST as u64 + 1;
        if (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut line)
            .await?
            == 0
        {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > control::MAX_REQUEST {
            let e = format!("request longer than {} bytes", control::MAX_REQUEST);
            write_line(&mut w, &Response::err(e)).await?;
            return Ok(());
        }
        let req = match control::parse_request(&line) {
            Ok(r) => r,
            Err(e) => {
                write_line(&mut w, &Response::err(e)).await?;
                continue;
            }
        };
        if let Request::Events { since_ms, follow } = req {
            let mut sub = shared.bus.subscribe();
            let dir = shared.state_dir.clone();
            let past = tokio::task::spawn_blocking(move || journal::read(&dir, since_ms))
                .await
                .unwrap_or_default();
            let mut last = 0;
            for ev in past {
                last = ev.seq;
                write_line(&mut w, &Response::event(ev)).await?;
            }
            if !follow {
                write_line(&mut w, &Response::ok(serde_json::json!({ "end": true }))).await?;
                continue;
            }
            loop {
                match sub.recv().await {
                    Ok(ev) if ev.seq > last => {
                        last = ev.seq;
                        write_line(&mut w, &Response::event((*ev).clone())).await?;
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        write_line(
                            &mut w,
                            &Response::err(format!(
                                "{n} events skipped (reader too slow); see the journal"
                            )),
                        )
                        .await?;
                    }
                    Err(_) => return Ok(()),
                }
            }
        }
        let (rtx, rrx) = oneshot::channel();
        if tx.send(Msg::Control(req, user.clone(), rtx)).is_err() {
            write_line(&mut w, &Response::err("procward is stopping")).await?;
            return Ok(());
        }
        let resp = rrx
            .await
            .unwrap_or_else(|_| Response::err("procward is stopping"));
        write_line(&mut w, &resp).await?;
    }
}
