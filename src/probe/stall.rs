//! Stall probes: is a live process still doing its job? Each runs off the
//! event loop's critical path with its own timeout. A probe command (exec)
//! is run by the daemon through the spawner (daemon/checks.rs), in its own
//! process group killed at its timeout, so a hung probe or one that leaves
//! children never blocks or leaks.

use crate::config::Probe;
use crate::model::ProcRef;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// When each process was first seen stopped or in uninterruptible sleep
/// (for the `state` probe).
static STUCK_SINCE: Mutex<Option<HashMap<ProcRef, Instant>>> = Mutex::new(None);

/// Run one probe of process `p`. `Ok` when it passes, else why not. An
/// exec probe is the daemon's to run, through the spawner as the target's
/// user (daemon/checks.rs): not here.
pub async fn run(probe: &Probe, p: ProcRef) -> Result<(), String> {
    match probe {
        Probe::Exec { argv, .. } => Err(format!(
            "{}: an exec probe runs through the spawner",
            argv[0]
        )),
        Probe::Tcp { address, timeout } => {
            match tokio::time::timeout(*timeout, tokio::net::TcpStream::connect(address.as_str()))
                .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("connect {address}: {e}")),
                Err(_) => Err(format!(
                    "connect {address}: no answer within {}",
                    humantime::format_duration(*timeout)
                )),
            }
        }
        Probe::Http {
            host,
            port,
            path,
            timeout,
            status,
            body,
        } => match tokio::time::timeout(*timeout, http_get(host, *port, path)).await {
            Err(_) => Err(format!(
                "GET http://{host}:{port}{path}: no answer within {}",
                humantime::format_duration(*timeout)
            )),
            Ok(Err(e)) => Err(format!("GET http://{host}:{port}{path}: {e}")),
            Ok(Ok((code, text))) => {
                if code < status.0 || code > status.1 {
                    Err(format!(
                        "GET http://{host}:{port}{path}: status {code}, expected {}-{}",
                        status.0, status.1
                    ))
                } else if let Some(b) = body.as_ref().filter(|b| !text.contains(b.as_str())) {
                    Err(format!(
                        "GET http://{host}:{port}{path}: body lacks \"{b}\""
                    ))
                } else {
                    Ok(())
                }
            }
        },
        Probe::Heartbeat { path, max_age } => heartbeat(path.clone(), *max_age).await,
        Probe::State { max_duration } => state(p, *max_duration).await,
    }
}

/// The heartbeat file was modified within `max`.
async fn heartbeat(path: std::path::PathBuf, max: Duration) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        let m =
            std::fs::metadata(&path).map_err(|e| format!("heartbeat {}: {e}", path.display()))?;
        let age = m
            .modified()
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        if age > max {
            Err(format!(
                "heartbeat {} is {} old (max {})",
                path.display(),
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                humantime::format_duration(max)
            ))
        } else {
            Ok(())
        }
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()))
}

/// The process is not stuck in D or T state for `max_duration`.
async fn state(p: ProcRef, max_duration: Duration) -> Result<(), String> {
    let st = tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(512);
        crate::sys::proc::read_pinned(p, &mut buf)
    })
    .await
    .ok()
    .flatten();
    let Some(st) = st else { return Ok(()) }; // gone: the exit watch reports it
    let mut guard = STUCK_SINCE.lock().expect("stuck map");
    let map = guard.get_or_insert_with(HashMap::new);
    if matches!(st.state, 'D' | 'T' | 't') {
        let since = *map.entry(p).or_insert_with(Instant::now);
        let held = since.elapsed();
        if held >= max_duration {
            let what = if st.state == 'D' {
                "uninterruptible sleep (D)"
            } else {
                "stopped (T)"
            };
            return Err(format!(
                "process {} {what} for {}",
                p.pid,
                humantime::format_duration(Duration::from_secs(held.as_secs()))
            ));
        }
    } else {
        map.remove(&p);
    }
    Ok(())
}

async fn http_get(host: &str, port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect((host, port)).await?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: procward\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 || buf.len() > 64 * 1024 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status line"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}
