//! The control socket's server: binds the socket (only over a stale
//! socket, in a directory others cannot write), checks each connection's
//! peer credentials before reading a byte, bounds every request line, and
//! hands requests to the daemon. Refused users are counted per uid so that
//! the daemon says PW1008 at most once per interval each ([`Denials`]).

use super::{Request, Response};
use crate::config::Allow;
use anyhow::Context;
use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// What the connections share with the daemon.
pub struct Shared {
    pub allow: RwLock<Allow>,
    pub state_dir: PathBuf,
    pub bus: tokio::sync::broadcast::Sender<Arc<crate::model::event::Event>>,
}

/// What a connection tells the daemon.
pub enum FromClient {
    /// A request of an allowed user (named), and where to answer.
    Request(Request, String, oneshot::Sender<Response>),
    /// A refused connection (uid, user name).
    Denied(u32, String),
}

/// Hands a message to the daemon; false when it is stopping.
pub type ToDaemon = Arc<dyn Fn(FromClient) -> bool + Send + Sync>;

pub fn bind(path: &Path, group: Option<u32>) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // Whoever can write the socket's directory can put another socket
        // in its place and answer procward's clients.
        crate::sys::trust::directory(dir).map_err(|e| anyhow::anyhow!("control socket: {e}"))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "control socket {} is in use: is procward already running?",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
        }
        Ok(md) => anyhow::bail!(
            "refusing to replace {} with the control socket: it is a {}, not a stale socket; remove it or set daemon.control-socket",
            path.display(),
            file_kind(&md)
        ),
        Err(_) => {}
    }
    let l = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind {}", path.display()))?;
    set_socket_group(path, group)?;
    Ok(l)
}

/// Mode 0660, group `group` (root's when None).
pub fn set_socket_group(path: &Path, group: Option<u32>) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    std::os::unix::fs::lchown(path, None, Some(group.unwrap_or(0)))
        .with_context(|| format!("cannot give {} to its group", path.display()))?;
    Ok(())
}

fn file_kind(md: &std::fs::Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_symlink() {
        "symbolic link"
    } else if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "regular file"
    } else if t.is_fifo() {
        "FIFO"
    } else {
        "special file"
    }
}

pub async fn serve_forever(
    listener: tokio::net::UnixListener,
    shared: Arc<Shared>,
    to_daemon: ToDaemon,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let shared = shared.clone();
        let to_daemon = to_daemon.clone();
        tokio::spawn(async move {
            let _ = serve(stream, shared, to_daemon).await;
        });
    }
}

async fn write_line(w: &mut tokio::net::unix::OwnedWriteHalf, r: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(r).unwrap_or_default();
    line.push(b'\n');
    w.write_all(&line).await
}

/// The journal's events since `since_ms`, then an end mark. Returns the
/// last seq sent.
async fn past_events(
    w: &mut tokio::net::unix::OwnedWriteHalf,
    shared: &Shared,
    since_ms: u64,
) -> std::io::Result<u64> {
    let dir = shared.state_dir.clone();
    let past = tokio::task::spawn_blocking(move || crate::store::journal::read(&dir, since_ms))
        .await
        .unwrap_or_default();
    let mut last = 0;
    for ev in past {
        last = ev.seq;
        write_line(w, &Response::event(ev)).await?;
    }
    Ok(last)
}

/// `events --follow`: the journal's events, then each new one as the
/// store hands it on (after its journal write), until the client goes.
async fn follow_events(
    w: &mut tokio::net::unix::OwnedWriteHalf,
    shared: &Shared,
    since_ms: u64,
) -> std::io::Result<()> {
    // Subscribed before the journal is read: an event is either in what
    // is read or comes after (seen twice at most, sent once by seq).
    let mut sub = shared.bus.subscribe();
    let mut last = past_events(w, shared, since_ms).await?;
    loop {
        match sub.recv().await {
            Ok(ev) if ev.seq > last => {
                last = ev.seq;
                write_line(w, &Response::event((*ev).clone())).await?;
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                let e = format!("{n} events skipped (reader too slow); see the journal");
                write_line(w, &Response::err(e)).await?;
            }
            Err(_) => return Ok(()),
        }
    }
}

async fn serve(
    stream: tokio::net::UnixStream,
    shared: Arc<Shared>,
    to_daemon: ToDaemon,
) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    // Who is there, before a single byte is read: a user not allowed
    // cannot make procward buffer anything.
    let cred = stream.peer_cred()?;
    let (uid, gid) = (cred.uid(), cred.gid());
    let (r, mut w) = stream.into_split();
    let user = tokio::task::spawn_blocking(move || super::user_name(uid))
        .await
        .unwrap_or_default();
    let allow = shared.allow.read().expect("allow lock").clone();
    let ok = tokio::task::spawn_blocking(move || super::allowed(&allow, uid, gid))
        .await
        .unwrap_or(false);
    if !ok {
        to_daemon(FromClient::Denied(uid, user.clone()));
        write_line(
            &mut w,
            &Response::err(format!(
                "permission denied: {user} is not in daemon.control-allow"
            )),
        )
        .await?;
        // Let the answer reach the client: closing with its request still
        // unread would reset the connection before it reads the answer.
        // Discarded, never kept: at most one request's worth, briefly.
        let _ = w.shutdown().await;
        let mut sink = tokio::io::sink();
        let mut rest = r.take(super::MAX_REQUEST as u64);
        let drain = tokio::io::copy(&mut rest, &mut sink);
        let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
        return Ok(());
    }
    let mut reader = BufReader::new(r);
    loop {
        let mut line = Vec::new();
        let limit = super::MAX_REQUEST as u64 + 1;
        if (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut line)
            .await?
            == 0
        {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > super::MAX_REQUEST {
            let e = format!("request longer than {} bytes", super::MAX_REQUEST);
            write_line(&mut w, &Response::err(e)).await?;
            return Ok(());
        }
        let req = match super::parse_request(&line) {
            Ok(r) => r,
            Err(e) => {
                write_line(&mut w, &Response::err(e)).await?;
                continue;
            }
        };
        if let Request::Events { since_ms, follow } = req {
            if follow {
                return follow_events(&mut w, &shared, since_ms).await;
            }
            past_events(&mut w, &shared, since_ms).await?;
            write_line(&mut w, &Response::ok(serde_json::json!({ "end": true }))).await?;
            continue;
        }
        let (rtx, rrx) = oneshot::channel();
        if !to_daemon(FromClient::Request(req, user.clone(), rtx)) {
            write_line(&mut w, &Response::err("procward is stopping")).await?;
            return Ok(());
        }
        let resp = rrx
            .await
            .unwrap_or_else(|_| Response::err("procward is stopping"));
        write_line(&mut w, &resp).await?;
    }
}

/// Refused users: the first refusal of a uid is said at once, the next
/// ones within the interval are counted and said in one PW1008 when it
/// ends.
#[derive(Default)]
pub struct Denials {
    by_uid: HashMap<u32, Denial>,
}

struct Denial {
    user: String,
    /// When the last PW1008 for this uid was said.
    since: Instant,
    /// Connections refused since then, not yet said.
    refused: u64,
}

impl Denials {
    /// A refused connection: `Some(count)` when it is to be said now.
    pub fn refused(&mut self, uid: u32, user: String, every: Duration) -> Option<u64> {
        let now = Instant::now();
        if let Some(d) = self.by_uid.get_mut(&uid) {
            if now < d.since + every {
                d.refused += 1;
                return None;
            }
            // The interval is over: this one and those counted but not yet
            // said (the timer may not have run yet) go in one report.
            let count = d.refused + 1;
            d.since = now;
            d.refused = 0;
            return Some(count);
        }
        self.by_uid.insert(
            uid,
            Denial {
                user,
                since: now,
                refused: 0,
            },
        );
        Some(1)
    }

    /// When counted refusals are next due to be said.
    pub fn next_report(&self, every: Duration) -> Option<Instant> {
        self.by_uid
            .values()
            .filter(|d| d.refused > 0)
            .map(|d| d.since + every)
            .min()
    }

    /// The counts due now: (uid, user, count).
    pub fn due(&mut self, every: Duration) -> Vec<(u32, String, u64)> {
        let now = Instant::now();
        let mut due = Vec::new();
        self.by_uid.retain(|uid, d| {
            if now < d.since + every {
                return true;
            }
            if d.refused == 0 {
                return false;
            }
            due.push((*uid, d.user.clone(), d.refused));
            d.since = now;
            d.refused = 0;
            true
        });
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts not yet said when the next refused connection comes after
    /// the interval (before the timer ran) are said with it, not lost.
    #[test]
    fn no_refused_connection_goes_uncounted() {
        let mut d = Denials::default();
        let every = Duration::from_millis(50);
        assert_eq!(d.refused(7, "x".into(), every), Some(1));
        for _ in 0..5 {
            assert_eq!(d.refused(7, "x".into(), every), None);
        }
        std::thread::sleep(every);
        assert_eq!(d.refused(7, "x".into(), every), Some(6));
        assert!(d.due(every).is_empty());
        assert_eq!(d.refused(7, "x".into(), every), None);
        std::thread::sleep(every);
        assert_eq!(d.due(every), vec![(7, "x".to_string(), 1)]);
    }
}
