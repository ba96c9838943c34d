//! Configuration: TOML schema (raw.rs), loading with includes, and
//! validation that collects every error at once, each located at
//! file:line:col with the key it concerns.

pub mod duration;
mod pattern;
pub mod raw;
mod split;

pub use pattern::{Index as PatternIndex, Pattern};

pub use duration::Dur;
pub use raw::{
    AuthProto, NotifyKind, OnRetryOver, PrivProto, SnmpVersion, StallAction, SyslogFormat,
    Transport,
};

use crate::model::Lang;
use raw::*;
use serde::Deserialize;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Exit statuses that are a normal end, not a failure (PW2019).
    pub success_exit: Vec<i32>,
    /// The match section as written, to tell on reload whether it changed.
    pub match_raw: MatchRaw,
}

impl TargetSpec {
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

pub const DEFAULT_PATH: &str = "/etc/procward/procward.toml";

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

// ---------------------------------------------------------------------------
// Locating keys in the source text.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

struct Source {
    path: PathBuf,
    text: String,
    /// The parsed values, taken by `parse_sections`.
    table: std::cell::RefCell<Option<toml::Table>>,
    /// The `[[target]]` blocks, parsed one by one by `parse_sections`
    /// (empty when the file was parsed whole: see split.rs).
    target_blocks: Vec<std::ops::Range<usize>>,
    /// The span-keeping document, parsed only when an error must be located
    /// (a valid configuration never pays for a second parse).
    doc: std::cell::OnceCell<Option<toml_edit::ImDocument<String>>>,
}

/// 1-based line and column (in characters) of a byte offset in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

impl Source {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(&self.text, offset)
    }

    /// The span of the deepest element of `path` that exists.
    fn span_of(&self, path: &[Seg]) -> Option<std::ops::Range<usize>> {
        #[derive(Clone, Copy)]
        enum Node<'a> {
            Table(&'a toml_edit::Table),
            Item(&'a toml_edit::Item),
            Value(&'a toml_edit::Value),
        }
        fn table_key<'a>(
            t: &'a toml_edit::Table,
            k: &str,
            best: &mut Option<std::ops::Range<usize>>,
        ) -> Option<Node<'a>> {
            if let Some(span) = t.key(k).and_then(|k| k.span()) {
                *best = Some(span);
            }
            t.get(k).map(Node::Item)
        }
        fn inline_key<'a>(
            t: &'a toml_edit::InlineTable,
            k: &str,
            best: &mut Option<std::ops::Range<usize>>,
        ) -> Option<Node<'a>> {
            if let Some(span) = t.key(k).and_then(|k| k.span()) {
                *best = Some(span);
            }
            t.get(k).map(Node::Value)
        }
        let doc = self
            .doc
            .get_or_init(|| toml_edit::ImDocument::parse(self.text.clone()).ok())
            .as_ref()?;
        let mut node = Node::Table(doc.as_table());
        let mut best: Option<std::ops::Range<usize>> = None;
        for seg in path {
            let next = match (node, seg) {
                (Node::Table(t), Seg::Key(k))
                | (Node::Item(toml_edit::Item::Table(t)), Seg::Key(k)) => {
                    table_key(t, k, &mut best)
                }
                (
                    Node::Item(toml_edit::Item::Value(toml_edit::Value::InlineTable(t))),
                    Seg::Key(k),
                )
                | (Node::Value(toml_edit::Value::InlineTable(t)), Seg::Key(k)) => {
                    inline_key(t, k, &mut best)
                }
                (Node::Item(toml_edit::Item::ArrayOfTables(a)), Seg::Index(i)) => {
                    a.get(*i).map(|t| {
                        // The header `[[target]]` has no span of its own here:
                        // point at the table's first key instead.
                        let first = t.span().or_else(|| {
                            t.iter()
                                .next()
                                .and_then(|(name, _)| t.key(name).and_then(|k| k.span()))
                        });
                        if let Some(span) = first {
                            best = Some(span);
                        }
                        Node::Table(t)
                    })
                }
                (Node::Item(toml_edit::Item::Value(toml_edit::Value::Array(a))), Seg::Index(i))
                | (Node::Value(toml_edit::Value::Array(a)), Seg::Index(i)) => a.get(*i).map(|v| {
                    if let Some(span) = v.span() {
                        best = Some(span);
                    }
                    Node::Value(v)
                }),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        best
    }
}

#[derive(Default)]
struct Collector {
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    patterns: pattern::Patterns,
    /// Programs already checked in this load (10,000 targets often name
    /// one restart script: its path was walked 10,000 times).
    executables: std::collections::HashMap<PathBuf, Result<(), String>>,
    /// The running configuration's targets, by name (a reload).
    reuse: std::collections::HashMap<String, std::sync::Arc<TargetSpec>>,
}

impl Collector {
    /// `trust::executable`, once per path and load.
    fn executable(&mut self, path: &Path) -> Result<(), String> {
        if let Some(r) = self.executables.get(path) {
            return r.clone();
        }
        let r = crate::sys::trust::executable(path);
        self.executables.insert(path.to_path_buf(), r.clone());
        r
    }
}

fn located(src: &Source, path: &[Seg], message: impl Into<String>) -> ConfigError {
    let (line, col) = src
        .span_of(path)
        .map(|s| src.line_col(s.start))
        .unwrap_or((1, 1));
    ConfigError {
        file: src.path.clone(),
        line,
        col,
        key: path_string(path),
        message: message.into(),
    }
}

impl Collector {
    fn at(&mut self, src: &Source, path: &[Seg], message: impl Into<String>) {
        self.errors.push(located(src, path, message));
    }

    fn warn(&mut self, src: &Source, path: &[Seg], message: impl Into<String>) {
        self.warnings.push(located(src, path, message));
    }

    /// A TOML syntax error in `text` (of which the parsed part began at
    /// byte `base`).
    fn syntax(&mut self, path: &Path, text: &str, base: usize, e: &toml::de::Error) {
        let (line, col) = line_col(text, base + e.span().map(|s| s.start).unwrap_or(0));
        self.errors.push(ConfigError {
            file: path.to_path_buf(),
            line,
            col,
            key: String::new(),
            message: format!("TOML syntax error: {}", e.message().trim()),
        });
    }

    fn file(&mut self, path: &Path, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            key: String::new(),
            message: message.into(),
        });
    }

    /// Deserialize each table of an array of tables (`[[base]]`), recording
    /// errors; returns the good ones with their index.
    fn de_each<T: for<'de> Deserialize<'de>>(
        &mut self,
        src: &Source,
        base: &[Seg],
        value: toml::Value,
    ) -> Vec<(usize, T)> {
        let toml::Value::Array(items) = value else {
            let name = path_string(base);
            self.at(src, base, format!("expected [[{name}]] entries"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let mut at = base.to_vec();
            at.push(Seg::Index(i));
            if let Some(v) = self.de::<T>(src, &at, item) {
                out.push((i, v));
            }
        }
        out
    }

    /// Deserialize `value` (found at `base` in `src`) into T, recording an
    /// error located at the offending key.
    fn de<T: for<'de> Deserialize<'de>>(
        &mut self,
        src: &Source,
        base: &[Seg],
        value: toml::Value,
    ) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut path = base.to_vec();
                for seg in e.path().iter() {
                    match seg {
                        serde_path_to_error::Segment::Seq { index } => {
                            path.push(Seg::Index(*index))
                        }
                        serde_path_to_error::Segment::Map { key } => {
                            path.push(Seg::Key(key.clone()))
                        }
                        serde_path_to_error::Segment::Enum { variant } => {
                            path.push(Seg::Key(variant.clone()))
                        }
                        serde_path_to_error::Segment::Unknown => {}
                    }
                }
                let full = e.inner().to_string();
                let msg = full.lines().next().unwrap_or_default().trim().to_string();
                if let Some(field) = msg
                    .strip_prefix("unknown field `")
                    .and_then(|r| r.split('`').next())
                {
                    if path.last() != Some(&Seg::Key(field.to_string())) {
                        path.push(Seg::Key(field.to_string()));
                    }
                }
                self.at(src, &path, msg);
                None
            }
        }
    }
}

fn k(s: &str) -> Seg {
    Seg::Key(s.to_string())
}

/// Why a pidfile can be written by someone other than root (the file, its
/// directory or one above), if it can.
fn pidfile_problem(pidfile: &Path) -> Option<String> {
    let dir = pidfile.parent().unwrap_or(Path::new("/"));
    if let Err(e) = crate::sys::trust::directory(dir) {
        return Some(e);
    }
    match std::fs::symlink_metadata(pidfile) {
        Ok(md) => crate::sys::trust::component_problem(pidfile, &md, true),
        Err(_) => None,
    }
}

/// A catalog or templates directory: the directory and every file procward
/// reads from it must be trusted.
fn trusted_dir_files(dir: &Path, key: &str) -> Result<(), String> {
    crate::sys::trust::directory(dir)?;
    let wanted = |name: &Path| match key {
        "catalog-dir" => name.file_name().is_some_and(|n| n == "messages.toml"),
        _ => name.extension().is_some_and(|e| e == "hbs"),
    };
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if wanted(&path) {
            crate::sys::trust::config_file(&path)?;
        }
    }
    Ok(())
}

fn read_source(c: &mut Collector, path: &Path) -> Option<Source> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            c.file(path, format!("cannot read: {e}"));
            return None;
        }
    };
    // Whoever can change the configuration can run code as root.
    if let Err(msg) = crate::sys::trust::config_file(path) {
        c.file(path, msg);
    }
    // Large files: the `[[target]]` blocks apart, parsed one at a time.
    let split = split::split(&text);
    let (parsed, target_blocks) = match split {
        Some(sp) => match toml::from_str::<toml::Table>(&sp.rest) {
            Ok(t) if !t.contains_key("target") => (Ok(t), sp.targets),
            // `target` written another way too: TOML decides on the whole.
            Ok(_) => (toml::from_str::<toml::Table>(&text), Vec::new()),
            Err(e) => (Err(e), Vec::new()),
        },
        None => (toml::from_str::<toml::Table>(&text), Vec::new()),
    };
    match parsed {
        Ok(table) => Some(Source {
            path: path.to_path_buf(),
            text,
            table: std::cell::RefCell::new(Some(table)),
            target_blocks,
            doc: std::cell::OnceCell::new(),
        }),
        Err(e) => {
            c.syntax(path, &text, 0, &e);
            None
        }
    }
}

struct Parsed {
    daemon: Option<DaemonRaw>,
    sinks: Vec<(usize, usize, SyslogSinkRaw)>,
    snmp: Vec<(usize, usize, SnmpSinkRaw)>,
    /// (file, index, name, the validated target): each validated as soon
    /// as it is read, so 10,000 raw targets never sit in memory together.
    targets: Vec<(usize, usize, String, Option<std::sync::Arc<TargetSpec>>)>,
}

impl Parsed {
    fn target(&mut self, c: &mut Collector, src: &Source, src_idx: usize, i: usize, t: TargetRaw) {
        let spec = validate_target(c, src, i, &t).map(|spec| {
            // On a reload, an unchanged target keeps the running one's spec:
            // the old and the new configuration are never both in memory.
            match c.reuse.get(spec.name.as_str()) {
                Some(old) if **old == spec => old.clone(),
                _ => std::sync::Arc::new(spec),
            }
        });
        self.targets.push((src_idx, i, t.name, spec));
    }
}

/// Parse the sections of one file. `main` allows `[daemon]`.
fn parse_sections(c: &mut Collector, src: &Source, src_idx: usize, main: bool, out: &mut Parsed) {
    let Some(table) = src.table.borrow_mut().take() else {
        return;
    };
    for (key, value) in table {
        match key.as_str() {
            "daemon" if main => {
                out.daemon = c.de::<DaemonRaw>(src, &[k("daemon")], value);
            }
            "daemon" => c.at(
                src,
                &[k("daemon")],
                "[daemon] belongs in the main configuration file, not in an included one",
            ),
            "sink" => {
                let toml::Value::Table(sinks) = value else {
                    c.at(src, &[k("sink")], "expected a table, like [[sink.syslog]]");
                    continue;
                };
                for (kind, list) in sinks {
                    match kind.as_str() {
                        "syslog" => {
                            let base = [k("sink"), k("syslog")];
                            for (i, s) in c.de_each::<SyslogSinkRaw>(src, &base, list) {
                                out.sinks.push((src_idx, i, s));
                            }
                        }
                        "snmp" => {
                            let base = [k("sink"), k("snmp")];
                            for (i, s) in c.de_each::<SnmpSinkRaw>(src, &base, list) {
                                out.snmp.push((src_idx, i, s));
                            }
                        }
                        other => c.at(
                            src,
                            &[k("sink"), k(other)],
                            format!("unknown sink kind `{other}`, expected `syslog` or `snmp`"),
                        ),
                    }
                }
            }
            "target" => {
                for (i, t) in c.de_each::<TargetRaw>(src, &[k("target")], value) {
                    out.target(c, src, src_idx, i, t);
                }
            }
            other => c.at(
                src,
                &[k(other)],
                format!("unknown key `{other}`, expected one of `daemon`, `sink`, `target`"),
            ),
        }
    }
    // One block at a time: only one block's document is ever in memory.
    for (i, range) in src.target_blocks.iter().enumerate() {
        let table = match toml::from_str::<toml::Table>(&src.text[range.clone()]) {
            Ok(t) => t,
            Err(e) => {
                c.syntax(&src.path, &src.text, range.start, &e);
                continue;
            }
        };
        let item = table.into_iter().find_map(|(key, value)| match value {
            toml::Value::Array(mut a) if key == "target" && a.len() == 1 => a.pop(),
            _ => None,
        });
        match item {
            Some(value) => {
                if let Some(t) = c.de::<TargetRaw>(src, &[k("target"), Seg::Index(i)], value) {
                    out.target(c, src, src_idx, i, t);
                }
            }
            None => c.at(
                src,
                &[k("target"), Seg::Index(i)],
                "expected one [[target]] table",
            ),
        }
    }
}

fn lookup_user(name: &str) -> Result<RunAs, String> {
    let user = match name.parse::<u32>() {
        Ok(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)),
        Err(_) => nix::unistd::User::from_name(name),
    };
    match user {
        Ok(Some(u)) => {
            let cname = std::ffi::CString::new(u.name.clone()).map_err(|e| e.to_string())?;
            let groups = nix::unistd::getgrouplist(&cname, u.gid)
                .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
                .unwrap_or_else(|_| vec![u.gid.as_raw()]);
            Ok(RunAs {
                name: u.name,
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
                groups,
            })
        }
        Ok(None) => Err(format!("no such user `{name}`")),
        Err(e) => Err(format!("cannot look up user `{name}`: {e}")),
    }
}

fn lookup_group(name: &str) -> Result<u32, String> {
    match name.parse::<u32>() {
        Ok(gid) => Ok(gid),
        Err(_) => match nix::unistd::Group::from_name(name) {
            Ok(Some(g)) => Ok(g.gid.as_raw()),
            Ok(None) => Err(format!("no such group `{name}`")),
            Err(e) => Err(format!("cannot look up group `{name}`: {e}")),
        },
    }
}

pub fn facility_code(name: &str) -> Option<u8> {
    Some(match name {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" => 4,
        "syslog" => 5,
        "lpr" => 6,
        "news" => 7,
        "uucp" => 8,
        "cron" => 9,
        "authpriv" => 10,
        "ftp" => 11,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

fn kernel_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
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

    // Includes: globs relative to the main file's directory, sorted.
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    for (i, pattern) in daemon_raw.include.iter().enumerate() {
        let full = if Path::new(pattern).is_absolute() {
            pattern.clone()
        } else {
            base_dir.join(pattern).to_string_lossy().into_owned()
        };
        let loc = [k("daemon"), k("include"), Seg::Index(i)];
        // The directory the pattern reads from: whoever can write it can
        // add a file that the next reload takes in.
        let fixed: PathBuf = Path::new(&full)
            .components()
            .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
            .collect();
        let base = if fixed.as_os_str() == full.as_str() {
            fixed.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            fixed
        };
        if base.is_dir() {
            if let (Err(msg), Some(main)) = (crate::sys::trust::directory(&base), sources.first()) {
                c.at(main, &loc, msg);
            }
        }
        match glob::glob(&full) {
            Ok(paths) => {
                let mut files: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
                files.sort();
                for f in files {
                    if let Some(src) = read_source(&mut c, &f) {
                        let idx = sources.len();
                        sources.push(src);
                        parse_sections(&mut c, &sources[idx], idx, false, &mut parsed);
                    }
                }
            }
            Err(e) => {
                if let Some(main) = sources.first() {
                    c.at(main, &loc, format!("bad pattern: {e}"));
                }
            }
        }
    }

    let main_src = sources.first();
    let daemon = validate_daemon(&mut c, main_src, &daemon_raw);
    let syslog = parsed
        .sinks
        .iter()
        .filter_map(|(si, i, s)| validate_sink(&mut c, &sources[*si], *i, s, daemon_raw.language))
        .collect::<Vec<_>>();
    let snmp = parsed
        .snmp
        .iter()
        .filter_map(|(si, i, s)| validate_snmp(&mut c, &sources[*si], *i, s, daemon_raw.language))
        .collect::<Vec<_>>();
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

fn validate_daemon(c: &mut Collector, src: Option<&Source>, d: &DaemonRaw) -> Option<Daemon> {
    let src = src?;
    let at = |c: &mut Collector, key: &str, msg: String| c.at(src, &[k("daemon"), k(key)], msg);
    if d.interval.is_zero() {
        at(c, "interval", "must be greater than zero".into());
    }
    if d.zombie_grace.0 > Duration::from_secs(60) {
        at(c, "zombie-grace", "must be at most 60s".into());
    }
    let mut allow = Allow::default();
    for (i, entry) in d.control_allow.iter().enumerate() {
        let loc = [k("daemon"), k("control-allow"), Seg::Index(i)];
        if let Some(g) = entry.strip_prefix('@') {
            match lookup_group(g) {
                Ok(gid) => allow.gids.push(gid),
                Err(e) => c.at(src, &loc, e),
            }
        } else {
            match lookup_user(entry) {
                Ok(u) => allow.uids.push(u.uid),
                Err(e) => c.at(src, &loc, e),
            }
        }
    }
    let control_group = d
        .control_group
        .as_ref()
        .and_then(|g| lookup_group(g).map_err(|e| at(c, "control-group", e)).ok());
    let metrics_listen = d.metrics_listen.as_ref().and_then(|a| {
        a.parse::<std::net::SocketAddr>()
            .map_err(|_| {
                at(
                    c,
                    "metrics-listen",
                    format!("`{a}` is not an address:port like \"127.0.0.1:9813\""),
                )
            })
            .ok()
    });
    if !(1..=JOURNAL_MAX_KEEP).contains(&d.journal_keep) {
        at(
            c,
            "journal-keep",
            format!("must be 1 to {JOURNAL_MAX_KEEP}"),
        );
    }
    if d.control_denied_interval.is_zero() {
        at(
            c,
            "control-denied-interval",
            "must be greater than zero".into(),
        );
    }
    let others_allowed = allow.uids.iter().any(|&u| u != 0) || allow.gids.iter().any(|&g| g != 0);
    if others_allowed && control_group.is_none() {
        c.warn(
            src,
            &[k("daemon"), k("control-allow")],
            "names users other than root, but the control socket is root's alone (mode 0660, group root): set daemon.control-group to a group those users are in",
        );
    }
    for (key, dir) in [
        ("catalog-dir", &d.catalog_dir),
        ("templates-dir", &d.templates_dir),
    ] {
        if let Some(dir) = dir {
            if let Err(msg) = trusted_dir_files(dir, key) {
                at(c, key, msg);
            }
        }
    }
    let snmp_root: Vec<u32> = d
        .snmp_root
        .split('.')
        .map(|a| a.parse::<u32>())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    if snmp_root.len() < 7 || snmp_root[..6] != [1, 3, 6, 1, 4, 1] {
        at(
            c,
            "snmp-root",
            format!(
                "`{}` must be a numeric OID under enterprises, like 1.3.6.1.4.1.32473",
                d.snmp_root
            ),
        );
    }
    Some(Daemon {
        snmp_root,
        interval: d.interval.0,
        control_socket: d.control_socket.clone(),
        allow,
        control_group,
        denied_interval: d.control_denied_interval.0,
        state_dir: d.state_dir.clone(),
        journal_keep: d.journal_keep,
        metrics_listen,
        language: d.language,
        zombie_grace: d.zombie_grace.0,
        catalog_dir: d.catalog_dir.clone(),
        templates_dir: d.templates_dir.clone(),
        hostname: d.hostname.clone().unwrap_or_else(kernel_hostname),
    })
}

fn validate_sink(
    c: &mut Collector,
    src: &Source,
    i: usize,
    s: &SyslogSinkRaw,
    lang: Lang,
) -> Option<SyslogSink> {
    let base = |key: &str| [k("sink"), k("syslog"), Seg::Index(i), k(key)];
    let mut ok = true;
    let facility = match facility_code(&s.facility) {
        Some(f) => f,
        None => {
            c.at(
                src,
                &base("facility"),
                format!("unknown facility `{}`", s.facility),
            );
            ok = false;
            0
        }
    };
    let address = match (s.transport, &s.address) {
        (Transport::Unix, None) => "/dev/log".to_string(),
        (_, None) => {
            c.at(
                src,
                &[k("sink"), k("syslog"), Seg::Index(i)],
                "udp and tcp sinks need `address = \"host:port\"`",
            );
            ok = false;
            String::new()
        }
        (Transport::Unix, Some(a)) => a.clone(),
        (_, Some(a)) => {
            if !a.contains(':') {
                c.at(src, &base("address"), format!("`{a}` is not host:port"));
                ok = false;
            }
            a.clone()
        }
    };
    if s.queue == 0 {
        c.at(src, &base("queue"), "must be at least 1");
        ok = false;
    }
    if s.write_timeout.0.is_zero() {
        c.at(src, &base("write-timeout"), "must be greater than zero");
        ok = false;
    }
    let default_max = match (s.transport, s.format) {
        (Transport::Udp, SyslogFormat::Rfc3164) => 1024,
        (Transport::Udp, SyslogFormat::Rfc5424) => 2048,
        _ => 8192,
    };
    let max_size = s.max_size.unwrap_or(default_max);
    if max_size < 480 {
        c.at(
            src,
            &base("max-size"),
            "must be at least 480 bytes (RFC 5424 §6.1)",
        );
        ok = false;
    }
    let legacy = validate_legacy(c, src, i, s, facility);
    ok &= legacy.is_ok();
    ok.then(|| SyslogSink {
        legacy: legacy.ok().flatten(),
        name: s.name.clone(),
        transport: s.transport,
        address,
        format: s.format,
        facility,
        min_severity: s.min_severity,
        queue: s.queue,
        max_size,
        language: s.language.unwrap_or(lang),
        hold_down: s.hold_down.0,
        write_timeout: s.write_timeout.0,
    })
}

/// The `processsaver` profile's options: tags as RFC 3164 allows them
/// (1 to 32 letters, digits, `.`, `_`, `-`), a known facility.
fn validate_legacy(
    c: &mut Collector,
    src: &Source,
    i: usize,
    s: &SyslogSinkRaw,
    facility: u8,
) -> Result<Option<Legacy>, ()> {
    let key = |k2: &str| {
        [
            k("sink"),
            k("syslog"),
            Seg::Index(i),
            k("processsaver"),
            k(k2),
        ]
    };
    let opts = match (s.profile, &s.processsaver) {
        (Profile::Procward, None) => return Ok(None),
        (Profile::Procward, Some(_)) => {
            let at = [k("sink"), k("syslog"), Seg::Index(i), k("processsaver")];
            c.at(src, &at, "needs profile = \"processsaver\"");
            return Err(());
        }
        (Profile::Processsaver, o) => o.clone().unwrap_or(LegacyRaw {
            pcheck_tag: "pcheck".into(),
            padmin_tag: "padmin".into(),
            facility: None,
            also_procward: false,
        }),
    };
    let mut ok = true;
    for (name, tag) in [
        ("pcheck-tag", &opts.pcheck_tag),
        ("padmin-tag", &opts.padmin_tag),
    ] {
        let fine = (1..=32).contains(&tag.len())
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !fine {
            c.at(
                src,
                &key(name),
                format!("`{tag}`: 1 to 32 letters, digits, `.`, `_` or `-`"),
            );
            ok = false;
        }
    }
    let facility = match &opts.facility {
        None => facility,
        Some(f) => facility_code(f).unwrap_or_else(|| {
            c.at(src, &key("facility"), format!("unknown facility `{f}`"));
            ok = false;
            0
        }),
    };
    ok.then_some(Some(Legacy {
        pcheck_tag: opts.pcheck_tag,
        padmin_tag: opts.padmin_tag,
        facility,
        also_procward: opts.also_procward,
    }))
    .ok_or(())
}

fn validate_snmp(
    c: &mut Collector,
    src: &Source,
    i: usize,
    s: &SnmpSinkRaw,
    lang: Lang,
) -> Option<SnmpSink> {
    let n0 = c.errors.len();
    let p = |key: &str| [k("sink"), k("snmp"), Seg::Index(i), k(key)];
    if !s.address.contains(':') {
        c.at(
            src,
            &p("address"),
            format!("`{}` is not host:port", s.address),
        );
    }
    // Whoever can read the file can read the secrets.
    let readable = std::fs::metadata(&src.path)
        .map(|m| m.permissions().mode() & 0o004 != 0)
        .unwrap_or(false);
    let secret = |c: &mut Collector, key: &str, v: &Option<String>, min: usize| -> Option<Secret> {
        match v {
            None => {
                c.at(
                    src,
                    &[k("sink"), k("snmp"), Seg::Index(i)],
                    format!("`{key}` is required here"),
                );
                None
            }
            Some(v) => {
                if v.len() < min {
                    c.at(src, &p(key), format!("must be at least {min} characters"));
                }
                if readable {
                    c.at(
                        src,
                        &p(key),
                        format!(
                            "is a secret, but {} is readable by others; run: chmod o-r {}",
                            src.path.display(),
                            src.path.display()
                        ),
                    );
                }
                Some(Secret(v.clone()))
            }
        }
    };
    let security = match s.version {
        SnmpVersion::V2c => {
            for (key, set) in [
                ("user", s.user.is_some()),
                ("auth", s.auth.is_some()),
                ("priv", s.privacy.is_some()),
            ] {
                if set {
                    c.at(src, &p(key), "is for version = \"3\" only");
                }
            }
            secret(c, "community", &s.community, 1).map(|community| SnmpSecurity::V2c { community })
        }
        SnmpVersion::V3 => {
            if s.community.is_some() {
                c.at(
                    src,
                    &p("community"),
                    "is for version = \"2c\" only; v3 uses user, auth and priv",
                );
            }
            let auth = s
                .auth
                .and_then(|a| secret(c, "auth-key", &s.auth_key, 8).map(|k| (a, k)));
            let privacy = s
                .privacy
                .and_then(|pr| secret(c, "priv-key", &s.priv_key, 8).map(|k| (pr, k)));
            if s.privacy.is_some() && s.auth.is_none() {
                c.at(src, &p("priv"), "needs auth too (authPriv)");
            }
            match &s.user {
                Some(u) if !u.is_empty() => Some(SnmpSecurity::V3 {
                    user: u.clone(),
                    auth,
                    privacy,
                }),
                _ => {
                    c.at(
                        src,
                        &[k("sink"), k("snmp"), Seg::Index(i)],
                        "`user` is required for version = \"3\"",
                    );
                    None
                }
            }
        }
    };
    if s.timeout.is_zero() {
        c.at(src, &p("timeout"), "must be greater than zero");
    }
    if s.queue == 0 {
        c.at(src, &p("queue"), "must be at least 1");
    }
    if c.errors.len() != n0 {
        return None;
    }
    Some(SnmpSink {
        name: s.name.clone(),
        address: s.address.clone(),
        security: security?,
        kind: s.kind,
        min_severity: s.min_severity,
        timeout: s.timeout.0,
        retries: s.retries,
        queue: s.queue,
        language: s.language.unwrap_or(lang),
        hold_down: s.hold_down.0,
    })
}

/// Where the problems of one `[[target]]` go: every error and warning is
/// located under `target[i]`.
struct AtTarget<'a> {
    c: &'a mut Collector,
    src: &'a Source,
    i: usize,
}

impl AtTarget<'_> {
    fn path(&self, keys: &[&str]) -> Vec<Seg> {
        let mut v = vec![k("target"), Seg::Index(self.i)];
        v.extend(keys.iter().map(|s| k(s)));
        v
    }

    fn err(&mut self, keys: &[&str], msg: impl Into<String>) {
        let p = self.path(keys);
        self.c.at(self.src, &p, msg);
    }

    fn warn(&mut self, keys: &[&str], msg: impl Into<String>) {
        let p = self.path(keys);
        self.c.warn(self.src, &p, msg);
    }

    /// A duration that must not be zero.
    fn nonzero(&mut self, keys: &[&str], d: Dur) {
        if d.is_zero() {
            self.err(keys, "must be greater than zero");
        }
    }
}

fn validate_target(c: &mut Collector, src: &Source, i: usize, t: &TargetRaw) -> Option<TargetSpec> {
    let n0 = c.errors.len();
    let mut at = AtTarget { c, src, i };
    let valid_name = !t.name.is_empty()
        && t.name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
    if !valid_name {
        at.err(&["name"], "use letters, digits, `-`, `_` and `.` only");
    }
    let matcher = validate_matcher(&mut at, &t.matcher);
    let count = validate_count(&mut at, t);
    let restart = validate_restart(&mut at, &t.restart);
    let retry = validate_retry(&mut at, &t.retry);
    let failover = validate_failover(&mut at, t);
    let base = at.path(&["stall"]);
    let stall = t
        .stall
        .as_ref()
        .and_then(|st| validate_stall(at.c, src, &base, st))
        .map(Box::new);
    let mut success_exit = Vec::new();
    for &code in &t.success_exit {
        match i32::try_from(code) {
            Ok(c) if (0..=255).contains(&c) => success_exit.push(c),
            _ => at.err(
                &["success-exit"],
                format!("{code} is not an exit status (0 to 255)"),
            ),
        }
    }
    if c.errors.len() != n0 {
        return None;
    }
    Some(TargetSpec {
        name: t.name.clone(),
        matcher: matcher?,
        count,
        children_min: t.children.as_ref().map(|c| c.min),
        restart: restart?,
        retry,
        on_retry_over: t.on_retry_over,
        failover,
        stall,
        success_exit,
        match_raw: t.matcher.clone(),
    })
}

fn validate_matcher(at: &mut AtTarget, m: &MatchRaw) -> Option<Matcher> {
    if m.exe.is_none() && m.comm.is_none() && m.cmdline.is_none() && m.pidfile.is_none() {
        at.err(
            &["match"],
            "give at least one of match.exe, match.comm, match.cmdline, match.pidfile (match.user only narrows)",
        );
    }
    if m.exe.as_ref().is_some_and(|e| !e.is_absolute()) {
        at.err(&["match", "exe"], "must be an absolute path");
    }
    if let Some(pidfile) = &m.pidfile {
        let narrowed =
            m.exe.is_some() || m.comm.is_some() || m.cmdline.is_some() || m.user.is_some();
        if !pidfile.is_absolute() {
            at.err(&["match", "pidfile"], "must be an absolute path");
        } else if let Some(problem) = pidfile_problem(pidfile).filter(|_| !narrowed) {
            at.warn(
                &["match", "pidfile"],
                format!(
                    "can be written by others than root ({problem}): whoever can write it chooses the process procward adopts and `procward stop` signals; add match.exe, match.comm, match.cmdline or match.user"
                ),
            );
        }
    }
    if m.comm
        .as_ref()
        .is_some_and(|c| c.is_empty() || c.len() > 15)
    {
        at.err(
            &["match", "comm"],
            "the kernel keeps at most 15 bytes of a command name; use match.cmdline for longer names",
        );
    }
    let cmdline = match m.cmdline.as_deref().map(|p| at.c.patterns.get(p)) {
        Some(Err(e)) => {
            let first = e.lines().last().unwrap_or("").trim();
            at.err(&["match", "cmdline"], format!("bad regex: {first}"));
            None
        }
        Some(Ok(r)) => Some(Some(r)),
        None => Some(None),
    };
    let uid = match m.user.as_deref().map(lookup_user) {
        Some(Err(e)) => {
            at.err(&["match", "user"], e);
            None
        }
        Some(Ok(u)) => Some(Some(u.uid)),
        None => Some(None),
    };
    Some(Matcher {
        exe: m.exe.clone(),
        comm: m.comm.clone(),
        cmdline: cmdline?,
        pidfile: m.pidfile.clone(),
        uid: uid?,
    })
}

fn validate_count(at: &mut AtTarget, t: &TargetRaw) -> Option<(u32, Option<u32>)> {
    if t.children.as_ref().is_some_and(|ch| ch.min == 0) {
        at.err(
            &["children", "min"],
            "must be at least 1 (or leave `children` out)",
        );
    }
    let cnt = t.count.as_ref()?;
    let min = cnt.min.unwrap_or(1);
    if let Some(max) = cnt.max {
        if max == 0 {
            at.err(&["count", "max"], "must be at least 1");
        }
        if max < min {
            at.err(&["count", "max"], format!("is below count.min ({min})"));
        }
    }
    Some((min, cnt.max))
}

fn validate_restart(at: &mut AtTarget, r: &RestartRaw) -> Option<Restart> {
    let (script, args) = match &r.script {
        None => (None, Vec::new()),
        Some(ScriptRaw::Path(p)) => (Some(p.clone()), Vec::new()),
        Some(ScriptRaw::Argv(argv)) => match argv.split_first() {
            Some((first, rest)) if !first.is_empty() => (Some(PathBuf::from(first)), rest.to_vec()),
            _ => {
                at.err(&["restart", "script"], "must name a program");
                (None, Vec::new())
            }
        },
    };
    if let Some(Err(mut msg)) = script.as_deref().map(|p| at.c.executable(p)) {
        let spaced =
            matches!(&r.script, Some(ScriptRaw::Path(p)) if p.to_string_lossy().contains(' '));
        if spaced && script.as_deref().is_some_and(|p| !p.exists()) {
            msg.push_str(
                "; to pass arguments, write restart.script as a list: [\"/path/to/script\", \"arg\"]",
            );
        }
        at.err(&["restart", "script"], msg);
    }
    at.nonzero(&["restart", "timeout"], r.timeout);
    at.nonzero(&["restart", "settle"], r.settle);
    let user = match r.user.as_deref().map(lookup_user) {
        Some(Err(e)) => {
            at.err(&["restart", "user"], e);
            return None;
        }
        Some(Ok(u)) => Some(u),
        None => None,
    };
    Some(Restart {
        script,
        args,
        timeout: r.timeout.0,
        settle: r.settle.0,
        user,
    })
}

fn validate_retry(at: &mut AtTarget, r: &RetryRaw) -> Retry {
    if r.max > 1000 {
        at.err(&["retry", "max"], "must be at most 1000");
    }
    at.nonzero(&["retry", "window"], r.window);
    if r.backoff.max.0 < r.backoff.initial.0 {
        at.err(
            &["retry", "backoff", "max"],
            "is below retry.backoff.initial",
        );
    }
    Retry {
        max: r.max,
        window: r.window.0,
        backoff_initial: r.backoff.initial.0,
        backoff_max: r.backoff.max.0,
    }
}

fn validate_failover(at: &mut AtTarget, t: &TargetRaw) -> Option<Failover> {
    let needs = matches!(t.on_retry_over, OnRetryOver::Failover | OnRetryOver::Exec);
    let Some(f) = &t.failover else {
        if needs {
            let what = t.on_retry_over.as_str();
            at.err(
                &["on-retry-over"],
                format!("\"{what}\" needs failover.command"),
            );
        }
        return None;
    };
    let key = ["failover", "command"];
    match f.command.first().map(Path::new) {
        None => at.err(&key, "must name a program"),
        Some(p) if p.as_os_str().is_empty() => at.err(&key, "must name a program"),
        Some(p) if !p.is_absolute() => at.err(&key, "the program must be an absolute path"),
        Some(p) => {
            if let Err(msg) = at.c.executable(p) {
                at.err(&key, msg);
            }
        }
    }
    at.nonzero(&["failover", "timeout"], f.timeout);
    Some(Failover {
        command: f.command.clone(),
        timeout: f.timeout.0,
    })
}

/// "200-399" or "200".
fn parse_status_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (100..=599).contains(&a).then_some(())?;
    (a <= b && b <= 599).then_some((a, b))
}

/// `http://host[:port][/path]`: host, port, path.
pub fn parse_http_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h.to_string(), p.parse().ok()?),
        _ => (hostport.to_string(), 80),
    };
    (!host.is_empty()).then_some((host, port, path))
}

fn validate_stall(c: &mut Collector, src: &Source, base: &[Seg], st: &StallRaw) -> Option<Stall> {
    let n0 = c.errors.len();
    let at = |c: &mut Collector, keys: &[&str], msg: String| {
        let mut p = base.to_vec();
        p.extend(keys.iter().map(|s| k(s)));
        c.at(src, &p, msg)
    };
    if st.interval.is_zero() {
        at(c, &["interval"], "must be greater than zero".into());
    }
    if st.failures == 0 {
        at(c, &["failures"], "must be at least 1".into());
    }
    if st.stop_timeout.is_zero() {
        at(c, &["stop-timeout"], "must be greater than zero".into());
    }
    let nonzero = |c: &mut Collector, key: &str, d: Dur| {
        if d.is_zero() {
            at(c, &["probe", key], "must be greater than zero".into());
        }
    };
    let probe = match &st.probe {
        ProbeRaw::Exec { command, timeout } => {
            nonzero(c, "timeout", *timeout);
            if command.is_empty() || !Path::new(&command[0]).is_absolute() {
                at(
                    c,
                    &["probe", "command"],
                    "must start with an absolute path to a program".into(),
                );
            } else if let Err(msg) = c.executable(Path::new(&command[0])) {
                at(c, &["probe", "command"], msg);
            }
            Probe::Exec {
                argv: command.clone(),
                timeout: timeout.0,
            }
        }
        ProbeRaw::Tcp { address, timeout } => {
            nonzero(c, "timeout", *timeout);
            if !address.contains(':') {
                at(
                    c,
                    &["probe", "address"],
                    format!("`{address}` is not host:port"),
                );
            }
            Probe::Tcp {
                address: address.clone(),
                timeout: timeout.0,
            }
        }
        ProbeRaw::Http {
            url,
            timeout,
            expect_status,
            expect_body,
        } => {
            nonzero(c, "timeout", *timeout);
            let status = parse_status_range(expect_status).unwrap_or_else(|| {
                at(
                    c,
                    &["probe", "expect-status"],
                    format!("`{expect_status}` is not a status or range like \"200-399\""),
                );
                (200, 399)
            });
            let (host, port, path) = parse_http_url(url).unwrap_or_else(|| {
                at(
                    c,
                    &["probe", "url"],
                    format!("`{url}` is not an http:// URL (https is not supported by this probe)"),
                );
                (String::new(), 0, String::new())
            });
            Probe::Http {
                host,
                port,
                path,
                timeout: timeout.0,
                status,
                body: expect_body.clone(),
            }
        }
        ProbeRaw::Heartbeat { path, max_age } => {
            nonzero(c, "max-age", *max_age);
            if !path.is_absolute() {
                at(c, &["probe", "path"], "must be an absolute path".into());
            }
            Probe::Heartbeat {
                path: path.clone(),
                max_age: max_age.0,
            }
        }
        ProbeRaw::State { max_duration } => {
            nonzero(c, "max-duration", *max_duration);
            Probe::State {
                max_duration: max_duration.0,
            }
        }
    };
    (c.errors.len() == n0).then_some(Stall {
        probe,
        interval: st.interval.0,
        failures: st.failures,
        action: st.action,
        stop_timeout: st.stop_timeout.0,
        signal_group: st.signal_group,
    })
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
}
