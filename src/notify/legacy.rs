//! The `processsaver` profile of a syslog sink: for the events CLUSTERPRO
//! MC ProcessSaver also reports, the line ProcessSaver writes, so that the
//! manager filters written for it keep matching during a migration. Only
//! the formats published in the ProcessSaver 2.2 for Linux message list
//! are used; every other event keeps procward's own line.
//!
//! `NAME` is the target's name (ProcessSaver's pfile names the process the
//! same way the operator named it), `PID` in the tag is procward's.

use crate::model::event::Event;

/// The legacy lines there are, by what ProcessSaver meant by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// `('NAME' ,pid=N) Up`: monitoring started for a process.
    Up,
    /// `Process ['NAME',pid=N] Down`: a monitored process disappeared.
    Down,
    /// `Try to restart ('NAME')`: restart started.
    TryRestart,
    /// `Set pid fail ('NAME')`: the restarted process was not found.
    SetPidFail,
    /// `Command execute. [ACTION] pfile='NAME'`: an administrative command.
    Admin(&'static str),
}

/// Every procward message with a legacy equivalent; any other has none.
/// (docs/migration-processsaver.md shows this table; a test keeps them equal.)
const MAP: &[(&str, Line)] = &[
    ("PW1003", Line::Admin("reload")),
    ("PW1010", Line::Admin("start")),
    ("PW1011", Line::Admin("stop")),
    ("PW2001", Line::Up),
    ("PW2003", Line::Down),
    ("PW2004", Line::Down),
    ("PW2010", Line::TryRestart),
    ("PW2014", Line::SetPidFail),
    ("PW2015", Line::Up),
    ("PW2017", Line::Up),
    ("PW2024", Line::Up),
];

/// The legacy line of message `id`, if it has one.
pub fn line_of(id: &str) -> Option<Line> {
    MAP.iter().find(|(i, _)| *i == id).map(|(_, l)| *l)
}

/// The legacy message text of `ev`, and whether it is an administrative
/// line (the padmin tag) rather than a monitoring one (pcheck). `None`:
/// no equivalent, or a field it needs is missing.
pub fn text(ev: &Event) -> Option<(bool, String)> {
    let line = line_of(&ev.id)?;
    let name = || ev.target.as_deref();
    Some(match line {
        Line::Up => (false, format!("('{}' ,pid={}) Up", name()?, ev.pid?)),
        Line::Down => (
            false,
            format!("Process ['{}',pid={}] Down", name()?, ev.pid?),
        ),
        Line::TryRestart => (false, format!("Try to restart ('{}')", name()?)),
        Line::SetPidFail => (false, format!("Set pid fail ('{}')", name()?)),
        Line::Admin(action) => {
            let pfile = match action {
                "reload" => ev.fields.get("config")?.as_str()?,
                _ => name()?,
            };
            (true, format!("Command execute. [{action}] pfile='{pfile}'"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, target: Option<&str>, pid: Option<u32>) -> Event {
        Event {
            seq: 1,
            time: String::new(),
            time_ms: 0,
            id: id.into(),
            name: String::new(),
            severity: crate::model::event::Severity::Info,
            host: "h".into(),
            target: target.map(str::to_string),
            pid,
            fields: [("config".to_string(), "/etc/procward/procward.toml".into())]
                .into_iter()
                .collect(),
            text: String::new(),
            lang: "en".into(),
        }
    }

    /// Each mapping, character for character as the ProcessSaver 2.2 for
    /// Linux message list prints it.
    #[test]
    fn every_legacy_line_is_processsavers_format_exactly() {
        let cases = [
            ("PW2001", "('web' ,pid=4242) Up", false),
            ("PW2015", "('web' ,pid=4242) Up", false),
            ("PW2017", "('web' ,pid=4242) Up", false),
            ("PW2024", "('web' ,pid=4242) Up", false),
            ("PW2003", "Process ['web',pid=4242] Down", false),
            ("PW2004", "Process ['web',pid=4242] Down", false),
            ("PW2010", "Try to restart ('web')", false),
            ("PW2014", "Set pid fail ('web')", false),
            ("PW1011", "Command execute. [stop] pfile='web'", true),
            ("PW1010", "Command execute. [start] pfile='web'", true),
            (
                "PW1003",
                "Command execute. [reload] pfile='/etc/procward/procward.toml'",
                true,
            ),
        ];
        assert_eq!(cases.len(), MAP.len());
        for (id, want, admin) in cases {
            let got = text(&ev(id, Some("web"), Some(4242))).unwrap();
            assert_eq!(got, (admin, want.to_string()), "{id}");
        }
        assert_eq!(text(&ev("PW2012", Some("web"), Some(1))), None);
        assert_eq!(text(&ev("PW2003", Some("web"), None)), None, "no pid: none");
    }
}
