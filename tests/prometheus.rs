//! The generated Prometheus rules in the real promtool (Debian's
//! prometheus package): `check rules` accepts both languages, and
//! `promtool test rules` fires and resolves every alert from series
//! shaped like procward's metrics endpoint, with the labels and the
//! annotations (summary rendered with the series' labels, description
//! and runbook from the catalog) an operator gets.
#![allow(clippy::too_many_lines)]

mod common;

use common::*;
use procward::catalog::Catalog;
use procward::model::Lang;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

const INSTANCE: &str = "h1:9184";

/// One alert's case: the series, when it fires (and its value in the
/// summary), when it is resolved again.
struct Case {
    alert: &'static str,
    series: &'static str,
    values: &'static str,
    firing_at: &'static str,
    resolved_at: &'static str,
    message: &'static str,
    severity: &'static str,
    /// Labels of the series besides instance and job.
    labels: &'static [(&'static str, &'static str)],
    summary: [&'static str; 2],
}

const CASES: &[Case] = &[
    Case {
        alert: "ProcwardTargetDown",
        series: r#"procward_target_state{target="web",state="down"}"#,
        values: "0 1 1 1 1 0 0 0",
        firing_at: "3m",
        resolved_at: "6m",
        message: "PW2003",
        severity: "error",
        labels: &[("target", "web"), ("state", "down")],
        summary: [
            "target web on h1:9184 is not running (procward state: down)",
            "h1:9184 の監視対象 web が動いていません (procward の状態: down)",
        ],
    },
    Case {
        alert: "ProcwardTargetWaiting",
        series: r#"procward_target_state{target="db",state="waiting"}"#,
        values: "1x7 0x5",
        firing_at: "6m",
        resolved_at: "9m",
        message: "PW2002",
        severity: "warning",
        labels: &[("target", "db"), ("state", "waiting")],
        summary: [
            "target db on h1:9184: no matching process for 5 minutes",
            "h1:9184 の監視対象 db: 該当するプロセスが 5 分以上ありません",
        ],
    },
    Case {
        alert: "ProcwardTargetRetryOver",
        series: r#"procward_target_state{target="web",state="retry-over"}"#,
        values: "0 1 0 0",
        firing_at: "1m",
        resolved_at: "3m",
        message: "PW2020",
        severity: "critical",
        labels: &[("target", "web"), ("state", "retry-over")],
        summary: [
            "target web on h1:9184: RETRY-OVER, procward's restarts did not bring it back",
            "h1:9184 の監視対象 web: リトライオーバー。再起動で復旧しませんでした",
        ],
    },
    Case {
        alert: "ProcwardTargetFailed",
        series: r#"procward_target_state{target="web",state="failed"}"#,
        values: "0 1 0 0",
        firing_at: "1m",
        resolved_at: "3m",
        message: "PW2030",
        severity: "critical",
        labels: &[("target", "web"), ("state", "failed")],
        summary: [
            "target web on h1:9184: failed, handed over to its retry-over command",
            "h1:9184 の監視対象 web: 失敗。リトライオーバー時のコマンドに引き継ぎました",
        ],
    },
    Case {
        alert: "ProcwardTargetStalled",
        series: r#"procward_target_state{target="api",state="stalled"}"#,
        values: "0 1 1 1 0 0",
        firing_at: "3m",
        resolved_at: "5m",
        message: "PW2040",
        severity: "error",
        labels: &[("target", "api"), ("state", "stalled")],
        summary: [
            "target api on h1:9184: its process runs but its stall probe fails",
            "h1:9184 の監視対象 api: プロセスは動いていますが、無応答の確認 (stall) に失敗しています",
        ],
    },
    Case {
        alert: "ProcwardCheckFailed",
        series: r#"procward_check_failed{target="web",check="leak",kind="memory"}"#,
        values: "0 1 1 1 0 0",
        firing_at: "2m",
        resolved_at: "5m",
        message: "PW2042",
        severity: "warning",
        labels: &[("target", "web"), ("check", "leak"), ("kind", "memory")],
        summary: [
            "target web on h1:9184: check leak (memory) has failed",
            "h1:9184 の監視対象 web: チェック leak (memory) が失敗しています",
        ],
    },
    Case {
        alert: "ProcwardRestartRate",
        series: r#"procward_restarts_total{target="web"}"#,
        values: "0+1x30 30x30",
        firing_at: "20m",
        resolved_at: "50m",
        message: "PW2010",
        severity: "warning",
        labels: &[("target", "web")],
        summary: [
            "target web on h1:9184: 15 restarts in 15 minutes",
            "h1:9184 の監視対象 web: 15 分間に 15 回再起動しました",
        ],
    },
    Case {
        alert: "ProcwardSinkFailing",
        series: r#"procward_sink_up{sink="manager"}"#,
        values: "1 0x7 1x5",
        firing_at: "7m",
        resolved_at: "10m",
        message: "PW3002",
        severity: "error",
        labels: &[("sink", "manager")],
        summary: [
            "procward on h1:9184 cannot deliver to sink manager",
            "h1:9184 の procward が送信先 manager に送信できていません",
        ],
    },
    Case {
        alert: "ProcwardSinkBacklogGrowing",
        series: r#"procward_sink_backlog{sink="manager"}"#,
        values: "0+10x25 250x30",
        firing_at: "20m",
        resolved_at: "40m",
        message: "PW3002",
        severity: "warning",
        labels: &[("sink", "manager")],
        summary: [
            "sink manager on h1:9184: 200 events wait for delivery and the backlog grows",
            "h1:9184 の送信先 manager: 未送信のイベント 200 件が増え続けています",
        ],
    },
    Case {
        alert: "ProcwardDown",
        series: "up",
        values: "1 1 0 0 0 0 1 1 1",
        firing_at: "5m",
        resolved_at: "7m",
        message: "PW1002",
        severity: "critical",
        labels: &[],
        summary: [
            "procward on h1:9184 does not answer: its targets are not monitored",
            "h1:9184 の procward が応答しません。監視対象は監視されていません",
        ],
    },
];

fn q(s: &str) -> String {
    Value::from(s).to_string()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The series name with instance and job added to its labels.
fn full_series(c: &Case) -> String {
    let extra = format!(r#"instance="{INSTANCE}",job="procward""#);
    match c.series.split_once('{') {
        Some((name, rest)) => format!("{name}{{{extra},{rest}"),
        None => format!("{}{{{extra}}}", c.series),
    }
}

/// A promtool unit test file for the rules of `lang`.
fn test_file(rules: &str, lang: Lang, catalog: &Catalog) -> String {
    let mut t = format!("rule_files:\n  - {rules}\nevaluation_interval: 1m\ntests:\n");
    for c in CASES {
        let m = catalog.get(c.message).expect("message");
        let summary = match lang {
            Lang::En => c.summary[0],
            Lang::Ja => c.summary[1],
        };
        let _ = write!(
            t,
            "  - interval: 1m\n    input_series:\n      - series: {}\n        values: {}\n    alert_rule_test:\n",
            q(&full_series(c)),
            q(c.values)
        );
        let mut labels = format!(
            "          exp_labels:\n            severity: {}\n            message_id: {}\n            instance: {}\n            job: procward\n",
            c.severity,
            c.message,
            q(INSTANCE)
        );
        for (k, v) in c.labels {
            let _ = writeln!(labels, "            {k}: {}", q(v));
        }
        let _ = write!(
            t,
            "      - eval_time: {}\n        alertname: {}\n        exp_alerts:\n        - {}\n          exp_annotations:\n            summary: {}\n            description: {}\n            runbook: {}\n",
            c.firing_at,
            c.alert,
            labels.trim_start(),
            q(summary),
            q(&one_line(m.description.get(lang))),
            q(&one_line(m.action.get(lang))),
        );
        let _ = write!(
            t,
            "      - eval_time: {}\n        alertname: {}\n        exp_alerts: []\n",
            c.resolved_at, c.alert
        );
    }
    t
}

fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let o = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[test]
fn promtool_accepts_the_rules_and_every_alert_fires_and_resolves() {
    if !require("promtool") {
        return;
    }
    let env = Env::new();
    let out = env.dir.path().join("defs");
    let o = Command::new(BIN)
        .args(["filters", "generate", "--manager", "prometheus", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = out.join("prometheus");
    let (ok, text) = promtool(
        &[
            "check",
            "rules",
            "procward-en.rules.yml",
            "procward-ja.rules.yml",
        ],
        &dir,
    );
    assert!(ok, "promtool check rules: {text}");
    assert_eq!(
        text.matches(&format!("SUCCESS: {} rules found", CASES.len()))
            .count(),
        2,
        "{text}"
    );
    let catalog = Catalog::embedded();
    for lang in [Lang::En, Lang::Ja] {
        let rules = format!("procward-{}.rules.yml", lang.as_str());
        let test = format!("procward-{}.test.yml", lang.as_str());
        std::fs::write(dir.join(&test), test_file(&rules, lang, &catalog)).unwrap();
        let (ok, text) = promtool(&["test", "rules", &test], &dir);
        assert!(ok, "promtool test rules ({}): {text}", lang.as_str());
        assert!(text.contains("SUCCESS"), "{text}");
    }
    // The tests can fail: a wrong expectation is caught.
    let wrong = test_file("procward-en.rules.yml", Lang::En, &catalog).replacen(
        "exp_alerts: []",
        "exp_alerts: [{exp_labels: {}}]",
        1,
    );
    std::fs::write(dir.join("wrong.test.yml"), wrong).unwrap();
    let (ok, text) = promtool(&["test", "rules", "wrong.test.yml"], &dir);
    assert!(!ok, "a wrong expectation passed: {text}");
}
