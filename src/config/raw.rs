//! The configuration as written (serde), before validation.

use super::duration::Dur;
use crate::model::event::Severity;
use serde::Deserialize;
use std::path::PathBuf;

use crate::model::Lang;

fn d_interval() -> Dur {
    Dur::secs(1)
}
fn d_socket() -> PathBuf {
    PathBuf::from("/run/procward/control.sock")
}
fn d_allow() -> Vec<String> {
    vec!["root".into()]
}
fn d_denied_interval() -> Dur {
    Dur::secs(60)
}
fn d_journal_keep() -> u32 {
    super::JOURNAL_KEEP
}
fn d_state() -> PathBuf {
    PathBuf::from("/var/lib/procward")
}
fn d_zombie_grace() -> Dur {
    Dur(std::time::Duration::from_millis(500))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DaemonRaw {
    #[serde(default = "d_interval")]
    pub interval: Dur,
    #[serde(default = "d_socket")]
    pub control_socket: PathBuf,
    #[serde(default = "d_allow")]
    pub control_allow: Vec<String>,
    /// Group owning the control socket (mode 0660), so that the users of
    /// `control-allow` who are in it can open it.
    #[serde(default)]
    pub control_group: Option<String>,
    /// `host:port` for the Prometheus/OpenMetrics endpoint (off when unset).
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// At most one PW1008 per refused user in this interval (with a count).
    #[serde(default = "d_denied_interval")]
    pub control_denied_interval: Dur,
    #[serde(default = "d_state")]
    pub state_dir: PathBuf,
    /// Rotated generations of the event journal kept (16 MiB each).
    #[serde(default = "d_journal_keep")]
    pub journal_keep: u32,
    /// Disk the journal may use for acknowledged sinks that fall behind
    /// (a size: "1GiB", "512MiB"); past it their oldest events are given up.
    #[serde(default)]
    pub spool_max: Option<String>,
    #[serde(default)]
    pub language: Lang,
    #[serde(default)]
    pub include: Vec<String>,
    /// How long an exited process may stay a zombie before it counts as one
    /// (its parent usually reaps it at once: then it counts as disappeared).
    #[serde(default = "d_zombie_grace")]
    pub zombie_grace: Dur,
    /// Directory whose `messages.toml` and `*.hbs` override the embedded
    /// catalog and templates.
    #[serde(default)]
    pub catalog_dir: Option<PathBuf>,
    #[serde(default)]
    pub templates_dir: Option<PathBuf>,
    /// Host name used in messages (default: the kernel's host name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Root OID of procward's MIB (notifications at ROOT.0.N, objects at
    /// ROOT.1.N); must lie under enterprises (1.3.6.1.4.1).
    #[serde(default = "d_snmp_root")]
    pub snmp_root: String,
}

fn d_snmp_root() -> String {
    let root = crate::model::oid::DEFAULT_ROOT.map(|n| n.to_string());
    root.join(".")
}

impl Default for DaemonRaw {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    #[default]
    Unix,
    Udp,
    Tcp,
    /// RFC 5425: syslog over TLS, octet counting.
    Tls,
    /// RELP (librelp, rsyslog's imrelp): acknowledged by the receiver;
    /// over TLS with a `tls` table.
    Relp,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SyslogFormat {
    #[default]
    Rfc3164,
    Rfc5424,
}

fn d_facility() -> String {
    "daemon".into()
}
fn d_info() -> Severity {
    Severity::Info
}
fn d_queue() -> usize {
    10_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SyslogSinkRaw {
    pub name: String,
    #[serde(default)]
    pub transport: Transport,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub format: SyslogFormat,
    #[serde(default = "d_facility")]
    pub facility: String,
    #[serde(default = "d_info")]
    pub min_severity: Severity,
    /// Messages kept while the receiver is away; the oldest are dropped past this.
    #[serde(default = "d_queue")]
    pub queue: usize,
    /// Largest message in bytes; longer ones are cut at a UTF-8 boundary.
    #[serde(default)]
    pub max_size: Option<usize>,
    /// Language of the message text for this sink (default: daemon.language).
    #[serde(default)]
    pub language: Option<Lang>,
    /// After a failure, delivery counts as working again only once a
    /// message was confirmed and nothing failed for this long.
    #[serde(default = "d_hold_down")]
    pub hold_down: Dur,
    /// A write that takes longer (a receiver that does not read) is a failure.
    #[serde(default = "d_write_timeout")]
    pub write_timeout: Dur,
    /// `procward` lines, or ProcessSaver's lines for the events it knows.
    #[serde(default)]
    pub profile: Profile,
    /// Options of the `processsaver` profile.
    #[serde(default)]
    pub processsaver: Option<LegacyRaw>,
    /// `tls = { ca = "PATH", cert = "PATH", key = "PATH", server-name = "NAME" }`.
    #[serde(default)]
    pub tls: Option<TlsRaw>,
    /// RELP: frames sent and not yet acknowledged, at most (default 128).
    #[serde(default)]
    pub window: Option<usize>,
    /// RFC 3164: end each line with ` seq=N` (the RFC 5424 lines carry it
    /// in their structured data).
    #[serde(default)]
    pub seq_marker: bool,
}

/// The `tls` table of a syslog sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsRaw {
    /// The CA certificates (PEM) that sign the receiver's certificate.
    pub ca: std::path::PathBuf,
    /// A client certificate (PEM, with its chain) and its key, for
    /// receivers that want one.
    #[serde(default)]
    pub cert: Option<std::path::PathBuf>,
    #[serde(default)]
    pub key: Option<std::path::PathBuf>,
    /// The name the receiver's certificate must carry (default: the host
    /// of `address`).
    #[serde(default)]
    pub server_name: Option<String>,
}

/// What a syslog sink writes: procward's own lines, or, for the events
/// CLUSTERPRO MC ProcessSaver also reports, its lines (notify/legacy.rs).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    #[default]
    Procward,
    Processsaver,
}

/// `processsaver = { ... }` of a syslog sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LegacyRaw {
    /// The tag of monitoring lines (Up, Down, restart).
    #[serde(default = "d_pcheck")]
    pub pcheck_tag: String,
    /// The tag of administrative lines (start, stop, reload).
    #[serde(default = "d_padmin")]
    pub padmin_tag: String,
    /// Facility of the legacy lines (default: the sink's).
    #[serde(default)]
    pub facility: Option<String>,
    /// Send procward's own line as well as the legacy one.
    #[serde(default)]
    pub also_procward: bool,
}

fn d_pcheck() -> String {
    "pcheck".into()
}
fn d_padmin() -> String {
    "padmin".into()
}

fn d_hold_down() -> Dur {
    Dur::secs(2)
}
fn d_write_timeout() -> Dur {
    Dur::secs(10)
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum SnmpVersion {
    #[serde(rename = "2c")]
    V2c,
    #[serde(rename = "3")]
    V3,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyKind {
    #[default]
    Trap,
    Inform,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AuthProto {
    /// HMAC-SHA-96 (RFC 3414)
    Sha,
    /// HMAC-SHA-256-192 (RFC 7860)
    Sha256,
    /// HMAC-SHA-512-384 (RFC 7860)
    Sha512,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PrivProto {
    /// AES-128-CFB (RFC 3826)
    Aes,
}

fn d_snmp_timeout() -> Dur {
    Dur::secs(1)
}
fn d_retries() -> u32 {
    3
}
fn d_warning() -> Severity {
    Severity::Warning
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SnmpSinkRaw {
    pub name: String,
    pub address: String,
    pub version: SnmpVersion,
    pub community: Option<String>,
    #[serde(default)]
    pub kind: NotifyKind,
    #[serde(default = "d_warning")]
    pub min_severity: Severity,
    pub user: Option<String>,
    pub auth: Option<AuthProto>,
    pub auth_key: Option<String>,
    #[serde(rename = "priv")]
    pub privacy: Option<PrivProto>,
    pub priv_key: Option<String>,
    /// Informs: wait this long for the acknowledgement ...
    #[serde(default = "d_snmp_timeout")]
    pub timeout: Dur,
    /// ... and send again this many times.
    #[serde(default = "d_retries")]
    pub retries: u32,
    #[serde(default = "d_queue")]
    pub queue: usize,
    #[serde(default)]
    pub language: Option<Lang>,
    /// See the syslog sink's hold-down.
    #[serde(default = "d_hold_down")]
    pub hold_down: Dur,
}

impl std::fmt::Debug for SnmpSinkRaw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnmpSinkRaw")
            .field("name", &self.name)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MatchRaw {
    pub exe: Option<PathBuf>,
    pub comm: Option<String>,
    pub cmdline: Option<String>,
    pub pidfile: Option<PathBuf>,
    pub user: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CountRaw {
    pub min: Option<u32>,
    pub max: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ChildrenRaw {
    pub min: u32,
}

fn d_timeout() -> Dur {
    Dur::secs(60)
}
fn d_settle() -> Dur {
    Dur::secs(10)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RestartRaw {
    pub script: Option<ScriptRaw>,
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
    #[serde(default = "d_settle")]
    pub settle: Dur,
    pub user: Option<String>,
}

/// `restart.script`: a path, or an argv list like `failover.command`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ScriptRaw {
    Path(PathBuf),
    Argv(Vec<String>),
}

impl Default for RestartRaw {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

fn d_max() -> u32 {
    3
}
fn d_window() -> Dur {
    Dur::secs(86_400)
}
/// The first restart is immediate; the ones after it wait 1 s, 2 s, 4 s …
/// up to a minute, so that a failing script does not burn the retry
/// budget in milliseconds.
fn d_backoff_initial() -> Dur {
    Dur::secs(1)
}
fn d_backoff_max() -> Dur {
    Dur::secs(60)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackoffRaw {
    #[serde(default = "d_backoff_initial")]
    pub initial: Dur,
    #[serde(default = "d_backoff_max")]
    pub max: Dur,
}

impl Default for BackoffRaw {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetryRaw {
    #[serde(default = "d_max")]
    pub max: u32,
    #[serde(default = "d_window")]
    pub window: Dur,
    #[serde(default)]
    pub backoff: BackoffRaw,
}

impl Default for RetryRaw {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnRetryOver {
    Continue,
    #[default]
    Unmonitor,
    Failover,
    Exec,
}

impl OnRetryOver {
    pub fn as_str(self) -> &'static str {
        match self {
            OnRetryOver::Continue => "continue",
            OnRetryOver::Unmonitor => "unmonitor",
            OnRetryOver::Failover => "failover",
            OnRetryOver::Exec => "exec",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FailoverRaw {
    pub command: Vec<String>,
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TargetRaw {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: MatchRaw,
    pub count: Option<CountRaw>,
    pub children: Option<ChildrenRaw>,
    #[serde(default)]
    pub restart: RestartRaw,
    #[serde(default)]
    pub retry: RetryRaw,
    #[serde(default)]
    pub on_retry_over: OnRetryOver,
    pub failover: Option<FailoverRaw>,
    pub stall: Option<StallRaw>,
    /// `[[target.check]]`: health checks (config/checks.rs).
    #[serde(default)]
    pub check: Vec<super::checks::CheckRaw>,
    /// Targets that must be up before this one is started or restarted.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Exit statuses that are a normal end (like systemd's SuccessExitStatus).
    #[serde(default)]
    pub success_exit: Vec<i64>,
}

fn d_probe_timeout() -> Dur {
    Dur::secs(5)
}
fn d_status() -> String {
    "200-399".into()
}

/// One stall probe (`stall.probe = { kind = "...", ... }`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ProbeRaw {
    Exec {
        command: Vec<String>,
        #[serde(default = "d_probe_timeout")]
        timeout: Dur,
    },
    Tcp {
        address: String,
        #[serde(default = "d_probe_timeout")]
        timeout: Dur,
    },
    Http {
        url: String,
        #[serde(default = "d_probe_timeout")]
        timeout: Dur,
        #[serde(default = "d_status", rename = "expect-status")]
        expect_status: String,
        #[serde(default, rename = "expect-body")]
        expect_body: Option<String>,
    },
    Heartbeat {
        path: PathBuf,
        #[serde(rename = "max-age")]
        max_age: Dur,
    },
    State {
        #[serde(rename = "max-duration")]
        max_duration: Dur,
    },
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StallAction {
    #[default]
    Restart,
    Notify,
}

fn d_stall_interval() -> Dur {
    Dur::secs(10)
}
fn d_failures() -> u32 {
    3
}
fn d_stop_timeout() -> Dur {
    Dur::secs(10)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StallRaw {
    pub probe: ProbeRaw,
    #[serde(default = "d_stall_interval")]
    pub interval: Dur,
    #[serde(default = "d_failures")]
    pub failures: u32,
    #[serde(default)]
    pub action: StallAction,
    /// After SIGTERM, SIGKILL follows after this.
    #[serde(default = "d_stop_timeout")]
    pub stop_timeout: Dur,
    /// Signal the process group instead of the process.
    #[serde(default)]
    pub signal_group: bool,
}
