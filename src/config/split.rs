//! Split a configuration file at its `[[target]]` tables, so that a file
//! with thousands of targets is parsed one target at a time.
//!
//! Why: a TOML parser builds the whole document (toml_edit keeps every key,
//! value and its formatting), and a 10,000-target file (2 MB) made a
//! 70 MB heap peak before the first target was validated — more than all
//! of procward's steady-state memory. Parsing each `[[target]]` block on
//! its own keeps the peak at one block. The blocks are found with
//! `toml_parser`'s lexer (the tokenizer of the `toml` crate family), so
//! strings, multi-line strings, comments and multi-line arrays never look
//! like headers.
//!
//! Anything unusual (a quoted or escaped header key, a `target` key or
//! `[target.*]` table outside the blocks) returns `None`: the caller then
//! parses the whole file as one document, which gives TOML's own verdict.

use std::ops::Range;
use toml_parser::lexer::TokenKind;

/// The file without its `[[target]]` blocks (each replaced by its newlines,
/// so line numbers stay those of the file) and the blocks' byte ranges.
pub(super) struct Split {
    pub rest: String,
    pub targets: Vec<Range<usize>>,
}

struct Header {
    start: usize,
    array: bool,
    /// The first key of the header is `target`.
    target: bool,
    /// The header has more than one key (`[target.match]`).
    dotted: bool,
}

/// Split `text`, or `None` when there is no `[[target]]` block or the file
/// must be parsed whole.
pub(super) fn split(text: &str) -> Option<Split> {
    let headers = headers(text)?;
    let mut targets: Vec<Range<usize>> = Vec::new();
    let mut open: Option<usize> = None;
    for h in &headers {
        let own = h.target && h.array && !h.dotted;
        let inside = h.target && h.dotted;
        if own {
            if let Some(s) = open.take() {
                targets.push(s..h.start);
            }
            open = Some(h.start);
        } else if inside && open.is_some() {
            // `[target.match]` after `[[target]]`: the same block.
        } else {
            if let Some(s) = open.take() {
                targets.push(s..h.start);
            }
            if h.target {
                // `[target]`, `[target.x]` away from its `[[target]]`...:
                // let the whole-file parse decide.
                return None;
            }
        }
    }
    if let Some(s) = open.take() {
        targets.push(s..text.len());
    }
    if targets.is_empty() {
        return None;
    }
    let mut rest = String::with_capacity(text.len().min(1 << 16));
    let mut at = 0;
    for r in &targets {
        rest.push_str(&text[at..r.start]);
        rest.extend(std::iter::repeat_n(
            '\n',
            text[r.clone()].matches('\n').count(),
        ));
        at = r.end;
    }
    rest.push_str(&text[at..]);
    Some(Split { rest, targets })
}

/// The table headers at the top level of `text` (not inside a value).
fn headers(text: &str) -> Option<Vec<Header>> {
    let source = toml_parser::Source::new(text);
    let mut tokens = source.lex().peekable();
    let mut out = Vec::new();
    // At the start of a line, outside any value.
    let mut line_start = true;
    // Nesting of `[` and `{` inside a value.
    let mut depth: usize = 0;
    while let Some(tok) = tokens.next() {
        let kind = tok.kind();
        match kind {
            TokenKind::Eof => break,
            TokenKind::Whitespace | TokenKind::Comment => {}
            TokenKind::Newline => {
                if depth == 0 {
                    line_start = true;
                }
            }
            TokenKind::LeftSquareBracket if line_start && depth == 0 => {
                line_start = false;
                let start = tok.span().start();
                let array = tokens
                    .next_if(|t| t.kind() == TokenKind::LeftSquareBracket)
                    .is_some();
                let mut keys: Vec<&str> = Vec::new();
                loop {
                    let t = tokens.next()?;
                    let raw = &text[t.span().start()..t.span().end()];
                    match t.kind() {
                        TokenKind::Whitespace | TokenKind::Dot => {}
                        TokenKind::Atom => keys.push(raw),
                        TokenKind::BasicString | TokenKind::LiteralString => {
                            let inner = raw.get(1..raw.len().saturating_sub(1))?;
                            if inner.contains('\\') {
                                return None;
                            }
                            keys.push(inner);
                        }
                        TokenKind::RightSquareBracket => break,
                        _ => return None,
                    }
                }
                if array
                    && tokens
                        .next_if(|t| t.kind() == TokenKind::RightSquareBracket)
                        .is_none()
                {
                    return None;
                }
                // `a.b` may come as one atom: split it as TOML would.
                let mut parts = keys.iter().flat_map(|k| k.split('.'));
                let first = parts.next()?;
                out.push(Header {
                    start,
                    array,
                    target: first.trim() == "target",
                    dotted: parts.next().is_some(),
                });
            }
            TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => {
                line_start = false;
                depth += 1;
            }
            TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => {
                line_start = false;
                depth = depth.saturating_sub(1);
            }
            _ => line_start = false,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(text: &str) -> Option<Vec<&str>> {
        split(text).map(|s| s.targets.iter().map(|r| &text[r.clone()]).collect())
    }

    #[test]
    fn splits_at_each_target_with_its_subtables() {
        let text = "[daemon]\ninterval = \"1s\"\n\n[[target]]\nname = \"a\"\n[target.match]\ncomm = \"x\"\n\n[[sink.syslog]]\nname = \"s\"\n[[target]]\nname = \"b\"\n";
        let b = blocks(text).unwrap();
        assert_eq!(b.len(), 2);
        assert!(b[0].starts_with("[[target]]\nname = \"a\"") && b[0].ends_with("comm = \"x\"\n\n"));
        assert_eq!(b[1], "[[target]]\nname = \"b\"\n");
        let s = split(text).unwrap();
        assert_eq!(s.rest.lines().count(), text.lines().count());
        assert!(s.rest.contains("[daemon]") && s.rest.contains("[[sink.syslog]]"));
        assert!(!s.rest.contains("target"));
        // The rest keeps every line where it was.
        assert_eq!(s.rest.lines().nth(8), Some("[[sink.syslog]]"));
    }

    #[test]
    fn strings_arrays_and_comments_never_look_like_headers() {
        let text = "[[target]]\nname = \"a\"\nrestart.script = [\n  \"/bin/x\",\n  \"[[target]]\",\n]\nnote = '''\n[[target]]\n'''\n# [[target]]\nargs = [\n[1],\n]\n";
        let b = blocks(text).unwrap();
        assert_eq!(b, vec![text]);
    }

    #[test]
    fn whole_file_parse_when_the_layout_is_unusual() {
        // No target block.
        assert!(split("[daemon]\n").is_none());
        // `target` defined otherwise as well.
        assert!(split("target = []\n[[target]]\nname = \"a\"\n").is_some());
        assert!(split("[[target]]\nname = \"a\"\n[daemon]\n[target.match]\n").is_none());
        assert!(split("[target]\n").is_none());
        // An escaped key.
        assert!(split("[[\"tar\\u0067et\"]]\nname = \"a\"\n").is_none());
        // Quoted and spaced keys are the same table.
        assert_eq!(blocks("[[ \"target\" ]]\nname = \"a\"\n").unwrap().len(), 1);
    }
}
