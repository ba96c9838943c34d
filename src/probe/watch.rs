//! The exit watch of a tracked process: its pidfd in the event loop, so
//! the exit wakes procward at once with no polling.

use super::{open_pidfd, procfs, Pidfd};
use crate::monitor::ProcRef;
use crate::monitor::TargetId;
use std::time::Duration;

/// How a wait for a process's end came out.
pub enum Ended {
    /// It ended; its pidfd (kept for the exit status, see probe::exit).
    Pidfd(std::os::fd::OwnedFd),
    /// It was already gone when the watch began.
    Gone,
    /// No pidfd can be had (kernel before 5.3, seccomp): poll instead.
    Unsupported,
}

/// Wait until the pinned process has ended.
pub async fn wait_end(p: ProcRef) -> Ended {
    match tokio::task::spawn_blocking(move || open_pidfd(p)).await {
        Ok(Pidfd::Open(fd)) => {
            // SAFETY: the AsyncFd takes the pidfd by value and owns it for
            // as long as it is registered; nothing else closes it.
            let afd = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            };
            match afd {
                Ok(afd) => {
                    let _ = afd.readable().await;
                    Ended::Pidfd(afd.into_inner())
                }
                Err(_) => Ended::Unsupported,
            }
        }
        Ok(Pidfd::Gone) => Ended::Gone,
        Ok(Pidfd::Unsupported) | Err(_) => Ended::Unsupported,
    }
}

/// Wait until the pinned process has ended. `false` when no pidfd can be
/// had (kernel before 5.3, seccomp): the caller watches by polling.
pub async fn exited(p: ProcRef) -> bool {
    !matches!(wait_end(p).await, Ended::Unsupported)
}

/// Wait until the pinned process has ended, by its pidfd or else by
/// reading its stat every `every`.
pub async fn gone(p: ProcRef, every: Duration) {
    if exited(p).await {
        return;
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
        tokio::time::sleep(every).await;
    }
}

/// The watch tasks of the tracked processes, and the processes watched by
/// polling instead (no pidfd).
#[derive(Default)]
pub struct Watches {
    tasks: std::collections::HashMap<TargetId, Vec<(ProcRef, tokio::task::AbortHandle)>>,
    polled: std::collections::HashSet<(TargetId, ProcRef)>,
}

impl Watches {
    pub fn add(&mut self, target: TargetId, p: ProcRef, task: tokio::task::AbortHandle) {
        self.tasks.entry(target).or_default().push((p, task));
    }

    pub fn poll(&mut self, target: TargetId, p: ProcRef) {
        self.polled.insert((target, p));
    }

    /// The processes to poll at each scan.
    pub fn polled(&self) -> Vec<(TargetId, ProcRef)> {
        self.polled.iter().cloned().collect()
    }

    /// `p` ended (its watch is over). False if it was not watched by
    /// polling.
    pub fn ended(&mut self, target: &TargetId, p: ProcRef) -> bool {
        if let Some(ws) = self.tasks.get_mut(target) {
            ws.retain(|(q, _)| *q != p);
        }
        self.polled.remove(&(target.clone(), p))
    }

    pub fn untrack_all(&mut self, target: &str) {
        if let Some(ws) = self.tasks.remove(target) {
            for (_, h) in ws {
                h.abort();
            }
        }
        self.polled.retain(|(t, _)| t.as_str() != target);
    }

    pub fn abort_all(&mut self) {
        for (_, ws) in self.tasks.drain() {
            for (_, h) in ws {
                h.abort();
            }
        }
    }
}
