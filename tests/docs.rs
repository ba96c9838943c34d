//! The Japanese documentation is kept in step with the English: every
//! configuration key that README.md documents is in README.ja.md too.

use std::path::Path;

fn read(p: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).unwrap()
}

/// The keys of README.md's configuration reference: every backticked
/// word in the first cell of its tables' rows (`name`, `match.exe` /
/// `.comm`, `count = { min, max }`, …).
fn documented_keys(readme: &str) -> Vec<String> {
    let start = readme.find("## Configuration reference").expect("section");
    let end = readme[start..]
        .find("\n## Metrics")
        .map_or(readme.len(), |e| start + e);
    let mut keys = Vec::new();
    for row in readme[start..end].lines().filter(|l| l.starts_with("| `")) {
        let first = row.split(" | ").next().unwrap_or_default();
        keys.extend(first.split('`').skip(1).step_by(2).map(str::to_string));
    }
    keys.sort();
    keys.dedup();
    keys
}

#[test]
fn every_configuration_key_in_readme_is_in_the_japanese_readme() {
    let keys = documented_keys(&read("README.md"));
    assert!(keys.len() > 50, "{keys:?}");
    for k in [
        "interval",
        "restart.script",
        "profile",
        "processsaver",
        "stall.probe",
    ] {
        assert!(
            keys.iter().any(|x| x == k),
            "{k} not found in README.md: {keys:?}"
        );
    }
    let ja = read("README.ja.md");
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !ja.contains(&format!("`{k}`")))
        .collect();
    assert!(missing.is_empty(), "README.ja.md lacks {missing:?}");
}

#[test]
fn the_readmes_link_each_other_and_the_migration_guides() {
    let en = read("README.md");
    let ja = read("README.ja.md");
    assert!(en.contains("(README.ja.md)") && en.contains("(docs/migration-processsaver.md)"));
    assert!(ja.contains("(README.md)") && ja.contains("(docs/migration-processsaver.ja.md)"));
}
