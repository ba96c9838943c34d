//! `depends-on`: every name a target of this configuration, none itself,
//! and no cycle (the path of one is shown).

use super::*;
use std::collections::HashMap;

/// Check the `depends-on` lists of `targets` ((file, index, name, spec)).
pub(super) fn validate_deps(
    c: &mut Collector,
    sources: &[Source],
    targets: &[(usize, usize, String, Option<std::sync::Arc<TargetSpec>>)],
) {
    let index: HashMap<&str, usize> = targets
        .iter()
        .enumerate()
        .map(|(j, t)| (t.2.as_str(), j))
        .collect();
    let at = |c: &mut Collector, j: usize, msg: String| {
        let (si, i, _, _) = &targets[j];
        c.at(
            &sources[*si],
            &[k("target"), Seg::Index(*i), k("depends-on")],
            msg,
        )
    };
    let deps = |j: usize| -> &[String] { targets[j].3.as_deref().map_or(&[], |s| s.depends_on()) };
    for (j, t) in targets.iter().enumerate() {
        for d in deps(j) {
            if *d == t.2 {
                at(c, j, "a target cannot depend on itself".into());
            } else if !index.contains_key(d.as_str()) {
                at(c, j, format!("`{d}` is not a target of this configuration"));
            }
        }
    }
    // Depth-first, colouring: 1 on the path, 2 done.
    let mut colour = vec![0u8; targets.len()];
    for start in 0..targets.len() {
        if colour[start] != 0 || deps(start).is_empty() {
            continue;
        }
        let mut path = vec![(start, 0usize)];
        colour[start] = 1;
        while let Some(&mut (j, ref mut next)) = path.last_mut() {
            let list = deps(j);
            let Some(d) = list.get(*next) else {
                colour[j] = 2;
                path.pop();
                continue;
            };
            *next += 1;
            let Some(&n) = index.get(d.as_str()).filter(|&&n| n != j) else {
                continue;
            };
            match colour[n] {
                0 => {
                    colour[n] = 1;
                    path.push((n, 0));
                }
                1 => {
                    let from = path.iter().position(|p| p.0 == n).unwrap_or(0);
                    let mut names: Vec<&str> = path[from..]
                        .iter()
                        .map(|p| targets[p.0].2.as_str())
                        .collect();
                    names.push(targets[n].2.as_str());
                    at(c, n, format!("a cycle: {}", names.join(" → ")));
                }
                _ => {}
            }
        }
    }
}
