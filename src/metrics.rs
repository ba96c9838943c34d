//! Prometheus/OpenMetrics metrics (opt-in: `daemon.metrics-listen`), with
//! the prometheus-client crate. Names follow process-exporter and
//! systemd_exporter in spirit: one series per target, a state gauge with a
//! `state` label, `_total` counters, `_seconds` histograms.
//!
//! The HTTP side is a few lines by hand (prometheus-client has no server,
//! and one GET needs no HTTP stack): requests are bounded, only
//! `GET /metrics` is served.

use crate::monitor::{State, TargetStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub target: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExitLabel {
    pub target: String,
    pub reason: String,
}

const STATES: [State; 12] = [
    State::Waiting,
    State::Up,
    State::Stalled,
    State::Down,
    State::Backoff,
    State::Restarting,
    State::Stopping,
    State::Settling,
    State::RetryOver,
    State::Failed,
    State::Paused,
    State::Stopped,
];

pub struct Metrics {
    registry: Registry,
    up: Family<TargetLabel, Gauge>,
    state: Family<StateLabel, Gauge>,
    window: Family<TargetLabel, Gauge>,
    probe_failures: Family<TargetLabel, Gauge>,
    last_exit: Family<TargetLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    restarts: Family<TargetLabel, Counter>,
    exits: Family<ExitLabel, Counter>,
    detect: Histogram,
    restart: Histogram,
    /// When each target's process last ended, for the restart latency.
    ended: std::collections::HashMap<String, std::time::Instant>,
}

/// Latency buckets: 0.5 ms to ~8 s.
fn buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 15)
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("procward");
        let m = Metrics {
            up: Family::default(),
            state: Family::default(),
            window: Family::default(),
            probe_failures: Family::default(),
            last_exit: Family::default(),
            restarts: Family::default(),
            exits: Family::default(),
            detect: Histogram::new(buckets()),
            restart: Histogram::new(buckets()),
            ended: Default::default(),
            registry: Registry::default(),
        };
        registry.register(
            "target_up",
            "1 when the target's processes run and are monitored",
            m.up.clone(),
        );
        registry.register(
            "target_state",
            "1 for the target's current state (label state)",
            m.state.clone(),
        );
        registry.register(
            "retry_window_restarts",
            "Automatic restarts in the target's retry window",
            m.window.clone(),
        );
        registry.register(
            "probe_failures",
            "Consecutive stall probe failures",
            m.probe_failures.clone(),
        );
        registry.register(
            "last_exit_timestamp_seconds",
            "When a process of the target last ended (Unix time)",
            m.last_exit.clone(),
        );
        registry.register(
            "restarts",
            "Restart scripts started (automatic and manual)",
            m.restarts.clone(),
        );
        registry.register(
            "exits",
            "Ends of a target's processes, by reason",
            m.exits.clone(),
        );
        registry.register(
            "detect_seconds",
            "From a process's end (pidfd wake-up) to procward's decision",
            m.detect.clone(),
        );
        registry.register(
            "restart_seconds",
            "From a process's end to its restart script running",
            m.restart.clone(),
        );
        Metrics { registry, ..m }
    }

    /// A process ended at `woke` (its pidfd); procward decided just now.
    pub fn exited(&mut self, target: &str, reason: &str, woke: std::time::Instant, at_ms: u64) {
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
    pub fn restarted(&mut self, target: &str) {
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

    /// The exposition text, with the per-target gauges from `status`.
    pub fn render(&self, status: &[TargetStatus]) -> String {
        self.up.clear();
        self.state.clear();
        self.window.clear();
        self.probe_failures.clear();
        for t in status {
            let l = TargetLabel {
                target: t.target.clone(),
            };
            self.up
                .get_or_create(&l)
                .set(i64::from(t.state == State::Up));
            self.window
                .get_or_create(&l)
                .set(t.restarts_in_window as i64);
            self.probe_failures
                .get_or_create(&l)
                .set(i64::from(t.probe_failures));
            for s in STATES {
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
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Asks the daemon for the exposition text.
pub type Scrape = std::sync::Arc<dyn Fn() -> tokio::sync::oneshot::Receiver<String> + Send + Sync>;

/// Serve `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, scrape: Scrape) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let scrape = scrape.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                // The request head, bounded: nothing past 8 KiB is read.
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
                    match scrape().await {
                        Ok(text) => ("200 OK", text),
                        Err(_) => ("503 Service Unavailable", "procward is stopping\n".into()),
                    }
                } else {
                    ("404 Not Found", "only GET /metrics is served\n".into())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(resp.as_bytes()).await;
                let _ = stream.shutdown().await;
            })
            .await;
        });
    }
}
