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
    /// The lowest seq sent that the receiver has not acknowledged yet
    /// (`None`: all of it, or the transport cannot tell: a successful
    /// send is then the delivery). An acknowledged sink's cursor stays
    /// below it.
    fn unacknowledged(&mut self) -> Option<u64> {
        None
    }
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
    /// The least severity the sink takes.
    min: Severity,
    dropped: AtomicU64,
    /// The sequence number of the event being sent (0: none): the front
    /// of the queue, which overflow must not drop (it may be delivered).
    in_flight: AtomicU64,
    notify: Notify,
    stop: AtomicBool,
    /// An acknowledged sink's place in the journal (`SinkHandle::spool`).
    spool: std::sync::OnceLock<Spool>,
    /// The outage under way: since when (ms) and its first error.
    failing: Mutex<Option<(u64, String)>>,
    /// An acknowledged sink: events for it not delivered yet (in memory or
    /// in the journal). Signed: deliveries may be counted before the
    /// start-up count of the journal is added.
    backlog: std::sync::atomic::AtomicI64,
}

/// What `procward sinks` shows of one sink, as the loop sees it.
#[derive(Debug, Clone)]
pub struct SinkView {
    pub name: String,
    pub min: Severity,
    /// Events in memory waiting for delivery, and the time of the oldest.
    pub queued: usize,
    pub oldest_ms: Option<u64>,
    /// The outage under way: since when (ms) and its first error.
    pub failing: Option<(u64, String)>,
    /// An acknowledged sink's cursor (the last event it is done with).
    pub cursor: Option<u64>,
    /// Events for it not delivered yet (acknowledged sinks: in memory or in
    /// the journal; the others: in memory).
    pub backlog: u64,
}

/// An acknowledged sink reads the journal through a cursor: what it has
/// delivered moves its cursor (saved in STATE-DIR/cursors), and what does
/// not fit its queue is left in the journal, not dropped: the sink takes
/// it from there, oldest first, once the queue has room. After a restart
/// of procward it starts again after its cursor.
pub struct Spool {
    pub dir: std::path::PathBuf,
    pub cursors: Arc<crate::store::cursor::Cursors>,
    /// Tell the store a cursor moved (saved with the next group fsync).
    pub moved: Arc<dyn Fn() + Send + Sync>,
    /// Guarded by the queue's lock: see `Spilled`.
    spilled: Mutex<Spilled>,
}

/// What of the journal is not in the queue.
#[derive(Debug, Default, Clone, Copy)]
struct Spilled {
    /// Events after this seq are in the journal only (`None`: the queue
    /// has everything).
    after: Option<u64>,
    /// The highest seq offered to the sink (kept, left or not for it).
    seen: u64,
}

impl Spool {
    pub fn new(
        dir: &std::path::Path,
        cursors: Arc<crate::store::cursor::Cursors>,
        moved: Arc<dyn Fn() + Send + Sync>,
    ) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
            cursors,
            moved,
            spilled: Mutex::new(Spilled::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Spilled> {
        self.spilled.lock().unwrap_or_else(|e| e.into_inner())
    }
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
            min,
            dropped: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            notify: Notify::new(),
            stop: AtomicBool::new(false),
            spool: std::sync::OnceLock::new(),
            failing: Mutex::new(None),
            backlog: std::sync::atomic::AtomicI64::new(0),
        });
        let task = tokio::spawn(deliver(name.to_string(), d, queue.clone(), hold, report));
        SinkHandle {
            name: name.to_string(),
            queue,
            min,
            task,
        }
    }

    /// Read the journal through `spool` from now on: from the sink's
    /// cursor (`start` for a sink never seen: from now).
    pub fn spool(&self, spool: Spool, start: u64, last: u64) {
        // A sink of the same name before a reload: where it got to.
        let from = match spool.cursors.position(&self.name) {
            Some(p) => p,
            None => spool.cursors.join(&self.name, start),
        };
        if from < last {
            *spool.lock() = Spilled {
                after: Some(from),
                seen: last,
            };
            // What the journal has for it up to `last` (later events are
            // counted as they come).
            let (dir, name, min, queue) = (
                spool.dir.clone(),
                self.name.clone(),
                self.min,
                self.queue.clone(),
            );
            tokio::task::spawn_blocking(move || {
                let mut n = 0;
                crate::store::journal::scan_after(&dir, from, |ev| {
                    n += i64::from(ev.seq <= last && wanted(&name, min, &ev));
                    ev.seq < last
                });
                queue.backlog.fetch_add(n, Ordering::Relaxed);
            });
        }
        let _ = self.queue.spool.set(spool);
        self.queue.notify.notify_one();
    }

    pub fn push(&self, ev: Arc<Event>) {
        if let Some(sp) = self.queue.spool.get() {
            self.push_spooled(sp, ev);
            return;
        }
        if !wanted(&self.name, self.min, &ev) {
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

    /// An acknowledged sink: into the queue while it has room and nothing
    /// waits in the journal; else the journal keeps it for later.
    fn push_spooled(&self, sp: &Spool, ev: Arc<Event>) {
        let mut q = self.queue.items.lock().expect("queue");
        let mut spilled = sp.lock();
        spilled.seen = spilled.seen.max(ev.seq);
        let for_it = wanted(&self.name, self.min, &ev);
        if for_it {
            self.queue.backlog.fetch_add(1, Ordering::Relaxed);
        }
        if spilled.after.is_some() || !for_it {
            // Not for the queue; the sink's cursor may pass it.
            let idle = q.is_empty();
            drop((q, spilled));
            if idle {
                self.queue.notify.notify_one();
            }
            return;
        }
        if q.len() >= self.queue.cap {
            spilled.after = q.back().map(|b| b.seq);
            return;
        }
        q.push_back(ev);
        drop((q, spilled));
        self.queue.notify.notify_one();
    }

    /// What `procward sinks` shows of it.
    pub fn view(&self) -> SinkView {
        let q = self.queue.items.lock().expect("queue");
        let failing = self.queue.failing.lock().unwrap_or_else(|e| e.into_inner());
        SinkView {
            name: self.name.clone(),
            min: self.min,
            queued: q.len(),
            oldest_ms: q.front().map(|e| e.time_ms),
            failing: failing.clone(),
            cursor: self
                .queue
                .spool
                .get()
                .and_then(|sp| sp.cursors.position(&self.name)),
            backlog: match self.queue.spool.get() {
                Some(_) => self.queue.backlog.load(Ordering::Relaxed).max(0) as u64,
                None => q.len() as u64,
            },
        }
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

/// Is `ev` for the sink `name` (at least `min`; not its own PW3xxx; a
/// test message for another sink only is not)?
pub(crate) fn wanted(name: &str, min: Severity, ev: &Event) -> bool {
    if !ev.severity.at_least(min) {
        return false;
    }
    if ev.id.starts_with("PW3") && ev.fields.get("sink").and_then(|v| v.as_str()) == Some(name) {
        return false;
    }
    // A test message for one sink (`test-event --sink`) goes there only.
    let only = (ev.id == msg::TEST_EVENT)
        .then(|| ev.fields.get("sinks").and_then(|v| v.as_str()))
        .flatten()
        .and_then(|s| s.strip_prefix("sink "));
    only.is_none_or(|s| s == name)
}

/// Hand pending events from old sinks to new ones of the same name (reload).
pub fn carry_over(old: &[SinkHandle], new: &[SinkHandle]) {
    let by_name: HashMap<&str, &SinkHandle> = new.iter().map(|s| (s.name.as_str(), s)).collect();
    // A sink reading the journal takes it up from its cursor instead.
    for o in old.iter().filter(|o| o.queue.spool.get().is_none()) {
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

/// Events the journal has after `after` for this sink, into its queue
/// (at most its capacity), oldest first; once the queue has everything,
/// live events go into it again.
async fn refill(name: &str, queue: &Arc<Queue>, after: u64) {
    let Some(sp) = queue.spool.get() else {
        return;
    };
    let (dir, cap) = (sp.dir.clone(), queue.cap);
    let read =
        tokio::task::spawn_blocking(move || crate::store::journal::read_after(&dir, after, cap))
            .await
            .unwrap_or_default();
    let last_read = read.last().map_or(after, |e| e.seq);
    let min = queue.min;
    let mut q = queue.items.lock().expect("queue");
    let mut spilled = sp.lock();
    q.extend(
        read.into_iter()
            .filter(|e| wanted(name, min, e))
            .map(Arc::new),
    );
    // Caught up when nothing was offered since what was read. Nothing
    // read at all: what was offered is not in the journal (its write
    // failed, PW1012): nothing more to take from there.
    spilled.after = (spilled.seen > last_read && last_read > after).then_some(last_read);
}

/// How often an acknowledged sink looks for the receiver's
/// acknowledgements when it has nothing else to do.
const ACK_POLL: Duration = Duration::from_millis(100);

/// An acknowledged sink's cursor: up to `sent`, but below what the
/// receiver has not acknowledged.
fn move_cursor(name: &str, queue: &Queue, sent: u64, d: &mut impl Deliver) {
    let Some(sp) = queue.spool.get() else {
        return;
    };
    let done = match d.unacknowledged() {
        Some(u) => sent.min(u.saturating_sub(1)),
        None => sent,
    };
    if sp.cursors.position(name).is_some_and(|p| p < done) {
        sp.cursors.done(name, done);
        (sp.moved)();
    }
}

/// `ev` is delivered: off the queue. Returns what an acknowledged sink
/// has now sent: `ev`, or everything offered when nothing else waits.
fn pop_delivered(queue: &Queue, ev: &Event, sent: u64) -> u64 {
    let mut q = queue.items.lock().expect("queue");
    let popped = q.front().map(|f| f.seq) == Some(ev.seq);
    if popped {
        q.pop_front();
    }
    queue.in_flight.store(0, Ordering::Relaxed);
    let Some(sp) = queue.spool.get() else {
        return sent;
    };
    if popped {
        queue.backlog.fetch_sub(1, Ordering::Relaxed);
    }
    let spilled = sp.lock();
    if q.is_empty() && spilled.after.is_none() {
        spilled.seen.max(ev.seq)
    } else {
        ev.seq
    }
}

/// PW3003: the outage `o` of sink `name` is over.
fn say_recovered(name: &str, o: Outage, report: &Reporter) {
    let down = humantime::format_duration(Duration::from_secs(o.since.elapsed().as_secs()));
    report(
        EventSpec::new(msg::SINK_RECOVERED)
            .field("sink", name)
            .field("down", down.to_string())
            .field("failures", o.failures),
    );
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
    // The highest seq this sink is done with once the receiver has
    // acknowledged what was sent (acknowledged sinks).
    let mut sent = 0u64;
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
            if let Some(after) = queue.spool.get().and_then(|s| s.lock().after) {
                refill(&name, &queue, after).await;
                continue;
            }
            if let Some(sp) = queue.spool.get() {
                // Everything offered is sent (or not for this sink).
                sent = sent.max(sp.lock().seen);
                move_cursor(&name, &queue, sent, &mut d);
                if d.unacknowledged().is_some() {
                    // Sent, not yet acknowledged: look again shortly.
                    let _ = tokio::time::timeout(ACK_POLL, queue.notify.notified()).await;
                    continue;
                }
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
                sent = pop_delivered(&queue, &ev, sent);
                move_cursor(&name, &queue, sent, &mut d);
                backoff = Duration::from_millis(100);
                if let Some(o) = outage.take() {
                    say_recovered(&name, o, &report);
                    *queue.failing.lock().unwrap_or_else(|e| e.into_inner()) = None;
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
                        *queue.failing.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some((crate::model::event::now_ms(), e.to_string()));
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
