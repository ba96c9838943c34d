//! Prometheus/OpenMetrics metrics (opt-in: `daemon.metrics-listen`), with
//! the prometheus-client crate. Names follow process-exporter and
//! systemd_exporter in spirit: one series per target, a state gauge with a
//! `state` label, `_total` counters, `_seconds` histograms.
//!
//! The HTTP side is a few lines by hand (prometheus-client has no server,
//! and one GET needs no HTTP stack): requests are bounded, only
//! `GET /metrics` is served, on a thread of its own, at most 32
//! connections at once, each ended after 5 s; the text is rendered from a
//! status snapshot the event loop publishes at most every 250 ms.

use crate::monitor::TargetStatus;

use crate::model::State;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TargetLabel {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabel {
    pub target: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CheckLabel {
    pub target: String,
    pub check: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ExitLabel {
    pub target: String,
    pub reason: String,
}

/// The event loop's side: counters and histograms it updates as things
/// happen (atomics shared with the exposition), and the status snapshot
/// it publishes when the exposition asks for one.
pub(crate) struct Metrics {
    last_exit: Family<TargetLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    restarts: Family<TargetLabel, Counter>,
    exits: Family<ExitLabel, Counter>,
    detect: Histogram,
    restart: Histogram,
    /// When each target's process last ended, for the restart latency.
    ended: std::collections::HashMap<String, std::time::Instant>,
    snapshot: Arc<Snapshot>,
}

/// One sink as the metrics show it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SinkGauge {
    pub(crate) sink: String,
    pub(crate) up: bool,
    /// Events for it not delivered yet.
    pub(crate) backlog: u64,
    /// An acknowledged sink's cursor.
    pub(crate) cursor: Option<u64>,
    /// Seconds since the oldest event it has not delivered happened.
    pub(crate) oldest_age_s: Option<u64>,
}

/// What the event loop publishes: the targets' status and the sinks.
type Published = (std::time::Instant, Arc<(Vec<TargetStatus>, Vec<SinkGauge>)>);

/// The status the exposition renders from, published by the event loop
/// at most every [`FRESH`] (only while someone scrapes).
struct Snapshot {
    status: tokio::sync::watch::Sender<Published>,
    /// A snapshot was asked for and not yet published.
    wanted: std::sync::atomic::AtomicBool,
}

/// The exposition's side, on the metrics thread: the registry, the
/// per-target gauges filled from the snapshot, the last text rendered.
pub(crate) struct Exposition {
    registry: Registry,
    up: Family<TargetLabel, Gauge>,
    state: Family<StateLabel, Gauge>,
    window: Family<TargetLabel, Gauge>,
    probe_failures: Family<TargetLabel, Gauge>,
    check_failed: Family<CheckLabel, Gauge>,
    check_value: Family<CheckLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    sinks: SinkFamilies,
    snapshot: Arc<Snapshot>,
    /// Asks the event loop for a snapshot (it calls `Metrics::publish`).
    ask: Ask,
    cached: Option<(std::time::Instant, Arc<String>)>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

/// The per-sink gauges.
#[derive(Default)]
struct SinkFamilies {
    up: Family<SinkLabel, Gauge>,
    backlog: Family<SinkLabel, Gauge>,
    cursor: Family<SinkLabel, Gauge>,
    oldest: Family<SinkLabel, Gauge>,
}

impl SinkFamilies {
    fn register(&self, registry: &mut Registry) {
        let families = [
            (
                "sink_up",
                "1 while the sink delivers, 0 during an outage",
                &self.up,
            ),
            (
                "sink_backlog",
                "Events for the sink not delivered yet",
                &self.backlog,
            ),
            (
                "sink_cursor",
                "The last event an acknowledged sink is done with (seq)",
                &self.cursor,
            ),
            (
                "sink_oldest_undelivered_age_seconds",
                "Age of the oldest event the sink has not delivered",
                &self.oldest,
            ),
        ];
        for (name, help, family) in families {
            registry.register(name, help, family.clone());
        }
    }

    fn render(&self, sinks: &[SinkGauge]) {
        for f in [&self.up, &self.backlog, &self.cursor, &self.oldest] {
            f.clear();
        }
        for s in sinks {
            let l = SinkLabel {
                sink: s.sink.clone(),
            };
            self.up.get_or_create(&l).set(i64::from(s.up));
            self.backlog.get_or_create(&l).set(s.backlog as i64);
            if let Some(c) = s.cursor {
                self.cursor.get_or_create(&l).set(c as i64);
            }
            if let Some(a) = s.oldest_age_s {
                self.oldest.get_or_create(&l).set(a as i64);
            }
        }
    }
}

/// How the exposition asks the event loop for a fresh snapshot.
pub(crate) type Ask = Arc<dyn Fn() + Send + Sync>;

/// A scrape is answered from a snapshot and a text at most this old: a
/// flood of scrapes costs the event loop four snapshots a second.
const FRESH: Duration = Duration::from_millis(250);
/// How long a scrape waits for the event loop's snapshot before it
/// answers from the one it has.
const SNAPSHOT_WAIT: Duration = Duration::from_millis(500);
/// Connections served at once; more wait in the listen backlog.
const CONNECTIONS: usize = 32;
/// A connection's whole life: request, answer, close.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Latency buckets: 0.5 ms to ~8 s.
fn buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 15)
}

impl Metrics {
    /// Both sides, sharing the counters; `ask` wakes the event loop.
    pub(crate) fn new(ask: Ask) -> (Metrics, Exposition) {
        let mut registry = Registry::with_prefix("procward");
        let (status, _) = tokio::sync::watch::channel((
            std::time::Instant::now() - FRESH * 2,
            Arc::new((Vec::new(), Vec::new())),
        ));
        let snapshot = Arc::new(Snapshot {
            status,
            wanted: Default::default(),
        });
        let m = Metrics {
            last_exit: Family::default(),
            restarts: Family::default(),
            exits: Family::default(),
            detect: Histogram::new(buckets()),
            restart: Histogram::new(buckets()),
            ended: Default::default(),
            snapshot: snapshot.clone(),
        };
        let e = Exposition {
            registry: Registry::default(),
            up: Family::default(),
            state: Family::default(),
            window: Family::default(),
            probe_failures: Family::default(),
            check_failed: Family::default(),
            check_value: Family::default(),
            sinks: SinkFamilies::default(),
            snapshot,
            ask,
            cached: None,
        };
        registry.register(
            "target_up",
            "1 when the target's processes run and are monitored",
            e.up.clone(),
        );
        registry.register(
            "target_state",
            "1 for the target's current state (label state)",
            e.state.clone(),
        );
        registry.register(
            "retry_window_restarts",
            "Automatic restarts in the target's retry window",
            e.window.clone(),
        );
        registry.register(
            "probe_failures",
            "Consecutive stall probe failures",
            e.probe_failures.clone(),
        );
        registry.register(
            "check_failed",
            "1 while the check has failed for its `for` (PW2042 said, PW2043 not yet)",
            e.check_failed.clone(),
        );
        registry.register(
            "check_value",
            "The check's last reading: bytes, % of one core, a count or seconds (resource checks only)",
            e.check_value.clone(),
        );
        m.register(&mut registry);
        e.sinks.register(&mut registry);
        (m, Exposition { registry, ..e })
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "last_exit_timestamp_seconds",
            "When a process of the target last ended (Unix time)",
            self.last_exit.clone(),
        );
        registry.register(
            "restarts",
            "Restart scripts started (automatic and manual)",
            self.restarts.clone(),
        );
        registry.register(
            "exits",
            "Ends of a target's processes, by reason",
            self.exits.clone(),
        );
        registry.register(
            "detect_seconds",
            "From a process's end (pidfd wake-up) to procward's decision",
            self.detect.clone(),
        );
        registry.register(
            "restart_seconds",
            "From a process's end to its restart script running",
            self.restart.clone(),
        );
    }

    /// Whether the exposition waits for a snapshot (`publish` it then).
    pub(crate) fn wanted(&self) -> bool {
        self.snapshot
            .wanted
            .swap(false, std::sync::atomic::Ordering::AcqRel)
    }

    /// The status the next scrapes render.
    pub(crate) fn publish(&self, status: Vec<TargetStatus>, sinks: Vec<SinkGauge>) {
        self.snapshot
            .status
            .send_replace((std::time::Instant::now(), Arc::new((status, sinks))));
    }

    /// A process ended at `woke` (its pidfd); procward decided just now.
    pub(crate) fn exited(
        &mut self,
        target: &str,
        reason: &str,
        woke: std::time::Instant,
        at_ms: u64,
    ) {
        self.ended.insert(target.to_string(), woke);
        let detect = woke.elapsed();
        self.exits
            .get_or_create(&ExitLabel {
                target: target.into(),
                reason: reason.into(),
            })
            .inc();
        self.last_exit
            .get_or_create(&TargetLabel {
                target: target.into(),
            })
            .set(at_ms as f64 / 1000.0);
        self.detect.observe(detect.as_secs_f64());
    }

    /// A restart script runs now.
    pub(crate) fn restarted(&mut self, target: &str) {
        let since_exit = self.ended.remove(target).map(|t| t.elapsed());
        self.restarts
            .get_or_create(&TargetLabel {
                target: target.into(),
            })
            .inc();
        if let Some(d) = since_exit {
            self.restart.observe(d.as_secs_f64());
        }
    }
}

impl Exposition {
    /// The exposition text: the cached one while fresh, else rendered from
    /// a snapshot the event loop is asked for (waited for a little).
    async fn text(&mut self) -> Arc<String> {
        if let Some((at, text)) = &self.cached {
            if at.elapsed() < FRESH {
                return text.clone();
            }
        }
        let mut rx = self.snapshot.status.subscribe();
        if rx.borrow().0.elapsed() >= FRESH {
            let first = !self
                .snapshot
                .wanted
                .swap(true, std::sync::atomic::Ordering::AcqRel);
            if first {
                (self.ask)();
            }
            rx.mark_unchanged();
            let _ = tokio::time::timeout(SNAPSHOT_WAIT, rx.changed()).await;
        }
        let published = rx.borrow().1.clone();
        self.sinks.render(&published.1);
        let text = Arc::new(self.render(&published.0));
        self.cached = Some((std::time::Instant::now(), text.clone()));
        text
    }

    /// The exposition text, with the per-target gauges from `status`.
    pub(crate) fn render(&self, status: &[TargetStatus]) -> String {
        self.up.clear();
        self.state.clear();
        self.window.clear();
        self.probe_failures.clear();
        self.check_failed.clear();
        self.check_value.clear();
        for t in status {
            self.render_checks(t);
            let l = TargetLabel {
                target: t.target.clone(),
            };
            self.up
                .get_or_create(&l)
                .set(i64::from(matches!(t.state, State::Up | State::Degraded)));
            self.window
                .get_or_create(&l)
                .set(t.restarts_in_window as i64);
            self.probe_failures
                .get_or_create(&l)
                .set(i64::from(t.probe_failures));
            for s in State::ALL {
                self.state
                    .get_or_create(&StateLabel {
                        target: t.target.clone(),
                        state: s.as_str().into(),
                    })
                    .set(i64::from(t.state == s));
            }
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn render_checks(&self, t: &TargetStatus) {
        for c in &t.checks {
            let l = CheckLabel {
                target: t.target.clone(),
                check: c.name.clone(),
                kind: c.kind.clone(),
            };
            self.check_failed
                .get_or_create(&l)
                .set(i64::from(c.state == "failed"));
            if let Some(v) = c.measured {
                self.check_value.get_or_create(&l).set(v);
            }
        }
    }
}

/// Serve `GET /metrics` on `listener` from a thread of its own (its own
/// runtime): a flood of scrapes, or of connections that never read the
/// answer, never takes time from monitoring, restarts or control.
pub(crate) fn start(
    listener: std::net::TcpListener,
    exposition: Exposition,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("procward-metrics".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(l) = tokio::net::TcpListener::from_std(listener) {
                    serve(l, exposition).await;
                }
            });
        })?;
    Ok(())
}

/// Accept at most [`CONNECTIONS`] at once, each bounded in time and size.
async fn serve(listener: tokio::net::TcpListener, exposition: Exposition) {
    let exposition = Arc::new(tokio::sync::Mutex::new(exposition));
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let exposition = exposition.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, answer(stream, &exposition)).await;
            drop(slot);
        });
    }
}

/// One connection: the request head (at most 8 KiB), the answer, close.
async fn answer(mut stream: tokio::net::TcpStream, exposition: &tokio::sync::Mutex<Exposition>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let ok = line.starts_with(b"GET /metrics ") || line.starts_with(b"GET /metrics?");
    let (status, body) = if ok {
        ("200 OK", exposition.lock().await.text().await)
    } else {
        (
            "404 Not Found",
            Arc::new("only GET /metrics is served\n".to_string()),
        )
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}
