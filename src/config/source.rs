//! Sources and includes: the files read, keys located at file:line:col,
//! the collector of errors and warnings, the sections of each file.

use super::*;

// ---------------------------------------------------------------------------
// Locating keys in the source text.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

pub(super) struct Source {
    pub(super) path: PathBuf,
    pub(super) text: String,
    /// The parsed values, taken by `parse_sections`.
    pub(super) table: std::cell::RefCell<Option<toml::Table>>,
    /// The `[[target]]` blocks, parsed one by one by `parse_sections`
    /// (empty when the file was parsed whole: see split.rs).
    pub(super) target_blocks: Vec<std::ops::Range<usize>>,
    /// The span-keeping document, parsed only when an error must be located
    /// (a valid configuration never pays for a second parse).
    pub(super) doc: std::cell::OnceCell<Option<toml_edit::ImDocument<String>>>,
}

/// 1-based line and column (in characters) of a byte offset in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

impl Source {
    pub(super) fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(&self.text, offset)
    }

    /// The span of the deepest element of `path` that exists.
    fn span_of(&self, path: &[Seg]) -> Option<std::ops::Range<usize>> {
        #[derive(Clone, Copy)]
        enum Node<'a> {
            Table(&'a toml_edit::Table),
            Item(&'a toml_edit::Item),
            Value(&'a toml_edit::Value),
        }
        fn table_key<'a>(
            t: &'a toml_edit::Table,
            k: &str,
            best: &mut Option<std::ops::Range<usize>>,
        ) -> Option<Node<'a>> {
            if let Some(span) = t.key(k).and_then(|k| k.span()) {
                *best = Some(span);
            }
            t.get(k).map(Node::Item)
        }
        fn inline_key<'a>(
            t: &'a toml_edit::InlineTable,
            k: &str,
            best: &mut Option<std::ops::Range<usize>>,
        ) -> Option<Node<'a>> {
            if let Some(span) = t.key(k).and_then(|k| k.span()) {
                *best = Some(span);
            }
            t.get(k).map(Node::Value)
        }
        let doc = self
            .doc
            .get_or_init(|| toml_edit::ImDocument::parse(self.text.clone()).ok())
            .as_ref()?;
        let mut node = Node::Table(doc.as_table());
        let mut best: Option<std::ops::Range<usize>> = None;
        for seg in path {
            let next = match (node, seg) {
                (Node::Table(t), Seg::Key(k))
                | (Node::Item(toml_edit::Item::Table(t)), Seg::Key(k)) => {
                    table_key(t, k, &mut best)
                }
                (
                    Node::Item(toml_edit::Item::Value(toml_edit::Value::InlineTable(t))),
                    Seg::Key(k),
                )
                | (Node::Value(toml_edit::Value::InlineTable(t)), Seg::Key(k)) => {
                    inline_key(t, k, &mut best)
                }
                (Node::Item(toml_edit::Item::ArrayOfTables(a)), Seg::Index(i)) => {
                    a.get(*i).map(|t| {
                        // The header `[[target]]` has no span of its own here:
                        // point at the table's first key instead.
                        let first = t.span().or_else(|| {
                            t.iter()
                                .next()
                                .and_then(|(name, _)| t.key(name).and_then(|k| k.span()))
                        });
                        if let Some(span) = first {
                            best = Some(span);
                        }
                        Node::Table(t)
                    })
                }
                (Node::Item(toml_edit::Item::Value(toml_edit::Value::Array(a))), Seg::Index(i))
                | (Node::Value(toml_edit::Value::Array(a)), Seg::Index(i)) => a.get(*i).map(|v| {
                    if let Some(span) = v.span() {
                        best = Some(span);
                    }
                    Node::Value(v)
                }),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        best
    }
}

#[derive(Default)]
pub(super) struct Collector {
    pub(super) errors: Vec<ConfigError>,
    pub(super) warnings: Vec<ConfigError>,
    pub(super) patterns: pattern::Patterns,
    /// Programs already checked in this load (10,000 targets often name
    /// one restart script: its path was walked 10,000 times).
    pub(super) executables: std::collections::HashMap<PathBuf, Result<(), String>>,
    /// The running configuration's targets, by name (a reload).
    pub(super) reuse: std::collections::HashMap<String, std::sync::Arc<TargetSpec>>,
}

impl Collector {
    /// `trust::executable`, once per path and load.
    pub(super) fn executable(&mut self, path: &Path) -> Result<(), String> {
        if let Some(r) = self.executables.get(path) {
            return r.clone();
        }
        let r = crate::sys::trust::executable(path);
        self.executables.insert(path.to_path_buf(), r.clone());
        r
    }
}

pub(super) fn located(src: &Source, path: &[Seg], message: impl Into<String>) -> ConfigError {
    let (line, col) = src
        .span_of(path)
        .map(|s| src.line_col(s.start))
        .unwrap_or((1, 1));
    ConfigError {
        file: src.path.clone(),
        line,
        col,
        key: path_string(path),
        message: message.into(),
    }
}

impl Collector {
    pub(super) fn at(&mut self, src: &Source, path: &[Seg], message: impl Into<String>) {
        self.errors.push(located(src, path, message));
    }

    pub(super) fn warn(&mut self, src: &Source, path: &[Seg], message: impl Into<String>) {
        self.warnings.push(located(src, path, message));
    }

    /// A TOML syntax error in `text` (of which the parsed part began at
    /// byte `base`).
    pub(super) fn syntax(&mut self, path: &Path, text: &str, base: usize, e: &toml::de::Error) {
        let (line, col) = line_col(text, base + e.span().map(|s| s.start).unwrap_or(0));
        self.errors.push(ConfigError {
            file: path.to_path_buf(),
            line,
            col,
            key: String::new(),
            message: format!("TOML syntax error: {}", e.message().trim()),
        });
    }

    pub(super) fn file(&mut self, path: &Path, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            key: String::new(),
            message: message.into(),
        });
    }

    /// Deserialize each table of an array of tables (`[[base]]`), recording
    /// errors; returns the good ones with their index.
    fn de_each<T: for<'de> Deserialize<'de>>(
        &mut self,
        src: &Source,
        base: &[Seg],
        value: toml::Value,
    ) -> Vec<(usize, T)> {
        let toml::Value::Array(items) = value else {
            let name = path_string(base);
            self.at(src, base, format!("expected [[{name}]] entries"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let mut at = base.to_vec();
            at.push(Seg::Index(i));
            if let Some(v) = self.de::<T>(src, &at, item) {
                out.push((i, v));
            }
        }
        out
    }

    /// Deserialize `value` (found at `base` in `src`) into T, recording an
    /// error located at the offending key.
    pub(super) fn de<T: for<'de> Deserialize<'de>>(
        &mut self,
        src: &Source,
        base: &[Seg],
        value: toml::Value,
    ) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut path = base.to_vec();
                for seg in e.path().iter() {
                    match seg {
                        serde_path_to_error::Segment::Seq { index } => {
                            path.push(Seg::Index(*index))
                        }
                        serde_path_to_error::Segment::Map { key } => {
                            path.push(Seg::Key(key.clone()))
                        }
                        serde_path_to_error::Segment::Enum { variant } => {
                            path.push(Seg::Key(variant.clone()))
                        }
                        serde_path_to_error::Segment::Unknown => {}
                    }
                }
                let full = e.inner().to_string();
                let msg = full.lines().next().unwrap_or_default().trim().to_string();
                if let Some(field) = msg
                    .strip_prefix("unknown field `")
                    .and_then(|r| r.split('`').next())
                {
                    if path.last() != Some(&Seg::Key(field.to_string())) {
                        path.push(Seg::Key(field.to_string()));
                    }
                }
                self.at(src, &path, msg);
                None
            }
        }
    }
}

pub(super) fn k(s: &str) -> Seg {
    Seg::Key(s.to_string())
}

/// Why a pidfile can be written by someone other than root (the file, its
/// directory or one above), if it can.
pub(super) fn pidfile_problem(pidfile: &Path) -> Option<String> {
    let dir = pidfile.parent().unwrap_or(Path::new("/"));
    if let Err(e) = crate::sys::trust::directory(dir) {
        return Some(e);
    }
    match std::fs::symlink_metadata(pidfile) {
        Ok(md) => crate::sys::trust::component_problem(pidfile, &md, true),
        Err(_) => None,
    }
}

/// A catalog or templates directory: the directory and every file procward
/// reads from it must be trusted.
pub(super) fn trusted_dir_files(dir: &Path, key: &str) -> Result<(), String> {
    crate::sys::trust::directory(dir)?;
    let wanted = |name: &Path| match key {
        "catalog-dir" => name.file_name().is_some_and(|n| n == "messages.toml"),
        _ => name.extension().is_some_and(|e| e == "hbs"),
    };
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if wanted(&path) {
            crate::sys::trust::config_file(&path)?;
        }
    }
    Ok(())
}

pub(super) fn read_source(c: &mut Collector, path: &Path) -> Option<Source> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            c.file(path, format!("cannot read: {e}"));
            return None;
        }
    };
    // Whoever can change the configuration can run code as root.
    if let Err(msg) = crate::sys::trust::config_file(path) {
        c.file(path, msg);
    }
    // Large files: the `[[target]]` blocks apart, parsed one at a time.
    let split = split::split(&text);
    let (parsed, target_blocks) = match split {
        Some(sp) => match toml::from_str::<toml::Table>(&sp.rest) {
            Ok(t) if !t.contains_key("target") => (Ok(t), sp.targets),
            // `target` written another way too: TOML decides on the whole.
            Ok(_) => (toml::from_str::<toml::Table>(&text), Vec::new()),
            Err(e) => (Err(e), Vec::new()),
        },
        None => (toml::from_str::<toml::Table>(&text), Vec::new()),
    };
    match parsed {
        Ok(table) => Some(Source {
            path: path.to_path_buf(),
            text,
            table: std::cell::RefCell::new(Some(table)),
            target_blocks,
            doc: std::cell::OnceCell::new(),
        }),
        Err(e) => {
            c.syntax(path, &text, 0, &e);
            None
        }
    }
}

pub(super) struct Parsed {
    pub(super) daemon: Option<DaemonRaw>,
    pub(super) sinks: Vec<(usize, usize, SyslogSinkRaw)>,
    pub(super) snmp: Vec<(usize, usize, SnmpSinkRaw)>,
    /// (file, index, name, the validated target): each validated as soon
    /// as it is read, so 10,000 raw targets never sit in memory together.
    pub(super) targets: Vec<(usize, usize, String, Option<std::sync::Arc<TargetSpec>>)>,
}

impl Parsed {
    pub(super) fn target(
        &mut self,
        c: &mut Collector,
        src: &Source,
        src_idx: usize,
        i: usize,
        t: TargetRaw,
    ) {
        let spec = validate_target(c, src, i, &t).map(|spec| {
            // On a reload, an unchanged target keeps the running one's spec:
            // the old and the new configuration are never both in memory.
            match c.reuse.get(spec.name.as_str()) {
                Some(old) if **old == spec => old.clone(),
                _ => std::sync::Arc::new(spec),
            }
        });
        self.targets.push((src_idx, i, t.name, spec));
    }
}

/// Parse the sections of one file. `main` allows `[daemon]`.
pub(super) fn parse_sections(
    c: &mut Collector,
    src: &Source,
    src_idx: usize,
    main: bool,
    out: &mut Parsed,
) {
    let Some(table) = src.table.borrow_mut().take() else {
        return;
    };
    for (key, value) in table {
        match key.as_str() {
            "daemon" if main => {
                out.daemon = c.de::<DaemonRaw>(src, &[k("daemon")], value);
            }
            "daemon" => c.at(
                src,
                &[k("daemon")],
                "[daemon] belongs in the main configuration file, not in an included one",
            ),
            "sink" => {
                let toml::Value::Table(sinks) = value else {
                    c.at(src, &[k("sink")], "expected a table, like [[sink.syslog]]");
                    continue;
                };
                for (kind, list) in sinks {
                    match kind.as_str() {
                        "syslog" => {
                            let base = [k("sink"), k("syslog")];
                            for (i, s) in c.de_each::<SyslogSinkRaw>(src, &base, list) {
                                out.sinks.push((src_idx, i, s));
                            }
                        }
                        "snmp" => {
                            let base = [k("sink"), k("snmp")];
                            for (i, s) in c.de_each::<SnmpSinkRaw>(src, &base, list) {
                                out.snmp.push((src_idx, i, s));
                            }
                        }
                        other => c.at(
                            src,
                            &[k("sink"), k(other)],
                            format!("unknown sink kind `{other}`, expected `syslog` or `snmp`"),
                        ),
                    }
                }
            }
            "target" => {
                for (i, t) in c.de_each::<TargetRaw>(src, &[k("target")], value) {
                    out.target(c, src, src_idx, i, t);
                }
            }
            other => c.at(
                src,
                &[k(other)],
                format!("unknown key `{other}`, expected one of `daemon`, `sink`, `target`"),
            ),
        }
    }
    // One block at a time: only one block's document is ever in memory.
    for (i, range) in src.target_blocks.iter().enumerate() {
        let table = match toml::from_str::<toml::Table>(&src.text[range.clone()]) {
            Ok(t) => t,
            Err(e) => {
                c.syntax(&src.path, &src.text, range.start, &e);
                continue;
            }
        };
        let item = table.into_iter().find_map(|(key, value)| match value {
            toml::Value::Array(mut a) if key == "target" && a.len() == 1 => a.pop(),
            _ => None,
        });
        match item {
            Some(value) => {
                if let Some(t) = c.de::<TargetRaw>(src, &[k("target"), Seg::Index(i)], value) {
                    out.target(c, src, src_idx, i, t);
                }
            }
            None => c.at(
                src,
                &[k("target"), Seg::Index(i)],
                "expected one [[target]] table",
            ),
        }
    }
}

/// The files `daemon.include` names: globs relative to the main file's
/// directory, each sorted, read and parsed after the main file.
pub(super) fn read_includes(
    c: &mut Collector,
    path: &Path,
    include: &[String],
    sources: &mut Vec<Source>,
    parsed: &mut Parsed,
) {
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    for (i, pattern) in include.iter().enumerate() {
        let full = if Path::new(pattern).is_absolute() {
            pattern.clone()
        } else {
            base_dir.join(pattern).to_string_lossy().into_owned()
        };
        let loc = [k("daemon"), k("include"), Seg::Index(i)];
        // The directory the pattern reads from: whoever can write it can
        // add a file that the next reload takes in.
        let fixed: PathBuf = Path::new(&full)
            .components()
            .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
            .collect();
        let base = if fixed.as_os_str() == full.as_str() {
            fixed.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            fixed
        };
        if base.is_dir() {
            if let (Err(msg), Some(main)) = (crate::sys::trust::directory(&base), sources.first()) {
                c.at(main, &loc, msg);
            }
        }
        match glob::glob(&full) {
            Ok(paths) => {
                let mut files: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
                files.sort();
                for f in files {
                    if let Some(src) = read_source(c, &f) {
                        let idx = sources.len();
                        sources.push(src);
                        parse_sections(c, &sources[idx], idx, false, parsed);
                    }
                }
            }
            Err(e) => {
                if let Some(main) = sources.first() {
                    c.at(main, &loc, format!("bad pattern: {e}"));
                }
            }
        }
    }
}
