//! What every sink shares: a bounded queue that drops the oldest on
//! overflow, and a delivery loop that takes a message off the queue only
//! once it is delivered, retries with backoff, and reports failure
//! (PW3002), recovery (PW3003) and drops (PW3001) back to the daemon.
//! A sink never carries news of its own failure (no recursion).

use crate::event::{msg, Event, EventSpec, Severity};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Reports sink events (PW3xxx) back to the daemon.
pub type Reporter = Arc<dyn Fn(EventSpec) + Send + Sync>;

/// One kind of output: sends one event, or says why it could not.
pub trait Deliver: Send + 'static {
    fn send<'a>(
        &'a mut self,
        ev: &'a Event,
        report: &'a Reporter,
    ) -> impl Future<Output = std::io::Result<()>> + Send + 'a;
    /// Drop the connection after a failure.
    fn reset(&mut self);
}

struct Queue {
    items: Mutex<VecDeque<Arc<Event>>>,
    cap: usize,
    dropped: AtomicU64,
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
    pub fn start(
        name: &str,
        min: Severity,
        cap: usize,
        d: impl Deliver,
        report: Reporter,
    ) -> SinkHandle {
        let queue = Arc::new(Queue {
            items: Mutex::new(VecDeque::new()),
            cap,
            dropped: AtomicU64::new(0),
            notify: Notify::new(),
            stop: AtomicBool::new(false),
        });
        let task = tokio::spawn(deliver(name.to_string(), d, queue.clone(), report));
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
        let mut q = self.queue.items.lock().expect("queue");
        q.push_back(ev);
        while q.len() > self.queue.cap {
            q.pop_front();
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
pub async fn flush_all(sinks: &[SinkHandle], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && sinks.iter().any(|s| s.pending() > 0) {
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

async fn deliver(name: String, mut d: impl Deliver, queue: Arc<Queue>, report: Reporter) {
    let mut failing: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let front = queue.items.lock().expect("queue").front().cloned();
        let Some(ev) = front else {
            if queue.stop.load(Ordering::Relaxed) {
                return;
            }
            queue.notify.notified().await;
            continue;
        };
        match d.send(&ev, &report).await {
            Ok(()) => {
                {
                    let mut q = queue.items.lock().expect("queue");
                    if q.front().map(|f| f.seq) == Some(ev.seq) {
                        q.pop_front();
                    }
                }
                backoff = Duration::from_millis(100);
                if let Some(since) = failing.take() {
                    let down =
                        humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()))
                            .to_string();
                    report(
                        EventSpec::new(msg::SINK_RECOVERED)
                            .field("sink", name.as_str())
                            .field("down", down),
                    );
                }
                let dropped = queue.dropped.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    report(
                        EventSpec::new(msg::SINK_DROPPED)
                            .field("sink", name.as_str())
                            .field("dropped", dropped),
                    );
                }
            }
            Err(e) => {
                d.reset();
                if failing.is_none() {
                    report(
                        EventSpec::new(msg::SINK_FAILED)
                            .field("sink", name.as_str())
                            .field("error", e.to_string()),
                    );
                    failing = Some(Instant::now());
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
