//! The generated Zabbix templates in a real Zabbix 6.0 (Debian's server
//! with PostgreSQL, its frontend's API under `php -S`, its agent): both
//! languages' templates are imported through `configuration.import`, a
//! host per language is linked, and a real procward, whose messages go
//! through a real rsyslogd with the generated rules into the log file the
//! agent reads, has a real target killed: the problem opens with the
//! message's severity and the target's tag and closes when procward
//! reports the recovery; a RETRY-OVER stays open. Everything it starts
//! runs on loopback, in temporary directories, and is stopped by pid.
#![allow(clippy::too_many_lines)]
// The harness's own liveness check (kill(pid, 0)).
#![allow(unsafe_code)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const SQL: &str = "/usr/share/zabbix-server-pgsql";
const FRONTEND: &str = "/usr/share/zabbix";

/// A daemon of the test: stopped with `stop_signal`, waited for (10 s),
/// then killed with its process group.
struct Svc {
    name: &'static str,
    proc: Option<Proc>,
    stop_signal: i32,
}

impl Svc {
    fn start(name: &'static str, cmd: &mut Command, stop_signal: i32) -> Svc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{name}: {e}"));
        Svc {
            name,
            proc: Some(Proc::adopt(child)),
            stop_signal,
        }
    }

    fn alive(&self) -> bool {
        self.proc
            .as_ref()
            .is_some_and(|p| unsafe { libc::kill(p.pid as i32, 0) } == 0)
    }
}

impl Drop for Svc {
    fn drop(&mut self) {
        if let Some(p) = &self.proc {
            p.signal(self.stop_signal);
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if self.alive() {
                eprintln!("{}: still running 10 s after its stop signal", self.name);
            }
        }
        self.proc.take(); // kills what is left of its process group
    }
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        if Instant::now() > deadline {
            let dir = DIAG.with(|d| d.borrow().clone());
            panic!("{what}: not within {limit:?}\n{}", logs(Path::new(&dir)));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

thread_local! {
    /// Where to look when a wait fails (logs of the daemons).
    static DIAG: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The last lines of the files under `dir` whose names end in `.log`.
fn logs(dir: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "log" || x == "out") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                out.push_str(&format!("--- {}\n{tail}\n", p.display()));
            }
        }
    }
    out
}

fn run(cmd: &mut Command, what: &str) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        o.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A free TCP port Zabbix takes (its ListenPort is at most 32767).
fn zabbix_port() -> u16 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let seed = u64::from(std::process::id()) ^ now.map_or(0, |d| d.subsec_nanos().into());
    (0..2000u64)
        .map(|i| 20000 + ((seed.wrapping_mul(7919) + i * 104_729) % 12000) as u16)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 32768")
}

fn uid_of(user: &str) -> (u32, u32) {
    let out = run(Command::new("id").args(["-u", user]), "id -u");
    let gid = run(Command::new("id").args(["-g", user]), "id -g");
    (out.trim().parse().unwrap(), gid.trim().parse().unwrap())
}

/// A private PostgreSQL 15 cluster (user postgres, trust, socket only) with
/// the Zabbix schema and data loaded.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    _svc: Svc,
}

impl Postgres {
    fn start() -> Postgres {
        let dir = tempfile::Builder::new().prefix("pw-pg-").tempdir().unwrap();
        let (uid, gid) = uid_of("postgres");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let data = dir.path().join("data");
        let as_pg = |c: &mut Command| {
            c.uid(uid)
                .gid(gid)
                .env("HOME", dir.path())
                .current_dir(dir.path());
        };
        let mut init = Command::new(format!("{PG_BIN}/initdb"));
        init.args([
            "-A",
            "trust",
            "-U",
            "zabbix",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(&data);
        as_pg(&mut init);
        run(&mut init, "initdb");
        let port = free_tcp_port();
        let mut pg = Command::new(format!("{PG_BIN}/postgres"));
        pg.arg("-D").arg(&data).arg("-k").arg(dir.path()).args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=",
            "-c",
            "fsync=off",
        ]);
        as_pg(&mut pg);
        // SIGINT: PostgreSQL's fast shutdown.
        let svc = Svc::start("postgres", &mut pg, libc::SIGINT);
        let p = Postgres {
            dir,
            port,
            _svc: svc,
        };
        wait_until(
            "postgres accepts connections",
            Duration::from_secs(30),
            || p.psql("postgres", "SELECT 1").is_ok(),
        );
        p.psql("postgres", "CREATE DATABASE zabbix").unwrap();
        for f in ["schema", "images", "data"] {
            let sql = run(
                Command::new("zcat").arg(format!("{SQL}/{f}.sql.gz")),
                "zcat",
            );
            p.psql_input("zabbix", &sql);
        }
        p
    }

    fn psql_cmd(&self, db: &str) -> Command {
        let mut c = Command::new("psql");
        c.args(["-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", "zabbix", db]);
        c
    }

    fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let o = self.psql_cmd(db).args(["-c", sql]).output().unwrap();
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    }

    fn psql_input(&self, db: &str, sql: &str) {
        let mut child = self
            .psql_cmd(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// A JSON-RPC call to the frontend's API (HTTP/1.0, one connection).
fn api(port: u16, auth: Option<&str>, method: &str, params: Value) -> Result<Value, String> {
    let mut body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
    if let Some(a) = auth {
        body["auth"] = json!(a);
    }
    let body = body.to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST /api_jsonrpc.php HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json-rpc\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let json = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    let v: Value = serde_json::from_str(json).map_err(|e| format!("{e}: {resp}"))?;
    match v.get("result") {
        Some(r) => Ok(r.clone()),
        None => Err(format!("{method}: {}", v["error"])),
    }
}

struct Zabbix {
    web: u16,
    auth: String,
    server_port: u16,
    _server: Svc,
    _web: Svc,
}

impl Zabbix {
    fn start(dir: &Path, pg: &Postgres) -> Zabbix {
        let server_port = zabbix_port();
        let sock = dir.join("zs");
        std::fs::create_dir_all(&sock).unwrap();
        let conf = dir.join("zabbix_server.conf");
        std::fs::write(
            &conf,
            format!(
                "DBHost={pgdir}\nDBPort={pgport}\nDBName=zabbix\nDBUser=zabbix\nListenIP=127.0.0.1\nListenPort={server_port}\n\
                 PidFile={d}/zabbix_server.pid\nLogType=file\nLogFile={d}/zabbix_server.log\nSocketDir={s}\nAllowRoot=1\n\
                 CacheUpdateFrequency=1\nHousekeepingFrequency=0\nStartPollers=1\nStartPollersUnreachable=1\nStartTrappers=2\n\
                 StartPingers=0\nStartDiscoverers=0\nStartHTTPPollers=0\nStartTimers=1\nStartEscalators=1\nStartAlerters=1\n\
                 StartPreprocessors=1\nStartDBSyncers=1\nStartLLDProcessors=1\nStartReportWriters=0\nTimeout=4\n\
                 StartSNMPTrapper=1\nSNMPTrapperFile={d}/snmptraps.log\n",
                pgdir = pg.dir.path().display(),
                pgport = pg.port,
                d = dir.display(),
                s = sock.display()
            ),
        )
        .unwrap();
        let server = Svc::start(
            "zabbix_server",
            Command::new("zabbix_server").arg("-f").arg("-c").arg(&conf),
            libc::SIGTERM,
        );
        // The frontend reads /etc/zabbix/zabbix.conf.php only: ours is
        // bind-mounted there in a mount namespace of its own (nothing in
        // /etc changes; the mount goes with the process).
        let etc = dir.join("etc-zabbix");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("zabbix.conf.php"),
            format!(
                "<?php\n$DB['TYPE'] = 'POSTGRESQL';\n$DB['SERVER'] = '{pgdir}';\n$DB['PORT'] = '{pgport}';\n\
                 $DB['DATABASE'] = 'zabbix';\n$DB['USER'] = 'zabbix';\n$DB['PASSWORD'] = '';\n$DB['SCHEMA'] = '';\n\
                 $DB['ENCRYPTION'] = false;\n$DB['KEY_FILE'] = '';\n$DB['CERT_FILE'] = '';\n$DB['CA_FILE'] = '';\n\
                 $DB['VERIFY_HOST'] = false;\n$DB['CIPHER_LIST'] = '';\n$DB['VAULT_URL'] = '';\n$DB['VAULT_DB_PATH'] = '';\n\
                 $DB['VAULT_TOKEN'] = '';\n$DB['DOUBLE_IEEE754'] = true;\n$ZBX_SERVER = '127.0.0.1';\n\
                 $ZBX_SERVER_PORT = '{server_port}';\n$ZBX_SERVER_NAME = 'procward test';\n\
                 $IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;\n",
                pgdir = pg.dir.path().display(),
                pgport = pg.port,
            ),
        )
        .unwrap();
        std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o755)).unwrap();
        let web = free_tcp_port();
        let script = format!(
            "mount --make-rprivate / && mount --bind {etc} /etc/zabbix && exec php -S 127.0.0.1:{web} -t {FRONTEND}",
            etc = etc.display()
        );
        let web_svc = Svc::start(
            "php -S",
            Command::new("unshare").args(["--mount", "sh", "-c", &script]),
            libc::SIGTERM,
        );
        wait_until("zabbix_server listens", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", server_port)).is_ok()
        });
        let mut auth = String::new();
        wait_until(
            "the Zabbix API answers user.login",
            Duration::from_secs(60),
            || match api(
                web,
                None,
                "user.login",
                json!({"username": "Admin", "password": "zabbix"}),
            ) {
                Ok(Value::String(t)) => {
                    auth = t;
                    true
                }
                _ => false,
            },
        );
        Zabbix {
            web,
            auth,
            server_port,
            _server: server,
            _web: web_svc,
        }
    }

    fn call(&self, method: &str, params: Value) -> Value {
        api(self.web, Some(&self.auth), method, params).unwrap_or_else(|e| panic!("{e}"))
    }
}

fn rsyslogd(dir: &Path, rules: &str, port: u16) -> Svc {
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{d}\")\nmodule(load=\"imudp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\")\n{rules}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    Svc::start(
        "rsyslogd",
        Command::new("rsyslogd")
            .args(["-n", "-i"])
            .arg(dir.join("rsyslogd.pid"))
            .arg("-f")
            .arg(&conf),
        libc::SIGTERM,
    )
}

/// The problems of `host` (by name) whose tag procward is `id`.
fn problems(z: &Zabbix, hostid: &str, id: &str) -> Vec<Value> {
    let r = z.call(
        "problem.get",
        json!({
            "hostids": [hostid],
            "recent": true,
            "selectTags": "extend",
            "tags": [{"tag": "procward", "value": id, "operator": 1}],
            "output": "extend",
        }),
    );
    r.as_array().cloned().unwrap_or_default()
}

/// A Zabbix clock (Unix seconds, as a string) in RFC 3339.
fn when(clock: &Value) -> String {
    clock
        .as_str()
        .and_then(|c| c.parse::<i64>().ok())
        .and_then(|c| chrono::DateTime::from_timestamp(c, 0))
        .map_or_else(|| clock.to_string(), |t| t.to_rfc3339())
}

fn tag<'a>(p: &'a Value, name: &str) -> Option<&'a str> {
    p["tags"]
        .as_array()?
        .iter()
        .find(|t| t["tag"] == name)
        .and_then(|t| t["value"].as_str())
}

#[test]
fn zabbix_opens_and_closes_problems_from_the_generated_template() {
    for p in [
        "zabbix_server",
        "zabbix_agentd",
        "php",
        "psql",
        "rsyslogd",
        "unshare",
    ] {
        if !require(p) {
            return;
        }
    }
    let env = Env::new();
    let dir = env.dir.path();
    // The generated definitions, as committed.
    let defs = dir.join("defs");
    let o = Command::new(BIN)
        .args(["filters", "generate", "--manager", "all", "--out"])
        .arg(&defs)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let pg = Postgres::start();
    let z = Zabbix::start(dir, &pg);
    let version = api(z.web, None, "apiinfo.version", json!({})).unwrap();
    eprintln!("Zabbix API {version}");

    // Import both languages, as they are.
    for lang in ["en", "ja"] {
        let yaml =
            std::fs::read_to_string(defs.join(format!("zabbix/procward-{lang}.yaml"))).unwrap();
        let rule = json!({"createMissing": true, "updateExisting": true});
        let r = z.call(
            "configuration.import",
            json!({"format": "yaml", "source": yaml, "rules": {
                "groups": rule, "templates": rule, "items": rule, "triggers": rule}}),
        );
        assert_eq!(r, json!(true), "import {lang}");
    }
    let templates = z.call(
        "template.get",
        json!({"output": ["host"], "selectTriggers": "count", "selectItems": "count"}),
    );
    let ours: Vec<&Value> = templates
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["host"].as_str().unwrap_or("").starts_with("procward"))
        .collect();
    assert_eq!(ours.len(), 4, "{templates}");
    for t in &ours {
        assert_eq!(t["items"], "1", "{t}");
        assert!(
            t["triggers"].as_str().unwrap().parse::<u32>().unwrap() > 20,
            "{t}"
        );
    }

    // One host per language on the agent, each reading its own log file.
    let agent_port = zabbix_port();
    let groupid = z.call("hostgroup.create", json!({"name": "procward test"}))["groupids"][0]
        .as_str()
        .unwrap()
        .to_string();
    let template_id = |host: &str| {
        ours.iter().find(|t| t["host"] == host).unwrap()["templateid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let log_dir = dir.join("log");
    std::fs::create_dir_all(&log_dir).unwrap();
    let mut hosts = Vec::new();
    for lang in ["en", "ja"] {
        let tid = template_id(&format!("procward-{lang}"));
        let r = z.call(
            "host.create",
            json!({
                "host": format!("pwtest-{lang}"),
                "groups": [{"groupid": groupid}],
                "templates": [{"templateid": tid}],
                "interfaces": [{"type": 1, "main": 1, "useip": 1, "ip": "127.0.0.1", "dns": "", "port": agent_port.to_string()}],
                "macros": [
                    {"macro": "{$PROCWARD.LOG}", "value": log_dir.join(lang).join("procward.log").display().to_string()},
                    {"macro": "{$PROCWARD.INTERVAL}", "value": "1s"}
                ]
            }),
        );
        hosts.push((lang, r["hostids"][0].as_str().unwrap().to_string()));
    }
    // The trap route: a host with an SNMP interface at the traps' source.
    let traps_tid = template_id("procward-traps-en");
    let r = z.call(
        "host.create",
        json!({
            "host": "pwtraps-en",
            "groups": [{"groupid": groupid}],
            "templates": [{"templateid": traps_tid}],
            "interfaces": [{"type": 2, "main": 1, "useip": 1, "ip": "127.0.0.1", "dns": "", "port": "161",
                            "details": {"version": 2, "bulk": 1, "community": "public"}}],
        }),
    );
    hosts.push((
        "en, SNMP traps",
        r["hostids"][0].as_str().unwrap().to_string(),
    ));
    // snmptrapd with the generated receiver, writing Zabbix's trapper file.
    let trap_port = free_udp_port();
    std::fs::write(dir.join("snmptraps.log"), "").unwrap();
    std::fs::write(
        dir.join("snmptrapd.conf"),
        format!(
            "authCommunity log,execute,net s3cret-community\nperl do \"{}\";\n",
            defs.join("zabbix/procward_trap_receiver.pl").display()
        ),
    )
    .unwrap();
    let _trapd = Svc::start(
        "snmptrapd",
        Command::new("snmptrapd")
            .args(["-f", "-Lf"])
            .arg(dir.join("snmptrapd.out"))
            .args(["-C", "-c"])
            .arg(dir.join("snmptrapd.conf"))
            .arg(format!("udp:127.0.0.1:{trap_port}"))
            .env("SNMP_PERSISTENT_DIR", dir.join("snmp-persist"))
            .env("PROCWARD_ZABBIX_TRAP_FILE", dir.join("snmptraps.log")),
        libc::SIGTERM,
    );

    // rsyslogd with the generated rules, one per language (its own log
    // directory), as an operator installs them.
    let rules = std::fs::read_to_string(defs.join("rsyslog/30-procward.conf")).unwrap();
    let (udp_en, udp_ja) = (free_udp_port(), free_udp_port());
    let mut receivers = Vec::new();
    for (lang, port) in [("en", udp_en), ("ja", udp_ja)] {
        let ld = log_dir.join(lang);
        std::fs::create_dir_all(&ld).unwrap();
        // The agent's log item needs the file when it starts.
        std::fs::write(ld.join("procward.log"), "").unwrap();
        let body = rules.replace("/var/log/procward", &ld.display().to_string());
        let rs_dir = dir.join(format!("rsyslog-{lang}"));
        std::fs::create_dir_all(&rs_dir).unwrap();
        receivers.push(rsyslogd(&rs_dir, &body, port));
    }

    // The agent, after the hosts exist (its active checks are asked for
    // at start), once the server's configuration cache has them.
    std::thread::sleep(Duration::from_secs(3));
    let aconf = dir.join("zabbix_agentd.conf");
    std::fs::write(
        &aconf,
        format!(
            "Server=127.0.0.1\nServerActive=127.0.0.1:{sp}\nHostname=pwtest-en,pwtest-ja\nListenIP=127.0.0.1\nListenPort={agent_port}\n\
             PidFile={d}/zabbix_agentd.pid\nLogType=file\nLogFile={d}/zabbix_agentd.log\nAllowRoot=1\nRefreshActiveChecks=60\n\
             BufferSend=1\nStartAgents=1\n",
            sp = z.server_port,
            d = dir.display()
        ),
    )
    .unwrap();
    let _agent = Svc::start(
        "zabbix_agentd",
        Command::new("zabbix_agentd")
            .arg("-f")
            .arg("-c")
            .arg(&aconf),
        libc::SIGTERM,
    );

    // procward: a target that comes back and one that goes RETRY-OVER,
    // reported in both languages.
    let (tok_web, tok_db) = (token(), token());
    // Two checks of web on heartbeat files not there yet: two problems,
    // each closed only by its own check's pass.
    let beat = |c: &str| env.path(&format!("beat-{c}"));
    let checks = ["hb-a", "hb-b"]
        .iter()
        .map(|c| {
            format!(
                "[[target.check]]\nname = \"{c}\"\nkind = \"heartbeat\"\npath = \"{}\"\nmax-age = \"1h\"\ninterval = \"300ms\"\n\n",
                beat(c).display()
            )
        })
        .collect::<String>();
    let _web = Proc::sleeper(&tok_web);
    let db = Proc::sleeper(&tok_db);
    env.write_config(&format!(
        "{}{}{}{}{}",
        env.daemon_section(""),
        format_args!("[[sink.syslog]]\nname = \"en\"\ntransport = \"udp\"\naddress = \"127.0.0.1:{udp_en}\"\nformat = \"rfc3164\"\nlanguage = \"en\"\nmin-severity = \"debug\"\n"),
        format_args!("[[sink.syslog]]\nname = \"ja\"\ntransport = \"udp\"\naddress = \"127.0.0.1:{udp_ja}\"\nformat = \"rfc5424\"\nlanguage = \"ja\"\nmin-severity = \"debug\"\n\
                      [[sink.snmp]]\nname = \"nms\"\naddress = \"127.0.0.1:{trap_port}\"\nversion = \"2c\"\ncommunity = \"s3cret-community\"\nmin-severity = \"debug\"\nlanguage = \"en\"\n"),
        env.target_section("web", &tok_web, &checks),
        env.failing_target("db", &tok_db, "no database today"),
    ));
    let _d = env.start();
    env.wait_event(T, |e| e["id"] == "PW2001" && e["target"] == "web");
    env.wait_event(T, |e| e["id"] == "PW2001" && e["target"] == "db");
    // The agent has the log file's start; what comes now is new.
    std::thread::sleep(Duration::from_secs(3));

    let pid = env
        .events()
        .iter()
        .find(|e| e["id"] == "PW2001" && e["target"] == "web")
        .and_then(|e| e["pid"].as_u64())
        .unwrap();
    kill(pid as u32, libc::SIGKILL);
    env.wait_event(T, |e| e["id"] == "PW2015" && e["target"] == "web");
    db.signal(libc::SIGKILL);
    env.wait_event(T, |e| e["id"] == "PW2020" && e["target"] == "db");
    env.wait_event(T, |e| e["id"] == "PW2042" && e["fields"]["check"] == "hb-b");
    std::fs::write(beat("hb-a"), "").unwrap();
    env.wait_event(T, |e| e["id"] == "PW2043" && e["fields"]["check"] == "hb-a");

    DIAG.with(|d| *d.borrow_mut() = dir.display().to_string());
    let items = z.call(
        "item.get",
        json!({"hostids": hosts.iter().map(|h| h.1.clone()).collect::<Vec<_>>(),
               "output": ["key_", "state", "error", "lastvalue", "lastclock"]}),
    );
    eprintln!("items: {items}");
    for (lang, hostid) in &hosts {
        // The disappearance: opened (High, tag target=web), then resolved.
        let mut web = Vec::new();
        wait_until(
            &format!("{lang}: PW2003 for web resolved in Zabbix"),
            Duration::from_secs(90),
            || {
                web = problems(&z, hostid, "PW2003");
                web.iter().any(|p| p["r_eventid"] != "0")
            },
        );
        let p = web.iter().find(|p| p["r_eventid"] != "0").unwrap();
        assert_eq!(p["severity"], "4", "{lang}: High: {p}");
        assert_eq!(tag(p, "target"), Some("web"), "{lang}: {p}");
        let name = p["name"].as_str().unwrap();
        assert!(
            name.starts_with("PW2003 ") && name.contains("web"),
            "{name}"
        );
        eprintln!(
            "{lang}: problem \"{name}\" severity {} opened {} resolved {}",
            p["severity"],
            when(&p["clock"]),
            when(&p["r_clock"])
        );
        // RETRY-OVER: opened (Disaster, tag target=db) and still open.
        let mut over = Vec::new();
        wait_until(
            &format!("{lang}: PW2020 for db in Zabbix"),
            Duration::from_secs(60),
            || {
                over = problems(&z, hostid, "PW2020");
                !over.is_empty()
            },
        );
        let p = &over[0];
        assert_eq!(p["severity"], "5", "{lang}: Disaster: {p}");
        assert_eq!(tag(p, "target"), Some("db"), "{lang}: {p}");
        assert_eq!(p["r_eventid"], "0", "{lang}: RETRY-OVER stays open: {p}");
        eprintln!(
            "{lang}: problem \"{}\" severity {} opened {}, open",
            p["name"].as_str().unwrap(),
            p["severity"],
            when(&p["clock"])
        );
        // web's checks: hb-a's problem closed by its pass, hb-b's open.
        let mut checks = Vec::new();
        wait_until(
            &format!("{lang}: PW2042 of hb-a resolved, of hb-b open"),
            Duration::from_secs(60),
            || {
                checks = problems(&z, hostid, "PW2042");
                let of = |c: &str| -> Vec<&Value> {
                    checks
                        .iter()
                        .filter(|p| tag(p, "check") == Some(c))
                        .collect()
                };
                let (a, b) = (of("web hb-a"), of("web hb-b"));
                !a.is_empty() && a.iter().all(|p| p["r_eventid"] != "0") && !b.is_empty()
            },
        );
        for p in &checks {
            assert_eq!(p["severity"], "2", "{lang}: Warning: {p}");
            if tag(p, "check") == Some("web hb-b") {
                assert_eq!(
                    p["r_eventid"], "0",
                    "{lang}: hb-b closed by hb-a's pass: {p}"
                );
            }
        }
        eprintln!(
            "{lang}: check problems {:?}",
            checks
                .iter()
                .map(|p| (
                    p["name"].as_str().unwrap_or(""),
                    tag(p, "check"),
                    &p["r_eventid"]
                ))
                .collect::<Vec<_>>()
        );
        // The web recovery closed web's problem only.
        let db_down = problems(&z, hostid, "PW2003");
        assert!(
            db_down
                .iter()
                .filter(|p| tag(p, "target") == Some("db"))
                .all(|p| p["r_eventid"] == "0"),
            "{lang}: db's PW2003 closed by web's recovery: {db_down:?}"
        );
    }
}
