//! The `procward` command line: one function per subcommand, errors mapped
//! to exit codes. `src/main.rs` only calls [`main`].

mod table;

use crate::catalog::render::{Renderer, Templates};
use crate::catalog::Catalog;
use crate::cli::{CatalogCmd, Cli, Cmd, FiltersCmd, RenderFormat};
use crate::config::{self, SyslogFormat, SyslogSink, Transport};
use crate::control::{self, Client, ClientError, Request, Response};
use crate::daemon;
use crate::model::Lang;
use crate::model::State;
use crate::monitor::TargetStatus;
use crate::notify::syslog;
use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const EXIT_FAIL: u8 = 1;
const EXIT_UNREACHABLE: u8 = 3;
/// `status`: the daemon answered, but not every listed target is up.
const EXIT_NOT_UP: u8 = 4;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // glibc gives each thread its own malloc arena (see the function).
    crate::sys::process::one_malloc_arena();
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        // Keep blocking threads instead of respawning them every interval.
        .thread_keep_alive(std::time::Duration::from_secs(300))
        .thread_name("procward")
        .enable_all()
        .build()?)
}

/// The `procward` command: parse, dispatch, map errors to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(
        cli.command,
        Cmd::Run { .. }
            | Cmd::Demo { .. }
            | Cmd::Reaper { .. }
            | Cmd::Spawner
            | Cmd::ScriptLog { .. }
    ) {
        // A client whose reader went away (`procward events | head -1`)
        // ends quietly, as `cat` does, instead of panicking on EPIPE. (The
        // daemon keeps SIGPIPE ignored: a dead socket is an error there.)
        crate::sys::process::default_sigpipe();
    }
    let cfg_path = config::resolve_path(cli.config.as_deref());
    match dispatch(cli.command, &cfg_path) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<ClientError>() {
                eprintln!("procward: {ce}");
                if matches!(ce, ClientError::Unreachable { .. }) {
                    return ExitCode::from(EXIT_UNREACHABLE);
                }
                return ExitCode::from(EXIT_FAIL);
            }
            eprintln!("procward: {e:#}");
            ExitCode::from(EXIT_FAIL)
        }
    }
}

fn print_response(r: &Response) -> u8 {
    if r.ok {
        0
    } else {
        eprintln!("procward: {}", r.error.as_deref().unwrap_or("failed"));
        EXIT_FAIL
    }
}

fn dispatch(cmd: Cmd, cfg: &Path) -> anyhow::Result<u8> {
    match cmd {
        Cmd::Run { quiet } => run(cfg, quiet),
        Cmd::Check => check(cfg),
        Cmd::Status {
            target: Some(target),
            ocf,
            offline: true,
            ..
        } => offline(crate::offline::status(cfg, &target, ocf)),
        Cmd::Status {
            target,
            json,
            ocf,
            utc,
            watch: true,
            every,
            ..
        } => {
            let _ = (json, ocf);
            watch(cfg, target, utc, every)
        }
        Cmd::Status {
            target,
            json,
            ocf,
            utc,
            ..
        } => status(cfg, target, json, ocf, utc),
        Cmd::Pause { target, all } => ask(cfg, &Request::Pause { target, all }, "paused"),
        Cmd::Resume { target, all } => ask(cfg, &Request::Resume { target, all }, "resumed"),
        Cmd::Reset { target } => ask(cfg, &Request::Reset { target }, "reset"),
        Cmd::Start {
            target,
            wait,
            offline: true,
        } => offline(crate::offline::start(cfg, &target, wait)),
        Cmd::Stop {
            target,
            timeout,
            offline: true,
        } => offline(crate::offline::stop(cfg, &target, timeout)),
        Cmd::Start { target, wait, .. } => start(cfg, &target, wait),
        Cmd::Stop {
            target, timeout, ..
        } => stop(cfg, &target, timeout),
        Cmd::Reload => reload(cfg),
        Cmd::TestEvent { count, sink } => test_event(cfg, count, sink),
        Cmd::Sinks { json } => sinks(cfg, json),
        Cmd::Events {
            follow,
            json,
            since,
            utc,
        } => events(cfg, follow, json, since.unwrap_or(0), utc),
        Cmd::Catalog { command } => catalog(cfg, command),
        Cmd::Render { id, format, lang } => render(cfg, &id, format, lang),
        Cmd::Filters { command } => filters(command, cfg),
        Cmd::Mib { bundle } => mib(cfg, bundle.as_deref()),
        Cmd::Reaper { argv } => Ok(crate::reaper::run(&argv)),
        Cmd::Spawner => Ok(crate::action::spawner::serve()),
        Cmd::ScriptLog { path } => Ok(crate::action::scriptlog::serve(&path)),
        Cmd::Assets { out } => {
            for p in crate::cli::write_assets(&out)? {
                println!("{}", p.display());
            }
            Ok(0)
        }
        Cmd::Demo { timeout } => {
            crate::demo::run(Duration::from_secs(timeout))?;
            Ok(0)
        }
    }
}

/// The exit code of an `--offline` command, or its error (exit 1).
fn offline(r: Result<u8, String>) -> anyhow::Result<u8> {
    r.or_else(|e| {
        eprintln!("procward: {e}");
        Ok(EXIT_FAIL)
    })
}

fn sock(cfg: &Path) -> PathBuf {
    control::socket_path(cfg)
}

/// One request; one line says what it did ("paused web, db"), or the error.
fn ask(cfg: &Path, req: &Request, done: &str) -> anyhow::Result<u8> {
    let r = Client::call(&sock(cfg), req)?;
    if r.ok {
        let names: Vec<String> = r
            .result
            .as_ref()
            .and_then(|v| v.get("targets"))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        if names.is_empty() {
            println!("nothing {done}: every target was already so");
        } else {
            println!("{done} {}", names.join(", "));
        }
    }
    Ok(print_response(&r))
}

/// `sinks`: from the daemon, or from the state directory when it is down.
fn sinks(cfg: &Path, json: bool) -> anyhow::Result<u8> {
    use crate::notify::view::SinkRow;
    let rows: Vec<SinkRow> = match Client::call(&sock(cfg), &Request::Sinks) {
        Ok(r) if r.ok => serde_json::from_value(r.result.unwrap_or_default())?,
        Ok(r) => return Ok(print_response(&r)),
        Err(ClientError::Unreachable { .. }) => {
            let c = config::load(cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::notify::view::offline_rows(&c)
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |n| n.to_string());
    println!(
        "{:<16} {:<15} {:<18} {:>8} {:>8} {:>10}  ERROR",
        "SINK", "KIND", "STATE", "CURSOR", "BACKLOG", "OLDEST(s)"
    );
    for r in &rows {
        println!(
            "{:<16} {:<15} {:<18} {:>8} {:>8} {:>10}  {}",
            r.sink,
            r.kind,
            r.state,
            opt(r.cursor),
            opt(r.backlog),
            opt(r.oldest_age_s),
            r.error.as_deref().unwrap_or("")
        );
    }
    Ok(0)
}

/// `test-event`: the daemon answers once every message is journaled.
fn test_event(cfg: &Path, count: u32, sink: Option<String>) -> anyhow::Result<u8> {
    let to = sink
        .as_deref()
        .map_or("every sink".to_string(), |s| format!("sink {s}"));
    let r = Client::call(&sock(cfg), &Request::TestEvent { count, sink })?;
    if let (true, Some(v)) = (r.ok, &r.result) {
        let seq = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
        println!(
            "{count} test message(s) journaled, seq {}-{}, sent to {to}",
            seq("first"),
            seq("last")
        );
    }
    Ok(print_response(&r))
}

fn run(cfg: &Path, quiet: bool) -> anyhow::Result<u8> {
    runtime()?.block_on(async {
        let h = daemon::start(daemon::Options {
            config: cfg.to_path_buf(),
            console: !quiet,
        })
        .await?;
        h.task.await??;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}

fn check(cfg: &Path) -> anyhow::Result<u8> {
    match daemon::load_all(cfg, Templates::Events) {
        Ok((c, r)) => {
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: OK ({}, {}, {}, {}, {})",
                cfg.display(),
                plural(c.targets.len(), "target", "targets"),
                plural(c.syslog.len(), "syslog sink", "syslog sinks"),
                plural(c.snmp.len(), "SNMP sink", "SNMP sinks"),
                plural(c.files.len(), "file", "files"),
                plural(
                    r.catalog.messages.len(),
                    "catalog message",
                    "catalog messages"
                )
            );
            Ok(0)
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            let n = errors.len();
            let s = if n == 1 { "" } else { "s" };
            eprintln!("{}: {n} error{s}", cfg.display());
            Ok(EXIT_FAIL)
        }
    }
}

/// The status rows (only `target`'s when given), or the daemon's refusal.
fn status_rows(
    cfg: &Path,
    target: Option<&str>,
) -> anyhow::Result<Result<Vec<TargetStatus>, Response>> {
    let r = Client::call(&sock(cfg), &Request::Status)?;
    if !r.ok {
        return Ok(Err(r));
    }
    let mut rows: Vec<TargetStatus> = serde_json::from_value(r.result.unwrap_or_default())?;
    if let Some(t) = target {
        rows.retain(|r| r.target == t);
    }
    Ok(Ok(rows))
}

fn status(
    cfg: &Path,
    target: Option<String>,
    json: bool,
    ocf: bool,
    utc: bool,
) -> anyhow::Result<u8> {
    let rows = match status_rows(cfg, target.as_deref())? {
        Ok(rows) => rows,
        Err(r) => return Ok(print_response(&r)),
    };
    if let Some(t) = &target {
        if ocf {
            return Ok(rows
                .first()
                .map_or(crate::model::state::ocf::ERR_CONFIGURED, |r| r.state.ocf()));
        }
        if rows.is_empty() {
            eprintln!("procward: no target named `{t}`");
            return Ok(EXIT_FAIL);
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        table::print_status(&rows, utc);
    }
    let all_up = rows.iter().all(|r| r.state == State::Up);
    Ok(if all_up { 0 } else { EXIT_NOT_UP })
}

/// `status --watch`: the table again every `every`, on a cleared screen
/// when on a terminal, until interrupted.
fn watch(cfg: &Path, target: Option<String>, utc: bool, every: Duration) -> anyhow::Result<u8> {
    use std::io::IsTerminal;
    let tty = std::io::stdout().is_terminal();
    loop {
        let rows = match status_rows(cfg, target.as_deref())? {
            Ok(rows) => rows,
            Err(r) => return Ok(print_response(&r)),
        };
        if tty {
            print!("\x1b[H\x1b[2J");
        }
        let now = show_time(crate::model::event::now_ms(), utc);
        println!(
            "procward status, every {} ({now})",
            humantime::format_duration(every)
        );
        table::print_status(&rows, utc);
        println!();
        std::thread::sleep(every);
    }
}

fn start(cfg: &Path, target: &str, wait: Duration) -> anyhow::Result<u8> {
    let r = Client::call(
        &sock(cfg),
        &Request::Start {
            target: target.to_string(),
        },
    )?;
    if !r.ok {
        return Ok(print_response(&r));
    }
    let deadline = Instant::now() + wait;
    loop {
        let state = match status_rows(cfg, Some(target))? {
            Ok(rows) => rows.first().map(|s| s.state),
            Err(r) => return Ok(print_response(&r)),
        };
        match state {
            Some(State::Up | State::Stalled) => {
                println!("{target} is up");
                return Ok(0);
            }
            Some(s) if s.given_up() || matches!(s, State::Stopped | State::Paused) => {
                eprintln!("procward: {target} did not start (state {s}); see `procward events`");
                return Ok(EXIT_FAIL);
            }
            _ => {}
        }
        if Instant::now() > deadline {
            let state = state.map(|s| s.to_string()).unwrap_or_default();
            let wait = humantime::format_duration(wait);
            eprintln!("procward: {target} not up after {wait} (state {state})");
            return Ok(EXIT_FAIL);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop(cfg: &Path, target: &str, timeout: Duration) -> anyhow::Result<u8> {
    let req = Request::Stop {
        target: target.to_string(),
        timeout_ms: timeout.as_millis() as u64,
    };
    let r = Client::call(&sock(cfg), &req)?;
    if !r.ok {
        return Ok(print_response(&r));
    }
    // Wait until the processes are gone (SIGKILL follows at the timeout).
    let pids: Vec<u32> = r
        .result
        .as_ref()
        .and_then(|v| v.get("pids"))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let deadline = Instant::now() + timeout + Duration::from_secs(5);
    let mut buf = Vec::new();
    let alive = |p: &u32, buf: &mut Vec<u8>| {
        crate::sys::proc::read_stat(*p, buf)
            .ok()
            .flatten()
            .is_some_and(|s| !s.is_dead())
    };
    while pids.iter().any(|p| alive(p, &mut buf)) {
        if Instant::now() > deadline {
            eprintln!("procward: {target}: processes {pids:?} still there");
            return Ok(EXIT_FAIL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Then until procward says `stopped`: a restart script that was
    // running has ended and nothing it started is left (`stopping` until
    // then).
    loop {
        let state = match status_rows(cfg, Some(target))? {
            Ok(rows) => rows.first().map(|s| s.state),
            Err(r) => return Ok(print_response(&r)),
        };
        match state {
            Some(State::Stopped) => break,
            Some(State::Stopping) => {}
            other => {
                let s = other.map(|s| s.to_string()).unwrap_or_default();
                eprintln!("procward: {target} is {s}, not stopped (started again meanwhile?)");
                return Ok(EXIT_FAIL);
            }
        }
        if Instant::now() > deadline {
            eprintln!("procward: {target}: still stopping; see `procward status {target}`");
            return Ok(EXIT_FAIL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("{target} stopped");
    Ok(0)
}

fn reload(cfg: &Path) -> anyhow::Result<u8> {
    let r = Client::call(&sock(cfg), &Request::Reload)?;
    if r.ok {
        println!("configuration reloaded");
    }
    Ok(print_response(&r))
}

fn events(cfg: &Path, follow: bool, json: bool, since_ms: u64, utc: bool) -> anyhow::Result<u8> {
    let print = |ev: &crate::model::event::Event| -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string(ev)?);
        } else {
            let sev = ev.severity.as_str();
            let time = show_time(ev.time_ms, utc);
            println!("{time} {sev:<8} {} {}", ev.id, ev.text);
        }
        Ok(())
    };
    let mut c = match Client::connect(&sock(cfg)) {
        Ok(c) => c,
        // The journal matters most when the daemon is down: read it.
        Err(ClientError::Unreachable { path, .. }) => {
            let dir = control::state_dir_path(cfg);
            let journal = dir.join(crate::store::journal::FILE);
            if !journal.exists() {
                anyhow::bail!(
                    "procward is not reachable at {} and there is no journal at {}",
                    path.display(),
                    journal.display()
                );
            }
            for ev in crate::store::journal::read(&dir, since_ms) {
                print(&ev)?;
            }
            let more = if follow {
                " (nothing new can come)"
            } else {
                ""
            };
            eprintln!(
                "procward: the daemon is not running; this is its journal in {}{more}",
                dir.display()
            );
            return Ok(if follow { EXIT_UNREACHABLE } else { 0 });
        }
        Err(e) => return Err(e.into()),
    };
    c.send(&Request::Events { since_ms, follow })?;
    loop {
        let r = c.recv(None)?;
        match (r.ok, r.event) {
            (_, Some(ev)) => print(&ev)?,
            (true, None) => return Ok(0),
            (false, None) => {
                return Ok(print_response(&Response::err(r.error.unwrap_or_default())))
            }
        }
    }
}

/// The catalog and templates as the daemon would load them from `cfg`
/// (`daemon.catalog-dir`, `templates-dir`, `hostname`, `snmp-root`), or
/// the embedded ones where there is no configuration file.
fn renderer(cfg: &Path) -> anyhow::Result<(Arc<Renderer>, Vec<u32>)> {
    if !cfg.exists() {
        let r = Renderer::new(Arc::new(Catalog::embedded()), None, &local_host())
            .map_err(|e| anyhow::anyhow!(e.join("\n")))?;
        return Ok((Arc::new(r), crate::model::oid::DEFAULT_ROOT.to_vec()));
    }
    let (c, r) =
        daemon::load_all(cfg, Templates::All).map_err(|e| anyhow::anyhow!(e.join("\n")))?;
    Ok((r, c.daemon.snmp_root))
}

fn local_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn catalog(cfg: &Path, cmd: CatalogCmd) -> anyhow::Result<u8> {
    let (r, _) = renderer(cfg)?;
    let c = &r.catalog;
    match cmd {
        CatalogCmd::List => {
            for m in &c.messages {
                let (id, sev, name) = (&m.id, m.severity.as_str(), &m.name);
                println!("{id}  {sev:<9}  {name:<24}  {}", m.text.en);
            }
            Ok(0)
        }
        CatalogCmd::Show { id, lang } => {
            let Some(m) = c.get(&id) else {
                eprintln!("procward: no message {id}; see `procward catalog list`");
                return Ok(EXIT_FAIL);
            };
            println!("{} {} ({})", m.id, m.name, m.severity.as_str());
            println!("text:        {}", m.text(lang));
            let fields: Vec<String> = m
                .fields
                .iter()
                .map(|(k, v)| format!("{k}: {v:?}").to_lowercase())
                .collect();
            println!("fields:      {}", fields.join(", "));
            println!("snmp:        {}", m.snmp);
            println!("description: {}", m.description.get(lang));
            println!("action:      {}", m.action.get(lang));
            Ok(0)
        }
    }
}

fn render(cfg: &Path, id: &str, format: RenderFormat, lang: Lang) -> anyhow::Result<u8> {
    let (r, _) = renderer(cfg)?;
    if r.catalog.get(id).is_none() {
        eprintln!("procward: no message {id}; see `procward catalog list`");
        return Ok(EXIT_FAIL);
    }
    let ev = r.sample_event(id, lang);
    let line = |format, transport| {
        let sink = SyslogSink::for_rendering(format, transport, lang);
        String::from_utf8_lossy(&syslog::format(&sink, &r, &ev, std::process::id())).into_owned()
    };
    let out = match format {
        RenderFormat::Json => serde_json::to_string_pretty(&ev)?,
        RenderFormat::Rfc3164 => line(SyslogFormat::Rfc3164, Transport::Unix),
        RenderFormat::Rfc5424 => line(SyslogFormat::Rfc5424, Transport::Udp),
    };
    println!("{out}");
    Ok(0)
}

fn mib(cfg: &Path, bundle: Option<&Path>) -> anyhow::Result<u8> {
    let (r, root) = renderer(cfg)?;
    let text = crate::filters::mib::generate(&r, &root).map_err(anyhow::Error::msg)?;
    let Some(dir) = bundle else {
        print!("{text}");
        return Ok(0);
    };
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let files = std::iter::once(("PROCWARD-MIB", text.as_str()))
        .chain(crate::filters::mib::BASE_MODULES.iter().copied());
    for (name, content) in files {
        let p = dir.join(name);
        std::fs::write(&p, content).with_context(|| format!("write {}", p.display()))?;
        println!("{}", p.display());
    }
    eprintln!(
        "load it with: snmptranslate -M +{d} -m PROCWARD-MIB -On PROCWARD-MIB::pwRetryOver\n\
         snmptrapd: add `mibdirs +{d}` and `mibs +PROCWARD-MIB` to /etc/snmp/snmptrapd.conf",
        d = dir.display()
    );
    Ok(0)
}

/// A time for people: the local zone (TZ or /etc/localtime) with its
/// offset, or UTC.
fn show_time(ms: u64, utc: bool) -> String {
    use chrono::{Local, TimeZone, Utc};
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    let local = if utc {
        None
    } else {
        Local.timestamp_millis_opt(ms).single()
    };
    match (local, Utc.timestamp_millis_opt(ms).single()) {
        (Some(t), _) => t.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string(),
        (None, Some(t)) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        // A time no calendar shows (a hand-edited journal): never a panic.
        (None, None) => format!("@{ms}ms"),
    }
}

/// "1 target", "3 targets".
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn filters(cmd: FiltersCmd, cfg_path: &Path) -> anyhow::Result<u8> {
    use crate::filters::{self, MANAGERS};
    match cmd {
        FiltersCmd::List => {
            for (name, what, dir) in MANAGERS {
                println!("{name:<8} {what}  (installs into /{dir})");
            }
            Ok(0)
        }
        FiltersCmd::Generate { manager, out, opts } => {
            let (r, root) = renderer(cfg_path)?;
            for m in manager.names() {
                let files =
                    filters::generate(m, &r, &root, &opts.options()).map_err(anyhow::Error::msg)?;
                let dir = out.join(m);
                std::fs::create_dir_all(&dir)?;
                for f in files {
                    let p = dir.join(&f.name);
                    std::fs::write(&p, f.content)?;
                    println!("{}", p.display());
                }
            }
            Ok(0)
        }
        FiltersCmd::Install {
            manager,
            root,
            dry_run,
            opts,
        } => {
            let (r, snmp_root) = renderer(cfg_path)?;
            for m in manager.names() {
                let files = filters::generate(m, &r, &snmp_root, &opts.options())
                    .map_err(anyhow::Error::msg)?;
                install(m, &files, &root, dry_run)?;
            }
            Ok(0)
        }
    }
}

/// Install one manager's definitions under `root`; say what changed.
fn install(
    manager: &str,
    files: &[crate::filters::File],
    root: &Path,
    dry_run: bool,
) -> anyhow::Result<()> {
    use crate::filters::{self, Installed};
    let done = filters::install(manager, files, root, dry_run).map_err(anyhow::Error::msg)?;
    let verb = if dry_run { "would write" } else { "wrote" };
    let mut changed = false;
    for d in &done {
        match d {
            Installed::Unchanged(p) => println!("unchanged {}", p.display()),
            Installed::Written { path, backup } => {
                changed = true;
                match backup {
                    Some(b) => println!(
                        "{verb} {} (the old one saved as {})",
                        path.display(),
                        b.display()
                    ),
                    None => println!("{verb} {}", path.display()),
                }
            }
        }
    }
    if !changed {
        println!("nothing to do: the {manager} definitions are up to date");
    }
    if manager == "rsyslog" && !dry_run {
        for d in &done {
            let p = match d {
                Installed::Unchanged(p) | Installed::Written { path: p, .. } => p,
            };
            filters::validate_rsyslog(p).map_err(anyhow::Error::msg)?;
            println!("rsyslogd -N1 accepts {}", p.display());
        }
    }
    if manager == "snmptt" && changed && !dry_run {
        println!("add the file to snmptt_conf_files in /etc/snmp/snmptt.ini");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_and_the_pids_column() {
        use table::pids_column;
        assert_eq!(plural(1, "target", "targets"), "1 target");
        assert_eq!(plural(0, "target", "targets"), "0 targets");
        assert_eq!(pids_column(&[], 18), "-");
        assert_eq!(pids_column(&[4101, 4102], 18), "4101,4102");
        let many: Vec<u32> = (100_000..100_012).collect();
        let col = pids_column(&many, 18);
        assert!(col.starts_with("12: 100000,"), "{col}");
        assert!(col.ends_with('…') && col.chars().count() <= 18, "{col}");
    }

    #[test]
    fn any_journal_time_is_shown_without_a_panic() {
        assert_eq!(show_time(0, true), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            show_time(1_795_652_898_667, true),
            "2026-11-26T00:28:18.667Z"
        );
        assert!(show_time(u64::MAX, false).starts_with('@'));
        assert!(show_time(u64::MAX, true).starts_with('@'));
    }
}
