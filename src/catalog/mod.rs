//! The message catalog: every event's stable ID, severity, fields and texts.
//! Embedded in the binary; `daemon.catalog-dir` can override it.

pub mod render;

use crate::model::event::Severity;
use crate::model::Lang;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

pub const EMBEDDED: &str = include_str!("../../message-catalog/messages.toml");
#[cfg(test)]
const IDS_LOCK: &str = include_str!("../../message-catalog/ids.lock");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Integer,
    /// Written as procward writes durations ("2m 5s"); shown in each
    /// language's units.
    Duration,
    /// One of a fixed set of values, shown through `[values.LANG.FIELD]`.
    Enum,
    /// true or false.
    Boolean,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Texts {
    pub en: String,
    pub ja: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub id: String,
    pub name: String,
    pub severity: Severity,
    pub snmp: String,
    #[serde(default)]
    pub fields: BTreeMap<String, FieldType>,
    /// Earlier messages this one ends (a recovery).
    #[serde(default)]
    pub clears: Vec<String>,
    pub text: Texts,
    pub description: Texts,
    pub action: Texts,
}

impl Texts {
    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => &self.en,
            Lang::Ja => &self.ja,
        }
    }
}

impl Message {
    pub fn text(&self, lang: Lang) -> &str {
        self.text.get(lang)
    }

    /// Sample values of every declared field, for test renders and
    /// `procward render`.
    pub fn sample_fields(&self) -> BTreeMap<String, Value> {
        let mut f: BTreeMap<String, Value> = self
            .fields
            .iter()
            .map(|(name, ty)| (name.clone(), sample_value(name, *ty)))
            .collect();
        // An end by a signal: no exit_code then.
        if f.contains_key("exit") {
            f.remove("exit_code");
            f.insert("signal".into(), Value::from("SIGSEGV"));
            f.insert("core_dumped".into(), Value::from(true));
        }
        f
    }
}

fn sample_value(name: &str, ty: FieldType) -> Value {
    let s = match name {
        "target" => "httpd",
        "pid" => return Value::from(4242),
        "ppid" => return Value::from(4100),
        "version" => env!("CARGO_PKG_VERSION"),
        "config" => "/etc/procward/procward.toml",
        "by" => "root",
        "user" => "alice",
        "state" => "up",
        "reason" => "disappeared",
        "script" => "/etc/procward/restart/httpd.sh",
        "status" => "exit code 1",
        "output" => "httpd: could not bind to port 80",
        "settle" | "delay" => "10s",
        "timeout" => "1m",
        "window" => "1day",
        "action" => "unmonitor",
        "command" => "/usr/sbin/crm_resource --fail --resource web",
        "sink" => "nms",
        "event" => "PW2003",
        "error" => "connection refused",
        "down" => "2m 5s",
        "signal" => "SIGTERM",
        "path" => "/var/lib/procward/state.json",
        "added" => "db",
        "removed" => "-",
        "pids" => "4242,4243",
        "first" => "procward.toml:12:1: target[0].restart.timout: unknown field",
        "what" => "event journal",
        "cause" => "queue full while the receiver was unreachable",
        "from_seq" => return Value::from(1200),
        "to_seq" => return Value::from(1250),
        "probe" => "exec",
        "exit" => "killed by SIGSEGV, core dumped",
        "exit_code" => return Value::from(3),
        "exit_source" => "pidfd info, zombie stat",
        "discovery" => "process events, scan as safety net",
        _ => match ty {
            FieldType::String | FieldType::Enum => "sample",
            FieldType::Duration => "5s",
            FieldType::Integer => return Value::from(3),
            FieldType::Boolean => return Value::from(false),
        },
    };
    Value::from(s)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    message: Vec<Message>,
    /// LANG → FIELD → value → text.
    #[serde(default)]
    values: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
    /// LANG → unit ("m", "day") → text.
    #[serde(default)]
    durations: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pub messages: Vec<Message>,
    by_id: HashMap<String, usize>,
    /// LANG → FIELD → value → text.
    pub values: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
    /// LANG → unit → text.
    pub durations: BTreeMap<String, BTreeMap<String, String>>,
}

/// `5s`, `2m 5s`, `1day`, `500ms`: the numbers and units of a duration as
/// procward writes it (humantime), or None if `s` is not one.
fn duration_parts(s: &str) -> Option<Vec<(&str, &str)>> {
    let mut parts = Vec::new();
    for tok in s.split_whitespace() {
        let split = tok.find(|c: char| !c.is_ascii_digit())?;
        let (n, unit) = tok.split_at(split);
        if n.is_empty() || unit.is_empty() || !unit.chars().all(|c| c.is_ascii_lowercase()) {
            return None;
        }
        parts.push((n, unit));
    }
    (!parts.is_empty()).then_some(parts)
}

impl Catalog {
    /// Parse and check a catalog text. `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Catalog, Vec<String>> {
        let file: CatalogFile = toml::from_str(text).map_err(|e| {
            let (line, col) = crate::config::line_col(text, e.span().map(|s| s.start).unwrap_or(0));
            vec![format!("{origin}:{line}:{col}: {}", e.message())]
        })?;
        let mut errors = Vec::new();
        let mut by_id = HashMap::new();
        let mut names = HashSet::new();
        let mut snmp = HashSet::new();
        for (i, m) in file.message.iter().enumerate() {
            let ok_id = m.id.len() == 6
                && m.id.starts_with("PW")
                && m.id[2..].chars().all(|c| c.is_ascii_digit())
                && matches!(&m.id[2..3], "1" | "2" | "3");
            if !ok_id {
                errors.push(format!(
                    "{origin}: message {}: id must be PW1xxx, PW2xxx or PW3xxx",
                    m.id
                ));
            }
            if by_id.insert(m.id.clone(), i).is_some() {
                errors.push(format!("{origin}: message {}: duplicate id", m.id));
            }
            if !names.insert(m.name.clone()) {
                errors.push(format!(
                    "{origin}: message {}: duplicate name {}",
                    m.id, m.name
                ));
            }
            if !snmp.insert(m.snmp.clone()) || !m.snmp.starts_with(|c: char| c.is_ascii_lowercase())
            {
                errors.push(format!(
                    "{origin}: message {}: snmp name `{}` must be unique and start with a lower-case letter",
                    m.id, m.snmp
                ));
            }
            for (lang, t) in [("en", &m.text.en), ("ja", &m.text.ja)] {
                if t.trim().is_empty() {
                    errors.push(format!("{origin}: message {}: text.{lang} is empty", m.id));
                }
            }
            // The first character tells the language of a line (the filter
            // sets' catch-alls rely on it): English starts with a letter,
            // Japanese with a Japanese character, never with a field.
            let first = |t: &str| t.chars().next().unwrap_or(' ');
            if !first(&m.text.en).is_ascii_alphabetic() {
                errors.push(format!(
                    "{origin}: message {}: text.en must start with a letter, not a field",
                    m.id
                ));
            }
            if !m.text.ja.is_empty() && first(&m.text.ja).is_ascii() {
                errors.push(format!(
                    "{origin}: message {}: text.ja must start with a Japanese word, not a field or ASCII",
                    m.id
                ));
            }
            for (what, t) in [("description", &m.description), ("action", &m.action)] {
                for lang in [Lang::En, Lang::Ja] {
                    if t.get(lang).trim().is_empty() {
                        errors.push(format!(
                            "{origin}: message {}: {what}.{} is required",
                            m.id,
                            lang.as_str()
                        ));
                    }
                }
            }
            for (name, ty) in &m.fields {
                let table = file.values.get("ja").and_then(|v| v.get(name));
                if *ty == FieldType::Enum && table.is_none() {
                    errors.push(format!(
                        "{origin}: message {}: enum field {name} has no [values.ja.{name}]",
                        m.id
                    ));
                }
            }
        }
        for m in &file.message {
            for c in &m.clears {
                if !by_id.contains_key(c) {
                    errors.push(format!(
                        "{origin}: message {}: clears unknown message {c}",
                        m.id
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(Catalog {
                messages: file.message,
                by_id,
                values: file.values,
                durations: file.durations,
            })
        } else {
            Err(errors)
        }
    }

    pub fn embedded() -> Catalog {
        Catalog::parse(EMBEDDED, "message-catalog/messages.toml")
            .expect("the embedded catalog is valid")
    }

    /// The catalog from `dir/messages.toml`, or the embedded one.
    pub fn load(dir: Option<&Path>) -> Result<Catalog, Vec<String>> {
        match dir {
            None => Ok(Catalog::embedded()),
            Some(d) => {
                let p = d.join("messages.toml");
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| vec![format!("{}: {e}", p.display())])?;
                Catalog::parse(&text, &p.display().to_string())
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<&Message> {
        self.by_id.get(id).map(|&i| &self.messages[i])
    }

    /// The messages that end `id` (their `clears` name it).
    pub fn cleared_by(&self, id: &str) -> Vec<&Message> {
        self.messages
            .iter()
            .filter(|m| m.clears.iter().any(|c| c == id))
            .collect()
    }

    /// `d` in `lang`'s units ("2m 5s" → "2分5秒"); anything else as it is.
    pub fn duration(&self, d: &str, lang: Lang) -> String {
        let (Some(units), Some(parts)) = (self.durations.get(lang.as_str()), duration_parts(d))
        else {
            return d.to_string();
        };
        let mut out = String::new();
        for (n, unit) in parts {
            match units.get(unit) {
                Some(u) => {
                    out.push_str(n);
                    out.push_str(u);
                }
                None => return d.to_string(),
            }
        }
        out
    }

    /// The value `v` of the enumerated field `field` in `lang`: exact
    /// keys first, then keys with `{}` (whose text is kept, as a duration
    /// when it is one). Unknown values are shown as they are.
    pub fn value(&self, field: &str, v: &str, lang: Lang) -> Option<String> {
        let table = self.values.get(lang.as_str())?.get(field)?;
        if let Some(t) = table.get(v) {
            return Some(t.clone());
        }
        // The most specific key wins ("killed by {}, core dumped" over
        // "killed by {}").
        table
            .iter()
            .filter_map(|(k, t)| {
                let (pre, post) = k.split_once("{}")?;
                let mid = v.strip_prefix(pre)?.strip_suffix(post)?;
                Some((pre.len() + post.len(), t, mid))
            })
            .max_by_key(|(len, _, _)| *len)
            .map(|(_, t, mid)| t.replacen("{}", &self.duration(mid, lang), 1))
    }

    /// The fields of message `m` as its text in `lang` shows them:
    /// enumerated values and durations translated.
    pub fn localize(
        &self,
        m: &Message,
        fields: &BTreeMap<String, Value>,
        lang: Lang,
    ) -> Option<BTreeMap<String, Value>> {
        if lang == Lang::En {
            return None;
        }
        let mut out = fields.clone();
        for (name, ty) in &m.fields {
            let Some(Value::String(v)) = fields.get(name) else {
                continue;
            };
            let shown = match ty {
                FieldType::Duration => self.duration(v, lang),
                FieldType::Enum => match self.value(name, v, lang) {
                    Some(t) => t,
                    None => continue,
                },
                _ => continue,
            };
            out.insert(name.clone(), Value::from(shown));
        }
        Some(out)
    }
}

/// Parse ids.lock: (id, name) pairs.
#[cfg(test)]
fn parse_lock(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_is_valid() {
        let c = Catalog::embedded();
        assert!(c.messages.len() >= 30);
    }

    /// An ID may be added, never removed, renumbered or renamed.
    #[test]
    fn ids_lock_guards_the_catalog() {
        let c = Catalog::embedded();
        let lock = parse_lock(IDS_LOCK);
        for (id, name) in &lock {
            let m = c.get(id).unwrap_or_else(|| {
                panic!("{id} ({name}) is in ids.lock but was removed from the catalog")
            });
            assert_eq!(
                &m.name, name,
                "{id} changed its name: IDs are never given another meaning"
            );
        }
        for m in &c.messages {
            assert!(
                lock.iter().any(|(id, _)| id == &m.id),
                "{} is not in message-catalog/ids.lock: append `{} {}` to it",
                m.id,
                m.id,
                m.name
            );
        }
    }

    /// Every value procward puts into an enumerated field reads as
    /// Japanese in Japanese texts.
    #[test]
    fn every_value_procward_produces_has_a_japanese_text() {
        use crate::model::{Reason, State};
        use crate::monitor::{outcome_status, ScriptOutcome};
        let c = Catalog::embedded();
        let mut produced: Vec<(&str, String)> = Vec::new();
        for r in Reason::ALL {
            produced.push(("reason", r.as_str().into()));
        }
        // Every state `status` can show (the serde names).
        for st in State::ALL {
            produced.push(("state", st.as_str().into()));
        }
        for a in [
            "continue",
            "unmonitor",
            "failover",
            "exec",
            "restart",
            "notify",
        ] {
            produced.push(("action", a.into()));
        }
        for p in ["exec", "tcp", "http", "heartbeat", "state"] {
            produced.push(("probe", p.into()));
        }
        for w in [
            "event journal",
            "state file",
            "sequence file",
            "restart script log of web",
            "retry-over command log of web",
        ] {
            produced.push(("what", w.into()));
        }
        for o in [
            ScriptOutcome::Exited {
                code: 3,
                output: String::new(),
            },
            ScriptOutcome::Signaled {
                signal: 9,
                output: String::new(),
            },
            ScriptOutcome::TimedOut {
                output: String::new(),
            },
            ScriptOutcome::SpawnFailed("No such file or directory (os error 2)".into()),
            ScriptOutcome::Unknown,
            ScriptOutcome::Lost,
        ] {
            produced.push(("status", outcome_status(&o)));
        }
        produced.push(("status", "no process within 500ms".into()));
        for (field, v) in &produced {
            let ja = c
                .value(field, v, Lang::Ja)
                .unwrap_or_else(|| panic!("{field} = {v:?} has no Japanese text"));
            assert!(!ja.is_ascii(), "{field} {v}: {ja}");
        }
    }

    /// No Japanese text shows an English enumerated value or an English
    /// duration, whatever value the field has.
    #[test]
    fn japanese_texts_carry_no_untranslated_value_or_duration() {
        let c = Catalog::embedded();
        let r = render::Renderer::new(std::sync::Arc::new(c.clone()), None, "node1").unwrap();
        let english_duration =
            regex::Regex::new(r"\b[0-9]+ ?(ns|us|ms|s|m|h|day|days|month|months|year|years)\b")
                .unwrap();
        let durations = [
            "0s", "500ms", "5s", "10m", "2m 5s", "1h 30m", "1day", "2days 3h",
        ];
        let mut checked = 0;
        for m in &c.messages {
            for (name, ty) in &m.fields {
                let values: Vec<String> = match ty {
                    FieldType::Duration => durations.iter().map(|d| d.to_string()).collect(),
                    FieldType::Enum => c.values["ja"][name]
                        .keys()
                        .map(|k| k.replace("{}", "5s"))
                        .collect(),
                    _ => continue,
                };
                for v in values {
                    let mut fields = m.sample_fields();
                    fields.insert(name.clone(), Value::from(v.clone()));
                    let text = r.text(&m.id, &fields, Lang::Ja).unwrap();
                    assert!(
                        !english_duration.is_match(&text),
                        "{} {name}={v}: {text}",
                        m.id
                    );
                    if *ty == FieldType::Enum {
                        let raw =
                            regex::Regex::new(&format!(r"\b{}\b", regex::escape(&v))).unwrap();
                        assert!(!raw.is_match(&text), "{} {name}={v}: {text}", m.id);
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "{checked}");
    }

    #[test]
    fn durations_read_in_japanese_units() {
        let c = Catalog::embedded();
        for (en, ja) in [
            ("10m", "10分"),
            ("5s", "5秒"),
            ("1day", "1日"),
            ("2m 5s", "2分5秒"),
            ("500ms", "500ミリ秒"),
            ("1h 30m", "1時間30分"),
            ("-", "-"),
        ] {
            assert_eq!(c.duration(en, Lang::Ja), ja);
            assert_eq!(c.duration(en, Lang::En), en);
        }
    }

    #[test]
    fn bad_catalogs_are_refused() {
        let bad = r#"
[[message]]
id = "PX9"
name = "a"
severity = "info"
snmp = "pwA"
text.en = "x"
text.ja = ""
description.en = "d"
description.ja = "d"
action.en = "a"
action.ja = "a"
"#;
        let errs = Catalog::parse(bad, "t.toml").unwrap_err();
        assert!(errs.iter().any(|e| e.contains("id must be")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.contains("text.ja is empty")),
            "{errs:?}"
        );
    }
}
