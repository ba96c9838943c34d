//! The exit watch of a tracked process: its pidfd in the event loop, so
//! the exit wakes procward at once with no polling.

use crate::model::ProcRef;
use crate::model::TargetId;
use crate::sys::pidfd::{open_pidfd, Pidfd};
use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;

/// The exit watches of the tracked processes: their pidfds in one epoll
/// set, which is itself one source of the event loop.
///
/// Why not a task per process (as before): with 10,000 targets the tasks
/// and their reactor registrations took ~800 bytes a process and a wake-up
/// went through a task before the loop heard of it. Here a process costs
/// one slot (its pidfd and names) and the loop reads the ended ones itself.
pub struct Watches {
    /// `None` when no epoll set could be had: every process is polled.
    epoll: Option<std::sync::Arc<tokio::io::unix::AsyncFd<OwnedFd>>>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    by_target: HashMap<TargetId, Vec<usize>>,
    polled: HashSet<(TargetId, ProcRef)>,
}

struct Slot {
    target: TargetId,
    proc: ProcRef,
    fd: OwnedFd,
}

/// What `add` did.
pub enum Added {
    /// In the epoll set.
    Watching,
    /// It was already gone.
    Gone,
    /// No pidfd: it is watched by polling at each scan.
    Polled,
}

/// A tracked process that ended, with its pidfd (for the exit status).
pub struct EndedProc {
    pub target: TargetId,
    pub proc: ProcRef,
    pub fd: OwnedFd,
}

impl Default for Watches {
    fn default() -> Self {
        Watches::new()
    }
}

impl Watches {
    /// Must be called within the runtime (the epoll set joins its reactor).
    pub fn new() -> Watches {
        let epoll = rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC)
            .ok()
            .and_then(|fd| crate::sys::pidfd::async_fd(fd, tokio::io::Interest::READABLE).ok())
            .map(std::sync::Arc::new);
        Watches {
            epoll,
            slots: Vec::new(),
            free: Vec::new(),
            by_target: HashMap::new(),
            polled: HashSet::new(),
        }
    }

    /// The epoll set, to wait on in the loop (`None`: nothing to wait on).
    pub fn source(&self) -> Option<std::sync::Arc<tokio::io::unix::AsyncFd<OwnedFd>>> {
        self.epoll.clone()
    }

    /// Watch `p` of `target` (opens its pidfd: a syscall and a stat read).
    pub fn add(&mut self, target: TargetId, p: ProcRef) -> Added {
        let fd = match open_pidfd(p) {
            Pidfd::Open(fd) => fd,
            Pidfd::Gone => return Added::Gone,
            Pidfd::Unsupported => {
                self.polled.insert((target, p));
                return Added::Polled;
            }
        };
        let Some(epoll) = &self.epoll else {
            self.polled.insert((target, p));
            return Added::Polled;
        };
        let idx = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let data = rustix::event::epoll::EventData::new_u64(idx as u64);
        if rustix::event::epoll::add(
            epoll.get_ref(),
            &fd,
            data,
            rustix::event::epoll::EventFlags::IN,
        )
        .is_err()
        {
            self.free.push(idx);
            self.polled.insert((target, p));
            return Added::Polled;
        }
        self.by_target.entry(target.clone()).or_default().push(idx);
        self.slots[idx] = Some(Slot {
            target,
            proc: p,
            fd,
        });
        Added::Watching
    }

    /// The processes to poll at each scan.
    pub fn polled(&self) -> Vec<(TargetId, ProcRef)> {
        self.polled.iter().cloned().collect()
    }

    /// The watched processes whose pidfd says they ended, taken out of the
    /// set; an empty list once the set has nothing more to say.
    pub fn take_ended(&mut self) -> Vec<EndedProc> {
        let Some(epoll) = self.epoll.clone() else {
            return Vec::new();
        };
        let mut events: Vec<rustix::event::epoll::Event> = Vec::with_capacity(64);
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let n = match rustix::event::epoll::wait(
            epoll.get_ref(),
            rustix::buffer::spare_capacity(&mut events),
            Some(&zero),
        ) {
            Ok(n) => n,
            Err(_) => return Vec::new(),
        };
        let mut out = Vec::with_capacity(n);
        for ev in &events {
            let idx = ev.data.u64() as usize;
            if let Some(slot) = self.remove(idx) {
                out.push(EndedProc {
                    target: slot.target,
                    proc: slot.proc,
                    fd: slot.fd,
                });
            }
        }
        out
    }

    fn remove(&mut self, idx: usize) -> Option<Slot> {
        let slot = self.slots.get_mut(idx)?.take()?;
        if let Some(epoll) = &self.epoll {
            let _ = rustix::event::epoll::delete(epoll.get_ref(), &slot.fd);
        }
        self.free.push(idx);
        if let Some(v) = self.by_target.get_mut(&slot.target) {
            v.retain(|&i| i != idx);
            if v.is_empty() {
                self.by_target.remove(&slot.target);
            }
        }
        Some(slot)
    }

    /// `p` ended (its watch is over). False if it was not watched by
    /// polling.
    pub fn ended(&mut self, target: &TargetId, p: ProcRef) -> bool {
        let idx = self.by_target.get(target).and_then(|v| {
            v.iter()
                .copied()
                .find(|&i| self.slots[i].as_ref().is_some_and(|s| s.proc == p))
        });
        if let Some(idx) = idx {
            self.remove(idx);
        }
        self.polled.remove(&(target.clone(), p))
    }

    pub fn untrack_all(&mut self, target: &str) {
        let idxs = self.by_target.get(target).cloned().unwrap_or_default();
        for idx in idxs {
            self.remove(idx);
        }
        self.polled.retain(|(t, _)| t.as_str() != target);
    }

    pub fn abort_all(&mut self) {
        for idx in 0..self.slots.len() {
            self.remove(idx);
        }
        self.polled.clear();
    }
}
