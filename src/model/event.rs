//! Events: what the monitor core says happened, and the rendered record
//! every sink receives.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// RFC 5424 severities, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Info,
    Debug,
}

impl Severity {
    pub const ALL: [Severity; 8] = [
        Severity::Emergency,
        Severity::Alert,
        Severity::Critical,
        Severity::Error,
        Severity::Warning,
        Severity::Notice,
        Severity::Info,
        Severity::Debug,
    ];
    /// The RFC 5424 numeric code (0 = emergency).
    pub fn code(self) -> u8 {
        self as u8
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Emergency => "emergency",
            Severity::Alert => "alert",
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Notice => "notice",
            Severity::Info => "info",
            Severity::Debug => "debug",
        }
    }
    /// True when `self` is as severe as `min` or more.
    pub fn at_least(self, min: Severity) -> bool {
        self.code() <= min.code()
    }
}

/// Catalog message IDs, generated from message-catalog/ids.lock (build.rs).
/// Every event the core emits is
/// rendered against the catalog in both languages by
/// `monitor::tests::every_emitted_event_renders_in_both_languages` (an ID
/// missing from `message-catalog/messages.toml`, or a field it does not
/// declare, fails there).
pub mod msg {
    include!(concat!(env!("OUT_DIR"), "/msg.rs"));
}

/// What the monitor core asks to be said: an ID and typed fields.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSpec {
    pub id: &'static str,
    pub target: Option<String>,
    pub pid: Option<u32>,
    pub fields: BTreeMap<String, Value>,
}

impl EventSpec {
    pub fn new(id: &'static str) -> Self {
        EventSpec {
            id,
            target: None,
            pid: None,
            fields: BTreeMap::new(),
        }
    }
    pub fn target(mut self, t: &str) -> Self {
        self.target = Some(t.to_string());
        self.fields.insert("target".into(), Value::from(t));
        self
    }
    pub fn pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self.fields.insert("pid".into(), Value::from(pid));
        self
    }
    pub fn field(mut self, name: &str, v: impl Into<Value>) -> Self {
        self.fields.insert(name.to_string(), v.into());
        self
    }
}

/// A rendered event: one line of the journal, what every sink gets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub seq: u64,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// Milliseconds since the Unix epoch (for sorting and `--since`).
    pub time_ms: u64,
    pub id: String,
    pub name: String,
    pub severity: Severity,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub fields: BTreeMap<String, Value>,
    /// The message text in the daemon's language.
    pub text: String,
    pub lang: String,
}

/// Replace control characters (C0, DEL, C1) with `\xNN`, and the Unicode
/// line and paragraph separators and bidirectional controls with `\uNNNN`,
/// so that no field can start a second log line (for a reader that splits
/// on U+2028 too), drive a terminal or reorder what a reader sees.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for ch in s.chars() {
        if (ch as u32) < 0x100 && is_control(ch) {
            out.push_str(&format!("\\x{:02x}", ch as u32));
        } else if is_control(ch) {
            out.push_str(&format!("\\u{:04x}", ch as u32));
        } else {
            out.push(ch);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn is_control(ch: char) -> bool {
    let c = ch as u32;
    c < 0x20
        || c == 0x7f
        || (0x80..0xa0).contains(&c)
        // line and paragraph separators
        || c == 0x2028
        || c == 0x2029
        // bidirectional marks, embeddings, overrides and isolates
        || c == 0x061c
        || c == 0x200e
        || c == 0x200f
        || (0x202a..=0x202e).contains(&c)
        || (0x2066..=0x2069).contains(&c)
}

/// Escape every string inside a JSON value (recursively).
pub fn escape_value(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(escape_controls(s).into_owned()),
        Value::Array(a) => Value::Array(a.iter().map(escape_value).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), escape_value(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn rfc3339_ms(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escape_controls("a\nb\x1b[31m\u{85}"),
            "a\\x0ab\\x1b[31m\\x85"
        );
        assert_eq!(escape_controls("プロセス"), "プロセス");
        assert_eq!(
            escape_controls("a\u{2028}PW9999 b\u{2029}c\u{202e}d\u{2066}e\u{2069}"),
            "a\\u2028PW9999 b\\u2029c\\u202ed\\u2066e\\u2069"
        );
    }

    #[test]
    fn severity_order() {
        assert!(Severity::Critical.at_least(Severity::Warning));
        assert!(!Severity::Info.at_least(Severity::Warning));
        assert_eq!(Severity::Debug.code(), 7);
    }
}
