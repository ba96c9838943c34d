//! `[[target]]`: matching, counts, restart, retry window, failover.

use super::*;

/// Where the problems of one `[[target]]` go: every error and warning is
/// located under `target[i]`.
struct AtTarget<'a> {
    pub(super) c: &'a mut Collector,
    pub(super) src: &'a Source,
    pub(super) i: usize,
}

impl AtTarget<'_> {
    pub(super) fn path(&self, keys: &[&str]) -> Vec<Seg> {
        let mut v = vec![k("target"), Seg::Index(self.i)];
        v.extend(keys.iter().map(|s| k(s)));
        v
    }

    fn err(&mut self, keys: &[&str], msg: impl Into<String>) {
        let p = self.path(keys);
        self.c.at(self.src, &p, msg);
    }

    pub(super) fn warn(&mut self, keys: &[&str], msg: impl Into<String>) {
        let p = self.path(keys);
        self.c.warn(self.src, &p, msg);
    }

    /// A duration that must not be zero.
    pub(super) fn nonzero(&mut self, keys: &[&str], d: Dur) {
        if d.is_zero() {
            self.err(keys, "must be greater than zero");
        }
    }
}

pub(super) fn validate_target(
    c: &mut Collector,
    src: &Source,
    i: usize,
    t: &TargetRaw,
) -> Option<TargetSpec> {
    let n0 = c.errors.len();
    let mut at = AtTarget { c, src, i };
    let valid_name = !t.name.is_empty()
        && t.name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
    if !valid_name {
        at.err(&["name"], "use letters, digits, `-`, `_` and `.` only");
    }
    let matcher = validate_matcher(&mut at, &t.matcher);
    let count = validate_count(&mut at, t);
    let restart = validate_restart(&mut at, &t.restart);
    let retry = validate_retry(&mut at, &t.retry);
    let failover = validate_failover(&mut at, t);
    let base = at.path(&["stall"]);
    let stall = t
        .stall
        .as_ref()
        .and_then(|st| validate_stall(at.c, src, &base, st))
        .map(Box::new);
    let base = at.path(&["check"]);
    let checks = checks::validate_checks(at.c, src, &base, &t.check);
    let mut success_exit = Vec::new();
    for &code in &t.success_exit {
        match i32::try_from(code) {
            Ok(c) if (0..=255).contains(&c) => success_exit.push(c),
            _ => at.err(
                &["success-exit"],
                format!("{code} is not an exit status (0 to 255)"),
            ),
        }
    }
    if c.errors.len() != n0 {
        return None;
    }
    Some(TargetSpec {
        name: t.name.clone(),
        matcher: matcher?,
        count,
        children_min: t.children.as_ref().map(|c| c.min),
        restart: restart?,
        retry,
        on_retry_over: t.on_retry_over,
        failover,
        stall,
        health: (!checks.is_empty() || !t.depends_on.is_empty()).then(|| {
            Box::new(Health {
                checks,
                depends_on: t.depends_on.clone(),
            })
        }),
        success_exit,
        match_raw: t.matcher.clone(),
    })
}

fn validate_matcher(at: &mut AtTarget, m: &MatchRaw) -> Option<Matcher> {
    if m.exe.is_none() && m.comm.is_none() && m.cmdline.is_none() && m.pidfile.is_none() {
        at.err(
            &["match"],
            "give at least one of match.exe, match.comm, match.cmdline, match.pidfile (match.user only narrows)",
        );
    }
    if m.exe.as_ref().is_some_and(|e| !e.is_absolute()) {
        at.err(&["match", "exe"], "must be an absolute path");
    }
    if let Some(pidfile) = &m.pidfile {
        let narrowed =
            m.exe.is_some() || m.comm.is_some() || m.cmdline.is_some() || m.user.is_some();
        if !pidfile.is_absolute() {
            at.err(&["match", "pidfile"], "must be an absolute path");
        } else if let Some(problem) = pidfile_problem(pidfile).filter(|_| !narrowed) {
            at.warn(
                &["match", "pidfile"],
                format!(
                    "can be written by others than root ({problem}): whoever can write it chooses the process procward adopts and `procward stop` signals; add match.exe, match.comm, match.cmdline or match.user"
                ),
            );
        }
    }
    if m.comm
        .as_ref()
        .is_some_and(|c| c.is_empty() || c.len() > 15)
    {
        at.err(
            &["match", "comm"],
            "the kernel keeps at most 15 bytes of a command name; use match.cmdline for longer names",
        );
    }
    let cmdline = match m.cmdline.as_deref().map(|p| at.c.patterns.get(p)) {
        Some(Err(e)) => {
            let first = e.lines().last().unwrap_or("").trim();
            at.err(&["match", "cmdline"], format!("bad regex: {first}"));
            None
        }
        Some(Ok(r)) => Some(Some(r)),
        None => Some(None),
    };
    let uid = match m.user.as_deref().map(lookup_user) {
        Some(Err(e)) => {
            at.err(&["match", "user"], e);
            None
        }
        Some(Ok(u)) => Some(Some(u.uid)),
        None => Some(None),
    };
    Some(Matcher {
        exe: m.exe.clone(),
        comm: m.comm.clone(),
        cmdline: cmdline?,
        pidfile: m.pidfile.clone(),
        uid: uid?,
    })
}

fn validate_count(at: &mut AtTarget, t: &TargetRaw) -> Option<(u32, Option<u32>)> {
    if t.children.as_ref().is_some_and(|ch| ch.min == 0) {
        at.err(
            &["children", "min"],
            "must be at least 1 (or leave `children` out)",
        );
    }
    let cnt = t.count.as_ref()?;
    let min = cnt.min.unwrap_or(1);
    if let Some(max) = cnt.max {
        if max == 0 {
            at.err(&["count", "max"], "must be at least 1");
        }
        if max < min {
            at.err(&["count", "max"], format!("is below count.min ({min})"));
        }
    }
    Some((min, cnt.max))
}

fn validate_restart(at: &mut AtTarget, r: &RestartRaw) -> Option<Restart> {
    let (script, args) = match &r.script {
        None => (None, Vec::new()),
        Some(ScriptRaw::Path(p)) => (Some(p.clone()), Vec::new()),
        Some(ScriptRaw::Argv(argv)) => match argv.split_first() {
            Some((first, rest)) if !first.is_empty() => (Some(PathBuf::from(first)), rest.to_vec()),
            _ => {
                at.err(&["restart", "script"], "must name a program");
                (None, Vec::new())
            }
        },
    };
    if let Some(Err(mut msg)) = script.as_deref().map(|p| at.c.executable(p)) {
        let spaced =
            matches!(&r.script, Some(ScriptRaw::Path(p)) if p.to_string_lossy().contains(' '));
        if spaced && script.as_deref().is_some_and(|p| !p.exists()) {
            msg.push_str(
                "; to pass arguments, write restart.script as a list: [\"/path/to/script\", \"arg\"]",
            );
        }
        at.err(&["restart", "script"], msg);
    }
    at.nonzero(&["restart", "timeout"], r.timeout);
    at.nonzero(&["restart", "settle"], r.settle);
    let user = match r.user.as_deref().map(lookup_user) {
        Some(Err(e)) => {
            at.err(&["restart", "user"], e);
            return None;
        }
        Some(Ok(u)) => Some(u),
        None => None,
    };
    Some(Restart {
        script,
        args,
        timeout: r.timeout.0,
        settle: r.settle.0,
        user,
    })
}

fn validate_retry(at: &mut AtTarget, r: &RetryRaw) -> Retry {
    if r.max > 1000 {
        at.err(&["retry", "max"], "must be at most 1000");
    }
    at.nonzero(&["retry", "window"], r.window);
    if r.backoff.max.0 < r.backoff.initial.0 {
        at.err(
            &["retry", "backoff", "max"],
            "is below retry.backoff.initial",
        );
    }
    Retry {
        max: r.max,
        window: r.window.0,
        backoff_initial: r.backoff.initial.0,
        backoff_max: r.backoff.max.0,
    }
}

fn validate_failover(at: &mut AtTarget, t: &TargetRaw) -> Option<Failover> {
    let needs = matches!(t.on_retry_over, OnRetryOver::Failover | OnRetryOver::Exec);
    let Some(f) = &t.failover else {
        if needs {
            let what = t.on_retry_over.as_str();
            at.err(
                &["on-retry-over"],
                format!("\"{what}\" needs failover.command"),
            );
        }
        return None;
    };
    let key = ["failover", "command"];
    match f.command.first().map(Path::new) {
        None => at.err(&key, "must name a program"),
        Some(p) if p.as_os_str().is_empty() => at.err(&key, "must name a program"),
        Some(p) if !p.is_absolute() => at.err(&key, "the program must be an absolute path"),
        Some(p) => {
            if let Err(msg) = at.c.executable(p) {
                at.err(&key, msg);
            }
        }
    }
    at.nonzero(&["failover", "timeout"], f.timeout);
    Some(Failover {
        command: f.command.clone(),
        timeout: f.timeout.0,
    })
}
