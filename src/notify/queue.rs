//! What every sink shares: a bounded queue that drops the oldest on
//! overflow, and a delivery loop that takes a message off the queue only
//! once it is delivered, retries with backoff, and reports failure
//! (PW3002), recovery (PW3003) and drops (PW3001) back to the daemon.
//! A sink never carries news of its own failure (no recursion).

use crate::model::event::{msg, Event, EventSpec, Severity};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Reports sink events (PW3xxx) back to the daemon.
pub use crate::store::Reporter;

/// One kind of output: sends one event, or says why it could not.
pub trait Deliver: Send + 'static {
    fn send<'a>(
        &'a mut self,
        ev: &'a Event,
        report: &'a Reporter,
    ) -> impl Future<Output = std::io::Result<()>> + Send + 'a;
    /// Drop the connection after a failure.
    fn reset(&mut self);
    /// After a failure, a send succeeded: is the message really
    /// delivered? Waits at most about `hold` (the sink's hold-down) for
    /// the evidence the transport can give (TCP: acknowledged and not
    /// reset; UDP: no ICMP error came back).
    fn confirm(&mut self, hold: Duration) -> impl Future<Output = std::io::Result<()>> + Send + '_ {
        let _ = hold;
        async { Ok(()) }
    }
}

struct Queue {
    items: Mutex<VecDeque<Arc<Event>>>,
    cap: usize,
    dropped: AtomicU64,
    /// The sequence number of the event being sent (0: none): the front
    /// of the queue, which overflow must not drop (it may be delivered).
    in_flight: AtomicU64,
    notify: Notify,
    stop: AtomicBool,
}

pub struct SinkHandle {
    pub name: String,
    queue: Arc<Queue>,
    min: Severity,
    task: tokio::task::JoinHandle<()>,
}

impl SinkHandle {
    /// `hold`: the sink's hold-down (see [`Deliver::confirm`]).
    pub fn start(
        name: &str,
        min: Severity,
        cap: usize,
        hold: Duration,
        d: impl Deliver,
        report: Reporter,
    ) -> SinkHandle {
        let queue = Arc::new(Queue {
            items: Mutex::new(VecDeque::new()),
            cap,
            dropped: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            notify: Notify::new(),
            stop: AtomicBool::new(false),
        });
        let task = tokio::spawn(deliver(name.to_string(), d, queue.clone(), hold, report));
        SinkHandle {
            name: name.to_string(),
            queue,
            min,
            task,
        }
    }

    pub fn push(&self, ev: Arc<Event>) {
        if !ev.severity.at_least(self.min) {
            return;
        }
        if ev.id.starts_with("PW3")
            && ev.fields.get("sink").and_then(|v| v.as_str()) == Some(&self.name)
        {
            return;
        }
        // A test message for one sink (`test-event --sink`) goes there only.
        let only = (ev.id == msg::TEST_EVENT)
            .then(|| ev.fields.get("sinks").and_then(|v| v.as_str()))
            .flatten()
            .and_then(|s| s.strip_prefix("sink "));
        if only.is_some_and(|s| s != self.name) {
            return;
        }
        let mut q = self.queue.items.lock().expect("queue");
        q.push_back(ev);
        let busy = self.queue.in_flight.load(Ordering::Relaxed);
        while q.len() > self.queue.cap {
            // The oldest goes, unless it is on its way: then the next.
            let at = usize::from(q.front().is_some_and(|f| f.seq == busy) && q.len() > 1);
            q.remove(at);
            self.queue.dropped.fetch_add(1, Ordering::Relaxed);
        }
        drop(q);
        self.queue.notify.notify_one();
    }

    pub fn pending(&self) -> usize {
        self.queue.items.lock().expect("queue").len()
    }
}

pub fn abort_all(sinks: &[SinkHandle]) {
    for s in sinks {
        s.queue.stop.store(true, Ordering::Relaxed);
        s.queue.notify.notify_one();
        s.task.abort();
    }
}

/// Wait (bounded) until every queue is empty.
pub async fn flush_all(sinks: &std::sync::Mutex<Vec<SinkHandle>>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let pending = || {
        let sinks = sinks.lock().unwrap_or_else(|e| e.into_inner());
        sinks.iter().any(|s| s.pending() > 0)
    };
    while Instant::now() < deadline && pending() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Hand pending events from old sinks to new ones of the same name (reload).
pub fn carry_over(old: &[SinkHandle], new: &[SinkHandle]) {
    let by_name: HashMap<&str, &SinkHandle> = new.iter().map(|s| (s.name.as_str(), s)).collect();
    for o in old {
        if let Some(n) = by_name.get(o.name.as_str()) {
            let pending: Vec<Arc<Event>> = o.queue.items.lock().expect("queue").drain(..).collect();
            for ev in pending {
                n.push(ev);
            }
        }
    }
}

/// How often, at most, a sink that keeps failing says how many messages
/// it dropped meanwhile (the first drops of an outage are said at once).
const DROP_REPORT_EVERY: Duration = Duration::from_secs(60);

/// An outage of one sink: from the first failure to a confirmed delivery.
struct Outage {
    since: Instant,
    failures: u64,
}

async fn deliver(
    name: String,
    mut d: impl Deliver,
    queue: Arc<Queue>,
    hold: Duration,
    report: Reporter,
) {
    let mut outage: Option<Outage> = None;
    let mut dropped_said: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    let say_dropped = |report: &Reporter| {
        let dropped = queue.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            report(
                EventSpec::new(msg::SINK_DROPPED)
                    .field("sink", name.as_str())
                    .field("dropped", dropped),
            );
        }
        dropped > 0
    };
    loop {
        let front = {
            let q = queue.items.lock().expect("queue");
            let f = q.front().cloned();
            queue
                .in_flight
                .store(f.as_ref().map_or(0, |f| f.seq), Ordering::Relaxed);
            f
        };
        let Some(ev) = front else {
            if queue.stop.load(Ordering::Relaxed) {
                return;
            }
            queue.notify.notified().await;
            continue;
        };
        let mut r = d.send(&ev, &report).await;
        // After a failure, a send that did not fail is not yet a
        // recovery: only a confirmed delivery is (a UDP send to a port
        // nobody listens on succeeds; the ICMP error comes after).
        if r.is_ok() && outage.is_some() {
            r = d.confirm(hold).await;
        }
        match r {
            Ok(()) => {
                {
                    let mut q = queue.items.lock().expect("queue");
                    if q.front().map(|f| f.seq) == Some(ev.seq) {
                        q.pop_front();
                    }
                    queue.in_flight.store(0, Ordering::Relaxed);
                }
                backoff = Duration::from_millis(100);
                if let Some(o) = outage.take() {
                    let down = humantime::format_duration(Duration::from_secs(
                        o.since.elapsed().as_secs(),
                    ))
                    .to_string();
                    report(
                        EventSpec::new(msg::SINK_RECOVERED)
                            .field("sink", name.as_str())
                            .field("down", down)
                            .field("failures", o.failures),
                    );
                }
                if say_dropped(&report) {
                    dropped_said = None;
                }
            }
            Err(e) => {
                d.reset();
                match &mut outage {
                    Some(o) => o.failures += 1,
                    None => {
                        report(
                            EventSpec::new(msg::SINK_FAILED)
                                .field("sink", name.as_str())
                                .field("error", e.to_string()),
                        );
                        outage = Some(Outage {
                            since: Instant::now(),
                            failures: 1,
                        });
                    }
                }
                // Drops while the receiver stays away are said at once
                // and then at most every DROP_REPORT_EVERY, never lost.
                let due = dropped_said.is_none_or(|t| t.elapsed() >= DROP_REPORT_EVERY);
                if due && say_dropped(&report) {
                    dropped_said = Some(Instant::now());
                }
                if queue.stop.load(Ordering::Relaxed) {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
