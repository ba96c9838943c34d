use clap::Parser;
use procward::catalog::Catalog;
use procward::cli::{CatalogCmd, Cli, Cmd, FiltersCmd, LangArg, RenderFormat};
use procward::config::{self, Lang, SyslogFormat, SyslogSink, Transport};
use procward::control::{self, Client, ClientError, Request, Response};
use procward::daemon;
use procward::monitor::TargetStatus;
use procward::notify::{render::Renderer, syslog};
use std::process::ExitCode;
use std::sync::Arc;

const EXIT_FAIL: u8 = 1;
const EXIT_UNREACHABLE: u8 = 3;

fn lang(l: LangArg) -> Lang {
    match l {
        LangArg::En => Lang::En,
        LangArg::Ja => Lang::Ja,
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // glibc gives each thread its own malloc arena; a daemon that mostly
    // sleeps needs one, not one per thread (measured: 22 -> 16 MiB RSS
    // with 1000 targets).
    // SAFETY: mallopt before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        // Keep blocking threads instead of respawning them every interval.
        .thread_keep_alive(std::time::Duration::from_secs(300))
        .thread_name("procward")
        .enable_all()
        .build()?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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

fn dispatch(cmd: Cmd, cfg_path: &std::path::Path) -> anyhow::Result<u8> {
    let sock = || control::socket_path(cfg_path);
    match cmd {
        Cmd::Run { quiet } => {
            let rt = runtime()?;
            rt.block_on(async {
                let h = daemon::start(daemon::Options {
                    config: cfg_path.to_path_buf(),
                    console: !quiet,
                    signals: true,
                })
                .await?;
                h.task.await??;
                Ok::<_, anyhow::Error>(())
            })?;
            Ok(0)
        }
        Cmd::Check => match daemon::load_all(cfg_path) {
            Ok((cfg, r)) => {
                for w in &cfg.warnings {
                    eprintln!("warning: {w}");
                }
                println!(
                    "{}: OK ({} targets, {} syslog sinks, {} files, {} catalog messages)",
                    cfg_path.display(),
                    cfg.targets.len(),
                    cfg.syslog.len(),
                    cfg.files.len(),
                    r.catalog.messages.len()
                );
                Ok(0)
            }
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                let n = errors.len();
                eprintln!(
                    "{}: {n} error{}",
                    cfg_path.display(),
                    if n == 1 { "" } else { "s" }
                );
                Ok(EXIT_FAIL)
            }
        },
        Cmd::Status { target, json } => {
            let r = Client::call(&sock(), &Request::Status)?;
            if !r.ok {
                return Ok(print_response(&r));
            }
            let mut rows: Vec<TargetStatus> = serde_json::from_value(r.result.unwrap_or_default())?;
            if let Some(t) = &target {
                rows.retain(|r| &r.target == t);
                if rows.is_empty() {
                    eprintln!("procward: no target named `{t}`");
                    return Ok(EXIT_FAIL);
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_status(&rows);
            }
            Ok(0)
        }
        Cmd::Pause { target, all } => Ok(print_response(&Client::call(
            &sock(),
            &Request::Pause { target, all },
        )?)),
        Cmd::Resume { target, all } => Ok(print_response(&Client::call(
            &sock(),
            &Request::Resume { target, all },
        )?)),
        Cmd::Reset { target } => Ok(print_response(&Client::call(
            &sock(),
            &Request::Reset { target },
        )?)),
        Cmd::Start { target, wait } => {
            let wait =
                config::duration::parse(&wait).map_err(|e| anyhow::anyhow!("--wait: {e}"))?;
            let r = Client::call(
                &sock(),
                &Request::Start {
                    target: target.clone(),
                },
            )?;
            if !r.ok {
                return Ok(print_response(&r));
            }
            let deadline = std::time::Instant::now() + wait;
            loop {
                let r = Client::call(&sock(), &Request::Status)?;
                let rows: Vec<TargetStatus> = serde_json::from_value(r.result.unwrap_or_default())?;
                let state = rows
                    .iter()
                    .find(|s| s.target == target)
                    .map(|s| s.state.clone())
                    .unwrap_or_default();
                match state.as_str() {
                    "up" => {
                        println!("{target} is up");
                        return Ok(0);
                    }
                    "failed" | "retry-over" | "stopped" | "paused" | "down" => {
                        eprintln!("procward: {target} did not start (state {state}); see `procward events`");
                        return Ok(EXIT_FAIL);
                    }
                    _ => {}
                }
                if std::time::Instant::now() > deadline {
                    eprintln!(
                        "procward: {target} not up after {} (state {state})",
                        humantime::format_duration(wait)
                    );
                    return Ok(EXIT_FAIL);
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        Cmd::Stop { target, timeout } => {
            let t =
                config::duration::parse(&timeout).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
            let r = Client::call(
                &sock(),
                &Request::Stop {
                    target: target.clone(),
                    timeout_ms: t.as_millis() as u64,
                },
            )?;
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
            let deadline = std::time::Instant::now() + t + std::time::Duration::from_secs(5);
            let mut buf = Vec::new();
            while pids.iter().any(|p| {
                procward::probe::procfs::read_stat(*p, &mut buf)
                    .ok()
                    .flatten()
                    .is_some_and(|s| !s.is_dead())
            }) {
                if std::time::Instant::now() > deadline {
                    eprintln!("procward: {target}: processes {pids:?} still there");
                    return Ok(EXIT_FAIL);
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            println!("{target} stopped");
            Ok(0)
        }
        Cmd::Reload => {
            let r = Client::call(&sock(), &Request::Reload)?;
            if r.ok {
                println!("configuration reloaded");
            }
            Ok(print_response(&r))
        }
        Cmd::Events {
            follow,
            json,
            since,
        } => {
            let since_ms = match since {
                None => 0,
                Some(s) => parse_since(&s)?,
            };
            let mut c = Client::connect(&sock())?;
            c.send(&Request::Events { since_ms, follow })?;
            loop {
                let r = c.recv(None)?;
                match (r.ok, r.event) {
                    (_, Some(ev)) => {
                        if json {
                            println!("{}", serde_json::to_string(&ev)?);
                        } else {
                            println!(
                                "{} {:<8} {} {}",
                                ev.time,
                                ev.severity.as_str(),
                                ev.id,
                                ev.text
                            );
                        }
                    }
                    (true, None) => return Ok(0),
                    (false, None) => {
                        return Ok(print_response(&Response::err(r.error.unwrap_or_default())))
                    }
                }
            }
        }
        Cmd::Catalog { command } => {
            let c = Catalog::embedded();
            match command {
                CatalogCmd::List => {
                    for m in &c.messages {
                        println!(
                            "{}  {:<9}  {:<24}  {}",
                            m.id,
                            m.severity.as_str(),
                            m.name,
                            m.text.en
                        );
                    }
                    Ok(0)
                }
                CatalogCmd::Show { id, lang: l } => {
                    let Some(m) = c.get(&id) else {
                        eprintln!("procward: no message {id}; see `procward catalog list`");
                        return Ok(EXIT_FAIL);
                    };
                    let l = lang(l);
                    println!("{} {} ({})", m.id, m.name, m.severity.as_str());
                    println!("text:        {}", m.text(l));
                    let fields: Vec<String> = m
                        .fields
                        .iter()
                        .map(|(k, v)| format!("{k}: {v:?}").to_lowercase())
                        .collect();
                    println!("fields:      {}", fields.join(", "));
                    println!("snmp:        {}", m.snmp);
                    println!("description: {}", m.description);
                    println!("action:      {}", m.action);
                    Ok(0)
                }
            }
        }
        Cmd::Render {
            id,
            format,
            lang: l,
        } => {
            let c = Arc::new(Catalog::embedded());
            if c.get(&id).is_none() {
                eprintln!("procward: no message {id}; see `procward catalog list`");
                return Ok(EXIT_FAIL);
            }
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim()
                .to_string();
            let r = Renderer::new(c, None, &host).map_err(|e| anyhow::anyhow!(e.join("\n")))?;
            let l = lang(l);
            let ev = r.sample_event(&id, l);
            let sink = |format, transport| SyslogSink {
                name: "render".into(),
                transport,
                address: String::new(),
                format,
                facility: 3,
                min_severity: procward::event::Severity::Debug,
                queue: 1,
                max_size: 8192,
                language: l,
            };
            let out = match format {
                RenderFormat::Json => serde_json::to_string_pretty(&ev)?,
                RenderFormat::Rfc3164 => String::from_utf8_lossy(&syslog::format(
                    &sink(SyslogFormat::Rfc3164, Transport::Unix),
                    &r,
                    &ev,
                    std::process::id(),
                ))
                .into_owned(),
                RenderFormat::Rfc5424 => String::from_utf8_lossy(&syslog::format(
                    &sink(SyslogFormat::Rfc5424, Transport::Udp),
                    &r,
                    &ev,
                    std::process::id(),
                ))
                .into_owned(),
            };
            println!("{out}");
            Ok(0)
        }
        Cmd::Filters { command } => filters(command, cfg_path),
        Cmd::Mib => {
            // The root comes from the configuration when there is one.
            let root = match config::load(cfg_path) {
                Ok(c) => c.daemon.snmp_root,
                Err(_) if !cfg_path.exists() => vec![1, 3, 6, 1, 4, 1, 32473],
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(EXIT_FAIL);
                }
            };
            let r = Renderer::new(Arc::new(Catalog::embedded()), None, "localhost")
                .map_err(|e| anyhow::anyhow!(e.join("\n")))?;
            print!(
                "{}",
                procward::mib::generate(&r, &root).map_err(|e| anyhow::anyhow!(e))?
            );
            Ok(0)
        }
        Cmd::Reaper { argv } => Ok(procward::reaper::run(&argv)),
        Cmd::Demo { timeout } => {
            procward::demo::run(std::time::Duration::from_secs(timeout))?;
            Ok(0)
        }
    }
}

fn parse_since(s: &str) -> anyhow::Result<u64> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t.duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64);
    }
    let ago = config::duration::parse(s)
        .map_err(|e| anyhow::anyhow!("--since: {e}, or an RFC 3339 time"))?;
    Ok(procward::event::now_ms().saturating_sub(ago.as_millis() as u64))
}

fn print_status(rows: &[TargetStatus]) {
    println!(
        "{:<16} {:<11} {:<18} {:>9} {:>9}  LAST EVENT",
        "TARGET", "STATE", "PIDS", "UPTIME", "RESTARTS"
    );
    for r in rows {
        let pids = if r.pids.is_empty() {
            "-".to_string()
        } else {
            r.pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let up = r
            .uptime_s
            .map(|s| humantime::format_duration(std::time::Duration::from_secs(s)).to_string());
        let last = match (&r.last_event, &r.last_event_time) {
            (Some(id), Some(t)) => format!("{id} {t}"),
            _ => "-".into(),
        };
        println!(
            "{:<16} {:<11} {:<18} {:>9} {:>9}  {}",
            r.target,
            r.state,
            pids,
            up.as_deref().unwrap_or("-"),
            format!("{}/{}", r.restarts_in_window, r.retry_max),
            last
        );
    }
}

/// The SNMP root of the configuration, or the default without one.
fn snmp_root(cfg_path: &std::path::Path) -> anyhow::Result<Vec<u32>> {
    match config::load(cfg_path) {
        Ok(c) => Ok(c.daemon.snmp_root),
        Err(_) if !cfg_path.exists() => Ok(vec![1, 3, 6, 1, 4, 1, 32473]),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

fn filters(cmd: FiltersCmd, cfg_path: &std::path::Path) -> anyhow::Result<u8> {
    use procward::filters::{self, Installed, MANAGERS};
    let r = Renderer::new(Arc::new(Catalog::embedded()), None, "localhost")
        .map_err(|e| anyhow::anyhow!(e.join("\n")))?;
    match cmd {
        FiltersCmd::List => {
            for (name, what, dir) in MANAGERS {
                println!("{name:<8} {what}  (installs into /{dir})");
            }
            Ok(0)
        }
        FiltersCmd::Generate { manager, out } => {
            let root = snmp_root(cfg_path)?;
            let names: Vec<&str> = if manager == "all" {
                MANAGERS.iter().map(|m| m.0).collect()
            } else {
                vec![manager.as_str()]
            };
            for m in names {
                let files = filters::generate(m, &r, &root).map_err(|e| anyhow::anyhow!(e))?;
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
        } => {
            let files = filters::generate(&manager, &r, &snmp_root(cfg_path)?)
                .map_err(|e| anyhow::anyhow!(e))?;
            let done = filters::install(&manager, &files, &root, dry_run)
                .map_err(|e| anyhow::anyhow!(e))?;
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
                    filters::validate_rsyslog(p).map_err(|e| anyhow::anyhow!(e))?;
                    println!("rsyslogd -N1 accepts {}", p.display());
                }
            }
            if manager == "snmptt" && changed && !dry_run {
                println!("add the file to snmptt_conf_files in /etc/snmp/snmptt.ini");
            }
            Ok(0)
        }
    }
}
