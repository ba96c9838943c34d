//! `[[sink.syslog]]` and `[[sink.snmp]]`.

use super::*;

pub(super) fn validate_sink(
    c: &mut Collector,
    src: &Source,
    i: usize,
    s: &SyslogSinkRaw,
    lang: Lang,
) -> Option<SyslogSink> {
    let base = |key: &str| [k("sink"), k("syslog"), Seg::Index(i), k(key)];
    let mut ok = true;
    let facility = match facility_code(&s.facility) {
        Some(f) => f,
        None => {
            c.at(
                src,
                &base("facility"),
                format!("unknown facility `{}`", s.facility),
            );
            ok = false;
            0
        }
    };
    let address = match (s.transport, &s.address) {
        (Transport::Unix, None) => "/dev/log".to_string(),
        (_, None) => {
            c.at(
                src,
                &[k("sink"), k("syslog"), Seg::Index(i)],
                "udp, tcp, tls and relp sinks need `address = \"host:port\"`",
            );
            ok = false;
            String::new()
        }
        (Transport::Unix, Some(a)) => a.clone(),
        (_, Some(a)) => {
            if !a.contains(':') {
                c.at(src, &base("address"), format!("`{a}` is not host:port"));
                ok = false;
            }
            a.clone()
        }
    };
    if s.queue == 0 {
        c.at(src, &base("queue"), "must be at least 1");
        ok = false;
    }
    if s.write_timeout.0.is_zero() {
        c.at(src, &base("write-timeout"), "must be greater than zero");
        ok = false;
    }
    let default_max = match (s.transport, s.format) {
        (Transport::Udp, SyslogFormat::Rfc3164) => 1024,
        (Transport::Udp, SyslogFormat::Rfc5424) => 2048,
        _ => 8192,
    };
    let max_size = s.max_size.unwrap_or(default_max);
    if max_size < 480 {
        c.at(
            src,
            &base("max-size"),
            "must be at least 480 bytes (RFC 5424 §6.1)",
        );
        ok = false;
    }
    let legacy = validate_legacy(c, src, i, s, facility);
    ok &= legacy.is_ok();
    let tls = tls::validate(c, src, i, s.transport, &address, s.tls.as_ref());
    let window = tls::window(c, src, i, s.transport, s.window);
    if s.seq_marker && s.format != SyslogFormat::Rfc3164 {
        c.at(
            src,
            &base("seq-marker"),
            "is for format = \"rfc3164\" (RFC 5424 lines carry the seq in their structured data)",
        );
        ok = false;
    }
    let (Ok(tls), Ok(window)) = (tls, window) else {
        return None;
    };
    ok.then(|| SyslogSink {
        tls,
        window,
        seq_marker: s.seq_marker,
        legacy: legacy.ok().flatten(),
        sd_id: String::new(), // set from daemon.snmp-root by `load`
        name: s.name.clone(),
        transport: s.transport,
        address,
        format: s.format,
        facility,
        min_severity: s.min_severity,
        queue: s.queue,
        max_size,
        language: s.language.unwrap_or(lang),
        hold_down: s.hold_down.0,
        write_timeout: s.write_timeout.0,
    })
}

/// The `processsaver` profile's options: tags as RFC 3164 allows them
/// (1 to 32 letters, digits, `.`, `_`, `-`), a known facility.
fn validate_legacy(
    c: &mut Collector,
    src: &Source,
    i: usize,
    s: &SyslogSinkRaw,
    facility: u8,
) -> Result<Option<Legacy>, ()> {
    let key = |k2: &str| {
        [
            k("sink"),
            k("syslog"),
            Seg::Index(i),
            k("processsaver"),
            k(k2),
        ]
    };
    let opts = match (s.profile, &s.processsaver) {
        (Profile::Procward, None) => return Ok(None),
        (Profile::Procward, Some(_)) => {
            let at = [k("sink"), k("syslog"), Seg::Index(i), k("processsaver")];
            c.at(src, &at, "needs profile = \"processsaver\"");
            return Err(());
        }
        (Profile::Processsaver, o) => o.clone().unwrap_or(LegacyRaw {
            pcheck_tag: "pcheck".into(),
            padmin_tag: "padmin".into(),
            facility: None,
            also_procward: false,
        }),
    };
    let mut ok = true;
    for (name, tag) in [
        ("pcheck-tag", &opts.pcheck_tag),
        ("padmin-tag", &opts.padmin_tag),
    ] {
        let fine = (1..=32).contains(&tag.len())
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !fine {
            c.at(
                src,
                &key(name),
                format!("`{tag}`: 1 to 32 letters, digits, `.`, `_` or `-`"),
            );
            ok = false;
        }
    }
    let facility = match &opts.facility {
        None => facility,
        Some(f) => facility_code(f).unwrap_or_else(|| {
            c.at(src, &key("facility"), format!("unknown facility `{f}`"));
            ok = false;
            0
        }),
    };
    ok.then_some(Some(Legacy {
        pcheck_tag: opts.pcheck_tag,
        padmin_tag: opts.padmin_tag,
        facility,
        also_procward: opts.also_procward,
    }))
    .ok_or(())
}

/// A secret of `[[sink.snmp]]` number `i` (`key`, at least `min`
/// characters): required, and in a file others cannot read.
fn snmp_secret(
    c: &mut Collector,
    src: &Source,
    i: usize,
    key: &str,
    v: &Option<String>,
    min: usize,
) -> Option<Secret> {
    let at = [k("sink"), k("snmp"), Seg::Index(i)];
    let Some(v) = v else {
        c.at(src, &at, format!("`{key}` is required here"));
        return None;
    };
    let p = [k("sink"), k("snmp"), Seg::Index(i), k(key)];
    if v.len() < min {
        c.at(src, &p, format!("must be at least {min} characters"));
    }
    // Whoever can read the file can read the secrets.
    let readable = std::fs::metadata(&src.path)
        .map(|m| m.permissions().mode() & 0o004 != 0)
        .unwrap_or(false);
    if readable {
        let path = src.path.display();
        c.at(
            src,
            &p,
            format!("is a secret, but {path} is readable by others; run: chmod o-r {path}"),
        );
    }
    Some(Secret(v.clone()))
}

pub(super) fn validate_snmp(
    c: &mut Collector,
    src: &Source,
    i: usize,
    s: &SnmpSinkRaw,
    lang: Lang,
) -> Option<SnmpSink> {
    let n0 = c.errors.len();
    let p = |key: &str| [k("sink"), k("snmp"), Seg::Index(i), k(key)];
    if !s.address.contains(':') {
        c.at(
            src,
            &p("address"),
            format!("`{}` is not host:port", s.address),
        );
    }
    let secret = |c: &mut Collector, key: &str, v: &Option<String>, min: usize| {
        snmp_secret(c, src, i, key, v, min)
    };
    let security = match s.version {
        SnmpVersion::V2c => {
            for (key, set) in [
                ("user", s.user.is_some()),
                ("auth", s.auth.is_some()),
                ("priv", s.privacy.is_some()),
            ] {
                if set {
                    c.at(src, &p(key), "is for version = \"3\" only");
                }
            }
            secret(c, "community", &s.community, 1).map(|community| SnmpSecurity::V2c { community })
        }
        SnmpVersion::V3 => {
            if s.community.is_some() {
                c.at(
                    src,
                    &p("community"),
                    "is for version = \"2c\" only; v3 uses user, auth and priv",
                );
            }
            let auth = s
                .auth
                .and_then(|a| secret(c, "auth-key", &s.auth_key, 8).map(|k| (a, k)));
            let privacy = s
                .privacy
                .and_then(|pr| secret(c, "priv-key", &s.priv_key, 8).map(|k| (pr, k)));
            if s.privacy.is_some() && s.auth.is_none() {
                c.at(src, &p("priv"), "needs auth too (authPriv)");
            }
            match &s.user {
                Some(u) if !u.is_empty() => Some(SnmpSecurity::V3 {
                    user: u.clone(),
                    auth,
                    privacy,
                }),
                _ => {
                    c.at(
                        src,
                        &[k("sink"), k("snmp"), Seg::Index(i)],
                        "`user` is required for version = \"3\"",
                    );
                    None
                }
            }
        }
    };
    if s.timeout.is_zero() {
        c.at(src, &p("timeout"), "must be greater than zero");
    }
    if s.queue == 0 {
        c.at(src, &p("queue"), "must be at least 1");
    }
    if c.errors.len() != n0 {
        return None;
    }
    Some(SnmpSink {
        name: s.name.clone(),
        address: s.address.clone(),
        security: security?,
        kind: s.kind,
        min_severity: s.min_severity,
        timeout: s.timeout.0,
        retries: s.retries,
        queue: s.queue,
        language: s.language.unwrap_or(lang),
        hold_down: s.hold_down.0,
    })
}
