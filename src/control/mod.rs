//! The control socket: JSON lines over a Unix stream socket. The server
//! checks the peer's credentials (SO_PEERCRED) against
//! `daemon.control-allow`; the client is what `procward status`, `pause`,
//! `resume`, `reset`, `reload` and `events` use.

pub mod server;

use crate::config::Allow;
use crate::model::event::Event;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    Status,
    Pause {
        target: Option<String>,
        #[serde(default)]
        all: bool,
    },
    Resume {
        target: Option<String>,
        #[serde(default)]
        all: bool,
    },
    Reset {
        target: String,
    },
    Start {
        target: String,
    },
    Stop {
        target: String,
        #[serde(default = "d_stop_ms")]
        timeout_ms: u64,
    },
    Reload,
    Events {
        #[serde(default)]
        since_ms: u64,
        #[serde(default)]
        follow: bool,
    },
    /// `procward test-event`: `count` test messages (PW1015) through the
    /// journal and the sinks (or `sink` only).
    TestEvent {
        #[serde(default = "d_count")]
        count: u32,
        #[serde(default)]
        sink: Option<String>,
    },
    /// `procward sinks`: each sink's state, cursor and backlog.
    Sinks,
}

fn d_count() -> u32 {
    1
}

/// The most test messages one `test-event` may ask for.
pub const TEST_EVENTS_MAX: u32 = 1_000_000;

impl Request {
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Pause { .. } => "pause",
            Request::Resume { .. } => "resume",
            Request::Reset { .. } => "reset",
            Request::Start { .. } => "start",
            Request::Stop { .. } => "stop",
            Request::Reload => "reload",
            Request::Events { .. } => "events",
            Request::TestEvent { .. } => "test-event",
            Request::Sinks => "sinks",
        }
    }
}

fn d_stop_ms() -> u64 {
    10_000
}

/// The longest request line the server reads (a request is a few hundred
/// bytes; a longer line is refused and the connection closed).
pub const MAX_REQUEST: usize = 64 * 1024;

/// Parse one request line. Bounded: a line over [`MAX_REQUEST`] bytes, a
/// line that is not a request, or a stop timeout over the longest
/// duration procward accepts is an error, never a panic.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    if line.len() > MAX_REQUEST {
        return Err(format!("request longer than {MAX_REQUEST} bytes"));
    }
    let req: Request = serde_json::from_slice(line).map_err(|e| format!("bad request: {e}"))?;
    if let Request::Stop { timeout_ms, .. } = &req {
        if *timeout_ms > crate::config::duration::MAX.as_millis() as u64 {
            return Err(format!(
                "bad request: timeout_ms {timeout_ms} is over {}",
                crate::config::duration::MAX_TEXT
            ));
        }
    }
    if let Request::TestEvent { count, .. } = &req {
        if !(1..=TEST_EVENTS_MAX).contains(count) {
            return Err(format!("bad request: count must be 1 to {TEST_EVENTS_MAX}"));
        }
    }
    Ok(req)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// For `events`: one event per line precedes the final response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
}

impl Response {
    pub fn ok(result: serde_json::Value) -> Self {
        Response {
            ok: true,
            error: None,
            result: Some(result),
            event: None,
        }
    }
    pub fn err(e: impl Into<String>) -> Self {
        Response {
            ok: false,
            error: Some(e.into()),
            result: None,
            event: None,
        }
    }
    pub fn event(ev: Event) -> Self {
        Response {
            ok: true,
            error: None,
            result: None,
            event: Some(ev),
        }
    }
}

/// Is a peer with `uid`/`gid` allowed? Users by uid, groups by primary or
/// supplementary membership.
pub fn allowed(allow: &Allow, uid: u32, gid: u32) -> bool {
    if allow.uids.contains(&uid) || allow.gids.contains(&gid) {
        return true;
    }
    if allow.gids.is_empty() {
        return false;
    }
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
        return false;
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, user.gid)
        .map(|gs| gs.iter().any(|g| allow.gids.contains(&g.as_raw())))
        .unwrap_or(false)
}

pub fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// A path from the configuration's `[daemon]`, read leniently (the client
/// needs only that key; the daemon validates the whole file).
fn daemon_path(config: &Path, key: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(config).ok()?;
    let table = text.parse::<toml::Table>().ok()?;
    table.get("daemon")?.get(key)?.as_str().map(PathBuf::from)
}

/// Where the client finds the socket: `$PROCWARD_SOCKET`, else the
/// configuration's `daemon.control-socket`, else the default.
pub fn socket_path(config: &Path) -> PathBuf {
    if let Some(s) = std::env::var_os("PROCWARD_SOCKET") {
        return PathBuf::from(s);
    }
    daemon_path(config, "control-socket")
        .unwrap_or_else(|| PathBuf::from("/run/procward/control.sock"))
}

/// Where the journal is when the daemon does not answer: the
/// configuration's `daemon.state-dir`, else the default.
pub fn state_dir_path(config: &Path) -> PathBuf {
    daemon_path(config, "state-dir").unwrap_or_else(|| PathBuf::from("/var/lib/procward"))
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("procward is not reachable at {path}: {source} (is the daemon running?)")]
    Unreachable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("permission denied on the control socket {0}: ask an administrator to add your user to daemon.control-group and daemon.control-allow")]
    PermissionDenied(PathBuf),
    #[error("control socket {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("bad answer from procward: {0}")]
    Protocol(String),
}

pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let s = UnixStream::connect(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                ClientError::PermissionDenied(path.to_path_buf())
            } else {
                ClientError::Unreachable {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
        let w = s
            .try_clone()
            .map_err(|e| ClientError::Io(path.to_path_buf(), e))?;
        Ok(Client {
            path: path.to_path_buf(),
            reader: BufReader::new(s),
            writer: w,
        })
    }

    pub fn send(&mut self, req: &Request) -> Result<(), ClientError> {
        let mut line = serde_json::to_vec(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .map_err(|e| ClientError::Io(self.path.clone(), e))
    }

    /// Read one response line (blocking up to `timeout`, None = forever).
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Response, ClientError> {
        self.reader.get_ref().set_read_timeout(timeout).ok();
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| ClientError::Io(self.path.clone(), e))?;
        if n == 0 {
            return Err(ClientError::Protocol("connection closed".into()));
        }
        serde_json::from_str(&line).map_err(|e| ClientError::Protocol(format!("{e}: {line}")))
    }

    /// One request, one answer.
    pub fn call(path: &Path, req: &Request) -> Result<Response, ClientError> {
        let mut c = Client::connect(path)?;
        c.send(req)?;
        c.recv(Some(Duration::from_secs(60)))
    }
}
