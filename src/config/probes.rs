//! Stall probes (`stall`): exec, tcp, http, heartbeat, state.

use super::*;

/// "200-399" or "200".
fn parse_status_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (100..=599).contains(&a).then_some(())?;
    (a <= b && b <= 599).then_some((a, b))
}

/// `http://host[:port][/path]`: host, port, path.
pub fn parse_http_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h.to_string(), p.parse().ok()?),
        _ => (hostport.to_string(), 80),
    };
    (!host.is_empty()).then_some((host, port, path))
}

pub(super) fn validate_stall(
    c: &mut Collector,
    src: &Source,
    base: &[Seg],
    st: &StallRaw,
) -> Option<Stall> {
    let n0 = c.errors.len();
    let at = |c: &mut Collector, keys: &[&str], msg: String| {
        let mut p = base.to_vec();
        p.extend(keys.iter().map(|s| k(s)));
        c.at(src, &p, msg)
    };
    if st.interval.is_zero() {
        at(c, &["interval"], "must be greater than zero".into());
    }
    if st.failures == 0 {
        at(c, &["failures"], "must be at least 1".into());
    }
    if st.stop_timeout.is_zero() {
        at(c, &["stop-timeout"], "must be greater than zero".into());
    }
    let in_probe = |c: &mut Collector, keys: &[&str], msg: String| {
        let mut v = vec!["probe"];
        v.extend(keys);
        at(c, &v, msg)
    };
    let probe = validate_probe(c, &in_probe, &st.probe);
    (c.errors.len() == n0).then_some(Stall {
        probe,
        interval: st.interval.0,
        failures: st.failures,
        action: st.action,
        stop_timeout: st.stop_timeout.0,
        signal_group: st.signal_group,
    })
}

/// A probe (`stall.probe`, or a probe kind of `[[target.check]]`), its
/// errors located through `at`.
pub(super) fn validate_probe(
    c: &mut Collector,
    at: &dyn Fn(&mut Collector, &[&str], String),
    probe: &ProbeRaw,
) -> Probe {
    let nonzero = |c: &mut Collector, key: &str, d: Dur| {
        if d.is_zero() {
            at(c, &[key], "must be greater than zero".into());
        }
    };
    match probe {
        ProbeRaw::Exec { command, timeout } => {
            nonzero(c, "timeout", *timeout);
            if command.is_empty() || !Path::new(&command[0]).is_absolute() {
                at(
                    c,
                    &["command"],
                    "must start with an absolute path to a program".into(),
                );
            } else if let Err(msg) = c.executable(Path::new(&command[0])) {
                at(c, &["command"], msg);
            }
            Probe::Exec {
                argv: command.clone(),
                timeout: timeout.0,
            }
        }
        ProbeRaw::Tcp { address, timeout } => {
            nonzero(c, "timeout", *timeout);
            if !address.contains(':') {
                at(c, &["address"], format!("`{address}` is not host:port"));
            }
            Probe::Tcp {
                address: address.clone(),
                timeout: timeout.0,
            }
        }
        ProbeRaw::Http {
            url,
            timeout,
            expect_status,
            expect_body,
        } => {
            nonzero(c, "timeout", *timeout);
            let status = parse_status_range(expect_status).unwrap_or_else(|| {
                at(
                    c,
                    &["expect-status"],
                    format!("`{expect_status}` is not a status or range like \"200-399\""),
                );
                (200, 399)
            });
            let (host, port, path) = parse_http_url(url).unwrap_or_else(|| {
                at(
                    c,
                    &["url"],
                    format!("`{url}` is not an http:// URL (https is not supported by this probe)"),
                );
                (String::new(), 0, String::new())
            });
            Probe::Http {
                host,
                port,
                path,
                timeout: timeout.0,
                status,
                body: expect_body.clone(),
            }
        }
        ProbeRaw::Heartbeat { path, max_age } => {
            nonzero(c, "max-age", *max_age);
            if !path.is_absolute() {
                at(c, &["path"], "must be an absolute path".into());
            }
            Probe::Heartbeat {
                path: path.clone(),
                max_age: max_age.0,
            }
        }
        ProbeRaw::State { max_duration } => {
            nonzero(c, "max-duration", *max_duration);
            Probe::State {
                max_duration: max_duration.0,
            }
        }
    }
}
