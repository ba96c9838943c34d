//! Rendering through Handlebars: catalog texts and the output templates in
//! `templates/`. Strict mode, no HTML escaping; every template is rendered
//! against every catalog message's sample event at load.

use crate::catalog::Catalog;
use crate::model::event::{escape_value, rfc3339_ms, Event, EventSpec};
use crate::model::Lang;
use handlebars::Handlebars;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The templates compiled into the binary: (name, text).
const EMBEDDED: &[(&str, &str)] = &[
    ("rfc3164", include_str!("../../templates/rfc3164.hbs")),
    ("rfc5424", include_str!("../../templates/rfc5424.hbs")),
    ("console", include_str!("../../templates/console.hbs")),
    ("trap", include_str!("../../templates/trap.hbs")),
    ("mib", include_str!("../../templates/mib.hbs")),
    (
        "filters/esmpro",
        include_str!("../../templates/filters/esmpro.hbs"),
    ),
    (
        "filters/websam",
        include_str!("../../templates/filters/websam.hbs"),
    ),
    (
        "filters/rsyslog",
        include_str!("../../templates/filters/rsyslog.hbs"),
    ),
    (
        "filters/snmptt",
        include_str!("../../templates/filters/snmptt.hbs"),
    ),
    (
        "filters/prometheus",
        include_str!("../../templates/filters/prometheus.hbs"),
    ),
    (
        "filters/alertmanager",
        include_str!("../../templates/filters/alertmanager.hbs"),
    ),
    (
        "filters/zabbix",
        include_str!("../../templates/filters/zabbix.hbs"),
    ),
    (
        "filters/zabbix-trap-receiver",
        include_str!("../../templates/filters/zabbix-trap-receiver.hbs"),
    ),
];

/// The output templates every build has.
const OUTPUT_TEMPLATES: &[&str] = &["rfc3164", "rfc5424", "console", "trap"];

/// Which of the embedded templates a renderer compiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Templates {
    /// Every one: the MIB and the filter definitions too (the commands
    /// that generate them).
    All,
    /// The output templates only: what the daemon renders events with.
    /// The MIB and filter templates, compiled, were ~40 % of the daemon's
    /// renderer (BENCHMARKS.md, "Where the memory goes").
    Events,
}

pub struct Renderer {
    hb: Handlebars<'static>,
    pub catalog: Arc<Catalog>,
    pub host: String,
    /// Template contexts of the last events, per language: built once,
    /// shared by every sink that renders the same event.
    contexts: std::sync::Mutex<std::collections::VecDeque<(ContextKey, Arc<Value>)>>,
    /// Output templates replaced from `daemon.templates-dir`.
    overridden: Vec<String>,
}

/// (seq, time, message ID, language) of an event's context.
type ContextKey = (u64, u64, String, Lang);

/// Contexts kept: enough for every sink to render the event in flight.
const CONTEXTS: usize = 32;

fn text_key(id: &str, lang: Lang) -> String {
    format!("text/{id}/{}", lang.as_str())
}

impl Renderer {
    /// Build from a catalog and, optionally, a directory whose `*.hbs`
    /// override the embedded templates. Returns every problem found.
    pub fn new(
        catalog: Arc<Catalog>,
        templates_dir: Option<&Path>,
        host: &str,
    ) -> Result<Renderer, Vec<String>> {
        Self::with(Templates::All, catalog, templates_dir, host)
    }

    /// `new`, compiling only the embedded templates of `which` (a
    /// template of `templates_dir` is compiled whatever its name).
    pub fn with(
        which: Templates,
        catalog: Arc<Catalog>,
        templates_dir: Option<&Path>,
        host: &str,
    ) -> Result<Renderer, Vec<String>> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        let mut errors = Vec::new();
        let mut overridden = Vec::new();
        let wanted = |name: &&str| which == Templates::All || OUTPUT_TEMPLATES.contains(name);
        for (name, text) in EMBEDDED.iter().filter(|(n, _)| wanted(n)) {
            if let Err(e) = hb.register_template_string(name, *text) {
                errors.push(format!("templates/{name}.hbs: {e}"));
            }
        }
        if let Some(dir) = templates_dir {
            match std::fs::read_dir(dir) {
                Ok(entries) => {
                    for entry in entries.flatten() {
                        let path = entry.path();
                        if path.extension().and_then(|e| e.to_str()) != Some("hbs") {
                            continue;
                        }
                        let key = path
                            .file_stem()
                            .and_then(|s| s.to_str())
                            .unwrap_or_default()
                            .to_string();
                        match std::fs::read_to_string(&path) {
                            Ok(text) => {
                                if let Err(e) = hb.register_template_string(&key, text) {
                                    errors.push(format!("{}: {e}", path.display()));
                                }
                                overridden.push(key);
                            }
                            Err(e) => errors.push(format!("{}: {e}", path.display())),
                        }
                    }
                }
                Err(e) => errors.push(format!("{}: {e}", dir.display())),
            }
        }
        for m in &catalog.messages {
            for lang in [Lang::En, Lang::Ja] {
                if let Err(e) = hb.register_template_string(&text_key(&m.id, lang), m.text(lang)) {
                    errors.push(format!("message {} text.{}: {e}", m.id, lang.as_str()));
                }
            }
        }
        let r = Renderer {
            hb,
            catalog,
            host: host.to_string(),
            contexts: Default::default(),
            overridden,
        };
        if errors.is_empty() {
            errors.extend(r.self_test());
        }
        if errors.is_empty() {
            Ok(r)
        } else {
            Err(errors)
        }
    }

    /// Render every text and output template with every message's sample
    /// fields: a field a text names but the message does not declare, or a
    /// template that breaks, is found here.
    fn self_test(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for m in &self.catalog.messages {
            let fields = m.sample_fields();
            for lang in [Lang::En, Lang::Ja] {
                if let Err(e) = self.text(&m.id, &fields, lang) {
                    errors.push(format!("message {} text.{}: {e}", m.id, lang.as_str()));
                }
            }
            let ev = self.sample_event(&m.id, Lang::En);
            for t in OUTPUT_TEMPLATES {
                if let Err(e) = self.output(t, &ev, Lang::En) {
                    errors.push(format!("template {t}.hbs with message {}: {e}", m.id));
                }
            }
        }
        errors
    }

    pub fn text(
        &self,
        id: &str,
        fields: &BTreeMap<String, Value>,
        lang: Lang,
    ) -> Result<String, String> {
        let shown = self
            .catalog
            .get(id)
            .and_then(|m| self.catalog.localize(m, fields, lang));
        let mut text = self
            .hb
            .render(&text_key(id, lang), shown.as_ref().unwrap_or(fields))
            .map_err(|e| e.reason().to_string())?;
        // Handlebars renders into an 8 KiB buffer and returns it as is: an
        // event keeps its text (in queues, a sink's read-ahead), so only
        // what the text needs is kept (texts are ~100 bytes, not 8 KiB).
        text.shrink_to_fit();
        Ok(text)
    }

    /// Render the output template `name` for `ev`, with the text in `lang`.
    pub fn output(&self, name: &str, ev: &Event, lang: Lang) -> Result<String, String> {
        if let Some(out) = self.direct(name, ev, lang) {
            return out;
        }
        let data = self.context(ev, lang)?;
        self.hb
            .render(name, &*data)
            .map_err(|e| e.reason().to_string())
    }

    /// An embedded output template nobody replaced, written without
    /// Handlebars: the same text (`direct_output_is_what_handlebars_renders`
    /// checks every message in both languages), without building a JSON
    /// context per event, which was most of a sink's CPU per event.
    fn direct(&self, name: &str, ev: &Event, lang: Lang) -> Option<Result<String, String>> {
        if self.overridden.iter().any(|o| o == name) {
            return None;
        }
        let text = |ev: &Event| match lang.as_str() == ev.lang {
            true => Ok(ev.text.clone()),
            false => self.text(&ev.id, &ev.fields, lang),
        };
        Some(match name {
            "rfc5424" | "trap" => text(ev),
            "rfc3164" => text(ev).map(|t| format!("{} {t}", ev.id)),
            "console" => {
                text(ev).map(|t| format!("{} {} {} {t}", ev.time, ev.severity.as_str(), ev.id))
            }
            _ => return None,
        })
    }

    fn lock_contexts(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(ContextKey, Arc<Value>)>> {
        self.contexts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The template context of `ev` in `lang`, built once per event and
    /// language however many sinks render it.
    fn context(&self, ev: &Event, lang: Lang) -> Result<Arc<Value>, String> {
        let key: ContextKey = (ev.seq, ev.time_ms, ev.id.clone(), lang);
        let cached = |cache: &std::collections::VecDeque<(ContextKey, Arc<Value>)>| {
            cache
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        };
        if let Some(v) = cached(&self.lock_contexts()) {
            return Ok(v);
        }
        // Built without the lock: sinks rendering other events never wait
        // for this one.
        let mut data = serde_json::to_value(ev).map_err(|e| e.to_string())?;
        if lang.as_str() != ev.lang {
            let text = self.text(&ev.id, &ev.fields, lang)?;
            data["text"] = Value::from(text);
        }
        let data = Arc::new(data);
        let mut cache = self.lock_contexts();
        if let Some(v) = cached(&cache) {
            return Ok(v); // another sink built it meanwhile
        }
        if cache.len() >= CONTEXTS {
            cache.pop_front();
        }
        cache.push_back((key.clone(), data.clone()));
        Ok(data)
    }

    /// Render a template that is not about one event (the MIB, filters).
    pub fn render_data(&self, name: &str, data: &Value) -> Result<String, String> {
        self.hb
            .render(name, data)
            .map_err(|e| format!("template {name}: {}", e.reason()))
    }

    /// Make the event record from what the core said.
    pub fn event(&self, spec: &EventSpec, seq: u64, time_ms: u64, lang: Lang) -> Event {
        let fields: BTreeMap<String, Value> = spec
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), escape_value(v)))
            .collect();
        let (name, severity) = match self.catalog.get(spec.id) {
            Some(m) => (m.name.clone(), m.severity),
            None => ("unknown".to_string(), crate::model::event::Severity::Error),
        };
        let text = self.text(spec.id, &fields, lang).unwrap_or_else(|e| {
            format!(
                "{} (text unavailable: {e}) {}",
                spec.id,
                Value::from(
                    fields
                        .clone()
                        .into_iter()
                        .collect::<serde_json::Map<_, _>>()
                )
            )
        });
        Event {
            seq,
            time: rfc3339_ms(time_ms),
            time_ms,
            id: spec.id.to_string(),
            name,
            severity,
            host: self.host.clone(),
            target: spec
                .target
                .as_ref()
                .map(|t| crate::model::event::escape_controls(t).into_owned()),
            pid: spec.pid,
            fields,
            text,
            lang: lang.as_str().to_string(),
        }
    }

    /// An event of message `id` with sample fields.
    pub fn sample_event(&self, id: &str, lang: Lang) -> Event {
        let m = self.catalog.get(id).expect("known id");
        let mut spec = EventSpec::new(leak_id(&m.id));
        spec.fields = m.sample_fields();
        if let Some(Value::String(t)) = spec.fields.get("target") {
            spec.target = Some(t.clone());
        }
        if let Some(p) = spec.fields.get("pid").and_then(Value::as_u64) {
            spec.pid = Some(p as u32);
        }
        self.event(&spec, 1, 1_764_000_000_000, lang)
    }
}

/// Catalog IDs as &'static str for EventSpec (a bounded set: the catalog).
fn leak_id(id: &str) -> &'static str {
    use std::sync::Mutex;
    static IDS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut ids = IDS.lock().expect("ids");
    if let Some(s) = ids.iter().find(|s| **s == id) {
        return s;
    }
    let s: &'static str = Box::leak(id.to_string().into_boxed_str());
    ids.push(s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renderer() -> Renderer {
        Renderer::new(Arc::new(Catalog::embedded()), None, "node1")
            .expect("embedded templates are valid")
    }

    #[test]
    fn direct_output_is_what_handlebars_renders() {
        let r = renderer();
        for m in &r.catalog.messages {
            for (ev_lang, lang) in [
                (Lang::En, Lang::En),
                (Lang::En, Lang::Ja),
                (Lang::Ja, Lang::Ja),
            ] {
                let ev = r.sample_event(&m.id, ev_lang);
                for t in OUTPUT_TEMPLATES {
                    let data = r.context(&ev, lang).unwrap();
                    let slow = r.hb.render(t, &*data).unwrap();
                    let fast = r.direct(t, &ev, lang).expect("embedded").unwrap();
                    assert_eq!(fast, slow, "{t} for {}", m.id);
                }
            }
        }
    }

    #[test]
    fn an_event_keeps_only_the_memory_its_text_needs() {
        // Handlebars renders into 8 KiB; an event waiting in a sink's
        // read-ahead kept all of it (1,000 events: 8 MiB).
        let r = renderer();
        for m in &r.catalog.messages {
            for lang in [Lang::En, Lang::Ja] {
                let ev = r.sample_event(&m.id, lang);
                assert!(
                    ev.text.capacity() < 1024,
                    "{}: {}",
                    m.id,
                    ev.text.capacity()
                );
            }
        }
    }

    #[test]
    fn renders_both_languages() {
        let r = renderer();
        let ev = r.sample_event("PW2003", Lang::En);
        assert_eq!(
            ev.text,
            "target httpd: process 4242 disappeared (killed by SIGSEGV, core dumped)"
        );
        assert_eq!(
            r.output("rfc3164", &ev, Lang::En).unwrap(),
            "PW2003 target httpd: process 4242 disappeared (killed by SIGSEGV, core dumped)"
        );
        assert_eq!(
            r.output("rfc3164", &ev, Lang::Ja).unwrap(),
            "PW2003 監視対象 httpd: プロセス 4242 の消滅を検出しました (シグナル SIGSEGV で終了、コアダンプあり)"
        );
    }

    #[test]
    fn an_undeclared_field_is_refused_at_load() {
        let mut c = Catalog::embedded();
        c.messages[0].text.en = "uses {{undeclared}}".into();
        let errs = Renderer::new(Arc::new(c), None, "h")
            .err()
            .expect("refused");
        assert!(
            errs.iter()
                .any(|e| e.contains("PW1001") && e.contains("undeclared")),
            "{errs:?}"
        );
    }

    #[test]
    fn a_broken_override_template_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rfc3164.hbs"), "{{id} {{text}}").unwrap();
        let errs = Renderer::new(Arc::new(Catalog::embedded()), Some(dir.path()), "h")
            .err()
            .expect("refused");
        assert!(errs.iter().any(|e| e.contains("rfc3164.hbs")), "{errs:?}");
    }

    #[test]
    fn hostile_fields_cannot_break_lines() {
        let r = renderer();
        let spec = EventSpec::new(crate::model::event::msg::PROCESS_DISAPPEARED)
            .target("evil\nPW9999 forged\x1b[2J")
            .pid(1)
            .field("exit", "exit status unknown");
        let ev = r.event(&spec, 1, 0, Lang::En);
        assert!(
            !ev.text.contains('\n') && !ev.text.contains('\x1b'),
            "{}",
            ev.text
        );
        assert!(ev.text.contains("evil\\x0aPW9999 forged\\x1b[2J"));
    }
}
