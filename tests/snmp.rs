//! SNMP notifications into a real snmptrapd on a loopback port, with
//! procward's MIB loaded so that every name resolves symbolically; and the
//! generated MIB checked by smilint and snmptranslate.
//!
//! contrib/mibs/ holds the IETF base modules (SNMPv2-SMI, -TC, -CONF, -MIB)
//! that Debian's main archive lacks; see contrib/mibs/README.md.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ENGINE: &str = "80007ed9050011223344556677";

fn base_mibs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/mibs")
}

/// Write `procward mib` into DIR/mibs/PROCWARD-MIB.
fn write_mib(dir: &Path) -> PathBuf {
    let mibs = dir.join("mibs");
    std::fs::create_dir_all(&mibs).unwrap();
    let o = Command::new(BIN)
        .args(["mib", "-c", "/nonexistent"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(mibs.join("PROCWARD-MIB"), &o.stdout).unwrap();
    mibs
}

struct Trapd {
    child: Option<Child>,
    log: PathBuf,
}

impl Trapd {
    fn start(dir: &Path, port: u16) -> Trapd {
        let mibs = write_mib(dir);
        let conf = dir.join("snmptrapd.conf");
        std::fs::write(
            &conf,
            format!(
                "authCommunity log,execute,net s3cret-community\n\
                 createUser -e 0x{ENGINE} traper SHA-256 authpass123 AES privpass123\n\
                 authUser log,execute,net traper priv\n\
                 createUser informer SHA-256 authpass123 AES privpass123\n\
                 authUser log,execute,net informer priv\n"
            ),
        )
        .unwrap();
        let log = dir.join("snmptrapd.log");
        let child = Command::new("snmptrapd")
            .args(["-f", "-Lf"])
            .arg(&log)
            .args(["-C", "-c"])
            .arg(&conf)
            .arg("-M")
            .arg(format!("{}:{}", base_mibs().display(), mibs.display()))
            .args(["-m", "PROCWARD-MIB:SNMPv2-MIB", "-F", "TRAP %P|%v\n"])
            .arg(format!("udp:127.0.0.1:{port}"))
            .env("SNMP_PERSISTENT_DIR", dir.join("persist"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t = Trapd {
            child: Some(child),
            log,
        };
        // Ready when it has written its start line.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !t.text().contains("NET-SNMP version") {
            std::thread::sleep(Duration::from_millis(20));
        }
        t
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + T;
        loop {
            if let Some(l) = self.text().lines().find(|l| l.contains(needle)) {
                return l.to_string();
            }
            if Instant::now() > deadline {
                panic!("snmptrapd logged no line with `{needle}`:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Trapd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(5));
        }
    }
}

fn snmp_sink(name: &str, port: u16, body: &str) -> String {
    format!("[[sink.snmp]]\nname = \"{name}\"\naddress = \"127.0.0.1:{port}\"\nmin-severity = \"debug\"\ntimeout = \"500ms\"\nretries = 2\n{body}\n")
}

/// Start procward with one SNMP sink, kill its target, return (env, pid of the killed target).
fn kill_target_with(env: &Env, sink: &str) -> (Daemon, u32) {
    std::fs::create_dir_all(env.state()).unwrap();
    std::fs::write(
        env.state().join("snmp-engine.json"),
        format!("{{\"engine_id\":\"{ENGINE}\",\"boots\":4}}"),
    )
    .unwrap();
    let tok = token();
    env.write_config(&format!(
        "{}{sink}{}",
        env.daemon_section(""),
        env.target_section("web", &tok, "")
    ));
    let target = Proc::sleeper(&tok);
    let d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2001");
    let pid = target.pid;
    target.signal(libc::SIGKILL);
    env.wait_event(T, |e| e["id"] == "PW2015");
    drop(target);
    (d, pid)
}

fn assert_varbinds(line: &str, pid: u32) {
    for want in [
        "SNMPv2-MIB::snmpTrapOID.0 = OID: PROCWARD-MIB::pwProcessDisappeared",
        "PROCWARD-MIB::pwMessageId.0 = STRING: PW2003",
        "PROCWARD-MIB::pwSeverity.0 = INTEGER: error(3)",
        "PROCWARD-MIB::pwTarget.0 = STRING: web",
        &format!("PROCWARD-MIB::pwPid.0 = INTEGER: {pid}"),
        &format!(
            "PROCWARD-MIB::pwText.0 = STRING: target web: process {pid} disappeared (killed by SIGKILL)"
        ),
        "PROCWARD-MIB::pwExitCode.0 = INTEGER: -1",
        "PROCWARD-MIB::pwExitSignal.0 = STRING: SIGKILL",
        "PROCWARD-MIB::pwCoreDumped.0 = INTEGER: no(2)",
        "PROCWARD-MIB::pwSeq.0 = Gauge32: ",
    ] {
        assert!(line.contains(want), "missing `{want}` in:\n{line}");
    }
}

/// procward with one SNMP sink (`body`) sending to a fresh snmptrapd; a
/// target killed; the logged pwProcessDisappeared line must start with
/// `prefix` and carry every varbind. None when snmptrapd is missing
/// (outside CI).
fn notify_and_check(body: &str, prefix: &str) -> Option<(Daemon, Trapd, Env)> {
    if !require("snmptrapd") {
        return None;
    }
    let env = Env::new();
    let port = free_udp_port();
    let trapd = Trapd::start(env.dir.path(), port);
    let (d, pid) = kill_target_with(&env, &snmp_sink("nms", port, body));
    let line = trapd.wait_line("pwProcessDisappeared");
    println!("snmptrapd: {line}");
    assert!(line.starts_with(prefix), "{line}");
    assert_varbinds(&line, pid);
    Some((d, trapd, env))
}

const V3_KEYS: &str =
    "auth = \"sha256\"\nauth-key = \"authpass123\"\npriv = \"aes\"\npriv-key = \"privpass123\"";

#[test]
fn v2c_trap_with_symbolic_names() {
    let body = "version = \"2c\"\ncommunity = \"s3cret-community\"\nkind = \"trap\"";
    let Some((_d, _trapd, env)) =
        notify_and_check(body, "TRAP TRAP2, SNMP v2c, community s3cret-community|")
    else {
        return;
    };
    // The community is a secret: not in procward's journal or output.
    let journal = std::fs::read_to_string(env.state().join("events.jsonl")).unwrap();
    let log = std::fs::read_to_string(env.path("daemon.log")).unwrap();
    let status = String::from_utf8_lossy(&env.cli(&["status", "--json"]).stdout).to_string();
    for (what, text) in [
        ("journal", journal),
        ("daemon log", log),
        ("status", status),
    ] {
        assert!(
            !text.contains("s3cret-community"),
            "community leaked into the {what}"
        );
    }
}

#[test]
fn v2c_inform_is_acknowledged() {
    let body = "version = \"2c\"\ncommunity = \"s3cret-community\"\nkind = \"inform\"";
    let Some((_d, trapd, env)) =
        notify_and_check(body, "TRAP INFORM, SNMP v2c, community s3cret-community|")
    else {
        return;
    };
    trapd.wait_line("pwTargetRecovered");
    assert!(
        !env.ids().contains(&"PW3004".to_string()),
        "every inform was acknowledged: {:?}",
        env.ids()
    );
}

#[test]
fn v3_authpriv_trap_from_procwards_engine() {
    let body = format!("version = \"3\"\nkind = \"trap\"\nuser = \"traper\"\n{V3_KEYS}");
    let Some((_d, _trapd, env)) =
        notify_and_check(&body, "TRAP TRAP2, SNMP v3, user traper, context |")
    else {
        return;
    };
    // The boot counter was persisted and advanced.
    let engine = std::fs::read_to_string(env.state().join("snmp-engine.json")).unwrap();
    assert!(
        engine.contains("\"boots\": 5") && engine.contains(ENGINE),
        "{engine}"
    );
}

#[test]
fn v3_authpriv_inform_discovers_the_receiver_and_is_acknowledged() {
    let body = format!("version = \"3\"\nkind = \"inform\"\nuser = \"informer\"\n{V3_KEYS}");
    let Some((_d, trapd, env)) =
        notify_and_check(&body, "TRAP INFORM, SNMP v3, user informer, context |")
    else {
        return;
    };
    trapd.wait_line("pwTargetRecovered");
    assert!(
        !env.ids().contains(&"PW3004".to_string()),
        "{:?}",
        env.ids()
    );
}

/// An inform nobody acknowledges: one round of `retries` (3 packets),
/// then one outage (PW3002, "after 3 tries"); it is retried with backoff
/// until a manager acknowledges it (a real snmptrapd started on that
/// port), then PW3003: never given up.
#[test]
fn an_unanswered_inform_is_retried_until_a_manager_acknowledges_it() {
    if !require("snmptrapd") {
        return;
    }
    // Nobody answers on this port at first: count what arrives.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    silent
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = silent.local_addr().unwrap().port();
    let env = Env::new();
    env.write_config(&format!(
        "{}{}[[target]]\nname = \"quiet\"\nmatch.comm = \"no-such-proc\"\n",
        env.daemon_section(""),
        snmp_sink("nms", port, "version = \"2c\"\ncommunity = \"s3cret-community\"\nkind = \"inform\"\nmin-severity = \"warning\"")
            .replace("min-severity = \"debug\"\n", "")
    ));
    let _d = env.start();
    // PW2002 (warning) is the one event at warning or above.
    let failed = env.wait_event(T, |e| e["id"] == "PW3002" && e["fields"]["sink"] == "nms");
    assert!(
        failed["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("after 3 tries of 500ms"),
        "{failed}"
    );
    let mut packets = 0;
    let mut buf = [0u8; 65536];
    while silent.recv(&mut buf).is_ok() {
        packets += 1;
    }
    assert!(
        packets >= 3,
        "one send and two retries, then more rounds: {packets}"
    );
    assert!(!env.ids().contains(&"PW3004".to_string()), "not given up");

    // A manager comes up on that port: the inform arrives, acknowledged.
    drop(silent);
    let trapd = Trapd::start(env.dir.path(), port);
    trapd.wait_line("PW2002");
    env.wait_event(Duration::from_secs(60), |e| {
        e["id"] == "PW3003" && e["fields"]["sink"] == "nms"
    });
    assert_eq!(
        env.ids().iter().filter(|i| *i == "PW3002").count(),
        1,
        "one outage"
    );
}

#[test]
fn the_mib_passes_smilint_and_snmptranslate_resolves_every_notification() {
    if !require("smilint") || !require("snmptranslate") {
        return;
    }
    let env = Env::new();
    let mibs = write_mib(env.dir.path());
    let o = Command::new("smilint")
        .args(["-l", "6"])
        .arg(mibs.join("PROCWARD-MIB"))
        .env("SMIPATH", base_mibs())
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success() && out.trim().is_empty(),
        "smilint: {out}"
    );
    let catalog: toml::Table = toml::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("message-catalog/messages.toml"),
        )
        .unwrap(),
    )
    .unwrap();
    let msgs = catalog["message"].as_array().unwrap();
    let mut args = vec![
        "-M".to_string(),
        format!("{}:{}", base_mibs().display(), mibs.display()),
        "-m".into(),
        "PROCWARD-MIB".into(),
        "-On".into(),
    ];
    args.extend(
        msgs.iter()
            .map(|m| format!("PROCWARD-MIB::{}", m["snmp"].as_str().unwrap())),
    );
    let o = Command::new("snmptranslate").args(&args).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        msgs.len(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for (m, l) in msgs.iter().zip(&lines) {
        let n = m["id"].as_str().unwrap().trim_start_matches("PW");
        assert_eq!(*l, format!(".1.3.6.1.4.1.32473.0.{n}"));
    }
}

#[test]
fn line_separators_and_bidi_controls_reach_the_manager_escaped() {
    if !require("snmptrapd") {
        return;
    }
    let env = Env::new();
    let port = free_udp_port();
    let trapd = Trapd::start(env.dir.path(), port);
    let tok = token();
    // U+2028, U+2029 and U+202E (right-to-left override) in script output.
    let evil = env.failing_target(
        "evil",
        &tok,
        "bad\\342\\200\\250PW9999 forged\\342\\200\\251x\\342\\200\\256y\\n",
    );
    let sink = snmp_sink(
        "nms",
        port,
        "version = \"2c\"\ncommunity = \"s3cret-community\"\nkind = \"trap\"",
    );
    env.write_config(&format!("{}{sink}{evil}", env.daemon_section("")));
    let target = Proc::sleeper(&tok);
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2001");
    target.signal(libc::SIGKILL);
    let line = trapd.wait_line("pwRestartScriptFailed");
    println!("snmptrapd: {line}");
    assert!(
        line.contains("pwText.0 = STRING: target evil: restart script of attempt 1 failed (exit code 7): bad\\u2028PW9999 forged\\u2029x\\u202ey\t"),
        "{line}"
    );
    let all = trapd.text();
    assert!(!all.contains(['\u{2028}', '\u{2029}', '\u{202e}']), "{all}");
}

/// On a stock Debian host (no IETF modules installed) the bundle alone is
/// enough: snmptranslate with only the system path and the bundle loads
/// PROCWARD-MIB; without the bundle it cannot.
#[test]
fn the_mib_bundle_loads_without_the_ietf_modules_installed() {
    if !require("snmptranslate") {
        return;
    }
    let env = Env::new();
    let dir = env.path("bundle");
    let o = Command::new(BIN)
        .args(["mib", "-c", "/nonexistent", "--bundle"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hint = String::from_utf8_lossy(&o.stderr);
    assert!(hint.contains("snmptranslate -M +"), "{hint}");
    for f in [
        "PROCWARD-MIB",
        "SNMPv2-SMI",
        "SNMPv2-TC",
        "SNMPv2-CONF",
        "SNMPv2-MIB",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let translate = |mibdirs: &str| {
        Command::new("snmptranslate")
            .args(["-M", mibdirs, "-m", "PROCWARD-MIB", "-On"])
            .arg("PROCWARD-MIB::pwRetryOver")
            .env("HOME", env.dir.path())
            .output()
            .unwrap()
    };
    let o = translate(&format!("/usr/share/snmp/mibs:{}", dir.display()));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        ".1.3.6.1.4.1.32473.0.2020",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Only PROCWARD-MIB (what `procward mib >` gives): the imports fail.
    let alone = env.path("alone");
    std::fs::create_dir_all(&alone).unwrap();
    std::fs::copy(dir.join("PROCWARD-MIB"), alone.join("PROCWARD-MIB")).unwrap();
    let o = translate(&format!("/usr/share/snmp/mibs:{}", alone.display()));
    assert_ne!(
        String::from_utf8_lossy(&o.stdout).trim(),
        ".1.3.6.1.4.1.32473.0.2020"
    );
}
