//! Prometheus alerting rules over procward's metrics endpoint, one file
//! per language, and an Alertmanager inhibition example. Each alert
//! carries a catalog message: its severity (unless the alert says
//! otherwise), its description and its operator action (the runbook), in
//! the file's language, and its ID as the `message_id` label.

use super::{one_line, yaml_quoted as quoted, File};
use crate::catalog::render::Renderer;
use crate::model::Lang;
use serde_json::{json, Value};

/// One alerting rule.
struct Alert {
    name: &'static str,
    expr: &'static str,
    /// How long the expression must hold (`for:`).
    hold: &'static str,
    /// The catalog message it stands for.
    message: &'static str,
    /// The severity label when it is not the message's own.
    severity: Option<&'static str>,
    /// The summary in English and Japanese (Prometheus templates).
    summary: [&'static str; 2],
}

const ALERTS: &[Alert] = &[
    Alert {
        name: "ProcwardTargetDown",
        expr: r#"procward_target_state{state=~"down|backoff|restarting|settling"} == 1"#,
        hold: "1m",
        message: "PW2003",
        severity: None,
        summary: [
            "target {{ $labels.target }} on {{ $labels.instance }} is not running (procward state: {{ $labels.state }})",
            "{{ $labels.instance }} の監視対象 {{ $labels.target }} が動いていません (procward の状態: {{ $labels.state }})",
        ],
    },
    Alert {
        name: "ProcwardTargetWaiting",
        expr: r#"procward_target_state{state="waiting"} == 1"#,
        hold: "5m",
        message: "PW2002",
        severity: None,
        summary: [
            "target {{ $labels.target }} on {{ $labels.instance }}: no matching process for 5 minutes",
            "{{ $labels.instance }} の監視対象 {{ $labels.target }}: 該当するプロセスが 5 分以上ありません",
        ],
    },
    Alert {
        name: "ProcwardTargetRetryOver",
        expr: r#"procward_target_state{state="retry-over"} == 1"#,
        hold: "0s",
        message: "PW2020",
        severity: None,
        summary: [
            "target {{ $labels.target }} on {{ $labels.instance }}: RETRY-OVER, procward's restarts did not bring it back",
            "{{ $labels.instance }} の監視対象 {{ $labels.target }}: リトライオーバー。再起動で復旧しませんでした",
        ],
    },
    Alert {
        name: "ProcwardTargetFailed",
        expr: r#"procward_target_state{state="failed"} == 1"#,
        hold: "0s",
        message: "PW2030",
        severity: None,
        summary: [
            "target {{ $labels.target }} on {{ $labels.instance }}: failed, handed over to its retry-over command",
            "{{ $labels.instance }} の監視対象 {{ $labels.target }}: 失敗。リトライオーバー時のコマンドに引き継ぎました",
        ],
    },
    Alert {
        name: "ProcwardTargetStalled",
        expr: r#"procward_target_state{state="stalled"} == 1"#,
        hold: "1m",
        message: "PW2040",
        severity: None,
        summary: [
            "target {{ $labels.target }} on {{ $labels.instance }}: its process runs but its stall probe fails",
            "{{ $labels.instance }} の監視対象 {{ $labels.target }}: プロセスは動いていますが、無応答の確認 (stall) に失敗しています",
        ],
    },
    Alert {
        name: "ProcwardCheckFailed",
        expr: "procward_check_failed == 1",
        hold: "0s",
        message: "PW2042",
        severity: None,
        summary: [
            "target {{ $labels.target }} on {{ $labels.instance }}: check {{ $labels.check }} ({{ $labels.kind }}) has failed",
            "{{ $labels.instance }} の監視対象 {{ $labels.target }}: チェック {{ $labels.check }} ({{ $labels.kind }}) が失敗しています",
        ],
    },
    Alert {
        name: "ProcwardRestartRate",
        expr: "increase(procward_restarts_total[15m]) >= 3",
        hold: "0s",
        message: "PW2010",
        severity: Some("warning"),
        summary: [
            "target {{ $labels.target }} on {{ $labels.instance }}: {{ $value | humanize }} restarts in 15 minutes",
            "{{ $labels.instance }} の監視対象 {{ $labels.target }}: 15 分間に {{ $value | humanize }} 回再起動しました",
        ],
    },
    Alert {
        name: "ProcwardSinkFailing",
        expr: "procward_sink_up == 0",
        hold: "5m",
        message: "PW3002",
        severity: None,
        summary: [
            "procward on {{ $labels.instance }} cannot deliver to sink {{ $labels.sink }}",
            "{{ $labels.instance }} の procward が送信先 {{ $labels.sink }} に送信できていません",
        ],
    },
    Alert {
        name: "ProcwardSinkBacklogGrowing",
        expr: "procward_sink_backlog > 0 and delta(procward_sink_backlog[10m]) > 0",
        hold: "10m",
        message: "PW3002",
        severity: Some("warning"),
        summary: [
            "sink {{ $labels.sink }} on {{ $labels.instance }}: {{ $value }} events wait for delivery and the backlog grows",
            "{{ $labels.instance }} の送信先 {{ $labels.sink }}: 未送信のイベント {{ $value }} 件が増え続けています",
        ],
    },
    Alert {
        name: "ProcwardDown",
        expr: r#"up{job="procward"} == 0"#,
        hold: "2m",
        message: "PW1002",
        severity: Some("critical"),
        summary: [
            "procward on {{ $labels.instance }} does not answer: its targets are not monitored",
            "{{ $labels.instance }} の procward が応答しません。監視対象は監視されていません",
        ],
    },
];

fn alert_data(a: &Alert, r: &Renderer, lang: Lang) -> Result<Value, String> {
    let m = r
        .catalog
        .get(a.message)
        .ok_or_else(|| format!("alert {}: no catalog message {}", a.name, a.message))?;
    let summary = match lang {
        Lang::En => a.summary[0],
        Lang::Ja => a.summary[1],
    };
    Ok(json!({
        "name": a.name,
        "expr": quoted(a.expr),
        "for": a.hold,
        "severity": a.severity.unwrap_or(m.severity.as_str()),
        "message_id": m.id,
        "summary": quoted(summary),
        "description": quoted(&one_line(m.description.get(lang))),
        "runbook": quoted(&one_line(m.action.get(lang))),
    }))
}

/// The rules in both languages and the inhibition example.
pub(super) fn generate(r: &Renderer) -> Result<Vec<File>, String> {
    let mut files = Vec::new();
    for lang in [Lang::En, Lang::Ja] {
        let alerts = ALERTS
            .iter()
            .map(|a| alert_data(a, r, lang))
            .collect::<Result<Vec<_>, _>>()?;
        files.push(File {
            name: format!("procward-{}.rules.yml", lang.as_str()),
            content: r.render_data(
                "filters/prometheus",
                &json!({ "lang": lang.as_str(), "alerts": alerts }),
            )?,
        });
    }
    files.push(File {
        name: "alertmanager-inhibit.yml".into(),
        content: r.render_data("filters/alertmanager", &json!({}))?,
    });
    Ok(files)
}
