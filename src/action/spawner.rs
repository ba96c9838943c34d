//! The spawner: a small helper process (`procward spawner`) that starts
//! restart scripts and retry-over commands for the daemon and tells it
//! their pid and, later, their wait status.
//!
//! Why: a fork from the daemon copies its file table, and the new process
//! closes every close-on-exec descriptor in its exec. With 10,000 targets
//! that is 10,000 pidfds each time: measured 1.4 → 6.8 ms from the spawn
//! to the script's first command (`scripts/bench.sh` restart row). The
//! helper is started with the daemon, before it watches any process, and
//! holds four descriptors. No crate does this (a zygote over a socket
//! with descriptor passing); it is small enough to write here.
//!
//! Protocol: one `SOCK_SEQPACKET` socket pair (the daemon's end is never
//! inherited; the helper has it as stdin, and nothing else can reach it).
//! A request is one JSON message with the script's stdout and stderr as
//! `SCM_RIGHTS` (none: output discarded); replies are `Started`/`Failed`,
//! then `Exited` with the raw wait status. The helper ends when the daemon
//! closes its end; scripts run on (their own process groups). If the
//! helper goes away, the next script starts a new one; a script whose
//! helper went away is waited for by its pid (status unknown). If no
//! helper can be started, the daemon starts scripts itself, as before.

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// The largest request or reply (argv and environment of one script).
const MAX_MESSAGE: usize = 256 * 1024;
/// How long a request may wait for its `Started`/`Failed`.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// uid, gid and supplementary groups to run as.
    pub user: Option<(u32, u32, Vec<u32>)>,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Started { id: u64, pid: u32 },
    Failed { id: u64, error: String },
    Exited { id: u64, status: i32 },
}

// ---------------------------------------------------------------- helper

/// `procward spawner`: serve the daemon on stdin until it goes away.
pub fn serve() -> u8 {
    let sock = crate::sys::process::take_stdin();
    let is_socket = rustix::fs::fstat(&sock).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket
    });
    if !is_socket {
        eprintln!("procward spawner: started by `procward run`, not by hand");
        return 2;
    }
    crate::sys::process::set_name(c"procward-spawn");
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            &*sock,
            &mut [IoSliceMut::new(&mut buf)],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC,
        );
        let got = match got {
            Ok(m) => m,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                eprintln!("procward spawner: {e}");
                return 1;
            }
        };
        let fds: Vec<OwnedFd> = cmsg
            .drain()
            .flat_map(|m| match m {
                RecvAncillaryMessage::ScmRights(fds) => fds.collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .collect();
        if got.bytes == 0 {
            return 0;
        }
        match serde_json::from_slice::<Request>(&buf[..got.bytes.min(buf.len())]) {
            Ok(req) => start(&sock, req, fds),
            Err(e) => eprintln!("procward spawner: bad request: {e}"),
        }
    }
}

fn reply(sock: &OwnedFd, r: &Reply) {
    if let Ok(bytes) = serde_json::to_vec(r) {
        let _ = rustix::net::send(sock, &bytes, SendFlags::empty());
    }
}

fn start(sock: &Arc<OwnedFd>, req: Request, fds: Vec<OwnedFd>) {
    use std::os::unix::process::ExitStatusExt;
    let Some(program) = req.argv.first() else {
        reply(
            sock,
            &Reply::Failed {
                id: req.id,
                error: "empty command".into(),
            },
        );
        return;
    };
    let mut fds = fds.into_iter();
    let output = fds.next().zip(fds.next());
    let mut cmd = super::command(&req.argv, &req.env, req.user, output);
    let id = req.id;
    match cmd.spawn() {
        Ok(mut child) => {
            reply(
                sock,
                &Reply::Started {
                    id,
                    pid: child.id(),
                },
            );
            let sock = sock.clone();
            let waiter = std::thread::Builder::new()
                .name("wait".into())
                .stack_size(64 * 1024)
                .spawn(move || {
                    let status = child.wait().map_or(-1, |s| s.into_raw());
                    reply(&sock, &Reply::Exited { id, status });
                });
            if let Err(e) = waiter {
                eprintln!("procward spawner: cannot wait for {program}: {e}");
            }
        }
        Err(e) => reply(
            sock,
            &Reply::Failed {
                id,
                error: format!("{program}: {e}"),
            },
        ),
    }
}

// ---------------------------------------------------------------- daemon

/// A script the helper started.
pub struct Spawned {
    pub pid: u32,
    /// Its raw wait status; an error when the helper went away first.
    pub exit: oneshot::Receiver<i32>,
}

struct Waiter {
    started: Option<oneshot::Sender<Result<u32, String>>>,
    exited: Option<oneshot::Sender<i32>>,
}

struct Conn {
    fd: tokio::io::unix::AsyncFd<OwnedFd>,
    waiters: Mutex<HashMap<u64, Waiter>>,
    alive: AtomicBool,
    pid: u32,
}

/// The daemon's side: starts the helper, sends it requests.
pub struct Spawner {
    exe: std::path::PathBuf,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    next: AtomicU64,
}

impl Spawner {
    /// `exe`: procward's binary (`/proc/self/exe` in the daemon).
    pub fn new(exe: impl Into<std::path::PathBuf>) -> Spawner {
        Spawner {
            exe: exe.into(),
            conn: tokio::sync::Mutex::new(None),
            next: AtomicU64::new(1),
        }
    }

    /// Start the helper now (the daemon does, before it opens pidfds).
    pub async fn start(&self) -> std::io::Result<()> {
        let mut conn = self.conn.lock().await;
        if conn
            .as_ref()
            .is_none_or(|c| !c.alive.load(Ordering::Acquire))
        {
            *conn = Some(connect(&self.exe)?);
        }
        Ok(())
    }

    /// Have the helper start `req` with `output` (stdout, stderr; sent as
    /// copies) or none. `None`: no helper could be had; the caller starts
    /// it itself (with the same `output`).
    pub async fn spawn(
        &self,
        mut req: Request,
        output: Option<&(OwnedFd, OwnedFd)>,
    ) -> Option<Result<Spawned, String>> {
        let conn = {
            let mut guard = self.conn.lock().await;
            if guard
                .as_ref()
                .is_none_or(|c| !c.alive.load(Ordering::Acquire))
            {
                match connect(&self.exe) {
                    Ok(c) => *guard = Some(c),
                    Err(e) => {
                        eprintln!(
                            "procward: cannot start the spawner ({e}); starting scripts directly"
                        );
                        *guard = None;
                        return None;
                    }
                }
            }
            guard.clone()?
        };
        req.id = self.next.fetch_add(1, Ordering::Relaxed);
        let id = req.id;
        let (started_tx, started_rx) = oneshot::channel();
        let (exited_tx, exited_rx) = oneshot::channel();
        conn.waiters.lock().expect("waiters").insert(
            id,
            Waiter {
                started: Some(started_tx),
                exited: Some(exited_tx),
            },
        );
        let body = match serde_json::to_vec(&req) {
            Ok(b) if b.len() <= MAX_MESSAGE => b,
            _ => {
                conn.waiters.lock().expect("waiters").remove(&id);
                return Some(Err(format!(
                    "{}: command and environment larger than {MAX_MESSAGE} bytes",
                    req.argv.first().map_or("", String::as_str)
                )));
            }
        };
        if let Err(e) = send(&conn, &body, output).await {
            // Not sent: nothing was started; the caller may start it.
            conn.waiters.lock().expect("waiters").remove(&id);
            conn.alive.store(false, Ordering::Release);
            eprintln!("procward: the spawner is gone ({e}); starting scripts directly");
            return None;
        }
        match tokio::time::timeout(ANSWER_WITHIN, started_rx).await {
            Ok(Ok(Ok(pid))) => Some(Ok(Spawned {
                pid,
                exit: exited_rx,
            })),
            Ok(Ok(Err(e))) => Some(Err(e)),
            // Sent but never answered: it may have started; say so rather
            // than start a second one. A spawner that hangs is replaced.
            Ok(Err(_)) | Err(_) => {
                conn.waiters.lock().expect("waiters").remove(&id);
                if conn.alive.swap(false, Ordering::AcqRel) {
                    if let Some(pid) = rustix::process::Pid::from_raw(conn.pid as i32) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
                Some(Err(
                    "the spawner did not answer; the script may not have run".into(),
                ))
            }
        }
    }
}

fn connect(exe: &std::path::Path) -> std::io::Result<Arc<Conn>> {
    let (ours, theirs) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    // The helper's end blocks (the flag is the open file's: set it back).
    rustix::io::ioctl_fionbio(&theirs, false)?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg0("procward")
        .arg("spawner")
        .stdin(std::process::Stdio::from(theirs))
        .stdout(std::process::Stdio::null())
        // Out of the terminal's process group: a ^C stops the daemon,
        // which stops the helper by closing its socket.
        .process_group(0)
        .kill_on_drop(false);
    let mut child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    crate::sys::process::set_helper_pid(pid);
    let fd = crate::sys::pidfd::async_fd(
        ours,
        tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE,
    )?;
    let conn = Arc::new(Conn {
        fd,
        waiters: Mutex::new(HashMap::new()),
        alive: AtomicBool::new(true),
        pid,
    });
    let reader = conn.clone();
    tokio::spawn(async move {
        read_replies(&reader).await;
        reader.alive.store(false, Ordering::Release);
        // Whoever still waits learns the helper is gone.
        reader.waiters.lock().expect("waiters").clear();
        crate::sys::process::clear_helper_pid(reader.pid);
    });
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(conn)
}

async fn send(
    conn: &Conn,
    body: &[u8],
    output: Option<&(OwnedFd, OwnedFd)>,
) -> std::io::Result<()> {
    loop {
        let mut guard = conn.fd.writable().await?;
        let sent = guard.try_io(|fd| {
            let pair;
            let fds: &[_] = match output {
                Some((out, err)) => {
                    pair = [out.as_fd(), err.as_fd()];
                    &pair
                }
                None => &[],
            };
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
            let mut cmsg = SendAncillaryBuffer::new(&mut space);
            if !fds.is_empty() {
                cmsg.push(SendAncillaryMessage::ScmRights(fds));
            }
            rustix::net::sendmsg(
                fd.get_ref(),
                &[IoSlice::new(body)],
                &mut cmsg,
                SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
            )
            .map_err(std::io::Error::from)
        });
        match sent {
            Ok(r) => return r.map(|_| ()),
            Err(_would_block) => continue,
        }
    }
}

async fn read_replies(conn: &Conn) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let Ok(mut guard) = conn.fd.readable().await else {
            return;
        };
        let got = guard.try_io(|fd| {
            rustix::net::recv(fd.get_ref(), &mut buf, RecvFlags::DONTWAIT)
                .map(|(n, _)| n)
                .map_err(std::io::Error::from)
        });
        let n = match got {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n.min(buf.len()),
            Err(_would_block) => continue,
        };
        let Ok(reply) = serde_json::from_slice::<Reply>(&buf[..n]) else {
            continue;
        };
        let mut waiters = conn.waiters.lock().expect("waiters");
        match reply {
            Reply::Started { id, pid } => {
                if let Some(tx) = waiters.get_mut(&id).and_then(|w| w.started.take()) {
                    let _ = tx.send(Ok(pid));
                }
            }
            Reply::Failed { id, error } => {
                if let Some(tx) = waiters.remove(&id).and_then(|mut w| w.started.take()) {
                    let _ = tx.send(Err(error));
                }
            }
            Reply::Exited { id, status } => {
                if let Some(tx) = waiters.remove(&id).and_then(|mut w| w.exited.take()) {
                    let _ = tx.send(status);
                }
            }
        }
    }
}
