//! The floors of src/ and the arrows allowed between them
//! (docs/architecture.md): a module imports only modules of floors below
//! its own, never one of its own floor (the edges never import each other).
//! The test reads every file of src/ and fails on any other arrow, naming
//! the file and the path that goes up or sideways.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom to top. A module may import any module of a lower floor.
const FLOORS: &[(&str, &[&str])] = &[
    ("model", &["model"]),
    ("system", &["sys"]),
    ("configuration", &["config"]),
    ("catalog", &["catalog"]),
    ("core", &["monitor"]),
    ("store", &["store"]),
    (
        "edges",
        &["probe", "action", "notify", "control", "filters", "metrics"],
    ),
    ("wiring", &["daemon", "offline", "demo", "cli", "reaper"]),
    ("commands", &["commands"]),
    ("binary", &["main"]),
];

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|(_, mods)| mods.contains(&module))
}

/// Production code without its comments (a doc comment may name any
/// module): a file's `#[cfg(test)] mod` (at its end, by the house rule)
/// is left out; tests may reach across floors.
fn code_of(text: &str) -> String {
    let production = match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => text,
    };
    production
        .lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a file names through `crate::` (and through
/// `procward::` in main.rs): `crate::x::…` and `use crate::{x, y::…}`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for root in ["crate::", "procward::"] {
        let mut rest = code;
        while let Some(i) = rest.find(root) {
            let after = &rest[i + root.len()..];
            if let Some(group) = after.strip_prefix('{') {
                // The first name of each item of the group, braces nested.
                let (mut depth, mut name, mut naming) = (0, String::new(), true);
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            out.insert(std::mem::take(&mut name));
                            naming = true;
                        }
                        c if depth == 0 && naming && (c.is_alphanumeric() || c == '_') => {
                            name.push(c)
                        }
                        c if depth == 0 && !c.is_whitespace() => naming = false,
                        _ => {}
                    }
                }
                out.insert(name);
            } else {
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.insert(name);
            }
            rest = after;
        }
    }
    out.retain(|n| !n.is_empty() && n != "self");
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of src/ belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every arrow of src/ that is not allowed, as "file: a -> b (why)".
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for f in files {
        let module = module_of(src, &f);
        if module == "lib" || f.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let Some(from) = floor_of(&module) else {
            bad.push(format!("{}: module `{module}` is on no floor", f.display()));
            continue;
        };
        let code = code_of(&std::fs::read_to_string(&f).unwrap());
        for to in imports(&code) {
            if to == module {
                continue;
            }
            match floor_of(&to) {
                Some(t) if t < from => {}
                Some(t) => bad.push(format!(
                    "{}: {module} ({}) -> {to} ({}): {}",
                    f.display(),
                    FLOORS[from].0,
                    FLOORS[t].0,
                    if t == from { "sideways" } else { "upward" }
                )),
                None => bad.push(format!(
                    "{}: {module} -> {to}: `{to}` is on no floor",
                    f.display()
                )),
            }
        }
    }
    bad
}

#[test]
fn every_import_goes_down_a_floor() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = violations(&src);
    assert!(
        bad.is_empty(),
        "imports that go up or sideways (see FLOORS in tests/layers.rs and docs/architecture.md):\n{}",
        bad.join("\n")
    );
}

/// The check itself: an upward, a sideways and a downward arrow, in a
/// tree made for the test.
#[test]
fn the_check_sees_upward_and_sideways_arrows() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("probe")).unwrap();
    std::fs::write(src.join("model.rs"), "use crate::store::x;\n").unwrap();
    std::fs::write(
        src.join("probe/mod.rs"),
        "use crate::{model::X, action::{a, b}};\n// crate::daemon is only a comment\nfn f() { crate::sys::g(); }\n",
    )
    .unwrap();
    std::fs::write(src.join("sys.rs"), "use crate::model::ProcRef;\n").unwrap();
    let bad = violations(src);
    assert_eq!(bad.len(), 2, "{bad:#?}");
    assert!(
        bad[0].contains("model (model) -> store (store): upward"),
        "{bad:#?}"
    );
    assert!(
        bad[1].contains("probe (edges) -> action (edges): sideways"),
        "{bad:#?}"
    );
}

#[test]
fn a_group_import_names_each_module() {
    let got = imports("use crate::{a::{b, c::d}, e, f::g};\nlet x = crate::h::i();");
    let want: BTreeSet<String> = ["a", "e", "f", "h"].iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want);
}

/// The most lines a file of production code may have (its test module
/// left out): a room one can hold in one's head.
const MAX_FILE_LINES: usize = 800;

#[test]
fn no_production_file_is_over_800_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut big: Vec<String> = files
        .iter()
        .filter(|f| f.file_name().is_none_or(|n| n != "tests.rs"))
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let production = text
                .find("#[cfg(test)]\nmod ")
                .map_or(&text[..], |i| &text[..i]);
            let n = production.lines().count();
            (n > MAX_FILE_LINES).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    big.sort();
    assert!(
        big.is_empty(),
        "over {MAX_FILE_LINES} lines:\n{}",
        big.join("\n")
    );
}
