//! Zabbix 6.0 templates in the YAML export format, importable as is
//! (`configuration.import`), one file per language. Two templates each:
//! `procward-LANG` reads procward's log file (the file the generated
//! rsyslog rules write) with an active agent `log[]` item, and
//! `procward-traps-LANG` takes the same lines from SNMP traps
//! (`snmptrap[]`, written by the trap receiver in filter-defs/zabbix/).
//! One trigger per alerting message (warning and worse): it opens on the
//! message's line and closes on a line of a message that `clears` it, for
//! the same target or sink (tag correlation); where nothing clears it, it
//! is closed by hand. UUIDs are derived from names: stable across
//! generations, distinct per language.

use super::{one_line, readable, yaml_quoted as q, File};
use crate::catalog::render::Renderer;
use crate::catalog::{Catalog, Message};
use crate::model::event::Severity;
use crate::model::Lang;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// What a procward line looks like to Zabbix: `... procward[PID]: PWnnnn `
/// (in the log file and in the trap receiver's lines alike). No
/// backslashes: they would need escaping at three levels (YAML, item key,
/// trigger function parameter).
const LINE: &str = "procward.[0-9]+.: ";

/// A version 4 UUID (32 hex digits) derived from `seed`.
fn uuid(seed: &str) -> String {
    let h = Sha256::digest(format!("procward zabbix {seed}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn priority(s: Severity) -> &'static str {
    match s.code() {
        0..=2 => "DISASTER",
        3 => "HIGH",
        _ => "WARNING",
    }
}

/// Text of a regular expression that matches `s` literally, without
/// backslashes (metacharacters in brackets).
fn literal(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            // `^`, `\`, `[` and `]` cannot go in brackets without a
            // backslash in every engine: any character there (the names'
            // prefixes have none of them).
            '^' | '\\' | '[' | ']' => ".".to_string(),
            '.' | '(' | ')' | '*' | '+' | '?' | '{' | '}' | '|' | '$' => {
                format!("[{c}]")
            }
            c => c.to_string(),
        })
        .collect()
}

/// The field that tells one problem of a message from another (the
/// target, or the sink), and a pattern taking its value from the line of
/// the message and of every message that clears it (all name it after
/// the same words).
fn correlation(m: &Message, clearers: &[&Message], lang: Lang) -> Option<(&'static str, String)> {
    if let Some(c) = check_correlation(m, clearers, lang) {
        return Some(c);
    }
    ["target", "sink"].into_iter().find_map(|f| {
        let placeholder = format!("{{{{{f}}}}}");
        let prefix = |m: &Message| {
            let t = m.text(lang);
            let at = t.find(&placeholder)?;
            let rest = &t[at + placeholder.len()..];
            rest.starts_with(": ").then(|| t[..at].to_string())
        };
        let p = prefix(m)?;
        if p.contains("{{") || clearers.iter().any(|c| prefix(c).as_ref() != Some(&p)) {
            return None;
        }
        Some((f, format!("PW[0-9]{{4}} {}(.+?): ", literal(&p))))
    })
}

/// A check's problems are told apart by target and check: the tag
/// `check` is "TARGET CHECK", when the message and its clearers all name
/// them in the same words.
fn check_correlation(
    m: &Message,
    clearers: &[&Message],
    lang: Lang,
) -> Option<(&'static str, String)> {
    let shape = |m: &Message| -> Option<(String, String)> {
        let t = m.text(lang);
        let a = t.find("{{target}}")?;
        let rest = &t[a + "{{target}}".len()..];
        let b = rest.find("{{check}} ")?;
        let (pre, mid) = (&t[..a], &rest[..b]);
        (!pre.contains("{{") && !mid.contains("{{")).then(|| (pre.to_string(), mid.to_string()))
    };
    let s = shape(m)?;
    if clearers.iter().any(|c| shape(c).as_ref() != Some(&s)) {
        return None;
    }
    Some((
        "check",
        format!(
            "PW[0-9]{{4}} {}(.+?){}([^ ]+) ",
            literal(&s.0),
            literal(&s.1)
        ),
    ))
}

fn trigger(tpl: &str, key: &str, m: &Message, catalog: &Catalog, lang: Lang) -> Value {
    let find = |ids: &str| format!("find(/{tpl}/{key},,\"regexp\",\"{LINE}{ids} \")=1");
    let clearers = catalog.cleared_by(&m.id);
    let ids: Vec<&str> = clearers.iter().map(|c| c.id.as_str()).collect();
    // Zabbix correlates by tag only what a recovery closes.
    let corr = correlation(m, &clearers, lang).filter(|_| !clearers.is_empty());
    let mut tags = vec![json!({"tag": q("procward"), "value": q(&m.id)})];
    if let Some((field, pattern)) = &corr {
        let groups = if *field == "check" { "\\1 \\2" } else { "\\1" };
        let value = format!("{{{{ITEM.VALUE}}.regsub(\"{pattern}\", \"{groups}\")}}");
        tags.push(json!({"tag": q(field), "value": q(&value)}));
    }
    let action = match lang {
        Lang::En => "Action",
        Lang::Ja => "対処",
    };
    json!({
        "uuid": uuid(&format!("{tpl} trigger {}", m.id)),
        "expression": q(&find(&m.id)),
        "recovery": (!ids.is_empty()).then(|| q(&find(&format!("({})", ids.join("|"))))),
        "correlation_tag": corr.as_ref().map(|(f, _)| q(f)),
        "name": q(&format!("{} {}", m.id, readable(m.text(lang)))),
        "event_name": q(&format!("{{{{ITEM.VALUE}}.regsub(\"({} .*)\", \"\\1\")}}", m.id)),
        "priority": priority(m.severity),
        "description": q(&format!(
            "{} {action}: {}",
            one_line(m.description.get(lang)),
            one_line(m.action.get(lang))
        )),
        "tags": tags,
    })
}

/// One template: an item on a route and the triggers over it.
fn template(route: &str, r: &Renderer, lang: Lang) -> Value {
    let l = lang.as_str();
    let (tpl, key, kind) = match route {
        "log" => (
            format!("procward-{l}"),
            format!("log[{{$PROCWARD.LOG}},\"{LINE}PW[0-9]{{4}} \",,,skip]"),
            "ZABBIX_ACTIVE",
        ),
        _ => (
            format!("procward-traps-{l}"),
            format!("snmptrap[\"{LINE}PW[0-9]{{4}} \"]"),
            "SNMP_TRAP",
        ),
    };
    let triggers: Vec<Value> = r
        .catalog
        .messages
        .iter()
        .filter(|m| m.severity.at_least(Severity::Warning))
        .map(|m| trigger(&tpl, &key, m, &r.catalog, lang))
        .collect();
    json!({
        "uuid": uuid(&tpl),
        "template": tpl,
        "route": route,
        "item_uuid": uuid(&format!("{tpl} item")),
        "key": q(&key),
        "type": kind,
        "triggers": triggers,
    })
}

/// Both languages' files, and the trap receiver for the OID `root`.
pub(super) fn generate(r: &Renderer, root: &[u32]) -> Result<Vec<File>, String> {
    let mut files = Vec::new();
    for lang in [Lang::En, Lang::Ja] {
        let data = json!({
            "lang": lang.as_str(),
            "ja": lang == Lang::Ja,
            "group_uuid": uuid("group Templates/procward"),
            "templates": [template("log", r, lang), template("traps", r, lang)],
        });
        files.push(File {
            name: format!("procward-{}.yaml", lang.as_str()),
            content: r.render_data("filters/zabbix", &data)?,
        });
    }
    let objects: Vec<String> = root.iter().chain([&1]).map(u32::to_string).collect();
    files.push(File {
        name: "procward_trap_receiver.pl".into(),
        content: r.render_data(
            "filters/zabbix-trap-receiver",
            &json!({ "objects": objects.join(".") }),
        )?,
    });
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4_and_stable() {
        let a = uuid("x");
        assert_eq!(a.len(), 32);
        assert_eq!(&a[12..13], "4");
        assert!("89ab".contains(&a[16..17]));
        assert_eq!(a, uuid("x"));
        assert_ne!(a, uuid("y"));
    }

    #[test]
    fn literal_text_matches_itself_only() {
        let p = literal("a.b (c)? {d}|e$ 監視対象 ");
        let re = regex::Regex::new(&format!("^{p}$")).unwrap();
        assert!(re.is_match("a.b (c)? {d}|e$ 監視対象 "));
        assert!(!re.is_match("axb (c)? {d}|e$ 監視対象 "));
        assert!(!p.contains('\\'));
    }

    #[test]
    fn a_check_s_problems_are_told_apart_by_target_and_check() {
        use crate::catalog::render::Renderer;
        use crate::catalog::Catalog;
        let r = Renderer::new(std::sync::Arc::new(Catalog::embedded()), None, "h").unwrap();
        for (lang, line) in [
            (
                Lang::En,
                "procward[1]: PW2042 target web: check leak (memory) failed for 3 checks in a row: 2.1GiB, expected at most 2.0GiB (action: restart)",
            ),
            (
                Lang::Ja,
                "procward[1]: PW2043 監視対象 web: チェック leak (メモリ使用量 (RSS)) が再び正常になりました: 1.0GiB (異常が続いた時間: 2分)",
            ),
        ] {
            let m = r.catalog.get("PW2042").unwrap();
            let clearers = r.catalog.cleared_by("PW2042");
            let (tag, pattern) = correlation(m, &clearers, lang).unwrap();
            assert_eq!(tag, "check");
            let re = regex::Regex::new(&pattern).unwrap();
            let c = re.captures(line).unwrap_or_else(|| panic!("{pattern} on {line}"));
            assert_eq!((&c[1], &c[2]), ("web", "leak"));
        }
    }
}
