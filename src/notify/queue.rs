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
    /// Nothing new to send and something unacknowledged: a transport
    /// whose connection broke sends it again now, not with the next event.
    fn resend(&mut self) -> impl Future<Output = std::io::Result<()>> + Send + '_ {
        async { Ok(()) }
    }
    /// The queue is empty: write what the transport buffered.
    fn flush(&mut self) -> impl Future<Output = std::io::Result<()>> + Send + '_ {
        async { Ok(()) }
    }
    /// The sink stops (daemon stop, reload): end the session in order.
    fn close(&mut self) -> impl Future<Output = ()> + Send + '_ {
        async {}
    }
}

struct Queue {
    items: Mutex<VecDeque<Arc<Event>>>,
    cap: usize,
    /// The least severity the sink takes.
    min: Severity,
    /// Events dropped and not said yet (PW3001).
    dropped: Mutex<Dropped>,
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
    /// The receiver has acknowledged everything sent (or the transport
    /// cannot tell).
    acked: AtomicBool,
}

/// Events given up and not said yet: how many, the seq range they lie in,
/// and why (the `cause` of PW3001).
#[derive(Debug, Default, Clone, Copy)]
struct Dropped {
    range: crate::store::cursor::GivenUp,
    spool_max: bool,
}

/// An acknowledged sink keeps at most this many events in memory (its
/// `queue` if smaller): the rest wait in the journal, read as needed, so
/// a receiver away for hours costs disk, not memory.
const READ_AHEAD: usize = 1000;

impl Queue {
    /// What an acknowledged sink holds in memory at most.
    fn read_ahead(&self) -> usize {
        self.cap.min(READ_AHEAD)
    }

    fn lock_dropped(&self) -> std::sync::MutexGuard<'_, Dropped> {
        self.dropped.lock().unwrap_or_else(|e| e.into_inner())
    }
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
    /// Where the last read from the journal stopped.
    place: Mutex<Option<crate::store::journal::Place>>,
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
            place: Mutex::new(None),
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
            dropped: Mutex::new(Dropped::default()),
            in_flight: AtomicU64::new(0),
            notify: Notify::new(),
            stop: AtomicBool::new(false),
            spool: std::sync::OnceLock::new(),
            failing: Mutex::new(None),
            backlog: std::sync::atomic::AtomicI64::new(0),
            acked: AtomicBool::new(true),
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
        let (name, min) = (self.name.clone(), self.min);
        spool.cursors.want(
            &self.name,
            Arc::new(move |ev: &Event| wanted(&name, min, ev)),
        );
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
            if let Some(gone) = q.remove(at) {
                self.queue.lock_dropped().range.add(1, gone.seq, gone.seq);
            }
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
        if q.len() >= self.queue.read_ahead() {
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

    /// Stop after the event being sent: the loop ends its session in
    /// order and returns.
    fn stop(&self) {
        self.queue.stop.store(true, Ordering::Relaxed);
        self.queue.notify.notify_one();
    }

    pub fn pending(&self) -> usize {
        self.queue.items.lock().expect("queue").len()
    }
}

/// Stop the sinks (a reload replaced them): each ends its session in
/// order (RELP `close`, TLS close_notify) and is aborted after a grace.
pub fn abort_all(sinks: &[SinkHandle]) {
    for s in sinks {
        s.stop();
        let task = s.task.abort_handle();
        tokio::spawn(async move {
            tokio::time::sleep(CLOSE_GRACE).await;
            task.abort();
        });
    }
}

/// How long a stopping sink may take to end its session in order.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Wait (bounded) until every queue is empty and every receiver has
/// acknowledged what it was sent; then end the sessions in order.
pub async fn flush_all(sinks: &std::sync::Mutex<Vec<SinkHandle>>, timeout: Duration) {
    let lock = || sinks.lock().unwrap_or_else(|e| e.into_inner());
    let deadline = Instant::now() + timeout;
    let pending = |s: &SinkHandle| s.pending() > 0 || !s.queue.acked.load(Ordering::Relaxed);
    while Instant::now() < deadline && lock().iter().any(pending) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lock().iter().for_each(SinkHandle::stop);
    let close_by = Instant::now() + CLOSE_GRACE;
    while Instant::now() < close_by && lock().iter().any(|s| !s.task.is_finished()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lock().iter().for_each(|s| s.task.abort());
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
    let (dir, cap) = (sp.dir.clone(), queue.read_ahead());
    let mut place = *sp.place.lock().unwrap_or_else(|e| e.into_inner());
    let (read, place) = tokio::task::spawn_blocking(move || {
        let read = crate::store::journal::read_after_at(&dir, after, cap, &mut place);
        (read, place)
    })
    .await
    .unwrap_or_default();
    *sp.place.lock().unwrap_or_else(|e| e.into_inner()) = place;
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
    if sp.cursors.position(name).is_some_and(|p| p < done) && sp.cursors.done(name, done) {
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

/// The delivery loop of one sink and what it remembers between events.
struct Loop<D: Deliver> {
    name: String,
    d: D,
    queue: Arc<Queue>,
    hold: Duration,
    report: Reporter,
    outage: Option<Outage>,
    dropped_said: Option<Instant>,
    backoff: Duration,
    /// The highest seq this sink is done with once the receiver has
    /// acknowledged what was sent (acknowledged sinks).
    sent: u64,
}

/// What the loop does when its queue is empty.
enum Idle {
    /// Look at the queue again now.
    Again,
    /// Stop: the sink is being replaced or the daemon stops.
    Stop,
}

impl<D: Deliver> Loop<D> {
    /// Say how many events were dropped, if any.
    fn say_dropped(&self) -> bool {
        let d = std::mem::take(&mut *self.queue.lock_dropped());
        let r = d.range;
        if r.count > 0 {
            let cause = if d.spool_max {
                "spool-max reached"
            } else {
                "queue full while the receiver was unreachable"
            };
            (self.report)(
                EventSpec::new(msg::SINK_DROPPED)
                    .field("sink", self.name.as_str())
                    .field("dropped", r.count)
                    .field("from_seq", r.first)
                    .field("to_seq", r.last)
                    .field("cause", cause),
            );
        }
        r.count > 0
    }

    /// The store removed journal events this sink had not delivered
    /// (daemon.spool-max): off its queue too, and said at once (PW3001).
    fn take_given_up(&mut self) {
        let Some(sp) = self.queue.spool.get() else {
            return;
        };
        let Some(g) = sp.cursors.take_given_up(&self.name) else {
            return;
        };
        {
            let mut q = self.queue.items.lock().expect("queue");
            q.retain(|e| e.seq > g.last);
            let mut spilled = sp.lock();
            if spilled.after.is_some_and(|a| a < g.last) {
                spilled.after = Some(g.last);
            }
        }
        self.queue
            .backlog
            .fetch_sub(g.count as i64, Ordering::Relaxed);
        self.sent = self.sent.max(g.last);
        {
            let mut d = self.queue.lock_dropped();
            d.range.add(g.count, g.first, g.last);
            d.spool_max = true;
        }
        self.say_dropped();
    }

    fn front(&self) -> Option<Arc<Event>> {
        let q = self.queue.items.lock().expect("queue");
        let f = q.front().cloned();
        self.queue
            .in_flight
            .store(f.as_ref().map_or(0, |f| f.seq), Ordering::Relaxed);
        f
    }

    /// Nothing in the queue: take more from the journal, move the cursor
    /// over what the receiver acknowledged, send again what a broken
    /// connection owes, or wait for the next event.
    async fn idle(&mut self) -> Idle {
        if self.queue.stop.load(Ordering::Relaxed) {
            self.d.close().await;
            return Idle::Stop;
        }
        if let Err(e) = self.d.flush().await {
            return self.failed(e).await;
        }
        let Some(sp) = self.queue.spool.get() else {
            self.queue.notify.notified().await;
            return Idle::Again;
        };
        let after = sp.lock().after;
        if let Some(after) = after {
            refill(&self.name, &self.queue, after).await;
            return Idle::Again;
        }
        // Everything offered is sent (or not for this sink).
        self.sent = self.sent.max(sp.lock().seen);
        move_cursor(&self.name, &self.queue, self.sent, &mut self.d);
        if self.d.unacknowledged().is_none() {
            self.queue.acked.store(true, Ordering::Relaxed);
            self.queue.notify.notified().await;
            return Idle::Again;
        }
        self.queue.acked.store(false, Ordering::Relaxed);
        if let Err(e) = self.d.resend().await {
            return self.failed(e).await;
        }
        // Sent, not yet acknowledged: look again shortly.
        let _ = tokio::time::timeout(ACK_POLL, self.queue.notify.notified()).await;
        Idle::Again
    }

    fn delivered(&mut self, ev: &Event) {
        self.sent = pop_delivered(&self.queue, ev, self.sent);
        move_cursor(&self.name, &self.queue, self.sent, &mut self.d);
        self.backoff = Duration::from_millis(100);
        if let Some(o) = self.outage.take() {
            say_recovered(&self.name, o, &self.report);
            *self.queue.failing.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        if self.say_dropped() {
            self.dropped_said = None;
        }
    }

    /// A send failed: PW3002 once per outage, then back off.
    async fn failed(&mut self, e: std::io::Error) -> Idle {
        self.d.reset();
        match &mut self.outage {
            Some(o) => o.failures += 1,
            None => {
                (self.report)(
                    EventSpec::new(msg::SINK_FAILED)
                        .field("sink", self.name.as_str())
                        .field("error", e.to_string()),
                );
                self.outage = Some(Outage {
                    since: Instant::now(),
                    failures: 1,
                });
                *self.queue.failing.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((crate::model::event::now_ms(), e.to_string()));
            }
        }
        // Drops while the receiver stays away are said at once
        // and then at most every DROP_REPORT_EVERY, never lost.
        let due = self
            .dropped_said
            .is_none_or(|t| t.elapsed() >= DROP_REPORT_EVERY);
        if due && self.say_dropped() {
            self.dropped_said = Some(Instant::now());
        }
        if self.queue.stop.load(Ordering::Relaxed) {
            return Idle::Stop;
        }
        // Woken early by a stop (not by new events: they wait in the
        // queue or the journal until the backoff is over).
        let until = tokio::time::Instant::now() + self.backoff;
        while tokio::time::Instant::now() < until && !self.queue.stop.load(Ordering::Relaxed) {
            let _ = tokio::time::timeout_at(until, self.queue.notify.notified()).await;
        }
        self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
        Idle::Again
    }

    async fn run(mut self) {
        loop {
            if self.queue.stop.load(Ordering::Relaxed) {
                self.d.close().await;
                return;
            }
            self.take_given_up();
            let Some(ev) = self.front() else {
                match self.idle().await {
                    Idle::Again => continue,
                    Idle::Stop => return,
                }
            };
            self.queue.acked.store(false, Ordering::Relaxed);
            let mut r = self.d.send(&ev, &self.report).await;
            // After a failure, a send that did not fail is not yet a
            // recovery: only a confirmed delivery is (a UDP send to a port
            // nobody listens on succeeds; the ICMP error comes after).
            if r.is_ok() && self.outage.is_some() {
                r = self.d.confirm(self.hold).await;
            }
            match r {
                Ok(()) => self.delivered(&ev),
                Err(e) => {
                    if let Idle::Stop = self.failed(e).await {
                        return;
                    }
                }
            }
        }
    }
}

async fn deliver(
    name: String,
    d: impl Deliver,
    queue: Arc<Queue>,
    hold: Duration,
    report: Reporter,
) {
    let l = Loop {
        name,
        d,
        queue,
        hold,
        report,
        outage: None,
        dropped_said: None,
        backoff: Duration::from_millis(100),
        sent: 0,
    };
    l.run().await;
}
