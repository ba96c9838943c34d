//! `procward sinks`: each sink's state, cursor, backlog and the age of its
//! oldest event not delivered, from the running daemon or, when it is
//! down, from the state directory (the acknowledged sinks' cursors and the
//! journal).

use super::queue::{wanted, SinkView};
use crate::config::{Config, Transport};
use crate::model::event::{now_ms, Severity};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One row of `procward sinks` (and its `--json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SinkRow {
    pub sink: String,
    /// `syslog/tcp`, `syslog/udp`, `syslog/unix`, `syslog/tls`, `syslog/relp`,
    /// `syslog/relp+tls`, `snmp/trap`, `snmp/inform`.
    pub kind: String,
    /// Reads the journal through a cursor (at least once), or best effort.
    pub acknowledged: bool,
    /// `up`, `failing`, or `daemon not running`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The last event the sink is done with (acknowledged sinks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
    /// Events not delivered yet (`None`: not known, a best-effort sink
    /// while the daemon is down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<u64>,
    /// Seconds since the oldest of them happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_age_s: Option<u64>,
}

/// Every configured sink: (name, kind, acknowledged, least severity).
fn configured(cfg: &Config) -> Vec<(String, String, bool, Severity)> {
    let syslog = cfg.syslog.iter().map(|s| {
        let t = match (s.transport, &s.tls) {
            (Transport::Tcp, _) => "tcp",
            (Transport::Udp, _) => "udp",
            (Transport::Unix, _) => "unix",
            (Transport::Tls, _) => "tls",
            (Transport::Relp, None) => "relp",
            (Transport::Relp, Some(_)) => "relp+tls",
        };
        let acked = s.acknowledged();
        (s.name.clone(), format!("syslog/{t}"), acked, s.min_severity)
    });
    let snmp = cfg.snmp.iter().map(|s| {
        let k = match s.kind {
            crate::config::NotifyKind::Trap => "trap",
            crate::config::NotifyKind::Inform => "inform",
        };
        (
            s.name.clone(),
            format!("snmp/{k}"),
            s.acknowledged(),
            s.min_severity,
        )
    });
    syslog.chain(snmp).collect()
}

/// Events of the journal after `cursor` that are for the sink, and the
/// time of the oldest.
fn journal_backlog(dir: &Path, name: &str, min: Severity, cursor: u64) -> (u64, Option<u64>) {
    let (mut n, mut oldest) = (0u64, None);
    crate::store::journal::scan_after(dir, cursor, |ev| {
        if wanted(name, min, &ev) {
            n += 1;
            oldest.get_or_insert(ev.time_ms);
        }
        true
    });
    (n, oldest)
}

fn age_s(oldest_ms: Option<u64>) -> Option<u64> {
    oldest_ms.map(|t| now_ms().saturating_sub(t) / 1000)
}

/// The rows of the running daemon's sinks (reads the journal for the
/// acknowledged ones: call from a blocking thread).
pub fn rows(cfg: &Config, views: &[SinkView]) -> Vec<SinkRow> {
    let dir = &cfg.daemon.state_dir;
    configured(cfg)
        .into_iter()
        .filter_map(|(name, kind, acknowledged, _)| {
            let v = views.iter().find(|v| v.name == name)?;
            let (backlog, oldest) = match v.cursor {
                Some(c) => journal_backlog(dir, &name, v.min, c),
                None => (v.queued as u64, v.oldest_ms),
            };
            Some(SinkRow {
                state: if v.failing.is_some() { "failing" } else { "up" }.into(),
                since_ms: v.failing.as_ref().map(|f| f.0),
                error: v.failing.as_ref().map(|f| f.1.clone()),
                cursor: v.cursor,
                backlog: Some(backlog),
                oldest_age_s: if backlog > 0 { age_s(oldest) } else { None },
                sink: name,
                kind,
                acknowledged,
            })
        })
        .collect()
}

/// The rows from the state directory alone (the daemon is down): the
/// acknowledged sinks' cursors and what the journal has after them.
pub fn offline_rows(cfg: &Config) -> Vec<SinkRow> {
    let dir = &cfg.daemon.state_dir;
    configured(cfg)
        .into_iter()
        .map(|(name, kind, acknowledged, min)| {
            let cursor = acknowledged
                .then(|| crate::store::cursor::saved(dir, &name))
                .flatten();
            let (backlog, oldest) = match cursor {
                Some(c) => {
                    let (n, o) = journal_backlog(dir, &name, min, c);
                    (Some(n), o)
                }
                None => (None, None),
            };
            SinkRow {
                sink: name,
                kind,
                acknowledged,
                state: "daemon not running".into(),
                since_ms: None,
                error: None,
                cursor,
                backlog,
                oldest_age_s: if backlog.unwrap_or(0) > 0 {
                    age_s(oldest)
                } else {
                    None
                },
            }
        })
        .collect()
}
