//! Property tests over every input a root daemon takes from outside: the
//! configuration loader, /proc stat lines, pidfiles, control-socket
//! requests, the state and SNMP engine files, and the escaping of event
//! fields. Each runs a bounded number of cases (PROPTEST_CASES overrides)
//! and asserts no panic and the documented bounds.

use procward::control;
use procward::probe::procfs;
use proptest::prelude::*;
use std::os::unix::fs::PermissionsExt;

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Pieces of procward configurations, shuffled into files that are often
/// almost valid: the loader's deeper validation runs, not just the parser.
fn config_text() -> impl Strategy<Value = String> {
    let keys = prop::sample::select(vec![
        "interval",
        "control-socket",
        "state-dir",
        "language",
        "include",
        "zombie-grace",
        "catalog-dir",
        "templates-dir",
        "snmp-root",
        "control-group",
        "control-allow",
        "control-denied-interval",
        "name",
        "match.exe",
        "match.comm",
        "match.cmdline",
        "match.pidfile",
        "match.user",
        "count",
        "children",
        "restart.script",
        "restart.timeout",
        "restart.settle",
        "restart.user",
        "retry.max",
        "retry.window",
        "retry.backoff",
        "on-retry-over",
        "failover.command",
        "stall.probe",
        "stall.interval",
        "transport",
        "address",
        "format",
        "facility",
        "version",
        "community",
        "queue",
        "max-size",
    ]);
    let values = prop::sample::select(vec![
        "\"1s\"",
        "\"0s\"",
        "\"367days\"",
        "18446744073709551615",
        "-1",
        "0",
        "3",
        "\"/bin/sh\"",
        "\"/\"",
        "\"..\"",
        "\"ja\"",
        "\"x\"",
        "\"\"",
        "\"(\"",
        "\"é\u{2028}\"",
        "{ min = 3, max = 1 }",
        "{ initial = \"1h\", max = \"1s\" }",
        "[\"/bin/true\"]",
        "[]",
        "{ kind = \"exec\", command = [] }",
        "{ kind = \"http\", url = \"http://[\" }",
        "\"1.3.6.1.4.1.99999999999\"",
        "\"udp\"",
        "\"3\"",
        "true",
        "1e400",
        "\"nobody\"",
    ]);
    let line = (keys, values).prop_map(|(k, v)| format!("{k} = {v}\n"));
    let header = prop::sample::select(vec![
        "[daemon]\n",
        "[[target]]\n",
        "[[sink.syslog]]\n",
        "[[sink.snmp]]\n",
        "[[sink.x]]\n",
        "[target]\n",
        "",
    ]);
    let section = (header, prop::collection::vec(line, 0..8))
        .prop_map(|(h, ls)| format!("{h}{}", ls.concat()));
    prop_oneof![
        prop::collection::vec(section, 0..6).prop_map(|s| s.concat()),
        ".{0,300}",
    ]
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn the_config_loader_never_panics(text in config_text()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("procward.toml");
        std::fs::write(&p, &text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        if let Err(errors) = procward::config::load(&p) {
            prop_assert!(!errors.0.is_empty());
            for e in &errors.0 {
                prop_assert!(e.line >= 1 && e.col >= 1);
            }
        }
    }

    #[test]
    fn the_stat_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = procward::sys::proc::parse_stat(&bytes);
    }

    #[test]
    fn the_stat_parser_reads_any_command_name(
        pid in 1u32..4_000_000,
        comm in "[^\u{0}]{0,15}",
        starttime in any::<u64>(),
    ) {
        let line = format!("{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 0 0 0 0 7 3 0 0 20 0 1 0 {starttime} 0 0");
        let st = procward::sys::proc::parse_stat(line.as_bytes());
        let st = st.expect("a well-formed line parses");
        prop_assert_eq!(st.pid, pid);
        prop_assert_eq!(st.comm, comm);
        prop_assert_eq!(st.starttime, starttime);
    }

    #[test]
    fn pidfiles_are_read_bounded_and_strictly(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pid");
        std::fs::write(&p, &bytes).unwrap();
        let got = procfs::read_pidfile(&p).map(|(pid, _)| pid);
        let head = &bytes[..bytes.len().min(procfs::PIDFILE_MAX)];
        prop_assert_eq!(got, procfs::parse_pidfile(head));
        if let Some(pid) = got {
            prop_assert!(pid > 0);
        }
    }

    #[test]
    fn the_pidfile_parser_takes_only_a_decimal_pid(pid in 1u32.., pad in "[ \t]{0,3}", tail in ".{0,20}") {
        let text = format!("{pad}{pid}{pad}\n{tail}");
        prop_assert_eq!(procfs::parse_pidfile(text.as_bytes()), Some(pid));
        prop_assert_eq!(procfs::parse_pidfile(format!("{pid}x").as_bytes()), None);
        prop_assert_eq!(procfs::parse_pidfile(format!("-{pid}").as_bytes()), None);
    }

    #[test]
    fn control_requests_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = control::parse_request(&bytes);
    }

    #[test]
    fn control_requests_are_bounded(
        cmd in prop::sample::select(vec!["status", "pause", "stop", "events", "reset", "start", "reload", "nope"]),
        target in ".{0,40}",
        n in any::<u64>(),
        extra in 0usize..3,
    ) {
        let line = format!(
            r#"{{"cmd":"{cmd}","target":{},"timeout_ms":{n},"since_ms":{n},"all":false}}"#,
            serde_json::Value::String(target)
        );
        if let Ok(control::Request::Stop { timeout_ms, .. }) = control::parse_request(line.as_bytes()) {
            prop_assert!(timeout_ms <= 366 * 86_400_000);
        }
        let long = vec![b' '; control::MAX_REQUEST + 1 + extra];
        prop_assert!(control::parse_request(&long).is_err());
    }

    #[test]
    fn state_and_engine_files_never_panic(text in prop_oneof![
        ".{0,200}",
        (any::<u64>(), any::<bool>(), ".{0,12}").prop_map(|(n, b, s)| format!(
            r#"{{"version":1,"targets":{{"t":{{"attempts":[{n},{n}],"paused":{b},"halted":{},"ever_up":{b}}}}}}}"#,
            serde_json::Value::String(s)
        )),
        (".{0,40}", any::<u32>()).prop_map(|(id, boots)| format!(
            r#"{{"engine_id":{},"boots":{boots}}}"#,
            serde_json::Value::String(id)
        )),
    ]) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.json"), &text).unwrap();
        let _ = procward::store::state::load(dir.path());
        std::fs::write(dir.path().join("snmp-engine.json"), &text).unwrap();
        let e = procward::notify::snmp::Engine::load(dir.path()).unwrap();
        prop_assert!((5..=32).contains(&e.id.len()));
    }

    #[test]
    fn escaped_fields_hold_no_line_breaking_or_bidi_character(s in any::<String>()) {
        let out = procward::model::event::escape_controls(&s);
        for ch in out.chars() {
            let c = ch as u32;
            prop_assert!(c >= 0x20 && c != 0x7f && !(0x80..0xa0).contains(&c), "{:?}", ch);
            prop_assert!(![0x2028, 0x2029, 0x061c, 0x200e, 0x200f].contains(&c));
            prop_assert!(!(0x202a..=0x202e).contains(&c) && !(0x2066..=0x2069).contains(&c));
        }
    }
}
