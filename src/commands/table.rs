//! The `status` table: a row per target, a line per check and for what
//! it waits under it.

use super::show_time;
use crate::monitor::TargetStatus;
use std::time::Duration;

/// The PIDS column: every pid while they fit, else the count and the first
/// ones ("12: 4101,4102,…").
pub(super) fn pids_column(pids: &[u32], width: usize) -> String {
    let all: Vec<String> = pids.iter().map(u32::to_string).collect();
    let joined = all.join(",");
    if pids.is_empty() {
        return "-".into();
    }
    if joined.len() <= width {
        return joined;
    }
    let mut out = format!("{}: ", pids.len());
    for p in &all {
        if out.len() + p.len() + 2 > width {
            break;
        }
        out.push_str(p);
        out.push(',');
    }
    out.push('…');
    out
}

pub(super) fn print_status(rows: &[TargetStatus], utc: bool) {
    println!(
        "{:<16} {:<11} {:<18} {:>9} {:>9}  {:<12} LAST EVENT",
        "TARGET", "STATE", "PIDS", "UPTIME", "RESTARTS", "PROBE"
    );
    for r in rows {
        let up = r
            .uptime_s
            .map(|s| humantime::format_duration(Duration::from_secs(s)).to_string());
        let last = match (&r.last_event, &r.last_event_time) {
            (Some(id), Some(t)) => {
                let ms = chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| t.timestamp_millis() as u64)
                    .ok();
                format!(
                    "{id} {}",
                    ms.map(|ms| show_time(ms, utc)).unwrap_or(t.clone())
                )
            }
            _ => "-".into(),
        };
        let probe = match (&r.probe, r.probe_failures) {
            (None, _) => "-".to_string(),
            (Some(p), 0) if p == "ok" => "ok".to_string(),
            (Some(_), n) => format!("failing ({n})"),
        };
        println!(
            "{:<16} {:<11} {:<18} {:>9} {:>9}  {:<12} {}",
            r.target,
            r.state,
            pids_column(&r.pids, 18),
            up.as_deref().unwrap_or("-"),
            format!("{}/{}", r.restarts_in_window, r.retry_max),
            probe,
            last
        );
        print_checks(r, utc);
    }
}

/// A line per `[[target.check]]` under its target's row, and what it
/// waits for.
fn print_checks(r: &TargetStatus, utc: bool) {
    if let Some(dep) = &r.waits_for {
        println!("  waits for {dep} (depends-on)");
    }
    for c in &r.checks {
        let since = c
            .since
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| format!(" since {}", show_time(t.timestamp_millis() as u64, utc)))
            .unwrap_or_default();
        println!(
            "  check {:<12} {:<9} {:<8} {} (limit: {}){since}",
            c.name,
            c.kind,
            c.state,
            c.value.as_deref().unwrap_or("-"),
            c.limit,
        );
    }
}
