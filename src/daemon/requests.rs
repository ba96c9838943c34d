//! Control requests and reloads: operator commands go to the core, a
//! reload is validated off the loop and applied whole or not at all.

use super::{load_all_reusing, Daemon, Loaded, Msg, Reuse};
use crate::config::Config;
use crate::control::server;
use crate::control::{Request, Response};
use crate::model::event::{msg, now_ms, EventSpec};
use crate::model::TargetId;
use crate::monitor::Command;
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::oneshot;

/// Test messages emitted per loop turn.
const TEST_BATCH: u32 = 500;

/// A `test-event` request under way.
pub(super) struct TestRun {
    /// The next message's number (1-based).
    next: u32,
    count: u32,
    /// "every sink" or "sink NAME" (the `sinks` field).
    sinks: String,
    user: String,
    /// The first message's sequence number.
    first: u64,
    reply: oneshot::Sender<Response>,
}

impl Daemon {
    pub(super) fn emit_denied(&mut self, uid: u32, user: String, count: u64) {
        self.out.emit(
            EventSpec::new(msg::CONTROL_DENIED)
                .field("uid", uid)
                .field("user", user)
                .field("count", count),
        );
    }

    pub(super) fn on_request(
        &mut self,
        req: Request,
        user: &str,
        reply: oneshot::Sender<Response>,
    ) -> Option<(Response, oneshot::Sender<Response>)> {
        let one = |t: String| (Some(t), false);
        let resp = match req {
            Request::Status => Response::ok(
                serde_json::to_value(self.monitor.status(now_ms())).unwrap_or_default(),
            ),
            Request::Pause { target, all } | Request::Resume { target, all }
                if all == target.is_some() =>
            {
                Response::err("name one target or --all")
            }
            Request::Pause { target, all } => self.command((target, all), Command::Pause, user),
            Request::Resume { target, all } => self.command((target, all), Command::Resume, user),
            Request::Reset { target } => self.command(one(target), Command::Reset, user),
            Request::Start { target } => self.command(one(target), Command::Start, user),
            Request::Stop { target, timeout_ms } => {
                let pids: Vec<u32> = self
                    .monitor
                    .tracked()
                    .filter(|(t, _)| *t == target)
                    .map(|(_, p)| p.pid)
                    .collect();
                let timeout = Duration::from_millis(timeout_ms);
                let mut r = self.command(one(target), Command::Stop { timeout }, user);
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
            Request::Sinks => {
                let (cfg, views) = (self.cfg.clone(), self.out.sink_views());
                tokio::task::spawn_blocking(move || {
                    let rows = crate::notify::view::rows(&cfg, &views);
                    let _ =
                        reply.send(Response::ok(serde_json::to_value(rows).unwrap_or_default()));
                });
                return None;
            }
            Request::TestEvent { count, sink } => {
                if let Some(s) = sink.as_deref().filter(|s| !self.has_sink(s)) {
                    Response::err(format!("no sink named `{s}` in the configuration"))
                } else {
                    let run = TestRun {
                        next: 1,
                        count,
                        sinks: sink.map_or("every sink".into(), |s| format!("sink {s}")),
                        user: user.to_string(),
                        first: 0,
                        reply,
                    };
                    self.on_test_batch(Box::new(run));
                    return None;
                }
            }
        };
        Some((resp, reply))
    }

    fn has_sink(&self, name: &str) -> bool {
        let syslog = self.cfg.syslog.iter().map(|s| s.name.as_str());
        let snmp = self.cfg.snmp.iter().map(|s| s.name.as_str());
        syslog.chain(snmp).any(|n| n == name)
    }

    /// Emit the next batch of a `test-event` run; the loop serves other
    /// messages between batches. After the last, the answer waits until
    /// the store has journaled them all.
    pub(super) fn on_test_batch(&mut self, mut run: Box<TestRun>) {
        let end = run.count.min(run.next.saturating_add(TEST_BATCH - 1));
        for k in run.next..=end {
            let seq = self.out.emit(
                EventSpec::new(msg::TEST_EVENT)
                    .field("k", k)
                    .field("n", run.count)
                    .field("user", run.user.as_str())
                    .field("sinks", run.sinks.as_str()),
            );
            if k == 1 {
                run.first = seq;
            }
        }
        run.next = end + 1;
        if end < run.count {
            let _ = self.tx.send(Msg::TestBatch(run));
            return;
        }
        let last = self.out.last_emitted();
        let journaled = self.out.journaled();
        tokio::spawn(async move {
            let _ = journaled.await;
            let result =
                serde_json::json!({ "first": run.first, "last": last, "count": run.count });
            let _ = run.reply.send(Response::ok(result));
        });
    }

    /// An operator command for one target, or for all (`(None, true)`:
    /// targets already in the asked state are skipped).
    pub(super) fn command(
        &mut self,
        (target, all): (Option<String>, bool),
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
                    self.persist.changed(&TargetId::from(n.as_str()), &acts);
                    self.apply(acts);
                    done.push(n);
                }
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

    pub(super) fn start_reload(&mut self, by: String, reply: oneshot::Sender<Response>) {
        let path = self.cfg.path.clone();
        let running = self.cfg.targets.clone();
        let reuse = Reuse::running(&self.cfg, self.out.renderer());
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let r = tokio::task::spawn_blocking(move || load_all_reusing(&path, &running, reuse))
                .await
                .unwrap_or_else(|e| Err(vec![e.to_string()]));
            let _ = tx.send(Msg::Reloaded(Box::new(r), by, reply));
        });
    }

    pub(super) fn finish_reload(
        &mut self,
        r: Loaded,
        by: String,
        reply: oneshot::Sender<Response>,
    ) {
        let (mut cfg, renderer) = match r {
            Ok(x) => x,
            Err(errors) => {
                self.out.emit(
                    EventSpec::new(msg::CONFIG_REJECTED)
                        .field("errors", errors.len())
                        .field("first", errors.first().cloned().unwrap_or_default())
                        .field("by", by),
                );
                let _ = reply.send(Response::err(format!(
                    "configuration rejected, the old one stays in force:\n{}",
                    errors.join("\n")
                )));
                return;
            }
        };
        // Settings that need a restart (socket, state dir) keep their old values.
        cfg.daemon.control_socket = self.cfg.daemon.control_socket.clone();
        cfg.daemon.state_dir = self.cfg.daemon.state_dir.clone();
        let names =
            |c: &Config| -> HashSet<String> { c.targets.iter().map(|t| t.name.clone()).collect() };
        let (old, new) = (names(&self.cfg), names(&cfg));
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
                server::set_socket_group(&cfg.daemon.control_socket, cfg.daemon.control_group)
            {
                eprintln!("procward: {e:#}");
            }
        }
        let acts = self.monitor.reconfigure(cfg.targets.clone(), now_ms());
        self.discovery.lookups.clear();
        self.persist.touched_all();
        self.out.reload(&cfg, renderer);
        let n = cfg.targets.len();
        self.cfg = cfg;
        self.apply(acts);
        self.checks.plan(self.cfg.targets.iter());
        self.out.emit(
            EventSpec::new(msg::CONFIG_RELOADED)
                .field("targets", n)
                .field("config", self.cfg.path.display().to_string())
                .field("added", added)
                .field("removed", removed)
                .field("by", by),
        );
        let _ = reply.send(Response::ok(serde_json::json!({ "targets": n })));
    }
}
