//! Filter definitions for operations managers, generated from the catalog
//! and the templates in `templates/filters/`, so that they can never drift
//! from what procward says. Output is deterministic (no timestamps).

pub mod mib;
mod prometheus;
mod zabbix;

use crate::catalog::render::Renderer;
use crate::catalog::Message;
use crate::model::event::Severity;
use crate::model::Lang;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// (name, what it is, where `install` puts it under --root).
pub const MANAGERS: &[(&str, &str, &str)] = &[
    (
        "esmpro",
        "ESMPRO/ServerAgent-style syslog monitoring definitions (en, ja)",
        "etc/procward/managers/esmpro",
    ),
    (
        "websam",
        "WebSAM SystemManager-style ordered message filters (en, ja)",
        "etc/procward/managers/websam",
    ),
    (
        "rsyslog",
        "rsyslog rules: procward's own files by severity (optionally forward, or keep procward out of the host's logs)",
        "etc/rsyslog.d",
    ),
    (
        "snmptt",
        "snmptt.conf: EVENT/FORMAT/SDESC/EDESC per notification",
        "etc/snmp",
    ),
    (
        "mib",
        "the SMIv2 module PROCWARD-MIB",
        "usr/share/snmp/mibs",
    ),
    (
        "prometheus",
        "Prometheus alerting rules over the metrics endpoint (en, ja) and Alertmanager inhibition rules",
        "etc/prometheus/procward",
    ),
    (
        "zabbix",
        "Zabbix 6.0 templates (en, ja): log file and SNMP trap routes, one trigger per alerting message",
        "etc/zabbix/procward",
    ),
];

/// Choices for the generated files (today: the rsyslog rules).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Forward warnings and above to this host and TCP port.
    pub forward: Option<(String, u16)>,
    /// procward's messages only into its own files (`stop`).
    pub exclusive: bool,
}

/// Parse `HOST:PORT` (IPv6 as `[ADDR]:PORT`) for `--forward`.
pub fn parse_forward(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("`{s}` is not HOST:PORT"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{port}` is not a port number"))?;
    let ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:_".contains(c));
    if !ok || port == 0 {
        return Err(format!("`{s}` is not HOST:PORT"));
    }
    Ok((host.to_string(), port))
}

pub struct File {
    /// Name inside the manager's directory.
    pub name: String,
    pub content: String,
}

/// The optional end of an RFC 3164 line: its seq (`seq-marker`).
const SEQ_MARKER_PATTERN: &str = r"( \[seq=[0-9]+\])?$";

/// The part of a syslog message after `procward[PID]: `, as a regular
/// expression (POSIX ERE, and the same in Rust's regex): the ID, then the
/// text with each field a wildcard.
pub fn pattern(m: &Message, lang: Lang) -> Result<String, String> {
    let text = m.text(lang);
    let field = regex::Regex::new(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}").expect("valid");
    let mut out = format!("^{} ", m.id);
    let mut last = 0;
    for c in field.captures_iter(text) {
        let whole = c.get(0).expect("match");
        out.push_str(&ere_escape(&text[last..whole.start()]));
        let name = &c[1];
        out.push_str(match m.fields.get(name) {
            Some(crate::catalog::FieldType::Integer) => "[0-9]+",
            Some(crate::catalog::FieldType::Boolean) => "(true|false)",
            Some(
                crate::catalog::FieldType::String
                | crate::catalog::FieldType::Duration
                | crate::catalog::FieldType::Enum,
            ) => ".*",
            None => return Err(format!("{}: text names undeclared field {name}", m.id)),
        });
        last = whole.end();
    }
    let rest = &text[last..];
    if rest.contains("{{") {
        return Err(format!(
            "{}: only plain {{{{field}}}} placeholders can become filters",
            m.id
        ));
    }
    out.push_str(&ere_escape(rest));
    // RFC 3164 lines of a sink with `seq-marker = true` end in ` [seq=N]`.
    out.push_str(SEQ_MARKER_PATTERN);
    Ok(out)
}

/// Matches any procward message, including IDs added later.
pub const CATCH_ALL: &str = "^PW[0-9]{4} ";

/// Matches any procward message in `lang`, including IDs added later:
/// English texts start with an ASCII letter, Japanese ones with a
/// Japanese character (the catalog enforces it), so a set never takes the
/// other language's lines.
pub fn catch_all(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "^PW[0-9]{4} [A-Za-z]",
        Lang::Ja => "^PW[0-9]{4} [^ -~]",
    }
}

fn ere_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        if ".[]()*+?{}|^$\\".contains(ch) {
            o.push('\\');
        }
        o.push(ch);
    }
    o
}

/// The manager's level: critical and worse at its highest (FATAL),
/// recoveries as NORMAL (they close an alert), the rest by severity.
fn level(m: &Message) -> &'static str {
    match m.severity.code() {
        0..=2 => "FATAL",
        3 => "ERROR",
        4 => "WARNING",
        _ if !m.clears.is_empty() => "NORMAL",
        _ => "INFORMATION",
    }
}

/// The fields a recovery and what it clears must share to be paired:
/// always the host, and the target, sink or file they both name.
fn pair_key(m: &Message, catalog: &crate::catalog::Catalog) -> String {
    let mut key = vec!["host"];
    for f in ["target", "sink", "what"] {
        let in_all = m.fields.contains_key(f)
            && m.clears
                .iter()
                .all(|c| catalog.get(c).is_some_and(|cm| cm.fields.contains_key(f)));
        if in_all {
            key.push(f);
        }
    }
    key.join(",")
}

/// snmptt's severity: a recovery is Normal (it closes an alert).
fn snmptt_severity(m: &Message) -> &'static str {
    match m.severity.code() {
        0..=2 => "Critical",
        3 => "Major",
        4 => "Minor",
        _ if !m.clears.is_empty() => "Normal",
        5 => "Warning",
        _ => "Normal",
    }
}

/// Messages a WebSAM-style filter reports (the rest are suppressed):
/// warnings and worse, what ends one of them (a recovery), and what such
/// a recovery ends.
pub fn reported(m: &Message, catalog: &crate::catalog::Catalog) -> bool {
    m.severity.at_least(Severity::Warning)
        || !m.clears.is_empty()
        || !catalog.cleared_by(&m.id).is_empty()
}

/// A string as a YAML double-quoted scalar (JSON's escapes are YAML's):
/// the Zabbix and Prometheus files.
fn yaml_quoted(s: &str) -> String {
    Value::from(s).to_string()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A catalog text for people: `{{target}}` becomes `<target>`.
fn readable(text: &str) -> String {
    let field = regex::Regex::new(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}").expect("valid");
    one_line(&field.replace_all(text, "<$1>"))
}

fn message_data(
    m: &Message,
    lang: Lang,
    root: &[u32],
    catalog: &crate::catalog::Catalog,
) -> Result<Value, String> {
    let oid = crate::model::oid::notification_oid(root, &m.id);
    let cleared_by: Vec<&str> = catalog
        .cleared_by(&m.id)
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    Ok(json!({
        "id": m.id,
        "snmp": m.snmp,
        "severity": m.severity.as_str(),
        "level": level(m),
        "clears": m.clears.join(" "),
        "cleared_by": cleared_by.join(" "),
        "pair_key": if m.clears.is_empty() { String::new() } else { pair_key(m, catalog) },
        "snmptt_severity": snmptt_severity(m),
        "pattern": pattern(m, lang)?,
        "text": readable(m.text(lang)),
        "title": readable(m.text(lang)),
        "description": one_line(m.description.get(lang)),
        "action": one_line(m.action.get(lang)),
        "oid": format!(".{}", oid.iter().map(u32::to_string).collect::<Vec<_>>().join(".")),
    }))
}

fn catchall_title(l: Lang) -> &'static str {
    match l {
        Lang::En => "procward message not in these definitions: update them",
        Lang::Ja => "定義にない procward のメッセージです。定義を更新してください",
    }
}

fn lang_name(l: Lang) -> &'static str {
    match l {
        Lang::En => "English",
        Lang::Ja => "Japanese",
    }
}

/// Every file of one manager's definitions.
pub fn generate(
    manager: &str,
    r: &Renderer,
    root: &[u32],
    opts: &Options,
) -> Result<Vec<File>, String> {
    let msgs = &r.catalog.messages;
    let per_lang = |tpl: &str,
                    ext: &str,
                    extra: &dyn Fn(Lang) -> Result<Value, String>|
     -> Result<Vec<File>, String> {
        let mut files = Vec::new();
        for lang in [Lang::En, Lang::Ja] {
            let data = extra(lang)?;
            files.push(File {
                name: format!("procward-{}.{ext}", lang.as_str()),
                content: r.render_data(tpl, &data)?,
            });
        }
        Ok(files)
    };
    match manager {
        "esmpro" => per_lang("filters/esmpro", "ini", &|lang| {
            let messages = msgs
                .iter()
                .map(|m| message_data(m, lang, root, &r.catalog))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(json!({
                "lang_name": lang_name(lang),
                "lang": lang.as_str(),
                "messages": messages,
                "catchall": catch_all(lang),
                "catchall_title": catchall_title(lang),
            }))
        }),
        "websam" => per_lang("filters/websam", "tsv", &|lang| {
            let mut order = 0;
            let mut next = || {
                order += 10;
                order
            };
            let mut report = Vec::new();
            let mut suppress = Vec::new();
            for m in msgs.iter().filter(|m| reported(m, &r.catalog)) {
                let mut d = message_data(m, lang, root, &r.catalog)?;
                d["order"] = json!(next());
                report.push(d);
            }
            for m in msgs.iter().filter(|m| !reported(m, &r.catalog)) {
                let mut d = message_data(m, lang, root, &r.catalog)?;
                d["order"] = json!(next());
                suppress.push(d);
            }
            Ok(json!({
                "lang_name": lang_name(lang),
                "report": report,
                "suppress": suppress,
                "catchall_order": next(),
                "catchall": catch_all(lang),
                "catchall_title": catchall_title(lang),
                "lang": lang.as_str(),
            }))
        }),
        "rsyslog" => Ok(vec![File {
            name: "30-procward.conf".into(),
            content: r.render_data(
                "filters/rsyslog",
                &json!({
                    "log_dir": "/var/log/procward",
                    "forward_host": opts.forward.as_ref().map(|f| f.0.as_str()),
                    "forward_port": opts.forward.as_ref().map(|f| f.1),
                    "exclusive": opts.exclusive,
                }),
            )?,
        }]),
        "snmptt" => {
            let messages = msgs
                .iter()
                .map(|m| message_data(m, Lang::En, root, &r.catalog))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(vec![File {
                name: "snmptt.procward.conf".into(),
                content: r.render_data("filters/snmptt", &json!({ "messages": messages }))?,
            }])
        }
        "mib" => Ok(vec![File {
            name: "PROCWARD-MIB".into(),
            content: mib::generate(r, root)?,
        }]),
        "prometheus" => prometheus::generate(r),
        "zabbix" => zabbix::generate(r, root),
        other => Err(format!(
            "unknown manager `{other}`; one of: {}",
            MANAGERS.iter().map(|m| m.0).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// What `install` did with one file.
#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    Unchanged(PathBuf),
    Written {
        path: PathBuf,
        backup: Option<PathBuf>,
    },
}

/// Write the files into the manager's directory under `root`, backing up
/// any file with other content; unchanged files are left alone.
pub fn install(
    manager: &str,
    files: &[File],
    root: &Path,
    dry_run: bool,
) -> Result<Vec<Installed>, String> {
    let dir = MANAGERS
        .iter()
        .find(|m| m.0 == manager)
        .map(|m| root.join(m.2))
        .ok_or_else(|| format!("unknown manager `{manager}`"))?;
    let mut out = Vec::new();
    for f in files {
        let path = dir.join(&f.name);
        match std::fs::read_to_string(&path) {
            Ok(old) if old == f.content => {
                out.push(Installed::Unchanged(path));
                continue;
            }
            Ok(_) => {
                let mut n = 1;
                let backup = loop {
                    let b = PathBuf::from(format!("{}.bak.{n}", path.display()));
                    if !b.exists() {
                        break b;
                    }
                    n += 1;
                };
                if !dry_run {
                    std::fs::copy(&path, &backup)
                        .map_err(|e| format!("back up {}: {e}", path.display()))?;
                }
                out.push(Installed::Written {
                    path: path.clone(),
                    backup: Some(backup),
                });
            }
            Err(_) => out.push(Installed::Written {
                path: path.clone(),
                backup: None,
            }),
        }
        if !dry_run {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let tmp = path.with_extension("procward-tmp");
            std::fs::write(&tmp, &f.content).map_err(|e| format!("{}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(out)
}

/// Check an installed rsyslog file with rsyslogd's own checker.
pub fn validate_rsyslog(file: &Path) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("procward-rsyslog-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let conf = dir.join("rsyslog.conf");
    std::fs::write(&conf, format!("include(file=\"{}\")\n", file.display()))
        .map_err(|e| e.to_string())?;
    let out = std::process::Command::new("rsyslogd")
        .args(["-N1", "-f"])
        .arg(&conf)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    match out {
        Err(e) => Err(format!("rsyslogd -N1: {e} (is rsyslog installed?)")),
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "rsyslogd -N1 rejects {}: {}{}",
            file.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )),
    }
}
