//! `[[target.check]]`: health checks, any number per target. A check is a
//! probe (the kinds of `stall.probe`) or a resource limit on the target's
//! main process or its tree, judged `for` a count of checks in a row or a
//! duration, and acted on: notify, restart, stop, or run a command.

use super::*;

/// `for = 3` (checks in a row) or `for = "1m"` (failing that long).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ForRaw {
    Count(i64),
    Text(String),
}

/// `above` / `below`: a number, or a size / duration with its unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum LimitRaw {
    Num(f64),
    Text(String),
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CheckActionRaw {
    #[default]
    Notify,
    Restart,
    Stop,
    Exec,
}

/// Whose figures a resource check adds up.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// The main process only.
    #[default]
    Process,
    /// The main process and all its descendants.
    Tree,
}

fn d_interval() -> Dur {
    Dur::secs(10)
}
fn d_stop_timeout() -> Dur {
    Dur::secs(10)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CheckRaw {
    pub name: String,
    pub kind: String,
    #[serde(default = "d_interval")]
    pub interval: Dur,
    #[serde(rename = "for")]
    pub hold: Option<ForRaw>,
    #[serde(default)]
    pub action: CheckActionRaw,
    /// The command of `action = "exec"`.
    pub exec: Option<Vec<String>>,
    #[serde(default = "d_stop_timeout")]
    pub stop_timeout: Dur,
    #[serde(default)]
    pub signal_group: bool,
    // Probe kinds (as in `stall.probe`).
    pub command: Option<Vec<String>>,
    pub timeout: Option<Dur>,
    pub address: Option<String>,
    pub url: Option<String>,
    pub expect_status: Option<String>,
    pub expect_body: Option<String>,
    pub path: Option<PathBuf>,
    pub max_age: Option<Dur>,
    pub max_duration: Option<Dur>,
    // Resource kinds.
    pub scope: Option<Scope>,
    pub above: Option<LimitRaw>,
    pub below: Option<LimitRaw>,
}

/// What a resource check measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// % of one core, averaged over the interval.
    Cpu,
    /// Resident memory (RSS), bytes.
    Memory,
    Threads,
    /// Open file descriptors.
    Fds,
    /// Child processes (with `tree`: all descendants).
    Children,
    /// Seconds since the main process started.
    Uptime,
}

impl Resource {
    pub const ALL: [Resource; 6] = [
        Resource::Cpu,
        Resource::Memory,
        Resource::Threads,
        Resource::Fds,
        Resource::Children,
        Resource::Uptime,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::Threads => "threads",
            Resource::Fds => "fds",
            Resource::Children => "children",
            Resource::Uptime => "uptime",
        }
    }

    /// A value of this resource as events and `status` show it.
    pub fn show(self, v: f64) -> String {
        match self {
            Resource::Cpu => format!("{v:.1}%"),
            Resource::Memory => show_bytes(v),
            Resource::Uptime => {
                humantime::format_duration(Duration::from_secs(v.max(0.0) as u64)).to_string()
            }
            _ => format!("{}", v as u64),
        }
    }
}

/// Bytes in the largest binary unit that keeps a number ≥ 1.
fn show_bytes(v: f64) -> String {
    let units = [("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (u, shift) in units {
        let d = (1u64 << shift) as f64;
        if v >= d {
            return format!("{:.1}{u}", v / d);
        }
    }
    format!("{}B", v as u64)
}

/// What a check tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Probe(Probe),
    Resource {
        what: Resource,
        scope: Scope,
        above: Option<f64>,
        below: Option<f64>,
    },
}

/// How long a check must fail before it counts as failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// This many failing checks in a row.
    Count(u32),
    /// Failing for at least this long.
    For(Duration),
}

impl Hold {
    /// As events show it: "3" checks in a row, or a duration.
    pub fn show(self) -> String {
        match self {
            Hold::Count(1) => "1 check".into(),
            Hold::Count(n) => format!("{n} checks in a row"),
            Hold::For(d) => humantime::format_duration(d).to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckAction {
    Notify,
    Restart,
    Stop,
    /// Run this command (as the target's restart.user).
    Exec(Vec<String>),
}

impl CheckAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckAction::Notify => "notify",
            CheckAction::Restart => "restart",
            CheckAction::Stop => "stop",
            CheckAction::Exec(_) => "exec",
        }
    }
}

/// A validated `[[target.check]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub test: Test,
    pub interval: Duration,
    pub hold: Hold,
    pub action: CheckAction,
    pub stop_timeout: Duration,
    pub signal_group: bool,
}

impl Check {
    pub fn kind(&self) -> &'static str {
        match &self.test {
            Test::Probe(p) => p.kind(),
            Test::Resource { what, .. } => what.as_str(),
        }
    }

    /// The limit as events show it ("above 2.0GiB", "below 1").
    pub fn limit(&self) -> String {
        match &self.test {
            Test::Probe(_) => "passes".into(),
            Test::Resource {
                what, above, below, ..
            } => {
                let parts: Vec<String> = [("above", above), ("below", below)]
                    .iter()
                    .filter_map(|(w, v)| v.map(|v| format!("{w} {}", what.show(v))))
                    .collect();
                parts.join(", ")
            }
        }
    }

    /// Does `v` break the limit?
    pub fn breaks(&self, v: f64) -> bool {
        match &self.test {
            Test::Probe(_) => false,
            Test::Resource { above, below, .. } => {
                above.is_some_and(|a| v > a) || below.is_some_and(|b| v < b)
            }
        }
    }
}

/// The most `[[target.check]]` one target may have.
const MAX_CHECKS: usize = 64;

/// Which keys of a check belong to which kinds.
const PROBE_KEYS: [(&str, &[&str]); 5] = [
    ("exec", &["command", "timeout"]),
    ("tcp", &["address", "timeout"]),
    ("http", &["url", "timeout", "expect-status", "expect-body"]),
    ("heartbeat", &["path", "max-age"]),
    ("state", &["max-duration"]),
];
const RESOURCE_KEYS: [&str; 3] = ["scope", "above", "below"];

/// The kind-specific keys given in `r`.
fn given_keys(r: &CheckRaw) -> Vec<&'static str> {
    [
        ("command", r.command.is_some()),
        ("timeout", r.timeout.is_some()),
        ("address", r.address.is_some()),
        ("url", r.url.is_some()),
        ("expect-status", r.expect_status.is_some()),
        ("expect-body", r.expect_body.is_some()),
        ("path", r.path.is_some()),
        ("max-age", r.max_age.is_some()),
        ("max-duration", r.max_duration.is_some()),
        ("scope", r.scope.is_some()),
        ("above", r.above.is_some()),
        ("below", r.below.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, on)| on.then_some(k))
    .collect()
}

pub(super) fn validate_checks(
    c: &mut Collector,
    src: &Source,
    base: &[Seg],
    checks: &[CheckRaw],
) -> Vec<Check> {
    let mut out = Vec::new();
    let mut names = std::collections::HashSet::new();
    if checks.len() > MAX_CHECKS {
        let mut p = base.to_vec();
        p.push(Seg::Index(MAX_CHECKS));
        c.at(src, &p, format!("a target has at most {MAX_CHECKS} checks"));
    }
    for (j, r) in checks.iter().enumerate().take(MAX_CHECKS + 1) {
        let mut p = base.to_vec();
        p.push(Seg::Index(j));
        let at = |c: &mut Collector, keys: &[&str], msg: String| {
            let mut q = p.clone();
            q.extend(keys.iter().map(|s| k(s)));
            c.at(src, &q, msg)
        };
        if !names.insert(r.name.as_str()) {
            at(c, &["name"], format!("a second check named `{}`", r.name));
        }
        if let Some(ch) = validate_check(c, &at, r) {
            out.push(ch);
        }
    }
    out
}

fn validate_check(
    c: &mut Collector,
    at: &dyn Fn(&mut Collector, &[&str], String),
    r: &CheckRaw,
) -> Option<Check> {
    let n0 = c.errors.len();
    let valid_name = !r.name.is_empty()
        && r.name.len() <= 64
        && r.name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
    if !valid_name {
        at(
            c,
            &["name"],
            "use letters, digits, `-`, `_` and `.` only (at most 64)".into(),
        );
    }
    if r.interval.is_zero() {
        at(c, &["interval"], "must be greater than zero".into());
    }
    if r.stop_timeout.is_zero() {
        at(c, &["stop-timeout"], "must be greater than zero".into());
    }
    let hold = validate_hold(c, at, r.hold.as_ref());
    let action = validate_action(c, at, r);
    let test = validate_test(c, at, r);
    (c.errors.len() == n0).then_some(Check {
        name: r.name.clone(),
        test: test?,
        interval: r.interval.0,
        hold,
        action,
        stop_timeout: r.stop_timeout.0,
        signal_group: r.signal_group,
    })
}

fn validate_hold(
    c: &mut Collector,
    at: &dyn Fn(&mut Collector, &[&str], String),
    hold: Option<&ForRaw>,
) -> Hold {
    match hold {
        None => Hold::Count(1),
        Some(ForRaw::Count(n)) => match u32::try_from(*n) {
            Ok(n) if (1..=1000).contains(&n) => Hold::Count(n),
            _ => {
                at(
                    c,
                    &["for"],
                    "a count of checks in a row must be 1 to 1000".into(),
                );
                Hold::Count(1)
            }
        },
        Some(ForRaw::Text(s)) => match duration::parse(s) {
            Ok(d) if !d.is_zero() => Hold::For(d),
            Ok(_) => {
                at(c, &["for"], "must be greater than zero".into());
                Hold::Count(1)
            }
            Err(e) => {
                at(c, &["for"], format!("{e}, or a count of checks like 3"));
                Hold::Count(1)
            }
        },
    }
}

fn validate_action(
    c: &mut Collector,
    at: &dyn Fn(&mut Collector, &[&str], String),
    r: &CheckRaw,
) -> CheckAction {
    match (r.action, &r.exec) {
        (CheckActionRaw::Exec, None) => {
            at(
                c,
                &["action"],
                "\"exec\" needs `exec`, the command as a list: [\"/path/to/program\", \"arg\"]"
                    .into(),
            );
            CheckAction::Notify
        }
        (CheckActionRaw::Exec, Some(argv)) => {
            match argv.first().map(Path::new) {
                Some(p) if p.is_absolute() => {
                    if let Err(msg) = c.executable(p) {
                        at(c, &["exec"], msg);
                    }
                }
                _ => at(
                    c,
                    &["exec"],
                    "must start with an absolute path to a program".into(),
                ),
            }
            CheckAction::Exec(argv.clone())
        }
        (other, Some(_)) => {
            let what = match other {
                CheckActionRaw::Restart => "restart",
                CheckActionRaw::Stop => "stop",
                _ => "notify",
            };
            at(
                c,
                &["exec"],
                format!("is only for action = \"exec\" (this check's action is \"{what}\")"),
            );
            CheckAction::Notify
        }
        (CheckActionRaw::Notify, None) => CheckAction::Notify,
        (CheckActionRaw::Restart, None) => CheckAction::Restart,
        (CheckActionRaw::Stop, None) => CheckAction::Stop,
    }
}

fn validate_test(
    c: &mut Collector,
    at: &dyn Fn(&mut Collector, &[&str], String),
    r: &CheckRaw,
) -> Option<Test> {
    let given = given_keys(r);
    let resource = Resource::ALL.into_iter().find(|x| x.as_str() == r.kind);
    let allowed: &[&str] = match (resource, PROBE_KEYS.iter().find(|(k, _)| *k == r.kind)) {
        (Some(_), _) => &RESOURCE_KEYS,
        (None, Some((_, keys))) => keys,
        (None, None) => {
            at(
                c,
                &["kind"],
                format!(
                    "`{}` is not a kind of check: use exec, tcp, http, heartbeat, state, cpu, memory, threads, fds, children or uptime",
                    r.kind
                ),
            );
            return None;
        }
    };
    for key in given.iter().filter(|k| !allowed.contains(k)) {
        at(
            c,
            &[key],
            format!("does not apply to a check of kind \"{}\"", r.kind),
        );
    }
    match resource {
        Some(what) => validate_resource(c, at, r, what),
        None => {
            let raw = probe_raw(c, at, r)?;
            let probe = validate_probe(c, &|c, keys, msg| at(c, keys, msg), &raw);
            Some(Test::Probe(probe))
        }
    }
}

/// The flat keys of a probe check as a `stall.probe` table.
fn probe_raw(
    c: &mut Collector,
    at: &dyn Fn(&mut Collector, &[&str], String),
    r: &CheckRaw,
) -> Option<ProbeRaw> {
    let timeout = r.timeout.unwrap_or(Dur::secs(5));
    let mut need = |key: &str, present: bool| {
        if !present {
            at(c, &["kind"], format!("kind \"{}\" needs `{key}`", r.kind));
        }
        present
    };
    Some(match r.kind.as_str() {
        "exec" => ProbeRaw::Exec {
            command: need("command", r.command.is_some()).then(|| r.command.clone())??,
            timeout,
        },
        "tcp" => ProbeRaw::Tcp {
            address: need("address", r.address.is_some()).then(|| r.address.clone())??,
            timeout,
        },
        "http" => ProbeRaw::Http {
            url: need("url", r.url.is_some()).then(|| r.url.clone())??,
            timeout,
            expect_status: r.expect_status.clone().unwrap_or_else(|| "200-399".into()),
            expect_body: r.expect_body.clone(),
        },
        "heartbeat" => ProbeRaw::Heartbeat {
            path: need("path", r.path.is_some()).then(|| r.path.clone())??,
            max_age: need("max-age", r.max_age.is_some()).then_some(r.max_age?)?,
        },
        _ => ProbeRaw::State {
            max_duration: need("max-duration", r.max_duration.is_some())
                .then_some(r.max_duration?)?,
        },
    })
}

fn validate_resource(
    c: &mut Collector,
    at: &dyn Fn(&mut Collector, &[&str], String),
    r: &CheckRaw,
    what: Resource,
) -> Option<Test> {
    if r.above.is_none() && r.below.is_none() {
        at(
            c,
            &["kind"],
            format!("a `{}` check needs `above` or `below`", what.as_str()),
        );
        return None;
    }
    let mut limit = |key: &str, v: &Option<LimitRaw>| -> Option<f64> {
        let v = v.as_ref()?;
        match parse_limit(what, v) {
            Ok(x) => Some(x),
            Err(e) => {
                at(c, &[key], e);
                None
            }
        }
    };
    let above = limit("above", &r.above);
    let below = limit("below", &r.below);
    if let (Some(a), Some(b)) = (above, below) {
        if b > a {
            at(c, &["below"], "is above `above`: nothing could pass".into());
        }
    }
    Some(Test::Resource {
        what,
        scope: r.scope.unwrap_or_default(),
        above,
        below,
    })
}

/// A limit in the resource's unit: bytes, % of a core, a count, seconds.
fn parse_limit(what: Resource, v: &LimitRaw) -> Result<f64, String> {
    let x = match (what, v) {
        (Resource::Memory, LimitRaw::Text(s)) => parse_size(s)? as f64,
        (Resource::Memory, LimitRaw::Num(n)) => *n,
        (Resource::Uptime, LimitRaw::Text(s)) => duration::parse(s)?.as_secs_f64(),
        (Resource::Uptime, LimitRaw::Num(n)) => *n,
        (Resource::Cpu, LimitRaw::Num(n)) => *n,
        (Resource::Cpu, LimitRaw::Text(s)) => s
            .trim()
            .trim_end_matches('%')
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a percentage of one core, like 80"))?,
        (_, LimitRaw::Num(n)) if n.fract() == 0.0 => *n,
        (_, other) => {
            let shown = match other {
                LimitRaw::Num(n) => n.to_string(),
                LimitRaw::Text(s) => format!("\"{s}\""),
            };
            return Err(format!("{shown} is not a whole number"));
        }
    };
    if !x.is_finite() || x < 0.0 {
        return Err("must be a number of zero or more".into());
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_shown_in_their_units() {
        assert_eq!(Resource::Memory.show(2.0 * (1u64 << 30) as f64), "2.0GiB");
        assert_eq!(Resource::Memory.show(512.0 * 1024.0 * 1024.0), "512.0MiB");
        assert_eq!(Resource::Memory.show(100.0), "100B");
        assert_eq!(Resource::Cpu.show(93.44), "93.4%");
        assert_eq!(Resource::Uptime.show(90.0), "1m 30s");
        assert_eq!(Resource::Fds.show(12.0), "12");
        assert_eq!(Hold::Count(3).show(), "3 checks in a row");
        assert_eq!(Hold::Count(1).show(), "1 check");
        assert_eq!(Hold::For(Duration::from_secs(60)).show(), "1m");
    }

    #[test]
    fn limits_take_their_units() {
        let t = |s: &str| LimitRaw::Text(s.into());
        assert_eq!(
            parse_limit(Resource::Memory, &t("2GiB")),
            Ok(2.0 * (1u64 << 30) as f64)
        );
        assert_eq!(parse_limit(Resource::Cpu, &LimitRaw::Num(80.0)), Ok(80.0));
        assert_eq!(parse_limit(Resource::Cpu, &t("80%")), Ok(80.0));
        assert_eq!(parse_limit(Resource::Uptime, &t("1h")), Ok(3600.0));
        assert!(parse_limit(Resource::Threads, &LimitRaw::Num(1.5)).is_err());
        assert!(parse_limit(Resource::Fds, &t("many")).is_err());
        assert!(parse_limit(Resource::Memory, &t("2 parsecs")).is_err());
        assert!(parse_limit(Resource::Cpu, &LimitRaw::Num(-1.0)).is_err());
    }
}
