//! `[daemon]`: its validation, users and groups, syslog facilities.

use super::*;

/// The passwd entry of a name or a numeric uid.
fn find_user(name: &str) -> Result<nix::unistd::User, String> {
    let user = match name.parse::<u32>() {
        Ok(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)),
        Err(_) => nix::unistd::User::from_name(name),
    };
    match user {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(format!("no such user `{name}`")),
        Err(e) => Err(format!("cannot look up user `{name}`: {e}")),
    }
}

pub(super) fn lookup_user(name: &str) -> Result<RunAs, String> {
    let u = find_user(name)?;
    let cname = std::ffi::CString::new(u.name.clone()).map_err(|e| e.to_string())?;
    let groups = nix::unistd::getgrouplist(&cname, u.gid)
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|_| vec![u.gid.as_raw()]);
    Ok(RunAs {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        groups,
    })
}

/// A user's uid only (`control-allow`): no group list, which would ask
/// every NSS module (`getgrouplist`), loading libnss_systemd and libcap
/// into the daemon for a name that `files` already answered.
fn lookup_uid(name: &str) -> Result<u32, String> {
    find_user(name).map(|u| u.uid.as_raw())
}

fn lookup_group(name: &str) -> Result<u32, String> {
    match name.parse::<u32>() {
        Ok(gid) => Ok(gid),
        Err(_) => match nix::unistd::Group::from_name(name) {
            Ok(Some(g)) => Ok(g.gid.as_raw()),
            Ok(None) => Err(format!("no such group `{name}`")),
            Err(e) => Err(format!("cannot look up group `{name}`: {e}")),
        },
    }
}

pub fn facility_code(name: &str) -> Option<u8> {
    Some(match name {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" => 4,
        "syslog" => 5,
        "lpr" => 6,
        "news" => 7,
        "uucp" => 8,
        "cron" => 9,
        "authpriv" => 10,
        "ftp" => 11,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

fn kernel_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// `daemon.control-allow`: users, and groups as `@group`.
fn validate_allow(c: &mut Collector, src: &Source, entries: &[String]) -> Allow {
    let mut allow = Allow::default();
    for (i, entry) in entries.iter().enumerate() {
        let loc = [k("daemon"), k("control-allow"), Seg::Index(i)];
        if let Some(g) = entry.strip_prefix('@') {
            match lookup_group(g) {
                Ok(gid) => allow.gids.push(gid),
                Err(e) => c.at(src, &loc, e),
            }
        } else {
            match lookup_uid(entry) {
                Ok(uid) => allow.uids.push(uid),
                Err(e) => c.at(src, &loc, e),
            }
        }
    }
    allow
}

/// `daemon.snmp-root`: a numeric OID under enterprises.
fn validate_snmp_root(text: &str) -> Result<Vec<u32>, String> {
    let root: Vec<u32> = text
        .split('.')
        .map(|a| a.parse::<u32>())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    if root.len() < 7 || root[..6] != [1, 3, 6, 1, 4, 1] {
        let example = crate::model::oid::DEFAULT_ROOT
            .map(|n| n.to_string())
            .join(".");
        return Err(format!(
            "`{text}` must be a numeric OID under enterprises, like {example}"
        ));
    }
    Ok(root)
}

pub(super) fn validate_daemon(
    c: &mut Collector,
    src: Option<&Source>,
    d: &DaemonRaw,
) -> Option<Daemon> {
    let src = src?;
    let at = |c: &mut Collector, key: &str, msg: String| c.at(src, &[k("daemon"), k(key)], msg);
    if d.interval.is_zero() {
        at(c, "interval", "must be greater than zero".into());
    }
    if d.zombie_grace.0 > Duration::from_secs(60) {
        at(c, "zombie-grace", "must be at most 60s".into());
    }
    let allow = validate_allow(c, src, &d.control_allow);
    let control_group = d
        .control_group
        .as_ref()
        .and_then(|g| lookup_group(g).map_err(|e| at(c, "control-group", e)).ok());
    let metrics_listen = d.metrics_listen.as_ref().and_then(|a| {
        a.parse::<std::net::SocketAddr>()
            .map_err(|_| {
                at(
                    c,
                    "metrics-listen",
                    format!("`{a}` is not an address:port like \"127.0.0.1:9813\""),
                )
            })
            .ok()
    });
    let spool_max = match d.spool_max.as_deref().map(parse_size) {
        None => SPOOL_MAX,
        Some(Ok(n)) if n >= SPOOL_MIN => n,
        Some(Ok(_)) => {
            at(
                c,
                "spool-max",
                "must be at least 16MiB (one journal generation)".to_string(),
            );
            SPOOL_MAX
        }
        Some(Err(e)) => {
            at(c, "spool-max", e);
            SPOOL_MAX
        }
    };
    if !(1..=JOURNAL_MAX_KEEP).contains(&d.journal_keep) {
        at(
            c,
            "journal-keep",
            format!("must be 1 to {JOURNAL_MAX_KEEP}"),
        );
    }
    if d.control_denied_interval.is_zero() {
        at(
            c,
            "control-denied-interval",
            "must be greater than zero".into(),
        );
    }
    let others_allowed = allow.uids.iter().any(|&u| u != 0) || allow.gids.iter().any(|&g| g != 0);
    if others_allowed && control_group.is_none() {
        c.warn(
            src,
            &[k("daemon"), k("control-allow")],
            "names users other than root, but the control socket is root's alone (mode 0660, group root): set daemon.control-group to a group those users are in",
        );
    }
    for (key, dir) in [
        ("catalog-dir", &d.catalog_dir),
        ("templates-dir", &d.templates_dir),
    ] {
        if let Some(dir) = dir {
            if let Err(msg) = trusted_dir_files(dir, key) {
                at(c, key, msg);
            }
        }
    }
    let snmp_root = validate_snmp_root(&d.snmp_root).unwrap_or_else(|msg| {
        at(c, "snmp-root", msg);
        Vec::new()
    });
    Some(Daemon {
        snmp_root,
        interval: d.interval.0,
        control_socket: d.control_socket.clone(),
        allow,
        control_group,
        denied_interval: d.control_denied_interval.0,
        state_dir: d.state_dir.clone(),
        journal_keep: d.journal_keep,
        spool_max,
        metrics_listen,
        language: d.language,
        zombie_grace: d.zombie_grace.0,
        catalog_dir: d.catalog_dir.clone(),
        templates_dir: d.templates_dir.clone(),
        hostname: d.hostname.clone().unwrap_or_else(kernel_hostname),
    })
}
