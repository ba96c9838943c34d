//! Command-line definitions only (clap derive).

use crate::model::Lang;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// A duration argument: "500ms", "10s", "5m" (at most 366 days).
fn duration(s: &str) -> Result<Duration, String> {
    crate::config::duration::parse(s)
}

/// A point in time, as milliseconds since the epoch: RFC 3339 with any
/// offset (`2026-11-26T08:17:00+09:00`), a local time without offset
/// (`2026-11-26 08:17`, `2026-11-26T08:17:00`, in the local zone: `TZ` or
/// /etc/localtime), a local date (`2026-11-26`: its midnight), or a
/// duration ago (`10m`).
pub(crate) fn since(s: &str) -> Result<u64, String> {
    use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone};
    let s = s.trim();
    let ms = |t: i64| u64::try_from(t).map_err(|_| format!("`{s}` is before 1970"));
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return ms(t.timestamp_millis());
    }
    let local = |n: NaiveDateTime| {
        Local
            .from_local_datetime(&n)
            .earliest()
            .ok_or_else(|| format!("`{s}` does not exist in the local time zone"))
    };
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, f) {
            return ms(local(n)?.timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let midnight = d.and_hms_opt(0, 0, 0).expect("midnight");
        return ms(local(midnight)?.timestamp_millis());
    }
    let ago = crate::config::duration::parse(s).map_err(|_| {
        format!("`{s}` is not a time (RFC 3339, local `YYYY-MM-DD HH:MM[:SS]`, a date) or a duration like 10m")
    })?;
    Ok(crate::model::event::now_ms().saturating_sub(ago.as_millis() as u64))
}

#[derive(Parser, Debug)]
#[command(
    name = "procward",
    version,
    about = "Keeps business processes alive and tells the operations manager what happened"
)]
pub(crate) struct Cli {
    /// Configuration file [default: $PROCWARD_CONFIG or /etc/procward/procward.toml]
    #[arg(short = 'c', long = "config", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Cmd,
}

/// A manager that filter definitions are generated for (`all`: every one).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum Manager {
    Esmpro,
    Websam,
    Rsyslog,
    Snmptt,
    Mib,
    Prometheus,
    Zabbix,
    All,
}

impl Manager {
    /// The managers this stands for, by name.
    pub(crate) fn names(self) -> Vec<&'static str> {
        match self {
            Manager::Esmpro => vec!["esmpro"],
            Manager::Websam => vec!["websam"],
            Manager::Rsyslog => vec!["rsyslog"],
            Manager::Snmptt => vec!["snmptt"],
            Manager::Mib => vec!["mib"],
            Manager::Prometheus => vec!["prometheus"],
            Manager::Zabbix => vec!["zabbix"],
            Manager::All => crate::filters::MANAGERS.iter().map(|m| m.0).collect(),
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum RenderFormat {
    Rfc5424,
    Rfc3164,
    Json,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Cmd {
    /// Run the daemon in the foreground (systemd Type=notify)
    Run {
        /// Do not print events on stderr
        #[arg(long)]
        quiet: bool,
    },
    /// Validate configuration, catalog and templates; print every error
    Check,
    /// Show each target: state, pids, uptime, restarts in window, last event
    Status {
        /// Only this target
        target: Option<String>,
        /// Print JSON (state names as in the documentation)
        #[arg(long)]
        json: bool,
        /// Times in UTC instead of the local zone
        #[arg(long)]
        utc: bool,
        /// Refresh the table until interrupted
        #[arg(long, conflicts_with_all = ["json", "ocf"])]
        watch: bool,
        /// How often --watch refreshes
        #[arg(long, default_value = "2s", value_parser = duration, requires = "watch")]
        every: Duration,
        /// Print nothing, exit with the OCF resource agent's code for
        /// TARGET: 0 running or being recovered, 7 not running, 1 given
        /// up, 6 no such target (3: procward not reachable)
        #[arg(long, requires = "target", hide = true)]
        ocf: bool,
        /// Do not ask the daemon: decide from the processes the
        /// configuration's matchers find (0 running, 7 not running)
        #[arg(long, requires = "target", conflicts_with_all = ["json", "watch"])]
        offline: bool,
    },
    /// Stop monitoring a target (persisted)
    Pause {
        /// The target (or --all)
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        target: Option<String>,
        /// Every target
        #[arg(long)]
        all: bool,
    },
    /// Resume monitoring a target
    Resume {
        /// The target (or --all)
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        target: Option<String>,
        /// Every target
        #[arg(long)]
        all: bool,
    },
    /// Clear the retry counter and a RETRY-OVER / FAILED state
    Reset {
        /// The target
        target: String,
    },
    /// Make sure a target runs: monitor it again and, if it is not there,
    /// run its restart script (not counted as a retry); wait until it is up
    Start {
        /// The target
        target: String,
        /// Give up after this long
        #[arg(long, default_value = "60s", value_parser = duration)]
        wait: Duration,
        /// Without the daemon: run the restart script (reason manual) if
        /// the target is not running, and record it as started for the
        /// next procward (refused while procward runs)
        #[arg(long)]
        offline: bool,
    },
    /// Stop a target: SIGTERM its processes, SIGKILL after --timeout, and
    /// stop monitoring it until `start`
    Stop {
        /// The target
        target: String,
        /// SIGKILL follows SIGTERM after this
        #[arg(long, default_value = "10s", value_parser = duration)]
        timeout: Duration,
        /// Without the daemon: signal the processes the configuration's
        /// matchers find, and record the target as stopped for the next
        /// procward (refused while procward runs)
        #[arg(long)]
        offline: bool,
    },
    /// Re-read the configuration; an invalid one is rejected
    Reload,
    /// Each sink's state, cursor, backlog (events not delivered yet) and
    /// the age of the oldest; from the state directory when the daemon is
    /// not running
    Sinks {
        /// JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Send test messages (PW1015) through the journal and the sinks, to
    /// prove the path to the operations manager; prints their sequence
    /// numbers once they are journaled
    TestEvent {
        /// How many (1 to 1,000,000)
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Only this sink gets them (every sink by default)
        #[arg(long)]
        sink: Option<String>,
    },
    /// Show the event journal
    Events {
        /// Keep printing new events
        #[arg(long)]
        follow: bool,
        /// One JSON object per line (times in UTC, as in the journal)
        #[arg(long)]
        json: bool,
        /// Only events since T: RFC 3339 with any offset, a local time
        /// ("2026-11-26 08:17"), a date, or a duration ago ("10m")
        #[arg(long, value_parser = since)]
        since: Option<u64>,
        /// Times in UTC instead of the local zone
        #[arg(long)]
        utc: bool,
    },
    /// Browse the message catalog
    Catalog {
        #[command(subcommand)]
        command: CatalogCmd,
    },
    /// Render a catalog message with sample fields
    Render {
        /// A message ID, like PW2003
        id: String,
        /// Output format
        #[arg(long, value_enum, default_value = "rfc3164")]
        format: RenderFormat,
        /// Language of the text
        #[arg(long, value_enum, default_value = "en")]
        lang: Lang,
    },
    /// Run a command as a child subreaper that reaps every orphan it
    /// inherits (for containers whose PID 1 does not reap; used by the demo
    /// and the tests)
    #[command(hide = true)]
    Reaper {
        /// The command and its arguments
        #[arg(trailing_var_arg = true, required = true)]
        argv: Vec<String>,
    },
    /// Start restart scripts for `procward run` (started by it, on a
    /// socket given as stdin)
    #[command(hide = true)]
    Spawner,
    /// Copy a restart script's output (standard input) to its log, moving
    /// the log aside at 1 MiB (started by `procward run` for each script)
    #[command(hide = true)]
    ScriptLog {
        /// The log file
        path: PathBuf,
    },
    /// Filter definitions for operations managers
    Filters {
        #[command(subcommand)]
        command: FiltersCmd,
    },
    /// Print the SMIv2 MIB module of all notifications (root OID from the config's daemon.snmp-root)
    Mib {
        /// Write PROCWARD-MIB and the IETF modules it imports (SNMPv2-SMI,
        /// -TC, -CONF, -MIB, which Debian's main archive lacks) into DIR
        /// instead, ready for `snmptranslate -M +DIR -m PROCWARD-MIB`
        #[arg(long, value_name = "DIR")]
        bundle: Option<std::path::PathBuf>,
    },
    /// Write the man pages and shell completions into DIR (for packaging)
    #[command(hide = true)]
    Assets {
        /// Directory to write man/ and completions/ into
        #[arg(long)]
        out: PathBuf,
    },
    /// Self-contained demo: start a sample service, kill it, watch procward restart it
    Demo {
        /// Seconds to wait for each step before giving up
        #[arg(long, default_value_t = 20)]
        timeout: u64,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum FiltersCmd {
    /// List the managers definitions can be generated for
    List,
    /// Write the definitions into DIR/MANAGER/
    Generate {
        /// A manager from `filters list`, or `all`
        #[arg(long, value_enum)]
        manager: Manager,
        /// Directory to write MANAGER/ into
        #[arg(long, default_value = "filter-defs")]
        out: std::path::PathBuf,
        #[command(flatten)]
        opts: FilterOpts,
    },
    /// Install the definitions into the manager's directory under ROOT
    Install {
        /// A manager from `filters list`, or `all`
        #[arg(long, value_enum)]
        manager: Manager,
        /// Root of the file system to install into
        #[arg(long, default_value = "/")]
        root: std::path::PathBuf,
        /// Say what would change, change nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        opts: FilterOpts,
    },
}

/// Choices for the rsyslog rules.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct FilterOpts {
    /// rsyslog: also forward warnings and above to HOST:PORT (TCP, RFC 5424)
    #[arg(long, value_name = "HOST:PORT", value_parser = crate::filters::parse_forward)]
    pub forward: Option<(String, u16)>,
    /// rsyslog: procward's messages only into its own files, not into the
    /// host's syslog/messages (the rule ends with `stop`)
    #[arg(long)]
    pub exclusive: bool,
}

impl FilterOpts {
    pub(crate) fn options(&self) -> crate::filters::Options {
        crate::filters::Options {
            forward: self.forward.clone(),
            exclusive: self.exclusive,
        }
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum CatalogCmd {
    /// List every message: ID, severity, name
    List,
    /// Show one message in full
    Show {
        /// A message ID, like PW2003
        id: String,
        /// Language of the text
        #[arg(long, value_enum, default_value = "en")]
        lang: Lang,
    },
}

/// Man pages (procward.1 and one per subcommand) and bash, zsh and fish
/// completions, from these definitions, into `out/man` and
/// `out/completions`.
pub(crate) fn write_assets(out: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let man = out.join("man");
    let comp = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&comp)?;
    let mut written = Vec::new();
    let mut page = |c: &clap::Command, name: String| -> std::io::Result<()> {
        let path = man.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(c.clone().name(name.clone())).render(&mut buf)?;
        std::fs::write(&path, buf)?;
        written.push(path);
        Ok(())
    };
    page(&cmd, "procward".into())?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        page(sub, format!("procward-{}", sub.get_name()))?;
    }
    for (shell, file) in [
        (clap_complete::Shell::Bash, "procward"),
        (clap_complete::Shell::Zsh, "_procward"),
        (clap_complete::Shell::Fish, "procward.fish"),
    ] {
        let path = comp.join(file);
        let mut f = std::fs::File::create(&path)?;
        clap_complete::generate(shell, &mut Cli::command(), "procward", &mut f);
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_argument_and_option_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "procward", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }

    #[test]
    fn since_takes_any_offset_and_durations() {
        let a = since("2026-11-26T08:17:00+09:00").unwrap();
        let b = since("2026-11-25T23:17:00Z").unwrap();
        assert_eq!(a, b);
        let ago = since("10m").unwrap();
        let now = crate::model::event::now_ms();
        assert!(now - ago >= 600_000 && now - ago < 610_000);
        assert!(since("yesterday-ish").is_err());
    }
}
