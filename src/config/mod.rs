//! Configuration: TOML schema (raw.rs), loading with includes, and
//! validation that collects every error at once, each located at
//! file:line:col with the key it concerns.

mod checks;
mod daemon;
mod deps;
pub mod duration;
mod pattern;
mod probes;
pub mod raw;
mod sinks;
mod source;
mod split;
mod target;
pub mod tls;

pub use pattern::{Index as PatternIndex, Pattern};

pub use duration::Dur;
pub use raw::{
    AuthProto, NotifyKind, OnRetryOver, PrivProto, SnmpVersion, StallAction, SyslogFormat,
    Transport,
};

use crate::model::Lang;
pub use checks::{Check, CheckAction, Hold, Resource, Scope, Test};
pub use daemon::facility_code;
use daemon::*;
pub use probes::parse_http_url;
use probes::*;
use raw::*;
use serde::Deserialize;
use sinks::*;
pub use source::line_col;
use source::*;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use target::*;
use tls::DEFAULT_WINDOW;

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.col,
                self.message
            )
        } else {
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file.display(),
                self.line,
                self.col,
                self.key,
                self.message
            )
        }
    }
}

/// All the errors of one load, in file order.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// How to find the processes of a target.
#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    pub exe: Option<PathBuf>,
    pub comm: Option<String>,
    pub cmdline: Option<Pattern>,
    pub pidfile: Option<PathBuf>,
    pub uid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Restart {
    pub script: Option<PathBuf>,
    /// Arguments after the script (`restart.script` as a list).
    pub args: Vec<String>,
    pub timeout: Duration,
    pub settle: Duration,
    pub user: Option<RunAs>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub max: u32,
    pub window: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Failover {
    pub command: Vec<String>,
    pub timeout: Duration,
}

/// A validated stall probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Exec {
        argv: Vec<String>,
        timeout: Duration,
    },
    Tcp {
        address: String,
        timeout: Duration,
    },
    Http {
        host: String,
        port: u16,
        path: String,
        timeout: Duration,
        status: (u16, u16),
        body: Option<String>,
    },
    Heartbeat {
        path: PathBuf,
        max_age: Duration,
    },
    State {
        max_duration: Duration,
    },
}

impl Probe {
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Exec { .. } => "exec",
            Probe::Tcp { .. } => "tcp",
            Probe::Http { .. } => "http",
            Probe::Heartbeat { .. } => "heartbeat",
            Probe::State { .. } => "state",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stall {
    pub probe: Probe,
    pub interval: Duration,
    pub failures: u32,
    pub action: StallAction,
    pub stop_timeout: Duration,
    pub signal_group: bool,
}

/// A validated target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    pub name: String,
    pub matcher: Matcher,
    /// `Some` when `count` is configured: the target is a group of
    /// processes, all tracked, and /proc is scanned each interval for new
    /// members. `None`: one main process.
    pub count: Option<(u32, Option<u32>)>,
    pub children_min: Option<u32>,
    pub restart: Restart,
    pub retry: Retry,
    pub on_retry_over: OnRetryOver,
    pub failover: Option<Failover>,
    /// Boxed: most targets have none, and a target is kept per process
    /// watched (10,000 targets: 1.4 MB less).
    pub stall: Option<Box<Stall>>,
    /// `[[target.check]]` and `depends-on`: boxed, as most targets have
    /// neither (a target without them is no larger than before them).
    pub health: Option<Box<Health>>,
    /// Exit statuses that are a normal end, not a failure (PW2019).
    pub success_exit: Vec<i32>,
    /// The match section as written, to tell on reload whether it changed.
    pub match_raw: MatchRaw,
}

/// A target's health checks and dependencies.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Health {
    /// `[[target.check]]`, in the order written.
    pub checks: Vec<Check>,
    /// Targets that must run before this one is started or restarted.
    pub depends_on: Vec<String>,
}

impl TargetSpec {
    pub fn checks(&self) -> &[Check] {
        self.health.as_deref().map_or(&[], |h| &h.checks)
    }
    pub fn depends_on(&self) -> &[String] {
        self.health.as_deref().map_or(&[], |h| &h.depends_on)
    }
    pub fn health_mut(&mut self) -> &mut Health {
        self.health.get_or_insert_with(Default::default)
    }
    pub fn is_group(&self) -> bool {
        self.count.is_some()
    }
    pub fn min_count(&self) -> u32 {
        self.count.map(|c| c.0).unwrap_or(1).max(1)
    }
}

#[derive(Debug, Clone)]
pub struct SyslogSink {
    pub name: String,
    pub transport: Transport,
    pub address: String,
    pub format: SyslogFormat,
    pub facility: u8,
    pub min_severity: crate::model::event::Severity,
    pub queue: usize,
    pub max_size: usize,
    pub language: Lang,
    pub hold_down: Duration,
    pub write_timeout: Duration,
    /// `profile = "processsaver"`: ProcessSaver's lines for the events it
    /// knows (notify/legacy.rs).
    pub legacy: Option<Legacy>,
    /// The SD-ID of RFC 5424 structured data (`daemon.snmp-root`'s
    /// enterprise number).
    pub sd_id: String,
    /// TLS (transport `tls`, or `relp` over TLS).
    pub tls: Option<TlsFiles>,
    /// RELP: frames sent and not yet acknowledged, at most.
    pub window: usize,
    /// RFC 3164: ` [seq=N]` at the end of each line.
    pub seq_marker: bool,
}

/// A syslog sink's `tls` table, checked (trusted paths, a private key
/// only root can read, PEM that parses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    /// The client certificate and its key, together or not at all.
    pub client: Option<(PathBuf, PathBuf)>,
    pub server_name: String,
}

/// The `processsaver` profile's settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Legacy {
    pub pcheck_tag: String,
    pub padmin_tag: String,
    pub facility: u8,
    pub also_procward: bool,
}

impl SyslogSink {
    /// The receiver acknowledges what it got (TCP): the sink reads the
    /// journal through a cursor. UDP and the local socket: best effort.
    pub fn acknowledged(&self) -> bool {
        matches!(
            self.transport,
            Transport::Tcp | Transport::Tls | Transport::Relp
        )
    }

    /// A sink that is never started, to show how a message is formatted
    /// (`render`, `demo`).
    pub fn for_rendering(format: SyslogFormat, transport: Transport, language: Lang) -> SyslogSink {
        SyslogSink {
            name: "render".into(),
            transport,
            address: String::new(),
            format,
            facility: 3,
            min_severity: crate::model::event::Severity::Debug,
            queue: 1,
            max_size: 8192,
            language,
            hold_down: Duration::from_secs(2),
            write_timeout: Duration::from_secs(10),
            legacy: None,
            sd_id: crate::model::oid::sd_id(&crate::model::oid::DEFAULT_ROOT),
            tls: None,
            window: DEFAULT_WINDOW,
            seq_marker: false,
        }
    }
}

/// A community string or v3 password: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnmpSecurity {
    V2c {
        community: Secret,
    },
    V3 {
        user: String,
        auth: Option<(AuthProto, Secret)>,
        privacy: Option<(PrivProto, Secret)>,
    },
}

#[derive(Debug, Clone)]
pub struct SnmpSink {
    pub name: String,
    pub address: String,
    pub security: SnmpSecurity,
    pub kind: NotifyKind,
    pub min_severity: crate::model::event::Severity,
    pub timeout: Duration,
    pub retries: u32,
    pub queue: usize,
    pub language: Lang,
    pub hold_down: Duration,
}

impl SnmpSink {
    /// Informs are acknowledged (the sink reads the journal through a
    /// cursor); traps are best effort.
    pub fn acknowledged(&self) -> bool {
        self.kind == NotifyKind::Inform
    }
}

/// Users and groups allowed on the control socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allow {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct Daemon {
    pub interval: Duration,
    pub control_socket: PathBuf,
    pub allow: Allow,
    /// Group of the control socket (root's when None).
    pub control_group: Option<u32>,
    pub denied_interval: Duration,
    pub state_dir: PathBuf,
    pub journal_keep: u32,
    /// Bytes of rotated journal kept for acknowledged sinks behind.
    pub spool_max: u64,
    /// Where `GET /metrics` is served (needs a restart to change).
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub language: Lang,
    pub zombie_grace: Duration,
    pub catalog_dir: Option<PathBuf>,
    pub templates_dir: Option<PathBuf>,
    pub hostname: String,
    pub snmp_root: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub daemon: Daemon,
    pub syslog: Vec<SyslogSink>,
    pub snmp: Vec<SnmpSink>,
    /// Shared with the monitor core (no copy per reload or scan).
    pub targets: Vec<std::sync::Arc<TargetSpec>>,
    /// Every file read, the main one first.
    pub files: Vec<PathBuf>,
    /// What is accepted but unsafe (`check` prints them, `run` logs them).
    pub warnings: Vec<ConfigError>,
}

/// Rotated journal generations kept by default (`events.jsonl.1` … `.3`).
pub const JOURNAL_KEEP: u32 = 3;
/// The most generations `daemon.journal-keep` may ask for.
pub const JOURNAL_MAX_KEEP: u32 = 100;
/// `daemon.spool-max` by default.
pub const SPOOL_MAX: u64 = 1 << 30;
/// The least `daemon.spool-max`: one journal generation.
pub const SPOOL_MIN: u64 = 16 << 20;

/// A size with a unit: `"512MiB"`, `"2GiB"`, `"100MB"`, `"4096"` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size like \"512MiB\" or \"2GiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        u => {
            return Err(format!(
                "`{u}` is not a size unit (B, KiB, MiB, GiB, TiB, kB, MB, GB, TB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

const DEFAULT_PATH: &str = "/etc/procward/procward.toml";

/// The configuration path: `-c` if given, else `$PROCWARD_CONFIG`, else the default.
pub fn resolve_path(arg: Option<&Path>) -> PathBuf {
    if let Some(p) = arg {
        return p.to_path_buf();
    }
    match std::env::var_os("PROCWARD_CONFIG") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

/// Load, parse and validate the configuration at `path` with its includes.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_reusing(path, &[])
}

/// `load` for a reload: targets equal to one of `running` share its spec
/// (and its compiled pattern) instead of a second copy.
pub fn load_reusing(
    path: &Path,
    running: &[std::sync::Arc<TargetSpec>],
) -> Result<Config, ConfigErrors> {
    let mut c = Collector::default();
    for t in running {
        c.reuse.insert(t.name.clone(), t.clone());
        if let Some(p) = &t.matcher.cmdline {
            c.patterns.seed(p.clone());
        }
    }
    let mut sources: Vec<Source> = Vec::new();
    let mut parsed = Parsed {
        daemon: None,
        sinks: Vec::new(),
        snmp: Vec::new(),
        targets: Vec::new(),
    };

    if let Some(main) = read_source(&mut c, path) {
        sources.push(main);
        let (first, _) = sources.split_at(1);
        parse_sections(&mut c, &first[0], 0, true, &mut parsed);
    }
    let daemon_raw = parsed.daemon.clone().unwrap_or_default();

    read_includes(&mut c, path, &daemon_raw.include, &mut sources, &mut parsed);

    let main_src = sources.first();
    let daemon = validate_daemon(&mut c, main_src, &daemon_raw);
    let sd_id = crate::model::oid::sd_id(daemon.as_ref().map_or(&[][..], |d| &d.snmp_root));
    let syslog = parsed
        .sinks
        .iter()
        .filter_map(|(si, i, s)| validate_sink(&mut c, &sources[*si], *i, s, daemon_raw.language))
        .map(|s| SyslogSink {
            sd_id: sd_id.clone(),
            ..s
        })
        .collect::<Vec<_>>();
    let snmp = parsed
        .snmp
        .iter()
        .filter_map(|(si, i, s)| validate_snmp(&mut c, &sources[*si], *i, s, daemon_raw.language))
        .collect::<Vec<_>>();
    check_sink_names(&mut c, &sources, &parsed);
    // A set: with 10,000 targets, a list made this check 50 million compares.
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut targets = Vec::with_capacity(parsed.targets.len());
    for (si, i, name, spec) in &parsed.targets {
        let src = &sources[*si];
        if !seen.insert(name.as_str()) {
            c.at(
                src,
                &[k("target"), Seg::Index(*i), k("name")],
                format!("duplicate target name `{name}`"),
            );
        }
        if let Some(spec) = spec {
            targets.push(spec.clone());
        }
    }
    deps::validate_deps(&mut c, &sources, &parsed.targets);

    c.errors
        .sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
    if c.errors.is_empty() {
        Ok(Config {
            path: path.to_path_buf(),
            daemon: daemon.expect("daemon validated"),
            syslog,
            snmp,
            targets,
            files: sources.iter().map(|s| s.path.clone()).collect(),
            warnings: c.warnings,
        })
    } else {
        Err(ConfigErrors(c.errors))
    }
}

/// Sink names are unique across `[[sink.syslog]]` and `[[sink.snmp]]`.
fn check_sink_names(c: &mut Collector, sources: &[Source], parsed: &Parsed) {
    let mut names: Vec<&str> = parsed
        .snmp
        .iter()
        .map(|(_, _, s)| s.name.as_str())
        .collect();
    for (si, i, s) in &parsed.sinks {
        if names.contains(&s.name.as_str()) {
            c.at(
                &sources[*si],
                &[k("sink"), k("syslog"), Seg::Index(*i), k("name")],
                format!("duplicate sink name `{}`", s.name),
            );
        }
        names.push(&s.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("procward.toml");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    #[test]
    fn a_reload_shares_the_unchanged_targets_and_their_patterns() {
        let dir = tempfile::tempdir().unwrap();
        let text = |b: &str| {
            format!(
                "[daemon]\nstate-dir = \"{d}/state\"\ncontrol-socket = \"{d}/s.sock\"\n\
                 [[target]]\nname = \"a\"\nmatch.cmdline = 'x+y$'\n\
                 [[target]]\nname = \"b\"\nmatch.comm = \"{b}\"\n",
                d = dir.path().display()
            )
        };
        let path = write(dir.path(), &text("b1"));
        let first = load(&path).unwrap();
        let path = write(dir.path(), &text("b2"));
        let second = load_reusing(&path, &first.targets).unwrap();
        assert!(
            Arc::ptr_eq(&first.targets[0], &second.targets[0]),
            "unchanged: shared"
        );
        assert!(
            !Arc::ptr_eq(&first.targets[1], &second.targets[1]),
            "changed: new"
        );
        assert_eq!(second.targets[1].matcher.comm.as_deref(), Some("b2"));
        // Without the running targets, nothing is shared.
        let third = load(&path).unwrap();
        assert!(!Arc::ptr_eq(&first.targets[0], &third.targets[0]));
        assert_eq!(first.targets[0], third.targets[0]);
    }

    /// The RFC 5424 SD-ID follows `daemon.snmp-root`.
    #[test]
    fn the_syslog_sd_id_follows_the_snmp_root() {
        let dir = tempfile::tempdir().unwrap();
        let text = |root: &str| {
            format!(
                "[daemon]\nstate-dir = \"{d}/state\"\ncontrol-socket = \"{d}/s.sock\"\n{root}\
                 [[sink.syslog]]\nname = \"s\"\ntransport = \"udp\"\naddress = \"127.0.0.1:514\"\n",
                d = dir.path().display()
            )
        };
        let cfg = load(&write(dir.path(), &text(""))).unwrap();
        assert_eq!(cfg.syslog[0].sd_id, "procward@32473");
        let own = text("snmp-root = \"1.3.6.1.4.1.99999.3\"\n");
        let cfg = load(&write(dir.path(), &own)).unwrap();
        assert_eq!(cfg.syslog[0].sd_id, "procward@99999.3");
    }
}
