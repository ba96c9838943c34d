//! `match.cmdline` patterns: small to keep, cheap to match, and indexed so
//! a /proc scan does not try every pattern on every process.
//!
//! Why not one `regex::Regex` per target (as before): a `Regex` keeps
//! several engines and a per-thread cache, ~6.5 KB compiled and ~9 KB once
//! used; 10,000 targets took 95–190 MB. A plain literal (the usual
//! `^/usr/bin/app --name x$`) is compared, with no automaton at all; any
//! other pattern is a Thompson NFA run by the PikeVM (regex-automata, the
//! engines inside `regex`; same semantics, Unicode `\b` included).
//! Measured on `^(/bin/)?sleep +100000\.I$` × 10,000: the NFA takes
//! 1.2 KB and 3 µs to build, a match (with its scratch cache) 0.8 µs;
//! the sparse DFA used before took 1.1 KB but 60–80 µs to build (0.6–0.8 s
//! of a 10,000-target start-up). Matching runs only on the candidates
//! the index below picks, so the DFA's faster match bought nothing.
//! Equal patterns are compiled once and shared.
//!
//! A `RegexSet` of 10,000 patterns was measured too: 11 MB but 1.7 ms per
//! command line (the lazy DFA thrashes), 17 s for a scan of 10,000
//! processes; the index below keeps a scan linear instead.

use regex_automata::nfa::thompson::{self, pikevm::PikeVM};
use std::collections::HashMap;
use std::sync::Arc;

/// The compiled size limit `regex` sets by default: past it a pattern is
/// refused with `regex`'s own words.
const NFA_MAX_BYTES: usize = 10 * 1024 * 1024;

#[derive(Clone)]
pub struct Pattern(Arc<Inner>);

/// Where a pattern's literal must be in the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    None,
    Start,
    End,
}

struct Inner {
    source: String,
    engine: Engine,
    /// Every match of the pattern starts (or ends) with one of these, at
    /// the line's start (or end) when anchored; `None`: no such literals.
    literals: Option<Vec<Vec<u8>>>,
    anchor: Anchor,
}

enum Engine {
    /// A plain literal, as most command lines are written
    /// (`^/usr/bin/app --name x$`): compared, no automaton at all.
    Literal {
        text: Box<[u8]>,
        start: bool,
        end: bool,
    },
    /// Anything else: the NFA, run by the PikeVM (a scratch cache per
    /// match, so nothing grows with use).
    Nfa(PikeVM),
}

impl std::fmt::Debug for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pattern({:?})", self.0.source)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.source == other.0.source
    }
}

impl Pattern {
    /// Compile `source` (the `regex` crate's syntax). The error is the
    /// parser's, as `regex` words it.
    pub fn new(source: &str) -> Result<Pattern, String> {
        let hir = regex_syntax::ParserBuilder::new()
            .build()
            .parse(source)
            .map_err(|e| e.to_string())?;
        // The more selective of the prefix and the suffix literals: many
        // targets often share a prefix (`/usr/bin/java -Dapp=…`).
        let props = hir.properties();
        let side = |kind, anchored: bool| {
            let seq = regex_syntax::hir::literal::Extractor::new()
                .kind(kind)
                .extract(&hir);
            let lits: Vec<Vec<u8>> = seq
                .literals()?
                .iter()
                .map(|l| l.as_bytes().to_vec())
                .collect();
            let shortest = lits.iter().map(Vec::len).min()?;
            (shortest > 0).then_some((shortest + if anchored { 4 } else { 0 }, lits, anchored))
        };
        let start = props
            .look_set_prefix()
            .contains(regex_syntax::hir::Look::Start);
        let end = props
            .look_set_suffix()
            .contains(regex_syntax::hir::Look::End);
        let prefix = side(regex_syntax::hir::literal::ExtractKind::Prefix, start)
            .map(|(score, l, a)| (score, l, if a { Anchor::Start } else { Anchor::None }));
        let suffix = side(regex_syntax::hir::literal::ExtractKind::Suffix, end)
            .map(|(score, l, a)| (score, l, if a { Anchor::End } else { Anchor::None }));
        let best = match (prefix, suffix) {
            (Some(p), Some(s)) => Some(if s.0 > p.0 { s } else { p }),
            (p, s) => p.or(s),
        };
        let (literals, anchor) = match best {
            Some((_, l, a)) => (Some(l), a),
            None => (None, Anchor::None),
        };
        let engine = match literal(&hir) {
            Some(e) => e,
            None => Engine::Nfa(Self::nfa(source, &hir)?),
        };
        Ok(Pattern(Arc::new(Inner {
            source: source.to_string(),
            engine,
            literals,
            anchor,
        })))
    }

    fn nfa(source: &str, hir: &regex_syntax::hir::Hir) -> Result<PikeVM, String> {
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .nfa_size_limit(Some(NFA_MAX_BYTES))
                    // is_match needs no capture slots.
                    .which_captures(thompson::WhichCaptures::None),
            )
            .build_from_hir(hir)
            .map_err(|e| match regex::Regex::new(source) {
                // `regex`'s wording ("exceeds size limit"), when it agrees.
                Err(re) => re.to_string(),
                Ok(_) => e.to_string(),
            })?;
        PikeVM::new_from_nfa(nfa).map_err(|e| e.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0.source
    }

    pub fn is_match(&self, haystack: &str) -> bool {
        match &self.0.engine {
            Engine::Literal { text, start, end } => {
                let h = haystack.as_bytes();
                match (start, end) {
                    (true, true) => h == &text[..],
                    (true, false) => h.starts_with(text),
                    (false, true) => h.ends_with(text),
                    (false, false) => {
                        text.is_empty() || h.windows(text.len()).any(|w| w == &text[..])
                    }
                }
            }
            Engine::Nfa(vm) => vm.is_match(&mut vm.create_cache(), haystack),
        }
    }

    /// The literals every match starts or ends with, and where.
    pub fn literals(&self) -> Option<(&[Vec<u8>], Anchor)> {
        self.0.literals.as_deref().map(|p| (p, self.0.anchor))
    }
}

/// `\A? literal \z?` (what `^…$` means without `(?m)`): the literal and
/// its anchors.
fn literal(hir: &regex_syntax::hir::Hir) -> Option<Engine> {
    use regex_syntax::hir::{HirKind, Look};
    let parts: &[regex_syntax::hir::Hir] = match hir.kind() {
        HirKind::Concat(v) => v,
        HirKind::Literal(_) => std::slice::from_ref(hir),
        _ => return None,
    };
    let mut parts = parts;
    let start = matches!(
        parts.first().map(|h| h.kind()),
        Some(HirKind::Look(Look::Start))
    );
    if start {
        parts = &parts[1..];
    }
    let end = matches!(
        parts.last().map(|h| h.kind()),
        Some(HirKind::Look(Look::End))
    );
    if end {
        parts = &parts[..parts.len() - 1];
    }
    let mut text = Vec::new();
    for p in parts {
        match p.kind() {
            HirKind::Literal(l) => text.extend_from_slice(&l.0),
            _ => return None,
        }
    }
    Some(Engine::Literal {
        text: text.into_boxed_slice(),
        start,
        end,
    })
}

/// Compiles each distinct pattern once (a configuration often repeats one).
#[derive(Default)]
pub(super) struct Patterns(HashMap<String, Pattern>);

impl Patterns {
    /// Offer an already compiled pattern (the running configuration's).
    pub(super) fn seed(&mut self, p: Pattern) {
        self.0.entry(p.as_str().to_string()).or_insert(p);
    }

    pub(super) fn get(&mut self, source: &str) -> Result<Pattern, String> {
        if let Some(p) = self.0.get(source) {
            return Ok(p.clone());
        }
        let p = Pattern::new(source)?;
        self.0.insert(source.to_string(), p.clone());
        Ok(p)
    }
}

/// Which of many patterns may match a command line: the candidates to try
/// (every pattern without literals, plus those whose literal occurs).
pub struct Index {
    ac: Option<aho_corasick::AhoCorasick>,
    /// For each literal of the automaton: (pattern number, anchor).
    owner: Vec<(u32, Anchor)>,
    always: Vec<u32>,
    seen: Vec<u32>,
    stamp: u32,
}

impl Index {
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a Pattern>) -> Index {
        let mut lits: Vec<&[u8]> = Vec::new();
        let mut owner = Vec::new();
        let mut always = Vec::new();
        let mut n = 0u32;
        for (i, p) in patterns.into_iter().enumerate() {
            n += 1;
            match p.literals() {
                Some((ps, anchor)) => {
                    for l in ps {
                        lits.push(l);
                        owner.push((i as u32, anchor));
                    }
                }
                None => always.push(i as u32),
            }
        }
        let ac = if lits.is_empty() {
            None
        } else {
            aho_corasick::AhoCorasick::builder()
                .kind(Some(aho_corasick::AhoCorasickKind::ContiguousNFA))
                .build(&lits)
                .ok()
        };
        if ac.is_none() {
            // Cannot index: try every pattern.
            always = (0..n).collect();
            owner.clear();
        }
        Index {
            ac,
            owner,
            always,
            seen: vec![0; n as usize],
            stamp: 0,
        }
    }

    /// The pattern numbers worth trying on `haystack`, each once.
    pub fn candidates(&mut self, haystack: &str, out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(&self.always);
        let Some(ac) = &self.ac else {
            return;
        };
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.seen.iter_mut().for_each(|s| *s = 0);
            self.stamp = 1;
        }
        for m in ac.find_overlapping_iter(haystack) {
            let (p, anchor) = self.owner[m.pattern().as_usize()];
            let placed = match anchor {
                Anchor::None => true,
                Anchor::Start => m.start() == 0,
                Anchor::End => m.end() == haystack.len(),
            };
            if !placed {
                continue;
            }
            let s = &mut self.seen[p as usize];
            if *s != self.stamp {
                *s = self.stamp;
                out.push(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_as_regex_does() {
        let cases = [
            (r"^sleep 1000\.5$", "sleep 1000.5", true),
            (r"^sleep 1000\.5$", "sleep 1000.55", false),
            (
                r"java .*-Dapp=web\b",
                "/usr/bin/java -Xmx1g -Dapp=web -jar x",
                true,
            ),
            (r"java .*-Dapp=web\b", "/usr/bin/java -Dapp=webx", false),
            (r"(?i)^/OPT/app", "/opt/app/bin/run", true),
            (r"\w+d$", "sshd", true),
            (r"^ジョブ[0-9]+", "ジョブ12 --x", true),
            (r"worker\.py", "python3 /srv/worker.py", true),
            (r".*", "", true),
            (r"a|^b", "cab", true),
            (r"^/usr/bin/app --name x$", "/usr/bin/app --name x", true),
            (r"^/usr/bin/app --name x$", "/usr/bin/app --name xy", false),
            (r"^/usr/bin/app", "/usr/bin/app -d", true),
            (r"^/usr/bin/app", " /usr/bin/app", false),
            (r"--name x$", "/usr/bin/app --name x", true),
            (r"--name x$", "/usr/bin/app --name x ", false),
            (r"app --n", "/usr/bin/app --name", true),
            (r"app --n", "/usr/bin/ap --name", false),
            (r"^$", "", true),
            (r"^$", "a", false),
            (r"", "abc", true),
            (r"^ジョブ$", "ジョブ", true),
            (r"^(/bin/)?sleep +100000\.0$", "sleep 100000.0", true),
            (r"^(/bin/)?sleep +100000\.0$", "/bin/sleep  100000.0", true),
            (r"^(/bin/)?sleep +100000\.0$", "x sleep 100000.0", false),
            (r"^(/bin/)?sleep +100000\.0$", "sleep 100000.00", false),
            (r"^a+b|^c", "aab", true),
            (r"^a+b|^c", "xc", false),
            (r"^a+b|c", "xc", true),
            (r"(?m)^a+b", "x\naab", true),
            // Unicode word boundaries (a DFA cannot do them).
            (r"\bweb\b", "é web", true),
            (r"é\b", "caféx", false),
            (r"é\b", "café x", true),
        ];
        for (pat, hay, want) in cases {
            let p = Pattern::new(pat).unwrap();
            assert_eq!(p.is_match(hay), want, "{pat} on {hay}");
            assert_eq!(regex::Regex::new(pat).unwrap().is_match(hay), want);
        }
        assert!(Pattern::new("(").unwrap_err().contains("unclosed group"));
        // Too large: refused as `regex` refuses it, not kept at any size.
        let huge = r"(?:\w{100}){100}";
        assert!(regex::Regex::new(huge).is_err());
        let e = Pattern::new(huge).unwrap_err();
        assert!(e.contains("size limit"), "{e}");
    }

    #[test]
    fn plain_literals_need_no_automaton() {
        for (pat, lit) in [
            ("^sleep 1000\\.5$", true),
            ("x$", true),
            ("a.c", false),
            ("(?i)abc", false),
            ("^a|b$", false),
        ] {
            let p = Pattern::new(pat).unwrap();
            assert_eq!(matches!(p.0.engine, Engine::Literal { .. }), lit, "{pat}");
        }
    }

    #[test]
    fn the_index_never_leaves_out_a_pattern_that_matches() {
        let pats: Vec<Pattern> = [
            r"^sleep 1000\.5$",
            r"^sleep 1000\.",
            r"java .*-Dapp=web",
            r".*",
            r"\d+$",
            r"(?i)worker",
            r"^/usr/(s?bin)/x",
        ]
        .iter()
        .map(|p| Pattern::new(p).unwrap())
        .collect();
        let mut index = Index::new(&pats);
        let mut out = Vec::new();
        for hay in [
            "sleep 1000.5",
            "sleep 1000.55",
            "x sleep 1000.5",
            "/usr/bin/java -Dapp=web",
            "WORKER 12",
            "/usr/sbin/x --y",
            "",
        ] {
            index.candidates(hay, &mut out);
            for (i, p) in pats.iter().enumerate() {
                if p.is_match(hay) {
                    assert!(
                        out.contains(&(i as u32)),
                        "{} on {hay:?} left out",
                        p.as_str()
                    );
                }
            }
            let mut dedup = out.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), out.len(), "each candidate once");
        }
        // An anchored literal elsewhere in the line is no candidate.
        index.candidates("x sleep 1000.5", &mut out);
        assert!(!out.contains(&0) && !out.contains(&1));
        // Many patterns with one prefix: the suffix tells them apart.
        let pats: Vec<Pattern> = (0..200)
            .map(|i| Pattern::new(&format!(r"^(/bin/)?sleep +100000\.{i}$")).unwrap())
            .collect();
        let mut index = Index::new(&pats);
        index.candidates("sleep 100000.17", &mut out);
        assert_eq!(out, vec![17]);
    }

    #[test]
    fn equal_patterns_are_compiled_once() {
        let mut ps = Patterns::default();
        let a = ps.get("^a$").unwrap();
        let b = ps.get("^a$").unwrap();
        assert!(Arc::ptr_eq(&a.0, &b.0));
    }

    proptest::proptest! {
        #[test]
        fn same_verdict_as_regex_and_never_left_out_by_the_index(
            pat in "[ab^$.*+?|()\\\\]{0,8}",
            hay in "[ab ]{0,10}",
        ) {
            let Ok(re) = regex::Regex::new(&pat) else { return Ok(()); };
            let p = Pattern::new(&pat).unwrap();
            proptest::prop_assert_eq!(p.is_match(&hay), re.is_match(&hay), "{} on {:?}", pat, hay);
            let mut index = Index::new([&p]);
            let mut out = Vec::new();
            index.candidates(&hay, &mut out);
            if re.is_match(&hay) {
                proptest::prop_assert!(out.contains(&0), "{} on {:?} left out", pat, hay);
            }
        }
    }
}
