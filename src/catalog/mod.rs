//! The message catalog: every event's stable ID, severity, fields and texts.
//! Embedded in the binary; `daemon.catalog-dir` can override it.

pub mod render;

use crate::event::Severity;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

pub const EMBEDDED: &str = include_str!("../../message-catalog/messages.toml");
pub const IDS_LOCK: &str = include_str!("../../message-catalog/ids.lock");

/// The language of message texts. The catalog owns the languages: every
/// message has a text, a description and an action in each.
#[derive(
    Debug,
    Clone,
    Copy,
    serde::Deserialize,
    serde::Serialize,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Lang {
    #[default]
    En,
    Ja,
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Integer,
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
    pub text: Texts,
    pub description: String,
    pub action: String,
}

impl Message {
    pub fn text(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => &self.text.en,
            Lang::Ja => &self.text.ja,
        }
    }

    /// Sample values of every declared field, for test renders and
    /// `procward render`.
    pub fn sample_fields(&self) -> BTreeMap<String, Value> {
        self.fields
            .iter()
            .map(|(name, ty)| (name.clone(), sample_value(name, *ty)))
            .collect()
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
        _ => match ty {
            FieldType::String => "sample",
            FieldType::Integer => return Value::from(3),
        },
    };
    Value::from(s)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    message: Vec<Message>,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pub messages: Vec<Message>,
    by_id: HashMap<String, usize>,
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
            if m.description.trim().is_empty() || m.action.trim().is_empty() {
                errors.push(format!(
                    "{origin}: message {}: description and action are required",
                    m.id
                ));
            }
        }
        if errors.is_empty() {
            Ok(Catalog {
                messages: file.message,
                by_id,
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
}

/// Parse ids.lock: (id, name) pairs.
pub fn parse_lock(text: &str) -> Vec<(String, String)> {
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
description = "d"
action = "a"
"#;
        let errs = Catalog::parse(bad, "t.toml").unwrap_err();
        assert!(errs.iter().any(|e| e.contains("id must be")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.contains("text.ja is empty")),
            "{errs:?}"
        );
    }
}
