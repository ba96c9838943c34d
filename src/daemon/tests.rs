//! The loading of a configuration with its renderer, at start and reload.

use super::*;
use crate::model::Lang;
use std::os::unix::fs::PermissionsExt;

fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    let text = format!(
        "[daemon]\nstate-dir = \"{d}/state\"\ncontrol-socket = \"{d}/s.sock\"\n{extra}",
        d = dir.display()
    );
    write(dir, "procward.toml", &text, 0o600)
}

/// Footprint (issue 32): a reload that cannot change the renderer keeps
/// it (no second catalog parse, no second set of compiled templates in
/// memory beside the first); one that can builds a new one.
#[test]
fn a_reload_keeps_the_renderer_unless_what_it_is_made_of_may_have_changed() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "hostname = \"h1\"\n");
    let (_, first) = load_all(&path, Templates::Events).unwrap();
    let (_, same) = load_all_reusing(&path, &[], Reuse::Renderer(first.clone())).unwrap();
    assert!(
        Arc::ptr_eq(&first, &same),
        "embedded catalog and templates: kept"
    );
    // Another host name: a new renderer that has it.
    let path = config(dir.path(), "hostname = \"h2\"\n");
    let (_, other) = load_all_reusing(&path, &[], Reuse::Renderer(first.clone())).unwrap();
    assert!(!Arc::ptr_eq(&first, &other));
    assert_eq!(other.host, "h2");
    // A templates directory: its files may have changed since; read again.
    let tdir = dir.path().join("templates");
    std::fs::create_dir(&tdir).unwrap();
    std::fs::set_permissions(&tdir, std::fs::Permissions::from_mode(0o755)).unwrap();
    write(&tdir, "console.hbs", "one {{id}}", 0o644);
    let extra = format!(
        "hostname = \"h2\"\ntemplates-dir = \"{}\"\n",
        tdir.display()
    );
    let path = config(dir.path(), &extra);
    let (_, t1) = load_all_reusing(&path, &[], Reuse::Renderer(other.clone())).unwrap();
    write(&tdir, "console.hbs", "two {{id}}", 0o644);
    let (_, t2) = load_all_reusing(&path, &[], Reuse::Renderer(t1.clone())).unwrap();
    let ev = t2.sample_event("PW2003", Lang::En);
    assert_eq!(t1.output("console", &ev, Lang::En).unwrap(), "one PW2003");
    assert_eq!(t2.output("console", &ev, Lang::En).unwrap(), "two PW2003");
    // Back to the embedded templates: the renderer of the directory is
    // not the one to keep.
    let (with_dir, _) = load_all(&path, Templates::Events).unwrap();
    let path = config(dir.path(), "hostname = \"h2\"\n");
    let reuse = Reuse::running(&with_dir, &t2);
    let (_, back) = load_all_reusing(&path, &[], reuse).unwrap();
    assert!(!Arc::ptr_eq(&t2, &back));
    assert_eq!(
        back.output("console", &ev, Lang::En),
        other.output("console", &ev, Lang::En)
    );
    assert_ne!(back.output("console", &ev, Lang::En).unwrap(), "two PW2003");
}

/// The daemon's renderer has the output templates only; the commands that
/// generate the MIB and the filter definitions get them all.
#[test]
fn the_daemon_compiles_the_output_templates_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "");
    let (_, events) = load_all(&path, Templates::Events).unwrap();
    let (_, all) = load_all(&path, Templates::All).unwrap();
    let data = serde_json::json!({ "messages": [] });
    assert!(events.render_data("filters/snmptt", &data).is_err());
    assert!(all.render_data("filters/snmptt", &data).is_ok());
    let ev = all.sample_event("PW2003", Lang::Ja);
    for t in ["rfc3164", "rfc5424", "console", "trap"] {
        assert_eq!(
            events.output(t, &ev, Lang::Ja),
            all.output(t, &ev, Lang::Ja)
        );
    }
}
