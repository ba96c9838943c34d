//! Everything an event goes to, behind one `emit`: a sequence number
//! reserved on disk, the rendered event, then the store, which writes it to
//! the journal before it hands it on (the console in the foreground,
//! `events --follow`, and every sink's queue, through the `Deliver` given
//! here). Sinks are built here from the configuration, at start and on
//! reload; the daemon never names syslog or SNMP.

use super::{queue, snmp, syslog};
use crate::catalog::render::Renderer;
use crate::config::Config;
use crate::model::event::{now_ms, Event, EventSpec};
use crate::store::journal;
use crate::store::state::Pending;
use crate::store::writer::{InFlight, Notifier, Outages};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub struct Outputs {
    renderer: Arc<Renderer>,
    lang: crate::model::Lang,
    console: bool,
    notifier: Notifier,
    /// Shared with the store's journal thread, which pushes each event
    /// into every sink's queue once it is journaled.
    sinks: Sinks,
    /// procward's SNMP engine (ID, boots), loaded with the first SNMP sink.
    engine: Option<Arc<snmp::Engine>>,
    seq: journal::Seq,
    outages: Outages,
    reporter: queue::Reporter,
    /// The sequence number of each target's last event.
    last_seq: HashMap<String, u64>,
    /// The sequence number of the last event.
    last_emitted: u64,
}

type Sinks = Arc<std::sync::Mutex<Vec<queue::SinkHandle>>>;

fn lock(sinks: &Sinks) -> std::sync::MutexGuard<'_, Vec<queue::SinkHandle>> {
    sinks.lock().unwrap_or_else(|e| e.into_inner())
}

/// Start every sink of `cfg`; the SNMP engine is loaded the first time a
/// configuration has an SNMP sink.
fn start_sinks(
    cfg: &Config,
    renderer: &Arc<Renderer>,
    engine: &mut Option<Arc<snmp::Engine>>,
    reporter: &queue::Reporter,
) -> Result<Vec<queue::SinkHandle>, String> {
    let mut sinks = syslog::start_all(cfg, renderer.clone(), reporter.clone());
    if !cfg.snmp.is_empty() {
        let e = match engine {
            Some(e) => e.clone(),
            None => {
                let e = snmp::Engine::load(&cfg.daemon.state_dir).map_err(|e| {
                    format!(
                        "cannot keep the SNMP engine in {}: {e}",
                        cfg.daemon.state_dir.display()
                    )
                })?;
                engine.insert(Arc::new(e)).clone()
            }
        };
        sinks.extend(snmp::start_all(cfg, renderer.clone(), e, reporter.clone()));
    }
    Ok(sinks)
}

/// The acknowledged sinks: syslog over TCP and SNMP informs.
fn acknowledged(cfg: &Config, name: &str) -> bool {
    let syslog = cfg
        .syslog
        .iter()
        .any(|s| s.name == name && s.acknowledged());
    syslog || cfg.snmp.iter().any(|s| s.name == name && s.acknowledged())
}

/// Acknowledged sinks read the journal through a cursor from `last` on
/// (or from where they were): see `queue::Spool`. The others (UDP, the
/// local socket, SNMP traps) are best effort.
fn spool(cfg: &Config, notifier: &Notifier, sinks: &[queue::SinkHandle], last: u64) {
    let (cursors, moved) = (notifier.cursors(), notifier.cursor_moved());
    for s in sinks.iter().filter(|s| acknowledged(cfg, &s.name)) {
        let spool = queue::Spool::new(&cfg.daemon.state_dir, cursors.clone(), moved.clone());
        s.spool(spool, last, last);
    }
}

impl Outputs {
    /// Open the journal and the sequence numbers, start the sinks.
    /// `reporter` takes the events the outputs have to say about
    /// themselves (sink trouble, write failures).
    pub fn start(
        cfg: &Config,
        renderer: Arc<Renderer>,
        console: bool,
        reporter: queue::Reporter,
    ) -> Result<Outputs, String> {
        let dir = &cfg.daemon.state_dir;
        let mut engine = None;
        let sinks: Sinks = Arc::new(std::sync::Mutex::new(start_sinks(
            cfg,
            &renderer,
            &mut engine,
            &reporter,
        )?));
        let to_sinks = sinks.clone();
        let deliver = Box::new(move |ev: &Arc<Event>| {
            for s in lock(&to_sinks).iter() {
                s.push(ev.clone());
            }
        });
        let notifier = Notifier::start(
            dir,
            cfg.daemon.journal_keep,
            cfg.daemon.spool_max,
            reporter.clone(),
            deliver,
        )
        .map_err(|e| format!("cannot open the journal in {}: {e}", dir.display()))?;
        let (seq, seq_err, seq_refused) = journal::Seq::open(dir);
        let last = journal::last_seq(dir);
        spool(cfg, &notifier, &lock(&sinks), last);
        let mut o = Outputs {
            renderer,
            lang: cfg.daemon.language,
            console,
            notifier,
            sinks,
            engine,
            seq,
            outages: Outages::default(),
            reporter,
            last_seq: HashMap::new(),
            last_emitted: 0,
        };
        if let Some(r) = seq_refused {
            let path = o.seq.path().display().to_string();
            o.emit(
                EventSpec::new(crate::model::event::msg::SEQ_REFUSED)
                    .field("path", path)
                    .field("value", r.value)
                    .field("journal", r.journal)
                    .field("next", r.next),
            );
        }
        if let Err(e) = seq_err {
            let path = o.seq.path();
            o.write_result("sequence file", &path, Err(e));
        }
        Ok(o)
    }

    pub fn bus(&self) -> tokio::sync::broadcast::Sender<Arc<Event>> {
        self.notifier.bus.clone()
    }

    /// The sequence number of `target`'s last event (0: none yet).
    pub fn last_seq(&self, target: &str) -> u64 {
        self.last_seq.get(target).copied().unwrap_or(0)
    }

    /// Say `spec`: its sequence number, once the store has it.
    pub fn emit(&mut self, spec: EventSpec) -> u64 {
        let (seq, reserved) = self.seq.take();
        self.last_emitted = seq;
        let ev = self.renderer.event(&spec, seq, now_ms(), self.lang);
        if let Some(t) = &spec.target {
            self.last_seq.insert(t.clone(), seq);
        }
        let console = self.console.then(|| {
            self.renderer
                .output("console", &ev, self.lang)
                .unwrap_or_else(|_| ev.text.clone())
        });
        self.notifier.publish(Arc::new(ev), console);
        if let Some(r) = reserved {
            let path = self.seq.path();
            self.write_result("sequence file", &path, r);
        }
        seq
    }

    /// Each sink as `procward sinks` shows it.
    pub fn sink_views(&self) -> Vec<queue::SinkView> {
        lock(&self.sinks).iter().map(|s| s.view()).collect()
    }

    /// The sequence number of the last event emitted.
    /// The renderer events are made with.
    pub fn renderer(&self) -> &Arc<Renderer> {
        &self.renderer
    }

    pub fn last_emitted(&self) -> u64 {
        self.last_emitted
    }

    /// Completes once every event emitted so far is in the journal.
    pub fn journaled(&self) -> tokio::sync::oneshot::Receiver<()> {
        self.notifier.journaled()
    }

    /// Say PW1012 when a write of `what` starts failing, PW1013 when it
    /// works again; nothing while it keeps failing or working.
    pub fn write_result(&mut self, what: &str, path: &Path, r: Result<(), String>) {
        let said = match r {
            Err(e) => self.outages.failed(what, path, &e),
            Ok(()) => self.outages.ok(what, path),
        };
        if let Some(spec) = said {
            self.emit(spec);
        }
    }

    pub fn save_state(&self, snapshot: Pending) {
        self.notifier.save_state(snapshot);
    }

    pub fn save_inflight(&self, r: InFlight) {
        self.notifier.save_inflight(r);
    }

    /// Completes once everything handed over so far is written.
    pub fn synced(&self) -> tokio::sync::oneshot::Receiver<()> {
        self.notifier.synced()
    }

    /// A new configuration: new renderer, language and sinks; what the old
    /// sinks still hold goes to the new ones of the same name.
    pub fn reload(&mut self, cfg: &Config, renderer: Arc<Renderer>) {
        let new =
            start_sinks(cfg, &renderer, &mut self.engine, &self.reporter).unwrap_or_else(|e| {
                eprintln!("procward: {e}; SNMP sinks are not started");
                syslog::start_all(cfg, renderer.clone(), self.reporter.clone())
            });
        // Under the lock the journal thread delivers with: an event goes
        // to the old sinks (and is carried over) or to the new ones.
        spool(cfg, &self.notifier, &new, self.last_emitted);
        let mut sinks = lock(&self.sinks);
        let old = std::mem::replace(&mut *sinks, new);
        queue::abort_all(&old);
        queue::carry_over(&old, &sinks);
        // A sink gone, or no longer acknowledged (now UDP): no cursor
        // holds the journal for it.
        let cursors = self.notifier.cursors();
        for s in old.iter().filter(|s| !acknowledged(cfg, &s.name)) {
            cursors.leave(&s.name);
        }
        self.renderer = renderer;
        self.lang = cfg.daemon.language;
    }

    /// At the end: everything written, the sinks given `grace` to deliver.
    pub async fn finish(&self, snapshot: Pending, grace: Duration) {
        self.notifier.save_state(snapshot);
        self.notifier.sync();
        queue::flush_all(&self.sinks, grace).await;
    }
}
