//! Command-line definitions only (clap derive).

use crate::catalog::Lang;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// A duration argument: "500ms", "10s", "5m" (at most 366 days).
fn duration(s: &str) -> Result<Duration, String> {
    crate::config::duration::parse(s)
}

#[derive(Parser, Debug)]
#[command(
    name = "procward",
    version,
    about = "Keeps business processes alive and tells the operations manager what happened"
)]
pub struct Cli {
    /// Configuration file [default: $PROCWARD_CONFIG or /etc/procward/procward.toml]
    #[arg(short = 'c', long = "config", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Cmd,
}

/// A manager that filter definitions are generated for (`all`: every one).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Manager {
    Esmpro,
    Websam,
    Rsyslog,
    Snmptt,
    Mib,
    All,
}

impl Manager {
    /// The managers this stands for, by name.
    pub fn names(self) -> Vec<&'static str> {
        match self {
            Manager::Esmpro => vec!["esmpro"],
            Manager::Websam => vec!["websam"],
            Manager::Rsyslog => vec!["rsyslog"],
            Manager::Snmptt => vec!["snmptt"],
            Manager::Mib => vec!["mib"],
            Manager::All => crate::filters::MANAGERS.iter().map(|m| m.0).collect(),
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum RenderFormat {
    Rfc5424,
    Rfc3164,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
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
        /// Print nothing, exit with the OCF resource agent's code for
        /// TARGET: 0 running or being recovered, 7 not running, 1 given
        /// up, 6 no such target (3: procward not reachable)
        #[arg(long, requires = "target", hide = true)]
        ocf: bool,
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
    Reset { target: String },
    /// Make sure a target runs: monitor it again and, if it is not there,
    /// run its restart script (not counted as a retry); wait until it is up
    Start {
        target: String,
        /// Give up after this long
        #[arg(long, default_value = "60s", value_parser = duration)]
        wait: Duration,
    },
    /// Stop a target: SIGTERM its processes, SIGKILL after --timeout, and
    /// stop monitoring it until `start`
    Stop {
        target: String,
        /// SIGKILL follows SIGTERM after this
        #[arg(long, default_value = "10s", value_parser = duration)]
        timeout: Duration,
    },
    /// Re-read the configuration; an invalid one is rejected
    Reload,
    /// Show the event journal
    Events {
        /// Keep printing new events
        #[arg(long)]
        follow: bool,
        #[arg(long)]
        json: bool,
        /// Only events since T: RFC 3339 time or a duration ago ("10m")
        #[arg(long)]
        since: Option<String>,
    },
    /// Browse the message catalog
    Catalog {
        #[command(subcommand)]
        command: CatalogCmd,
    },
    /// Render a catalog message with sample fields
    Render {
        id: String,
        #[arg(long, value_enum, default_value = "rfc3164")]
        format: RenderFormat,
        #[arg(long, value_enum, default_value = "en")]
        lang: Lang,
    },
    /// Run a command as a child subreaper that reaps every orphan it
    /// inherits (for containers whose PID 1 does not reap; used by the demo
    /// and the tests)
    #[command(hide = true)]
    Reaper {
        #[arg(trailing_var_arg = true, required = true)]
        argv: Vec<String>,
    },
    /// Filter definitions for operations managers
    Filters {
        #[command(subcommand)]
        command: FiltersCmd,
    },
    /// Print the SMIv2 MIB module of all notifications (root OID from the config's daemon.snmp-root)
    Mib,
    /// Self-contained demo: start a sample service, kill it, watch procward restart it
    Demo {
        /// Seconds to wait for each step before giving up
        #[arg(long, default_value_t = 20)]
        timeout: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum FiltersCmd {
    /// List the managers definitions can be generated for
    List,
    /// Write the definitions into DIR/MANAGER/
    Generate {
        /// A manager from `filters list`, or `all`
        #[arg(long, value_enum)]
        manager: Manager,
        #[arg(long, default_value = "filter-defs")]
        out: std::path::PathBuf,
    },
    /// Install the definitions into the manager's directory under ROOT
    Install {
        /// A manager from `filters list`, or `all`
        #[arg(long, value_enum)]
        manager: Manager,
        #[arg(long, default_value = "/")]
        root: std::path::PathBuf,
        /// Say what would change, change nothing
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum CatalogCmd {
    /// List every message: ID, severity, name
    List,
    /// Show one message in full
    Show {
        id: String,
        #[arg(long, value_enum, default_value = "en")]
        lang: Lang,
    },
}
