//! The queues to the store's writer threads.

use std::sync::Arc;

/// A queue to a writer thread, bounded for `try_send` at `cap` messages.
/// Not `std::sync::mpsc::sync_channel(cap)`: that allocates and touches
/// all of its slots at once (4 MiB resident for the two 65,536-message
/// queues below, which are nearly always empty: a quarter of an idle
/// procward's memory at 100 targets). The unbounded channel allocates its
/// slots in small blocks as they are used; the count keeps the bound.
pub(crate) struct Queue<T> {
    tx: std::sync::mpsc::Sender<T>,
    len: Arc<std::sync::atomic::AtomicUsize>,
    cap: usize,
}

pub(crate) struct QueueRx<T> {
    rx: std::sync::mpsc::Receiver<T>,
    len: Arc<std::sync::atomic::AtomicUsize>,
}

pub(crate) fn queue<T>(cap: usize) -> (Queue<T>, QueueRx<T>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let len = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    (
        Queue {
            tx,
            len: len.clone(),
            cap,
        },
        QueueRx { rx, len },
    )
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            tx: self.tx.clone(),
            len: self.len.clone(),
            cap: self.cap,
        }
    }
}

impl<T> Queue<T> {
    /// Queue `m` whatever the count (what must not be dropped).
    pub(crate) fn send(&self, m: T) -> Result<(), T> {
        use std::sync::atomic::Ordering::Relaxed;
        self.len.fetch_add(1, Relaxed);
        self.tx.send(m).map_err(|e| {
            self.len.fetch_sub(1, Relaxed);
            e.0
        })
    }

    /// Queue `m` unless `cap` messages wait.
    pub(crate) fn try_send(&self, m: T) -> Result<(), T> {
        if self.len.load(std::sync::atomic::Ordering::Relaxed) >= self.cap {
            return Err(m);
        }
        self.send(m)
    }
}

impl<T> QueueRx<T> {
    fn took(&self, m: T) -> T {
        self.len.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        m
    }

    pub(crate) fn recv(&self) -> Result<T, std::sync::mpsc::RecvError> {
        self.rx.recv().map(|m| self.took(m))
    }

    pub(crate) fn try_recv(&self) -> Result<T, std::sync::mpsc::TryRecvError> {
        self.rx.try_recv().map(|m| self.took(m))
    }

    pub(crate) fn recv_timeout(
        &self,
        t: std::time::Duration,
    ) -> Result<T, std::sync::mpsc::RecvTimeoutError> {
        self.rx.recv_timeout(t).map(|m| self.took(m))
    }
}

impl<T> Iterator for QueueRx<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `try_send` refuses past the bound, `send` never does; receiving
    /// makes room again; nothing is allocated for slots not used.
    #[test]
    fn the_queue_keeps_its_bound_for_try_send_only() {
        let (tx, mut rx) = queue::<u32>(3);
        for i in 0..3 {
            assert_eq!(tx.try_send(i), Ok(()));
        }
        assert_eq!(tx.try_send(9), Err(9), "full");
        assert_eq!(tx.send(3), Ok(()), "what must not be dropped is queued");
        assert_eq!(rx.recv(), Ok(0));
        assert_eq!(tx.try_send(4), Err(4), "4 still queued: full");
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(tx.try_send(4), Ok(()));
        drop(tx);
        assert_eq!(rx.by_ref().collect::<Vec<_>>(), vec![2, 3, 4]);
    }
}
