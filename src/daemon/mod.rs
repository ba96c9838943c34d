//! The daemon: wiring. It routes inputs (process exits, scans, probe
//! results, script ends, control requests) to the monitor core and the
//! core's actions to the edges: `probe/` watches and scans, `action/` runs
//! scripts and stops processes, `notify/` delivers events, `control/`
//! serves the socket. All decisions are the core's; `apply` is the one
//! bridge from the core to the edges.

mod checks;
mod discovery;
mod persist;
mod probes;
mod requests;
mod schedule;
mod scripts;
mod system;

use crate::action;
use crate::catalog::render::{Renderer, Templates};
use crate::catalog::Catalog;
use crate::config::{self, Config};
use crate::control::server::{self, Denials, FromClient, Shared};
use crate::control::Response;
use crate::model::event::{msg, now_ms, EventSpec};
use crate::model::ProcRef;
use crate::model::TargetId;
use crate::monitor::{Action, Input, Monitor};
use crate::notify::{outputs::Outputs, queue};
use crate::probe::watch;
use anyhow::Context;
use schedule::Schedule;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// How long a starting daemon waits for an offline command under way
/// (its script, then its wait for the process: a minute each by default).
const OFFLINE_WAIT: Duration = Duration::from_secs(300);

/// A validated configuration with its renderer, or every error found.
pub(crate) type Loaded = Result<(Config, Arc<Renderer>), Vec<String>>;

/// Validate everything a daemon needs: configuration, catalog, templates.
pub(crate) fn load_all(path: &Path, which: Templates) -> Loaded {
    load_all_reusing(path, &[], Reuse::No(which))
}

/// What a load may take from the running daemon.
pub(crate) enum Reuse {
    /// Nothing: compile these templates.
    No(Templates),
    /// Its renderer, made of the embedded catalog and templates, if the
    /// new configuration names no others either (and the same host).
    Renderer(Arc<Renderer>),
}

impl Reuse {
    /// What a reload may take from the running configuration and renderer:
    /// the renderer only if it was made of the embedded catalog and
    /// templates (one read from a directory is never kept).
    pub(crate) fn running(cfg: &Config, renderer: &Arc<Renderer>) -> Reuse {
        match embedded(cfg) {
            true => Reuse::Renderer(renderer.clone()),
            false => Reuse::No(Templates::Events),
        }
    }
}

/// Neither `catalog-dir` nor `templates-dir`: the embedded ones.
fn embedded(cfg: &Config) -> bool {
    cfg.daemon.catalog_dir.is_none() && cfg.daemon.templates_dir.is_none()
}

/// `load_all` for a reload: unchanged targets keep the running specs, and
/// the running renderer is kept when nothing it is made of can have
/// changed (the embedded catalog and templates, the same host name): the
/// reload then neither parses the catalog nor compiles the templates again,
/// and the two renderers are never in memory together.
pub(crate) fn load_all_reusing(
    path: &Path,
    running: &[Arc<config::TargetSpec>],
    reuse: Reuse,
) -> Loaded {
    let cfg = config::load_reusing(path, running)
        .map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let which = match reuse {
        Reuse::Renderer(r) if embedded(&cfg) && r.host == cfg.daemon.hostname => {
            return Ok((cfg, r));
        }
        Reuse::Renderer(_) => Templates::Events,
        Reuse::No(which) => which,
    };
    let catalog = Catalog::load(cfg.daemon.catalog_dir.as_deref())?;
    let renderer = Renderer::with(
        which,
        Arc::new(catalog),
        cfg.daemon.templates_dir.as_deref(),
        &cfg.daemon.hostname,
    )?;
    Ok((cfg, Arc::new(renderer)))
}

pub(crate) struct Options {
    pub config: PathBuf,
    /// Print each event on stderr (the foreground).
    pub console: bool,
}

enum Msg {
    Input(Input),
    /// A tracked process ended; its pidfd woke procward at that instant.
    Ended(Input, Instant),
    /// The metrics thread wants a status snapshot (at most every 250 ms).
    Scrape,
    /// A tracked process without a pidfd: watch it by polling.
    Scanned(ScanResult),
    Client(FromClient),
    Reloaded(Box<Loaded>, String, oneshot::Sender<Response>),
    /// How a write of one of procward's own files went.
    Wrote(String, PathBuf, Result<(), String>),
    /// An event the outputs say about themselves.
    Report(EventSpec),
    /// The process-events connector reported new processes.
    Spawned,
    /// A new process matches a target procward looks for: scan now.
    ScanNow,
    /// The process-events connector failed: scan at the normal pace.
    EventsLost,
    /// `test-event`: the next batch of test messages to emit.
    TestBatch(Box<requests::TestRun>),
    /// Resource checks read off the loop.
    Measured(Vec<checks::Measured>),
}

struct ScanResult {
    found: HashMap<String, Vec<ProcRef>>,
    /// Processes named by pidfiles procward does not trust (PW2025).
    refused: Vec<crate::probe::procfs::Refusal>,
    children: Vec<(TargetId, u32, u32)>,
    polled_dead: Vec<(TargetId, ProcRef)>,
}

/// The running daemon: its loop ends at SIGTERM or SIGINT.
pub(crate) struct Handle {
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

struct Daemon {
    cfg: Config,
    monitor: Monitor,
    out: Outputs,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Msg>,
    schedule: Schedule,
    /// When each `[[target.check]]` runs.
    checks: checks::Checks,
    persist: persist::Persist,
    spawner: Arc<crate::action::spawner::Spawner>,
    watches: watch::Watches,
    denials: Denials,
    /// Counters and histograms for `daemon.metrics-listen` (when set).
    metrics: Option<crate::metrics::Metrics>,
    discovery: discovery::Discovery,
    /// The process each target's pidfile was last refused for (PW2025
    /// once per process).
    refused: HashMap<String, u32>,
    _lock: std::fs::File,
}

/// The metrics endpoint on its own thread, when `daemon.metrics-listen`
/// asks for one; the loop's side of it.
fn start_metrics(
    listen: Option<std::net::SocketAddr>,
    tx: &mpsc::UnboundedSender<Msg>,
) -> anyhow::Result<Option<crate::metrics::Metrics>> {
    let Some(addr) = listen else {
        return Ok(None);
    };
    let l = std::net::TcpListener::bind(addr)
        .with_context(|| format!("daemon.metrics-listen: cannot listen on {addr}"))?;
    let tx = tx.clone();
    let ask: crate::metrics::Ask = Arc::new(move || {
        let _ = tx.send(Msg::Scrape);
    });
    let (m, exposition) = crate::metrics::Metrics::new(ask);
    crate::metrics::start(l, exposition).context("daemon.metrics-listen")?;
    Ok(Some(m))
}

/// Start the daemon on the current tokio runtime.
pub(crate) async fn start(opts: Options) -> anyhow::Result<Handle> {
    system::raise_nofile_limit();
    let path = opts.config.clone();
    let (cfg, renderer) = tokio::task::spawn_blocking(move || load_all(&path, Templates::Events))
        .await?
        .map_err(|errs| anyhow::anyhow!("invalid configuration:\n{}", errs.join("\n")))?;
    // Signals are handled before anything is said (PW1001, READY=1): a
    // SIGHUP or SIGTERM that comes early must not find the default action.
    let signals = Signals::install()?;
    let dir = cfg.daemon.state_dir.clone();
    let lock = tokio::task::spawn_blocking(move || {
        crate::store::state::lock(&dir, OFFLINE_WAIT, || {
            eprintln!(
                "procward: waiting for an offline command (start or stop --offline) on {} to finish",
                dir.display()
            );
        })
    })
    .await??;
    let (loaded, records) = crate::store::state::load_with_records(&cfg.daemon.state_dir);
    let (state, state_err) = match loaded {
        Ok(s) => (s, None),
        Err(e) => (Default::default(), Some(e)),
    };
    for w in &cfg.warnings {
        eprintln!("procward: warning: {w}");
    }
    let listener = server::bind(&cfg.daemon.control_socket, cfg.daemon.control_group)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let report = tx.clone();
    let reporter: queue::Reporter = Arc::new(move |spec| {
        let _ = report.send(Msg::Report(spec));
    });
    let out = Outputs::start(&cfg, renderer, opts.console, reporter).map_err(anyhow::Error::msg)?;
    let shared = Arc::new(Shared {
        allow: RwLock::new(cfg.daemon.allow.clone()),
        state_dir: cfg.daemon.state_dir.clone(),
        bus: out.bus(),
    });
    let d_metrics = start_metrics(cfg.daemon.metrics_listen, &tx)?;
    // Scripts are started by a helper that holds none of the pidfds the
    // daemon is about to open (action/spawner.rs).
    let spawner = Arc::new(crate::action::spawner::Spawner::new("/proc/self/exe"));
    if let Err(e) = spawner.start().await {
        eprintln!("procward: cannot start the spawner ({e}); starting scripts directly");
    }
    let monitor = Monitor::new(
        cfg.targets.clone(),
        &state,
        now_ms() ^ std::process::id() as u64,
    );
    let mut d = Daemon {
        cfg,
        monitor,
        out,
        shared: shared.clone(),
        tx: tx.clone(),
        schedule: Schedule::new(),
        checks: checks::Checks::default(),
        persist: persist::Persist::new(records, Instant::now()),
        spawner,
        watches: watch::Watches::new(),
        denials: Denials::default(),
        metrics: d_metrics,
        discovery: discovery::Discovery::start(tx.clone()),
        refused: HashMap::new(),
        _lock: lock,
    };
    d.out.emit(
        EventSpec::new(msg::DAEMON_STARTED)
            .field("version", env!("CARGO_PKG_VERSION"))
            .field("targets", d.cfg.targets.len())
            .field("config", d.cfg.path.display().to_string())
            .field("exit_source", crate::probe::exit::describe())
            .field("discovery", d.discovery.describe()),
    );
    if let Some(e) = state_err {
        let path = crate::store::state::path(&d.cfg.daemon.state_dir);
        d.out.emit(
            EventSpec::new(msg::STATE_UNREADABLE)
                .field("path", path.display().to_string())
                .field("error", e),
        );
    }
    // Recoveries that were under way when procward stopped go on where
    // they were: a running restart script is waited for, not run again.
    let acts = d.monitor.startup(now_ms());
    d.apply(acts);
    d.checks.plan(d.cfg.targets.iter());
    let to_daemon: server::ToDaemon = Arc::new(move |m| tx.send(Msg::Client(m)).is_ok());
    tokio::spawn(server::serve_forever(listener, shared, to_daemon));
    // Ready before the loop runs, so that no WATCHDOG=1 precedes READY=1.
    system::sd_notify("READY=1");
    let task = tokio::spawn(async move { d.run(rx, signals).await });
    Ok(Handle { task })
}

/// SIGTERM, SIGINT and SIGHUP, handled from before the first event.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// The exit watches' epoll set turning readable (never, without one).
async fn exit_watch(
    set: &Option<Arc<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, std::os::fd::OwnedFd>> {
    match set {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

impl Daemon {
    /// The sinks for the metrics (in-memory figures only: no journal read).
    fn sink_gauges(&self) -> Vec<crate::metrics::SinkGauge> {
        let now = now_ms();
        self.out
            .sink_views()
            .into_iter()
            .map(|v| crate::metrics::SinkGauge {
                up: v.failing.is_none(),
                backlog: v.backlog,
                cursor: v.cursor,
                oldest_age_s: v.oldest_ms.map(|t| now.saturating_sub(t) / 1000),
                sink: v.name,
            })
            .collect()
    }

    async fn run(
        &mut self,
        mut rx: mpsc::UnboundedReceiver<Msg>,
        signals: Signals,
    ) -> anyhow::Result<()> {
        let Signals {
            mut term,
            mut int,
            mut hup,
        } = signals;
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        // WATCHDOG=1 comes from the loop itself: a loop that hangs stops it.
        let watchdog = system::watchdog_interval();
        let period = watchdog.unwrap_or(Duration::from_secs(3600));
        let mut dog = tokio::time::interval_at(Instant::now() + period, period);
        let stop_reason;
        loop {
            // The scan interval walks every target: once per wake-up.
            let interval = self.scan_interval();
            let exits = self.watches.source();
            let wake = [
                self.next_wake(interval),
                self.next_denial_report(),
                self.persist.fold_at(),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far);
            tokio::select! {
                _ = term.recv() => { stop_reason = "SIGTERM"; break; }
                _ = int.recv() => { stop_reason = "SIGINT"; break; }
                _ = hup.recv() => {
                    let (tx, _rx) = oneshot::channel();
                    self.start_reload("SIGHUP".into(), tx);
                }
                Some(m) = rx.recv() => self.on_msg(m),
                Ok(mut ready) = exit_watch(&exits) => {
                    if !self.on_watch_ready() {
                        ready.clear_ready();
                    }
                }
                _ = tokio::time::sleep_until(wake) => self.on_wake(interval),
                _ = dog.tick(), if watchdog.is_some() => system::sd_notify("WATCHDOG=1"),
            }
            self.after(interval);
        }
        system::sd_notify("STOPPING=1");
        self.out
            .emit(EventSpec::new(msg::DAEMON_STOPPING).field("signal", stop_reason));
        self.watches.abort_all();
        self.out
            .finish(
                crate::store::state::Pending::new(
                    &self.cfg.daemon.state_dir,
                    self.monitor.snapshot_list(),
                ),
                Duration::from_secs(2),
            )
            .await;
        let _ = std::fs::remove_file(&self.cfg.daemon.control_socket);
        Ok(())
    }

    fn scan_interval(&self) -> Duration {
        if self.monitor.fast_scan() {
            Duration::from_millis(100).min(self.cfg.daemon.interval)
        } else {
            self.cfg.daemon.interval
        }
    }

    fn next_wake(&mut self, interval: Duration) -> Option<Instant> {
        self.schedule.sync_probes(
            self.monitor
                .probe_targets()
                .filter_map(|(spec, _)| Some((spec.name.as_str(), spec.stall.as_ref()?.interval))),
        );
        let checks = self.checks.next_wake();
        self.schedule
            .next_wake(interval)
            .into_iter()
            .chain(checks)
            .min()
    }

    fn next_denial_report(&self) -> Option<Instant> {
        self.denials.next_report(self.cfg.daemon.denied_interval)
    }

    /// Whatever is due: core timers, the scan, stall probes, PW1008 counts.
    fn on_wake(&mut self, interval: Duration) {
        let now = Instant::now();
        for (target, token) in self.schedule.due_timers(now) {
            self.feed(Input::Timer { target, token });
        }
        if self.schedule.scan_due(now, interval) {
            self.start_scan();
        }
        self.start_probes(now);
        self.start_checks(now);
        for (uid, user, n) in self.denials.due(self.cfg.daemon.denied_interval) {
            self.emit_denied(uid, user, n);
        }
    }

    /// Work after each wake-up: persist, scan if asked.
    /// (`interval` is the scan interval of this wake-up: a target that
    /// started settling now is scanned at the next one, a loop turn away.)
    fn after(&mut self, interval: Duration) {
        match self
            .persist
            .take(self.monitor.targets().len(), Instant::now())
        {
            None => {}
            Some(persist::Save::Full) => self.out.save_state(crate::store::state::Pending::new(
                &self.cfg.daemon.state_dir,
                self.monitor.snapshot_list(),
            )),
            Some(persist::Save::Records(list)) => {
                for target in list {
                    self.save_record(&target);
                }
            }
        }
        if self.schedule.scan_due(Instant::now(), interval) {
            self.start_scan();
        }
    }

    /// One target's record (`state::Records`), ahead of the whole state
    /// file. Whether it was queued.
    fn save_record(&mut self, target: &TargetId) -> bool {
        let Some(state) = self.monitor.persisted_of(target) else {
            return false;
        };
        self.out.save_inflight(crate::store::writer::InFlight {
            dir: self.cfg.daemon.state_dir.clone(),
            target: target.to_string(),
            state,
            saved_ms: crate::store::state::stamp(),
        });
        true
    }

    /// One input to the core, its actions to the edges.
    fn feed(&mut self, input: Input) {
        let target = input.target().clone();
        let acts = self.monitor.handle(input, now_ms());
        self.persist.changed(&target, &acts);
        self.apply(acts);
    }

    fn on_msg(&mut self, m: Msg) {
        match m {
            Msg::Input(i) => {
                if let Input::Probe { target, .. } = &i {
                    self.schedule.probe_done(target);
                }
                if let Input::Check { target, check, .. } = &i {
                    self.check_done(target, *check);
                }
                if let Input::Exited { target, proc, .. } = &i {
                    self.watches.ended(target, *proc);
                }
                if let (Some(m), Input::ScriptStarted { target, .. }) = (&mut self.metrics, &i) {
                    m.restarted(target);
                }
                self.feed(i);
            }
            Msg::Ended(i, woke) => {
                if let (Some(m), Input::Exited { target, kind, .. }) = (&mut self.metrics, &i) {
                    m.exited(target, kind.reason().as_str(), woke.into_std(), now_ms());
                }
                // Its watch is gone already (taken when it turned readable,
                // or never made): straight to the core.
                self.feed(i);
            }
            Msg::TestBatch(run) => self.on_test_batch(run),
            Msg::Measured(readings) => self.measured(readings),
            Msg::Scrape => {
                if let Some(m) = self.metrics.as_ref().filter(|m| m.wanted()) {
                    m.publish(self.monitor.status(now_ms()), self.sink_gauges());
                }
            }
            Msg::Scanned(r) => self.scanned(r),
            Msg::Client(FromClient::Request(req, user, reply)) => {
                if let Some((resp, reply)) = self.on_request(req, &user, reply) {
                    let _ = reply.send(resp);
                }
            }
            Msg::Client(FromClient::Denied(uid, user)) => {
                let every = self.cfg.daemon.denied_interval;
                if let Some(n) = self.denials.refused(uid, user.clone(), every) {
                    self.emit_denied(uid, user, n);
                }
            }
            Msg::Reloaded(result, by, reply) => self.finish_reload(*result, by, reply),
            Msg::Wrote(what, path, r) => self.out.write_result(&what, &path, r),
            Msg::Report(spec) => {
                self.out.emit(spec);
            }
            Msg::Spawned => self.spawned(),
            Msg::ScanNow => self.schedule.scan_soon(),
            Msg::EventsLost => self.discovery.active = false,
        }
    }

    fn scanned(&mut self, r: ScanResult) {
        self.schedule.scan_done();
        for f in r.refused {
            if self.refused.insert(f.target.clone(), f.pid) != Some(f.pid) {
                self.out.emit(
                    EventSpec::new(msg::PIDFILE_REFUSED)
                        .target(&f.target)
                        .pid(f.pid)
                        .field("pidfile", f.pidfile.display().to_string())
                        .field("uid", f.uid)
                        .field("writers", f.writers),
                );
            }
        }
        let mut found: Vec<_> = r.found.into_iter().collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        for (target, procs) in found {
            self.feed(Input::Found {
                target: target.into(),
                procs,
            });
        }
        for (target, pid, count) in r.children {
            self.feed(Input::Children { target, pid, count });
        }
        for (target, p) in r.polled_dead {
            if self.watches.ended(&target, p) {
                self.classify_and_report(target, p);
            }
        }
    }

    /// The core's actions, turned into I/O.
    fn apply(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Emit(spec) => {
                    self.out.emit(spec);
                }
                Action::Track { target, proc } => self.track(target, proc),
                Action::UntrackAll { target } => self.watches.untrack_all(&target),
                Action::RunScript {
                    target,
                    attempt,
                    reason,
                    pid,
                    exit,
                } => self.run_script(target, attempt, reason, pid, exit),
                Action::RunCommand { target, attempts } => self.run_command(target, attempts),
                Action::AdoptScript {
                    target,
                    attempt,
                    proc,
                } => self.adopt_script(target, attempt, proc),
                Action::Arm { target, token, at } => {
                    let delay = Duration::from_millis(at.saturating_sub(now_ms()));
                    self.schedule.arm(Instant::now() + delay, target, token);
                }
                Action::Stop {
                    proc,
                    group,
                    timeout,
                    ..
                } => action::stop_process(proc, group, timeout),
                Action::KillScript { proc, timeout, .. } => {
                    action::stop_script_group(proc, timeout)
                }
                Action::RunCheckCommand { target, check, pid } => {
                    self.run_check_command(target, check, pid)
                }
                Action::ScanSoon => self.schedule.scan_soon(),
                Action::Persist => self.persist.soon(),
            }
        }
    }
}

#[cfg(test)]
mod tests;
